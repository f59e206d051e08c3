//! Differential test: `knocker hba lint` against real PostgreSQL servers.
//!
//! For every PostgreSQL major version the machine provides (15 from Debian,
//! 16-18 from npm), one server is started with `ssl = on` and reused for every
//! input, one after the other:
//!
//! * each case of the corpus in `pghba/corpus/` (a `.conf` file, or a
//!   directory holding `pg_hba.conf` plus the files it includes), and
//! * a few hundred proptest-generated files.
//!
//! Each input is installed as the server's `hba_file` (included files next to
//! it), then the server is asked for `pg_hba_file_rules` and to reload. What
//! it says is the oracle: the lint's `--json` rows must equal the view's rows
//! (options exempt only for ldap, radius, gss, sspi, pam, bsd and oauth, whose
//! options the view shows only in part), and the lint's exit status must say
//! whether the server really loaded the file. The server's build features
//! (read from `pg_config`) become the lint's `--without` flags, and the test
//! prints which build it ran against.
//!
//! Every disagreement is printed with version, case and line; the test fails
//! unless all of them are in the explicit allow-list [`ALLOWED`] (view quirks)
//! or in `pghba/corpus/known-lint-bugs.txt` (lint bugs found here and not fixed yet, which
//! are still printed, and which fail the test once they no longer disagree,
//! so that the list only ever shrinks).
//!
//! `KNOCKER_HBA_ORACLE_WRITE=1` also writes what the servers said about the
//! corpus into `pghba/corpus/oracle-pgNN.jsonl` (paths relative to the
//! directory of the hba file), a server-free reference for pghba's own tests.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pg_harness::{Cluster, ClusterOptions};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value};

/// Methods whose options the view shows only partly (hbafuncs.c re-synthesises
/// them from the parsed line): their `options` column is not compared.
const OPTIONS_EXEMPT: [&str; 7] = ["ldap", "radius", "gss", "sspi", "pam", "bsd", "oauth"];

/// Known, documented differences that are not lint bugs:
/// `(case name, versions, reason)`. Keep this list short and explained.
/// So far the lint reproduces every view quirk met (dropped quotes, rows with
/// neither type nor error for bad clientcert/clientname/radius values), so
/// nothing needs allowing.
const ALLOWED: &[(&str, &[u32], &str)] = &[];

/// Disagreements that are bugs of the lint (pghba), found by the differential
/// tests and reported, not yet fixed: `pghba/corpus/known-lint-bugs.txt`,
/// `(case name, versions, what is wrong)`. An entry whose case agrees again
/// fails the test: remove it then.
fn known_lint_bugs() -> Vec<(String, Vec<u32>, String)> {
    pg_harness::corpus::known_lint_bugs()
        .into_iter()
        .map(|b| (b.case, b.versions, b.what))
        .collect()
}

/// How many generated files each version checks.
const GENERATED_FILES: usize = 250;

/// The marker a corpus file uses to say it must not be fed to older servers
/// (e.g. a self-including `@file`, which overflows 15's stack).
const MIN_VERSION_MARKER: &str = "# corpus: min-version ";

