//! `knocker autofailover` as a program: bad input exits 2 before any
//! server is contacted (the admin connection given could never work, so
//! reaching it would exit 1), with the reason on standard error and, with
//! `--json`, an `error` object. The real runs are in
//! knocker-ops/tests/testsuite/autofailover_pg15.rs.

use std::process::Output;

fn knocker(args: &[&str]) -> Output {
    crate::common::knocker("autofailover", args)
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
        (vec!["--status", "--port", "5433"], "go with --monitor-init"),
        (
            vec!["--monitor-init", "--monitor", GOOD],
            "--monitor-init takes no --monitor",
        ),
        (
            vec!["--monitor-init", "--data-dir", "relative/dir"],
            "absolute path",
        ),
        (
            vec![
                "--monitor-init",
                "--data-dir",
                "/nonexistent-knocker/monitor",
                "--address",
                "127.0.0.1",
            ],
            "--ssl-ca is needed",
        ),
        (
            vec![
                "--monitor-init",
                "--data-dir",
                "/nonexistent-knocker/monitor",
                "--address",
                "127.0.0.1",
                "--ssl-ca",
                "/nonexistent-knocker/ca.crt",
                "--ssl-cert",
                "/nonexistent-knocker/s.crt",
                "--ssl-key",
                "/nonexistent-knocker/s.key",
            ],
            "no such file",
        ),
        (vec!["--monitor-init", "--address", "a,b"], "--address"),
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

#[test]
fn monitor_init_dry_run_prints_the_plan_and_creates_nothing() {
    // A parent directory of the PostgreSQL user, as /var/lib/postgresql is.
    let postgres = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == "postgres")
                .then(|| (f[2].parse::<u32>().unwrap(), f[3].parse::<u32>().unwrap()))
        })
        .expect("the postgres user (cargo xtask pg)");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(postgres.0), Some(postgres.1)).unwrap();
    let file = dir.path().join("any.pem");
    std::fs::write(&file, "not read by a dry run").unwrap();
    // As PostgreSQL wants a key: its user's, 0600.
    std::os::unix::fs::chown(&file, Some(postgres.0), Some(postgres.1)).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = file.display().to_string();
    let data = dir.path().join("monitor");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = knocker(&[
        "--monitor-init",
        "--dry-run",
        "--json",
        "--data-dir",
        &data.display().to_string(),
        "--port",
        &port,
        "--address",
        "192.0.2.10",
        "--ssl-ca",
        &file,
        "--ssl-cert",
        &file,
        "--ssl-key",
        &file,
        "--allow",
        "192.0.2.0/24",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("monitor_url").is_none(), "{v}");
    let text = v["dry_run_text"].as_str().unwrap();
    for want in [
        "pg_autoctl create monitor",
        "--hostname 192.0.2.10 --skip-pg-hba",
        "+hostssl pg_auto_failover autoctl_node 192.0.2.0/24 scram-sha-256",
        "ALTER ROLE autoctl_node PASSWORD '<generated>'",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(v["supervise"].as_array().unwrap().len() > 3, "{v}");
    // A key PostgreSQL would refuse (root's, readable by all): exit 2
    // (a dry run, so that nothing could be created even if it passed).
    let out = knocker(&[
        "--monitor-init",
        "--dry-run",
        "--data-dir",
        &data.display().to_string(),
        "--port",
        &port,
        "--address",
        "192.0.2.10",
        "--ssl-ca",
        &file,
        "--ssl-cert",
        &file,
        "--ssl-key",
        "/etc/passwd",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--ssl-key /etc/passwd"), "{err}");
    assert!(!data.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
