//! Server-free differential test: the validator against what real PostgreSQL
//! 15-18 servers said about every corpus case (`pghba/corpus/oracle-pgNN.jsonl`,
//! written by `knocker-cli/tests/testsuite/hba_differential.rs`, which
//! checks the same against live servers).
//!
//! For each case and version: the rows `lint_bytes` produces must equal the
//! view's rows (options exempt for ldap, radius, gss, sspi, pam, bsd, oauth;
//! PostgreSQL 15's view has no `rule_number` and `file_name`), and the file
//! must load exactly when the server loaded it. The build is the one the
//! oracle was taken on: 15 a full build, 16-18 without LDAP, GSSAPI and PAM;
//! ssl on everywhere.
//!
//! Cases listed in `pghba/corpus/known-lint-bugs.txt` are printed but do not
//! fail; a listed case that agrees again does.

use std::path::{Path, PathBuf};

use pghba::{lint_bytes, BuildFeatures, FsLoader, PgVersion, ValidateOptions};
use serde_json::{Map, Value};

const OPTIONS_EXEMPT: [&str; 7] = ["ldap", "radius", "gss", "sspi", "pam", "bsd", "oauth"];

fn corpus_dir() -> PathBuf {
    pg_harness::corpus::pghba_corpus_dir()
}

fn known_lint_bugs() -> Vec<(String, Vec<u32>)> {
    pg_harness::corpus::known_lint_bugs()
        .into_iter()
        .map(|b| (b.case, b.versions))
        .collect()
}

/// Copies a case (a `.conf` file, or a directory with `pg_hba.conf`) into
/// `dir`; returns the path of its `pg_hba.conf`.
fn install(case: &str, dir: &Path) -> PathBuf {
    let source = corpus_dir().join(case);
    let hba = dir.join("pg_hba.conf");
    if source.is_dir() {
        copy_dir(&source, dir);
    } else {
        std::fs::copy(&source, &hba).expect("copy corpus file");
    }
    hba
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read corpus dir") {
        let path = entry.expect("corpus entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            std::fs::create_dir(&target).expect("create dir");
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

fn options(major: u32) -> ValidateOptions {
    let full = major == 15;
    ValidateOptions {
        version: PgVersion::new(major).expect("supported version"),
        build: BuildFeatures {
            ssl: true,
            gssapi: full,
            ldap: full,
            pam: full,
        },
        ..ValidateOptions::for_version(PgVersion::new(major).expect("supported version"))
    }
}

fn relativize(value: &Value, dir: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(dir, "")),
        Value::Array(items) => Value::Array(items.iter().map(|v| relativize(v, dir)).collect()),
        other => other.clone(),
    }
}

/// The disagreements of one case, empty when lint and server agree.
fn compare(major: u32, oracle: &Map<String, Value>) -> Vec<String> {
    let case = oracle["case"].as_str().expect("case name");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().canonicalize().expect("canonical temp dir");
    let hba = install(case, &dir);
    let bytes = std::fs::read(&hba).expect("read installed case");
    let report = lint_bytes(
        &hba.to_string_lossy(),
        &bytes,
        &mut FsLoader,
        &options(major),
    );
    let prefix = format!("{}/", dir.display());
    let mut found = Vec::new();

    let loads = oracle["loads"].as_bool().expect("loads");
    if report.verdict.loads != loads {
        found.push(format!(
            "the server {} the file, the lint says it {}",
            if loads { "loaded" } else { "did not load" },
            if report.verdict.loads {
                "loads"
            } else {
                "does not load"
            }
        ));
    }
    let server_rows = oracle["rows"].as_array().expect("rows");
    if server_rows.len() != report.rows.len() {
        found.push(format!(
            "{} rows from the server, {} from the lint",
            server_rows.len(),
            report.rows.len()
        ));
    }
    for (i, (server_row, lint_row)) in server_rows.iter().zip(&report.rows).enumerate() {
        let server_row = server_row.as_object().expect("row object");
        let lint_row = serde_json::to_value(lint_row).expect("row to JSON");
        let method = server_row
            .get("auth_method")
            .and_then(Value::as_str)
            .unwrap_or("");
        for (key, server_value) in server_row {
            if key == "options" && OPTIONS_EXEMPT.contains(&method) {
                continue;
            }
            let lint_value = relativize(lint_row.get(key).unwrap_or(&Value::Null), &prefix);
            if *server_value != lint_value {
                found.push(format!(
                    "row {} (line {}): {key}: server {server_value}, lint {lint_value}",
                    i + 1,
                    server_row.get("line_number").unwrap_or(&Value::Null)
                ));
            }
        }
    }
    found
}

fn check_version(major: u32) {
    let path = corpus_dir().join(format!("oracle-pg{major}.jsonl"));
    let text = std::fs::read_to_string(&path).expect("read oracle file");
    let known = known_lint_bugs();
    let mut failures = Vec::new();
    let mut cases = 0;
    for line in text.lines() {
        let oracle: Map<String, Value> = serde_json::from_str(line).expect("oracle line");
        let case = oracle["case"].as_str().expect("case name").to_string();
        cases += 1;
        let found = compare(major, &oracle);
        let is_known = known
            .iter()
            .any(|(name, versions)| *name == case && versions.contains(&major));
        match (found.is_empty(), is_known) {
            (true, false) => {}
            (true, true) => failures.push(format!(
                "pg{major} {case}: listed in corpus/known-lint-bugs.txt but agrees with the server now: remove its line"
            )),
            (false, true) => println!("KNOWN LINT BUG pg{major} {case}:\n    {}", found.join("\n    ")),
            (false, false) => failures.push(format!("pg{major} {case}:\n    {}", found.join("\n    "))),
        }
    }
    assert!(cases >= 150, "the oracle of {major} covers the corpus");
    for f in &failures {
        println!("DISAGREEMENT {f}");
    }
    assert!(
        failures.is_empty(),
        "PostgreSQL {major}: {} disagreement(s) with the oracle (listed above)",
        failures.len()
    );
}

#[test]
fn lint_agrees_with_oracle_pg15() {
    check_version(15);
}

#[test]
fn lint_agrees_with_oracle_pg16() {
    check_version(16);
}

#[test]
fn lint_agrees_with_oracle_pg17() {
    check_version(17);
}

#[test]
fn lint_agrees_with_oracle_pg18() {
    check_version(18);
}