pg_harness::pg_test!(
    async fn lint_agrees_with_server(major: u32) {
        let pg = Cluster::start_with(major, ClusterOptions::with_ssl()).await;
        let client = pg.connect().await;
        let build = Build::of(&client).await;
        println!("PostgreSQL {major}: {}", build.describe(major));

        let mut server = Server {
            client,
            hba_file: pg.hba_file(),
            log_file: pg.log_file().to_path_buf(),
        };
        let hba_dir = server
            .hba_file
            .parent()
            .expect("hba file has a parent")
            .to_path_buf();
        let lint = Lint {
            major,
            without: build.without(),
        };

        let mut report = Report::default();
        let mut oracle = String::new();
        let started = Instant::now();
        let cases = corpus_cases();
        let mut corpus_run = 0;
        for case in &cases {
            if case.min_version > major {
                continue;
            }
            corpus_run += 1;
            let installed = install(&case.files, &hba_dir);
            let observed = server.observe().await;
            let linted = lint.run(&server.hba_file);
            remove_installed(&installed);
            writeln!(oracle, "{}", observed.to_oracle_line(&case.name, &hba_dir))
                .expect("write to string");
            report.compare(major, &case.name, &case.files, &observed, &linted, &hba_dir);
        }
        let corpus_time = started.elapsed();

        let (seed, generated) = generated_files(GENERATED_FILES);
        let started = Instant::now();
        for (i, text) in generated.iter().enumerate() {
            let name = format!("generated #{i} (seed {seed:#018x})");
            std::fs::write(&server.hba_file, text).expect("write generated hba file");
            let observed = server.observe().await;
            let linted = lint.run(&server.hba_file);
            let before = report.disagreements.len();
            let files = [(PathBuf::from("pg_hba.conf"), Some(text.clone()))];
            report.compare(major, &name, &files, &observed, &linted, &hba_dir);
            if report.disagreements.len() > before {
                report.disagreements.push(format!(
                    "pg{major} {name}: the generated file was:\n{}",
                    String::from_utf8_lossy(text)
                ));
            }
        }
        let generated_time = started.elapsed();

        if std::env::var_os("KNOCKER_HBA_ORACLE_WRITE").is_some() {
            let path = corpus_dir().join(format!("oracle-pg{major}.jsonl"));
            std::fs::write(&path, &oracle).expect("write oracle file");
            println!("wrote {}", path.display());
        }

        println!(
        "PostgreSQL {major}: {corpus_run} corpus cases in {corpus_time:.1?}, {} generated files in {generated_time:.1?}, {} rows compared",
        generated.len(),
        report.rows_compared
    );
        report.finish(major);
    }
);

/// What the server's build supports, from `pg_config`'s CONFIGURE line.
struct Build {
    configure: String,
    version: String,
}

impl Build {
    async fn of(client: &tokio_postgres::Client) -> Build {
        let row = client
            .query_one(
                "SELECT (SELECT setting FROM pg_config WHERE name = 'CONFIGURE'), version()",
                &[],
            )
            .await
            .expect("read pg_config");
        Build {
            configure: row.get::<_, Option<String>>(0).unwrap_or_default(),
            version: row.get(1),
        }
    }

    fn has(&self, feature: &str) -> bool {
        self.configure.contains(&format!("--with-{feature}"))
    }

    /// The lint's `--without` flags for this build.
    fn without(&self) -> Vec<&'static str> {
        [("ldap", "ldap"), ("gssapi", "gssapi"), ("pam", "pam")]
            .into_iter()
            .filter(|(configure_name, _)| !self.has(configure_name))
            .map(|(_, flag)| flag)
            .collect()
    }

    fn describe(&self, major: u32) -> String {
        let source = match pg_harness::npm_version(major) {
            Some(v) => format!("npm {}@{v}", pg_harness::NPM_PACKAGE),
            None => format!("Debian {}", pg_harness::DEBIAN_PACKAGE_15),
        };
        let features = ["openssl", "ldap", "gssapi", "pam"]
            .iter()
            .map(|f| format!("{f}: {}", if self.has(f) { "yes" } else { "no" }))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} [{source}; {features}]", self.version)
    }
}

/// One corpus case: its name and the files to install, relative to the
/// directory of the hba file (`pg_hba.conf` is the hba file itself).
struct Case {
    name: String,
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
    min_version: u32,
}

fn corpus_dir() -> PathBuf {
    pg_harness::corpus::pghba_corpus_dir()
}

/// The corpus cases in name order. A `.conf` file is a case on its own; a
/// directory is a case whose `pg_hba.conf` may include its other files.
fn corpus_cases() -> Vec<Case> {
    let mut entries: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("read pghba/corpus")
        .map(|e| e.expect("read corpus entry").path())
        .collect();
    entries.sort();
    let mut cases = Vec::new();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let files = if path.is_dir() {
            let mut files = Vec::new();
            collect_files(&path, Path::new(""), &mut files);
            assert!(
                files.iter().any(|(p, _)| p == Path::new("pg_hba.conf")),
                "corpus case {name} has no pg_hba.conf"
            );
            files
        } else if name.ends_with(".conf") {
            vec![(
                PathBuf::from("pg_hba.conf"),
                Some(std::fs::read(&path).expect("read corpus file")),
            )]
        } else {
            continue;
        };
        let main = files
            .iter()
            .find(|(p, _)| p == Path::new("pg_hba.conf"))
            .and_then(|(_, c)| c.as_ref())
            .expect("main file");
        let min_version = main
            .strip_prefix(MIN_VERSION_MARKER.as_bytes())
            .and_then(|rest| {
                let digits: String = rest
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .map(|&b| b as char)
                    .collect();
                digits.parse().ok()
            })
            .unwrap_or(0);
        cases.push(Case {
            name,
            files,
            min_version,
        });
    }
    assert!(
        cases.len() >= 150,
        "the corpus should hold at least 150 cases"
    );
    cases
}

