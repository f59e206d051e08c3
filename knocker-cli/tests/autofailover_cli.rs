//! `knocker autofailover` as a program: bad input exits 2 before any
//! server is contacted (the admin connection given could never work, so
//! reaching it would exit 1), with the reason on standard error and, with
//! `--json`, an `error` object. The real runs are in
//! knocker-ops/tests/autofailover_pg15.rs.

use std::process::{Command, Output, Stdio};

fn knocker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_knocker"))
        .arg("autofailover")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

const GOOD: &str = "postgres://autoctl_node:pw@127.0.0.1:1/pg_auto_failover?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt";

#[test]
fn bad_input_exits_2_before_connecting() {
    let never = [
        "--admin-conn",
        "host=/nonexistent-knocker port=1 user=postgres",
    ];
    let no_password = GOOD.replace(":pw@", "@");
    let unverified = GOOD.replace("verify-full", "require");
    let wrong_user = GOOD.replace("autoctl_node:", "postgres:");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--enroll"], "--monitor"),
        (
            vec!["--enroll", "--monitor", "host='x"],
            "not a valid connection string",
        ),
        (vec!["--enroll", "--monitor", &no_password], "password"),
        (
            vec!["--enroll", "--monitor", &unverified],
            "sslmode=verify-full",
        ),
        (vec!["--enroll", "--monitor", &wrong_user], "autoctl_node"),
        (
            vec!["--enroll", "--monitor", GOOD, "--name", "a b"],
            "--name",
        ),
        (
            vec!["--disable", "--monitor", GOOD],
            "--disable takes no --monitor",
        ),
        (
            vec!["--enroll", "--status", "--monitor", GOOD],
            "cannot be used with",
        ),
    ];
    for (args, says) in cases {
        let mut all = args.clone();
        all.extend(never);
        let out = knocker(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains(":pw@"), "the password was printed: {err}");
    }
    let out = knocker(&[
        "--enroll",
        "--monitor",
        &unverified,
        "--json",
        never[0],
        never[1],
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage", "{v}");
}

#[test]
fn without_an_action_prints_usage_and_exits_0() {
    let out = knocker(&[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--enroll --monitor URI"), "{text}");
}
