//! `failover --switchover` between two Debian clusters, there and back,
//! while a client writes a counter through the multi-host string
//! (`target_session_attrs=read-write`) and records every acknowledged
//! value: none may be lost, and the time writes were refused is printed.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{app_database, options, wait_for};
use knocker_ops::replica::{self, Action, Options, Secret};
use knocker_ops::{failover, ErrorKind};
use pg_harness::DebianCluster;
use pgctl::conninfo::{ConnInfo, Keyword};

fn switchover(from: &DebianCluster, name: &str, to: &DebianCluster) -> failover::Options {
    failover::Options {
        action: failover::Action::Switchover,
        admin_conn: None,
        cluster: Some(format!("15/{}", from.name())),
        dry_run: false,
        force: false,
        name: Some(name.into()),
        peer: Some(format!("127.0.0.1:{}", to.port())),
        reclone: false,
    }
}

fn forced(mut o: failover::Options) -> failover::Options {
    o.force = true;
    o
}

/// The longest time between two acknowledgements inside `window`.
fn longest_gap(acks: &[(i32, Instant)], window: (Instant, Instant)) -> Duration {
    acks.windows(2)
        .filter(|w| w[1].1 >= window.0 && w[0].1 <= window.1)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default()
}

#[test]
fn switchover_there_and_back_loses_no_acknowledged_write_debian_cluster() {
    pg_harness::block_on(async {
        let (mut leftovers, a, b) = common::debian_pair().await;
        let conn = app_database(&a).await;
        // The primary admits a web node through knocker exposedb.
        let mut web = knocker_ops::exposedb::Exposedb::connect(knocker_ops::exposedb::Options {
            conn: Some(conn.clone()),
            advertise: Some("127.0.0.1".into()),
            no_restart: true,
            ..knocker_ops::exposedb::Options::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        web.init().await.unwrap_or_else(|e| panic!("{e}"));
        let add = web
            .plan_change(&["10.9.8.7/32".parse().unwrap()], &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let r = web.change(add).await.unwrap_or_else(|e| panic!("{e}"));
        drop(web);
        // exposedb without replica writes nothing into the data directory.
        let copy_a = a
            .data_dir()
            .join(knocker_ops::replica::exposedb_copy::COPY_FILE);
        assert_eq!(r.replica_copy, None);
        assert!(!copy_a.exists());
        let mut init = options(Action::Init, &a);
        init.conn = Some(conn.clone());
        init.name = Some("node_a".into());
        let url = run(&init).await.replication_url.unwrap().0;
        // The primary keeps the password for its own walreceiver.
        let passfile_a = common::passfile(&a);
        let meta = std::fs::metadata(&passfile_a).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            Some(meta.uid()),
            pg_harness::OsUser::lookup("postgres").map(|u| u.uid)
        );
        let mut info = ConnInfo::parse(&url).unwrap();
        assert_eq!(info.get(Keyword::ApplicationName), Some("node_a"), "{url}");
        info.set(Keyword::Host, "127.0.0.1");
        let mut allow = options(
            Action::Allow {
                cidr: "127.0.0.1/32".parse().unwrap(),
                sync: false,
            },
            &a,
        );
        allow.conn = Some(conn.clone());
        allow.name = Some("node_b".into());
        run(&allow).await;
        let mut clone = options(
            Action::CloneFrom {
                uri: Secret(info.to_uri()),
            },
            &b,
        );
        clone.name = Some("node_b".into());
        let r = run(&clone).await;
        let moved = r
            .done
            .iter()
            .find_map(|d| d.strip_prefix("the old data directory is kept as "))
            .unwrap()
            .to_string();
        leftovers.0.push(PathBuf::from(moved));
        // The standby admits its primary back and keeps its slot.
        let hba_b = std::fs::read_to_string(b.hba_file()).unwrap();
        assert!(
            hba_b.contains("knocknoc_promote 127.0.0.1/32") && hba_b.contains("standby=node_a"),
            "{hba_b}"
        );
        // ... and the primary's exposedb block, byte for byte.
        let hba_a = std::fs::read(a.hba_file()).unwrap();
        let block = knocker_ops::replica::exposedb_copy::block_text(&hba_a, pghba::PgVersion::V15)
            .unwrap()
            .expect("the primary has an exposedb block");
        assert!(String::from_utf8_lossy(&block).contains("10.9.8.7/32"));
        assert!(
            knocker_ops::replica::exposedb_copy::same_block(
                &hba_a,
                hba_b.as_bytes(),
                pghba::PgVersion::V15
            )
            .unwrap(),
            "{hba_b}"
        );
        // --status on either node: the blocks agree.
        for c in [&a, &b] {
            let r = run(&options(Action::Status, c)).await;
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json["exposedb_block"], "same", "{json}");
        }
        // exposedb --add on the primary refreshes the copy its standbys
        // get: the primary's --status finds no difference, the standby
        // sees that its own block lacks the new line.
        let mut web = knocker_ops::exposedb::Exposedb::connect(knocker_ops::exposedb::Options {
            conn: Some(conn.clone()),
            advertise: Some("127.0.0.1".into()),
            no_restart: true,
            ..knocker_ops::exposedb::Options::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let add = web
            .plan_change(&["10.9.8.6/32".parse().unwrap()], &[])
            .unwrap_or_else(|e| panic!("{e}"));
        // --dry-run shows the copy's change too.
        let shown = add.dry_run.plan.files.iter().find(|f| f.path == copy_a);
        assert!(
            shown.is_some_and(|f| String::from_utf8_lossy(&f.new).contains("10.9.8.6/32")),
            "{}",
            add.dry_run.diff
        );
        let r = web.change(add).await.unwrap_or_else(|e| panic!("{e}"));
        drop(web);
        assert_eq!(r.replica_copy.as_deref(), Some(copy_a.as_path()));
        let copy = std::fs::read_to_string(&copy_a).unwrap();
        assert!(copy.contains("10.9.8.6/32"), "{copy}");
        let r = run(&options(Action::Status, &a)).await;
        assert_eq!(serde_json::to_value(&r).unwrap()["exposedb_block"], "same");
        assert!(
            !r.warnings.iter().any(|w| w.contains("exposedb")),
            "{:?}",
            r.warnings
        );
        let r = run(&options(Action::Status, &b)).await;
        assert_eq!(
            serde_json::to_value(&r).unwrap()["exposedb_block"],
            "differs"
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("differs from the primary's")),
            "{:?}",
            r.warnings
        );

        // The promote role may call pg_promote and nothing else of note.
        let password = info.get(Keyword::Password).unwrap().to_string();
        let promoter = b
            .connect_from(
                [127, 0, 0, 1].into(),
                "knocknoc_promote",
                password.as_str(),
                "postgres",
            )
            .await
            .unwrap();
        let e = promoter
            .query_one("SELECT pg_read_binary_file('PG_VERSION')", &[])
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
        );
        drop(promoter);
        let s = b.connect().await.unwrap();
        assert!(pgctl::replication::slot(&s, "knocker_node_a")
            .await
            .unwrap()
            .is_some());
        drop(s);

        let p = a
            .connect_from([127, 0, 0, 1].into(), "knocknoc", "pw", "knocknoc")
            .await
            .unwrap();
        p.batch_execute("CREATE TABLE counter (v int PRIMARY KEY)")
            .await
            .unwrap();
        drop(p);

        // --dry-run: the plan, nothing done.
        let mut dry = switchover(&a, "node_a", &b);
        dry.dry_run = true;
        dry.force = true;
        let plan = failover::run(&dry, &mut |_: &str| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .plan
            .unwrap()
            .to_string();
        assert!(
            plan.contains("ALTER SYSTEM SET default_transaction_read_only = 'on'"),
            "{plan}"
        );
        assert!(plan.contains("pg_catalog.pg_promote(true, 60)"), "{plan}");
        assert!(plan.contains("standby.signal"), "{plan}");

        let (stop, acks, w) = common::multi_host_writer([a.port(), b.port()], "knocknoc");
        wait_for(&acks, 20).await;

        // B lacks the web node added after the clone: refused (nothing
        // done, the writer goes on), then forced.
        let e = failover::run(&switchover(&a, "node_a", &b), &mut |_: &str| true)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused { overridable: true }, "{e}");
        assert!(e.to_string().contains("10.9.8.6"), "{e}");
        let started = Instant::now();
        let r = failover::run(&forced(switchover(&a, "node_a", &b)), &mut |_: &str| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let took = started.elapsed();
        assert_eq!(r.timeline, Some(2), "{r:?}");
        // --status right after the promotion (no checkpoint since: the
        // control file still names timeline 1) reports the current one on
        // both nodes.
        let control: i32 = b
            .connect()
            .await
            .unwrap()
            .query_one("SELECT (pg_control_checkpoint()).timeline_id", &[])
            .await
            .unwrap()
            .get(0);
        eprintln!(
            "right after the switchover, the new primary's control file names timeline {control}"
        );
        for c in [&b, &a] {
            let json = serde_json::to_value(run(&options(Action::Status, c)).await).unwrap();
            assert_eq!(json["timeline"], 2, "{json}");
        }
        // A (never cloned) follows B with the sslmode the clone used
        // (require: the server has SSL on), not libpq's default prefer.
        assert_follows_with_require(&a, &b, "node_a").await;
        assert!(
            r.warnings.iter().any(|w| w.contains("10.9.8.6")),
            "{:?}",
            r.warnings
        );
        let n = acks.lock().unwrap().len();
        wait_for(&acks, n + 20).await;
        let gap1 = longest_gap(&acks.lock().unwrap(), (started, Instant::now()));
        eprintln!(
            "switchover A->B: command {took:?}, read-only {:?} ms, longest write gap {gap1:?}",
            r.read_only_ms
        );
        let s = b.connect().await.unwrap();
        let row = s
            .query_one(
                "SELECT pg_is_in_recovery(), (SELECT state FROM pg_stat_replication WHERE application_name = 'node_a')",
                &[],
            )
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0));
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some("streaming")
        );
        drop(s);

        // And back.
        let started = Instant::now();
        let r = failover::run(&switchover(&b, "node_b", &a), &mut |_: &str| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let took = started.elapsed();
        assert_eq!(r.timeline, Some(3), "{r:?}");
        // B keeps the sslmode its clone wrote.
        assert_follows_with_require(&b, &a, "node_b").await;
        let n = acks.lock().unwrap().len();
        wait_for(&acks, n + 20).await;
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        let acks = acks.lock().unwrap().clone();
        let gap2 = longest_gap(&acks, (started, Instant::now()));
        eprintln!(
            "switchover B->A: command {took:?}, read-only {:?} ms, longest write gap {gap2:?}",
            r.read_only_ms
        );

        // Every acknowledged value is on the final primary (A), and B
        // follows it.
        let p = a
            .connect_from([127, 0, 0, 1].into(), "knocknoc", "pw", "knocknoc")
            .await
            .unwrap();
        let stored: Vec<i32> = p
            .query("SELECT v FROM counter", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let stored: std::collections::HashSet<i32> = stored.into_iter().collect();
        let lost = common::lost(&acks, &stored);
        assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
        // pg_stat_replication's state is shown to superusers only.
        let p = a.connect().await.unwrap();
        let row = p
            .query_one(
                "SELECT pg_is_in_recovery(), (SELECT state FROM pg_stat_replication WHERE application_name = 'node_b')",
                &[],
            )
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0));
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some("streaming")
        );
        assert!(gap1 < Duration::from_secs(10) && gap2 < Duration::from_secs(10));
        drop(p);

        // knocker killed after the clean stop, before the promotion: A is
        // down and fenced. The next run starts it (still fenced) and does
        // the whole switchover.
        interrupted_stop(&a).await;
        let r = failover::run(&forced(switchover(&a, "node_a", &b)), &mut |_: &str| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            r.done.iter().any(|d| d.contains("was not promoted")),
            "{:?}",
            r.done
        );
        assert_eq!(r.timeline, Some(4), "{r:?}");
        assert_streams(&b, "node_a").await;

        // Killed after the promotion: B is down and fenced, A promoted. The
        // next run makes B follow A.
        interrupted_stop(&b).await;
        let s = a.connect().await.unwrap();
        s.execute("SELECT pg_promote(true, 60)", &[]).await.unwrap();
        drop(s);
        let r = failover::run(&switchover(&b, "node_b", &a), &mut |_: &str| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            r.done.iter().any(|d| d.contains("already the primary")),
            "{:?}",
            r.done
        );
        assert_streams(&a, "node_b").await;
    });
}

