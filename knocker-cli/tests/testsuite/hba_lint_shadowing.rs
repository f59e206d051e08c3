//! `knocker hba lint --shadowing`: unreachable rules are reported as
//! warnings without changing the exit status, and `--json` keeps stdout to
//! rule rows.

const HBA: &str = "\
local all all peer
host all all 10.0.0.0/8 reject
host knocknoc knocknoc_remote 10.1.2.3/32 scram-sha-256
host all +admins 192.168.0.0/16 scram-sha-256
host all alice 192.168.0.0/16 scram-sha-256
";

/// Exit code, stdout and stderr of `knocker hba lint FILE ARGS` on
/// [`HBA`] (the file's path written `FILE`).
fn lint(args: &[&str]) -> (i32, String, String) {
    crate::hba_lint_cli::lint(HBA.as_bytes(), args)
}

#[test]
fn shadowed_rule_is_a_warning_naming_both_lines() {
    let (code, stdout, stderr) = lint(&["--shadowing"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // +admins does not certainly include alice: only line 3 is reported
    assert_eq!(
        stdout,
        "FILE:3:1: warning: rule can never match: line 2 catches every connection it would\n"
    );
    let (_, quiet, _) = lint(&[]);
    assert_eq!(quiet, "");
}

#[test]
fn json_output_keeps_warnings_off_stdout() {
    let (code, stdout, stderr) = lint(&["--shadowing", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 5);
    assert!(stdout.lines().all(|l| l.starts_with('{')), "{stdout}");
    assert!(
        stderr.contains("FILE:3:1: warning: rule can never match"),
        "{stderr}"
    );
}