/// Files (with contents) and directories (`None`) under `dir`, parents first.
fn collect_files(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, Option<Vec<u8>>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read corpus case dir")
        .map(|e| e.expect("read corpus case entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = rel.join(path.file_name().unwrap());
        if path.is_dir() {
            out.push((rel.clone(), None));
            collect_files(&path, &rel, out);
        } else {
            out.push((
                rel,
                Some(std::fs::read(&path).expect("read corpus case file")),
            ));
        }
    }
}

/// Writes a case next to the server's hba file. Returns what it created (the
/// hba file itself excluded), to be removed afterwards.
fn install(files: &[(PathBuf, Option<Vec<u8>>)], hba_dir: &Path) -> Vec<PathBuf> {
    let mut created = Vec::new();
    for (rel, content) in files {
        let target = hba_dir.join(rel);
        if rel == Path::new("pg_hba.conf") {
            std::fs::write(&target, content.as_ref().expect("pg_hba.conf is a file"))
                .expect("write hba file");
            continue;
        }
        assert!(
            !target.exists(),
            "corpus file {} would overwrite {} of the server",
            rel.display(),
            target.display()
        );
        match content {
            None => std::fs::create_dir(&target).expect("create corpus dir"),
            Some(bytes) => std::fs::write(&target, bytes).expect("write corpus file"),
        }
        created.push(target);
    }
    created
}

fn remove_installed(created: &[PathBuf]) {
    for path in created.iter().rev() {
        if path.is_dir() {
            std::fs::remove_dir(path).expect("remove corpus dir");
        } else {
            std::fs::remove_file(path).expect("remove corpus file");
        }
    }
}

/// The server under test: one connection kept open for the whole run (the
/// files under test may well refuse new connections).
struct Server {
    client: tokio_postgres::Client,
    hba_file: PathBuf,
    log_file: PathBuf,
}

/// What the server says about the file currently installed.
struct Observed {
    rows: Vec<Map<String, Value>>,
    loaded: bool,
    /// The server log lines of the reload that decided `loaded`.
    reload_log: String,
}

const SIGHUP_LINE: &str = "received SIGHUP, reloading configuration files";

impl Server {
    async fn observe(&mut self) -> Observed {
        // textsend: the view may hold bytes that are not UTF-8 (they come
        // straight from the file), which a text column could not carry.
        let rows = self
            .client
            .query(
                "SELECT textsend(row_to_json(r)::text) FROM pg_hba_file_rules r",
                &[],
            )
            .await
            .expect("query pg_hba_file_rules");
        let rows = rows
            .iter()
            .map(|row| {
                let bytes: Vec<u8> = row.get(0);
                match serde_json::from_str(&String::from_utf8_lossy(&bytes)) {
                    Ok(Value::Object(map)) => map,
                    other => panic!("pg_hba_file_rules row is not a JSON object: {other:?}"),
                }
            })
            .collect();

        // The postmaster handles reloads one after the other, and logs
        // SIGHUP_LINE when it starts one. Reloading twice and waiting for both
        // lines brackets the messages of the first reload: whatever it
        // logged (e.g. "pg_hba.conf was not reloaded") sits between them.
        let offset = std::fs::metadata(&self.log_file).expect("server log").len();
        self.reload_and_wait(offset, 1).await;
        let log = self.reload_and_wait(offset, 2).await;
        let mut starts = log.match_indices(SIGHUP_LINE).map(|(i, _)| i);
        let first = starts.next().expect("first reload logged");
        let second = starts.next().expect("second reload logged");
        // Up to the start of the line that holds the second SIGHUP message.
        let end = log[..second].rfind('\n').map_or(second, |i| i + 1);
        let reload_log = log[first..end.max(first)].to_string();
        let loaded = !reload_log
            .lines()
            .any(|l| l.contains("pg_hba.conf") && l.contains("was not reloaded"));
        Observed {
            rows,
            loaded,
            reload_log,
        }
    }

    /// The server log from byte `offset` on.
    fn log_since(&self, offset: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.log_file).expect("open server log");
        file.seek(SeekFrom::Start(offset)).expect("seek server log");
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).expect("read server log");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Asks for a reload and waits until the log since `offset` shows
    /// `sighup_lines` reloads; returns that part of the log.
    async fn reload_and_wait(&mut self, offset: u64, sighup_lines: usize) -> String {
        self.client
            .simple_query("SELECT pg_reload_conf()")
            .await
            .expect("pg_reload_conf");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log_since(offset);
            if log.matches(SIGHUP_LINE).count() >= sighup_lines {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not log a reload within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Observed {
    /// One JSON line for the oracle file, with paths made relative to the
    /// directory of the hba file so that the file does not depend on where
    /// the test ran.
    fn to_oracle_line(&self, case: &str, hba_dir: &Path) -> String {
        let dir = format!("{}/", hba_dir.display());
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                Value::Object(
                    row.iter()
                        .map(|(k, v)| (k.clone(), relativize(v, &dir)))
                        .collect(),
                )
            })
            .collect();
        let log: Vec<Value> = self
            .reload_log_lines()
            .into_iter()
            .map(|l| Value::String(l.replace(&dir, "")))
            .collect();
        let mut line = Map::new();
        line.insert("case".into(), Value::String(case.into()));
        line.insert("loads".into(), Value::Bool(self.loaded));
        line.insert("rows".into(), Value::Array(rows));
        line.insert("log".into(), Value::Array(log));
        Value::Object(line).to_string()
    }

    /// The messages of the reload without the SIGHUP line itself and without
    /// the server's line prefix (time, pid).
    fn reload_log_lines(&self) -> Vec<String> {
        const SEVERITIES: [&str; 7] = [
            "LOG:  ",
            "WARNING:  ",
            "CONTEXT:  ",
            "HINT:  ",
            "DETAIL:  ",
            "ERROR:  ",
            "FATAL:  ",
        ];
        self.reload_log
            .lines()
            .skip(1)
            .map(|l| {
                SEVERITIES
                    .iter()
                    .filter_map(|s| l.find(s))
                    .min()
                    .map_or(l, |i| &l[i..])
                    .to_string()
            })
            .collect()
    }
}

fn relativize(value: &Value, dir: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(dir, "")),
        Value::Array(items) => Value::Array(items.iter().map(|v| relativize(v, dir)).collect()),
        other => other.clone(),
    }
}

