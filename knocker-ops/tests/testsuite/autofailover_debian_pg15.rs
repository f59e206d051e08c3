//! `knocker autofailover` on Debian clusters (pg_createcluster layout:
//! configuration in /etc/postgresql/15/NAME, conf.d included, start.conf):
//! a primary and a standby cloned by `knocker replica --clone-from`, both
//! with a conf.d file of the operator's (the server certificate of the
//! formation's CA, listen_addresses and `work_mem = 7MB`), enrolled with
//! `--cluster` against a monitor on loopback (keepers as children of this
//! test). Checked: the dry run predicts the moved postgresql.conf exactly
//! and says what happens to the layout; the cluster leaves pg_lsclusters;
//! conf.d stays in force (work_mem 7MB, the CA's certificate) on both
//! nodes; knocker's pg_hba.conf blocks are in the file in force; writes go
//! on through the multi-host string; `--disable` on both nodes puts the
//! layout back (the /etc files byte for byte, pg_hba.conf as it was in
//! force), pg_lsclusters lists them, pg_ctlcluster stops and starts them,
//! the standby streams again, and no acknowledged write is lost. About
//! 40 s.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::pgaf::{self, Keepers, Scratch};
use common::{options, Leftovers};
use knocker_ops::autofailover::{self, Action, Options, Report, Secret};
use knocker_ops::replica;
use pg_harness::{DebianCluster, OsUser};
use pgctl::conninfo::{ConnInfo, Keyword};

/// The files of a Debian cluster's configuration directory (and conf.d)
/// with their contents.
fn etc_files(c: &DebianCluster) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [c.conf_dir(), c.conf_dir().join("conf.d")] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            // hba_install's lock and backups come and go.
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                !name.starts_with('.') && !name.contains(".knocker-backup-")
            })
            .collect();
        names.sort();
        for p in names {
            let bytes = std::fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    out
}

fn listed(c: &DebianCluster) -> Option<String> {
    let out = std::process::Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[0] == "15" && f[1] == c.name()
        })
        .map(|l| l.split_whitespace().nth(3).unwrap_or("").to_string())
}

async fn show(c: &DebianCluster, name: &str) -> String {
    let client = c.connect().await.unwrap();
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

fn af_options(action: Action, c: &DebianCluster, name: &str) -> Options {
    let mut o = Options::new(action);
    o.cluster = Some(format!("15/{}", c.name()));
    o.config = "/nonexistent/knocknoc.conf".into();
    o.name = Some(name.into());
    o
}

async fn enroll(monitor: &str, c: &DebianCluster, name: &str) -> autofailover::EnrollReport {
    let o = af_options(
        Action::Enroll {
            monitor: Secret(monitor.into()),
        },
        c,
        name,
    );
    let mut asked = Vec::new();
    let r = autofailover::run(&o, &mut |q: &str| {
        asked.push(q.to_string());
        true
    })
    .await
    .unwrap();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].contains("pg_lsclusters") && asked[0].contains("conf.d"),
        "{}",
        asked[0]
    );
    match r {
        Report::Enroll(r) => r,
        other => panic!("{other:?}"),
    }
}

/// `--disable` of `c`, whose keeper is `keeper` in `keepers`: reaped
/// when it exits, as a supervisor would (pg_autoctl drop node waits for
/// the keeper's pid to vanish; an unreaped keeper costs 30 s).
async fn disable(
    c: &DebianCluster,
    name: &str,
    keepers: &mut Keepers,
    keeper: u32,
) -> autofailover::DisableReport {
    let i = keepers
        .children
        .iter()
        .position(|k| k.id() == keeper)
        .unwrap();
    let mut child = keepers.children.remove(i);
    let reaper = std::thread::spawn(move || child.wait());
    let o = af_options(Action::Disable, c, name);
    let r = autofailover::run(&o, &mut |_: &str| true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reaper.is_finished() {
        assert!(Instant::now() < deadline, "the keeper did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match r.unwrap() {
        Report::Disable(r) => r,
        other => panic!("{other:?}"),
    }
}

/// pg_autoctl's backup directory for this node (beside the data
/// directory; pg_dropcluster leaves it).
fn backup_dir(c: &DebianCluster) -> Option<PathBuf> {
    let a = autofailover::Autoctl::for_data_dir(&c.data_dir(), Path::new("/usr/bin")).ok()?;
    let cfg = std::fs::read_to_string(a.config_file()).ok()?;
    cfg.lines()
        .find_map(|l| l.trim().strip_prefix("backup_directory = "))
        .map(PathBuf::from)
}

/// Removes pg_autoctl's `/var/lib/postgresql/15/backup` when the test
/// ends, if empty (other tests may be using it).
struct EmptyBackupParent;

impl Drop for EmptyBackupParent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir("/var/lib/postgresql/15/backup");
    }
}

