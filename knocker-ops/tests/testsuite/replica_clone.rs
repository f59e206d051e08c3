//! `--clone-from` between two Debian clusters (pg_createcluster layout,
//! peer login as postgres, ssl with the snakeoil certificate): --init and
//! --allow on the primary through `--cluster`, the clone on the "standby
//! host", data written on the primary read on the standby, --status on
//! both, a second clone refused while the slot is in use.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{options, Leftovers};
use knocker_ops::replica::{self, Action, Options, Secret};
use knocker_ops::{failover, ErrorKind};
use pg_harness::DebianCluster;
use pgctl::conninfo::{ConnInfo, Keyword};

async fn run(o: &Options) -> Result<replica::Report, knocker_ops::Error> {
    replica::run(o, &mut |_: &str| true).await
}

#[test]
fn clone_from_primary_streams_debian_cluster() {
    pg_harness::block_on(async {
        // Declared first, so dropped after the clusters.
        let mut leftovers = Leftovers(Vec::new());
        let primary = DebianCluster::create(15).await;
        let standby = DebianCluster::create(15).await;
        // hba_install's backups and lock file keep pg_dropcluster from
        // removing the configuration directories; the passfiles live
        // outside the clusters.
        leftovers.debian_clusters(&[&primary, &standby]);
        let moved_prefix = format!("{}.knocker-replaced-", standby.data_dir().display());
        let passfile = common::passfile(&standby);

        let conn = common::app_database(&primary).await;

        let mut init = options(Action::Init, &primary);
        init.conn = Some(conn.clone());
        init.name = Some("node_a".into());
        let r = run(&init).await.unwrap();
        let url = r.replication_url.expect("the replication URL").0;
        assert!(url.contains("sslmode=require"), "{url}");
        // The test's primary listens on localhost only.
        let mut info = ConnInfo::parse(&url).unwrap();
        info.set(Keyword::Host, "127.0.0.1");
        let url = info.to_uri();

        let mut allow = options(
            Action::Allow {
                cidr: "127.0.0.1/32".parse().unwrap(),
                sync: false,
            },
            &primary,
        );
        allow.conn = Some(conn.clone());
        allow.name = Some("node_b".into());
        run(&allow).await.unwrap();
        let hba = std::fs::read_to_string(primary.hba_file()).unwrap();
        assert!(hba.contains("hostssl replication"), "ssl is on: {hba}");

        // --dry-run on the standby host: the exact commands, nothing done.
        let mut clone = options(
            Action::CloneFrom {
                uri: Secret(url.clone()),
            },
            &standby,
        );
        clone.name = Some("node_b".into());
        let mut dry = clone.clone();
        dry.dry_run = true;
        let plan = run(&dry).await.unwrap().plan.unwrap().to_string();
        assert!(
            plan.contains(&format!("pg_ctlcluster -m fast 15 {} stop", standby.name())),
            "{plan}"
        );
        assert!(
            plan.contains(
                "--wal-method=stream --checkpoint=fast --no-password --slot knocker_node_b"
            ),
            "{plan}"
        );
        assert!(
            !plan.contains(&info.get(Keyword::Password).unwrap().to_string()),
            "{plan}"
        );
        assert!(!passfile.exists());

        // Run against the primary's own cluster by mistake: refused, since
        // it is a running primary with a database of its own.
        let mut wrong = clone.clone();
        wrong.cluster = Some(format!("15/{}", primary.name()));
        let e = run(&wrong).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused { overridable: true }, "{e}");
        assert!(e.to_string().contains("knocknoc"), "{e}");

        let started = Instant::now();
        let r = run(&clone).await.unwrap();
        let took = started.elapsed();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["role"], "standby", "{json}");
        assert_eq!(json["streaming"], true);
        assert_eq!(json["upstream"], format!("127.0.0.1:{}", primary.port()));
        let moved = r
            .done
            .iter()
            .find_map(|d| d.strip_prefix("the old data directory is kept as "))
            .expect("the old directory is named")
            .to_string();
        assert!(moved.starts_with(&moved_prefix), "{moved}");
        leftovers.0.push(PathBuf::from(&moved));
        assert!(PathBuf::from(&moved).join("PG_VERSION").exists());
        eprintln!("clone took {took:?}");

        // The password is only in the 0600 passfile owned by postgres.
        let meta = std::fs::metadata(&passfile).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            Some(meta.uid()),
            pg_harness::OsUser::lookup("postgres").map(|u| u.uid)
        );
        let password = info.get(Keyword::Password).unwrap().to_string();
        let auto =
            std::fs::read_to_string(standby.data_dir().join("postgresql.auto.conf")).unwrap();
        assert!(!auto.contains(&password));
        assert!(auto.contains("application_name=node_b"), "{auto}");
        assert!(
            auto.contains("primary_slot_name = 'knocker_node_b'"),
            "{auto}"
        );
        assert!(!auto.contains("synchronous_standby_names"));

        // Data written on the primary appears on the standby.
        let p = primary.connect().await.unwrap();
        p.batch_execute("CREATE TABLE after_clone (v int); INSERT INTO after_clone VALUES (7)")
            .await
            .unwrap();
        let s = standby.connect().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(row)) = s.query_opt("SELECT v FROM after_clone", &[]).await {
                assert_eq!(row.get::<_, i32>(0), 7);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the row never reached the standby"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // --status on the primary sees it streaming.
        let r = run(&options(Action::Status, &primary)).await.unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["role"], "primary");
        assert_eq!(json["standbys"][0]["name"], "node_b");
        assert_eq!(json["standbys"][0]["state"], "streaming");
        assert_eq!(json["replication_slots"][0]["wal_status"], "reserved");

        // The same clone again on this standby (as after a run killed
        // once the standby started): it already streams through its slot,
        // so nothing is copied and it keeps running.
        let r = run(&clone).await.unwrap();
        assert!(
            r.done.iter().any(|d| d.contains("already streams")),
            "{:?}",
            r.done
        );
        assert!(
            s.query_one("SELECT 1", &[]).await.is_ok(),
            "the standby kept running"
        );

        // Another host streaming through the slot (pg_receivewal here,
        // while this standby's walreceiver is off): refused before
        // anything is touched.
        s.batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
            .await
            .unwrap();
        s.batch_execute("SELECT pg_reload_conf()").await.unwrap();
        wait_slot(&p, "knocker_node_b", false).await;
        let wal_dir = tempfile::tempdir().unwrap();
        let postgres = pg_harness::OsUser::lookup("postgres").unwrap();
        std::os::unix::fs::chown(wal_dir.path(), Some(postgres.uid), Some(postgres.gid)).unwrap();
        // Run as postgres directly (not through runuser, which would
        // leave it running when killed).
        let mut receiver = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_receivewal");
        std::os::unix::process::CommandExt::uid(&mut receiver, postgres.uid);
        std::os::unix::process::CommandExt::gid(&mut receiver, postgres.gid);
        // libpq looks for client certificates under $HOME, which must be
        // readable by postgres.
        let mut receiver = receiver
            .env("HOME", "/var/lib/postgresql")
            .arg("--directory")
            .arg(wal_dir.path())
            .args([
                "--slot",
                "knocker_node_b",
                "--no-loop",
                "--no-password",
                "--dbname",
            ])
            .arg(clone_uri(&clone))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_slot(&p, "knocker_node_b", true).await;
        let e = run(&clone).await.unwrap_err();
        let _ = receiver.kill();
        let _ = receiver.wait();
        assert_eq!(e.kind(), ErrorKind::Refused { overridable: false }, "{e}");
        assert!(e.to_string().contains("in use"), "{e}");
        assert!(
            s.query_one("SELECT 1", &[]).await.is_ok(),
            "the standby kept running"
        );
        drop(s);

        // A run killed right after moving the data directory aside: the
        // next run clones again.
        standby.stop().await;
        let interrupted = PathBuf::from(format!("{moved_prefix}interrupted"));
        leftovers.0.push(interrupted.clone());
        std::fs::rename(standby.data_dir(), &interrupted).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while pgctl::replication::slot(&p, "knocker_node_b")
            .await
            .unwrap()
            .is_some_and(|s| s.active)
        {
            assert!(Instant::now() < deadline, "the walsender never let go");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = run(&clone).await.unwrap();
        assert!(
            r.warnings.iter().any(|w| w.contains("is missing")),
            "{:?}",
            r.warnings
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["streaming"], true, "{json}");

        // failover --promote is refused while the primary answers, and
        // --dry-run shows the statements.
        let promote = failover::Options {
            action: failover::Action::Promote,
            admin_conn: None,
            cluster: Some(format!("15/{}", standby.name())),
            dry_run: false,
            force: false,
            name: None,
            peer: None,
            reclone: false,
        };
        let e = failover::run(&promote, &mut |_: &str| true)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused { overridable: true }, "{e}");
        assert!(e.to_string().contains("still answers"), "{e}");
        let mut dry = promote.clone();
        dry.dry_run = true;
        dry.force = true;
        let plan = failover::run(&dry, &mut |_: &str| true)
            .await
            .unwrap()
            .plan
            .unwrap()
            .to_string();
        assert!(
            plan.contains("SELECT pg_catalog.pg_promote(true, 60);\nCHECKPOINT;"),
            "{plan}"
        );
        let r = run(&options(Action::Status, &standby)).await.unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap()["role"], "standby");

        // --sync: commits wait for node_b; while it is down they hang, and
        // --revoke releases them.
        let mut sync = allow.clone();
        sync.action = Action::Allow {
            cidr: "127.0.0.1/32".parse().unwrap(),
            sync: true,
        };
        let r = run(&sync).await.unwrap();
        assert!(
            r.warnings.iter().any(|w| w.contains("hang")),
            "{:?}",
            r.warnings
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = pgctl::replication::standbys(&p).await.unwrap();
            if rows
                .iter()
                .any(|r| r.application_name == "node_b" && r.sync_state == "sync")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node_b never became sync: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        standby.stop().await;
        let writer = primary.connect().await.unwrap();
        let waiting = tokio::spawn(async move {
            writer
                .execute("INSERT INTO after_clone VALUES (8)", &[])
                .await
                .map(|_| ())
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !waiting.is_finished(),
            "a commit returned without the sync standby"
        );
        let mut revoke = options(
            Action::Revoke {
                cidr: "127.0.0.1/32".parse().unwrap(),
                terminate: true,
            },
            &primary,
        );
        revoke.conn = Some(conn.clone());
        let r = run(&revoke).await.unwrap();
        assert!(
            r.done
                .iter()
                .any(|d| d.contains("synchronous_standby_names reset")),
            "{:?}",
            r.done
        );
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting commit is released")
            .unwrap()
            .unwrap();
        assert!(pgctl::replication::slot(&p, "knocker_node_b")
            .await
            .unwrap()
            .is_none());
        drop(p);

        // The primary's whole process tree is SIGKILLed; the standby (back
        // up, not streaming) is promoted and takes writes.
        standby.start().await;
        kill_tree(&primary.data_dir());
        let r = failover::run(&promote, &mut |_: &str| true).await.unwrap();
        let window = r.loss_window.clone().unwrap();
        assert!(
            window.upstream_probe.starts_with("unreachable"),
            "{window:?}"
        );
        assert!(window.replayed_lsn.is_some());
        assert_eq!(r.timeline, Some(2), "{r:?}");
        // Ready for the old primary: its slot, and the exact commands.
        assert!(
            r.next_steps
                .iter()
                .any(|n| n.contains("knocker failover --rejoin") && n.contains("--name node_a")),
            "{:?}",
            r.next_steps
        );
        let s = standby.connect().await.unwrap();
        assert!(pgctl::replication::slot(&s, "knocker_node_a")
            .await
            .unwrap()
            .is_some());
        drop(s);
        let ms = r.writable_after_ms.unwrap();
        eprintln!("promote: writable after {ms} ms");
        assert!(ms < 10_000, "{ms}");
        let s = standby.connect().await.unwrap();
        s.execute("INSERT INTO after_clone VALUES (9)", &[])
            .await
            .unwrap();
        let r = run(&options(Action::Status, &standby)).await.unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["role"], "primary");
        assert_eq!(json["timeline"], 2);
        // Promoting again: nothing to do.
        let r = failover::run(&promote, &mut |_: &str| true).await.unwrap();
        assert!(!r.changed);

        // The dead old primary: fenced, then rejoined to the new primary
        // (which admits it as node_a) with pg_rewind.
        let mut fence = promote.clone();
        fence.action = failover::Action::Fence;
        fence.cluster = Some(format!("15/{}", primary.name()));
        let r = failover::run(&fence, &mut |_: &str| true).await.unwrap();
        assert!(r.changed, "{r:?}");
        let new_conn = format!(
            "postgresql://knocknoc:pw@127.0.0.1:{}/knocknoc",
            standby.port()
        );
        let mut init2 = options(Action::Init, &standby);
        init2.conn = Some(new_conn.clone());
        let r = run(&init2).await.unwrap();
        assert!(r.replication_url.is_none(), "the roles came with the data");
        let mut allow_a = options(
            Action::Allow {
                cidr: "127.0.0.1/32".parse().unwrap(),
                sync: false,
            },
            &standby,
        );
        allow_a.conn = Some(new_conn);
        allow_a.name = Some("node_a".into());
        run(&allow_a).await.unwrap();
        // As --promote prints it: no password (the old primary's passfile
        // has it).
        let mut new_primary = info.clone();
        new_primary.set(Keyword::Port, standby.port().to_string());
        new_primary.remove(Keyword::Password);
        let mut rejoin = promote.clone();
        rejoin.action = failover::Action::Rejoin {
            uri: Secret(new_primary.to_uri()),
        };
        rejoin.cluster = Some(format!("15/{}", primary.name()));
        rejoin.name = Some("node_a".into());
        let r = failover::run(&rejoin, &mut |_: &str| true)
            .await
            .unwrap_or_else(|e| panic!("{e}: {:?}", e.causes()));
        eprintln!("rejoin: {:?}", r.done);
        assert_eq!(r.timeline, Some(2), "{r:?}");
        let a = primary.connect().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = a
                .query_opt("SELECT 1 FROM after_clone WHERE v = 9", &[])
                .await
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the new primary's row never reached the old primary"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let row = a
            .query_one(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0));
        assert_eq!(row.get::<_, String>(1), "off", "the fence is lifted");
        let r = run(&options(Action::Status, &standby)).await.unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["standbys"][0]["name"], "node_a", "{json}");
        assert_eq!(json["standbys"][0]["state"], "streaming");
    });
}