/// How the lint is run for this server.
struct Lint {
    major: u32,
    without: Vec<&'static str>,
}

/// What the lint said.
struct Linted {
    status: Option<i32>,
    rows: Vec<Map<String, Value>>,
    stdout_problem: Option<String>,
    stderr: String,
    /// `(file, line)` of every `FILE:LINE:COL: message` the lint printed
    /// without `--json`.
    human_locations: BTreeSet<(String, u32)>,
}

impl Lint {
    fn command(&self, file: &Path, json: bool) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_knocker"));
        cmd.args(["hba", "lint"]);
        if json {
            cmd.arg("--json");
        }
        cmd.arg("--pg-version").arg(self.major.to_string());
        for feature in &self.without {
            cmd.args(["--without", feature]);
        }
        cmd.arg(file);
        cmd
    }

    fn run(&self, file: &Path) -> Linted {
        let human = self
            .command(file, false)
            .output()
            .expect("run knocker hba lint");
        let human_locations = [&human.stdout, &human.stderr]
            .iter()
            .flat_map(|out| {
                String::from_utf8_lossy(out)
                    .lines()
                    .filter_map(problem_location)
                    .collect::<Vec<_>>()
            })
            .collect();
        let out = self
            .command(file, true)
            .output()
            .expect("run knocker hba lint --json");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut rows = Vec::new();
        let mut stdout_problem = None;
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str(line) {
                Ok(Value::Object(map)) => rows.push(map),
                _ => {
                    stdout_problem = Some(format!("stdout line is not a JSON object: {line:?}"));
                    break;
                }
            }
        }
        Linted {
            status: out.status.code(),
            rows,
            stdout_problem,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            human_locations,
        }
    }
}

/// How many physical lines the logical line starting at physical line
/// `start` (1-based) spans: a line whose end (before `\n` or `\r\n`) is a
/// backslash continues on the next one.
fn physical_lines_of(content: &[u8], start: u32) -> u32 {
    let lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    let mut span = 1;
    let mut i = start as usize - 1;
    while let Some(line) = lines.get(i) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.last() != Some(&b'\\') || i + 1 >= lines.len() {
            break;
        }
        span += 1;
        i += 1;
    }
    span
}