/// What a switchover killed right after its clean stop leaves: the fence
/// in postgresql.auto.conf and the cluster stopped.
async fn interrupted_stop(c: &DebianCluster) {
    let s = c.connect().await.unwrap();
    s.batch_execute("ALTER SYSTEM SET default_transaction_read_only = 'on'")
        .await
        .unwrap();
    drop(s);
    let out = std::process::Command::new("pg_ctlcluster")
        .args(["-m", "fast", "15", c.name(), "stop"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `standby_cluster`'s primary_conninfo asks for sslmode=require, and its
/// walreceiver (`name`) reaches `primary` over SSL.
async fn assert_follows_with_require(
    standby_cluster: &DebianCluster,
    primary: &DebianCluster,
    name: &str,
) {
    let auto =
        std::fs::read_to_string(standby_cluster.data_dir().join("postgresql.auto.conf")).unwrap();
    let conninfo = pgctl::replication::conf_value(&auto, "primary_conninfo").unwrap();
    assert_eq!(
        ConnInfo::parse(&conninfo).unwrap().get(Keyword::Sslmode),
        Some("require"),
        "{conninfo}"
    );
    let p = primary.connect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ssl: Option<bool> = p
            .query_one(
                "SELECT (SELECT l.ssl FROM pg_stat_replication r JOIN pg_stat_ssl l USING (pid) \
                 WHERE r.application_name = $1)",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if ssl == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "{name}'s walsender: ssl {ssl:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `primary` is a primary and `standby` streams from it.
async fn assert_streams(primary: &DebianCluster, standby: &str) {
    let p = primary.connect().await.unwrap();
    let row = p
        .query_one(
            "SELECT pg_is_in_recovery(), (SELECT state FROM pg_stat_replication WHERE application_name = $1)",
            &[&standby],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("streaming")
    );
}

async fn run(o: &Options) -> replica::Report {
    replica::run(o, &mut |_: &str| true)
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", e.causes()))
}
