//! The exposedb block planner's cases as directories, checked as
//! snapshots: `tests/block_cases/<case>/` holds `in.conf` (the
//! pg_hba.conf before), `request.json` (what is asked, [`CaseRequest`]),
//! and what the planner answers: `out.conf` (the new file) or `error.txt`
//! (why it refused), and `expected.json` (what the change reports, the
//! block's rules in the new file, and which line chosen connections hit).
//!
//! `SNAPSHOTS=overwrite cargo nextest run -p knocker-ops --test
//! block_cases` rewrites the answers from what the planner does now;
//! review them with `git diff` before committing.
//!
//! Besides the snapshots, every case that succeeds is checked for what
//! holds of any plan: asking again changes nothing, taking the added CIDRs
//! out leaves the empty block, and removing the block leaves the file as
//! it was without one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use knocker_ops::exposedb::block::{
    self, connection, list, plan, plan_walking, rule_set, rule_text, Change, EarlierLine, HbaFile,
    PlanError, Request, Scope, BEGIN_MARKER, END_MARKER,
};
use pghba::check::DirEntry;
use pghba::matcher::StaticContext;
use pghba::{FileLoader, HbaDocument, PgVersion};
use serde_json::{json, Value};

/// The directory the top file is in: included files are named from it.
const DIR: &str = "/etc/postgresql/16/main";

/// A case's `request.json`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    /// The server's major version (16 when absent).
    #[serde(default = "default_version")]
    version: u32,
    /// The block's scope (database `knocknoc`, role `knocknoc_remote`,
    /// `host` when absent).
    #[serde(default)]
    scope: CaseScope,
    /// CIDRs to add.
    #[serde(default)]
    add: Vec<String>,
    /// CIDRs to take out.
    #[serde(default)]
    remove: Vec<String>,
    /// The comment after each new rule (`c` when absent).
    #[serde(default = "default_comment")]
    comment: String,
    /// Go on past an earlier reject of the operator's.
    #[serde(default)]
    force: bool,
    /// Remove the whole block (`block::remove`) instead of planning.
    #[serde(default)]
    remove_block: bool,
    /// Other files the server may read (includes, `@file` lists), by path
    /// relative to [`DIR`] or absolute, with their text.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Client addresses whose first matching line in the new file is
    /// reported (a connection to the scope's database as its role).
    #[serde(default)]
    explain: Vec<std::net::IpAddr>,
}

/// The scope of a case's request.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseScope {
    database: String,
    user: String,
    #[serde(default)]
    hostssl: bool,
}

impl Default for CaseScope {
    fn default() -> Self {
        CaseScope {
            database: "knocknoc".into(),
            user: "knocknoc_remote".into(),
            hostssl: false,
        }
    }
}

fn default_version() -> u32 {
    16
}

fn default_comment() -> String {
    "c".into()
}

/// Files in memory, by absolute path; directories are the paths with a
/// `/` after them.
#[derive(Clone, Default)]
struct MemFiles(HashMap<String, Vec<u8>>);

impl MemFiles {
    fn from_case(files: &BTreeMap<String, String>) -> MemFiles {
        MemFiles(
            files
                .iter()
                .map(|(name, text)| {
                    let path = if name.starts_with('/') {
                        name.clone()
                    } else {
                        format!("{DIR}/{name}")
                    };
                    (path, text.as_bytes().to_vec())
                })
                .collect(),
        )
    }

    fn with(mut self, path: &str, text: &str) -> Self {
        self.0.insert(path.to_string(), text.as_bytes().to_vec());
        self
    }
}

impl FileLoader for MemFiles {
    fn read_file(&mut self, path: &str) -> std::io::Result<Vec<u8>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from_raw_os_error(2))
    }

    fn read_dir(&mut self, path: &str) -> std::io::Result<Vec<DirEntry>> {
        let dir = format!("{path}/");
        let names: Vec<_> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&dir))
            .filter(|rest| !rest.contains('/'))
            .map(|name| DirEntry {
                name: name.to_string(),
                is_dir: false,
            })
            .collect();
        if names.is_empty() {
            return Err(std::io::Error::from_raw_os_error(2));
        }
        Ok(names)
    }
}