/// Waits until slot `slot` on `p` is in use (`active`) or not.
async fn wait_slot(p: &tokio_postgres::Client, slot: &str, active: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pgctl::replication::slot(p, slot)
        .await
        .unwrap()
        .is_some_and(|s| s.active)
        != active
    {
        assert!(
            Instant::now() < deadline,
            "slot {slot} never became active = {active}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILLs the postmaster of `data` and its whole tree, and waits until
/// it is gone.
fn kill_tree(data: &std::path::Path) {
    pg_harness::pgaf::kill_postmaster_tree(data, Duration::from_secs(10)).unwrap();
}

/// The standby must run the primary's major version: a PostgreSQL 16
/// primary is refused by a Debian 15 cluster before anything is touched.
#[test]
fn clone_refuses_another_major_version_debian_cluster() {
    pg_harness::block_on(async {
        let standby = DebianCluster::create(15).await;
        let pg16 = pg_harness::Cluster::start(16).await;
        pg16.create_role("knocknoc", "pw").await;
        pg16.create_database("knocknoc", "knocknoc").await;
        let mut init = Options::new(Action::Init);
        init.conn = Some(format!(
            "postgresql://knocknoc:pw@127.0.0.1:{}/knocknoc",
            pg16.port()
        ));
        init.admin_conn = Some(format!(
            "host={} port={} user=postgres dbname=postgres",
            pg16.socket_dir().display(),
            pg16.port()
        ));
        init.config = "/nonexistent".into();
        let url = run(&init).await.unwrap().replication_url.unwrap().0;
        let mut clone = options(Action::CloneFrom { uri: Secret(url) }, &standby);
        clone.name = Some("node_b".into());
        let mut info = ConnInfo::parse(&clone_uri(&clone)).unwrap();
        info.set(Keyword::Host, "127.0.0.1");
        clone.action = Action::CloneFrom {
            uri: Secret(info.to_uri()),
        };
        let e = run(&clone).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused { overridable: false }, "{e}");
        assert!(e.to_string().contains("PostgreSQL 16"), "{e}");
        assert!(
            standby.connect().await.is_ok(),
            "the local cluster still runs"
        );
        assert!(standby.data_dir().join("PG_VERSION").exists());
    });
}

fn clone_uri(o: &Options) -> String {
    match &o.action {
        Action::CloneFrom { uri } => uri.0.clone(),
        _ => unreachable!(),
    }
}
