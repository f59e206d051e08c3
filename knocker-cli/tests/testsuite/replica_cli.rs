//! `knocker replica` as a program: bad input exits 2 before any server is
//! contacted; against a real server, --init prints the replication URL
//! first (text) or as `replication_url` (JSON), --status has the issue's
//! keys, --dry-run prints the exact plan and changes nothing.

use std::process::{Command, Output, Stdio};

use pg_harness::Cluster;

fn knocker(args: &[&str]) -> Output {
    crate::common::knocker("replica", args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_input_exits_2_before_connecting() {
    // An admin connection that cannot work: reaching it would exit 1.
    let never = [
        "--admin-conn",
        "host=/nonexistent-knocker port=1 user=postgres",
        "--conn",
        "postgresql://knocknoc@127.0.0.1:1/knocknoc",
    ];
    let cases: &[(&[&str], &str)] = &[
        (
            &["--allow", "10.0.0.1/24", "--name", "b"],
            "host bits are set; did you mean 10.0.0.0/24?",
        ),
        (&["--allow", "10.0.0.1"], "--allow needs --name NAME"),
        (
            &["--allow", "10.0.0.1", "--name", "Node-B"],
            "--name \"Node-B\"",
        ),
        (
            &["--allow", "10.0.0.1", "--name", "a'; DROP ROLE x; --"],
            "--name",
        ),
        (
            &["--allow", "not-an-ip", "--name", "b"],
            "not an address or CIDR",
        ),
        (
            &["--revoke", "10.0.0.1\nhost all all 0.0.0.0/0 trust"],
            "not an address or CIDR",
        ),
        (&["--status", "--cluster", "15"], "expected VERSION/NAME"),
        (&["--init", "--status"], "cannot be used with"),
        (&["--init", "--sync"], "--allow"),
    ];
    for (args, expected) in cases {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(never);
        let out = knocker(&all);
        let both = text(&out.stdout) + &text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {both}");
        assert!(
            both.contains(expected),
            "{args:?}: expected {expected:?} in {both}"
        );
    }
    // knocker failover: --promote and --fence exist; bad input exits 2 too.
    for (args, expected) in [
        (&["failover"][..], "--promote"),
        (
            &["failover", "--promote", "--fence"][..],
            "cannot be used with",
        ),
        (
            &["failover", "--promote", "--cluster", "15"][..],
            "expected VERSION/NAME",
        ),
        (
            &["failover", "--switchover", "--peer", "h:x"][..],
            "--peer \"h:x\"",
        ),
        (
            &["failover", "--promote", "--peer", "10.0.0.2"][..],
            "--switchover",
        ),
        (
            &[
                "failover",
                "--rejoin",
                "postgresql://u@h/",
                "--name",
                "a",
                "--cluster",
                "15/main",
            ][..],
            "has no password",
        ),
        (
            &[
                "failover",
                "--rejoin",
                "postgresql://u:p@h/",
                "--name",
                "A-1",
                "--cluster",
                "15/main",
            ][..],
            "--name \"A-1\"",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_knocker"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let both = text(&out.stdout) + &text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {both}");
        assert!(both.contains(expected), "{args:?}: {both}");
    }
    // No action: the usage, exit 0 (as knocker exposedb).
    let out = knocker(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Usage: knocker replica"));

    // --json: one object with version 1 even for bad input.
    let out = knocker(&["--allow", "10.0.0.1/24", "--name", "b", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["ok"], false);
    // The same error shape as every knocker command: {kind, message, causes}.
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(v["error"]["causes"].is_array(), "{v}");
}

#[test]
fn init_status_and_dry_run_through_the_binary_pg15() {
    pg_harness::block_on(async {
        let pg = Cluster::start(15).await;
        pg.create_role("knocknoc", "pw").await;
        pg.create_database("knocknoc", "knocknoc").await;
        let conn = format!("postgresql://knocknoc:pw@127.0.0.1:{}/knocknoc", pg.port());
        let admin = format!(
            "host={} port={} user=postgres dbname=postgres",
            pg.socket_dir().display(),
            pg.port()
        );
        let common = ["--conn", conn.as_str(), "--admin-conn", admin.as_str()];
        let run = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(common);
            knocker(&all)
        };

        let out = run(&["--init", "--yes"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let first = stdout.lines().next().unwrap();
        assert!(
            first.starts_with("Replication connection string"),
            "{stdout}"
        );
        let url = stdout.lines().nth(1).unwrap().trim();
        assert!(
            url.starts_with("postgresql://knocknoc_replication:"),
            "{stdout}"
        );
        let password = pgctl::conninfo::ConnInfo::parse(url)
            .unwrap()
            .get(pgctl::conninfo::Keyword::Password)
            .unwrap()
            .to_string();
        assert_eq!(stdout.matches(&password).count(), 1, "printed once");
        assert!(!text(&out.stderr).contains(&password));

        let out = run(&["--init", "--json"]);
        assert_eq!(out.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["changed"], false);
        assert!(v.get("replication_url").is_none());

        let hba_before = std::fs::read(pg.hba_file()).unwrap();
        let out = run(&["--allow", "127.0.0.2", "--name", "node_c", "--dry-run"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let plan = text(&out.stdout);
        assert!(plan.contains("+host    replication knocknoc_replication 127.0.0.2/32 scram-sha-256 # standby=node_c"), "{plan}");
        assert!(
            plan.contains(
                "SELECT pg_catalog.pg_create_physical_replication_slot('knocker_node_c', true);"
            ),
            "{plan}"
        );
        assert_eq!(std::fs::read(pg.hba_file()).unwrap(), hba_before);

        let out = run(&["--status", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["role"], "primary");
        assert_eq!(v["streaming"], false);
        assert!(v["standbys"].as_array().unwrap().is_empty());
        assert!(v["upstream"].is_null());
        assert!(v["replication_slots"].as_array().unwrap().is_empty());

        // Refused: --allow on a network another standby already holds.
        let out = run(&["--allow", "127.0.0.2", "--name", "node_c"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = run(&["--allow", "127.0.0.2", "--name", "node_d"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("already allowed for standby \"node_c\""));
    });
}