/// The top file's path in every case.
fn top_path() -> String {
    format!("{DIR}/pg_hba.conf")
}

fn earlier_json(line: &EarlierLine) -> Value {
    json!({
        "file": line.file,
        "included": line.included,
        "line": line.line_number,
        "text": line.text,
        "rejects": line.rejects,
        "covers_all": line.covers_all,
    })
}

fn parse_nets(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect()
}

fn nets(list: &[IpNet]) -> Vec<String> {
    list.iter().map(IpNet::to_string).collect()
}

fn change_json(c: &Change) -> Value {
    json!({
        "created_block": c.created_block,
        "added": nets(&c.added),
        "already_present": nets(&c.already_present),
        "removed": nets(&c.removed),
        "absent": nets(&c.absent),
        "shadowed_by": c.shadowed_by.iter().map(|(net, line)| {
            let mut v = earlier_json(line);
            v["net"] = json!(net.to_string());
            v
        }).collect::<Vec<_>>(),
    })
}

fn error_json(e: &PlanError) -> Value {
    match e {
        PlanError::RejectedBy { net, line } => {
            json!({"rejected_by": {"net": net.to_string(), "line": earlier_json(line)}})
        }
        PlanError::BadName(name) => json!({ "bad_name": name }),
        PlanError::Block(e) => json!({ "broken_markers": e.to_string() }),
    }
}

/// The block's rules in `text`, as `list` reads them.
fn block_json(text: &[u8], version: PgVersion) -> Value {
    let doc = HbaDocument::parse_for(text, version);
    match list(&doc, version) {
        Ok(rules) => rules
            .iter()
            .map(|r| {
                json!({
                    "line": r.line_number,
                    "net": r.net.to_string(),
                    "type": r.connection_type.as_str(),
                    "databases": r.databases,
                    "users": r.users,
                    "comment": r.comment,
                })
            })
            .collect(),
        Err(e) => json!(e.to_string()),
    }
}

/// Which line of `text` (includes through `files`) each address of the
/// request hits, as `--explain` asks it.
fn explain_json(
    text: &[u8],
    version: PgVersion,
    files: &mut MemFiles,
    scope: &Scope,
    addrs: &[std::net::IpAddr],
) -> Value {
    let path = top_path();
    let file = HbaFile {
        path: &path,
        text,
        version,
    };
    let rules = rule_set(&file, files, scope.hostssl);
    let ctx = StaticContext::default();
    let mut out = serde_json::Map::new();
    for addr in addrs {
        let m = rules.first_match(&connection(scope, *addr), &ctx);
        let hit = m.rule().map(|r| {
            json!({
                "file": r.file,
                "line": r.line,
                "method": r.rule.method.as_str(),
                "text": rule_text(&file, files, r),
            })
        });
        out.insert(addr.to_string(), json!({"certain": m.certain, "hit": hit}));
    }
    Value::Object(out)
}

