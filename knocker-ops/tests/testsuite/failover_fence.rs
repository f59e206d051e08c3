//! `knocker failover --fence` on a Debian cluster: stopped, refused by
//! pg_ctlcluster afterwards, read-only (and so skipped by
//! `target_session_attrs=read-write`) when started by hand anyway.

use std::process::Command;
use std::time::Duration;

use knocker_ops::failover::{self, fence, Action, Options};
use pg_harness::DebianCluster;
use pgctl::conninfo::ConnInfo;

fn options(cluster: &DebianCluster) -> Options {
    Options {
        action: Action::Fence,
        admin_conn: None,
        cluster: Some(format!("{}/{}", cluster.major(), cluster.name())),
        dry_run: false,
        force: false,
        name: None,
        peer: None,
        reclone: false,
    }
}

fn status(cluster: &DebianCluster) -> String {
    let out = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(cluster.name()))
        .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn fence_stops_disables_and_makes_read_only_debian_cluster() {
    pg_harness::block_on(async {
        let pg = DebianCluster::create(15).await;
        let c = pg.connect().await.unwrap();
        c.batch_execute("CREATE TABLE t (v int)").await.unwrap();
        drop(c);
        let start_conf = pg.conf_dir().join("start.conf");
        let before = std::fs::read_to_string(&start_conf).unwrap();

        // --dry-run: the exact change, nothing done.
        let mut dry = options(&pg);
        dry.dry_run = true;
        let plan = failover::run(&dry, &mut |_: &str| true)
            .await
            .unwrap()
            .plan
            .unwrap()
            .to_string();
        assert!(plan.contains("+disabled\n"), "{plan}");
        assert!(
            plan.contains("ALTER SYSTEM SET default_transaction_read_only = 'on';"),
            "{plan}"
        );
        assert!(
            plan.contains(&format!("pg_ctlcluster -m fast 15 {} stop", pg.name())),
            "{plan}"
        );
        assert_eq!(std::fs::read_to_string(&start_conf).unwrap(), before);
        assert!(status(&pg).starts_with("online"));

        // Declined on the question: nothing done.
        let e = failover::run(&options(&pg), &mut |_: &str| false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("declined"), "{e}");
        assert!(status(&pg).starts_with("online"));

        let r = failover::run(&options(&pg), &mut |_: &str| true)
            .await
            .unwrap();
        assert!(r.changed);
        assert_eq!(status(&pg), "down");
        let text = std::fs::read_to_string(&start_conf).unwrap();
        assert_eq!(fence::start_mode(&text), "disabled");
        assert!(text.contains(&format!(
            "{}{}",
            fence::START_CONF_MARK,
            fence::start_mode(&before)
        )));

        // pg_ctlcluster (and the systemd unit, which uses it) refuses.
        let out = Command::new("pg_ctlcluster")
            .args(["15", pg.name(), "start"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Cluster is disabled"));

        // Started by hand anyway: read-only, not in recovery, and a client
        // asking for a read-write session passes it by.
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl"])
            .arg("-D")
            .arg(pg.conf_dir())
            .arg("-l")
            .arg(pg.log_file())
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = pg.connect().await.unwrap();
        let row = c
            .query_one(
                "SELECT current_setting('default_transaction_read_only'), pg_is_in_recovery()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "on");
        assert!(!row.get::<_, bool>(1));
        let e = c
            .execute("INSERT INTO t VALUES (1)", &[])
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("25006"));
        drop(c);
        // --status says so, with what to do.
        let mut st = knocker_ops::replica::Options::new(knocker_ops::replica::Action::Status);
        st.cluster = Some(format!("{}/{}", pg.major(), pg.name()));
        st.config = "/nonexistent/knocknoc.conf".into();
        let r = knocker_ops::replica::run(&st, &mut |_: &str| true)
            .await
            .unwrap();
        let node = r.status.as_ref().expect("a status");
        assert_eq!((node.role, node.fenced), ("primary", true), "{node:?}");
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("fenced") && w.contains("--switchover")),
            "{:?}",
            r.warnings
        );
        let info = ConnInfo::parse(&format!(
            "host=/var/run/postgresql port={} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=5",
            pg.port()
        ))
        .unwrap();
        let params = pgctl::conninfo::resolve_from_process_env(&info)
            .unwrap()
            .params;
        assert!(pgctl::connect::connect_as_os_user(&params, "postgres")
            .await
            .is_err());

        // Fencing again stops it; the rest is in place already.
        let r = failover::run(&options(&pg), &mut |_: &str| true)
            .await
            .unwrap();
        assert!(r.changed);
        let mut waited = 0;
        while status(&pg) != "down" && waited < 100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        assert_eq!(status(&pg), "down");
        let r = failover::run(&options(&pg), &mut |_: &str| true)
            .await
            .unwrap();
        assert!(!r.changed, "{r:?}");

        // --rejoin refuses a node pg_rewind cannot work on (Debian's
        // default: no wal_log_hints, no checksums) before contacting
        // anything, and leaves it fenced.
        let mut rejoin = options(&pg);
        rejoin.action = Action::Rejoin {
            uri: knocker_ops::replica::Secret(
                "postgresql://knocknoc_replication:pw@127.0.0.1:1/".into(),
            ),
        };
        rejoin.name = Some("node_a".into());
        let e = failover::run(&rejoin, &mut |_: &str| true)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("neither wal_log_hints nor data checksums"),
            "{e}"
        );
        assert_eq!(
            fence::start_mode(&std::fs::read_to_string(&start_conf).unwrap()),
            "disabled"
        );
    });
}