/// `(file, line)` of a `FILE:LINE:COL: message` line.
fn problem_location(line: &str) -> Option<(String, u32)> {
    let bytes = line.as_bytes();
    for (i, _) in line.match_indices(':') {
        let rest = &bytes[i + 1..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || rest.get(digits) != Some(&b':') {
            continue;
        }
        let col_digits = rest[digits + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if col_digits > 0 && rest.get(digits + 1 + col_digits) == Some(&b':') {
            let number = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
            return Some((line[..i].to_string(), number));
        }
    }
    None
}

/// `(file, line, message)` of every problem the server logged with a
/// location (`LOG:  message` followed by `CONTEXT:  line N of configuration
/// file "F"`), leaving out what is no problem: the reload verdict itself and
/// a missing `include_if_exists` file.
fn server_problem_locations(log_lines: &[String]) -> Vec<(String, u32, String)> {
    let mut found = Vec::new();
    let mut message: Option<&str> = None;
    for (i, line) in log_lines.iter().enumerate() {
        if let Some(m) = line
            .strip_prefix("LOG:  ")
            .or_else(|| line.strip_prefix("WARNING:  "))
        {
            let skipped_next = log_lines
                .get(i + 1..)
                .into_iter()
                .flatten()
                .find(|l| l.starts_with("LOG:  "))
                .is_some_and(|l| l.contains("skipping missing authentication file"));
            let no_problem = m.ends_with(" was not reloaded")
                || m.starts_with("skipping missing authentication file")
                || (m.starts_with("could not open file") && skipped_next);
            message = (!no_problem).then_some(m);
        } else if let Some(context) = line.strip_prefix("CONTEXT:  line ") {
            if let Some(m) = message.take() {
                if let Some((number, file)) = context.split_once(" of configuration file ") {
                    if let Ok(number) = number.parse() {
                        found.push((file.trim_matches('"').to_string(), number, m.to_string()));
                    }
                }
            }
        }
    }
    found
}

#[derive(Default)]
struct Report {
    disagreements: Vec<String>,
    allowed: Vec<String>,
    known_bugs: Vec<String>,
    /// Cases that ran, and whether they disagreed.
    ran: Vec<(String, bool)>,
    rows_compared: usize,
}

impl Report {
    fn compare(
        &mut self,
        major: u32,
        case: &str,
        files: &[(PathBuf, Option<Vec<u8>>)],
        observed: &Observed,
        linted: &Linted,
        hba_dir: &Path,
    ) {
        let mut found = Vec::new();
        let dir = format!("{}/", hba_dir.display());
        let expected_status = if observed.loaded { 0 } else { 1 };
        if linted.status != Some(expected_status) {
            found.push(format!(
                "exit status {:?}, but the server {} the file (expected {expected_status}); server log of the reload:\n{}lint stderr:\n{}",
                linted.status,
                if observed.loaded { "loaded" } else { "did not load" },
                indent(&observed.reload_log),
                indent(&linted.stderr),
            ));
        }
        if let Some(problem) = &linted.stdout_problem {
            found.push(problem.clone());
        }
        // Every line the server complains about in its log (also what the
        // view cannot show, e.g. a bad clientcert value) must be named by the
        // lint's human output.
        let lint_locations: BTreeSet<(String, u32)> = linted
            .human_locations
            .iter()
            .map(|(f, l)| (f.replace(&dir, ""), *l))
            .collect();
        for (file, line, message) in server_problem_locations(&observed.reload_log_lines()) {
            let file = file.replace(&dir, "");
            // The server names the first physical line of a continued line;
            // the lint may name the physical line of the offending token.
            let span = files
                .iter()
                .find(|(path, _)| path.to_string_lossy() == file)
                .and_then(|(_, content)| content.as_deref())
                .map_or(1, |content| physical_lines_of(content, line));
            let mut named =
                (line..line + span).any(|l| lint_locations.contains(&(file.clone(), l)));
            // An error inside an @file is logged with the @file's line, but
            // shown in the view on the line that refers to the @file: naming
            // that line is as good.
            named |= observed.rows.iter().any(|row| {
                row.get("error").and_then(Value::as_str) == Some(message.as_str())
                    && row
                        .get("line_number")
                        .and_then(Value::as_u64)
                        .is_some_and(|l| {
                            let row_file = row
                                .get("file_name")
                                .and_then(Value::as_str)
                                .map_or_else(|| "pg_hba.conf".to_string(), |f| f.replace(&dir, ""));
                            lint_locations.contains(&(row_file, l as u32))
                        })
            });
            if !named {
                found.push(format!(
                    "the server logs a problem at {file}:{line} ({message}), the lint's human output does not name that line (it names {lint_locations:?})"
                ));
            }
        }
        if observed.rows.len() != linted.rows.len() {
            found.push(format!(
                "{} rows from the server, {} from the lint",
                observed.rows.len(),
                linted.rows.len()
            ));
        }
        for (i, (server_row, lint_row)) in observed.rows.iter().zip(&linted.rows).enumerate() {
            self.rows_compared += 1;
            let method = server_row
                .get("auth_method")
                .and_then(Value::as_str)
                .unwrap_or("");
            let line = server_row
                .get("line_number")
                .map(Value::to_string)
                .unwrap_or_default();
            // Compare the columns this version's view has (15 has neither
            // rule_number nor file_name).
            for (key, server_value) in server_row {
                if key == "options" && OPTIONS_EXEMPT.contains(&method) {
                    continue;
                }
                let server_value = relativize(server_value, &dir);
                let lint_value = relativize(lint_row.get(key).unwrap_or(&Value::Null), &dir);
                if server_value != lint_value {
                    found.push(format!(
                        "row {} (line {line}): {key}: server {server_value}, lint {lint_value}",
                        i + 1
                    ));
                }
            }
        }
        self.ran.push((case.to_string(), !found.is_empty()));
        if found.is_empty() {
            return;
        }
        let text = format!("pg{major} {case}:\n{}", indent(&found.join("\n")));
        let allowed = ALLOWED
            .iter()
            .any(|(name, versions, _)| *name == case && versions.contains(&major));
        let known = known_lint_bugs()
            .iter()
            .any(|(name, versions, _)| name == case && versions.contains(&major));
        if allowed {
            self.allowed.push(text);
        } else if known {
            self.known_bugs.push(text);
        } else {
            self.disagreements.push(text);
        }
    }

    fn finish(mut self, major: u32) {
        for text in &self.allowed {
            println!("allowed (see ALLOWED): {text}");
        }
        for text in &self.known_bugs {
            println!("KNOWN LINT BUG (see pghba/corpus/known-lint-bugs.txt): {text}");
        }
        for (name, versions, _) in known_lint_bugs() {
            let agrees_now = self
                .ran
                .iter()
                .any(|(case, disagreed)| *case == name && !disagreed);
            if versions.contains(&major) && agrees_now {
                self.disagreements.push(format!(
                    "pg{major} {name}: listed in pghba/corpus/known-lint-bugs.txt but the lint agrees with the server now: remove its line"
                ));
            }
        }
        if !self.disagreements.is_empty() {
            for text in &self.disagreements {
                println!("DISAGREEMENT {text}");
            }
            panic!(
                "PostgreSQL {major}: {} disagreement(s) between `knocker hba lint` and the server (listed above)",
                self.disagreements.len()
            );
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().fold(String::new(), |mut out, l| {
        let _ = writeln!(out, "    {l}");
        out
    })
}

/// `count` generated files, from a random seed (or `KNOCKER_HBA_SEED`), so a
/// failure can be replayed.
fn generated_files(count: usize) -> (u64, Vec<Vec<u8>>) {
    let seed = std::env::var("KNOCKER_HBA_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(rand_seed);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(ProptestConfig::default(), rng);
    let strategy = generate::file();
    let files = (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("generate a file")
                .current()
        })
        .collect();
    (seed, files)
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default(),
    );
    h.finish()
}

/// Strategies for pg_hba.conf files that are mostly plausible, with the odd
/// corner: quotes, comma lists, comments, continuations, bad addresses and
/// options.
mod generate {
    use super::*;
    use proptest::prelude::*;

    fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(items).prop_map(str::to_string)
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => pick(&["all", "app", "db1", "postgres", "sameuser", "samerole", "samegroup",
                        "replication", "+admins", "@missing", "/^app_", "/(", "x y", "é"]),
            1 => "[a-z_]{1,8}",
            1 => pick(&["\"all\"", "\"a,b\"", "\"\"", "\"a\"\"b\"", "a\"b c\"", "\"#x\"", "\"unterminated"]),
        ]
    }

    fn list() -> impl Strategy<Value = String> {
        (
            name(),
            proptest::collection::vec((pick(&[",", ", ", " ,", ",,"]), name()), 0..3),
        )
            .prop_map(|(first, rest)| {
                rest.into_iter().fold(first, |mut s, (sep, n)| {
                    s.push_str(&sep);
                    s.push_str(&n);
                    s
                })
            })
    }

    fn address() -> impl Strategy<Value = String> {
        // A named IPv6 scope (`fe80::1%lo`) is a known lint bug (see
        // pghba/corpus/known-lint-bugs.txt, case addr-ipv6-scope); generated files use a
        // numeric one until it is fixed.
        prop_oneof![
            4 => pick(&["127.0.0.1/32", "10.0.0.0/8", "0.0.0.0/0", "::1/128", "::/0",
                        "2001:db8::/32", "all", "samehost", "samenet", ".example.com",
                        "db.example.com", "127.1", "10.0.0.1/033", "10.0.0.0/33", "::1/129",
                        "10.1.2.3/8", "1.2.3.4.5", "host/24", "\"all\"", "10.0.0.0/",
                        "fe80::1%1/128", "10.0.0.0/8,10.1.0.0/16"]),
            1 => (0u8..=255, 0u8..=255, 0u8..=40).prop_map(|(a, b, p)| format!("{a}.{b}.0.0/{p}")),
            1 => pick(&["10.0.0.0 255.0.0.0", "10.0.0.0 255.0.255.0", "10.0.0.0 ffff::",
                        "::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "10.0.0.0 bogus"]),
        ]
    }

    fn method() -> impl Strategy<Value = String> {
        pick(&[
            "trust",
            "reject",
            "md5",
            "password",
            "scram-sha-256",
            "peer",
            "ident",
            "cert",
            "gss",
            "sspi",
            "pam",
            "bsd",
            "ldap",
            "radius",
            "oauth",
            "bogus",
            "Trust",
            "\"md5\"",
            "md5,trust",
        ])
    }

    fn options() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            pick(&[
                "map=m",
                "clientcert=verify-ca",
                "clientcert=verify-full",
                "clientcert=1",
                "clientname=DN",
                "clientname=cn",
                "pamservice=x",
                "include_realm=0",
                "krb_realm=R",
                "ldapserver=127.0.0.1",
                "ldapprefix=cn=",
                "ldapbasedn=dc=x",
                "ldapport=x",
                "radiusservers=127.0.0.1",
                "radiussecrets=s",
                "foo=bar",
                "map",
                "=x",
                "issuer=https://i.example.com",
                "scope=openid",
            ]),
            0..3,
        )
        .prop_map(|o| o.join(" "))
    }

    fn sep() -> impl Strategy<Value = String> {
        prop_oneof![6 => Just(" ".to_string()), 2 => Just("\t".to_string()),
                    1 => Just("   ".to_string()), 1 => Just(" \\\n".to_string())]
    }

    fn record() -> impl Strategy<Value = String> {
        (
            // Each of the eight equally likely: the six types and two typos.
            prop_oneof![
                6 => pick(&pghba::document::CONNECTION_TYPES),
                2 => pick(&["hots", "\"host\""]),
            ],
            list(),
            list(),
            address(),
            method(),
            options(),
            proptest::collection::vec(sep(), 5),
            proptest::option::weighted(0.2, pick(&["# comment", "#", "# x \\"])),
            0u8..20,
        )
            .prop_map(
                |(ty, db, user, addr, method, opts, seps, comment, truncate)| {
                    let mut fields = vec![ty, db, user];
                    if fields[0] != "local" || truncate == 0 {
                        fields.push(addr);
                    }
                    fields.push(method);
                    if !opts.is_empty() {
                        fields.push(opts);
                    }
                    // Now and then a line ends early.
                    if truncate == 1 {
                        fields.truncate(2);
                    } else if truncate == 2 {
                        fields.truncate(3);
                    }
                    let mut line = String::new();
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            line.push_str(&seps[i % seps.len()]);
                        }
                        line.push_str(f);
                    }
                    if let Some(c) = comment {
                        line.push(' ');
                        line.push_str(&c);
                    }
                    line
                },
            )
    }

    fn wild_line() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => record(),
            1 => Just(String::new()),
            1 => Just("# a comment".to_string()),
            1 => Just("include_if_exists nosuch.conf".to_string()),
            1 => Just("include nosuch.conf".to_string()),
            1 => Just("   ".to_string()),
        ]
    }

    fn valid_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => pick(&["all", "app", "db1", "postgres", "sameuser", "samerole", "replication",
                        "+admins", "\"all\"", "\"a,b\"", "\"x y\"", "\"a\"\"b\"", "a\"b c\"", "é"]),
            1 => "[a-z_]{1,8}",
        ]
    }

    fn valid_list() -> impl Strategy<Value = String> {
        (
            valid_name(),
            proptest::collection::vec((pick(&[",", ", ", ",,"]), valid_name()), 0..3),
        )
            .prop_map(|(first, rest)| {
                rest.into_iter().fold(first, |mut s, (sep, n)| {
                    s.push_str(&sep);
                    s.push_str(&n);
                    s
                })
            })
    }

    /// A record PostgreSQL 15-18 accepts (a full build, ssl on), in many
    /// spellings.
    fn valid_record() -> impl Strategy<Value = String> {
        (
            pick(&[
                "local",
                "host",
                "hostssl",
                "hostnossl",
                "hostnogssenc",
                "\"host\"",
            ]),
            valid_list(),
            valid_list(),
            pick(&[
                "127.0.0.1/32",
                "10.0.0.0/8",
                "0.0.0.0/0",
                "::1/128",
                "::/0",
                "2001:db8::/32",
                "all",
                "samehost",
                "samenet",
                ".example.com",
                "db.example.com",
                "127.1/32",
                "10.1.2.3/8",
                "10.0.0.0/08",
                "\"all\"",
                "10.0.0.0 255.0.0.0",
                "10.0.0.0 255.0.255.0",
                "1.2.3.4.5",
                "0x7f.1/32",
            ]),
            pick(&[
                "trust",
                "reject",
                "md5",
                "password",
                "scram-sha-256",
                "ident",
                "\"md5\"",
            ]),
            proptest::option::weighted(0.2, pick(&["# comment", "#", "# x \\"])),
            proptest::collection::vec(sep(), 5),
        )
            .prop_map(|(ty, db, user, addr, method, comment, seps)| {
                let local = ty == "local";
                let mut fields = vec![ty.clone(), db, user];
                if !local {
                    fields.push(addr);
                }
                let method = if local && method == "ident" {
                    "peer".to_string()
                } else {
                    method
                };
                let map = method == "ident" || method == "peer";
                fields.push(method);
                if map {
                    fields.push("map=m".to_string());
                } else if ty == "hostssl" && fields.last().is_none_or(|m| m != "trust") {
                    fields.push("clientcert=verify-ca".to_string());
                }
                let mut line = String::new();
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        line.push_str(&seps[i % seps.len()]);
                    }
                    line.push_str(f);
                }
                if let Some(c) = comment {
                    line.push(' ');
                    line.push_str(&c);
                }
                line
            })
    }

    fn valid_line() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => valid_record(),
            1 => Just(String::new()),
            1 => Just("# a comment".to_string()),
            1 => Just("   # indented comment \\".to_string()),
        ]
    }

    /// Lines of a file: mostly valid ones, or anything.
    fn lines() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            2 => proptest::collection::vec(valid_line(), 0..10),
            1 => (proptest::collection::vec(valid_line(), 1..10), wild_line(), any::<prop::sample::Index>())
                .prop_map(|(mut lines, wild, at)| {
                    let at = at.index(lines.len() + 1);
                    lines.insert(at, wild);
                    lines
                }),
            1 => proptest::collection::vec(wild_line(), 0..12),
        ]
    }

    /// A whole file: lines, LF or CRLF, with or without a final newline.
    pub(super) fn file() -> impl Strategy<Value = Vec<u8>> {
        (
            lines(),
            any::<bool>(),
            prop_oneof![8 => Just("\n"), 1 => Just("\r\n")],
        )
            .prop_map(|(lines, final_newline, eol)| {
                let mut text = lines.join(eol);
                if final_newline && !text.is_empty() {
                    text.push_str(eol);
                }
                text.into_bytes()
            })
    }
}