#[test]
fn enroll_and_disable_keep_the_layout_debian_cluster_pg15() {
    pg_harness::block_on(async {
        let begun = Instant::now();
        let _backup_parent = EmptyBackupParent;
        let mut leftovers = Leftovers(Vec::new());
        let postgres = OsUser::lookup("postgres").unwrap();
        let user = OsUser::server_user().clone();
        let _scratch = Scratch::create("knocker-af-debian-", &user).unwrap();
        let scratch = _scratch.0.clone();
        // The monitor's files belong to its user, the nodes' to postgres.
        let tls = pgaf::make_tls(&scratch.join("tls"), &user, "IP:127.0.0.1,DNS:localhost");
        let node_tls = scratch.join("node-tls");
        std::fs::create_dir(&node_tls).unwrap();
        for f in ["server.crt", "server.key"] {
            std::fs::copy(scratch.join("tls").join(f), node_tls.join(f)).unwrap();
            postgres.chown(&node_tls.join(f)).unwrap();
        }
        let ca = tls.0.display().to_string();

        let primary = DebianCluster::create(15).await;
        let standby = DebianCluster::create(15).await;
        leftovers.debian_clusters(&[&primary, &standby]);
        // Dropped before the clusters: a keeper restarts a dropped cluster.
        let mut keepers = Keepers {
            children: Vec::new(),
            scratch: scratch.clone(),
        };
        let monitor = pgaf::start_monitor(
            &mut keepers,
            &scratch,
            &user,
            &tls,
            "127.0.0.1",
            "127.0.0.1/32",
        )
        .await;

        // The operator's conf.d: the formation's certificate, one address,
        // and a memory setting of their own.
        for c in [&primary, &standby] {
            std::fs::write(
                c.conf_dir().join("conf.d/operator.conf"),
                format!(
                    "ssl_cert_file = '{}'\nssl_key_file = '{}'\nlisten_addresses = '127.0.0.1'\n\
                     work_mem = '7MB'\n",
                    node_tls.join("server.crt").display(),
                    node_tls.join("server.key").display()
                ),
            )
            .unwrap();
            c.restart().await;
        }
        let conn = common::app_database(&primary).await;

        // knocker replica: --init and --allow on the primary, --clone-from
        // on the standby.
        let mut init = options(replica::Action::Init, &primary);
        init.conn = Some(conn.clone());
        init.name = Some("node_a".into());
        let r = replica::run(&init, &mut |_: &str| true).await.unwrap();
        let mut info = ConnInfo::parse(&r.replication_url.unwrap().0).unwrap();
        info.set(Keyword::Host, "127.0.0.1");
        let mut allow = options(
            replica::Action::Allow {
                cidr: "127.0.0.1/32".parse().unwrap(),
                sync: false,
            },
            &primary,
        );
        allow.conn = Some(conn.clone());
        allow.name = Some("node_b".into());
        replica::run(&allow, &mut |_: &str| true).await.unwrap();
        let mut clone = options(
            replica::Action::CloneFrom {
                uri: replica::Secret(info.to_uri()),
            },
            &standby,
        );
        clone.name = Some("node_b".into());
        let r = replica::run(&clone, &mut |_: &str| true).await.unwrap();
        for d in &r.done {
            if let Some(moved) = d.strip_prefix("the old data directory is kept as ") {
                leftovers.0.push(PathBuf::from(moved));
            }
        }
        let c = pgctl::connect::connect(&pgaf::params_for(&format!(
            "{conn}?sslmode=verify-full&sslrootcert={ca}"
        )))
        .await
        .unwrap();
        c.client()
            .batch_execute("CREATE TABLE counter(n bigint PRIMARY KEY)")
            .await
            .unwrap();
        drop(c);
        let etc_before = [etc_files(&primary), etc_files(&standby)];
        assert!(listed(&primary).is_some() && listed(&standby).is_some());

        // --dry-run: what happens to the layout, the moved postgresql.conf
        // exactly as pg_autoctl and knocker will leave it; nothing done.
        let mut dry = af_options(
            Action::Enroll {
                monitor: Secret(monitor.clone()),
            },
            &primary,
            "node_a",
        );
        dry.dry_run = true;
        let Report::Enroll(r) = autofailover::run(&dry, &mut |_: &str| panic!("asked"))
            .await
            .unwrap()
        else {
            panic!()
        };
        let plan = r.plan.unwrap();
        let text = plan.to_string();
        let conf_d = format!(
            "include_dir = '{}'",
            primary.conf_dir().join("conf.d").display()
        );
        assert!(text.contains(&format!("+{conf_d}")), "{text}");
        assert!(text.contains("+# edited by pg_auto_failover"), "{text}");
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("pg_lsclusters no longer lists")),
            "{:?}",
            r.warnings
        );
        let predicted = plan
            .files
            .iter()
            .find(|f| f.path == primary.data_dir().join("postgresql.conf"))
            .expect("the moved postgresql.conf is in the plan")
            .new
            .clone();
        assert_eq!(etc_files(&primary), etc_before[0]);

        // Enrol the primary, then the standby (it keeps its data).
        let t = Instant::now();
        let r = enroll(&monitor, &primary, "node_a").await;
        assert_eq!(r.role, "primary");
        let keeper_a = pgaf::spawn(r.supervise.as_ref().unwrap(), &scratch.join("node_a.log"));
        let keeper_a_pid = keeper_a.id();
        keepers.children.push(keeper_a);
        pgaf::wait_states(&monitor, &[("node_a", "single")], Duration::from_secs(60)).await;
        eprintln!("primary enrolled in {:.1} s", t.elapsed().as_secs_f64());
        if let Some(b) = backup_dir(&primary) {
            leftovers.0.push(b);
        }
        let moved = std::fs::read(primary.data_dir().join("postgresql.conf")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&moved),
            String::from_utf8_lossy(&predicted),
            "the plan predicted the moved postgresql.conf"
        );
        assert!(!primary.conf_file().exists());
        assert_eq!(
            listed(&primary),
            None,
            "an adopted cluster leaves pg_lsclusters"
        );

        let r = enroll(&monitor, &standby, "node_b").await;
        assert_eq!(r.role, "standby");
        let keeper_b = pgaf::spawn(r.supervise.as_ref().unwrap(), &scratch.join("node_b.log"));
        let keeper_b_pid = keeper_b.id();
        keepers.children.push(keeper_b);
        pgaf::wait_states(
            &monitor,
            &[("node_a", "primary"), ("node_b", "secondary")],
            Duration::from_secs(90),
        )
        .await;
        if let Some(b) = backup_dir(&standby) {
            leftovers.0.push(b);
        }
        eprintln!(
            "both enrolled after {:.1} s (standby {:.1} s)",
            begun.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64()
        );

        // conf.d in force on both (under the keepers), knocker's blocks in
        // the pg_hba.conf in force.
        let mut hba_enrolled = Vec::new();
        for c in [&primary, &standby] {
            assert_eq!(show(c, "work_mem").await, "7MB");
            assert_eq!(
                show(c, "ssl_cert_file").await,
                node_tls.join("server.crt").display().to_string()
            );
            let hba = show(c, "hba_file").await;
            assert_eq!(hba, c.data_dir().join("pg_hba.conf").display().to_string());
            let text = std::fs::read_to_string(&hba).unwrap();
            assert!(text.contains("# BEGIN knocker autofailover"), "{text}");
            hba_enrolled.push(text);
        }
        assert!(
            hba_enrolled[0].contains("# BEGIN knocker replica"),
            "{}",
            hba_enrolled[0]
        );

        // --status --cluster finds the adopted cluster (no longer listed by
        // pg_lsclusters) through its pg_autoctl.cfg.
        let o = af_options(Action::Status { monitor: None }, &primary, "node_a");
        let Report::Status(st) = autofailover::run(&o, &mut |_: &str| true).await.unwrap() else {
            panic!()
        };
        assert_eq!(st.nodes.len(), 2, "{st:?}");

        // Writes through the multi-host string go on.
        let url = format!(
            "postgres://knocknoc:pw@127.0.0.1:{},127.0.0.1:{}/knocknoc?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full&sslrootcert={ca}",
            primary.port(),
            standby.port()
        );
        let (attempts, stop, writer) =
            pgaf::start_writer(pgaf::params_for(&url), 1, Duration::from_millis(20));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            attempts.lock().unwrap().iter().any(|a| a.acked),
            "no write while enrolled"
        );

        // --disable: the standby, then the primary. Their keepers exit as
        // the nodes are dropped.
        let mut dry = af_options(Action::Disable, &primary, "node_a");
        dry.dry_run = true;
        let Report::Disable(r) = autofailover::run(&dry, &mut |_: &str| panic!("asked"))
            .await
            .unwrap()
        else {
            panic!()
        };
        let text = r.plan.unwrap().to_string();
        assert!(
            text.contains(&format!("pg_ctlcluster 15 {} start", primary.name())),
            "{text}"
        );
        assert!(text.contains(&format!("-{conf_d}")), "{text}");
        assert!(text.contains("+data_directory = "), "{text}");
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("pg_lsclusters lists the cluster again")),
            "{:?}",
            r.warnings
        );
        // The primary goes last: with node_b still enrolled the dry run
        // warns and a real --disable refuses (the monitor would promote
        // node_b while node_a takes writes again), changing nothing.
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("node_b still enrolled") && w.contains("two primaries")),
            "{:?}",
            r.warnings
        );
        let e = autofailover::run(
            &af_options(Action::Disable, &primary, "node_a"),
            &mut |_: &str| true,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.kind(),
            knocker_ops::ErrorKind::Refused { overridable: true },
            "{e}"
        );
        assert!(e.to_string().contains("two primaries"), "{e}");
        assert!(
            pg_harness::pgaf::alive(keeper_a_pid),
            "the refused --disable stopped the keeper"
        );
        let t = Instant::now();
        let r = disable(&standby, "node_b", &mut keepers, keeper_b_pid).await;
        eprintln!(
            "standby disabled in {:.1} s: {:?}",
            t.elapsed().as_secs_f64(),
            r.done
        );
        let t = Instant::now();
        let r = disable(&primary, "node_a", &mut keepers, keeper_a_pid).await;
        eprintln!(
            "primary disabled in {:.1} s: {:?}",
            t.elapsed().as_secs_f64(),
            r.done
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        let attempts = attempts.lock().unwrap().clone();
        let acked: Vec<i64> = attempts.iter().filter(|a| a.acked).map(|a| a.n).collect();
        assert!(
            attempts.iter().rev().take(5).any(|a| a.acked),
            "writes did not go on after --disable"
        );

        // The layout is back: /etc byte for byte (pg_hba.conf as it was in
        // force while enrolled), listed, started and stopped by
        // pg_ctlcluster.
        for (i, c) in [&primary, &standby].into_iter().enumerate() {
            let now = etc_files(c);
            let hba = c.hba_file();
            let expected: Vec<(PathBuf, Vec<u8>)> = etc_before[i]
                .iter()
                .map(|(p, b)| {
                    if *p == hba {
                        (p.clone(), hba_enrolled[i].clone().into_bytes())
                    } else {
                        (p.clone(), b.clone())
                    }
                })
                .collect();
            for ((p, want), (q, have)) in expected.iter().zip(&now) {
                assert_eq!(p, q);
                assert_eq!(
                    String::from_utf8_lossy(have),
                    String::from_utf8_lossy(want),
                    "{} differs after --disable",
                    p.display()
                );
            }
            assert_eq!(expected.len(), now.len(), "{now:?}");
            for f in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
                assert!(
                    !c.data_dir().join(f).exists(),
                    "{f} left in the data directory"
                );
            }
            assert_eq!(
                show(c, "config_file").await,
                c.conf_file().display().to_string()
            );
            assert_eq!(show(c, "work_mem").await, "7MB");
            let status = listed(c).expect("pg_lsclusters lists the cluster again");
            assert!(status.starts_with("online"), "{status}");
            c.stop().await;
            assert!(listed(c).unwrap().starts_with("down"));
            c.start().await;
        }
        assert_eq!(listed(&standby).as_deref(), Some("online,recovery"));

        // Nothing acknowledged is lost, and the standby streams again.
        let app = |port: u16| {
            pgaf::params_for(&format!(
                "postgresql://knocknoc:pw@127.0.0.1:{port}/knocknoc?sslmode=verify-full&sslrootcert={ca}"
            ))
        };
        let p = pgctl::connect::connect(&app(primary.port())).await.unwrap();
        let p = p.client();
        let present: BTreeSet<i64> = p
            .query("SELECT n FROM counter", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let lost: Vec<&i64> = acked.iter().filter(|n| !present.contains(n)).collect();
        assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
        p.batch_execute("INSERT INTO counter VALUES (-1)")
            .await
            .unwrap();
        let s = pgctl::connect::connect(&app(standby.port())).await.unwrap();
        let s = s.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while s
            .query_opt("SELECT 1 FROM counter WHERE n = -1", &[])
            .await
            .unwrap()
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "the disabled standby does not stream"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "{} writes acknowledged, 0 lost; whole test {:.1} s",
            acked.len(),
            begun.elapsed().as_secs_f64()
        );
        drop(keepers);
    });
}