/// What a case produced: the files of its directory that hold answers.
struct Answers {
    /// `out.conf` or `error.txt`, and its bytes.
    text: (&'static str, Vec<u8>),
    expected: Value,
}

fn run_case(dir: &Path) -> Answers {
    let old = std::fs::read(dir.join("in.conf")).unwrap();
    let req: CaseRequest =
        serde_json::from_slice(&std::fs::read(dir.join("request.json")).unwrap())
            .unwrap_or_else(|e| panic!("{}: request.json: {e}", dir.display()));
    let version = PgVersion::new(req.version).unwrap();
    let scope = Scope {
        database: req.scope.database.clone(),
        user: req.scope.user.clone(),
        hostssl: req.scope.hostssl,
    };
    let files = MemFiles::from_case(&req.files);
    if req.remove_block {
        return match block::remove(&old, version) {
            Ok((new, had)) => Answers {
                expected: json!({"had_block": had, "block": block_json(&new, version)}),
                text: ("out.conf", new),
            },
            Err(e) => Answers {
                expected: error_json(&e),
                text: ("error.txt", format!("{e}\n").into_bytes()),
            },
        };
    }
    let request = Request {
        add: parse_nets(&req.add),
        remove: parse_nets(&req.remove),
        comment: req.comment.clone(),
        force: req.force,
    };
    let path = top_path();
    let file = HbaFile {
        path: &path,
        text: &old,
        version,
    };
    match plan(&file, &mut files.clone(), &scope, &request) {
        Ok(change) => {
            check_invariants(dir, &file, &files, &scope, &request, &change);
            let mut expected = json!({
                "change": change_json(&change),
                "block": block_json(&change.new_text, version),
            });
            if !req.explain.is_empty() {
                expected["explain"] = explain_json(
                    &change.new_text,
                    version,
                    &mut files.clone(),
                    &scope,
                    &req.explain,
                );
            }
            Answers {
                expected,
                text: ("out.conf", change.new_text),
            }
        }
        Err(e) => {
            // A refused plan never depends on whether it is asked twice.
            let again = plan(&file, &mut files.clone(), &scope, &request);
            assert_eq!(again.as_ref().err(), Some(&e), "{}", dir.display());
            let mut expected = error_json(&e);
            if !req.explain.is_empty() {
                expected["explain"] =
                    explain_json(&old, version, &mut files.clone(), &scope, &req.explain);
            }
            Answers {
                expected,
                text: ("error.txt", format!("{e}\n").into_bytes()),
            }
        }
    }
}

/// What holds of every plan that succeeds, asserted rather than
/// snapshotted.
fn check_invariants(
    dir: &Path,
    file: &HbaFile<'_>,
    files: &MemFiles,
    scope: &Scope,
    request: &Request,
    change: &Change,
) {
    let case = dir.display();
    let new = HbaFile {
        text: &change.new_text,
        ..*file
    };
    // Asking again (past any reject: the first answer already went past
    // it or met none) changes nothing: what was added is present.
    let again = plan(
        &new,
        &mut files.clone(),
        scope,
        &Request {
            force: true,
            ..request.clone()
        },
    )
    .unwrap_or_else(|e| panic!("{case}: asked again: {e}"));
    assert!(!again.changed(), "{case}: asked again, it changes");
    assert_eq!(again.new_text, change.new_text, "{case}: asked again");
    for net in &change.added {
        assert!(
            again.already_present.contains(net),
            "{case}: {net} not present"
        );
    }
    // Taking the added CIDRs out again leaves what an empty request
    // leaves: the block (created if it was missing) without them.
    if request.remove.is_empty() && !change.added.is_empty() {
        let undo = plan(
            &new,
            &mut files.clone(),
            scope,
            &Request {
                remove: change.added.clone(),
                ..Request::default()
            },
        )
        .unwrap_or_else(|e| panic!("{case}: undo: {e}"));
        let empty = plan(file, &mut files.clone(), scope, &Request::default())
            .unwrap_or_else(|e| panic!("{case}: empty request: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&undo.new_text),
            String::from_utf8_lossy(&empty.new_text),
            "{case}: adding then removing is not the empty block"
        );
    }
    // Without the block, the old and the new file are the same (a final
    // line the block was put after gets its line terminator).
    let (old_without, _) = block::remove(file.text, file.version).unwrap();
    let (new_without, _) = block::remove(&change.new_text, file.version).unwrap();
    let mut terminated = old_without.clone();
    if !terminated.is_empty() && !terminated.ends_with(b"\n") {
        terminated.push(b'\n');
    }
    assert!(
        new_without == old_without || new_without == terminated,
        "{case}: without the block the file differs:\n{}",
        knocker_ops::diff::unified("pg_hba.conf", &old_without, &new_without)
    );
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/block_cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Compares (or with `SNAPSHOTS=overwrite` writes) one answer file;
/// returns a description of the difference.
fn compare(path: &Path, actual: &[u8], overwrite: bool) -> Option<String> {
    let expected = std::fs::read(path).ok();
    if expected.as_deref() == Some(actual) {
        return None;
    }
    if overwrite {
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let name = path.display().to_string();
    Some(match expected {
        None => format!("{name} is missing"),
        Some(expected) => knocker_ops::diff::unified(&name, &expected, actual),
    })
}

#[test]
fn block_planner_cases() {
    let overwrite = std::env::var("SNAPSHOTS").as_deref() == Ok("overwrite");
    let dirs = case_dirs();
    assert!(dirs.len() >= 40, "the cases are missing: {}", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let answers = run_case(dir);
        let (name, text) = &answers.text;
        let other = if *name == "out.conf" {
            "error.txt"
        } else {
            "out.conf"
        };
        if dir.join(other).exists() {
            if overwrite {
                std::fs::remove_file(dir.join(other)).unwrap();
            } else {
                failures.push(format!(
                    "{}: {other} but the plan gives {name}",
                    dir.display()
                ));
            }
        }
        let mut json = serde_json::to_string_pretty(&answers.expected).unwrap();
        json.push('\n');
        for (path, actual) in [
            (dir.join(name), text.as_slice()),
            (dir.join("expected.json"), json.as_bytes()),
        ] {
            failures.extend(compare(&path, actual, overwrite));
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s); rerun with SNAPSHOTS=overwrite to accept them:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The new text is walked once, whole, and only when it changes (the
/// walk a caller's validation makes); the rules the walk selects are the
/// operator's before the block that touch an added CIDR: a reject after
/// the block (in the top file or an included one) is not asked about.
#[test]
fn the_new_text_is_walked_once_for_a_change() {
    let mut files = MemFiles::default().with(
        &format!("{DIR}/late.conf"),
        "host all all 10.0.0.0/8 reject\n",
    );
    let old = format!(
        "host all all 10.9.0.0/16 md5\nhost all all 192.0.2.0/24 reject\n\
         {BEGIN_MARKER}\n{END_MARKER}\ninclude late.conf\nhost all all 0.0.0.0/0 reject\n"
    );
    let path = top_path();
    let file = HbaFile {
        path: &path,
        text: old.as_bytes(),
        version: PgVersion::V16,
    };
    let scope = Scope {
        database: "knocknoc".into(),
        user: "knocknoc_remote".into(),
        hostssl: false,
    };
    let request = Request {
        add: vec!["10.9.1.0/24".parse().unwrap()],
        comment: "c".into(),
        ..Request::default()
    };
    let mut walks = Vec::new();
    let change = plan_walking(
        &file,
        &mut files,
        &scope,
        &request,
        &mut |text, loader, select, observe| {
            let mut selected = Vec::new();
            let opts = pghba::ValidateOptions::for_version(PgVersion::V16);
            pghba::check_bytes(file.path, text, loader, &opts, &mut |l| {
                if select(l) {
                    selected.push((l.file_name.to_string(), l.line_number));
                    observe(l);
                }
            });
            walks.push((text.to_vec(), selected));
        },
    )
    .unwrap();
    assert_eq!(walks.len(), 1);
    assert_eq!(walks[0].0, change.new_text);
    assert_eq!(walks[0].1, vec![(file.path.to_string(), 1)]);
    assert_eq!(change.shadowed_by.len(), 1);
    // nothing to change: no walk
    let mut walked = 0;
    let again = Request {
        add: vec![],
        ..request
    };
    plan_walking(
        &HbaFile {
            text: &change.new_text,
            ..file
        },
        &mut files,
        &scope,
        &again,
        &mut |_, _, _, _| walked += 1,
    )
    .unwrap();
    assert_eq!(walked, 0);
}
