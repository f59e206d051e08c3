//! `knocker hba lint`: exit statuses, human output and `--json` rows.

use std::path::PathBuf;
use std::process::{Command, Output};

use snapbox::{str, IntoData};

/// Runs `knocker hba lint FILE ARGS` on a file holding `text`; the
/// directory lives as long as the result.
fn run_lint(text: &[u8], args: &[&str]) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg_hba.conf");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_knocker"))
        .args(["hba", "lint"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    (dir, path, out)
}

/// Exit code, stdout and stderr of a lint of `text` (the file's path
/// written `FILE`); also used by `hba_lint_shadowing`.
pub(crate) fn lint(text: &[u8], args: &[&str]) -> (i32, String, String) {
    let (_dir, path, out) = run_lint(text, args);
    let name = path.to_string_lossy().into_owned();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap().replace(&name, "FILE");
    (
        out.status.code().unwrap(),
        text(out.stdout),
        text(out.stderr),
    )
}

/// Checks a lint of `text` whole: exit code, standard output and standard
/// error, the file's path written `[FILE]`.
fn expect_lint(text: &[u8], args: &[&str], code: i32, out: impl IntoData, err: impl IntoData) {
    let (_dir, path, o) = run_lint(text, args);
    expect_run(&o, path, code, out, err);
}

/// Checks a run whole, `file`'s path written `[FILE]`.
fn expect_run(o: &Output, file: PathBuf, code: i32, out: impl IntoData, err: impl IntoData) {
    let mut redactions = snapbox::Redactions::new();
    redactions.insert("[FILE]", file).unwrap();
    let assert = snapbox::Assert::new()
        .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
        .redact_with(redactions);
    assert.eq(String::from_utf8_lossy(&o.stdout).into_owned(), out);
    assert.eq(String::from_utf8_lossy(&o.stderr).into_owned(), err);
    assert_eq!(o.status.code(), Some(code));
}

#[test]
fn loadable_file_exits_0_and_prints_nothing() {
    expect_lint(
        b"local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n",
        &[],
        0,
        "",
        "",
    );
}

#[test]
fn every_problem_is_listed_with_file_line_column() {
    expect_lint(
        b"local all all peer\nhost all all 10.0.0.0/33 md5\nlocal all all\nhost all all all bogus\n",
        &[],
        1,
        "[FILE]:2:14: invalid CIDR mask in address \"10.0.0.0/33\"\n\
         [FILE]:3:11: end-of-line before authentication method\n\
         [FILE]:4:18: invalid authentication method \"bogus\"\n",
        "",
    );
}

#[test]
fn comment_only_file_does_not_load() {
    expect_lint(
        b"# nothing here\n",
        &[],
        1,
        str![[r#"
[FILE]:1:1: configuration file "[FILE]" contains no entries

"#]],
        "",
    );
}

/// One JSON object per rule line, with exactly the columns of
/// `pg_hba_file_rules`.
#[test]
fn json_prints_one_row_per_rule_line_only() {
    expect_lint(
        b"# c\nlocal all all ident\nhost all all 127.1/8 md5\n\nhost all all all ldap ldapserver=x ldapbasedn=y\n",
        &["--json", "--pg-version", "16", "--without", "ldap", "--without", "gssapi,pam"],
        1,
        str![[r#"
{"address":null,"auth_method":"peer","database":["all"],"error":null,"file_name":"[FILE]","line_number":2,"netmask":null,"options":null,"rule_number":1,"type":"local","user_name":["all"]}
{"address":"127.0.0.1","auth_method":"md5","database":["all"],"error":null,"file_name":"[FILE]","line_number":3,"netmask":"255.0.0.0","options":null,"rule_number":2,"type":"host","user_name":["all"]}
{"address":null,"auth_method":null,"database":null,"error":"invalid authentication method \"ldap\": not supported by this build","file_name":"[FILE]","line_number":5,"netmask":null,"options":null,"rule_number":null,"type":null,"user_name":null}

"#]].is_jsonlines(),
        "",
    );
}

#[test]
fn unreadable_file_and_bad_usage_exit_2() {
    let missing = PathBuf::from("/nonexistent/pg_hba.conf");
    let out = Command::new(env!("CARGO_BIN_EXE_knocker"))
        .args(["hba", "lint"])
        .arg(&missing)
        .output()
        .unwrap();
    expect_run(
        &out,
        missing,
        2,
        "",
        str![[r#"
knocker: cannot read [FILE]: No such file or directory (os error 2)

"#]],
    );
    expect_lint(
        b"local all all trust\n",
        &["--pg-version", "12"],
        2,
        "",
        str![[r#"
error: invalid value '12' for '--pg-version <N>': 12 is not in 13..=18

For more information, try '--help'.

"#]],
    );
    expect_lint(
        b"local all all trust\n",
        &["--without", "kerberos"],
        2,
        "",
        str![[r#"
error: invalid value 'kerberos' for '--without <FEATURE>'
  [possible values: ssl, ldap, gssapi, pam]

For more information, try '--help'.

"#]],
    );
}

#[test]
fn version_changes_the_verdict() {
    let text = b"local all all trust\ninclude_if_exists missing.conf\n";
    expect_lint(text, &["--pg-version", "16"], 0, "", "");
    expect_lint(
        text,
        &["--pg-version", "15"],
        1,
        str![[r#"
[FILE]:2:1: invalid connection type "include_if_exists"

"#]],
        "",
    );
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
