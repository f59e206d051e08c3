//! `failover --rejoin` where `pg_rewind` cannot help: a node whose data is
//! not of the new primary's system (here a fresh cluster, with
//! wal_log_hints on so the rewind is tried). Without `--reclone` it stays
//! stopped and fenced and the error says what to add; with it the node is
//! cloned afresh and streams.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use knocker_ops::replica::{self, Action, Options};
use knocker_ops::{failover, ErrorKind};
use pg_harness::DebianCluster;
use pgctl::conninfo::{ConnInfo, Keyword};

fn status(cluster: &DebianCluster) -> String {
    let out = Command::new("pg_lsclusters")
        .args(["--no-header", "15", cluster.name()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rejoin_with_reclone_when_pg_rewind_fails_debian_cluster() {
    pg_harness::block_on(async {
        let (mut leftovers, a, c) = common::debian_pair().await;
        let conn = common::app_database(&a).await;
        let mut init = Options::new(Action::Init);
        init.cluster = Some(format!("15/{}", a.name()));
        init.config = "/nonexistent".into();
        init.conn = Some(conn.clone());
        init.name = Some("node_a".into());
        let url = replica::run(&init, &mut |_: &str| true)
            .await
            .unwrap()
            .replication_url
            .unwrap()
            .0;
        let mut allow = init.clone();
        allow.action = Action::Allow {
            cidr: "127.0.0.1/32".parse().unwrap(),
            sync: false,
        };
        allow.name = Some("node_c".into());
        replica::run(&allow, &mut |_: &str| true).await.unwrap();
        let mut info = ConnInfo::parse(&url).unwrap();
        info.set(Keyword::Host, "127.0.0.1");

        // C: another system, rewindable in principle, fenced.
        let s = c.connect().await.unwrap();
        s.batch_execute("ALTER SYSTEM SET wal_log_hints = on")
            .await
            .unwrap();
        drop(s);
        c.restart().await;
        let mut o = failover::Options {
            action: failover::Action::Fence,
            admin_conn: None,
            cluster: Some(format!("15/{}", c.name())),
            dry_run: false,
            force: false,
            name: Some("node_c".into()),
            peer: None,
            reclone: false,
        };
        failover::run(&o, &mut |_: &str| true).await.unwrap();

        o.action = failover::Action::Rejoin {
            uri: replica::Secret(info.to_uri()),
        };
        let e = failover::run(&o, &mut |_: &str| true).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
        assert!(e.to_string().contains("pg_rewind failed"), "{e}");
        assert!(e.to_string().contains("--reclone"), "{e}");
        assert!(status(&c).contains("down"), "{}", status(&c));

        o.reclone = true;
        let r = failover::run(&o, &mut |_: &str| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{:?}\n{:?}", r.done, r.warnings);
        if let Some(moved) = r
            .done
            .iter()
            .find_map(|d| d.strip_prefix("the old data directory is kept as "))
        {
            leftovers.0.push(PathBuf::from(moved));
        }
        assert!(
            r.warnings.iter().any(|w| w.contains("pg_rewind failed")),
            "{:?}",
            r.warnings
        );
        assert!(
            r.done.iter().any(|d| d.starts_with("recloned")),
            "{:?}",
            r.done
        );
        // --init restarted A (wal_log_hints): a new session.
        let p = a.connect().await.unwrap();
        let row = p
            .query_one(
                "SELECT state FROM pg_stat_replication WHERE application_name = 'node_c'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "streaming");
        let before = std::fs::read_to_string(a.conf_dir().join("start.conf")).unwrap();
        let start = std::fs::read_to_string(c.conf_dir().join("start.conf")).unwrap();
        // The harness makes clusters `manual`; the fence's `disabled` is undone.
        assert_eq!(
            failover::fence::start_mode(&start),
            failover::fence::start_mode(&before),
            "{start}"
        );
    });
}
