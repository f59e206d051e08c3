//! Benchmark of `knocker hba lint` on large generated pg_hba.conf files, side
//! by side with PostgreSQL's own parse and pgtoolkit's Python parser.
//!
//! Run it with `cargo xtask bench hba` (or `cargo bench -p knocker-cli --bench
//! hba`; arguments after `--`: `--sizes 1000,10000`, `--skip-pgtoolkit`,
//! `--keep-files` to leave the generated files in `target/bench-hba/` for
//! profiling).
//! It is a plain `harness = false` program: nothing here is part of the
//! default test build, and CI does not run it.
//!
//! For each size (rules per file), after a warm-up, in rounds of one
//! measurement of each contender (so that a machine getting slower or
//! faster during the run affects all three alike), medians of the rounds:
//! * lint: the whole `knocker hba lint --pg-version 15 FILE` process (release
//!   build), wall time from spawn to exit, also pinned to one CPU with
//!   `taskset` (from 2 MiB a file's second half is checked on a second
//!   thread); peak RSS from the warm-up run under `/usr/bin/time -v`;
//! * PostgreSQL 15: the file installed as a throwaway server's `hba_file`,
//!   `SELECT count(*) FROM pg_hba_file_rules` minus `SELECT 1`, i.e. the
//!   server reading, tokenizing and parsing the file;
//! * pgtoolkit: `pgtoolkit.hba.parse(path)` timed inside Python, from a venv
//!   made under `target/bench-hba/` (one run only at 1M rules).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
const PG_MAJOR: u32 = 15;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = DEFAULT_SIZES.to_vec();
    let mut with_pgtoolkit = true;
    let mut keep_files = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--sizes" => {
                i += 1;
                sizes = args
                    .get(i)
                    .expect("--sizes needs a value")
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .replace('_', "")
                            .parse()
                            .expect("a size is a number")
                    })
                    .collect();
            }
            "--skip-pgtoolkit" => with_pgtoolkit = false,
            "--keep-files" => keep_files = true,
            // `cargo bench` passes `--bench`; ignore what we do not know.
            _ => {}
        }
        i += 1;
    }

    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-hba");
    std::fs::create_dir_all(&work).expect("create target/bench-hba");
    let python = if with_pgtoolkit {
        Some(pgtoolkit_venv(&work))
    } else {
        None
    };

    let mut results = Vec::new();
    pg_harness::block_on(async {
        let pg =
            pg_harness::Cluster::start_with(PG_MAJOR, pg_harness::ClusterOptions::with_ssl()).await;
        let client = pg.connect().await;
        let version: String = client
            .query_one("SELECT version()", &[])
            .await
            .expect("version()")
            .get(0);
        println!("PostgreSQL: {version}");
        for &rules in &sizes {
            let file = work.join(format!("rules-{rules}.conf"));
            let text = generate(rules);
            std::fs::write(&file, &text).expect("write generated file");
            let runs = runs_for(rules);
            eprintln!("{rules} rules ({} bytes), {runs} rounds", text.len());
            // The server reads its hba_file from disk for the view; no reload
            // is needed (and none is done: the open connection stays usable).
            std::fs::write(pg.hba_file(), &text).expect("install hba file");
            let count = || async {
                let t = Instant::now();
                let row = client
                    .query_one("SELECT count(*) FROM pg_hba_file_rules", &[])
                    .await
                    .expect("count pg_hba_file_rules");
                let elapsed = t.elapsed();
                let n: i64 = row.get(0);
                assert_eq!(n as usize, rules + 1, "the server sees every rule");
                let t = Instant::now();
                client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
                (elapsed, t.elapsed())
            };
            let errors: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
                    &[],
                )
                .await
                .expect("count errors")
                .get(0);
            assert_eq!(errors, 0, "the generated file is valid for PostgreSQL");

            // Warm-up (not counted): the peak RSS run under /usr/bin/time,
            // one server parse. Then rounds of one measurement of each, so
            // that a machine getting slower or faster during the run affects
            // all three alike. After a pgtoolkit run, one lint run is not
            // counted: the first process after one that freed a Python heap
            // of this size can start ~50% slower here (seen at 100k rules).
            let max_rss_kib = lint_max_rss_kib(&file);
            count().await;
            let pgtoolkit_runs = if rules >= 1_000_000 { 1 } else { runs };
            let (mut lint_times, mut core_times, mut count_times, mut one_times, mut tk_times) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 0..runs {
                if let Some(py) = python.as_ref().filter(|_| round < pgtoolkit_runs) {
                    tk_times.push(measure_pgtoolkit(py, &file));
                    time_lint(&file, false);
                }
                lint_times.push(time_lint(&file, false));
                core_times.push(time_lint(&file, true));
                let (c, o) = count().await;
                count_times.push(c);
                one_times.push(o);
            }
            // the spread, on stderr: how much to trust the medians
            for (what, times) in [
                ("lint", &lint_times),
                ("lint on one core", &core_times),
                ("server count(*)", &count_times),
                ("pgtoolkit", &tk_times),
            ] {
                let list: Vec<String> = times.iter().map(|&d| ms(d)).collect();
                eprintln!("  {what} (ms): {}", list.join(" "));
            }
            let lint = LintMeasure {
                wall: median(&mut lint_times),
                one_core: median(&mut core_times),
                max_rss_kib,
            };
            let server = median(&mut count_times).saturating_sub(median(&mut one_times));
            let pgtoolkit = (!tk_times.is_empty()).then(|| median(&mut tk_times));

            results.push(Row {
                rules,
                bytes: text.len(),
                lint,
                server,
                pgtoolkit,
            });
            if !keep_files {
                std::fs::remove_file(&file).ok();
            }
        }
    });

    let table = table(&results);
    println!("\n{table}");
    std::fs::write(work.join("results.md"), &table).expect("write results.md");
    println!("(also in target/bench-hba/results.md)");
}

