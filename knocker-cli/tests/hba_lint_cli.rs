//! `knocker hba lint`: exit statuses, human output and `--json` rows.

use std::process::Command;

fn lint(text: &[u8], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg_hba.conf");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_knocker"))
        .args(["hba", "lint"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout)
        .unwrap()
        .replace(&path.to_string_lossy().into_owned(), "FILE");
    (
        out.status.code().unwrap(),
        stdout,
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn loadable_file_exits_0_and_prints_nothing() {
    let (code, out, _) = lint(
        b"local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n",
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "");
}

#[test]
fn every_problem_is_listed_with_file_line_column() {
    let (code, out, _) = lint(
        b"local all all peer\nhost all all 10.0.0.0/33 md5\nlocal all all\nhost all all all bogus\n",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "FILE:2:14: invalid CIDR mask in address \"10.0.0.0/33\"\n\
         FILE:3:11: end-of-line before authentication method\n\
         FILE:4:18: invalid authentication method \"bogus\"\n"
    );
}

#[test]
fn comment_only_file_does_not_load() {
    let (code, out, _) = lint(b"# nothing here\n", &[]);
    assert_eq!(code, 1);
    assert!(out.contains("contains no entries"), "{out}");
}

#[test]
fn json_prints_one_row_per_rule_line_only() {
    let (code, out, _) = lint(
        b"# c\nlocal all all ident\nhost all all 127.1/8 md5\n\nhost all all all ldap ldapserver=x ldapbasedn=y\n",
        &["--json", "--pg-version", "16", "--without", "ldap", "--without", "gssapi,pam"],
    );
    assert_eq!(code, 1);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["auth_method"], "peer");
    assert_eq!(rows[0]["rule_number"], 1);
    assert_eq!(rows[0]["line_number"], 2);
    assert_eq!(rows[1]["address"], "127.0.0.1");
    assert_eq!(rows[1]["netmask"], "255.0.0.0");
    assert_eq!(rows[2]["rule_number"], serde_json::Value::Null);
    assert_eq!(
        rows[2]["error"],
        "invalid authentication method \"ldap\": not supported by this build"
    );
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "rule_number",
        "file_name",
        "line_number",
        "type",
        "database",
        "user_name",
        "address",
        "netmask",
        "auth_method",
        "options",
        "error",
    ];
    expected.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected);
}

#[test]
fn unreadable_file_and_bad_usage_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_knocker"))
        .args(["hba", "lint", "/nonexistent/pg_hba.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let (code, _, _) = lint(b"local all all trust\n", &["--pg-version", "12"]);
    assert_eq!(code, 2);
    let (code, _, _) = lint(b"local all all trust\n", &["--without", "kerberos"]);
    assert_eq!(code, 2);
}

#[test]
fn version_changes_the_verdict() {
    let text = b"local all all trust\ninclude_if_exists missing.conf\n";
    assert_eq!(lint(text, &["--pg-version", "16"]).0, 0);
    assert_eq!(lint(text, &["--pg-version", "15"]).0, 1);
}

/// A file of a megabyte or more is mapped instead of read, and from
/// `PARALLEL_FROM` bytes its second half is checked on a second thread:
/// same verdict, same messages, same rows as the same lines in a small
/// file, down to the last line (without final newline) and a NUL byte
/// (which swallows the next line, and keeps the file on one thread).
#[test]
fn large_files_are_linted_like_small_ones() {
    for nul in [true, false] {
        lint_large_file(nul);
    }
}

fn lint_large_file(nul: bool) {
    let tail: &[u8] = if nul {
        b"host all all 10.0.0.0/33 md5\nlocal all a\0ll peer\nlocal all all trust\nlocal all all bogus"
    } else {
        b"host all all 10.0.0.0/33 md5\nlocal all a\\\nll peer\nlocal all all trust\nlocal all all bogus"
    };
    let mut text = Vec::new();
    let mut n = 0;
    while text.len() < pghba::check::PARALLEL_FROM + 1000 {
        n += 1;
        text.extend_from_slice(
            format!("host db{n} user{n} 10.0.{}.0/24 md5\n", n % 256).as_bytes(),
        );
    }
    text.extend_from_slice(tail);
    // FILE:LINE:COL of the small file's messages, moved down by n lines
    let (small_code, small, _) = lint(tail, &[]);
    let moved: String = small
        .lines()
        .map(|l| {
            let (line, rest) = l["FILE:".len()..].split_once(':').unwrap();
            format!("FILE:{}:{rest}\n", line.parse::<usize>().unwrap() + n)
        })
        .collect();
    assert!(small.lines().count() >= 2, "{small}");
    let (code, out, _) = lint(&text, &[]);
    assert_eq!((code, out), (small_code, moved));

    let (_, small_json, _) = lint(tail, &["--json"]);
    let (_, json, _) = lint(&text, &["--json"]);
    assert_eq!(json.lines().count(), n + small_json.lines().count());
    // the rows after the line number are the same
    let after_line = |row: &str| row.split_once("\"type\"").unwrap().1.to_string();
    let big_tail: Vec<String> = json.lines().skip(n).map(after_line).collect();
    let small_tail: Vec<String> = small_json.lines().map(after_line).collect();
    assert_eq!(big_tail, small_tail);
}
