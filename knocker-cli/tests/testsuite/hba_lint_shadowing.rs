//! `knocker hba lint --shadowing`: unreachable rules are reported as
//! warnings without changing the exit status, and `--json` keeps stdout to
//! rule rows.

use std::process::Command;

const HBA: &str = "\
local all all peer
host all all 10.0.0.0/8 reject
host knocknoc knocknoc_remote 10.1.2.3/32 scram-sha-256
host all +admins 192.168.0.0/16 scram-sha-256
host all alice 192.168.0.0/16 scram-sha-256
";

fn lint(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg_hba.conf");
    std::fs::write(&file, HBA).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_knocker"))
        .args(["hba", "lint"])
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let name = file.to_string_lossy().into_owned();
    (
        out.status.code().unwrap(),
        stdout.replace(&name, "FILE"),
        stderr.replace(&name, "FILE"),
    )
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