struct Row {
    rules: usize,
    bytes: usize,
    lint: LintMeasure,
    server: Duration,
    pgtoolkit: Option<Duration>,
}

struct LintMeasure {
    wall: Duration,
    /// Pinned to one CPU (`taskset`): without the second thread.
    one_core: Duration,
    max_rss_kib: u64,
}

/// Rounds per size (pgtoolkit runs once at 1M rules: half a minute).
fn runs_for(rules: usize) -> usize {
    match rules {
        0..=10_000 => 11,
        10_001..=100_000 => 9,
        _ => 3,
    }
}

/// A deterministic file of `rules` rules (plus one `local` line first, so the
/// count is `rules + 1`), in the shapes real files have: comments every ten
/// rules, lists, groups, quoted names, IPv4/IPv6 CIDRs, separate netmasks,
/// host names and options. All valid for PostgreSQL 15.
fn generate(rules: usize) -> String {
    let mut out = String::with_capacity(rules * 64);
    out.push_str("# generated by knocker-cli/benches/hba.rs\n");
    out.push_str("local   all             postgres                                peer\n");
    for i in 0..rules {
        if i % 10 == 0 {
            let _ = writeln!(out, "# group {}", i / 10);
        }
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        let _ = match i % 7 {
            0 => writeln!(out, "host    db{i}           user{i}         10.{a}.{b}.{c}/32        scram-sha-256"),
            1 => writeln!(out, "hostssl app{i},shared   +group{}        192.168.{c}.0/24          scram-sha-256 clientcert=verify-ca", i % 50),
            2 => writeln!(out, "host    all             user{i}         2001:db8:{:x}:{:x}::/64    md5", (i >> 16) & 0xffff, i & 0xffff),
            3 => writeln!(out, "hostnossl db{i}         all             172.16.{b}.{c} 255.255.255.255 reject"),
            4 => writeln!(out, "local   db{i}           user{i}                                 peer map=m{}", i % 10),
            5 => writeln!(out, "host    \"quoted db {i}\" all             .example{i}.com          scram-sha-256"),
            _ => writeln!(out, "hostssl sameuser        u{i},v{i}\tall\ttrust"),
        };
    }
    out
}

fn knocker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_knocker"))
}

/// Wall time of one whole `knocker hba lint` process.
fn time_lint(file: &Path, one_core: bool) -> Duration {
    let mut command = if one_core {
        // a large file's second half is checked on a second thread: this
        // shows what one core does
        let mut c = Command::new("taskset");
        c.args(["--cpu-list", "0"]).arg(knocker());
        c
    } else {
        Command::new(knocker())
    };
    let t = Instant::now();
    let status = command
        .args(["hba", "lint", "--pg-version", &PG_MAJOR.to_string()])
        .arg(file)
        .stdout(Stdio::null())
        .status()
        .expect("run knocker hba lint");
    let elapsed = t.elapsed();
    assert!(
        status.success(),
        "knocker hba lint did not accept the generated file"
    );
    elapsed
}

/// Peak RSS of one `knocker hba lint` process (`/usr/bin/time -v`).
fn lint_max_rss_kib(file: &Path) -> u64 {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(knocker())
        .args(["hba", "lint", "--pg-version", &PG_MAJOR.to_string()])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run /usr/bin/time -v knocker hba lint");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "knocker hba lint did not accept the generated file:\n{stderr}"
    );
    stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("/usr/bin/time -v reports the maximum resident set size")
}

/// Makes (once) a venv with pgtoolkit under `work` and returns its python.
fn pgtoolkit_venv(work: &Path) -> PathBuf {
    let venv = work.join("venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv")
            .success();
        assert!(ok, "python3 -m venv failed");
    }
    let have = Command::new(&python)
        .args(["-c", "import pgtoolkit.hba"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "pgtoolkit"])
            .status()
            .expect("run pip install pgtoolkit")
            .success();
        assert!(ok, "pip install pgtoolkit failed");
    }
    let version = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('pgtoolkit'))",
        ])
        .output()
        .expect("pgtoolkit version");
    println!(
        "pgtoolkit: {} ({})",
        String::from_utf8_lossy(&version.stdout).trim(),
        python.display()
    );
    python
}

const PGTOOLKIT_TIMER: &str = r#"
import sys, time
from pgtoolkit import hba
path = sys.argv[1]
t = time.perf_counter()
parsed = hba.parse(path)
elapsed = time.perf_counter() - t
assert len(parsed.lines) > 0
print(elapsed)
"#;

/// One `pgtoolkit.hba.parse(path)`, timed inside Python (interpreter start
/// and import not counted).
fn measure_pgtoolkit(python: &Path, file: &Path) -> Duration {
    let out = Command::new(python)
        .args(["-c", PGTOOLKIT_TIMER])
        .arg(file)
        .output()
        .expect("run pgtoolkit timer");
    assert!(
        out.status.success(),
        "pgtoolkit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pgtoolkit timer prints seconds");
    Duration::from_secs_f64(secs)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| rules | file size | `knocker hba lint` (ms) | on one core (ms) | lint peak RSS | RSS / file size | PostgreSQL 15 parse (ms) | pgtoolkit parse (ms) | PostgreSQL / lint | pgtoolkit / lint |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let lint = r.lint.wall.as_secs_f64();
        let (tk, tk_ratio) = match r.pgtoolkit {
            Some(d) => (ms(d), format!("{:.0}x", d.as_secs_f64() / lint)),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} MB | {} | {} | {:.1} MB | {:.2} | {} | {} | {:.1}x | {} |",
            r.rules,
            r.bytes as f64 / 1e6,
            ms(r.lint.wall),
            ms(r.lint.one_core),
            r.lint.max_rss_kib as f64 * 1024.0 / 1e6,
            r.lint.max_rss_kib as f64 * 1024.0 / r.bytes as f64,
            ms(r.server),
            tk,
            r.server.as_secs_f64() / lint,
            tk_ratio,
        );
    }
    out
}
