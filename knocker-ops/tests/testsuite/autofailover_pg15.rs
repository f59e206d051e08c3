//! `knocker autofailover` against real pg_auto_failover 2.0 on one machine:
//! a monitor made by `--monitor-init` (bad input refused with nothing
//! created, `--dry-run`, then the real one; its URI once, its password in
//! no file but a 0600 passfile; a second run has nothing to do) and two
//! pg-harness PostgreSQL 15 nodes on loopback, one CA for all three, the
//! monitor and the keepers run by this test with the `supervise` commands
//! knocker printed (no systemd here). Enrol the running primary, clone a
//! standby with `pg_basebackup -R` (what `knocker replica --clone-from`
//! leaves: a primary_conninfo of its own) and enrol it keeping its data;
//! under a client writing through the multi-host string: SIGKILL the
//! monitor's tree (no failover, every write goes on) and restart it;
//! SIGKILL the primary's whole process tree (every acknowledged commit on
//! the new primary, time to the first write printed); let the old primary
//! rejoin, then SIGSTOP the new primary's tree (same checks, plus a probe
//! writing to the frozen node alone: no write acknowledged there once the
//! other took writes, and demoted soon after SIGCONT); `knocker failover
//! --switchover` on the enrolled primary (delegated to `pg_autoctl perform
//! switchover`; nothing acknowledged lost, `--status` shows the roles
//! swapped); then `--disable` the standby (it keeps streaming, the
//! primary's writes stop waiting for it) and `--enroll` it again. Bad
//! input is refused with nothing touched. About 80 s. Every process is
//! stopped by its pid and every directory removed, also on failure.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use knocker_ops::autofailover::{self, Action, Options, Report, Secret};
use knocker_ops::ErrorKind;
use pg_harness::{Cluster, OsUser};

use crate::common;
use common::pgaf::*;

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

#[test]
fn monitor_init_enroll_kill_freeze_switchover_disable_and_back_pg15() {
    pg_harness::block_on(async {
        let begun = Instant::now();
        let user = OsUser::server_user().clone();
        // Dropped in reverse: the keepers stop first (a cluster dropped
        // under a running keeper is restarted by it), then the clusters,
        // then the scratch directory.
        let _scratch = Scratch::create("knocker-autofailover-", &user).unwrap();
        let scratch = _scratch.0.clone();
        let tls = make_tls(&scratch.join("tls"), &user, "IP:127.0.0.1,DNS:localhost");
        let ca = tls.0.display().to_string();
        let primary = Cluster::start_with(15, node_options(&tls)).await;
        let standby = Cluster::start_with(15, node_options(&tls)).await;
        let mut keepers = Keepers {
            children: Vec::new(),
            scratch: scratch.clone(),
        };

        // The monitor, by --monitor-init: bad input first (exit 2,
        // nothing created), then --dry-run, then the real thing.
        let mport: u16 = free_port();
        let mon = scratch.join("monitor");
        let init = autofailover::MonitorInit {
            data_dir: mon.clone(),
            port: mport,
            address: Some("127.0.0.1".into()),
            ssl_ca: Some(tls.0.clone()),
            ssl_cert: Some(tls.1.clone()),
            ssl_key: Some(tls.2.clone()),
            allow: vec![],
        };
        let mstate = scratch.join(".monitor.pg_autoctl");
        for bad in [
            autofailover::MonitorInit {
                ssl_ca: None,
                ..init.clone()
            },
            autofailover::MonitorInit {
                data_dir: "relative/monitor".into(),
                ..init.clone()
            },
            autofailover::MonitorInit {
                ssl_key: Some(scratch.join("tls/missing.key")),
                ..init.clone()
            },
            autofailover::MonitorInit {
                allow: vec!["10.0.0.0/33".into()],
                ..init.clone()
            },
            // root's 0600 key: PostgreSQL could not read it (pg_autoctl
            // would retry for a minute before giving up).
            autofailover::MonitorInit {
                ssl_key: Some(scratch.join("tls/ca.key")),
                ..init.clone()
            },
            autofailover::MonitorInit {
                address: Some("a b".into()),
                ..init.clone()
            },
        ] {
            let e = autofailover::run(
                &Options::new(Action::MonitorInit(bad.clone())),
                &mut |_: &str| panic!("asked"),
            )
            .await
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad:?}: {e}");
            assert!(
                !mon.exists() && !mstate.exists(),
                "{bad:?} touched something"
            );
        }
        let mut init_options = Options::new(Action::MonitorInit(init.clone()));
        init_options.dry_run = true;
        let Report::MonitorInit(r) = run_unasked(&init_options).await else {
            panic!()
        };
        let plan = r.plan.unwrap().to_string();
        for want in [
            format!(
                "pg_autoctl create monitor --pgctl {BIN}/pg_ctl --pgdata {}",
                mon.display()
            ),
            "--skip-pg-hba".to_string(),
            "--ssl-mode verify-full".to_string(),
            "+hostssl pg_auto_failover autoctl_node samenet".to_string(),
            "ALTER ROLE autoctl_node PASSWORD '<generated>'".to_string(),
            "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 5000".to_string(),
        ] {
            assert!(plan.contains(&want), "{want} missing from:\n{plan}");
        }
        assert!(!plan.contains("trust"), "{plan}");
        assert!(r.monitor_url.is_none());
        assert!(
            !mon.exists() && !mstate.exists(),
            "--dry-run touched something"
        );
        init_options.dry_run = false;
        let t = Instant::now();
        let Report::MonitorInit(r) = run_unasked(&init_options).await else {
            panic!()
        };
        eprintln!(
            "--monitor-init took {:.1} s:\n{}",
            t.elapsed().as_secs_f64(),
            r.done.join("\n")
        );
        assert!(r.changed);
        let monitor = r.monitor_url.clone().expect("the monitor URI, once").0;
        assert!(
            monitor.starts_with("postgresql://autoctl_node:")
                && monitor.contains(&format!("@127.0.0.1:{mport}/pg_auto_failover?"))
                && monitor.contains("sslmode=verify-full"),
            "{monitor}"
        );
        let monitor_password = pgctl::conninfo::ConnInfo::parse(&monitor)
            .unwrap()
            .get(pgctl::conninfo::Keyword::Password)
            .unwrap()
            .to_string();
        assert!(monitor_password.len() >= 32);
        let margv = r.supervise.clone().expect("supervise: no systemd here");
        // The password: nowhere but the 0600 passfile (not in argv, the
        // configuration, pg_hba.conf or the logs).
        for entry in walk(&scratch) {
            let Ok(text) = std::fs::read(&entry) else {
                continue;
            };
            if String::from_utf8_lossy(&text).contains(&monitor_password) {
                assert_eq!(
                    entry,
                    mstate.join("pgpass"),
                    "password in {}",
                    entry.display()
                );
                assert_eq!(
                    std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777,
                    0o600
                );
            }
        }
        assert!(!margv.join(" ").contains(&monitor_password));
        let hba = std::fs::read_to_string(mon.join("pg_hba.conf")).unwrap();
        assert!(
            !hba.contains("trust") && hba.contains(autofailover::BEGIN),
            "{hba}"
        );
        // Again: nothing to do.
        let Report::MonitorInit(again) = run_unasked(&init_options).await else {
            panic!()
        };
        assert!(!again.changed && again.monitor_url.is_none(), "{again:?}");
        keepers
            .children
            .push(spawn(&margv, &scratch.join("monitor.log")));

        // The running primary, with the application's table.
        app_database(&primary).await;
        let appurl = |ports: &[u16]| {
            format!(
                "postgres://app:apppw@{}/appdb?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full&sslrootcert={ca}",
                ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
            )
        };
        let params_for = |url: &str| {
            pgctl::conninfo::resolve_from_process_env(
                &pgctl::conninfo::ConnInfo::parse(url).unwrap(),
            )
            .unwrap()
            .params
        };
        let c = pgctl::connect::connect(&params_for(&appurl(&[primary.port()])))
            .await
            .unwrap();
        c.client()
            .batch_execute("CREATE TABLE counter(n bigint PRIMARY KEY)")
            .await
            .unwrap();
        drop(c);

        // Bad input: exit 2 (Usage) with nothing touched.
        let hba_before = std::fs::read(primary.hba_file()).unwrap();
        for bad in [
            "postgres://autoctl_node@127.0.0.1:1/pg_auto_failover?sslmode=verify-full&sslrootcert=/x".to_string(),
            monitor.replace("verify-full", "require"),
            monitor.replace("autoctl_node:", "someone:"),
            "not a uri ' ".to_string(),
        ] {
            let mut o = Options::new(Action::Enroll { monitor: Secret(bad.clone()) });
            o.admin_conn = Some(admin(&primary));
            let e = autofailover::run(&o, &mut |_: &str| panic!("asked")).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}: {e}");
        }
        let mut o = Options::new(Action::Enroll {
            monitor: Secret(monitor.clone()),
        });
        o.admin_conn = Some(admin(&primary));
        o.name = Some("bad name;".into());
        assert_eq!(
            autofailover::run(&o, &mut |_: &str| true)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Usage
        );
        assert_eq!(std::fs::read(primary.hba_file()).unwrap(), hba_before);
        let state_dir = primary
            .data_dir()
            .parent()
            .unwrap()
            .join(".data.pg_autoctl");
        assert!(!state_dir.exists());

        // --dry-run: the exact commands, no password, nothing done.
        let mut enroll = Options::new(Action::Enroll {
            monitor: Secret(monitor.clone()),
        });
        enroll.admin_conn = Some(admin(&primary));
        enroll.name = Some("node_a".into());
        let mut dry = enroll.clone();
        dry.dry_run = true;
        let Report::Enroll(r) = run_unasked(&dry).await else {
            panic!()
        };
        let plan = r.plan.unwrap().to_string();
        for want in [
            format!(
                "--pgport {} --listen 127.0.0.1 --hostname 127.0.0.1 --name node_a",
                primary.port()
            ),
            "--skip-pg-hba".to_string(),
            "ALTER SYSTEM SET shared_buffers = '32MB'".to_string(),
            "ALTER SYSTEM SET wal_keep_size = '0'".to_string(),
            // pg-harness runs with synchronous_commit = off: acknowledged
            // commits would be lost at failover (they were, before this).
            "ALTER SYSTEM SET synchronous_commit = 'on'".to_string(),
            "ALTER SYSTEM SET full_page_writes = 'on'".to_string(),
            "+# BEGIN knocker autofailover".to_string(),
            "pg_ctl -D".to_string(),
        ] {
            assert!(plan.contains(&want), "{want} missing from:\n{plan}");
        }
        assert!(!plan.contains(&monitor_password), "{plan}");
        assert_eq!(std::fs::read(primary.hba_file()).unwrap(), hba_before);

        // Enrol the running primary; it asks before stopping it.
        let t = Instant::now();
        let mut asked = Vec::new();
        let Report::Enroll(r) = autofailover::run(&enroll, &mut |q: &str| {
            asked.push(q.to_string());
            true
        })
        .await
        .unwrap() else {
            panic!()
        };
        assert_eq!(asked.len(), 1);
        assert_eq!(r.role, "primary");
        let supervise_a = r.supervise.clone().unwrap();
        let keeper_a = spawn(&supervise_a, &scratch.join("node_a.log"));
        let keeper_a_pid = keeper_a.id();
        keepers.children.push(keeper_a);
        wait_states(&monitor, &[("node_a", "single")], Duration::from_secs(60)).await;
        eprintln!(
            "primary enrolled and back in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // No password in pg_autoctl's world-readable configuration.
        let cfg = std::fs::read_to_string(
            state_dir
                .join("config/pg_autoctl")
                .join(primary.data_dir().strip_prefix("/").unwrap())
                .join("pg_autoctl.cfg"),
        )
        .unwrap();
        assert!(!cfg.contains(&monitor_password), "{cfg}");
        assert!(
            cfg.contains("network_partition_timeout = 3"),
            "knocker's partition timeout missing:\n{cfg}"
        );
        // Enrolling again: already enrolled, nothing asked; the keeper's
        // partition timeout is set again (a run stopped after `create`
        // would have missed it).
        let dirs = [primary.socket_dir(), standby.socket_dir()];
        let socket = format!(".s.PGSQL.{}", primary.port());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dirs.iter().any(|d| d.join(&socket).exists()) {
            assert!(Instant::now() < deadline, "no socket {socket} in {dirs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut enroll_again = enroll.clone();
        enroll_again.admin_conn = Some(admin_at(primary.port(), &dirs));
        let Report::Enroll(again) = run_unasked(&enroll_again).await else {
            panic!()
        };
        assert!(
            again.done.iter().any(|d| d.contains("already enrolled")),
            "{again:?}"
        );
        let passfile = state_dir.join("pgpass");
        assert_eq!(
            std::fs::metadata(&passfile).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // A standby cloned from it (primary_conninfo of its own, as knocker
        // replica leaves it), running, then enrolled keeping its data.
        let from = CloneSource {
            host: "127.0.0.1",
            port: primary.port(),
            ca: &ca,
            passfile: &passfile,
        };
        let start_log = scratch.join("standby-start.log");
        let r = clone_and_enroll_standby(&user, &standby, &from, "", &monitor, &start_log).await;
        let auto_conf =
            std::fs::read_to_string(standby.data_dir().join("postgresql.auto.conf")).unwrap();
        assert!(!auto_conf.contains("primary_conninfo"), "{auto_conf}");
        let keeper_b = spawn(r.supervise.as_ref().unwrap(), &scratch.join("node_b.log"));
        let keeper_b_pid = keeper_b.id();
        keepers.children.push(keeper_b);
        wait_states(
            &monitor,
            &[("node_a", "primary"), ("node_b", "secondary")],
            Duration::from_secs(90),
        )
        .await;
        let s = status(&monitor).await;
        assert!(s.nodes.iter().all(|n| n.healthy), "{s:?}");
        assert!(
            s.multi_host_url.contains(&format!(
                "127.0.0.1:{},127.0.0.1:{}",
                primary.port(),
                standby.port()
            )),
            "{}",
            s.multi_host_url
        );
        // Synchronous (quorum) streaming under pg_auto_failover's own name.
        let c = pgctl::connect::connect(&params_for(&appurl(&[primary.port()])))
            .await
            .unwrap();
        drop(c);

        // The writer, through the multi-host string.
        let params = params_for(&appurl(&[primary.port(), standby.port()]));
        let (attempts, stop, writer) = start_writer(params.clone(), 1, Duration::from_millis(20));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            attempts.lock().unwrap().iter().any(|a| a.acked),
            "no write before the fault"
        );

        // The monitor's whole tree killed: no failover, writes go on.
        let monitor_pid = keepers.children[0].id();
        let monitor_tree = tree(monitor_pid);
        let monitor_killed_at = Instant::now();
        for pid in &monitor_tree {
            // SAFETY: kill(2) on the monitor this test started and its descendants.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        keepers.stop(monitor_pid); // reaps our child
        tokio::time::sleep(Duration::from_secs(6)).await;
        {
            let attempts = attempts.lock().unwrap();
            let during: Vec<&Attempt> = attempts
                .iter()
                .filter(|a| a.started > monitor_killed_at)
                .collect();
            let failed = during.iter().filter(|a| !a.acked).count();
            eprintln!(
                "monitor killed: {} writes in 6 s, {failed} failed",
                during.len()
            );
            assert!(
                during.len() > 10 && failed == 0,
                "writes stopped without the monitor"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while monitor_tree.iter().any(|p| alive(*p)) {
            assert!(
                Instant::now() < deadline,
                "the monitor's processes are still there"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let monitor_back = Instant::now();
        keepers
            .children
            .insert(0, spawn(&margv, &scratch.join("monitor-restarted.log")));
        wait_states(
            &monitor,
            &[("node_a", "primary"), ("node_b", "secondary")],
            Duration::from_secs(60),
        )
        .await;
        // No failover within the monitor's startup_grace_period (10 s)
        // after it starts: wait it out so the kill below measures failover.
        let grace = Duration::from_secs(11);
        if monitor_back.elapsed() < grace {
            tokio::time::sleep(grace - monitor_back.elapsed()).await;
        }
        let s = status(&monitor).await;
        assert!(s.nodes.iter().all(|n| n.healthy), "{s:?}");

        // SIGKILL the primary's whole process tree.
        let victims = tree(keeper_a_pid);
        let killed_at = Instant::now();
        for pid in &victims {
            // SAFETY: kill(2) on the keeper we started and its descendants.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        keepers.stop(keeper_a_pid); // reaps our child
        let first_write = loop {
            if let Some(a) = attempts
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.started > killed_at && a.acked)
            {
                break a.started.duration_since(killed_at);
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(60),
                "no write within 60 s of the kill"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while victims.iter().any(|p| alive(*p)) {
            assert!(Instant::now() < deadline, "killed processes still there");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Nothing acknowledged is lost.
        let c = pgctl::connect::connect(&params).await.unwrap();
        let present: BTreeSet<i64> = c
            .client()
            .query("SELECT n FROM counter", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let attempts = attempts.lock().unwrap().clone();
        let acked: Vec<i64> = attempts.iter().filter(|a| a.acked).map(|a| a.n).collect();
        let lost: Vec<&i64> = acked.iter().filter(|n| !present.contains(n)).collect();
        eprintln!(
            "SIGKILL of the primary's tree: first write through the multi-host string after {:.2} s; \
             {} acknowledged, {} lost; whole test {:.1} s",
            first_write.as_secs_f64(),
            acked.len(),
            lost.len(),
            begun.elapsed().as_secs_f64()
        );
        assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
        assert!(first_write < Duration::from_secs(30), "{first_write:?}");
        let s = status(&monitor).await;
        let b = s.nodes.iter().find(|n| n.name == "node_b").unwrap();
        assert_eq!(b.role, "primary", "{s:?}");
        let last = s
            .last_failover
            .clone()
            .expect("the failover in the monitor's events");
        eprintln!("last failover: {last:?}");
        assert_eq!(last.node, "node_b");
        assert!(last.writable_at.is_some(), "{last:?}");
        assert!(
            s.nodes.iter().any(|n| n.name == "node_a" && !n.healthy),
            "{s:?}"
        );
        drop(c);

        // Freeze: node_a rejoins (crash recovery, rewind if needed,
        // catch-up), then node_b's whole tree gets SIGSTOP under a writer,
        // with a probe writing to node_b alone (two writable nodes at once
        // would show there), and SIGCONT 2 s after the first write
        // through the new primary.
        let keeper_a2 = spawn(&supervise_a, &scratch.join("node_a-rejoin.log"));
        let keeper_a2_pid = keeper_a2.id();
        keepers.children.push(keeper_a2);
        let t = Instant::now();
        wait_states(
            &monitor,
            &[("node_a", "secondary"), ("node_b", "primary")],
            Duration::from_secs(90),
        )
        .await;
        eprintln!(
            "node_a rejoined as secondary in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let (attempts2, stop2, writer2) =
            start_writer(params.clone(), 1_000_000, Duration::from_millis(20));
        let direct_b = params_for(&appurl(&[standby.port()]));
        let (probe_b, stop_probe, prober) =
            start_writer(direct_b.clone(), 2_000_000, Duration::from_millis(200));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let frozen = tree(keeper_b_pid);
        let frozen_at = Instant::now();
        for pid in &frozen {
            // SAFETY: kill(2) on the keeper this test started and its descendants.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGSTOP) };
        }
        let first_write_frozen = loop {
            if let Some(a) = attempts2
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.started > frozen_at && a.acked)
            {
                break a.started.duration_since(frozen_at);
            }
            if frozen_at.elapsed() > Duration::from_secs(60) {
                for pid in &frozen {
                    // SAFETY: as above; nothing stays stopped.
                    unsafe { libc::kill(*pid as libc::pid_t, libc::SIGCONT) };
                }
                panic!("no write within 60 s of the freeze");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let new_primary_writable = frozen_at + first_write_frozen;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let resumed_at = Instant::now();
        for pid in &frozen {
            // SAFETY: as above.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGCONT) };
        }
        let demoted_after = loop {
            let s = status(&monitor).await;
            let b = s.nodes.iter().find(|n| n.name == "node_b").unwrap();
            if b.role != "primary" {
                break resumed_at.elapsed();
            }
            assert!(
                resumed_at.elapsed() < Duration::from_secs(30),
                "node_b still primary: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop2.store(true, Ordering::Relaxed);
        stop_probe.store(true, Ordering::Relaxed);
        writer2.await.unwrap();
        prober.await.unwrap();
        let both_writable = probe_b
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.acked && a.started >= new_primary_writable)
            .count();
        let c = pgctl::connect::connect(&params).await.unwrap();
        let present2: BTreeSet<i64> = c
            .client()
            .query("SELECT n FROM counter", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let attempts2 = attempts2.lock().unwrap().clone();
        let acked2: Vec<i64> = attempts2.iter().filter(|a| a.acked).map(|a| a.n).collect();
        let lost2 = acked2.iter().filter(|n| !present2.contains(n)).count();
        eprintln!(
            "SIGSTOP of the primary's tree: first write after {:.2} s; {} acknowledged, {lost2} lost; \
             old primary resumed 2 s later, no longer primary after {:.2} s; writes acked on it \
             after the new primary took writes: {both_writable}",
            first_write_frozen.as_secs_f64(),
            acked2.len(),
            demoted_after.as_secs_f64()
        );
        assert_eq!(lost2, 0, "acknowledged commits lost after the freeze");
        assert_eq!(both_writable, 0, "two nodes took writes");
        assert!(
            first_write_frozen < Duration::from_secs(40),
            "{first_write_frozen:?}"
        );
        assert!(demoted_after < Duration::from_secs(10), "{demoted_after:?}");
        drop(c);
        wait_states(
            &monitor,
            &[("node_a", "primary"), ("node_b", "secondary")],
            Duration::from_secs(60),
        )
        .await;

        // knocker failover --switchover on the enrolled primary (node_a)
        // asks pg_auto_failover, under a writer through the multi-host
        // string: nothing acknowledged lost, the roles swapped.
        let sockets = [primary.socket_dir(), standby.socket_dir()];
        let mut switch = knocker_ops::failover::Options {
            action: knocker_ops::failover::Action::Switchover,
            admin_conn: Some(admin_at(primary.port(), &sockets)),
            cluster: None,
            dry_run: true,
            force: false,
            name: None,
            peer: Some("127.0.0.1".into()),
            reclone: false,
        };
        let e = knocker_ops::failover::run(&switch, &mut |_: &str| panic!("asked"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
        switch.peer = None;
        let r = knocker_ops::failover::run(&switch, &mut |_: &str| panic!("asked"))
            .await
            .unwrap();
        assert_eq!(r.delegated_to, Some("pg_auto_failover"));
        assert!(!r.changed);
        let plan = r.plan.expect("the command").to_string();
        assert!(
            plan.contains(&format!(
                "pg_autoctl perform switchover --pgdata {}",
                primary.data_dir().display()
            )),
            "{plan}"
        );
        let (attempts3, stop3, writer3) =
            start_writer(params.clone(), 4_000_000, Duration::from_millis(20));
        tokio::time::sleep(Duration::from_secs(1)).await;
        switch.dry_run = false;
        let t = Instant::now();
        let mut asked = 0;
        let r = knocker_ops::failover::run(&switch, &mut |_: &str| {
            asked += 1;
            true
        })
        .await
        .unwrap();
        let took = t.elapsed();
        assert_eq!(asked, 1);
        assert!(r.changed, "{r:?}");
        assert_eq!(r.old_primary.as_deref(), Some("node_a"), "{r:?}");
        assert_eq!(r.new_primary.as_deref(), Some("node_b"), "{r:?}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["new_primary"], "node_b", "{json}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop3.store(true, Ordering::Relaxed);
        writer3.await.unwrap();
        let c = pgctl::connect::connect(&params).await.unwrap();
        let present3: BTreeSet<i64> = c
            .client()
            .query("SELECT n FROM counter WHERE n >= 4000000", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(c);
        let attempts3 = attempts3.lock().unwrap().clone();
        let acked3: Vec<&Attempt> = attempts3.iter().filter(|a| a.acked).collect();
        let lost3 = acked3.iter().filter(|a| !present3.contains(&a.n)).count();
        let longest_gap = acked3
            .windows(2)
            .map(|w| w[1].started.duration_since(w[0].started))
            .max()
            .unwrap_or_default();
        eprintln!(
            "switchover through pg_auto_failover: {:.1} s; {} acknowledged, {lost3} lost, longest \
             gap between acknowledged writes {:.2} s",
            took.as_secs_f64(),
            acked3.len(),
            longest_gap.as_secs_f64()
        );
        assert_eq!(lost3, 0, "acknowledged commits lost in the switchover");
        assert!(acked3.len() > 10, "the writer did not write");
        wait_states(
            &monitor,
            &[("node_a", "secondary"), ("node_b", "primary")],
            Duration::from_secs(60),
        )
        .await;
        let s = status(&monitor).await;
        let role = |name: &str| s.nodes.iter().find(|n| n.name == name).unwrap().role;
        assert_eq!(
            (role("node_a"), role("node_b")),
            ("standby", "primary"),
            "{s:?}"
        );

        // --disable on the standby (now node_a): manual mode, still
        // streaming (its primary_conninfo kept, with the passfile), and the
        // primary's writes no longer wait for it. Then enrolled again.
        let (new_primary, old_primary) = (&standby, &primary);
        let mut disable = Options::new(Action::Disable);
        // A rewind copies the source's postgresql.conf, socket directory
        // included (its port comes from pg_autoctl's -p): ask where it is.
        disable.admin_conn = Some(admin_at(old_primary.port(), &sockets));
        let mut dry = disable.clone();
        dry.dry_run = true;
        let Report::Disable(r) = autofailover::run(&dry, &mut |_: &str| true).await.unwrap() else {
            panic!()
        };
        let plan = r.plan.unwrap().to_string();
        assert!(plan.contains("pg_autoctl drop node --pgdata"), "{plan}");
        assert!(
            plan.contains("-include 'postgresql-auto-failover.conf'"),
            "{plan}"
        );
        assert!(plan.contains("ALTER SYSTEM SET primary_conninfo"), "{plan}");
        // Reap the keeper when it exits, as a supervisor would: pg_autoctl
        // drop node waits for the keeper's pid to vanish, and an unreaped
        // (zombie) keeper cost 30 s here.
        let reaper = {
            let i = keepers
                .children
                .iter()
                .position(|c| c.id() == keeper_a2_pid)
                .unwrap();
            let mut child = keepers.children.remove(i);
            std::thread::spawn(move || child.wait())
        };
        let t = Instant::now();
        let Report::Disable(r) = autofailover::run(&disable, &mut |_: &str| true)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert!(r.changed, "{r:?}");
        eprintln!(
            "--disable took {:.1} s: {}\n{}",
            t.elapsed().as_secs_f64(),
            r.done.join("\n"),
            r.warnings.join("\n")
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reaper.is_finished() {
            if Instant::now() > deadline {
                // SAFETY: kill(2) on the keeper this test started.
                unsafe { libc::kill(keeper_a2_pid as libc::pid_t, libc::SIGTERM) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        reaper.join().unwrap().unwrap();
        assert!(
            Instant::now() <= deadline,
            "the keeper did not leave after the drop"
        );
        // The primary takes writes without waiting (the monitor makes it
        // `single` and pg_autoctl empties synchronous_standby_names).
        let direct_primary = params_for(&appurl(&[new_primary.port()]));
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 3_000_000i64;
        while !write_once(&direct_primary, n).await {
            assert!(
                Instant::now() < deadline,
                "the primary's writes wait for the dropped standby"
            );
            n += 1;
        }
        // Every row reaches the disabled standby, which streams on its own.
        let read_standby = params_for(
            &appurl(&[old_primary.port()]).replace("target_session_attrs=read-write&", ""),
        );
        let c = pgctl::connect::connect(&read_standby).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let has: i64 = c
                .client()
                .query_one("SELECT count(*) FROM counter WHERE n = $1", &[&n])
                .await
                .unwrap()
                .get(0);
            if has == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the disabled standby does not stream"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rows: i64 = c
            .client()
            .query_one("SELECT count(*) FROM counter", &[])
            .await
            .unwrap()
            .get(0);
        assert!(rows as usize > present2.len(), "{rows}");
        drop(c);
        let conf = std::fs::read_to_string(old_primary.data_dir().join("postgresql.conf")).unwrap();
        assert!(!conf.contains("postgresql-auto-failover"), "{conf}");
        assert!(!old_primary
            .data_dir()
            .join("postgresql-auto-failover.conf")
            .exists());
        let state = old_primary
            .data_dir()
            .parent()
            .unwrap()
            .join(".data.pg_autoctl");
        assert!(!state.join("config").exists());
        let s = status(&monitor).await;
        assert!(s.nodes.iter().all(|n| n.name != "node_a"), "{s:?}");

        // And back: --enroll again keeps the data (pg_auto_failover
        // registers the dropped node again, no base backup).
        let mut enroll_again = Options::new(Action::Enroll {
            monitor: Secret(monitor.clone()),
        });
        enroll_again.admin_conn = Some(admin_at(old_primary.port(), &sockets));
        enroll_again.name = Some("node_a".into());
        let t = Instant::now();
        let Report::Enroll(r) = autofailover::run(&enroll_again, &mut |_: &str| true)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert!(r.changed && r.role == "standby", "{r:?}");
        keepers.children.push(spawn(
            r.supervise.as_ref().unwrap(),
            &scratch.join("node_a-again.log"),
        ));
        wait_states(
            &monitor,
            &[("node_a", "secondary"), ("node_b", "primary")],
            Duration::from_secs(60),
        )
        .await;
        eprintln!(
            "node_a enrolled again, secondary after {:.1} s; whole test {:.1} s",
            t.elapsed().as_secs_f64(),
            begun.elapsed().as_secs_f64()
        );
        let c = pgctl::connect::connect(&params).await.unwrap();
        let rows_after: i64 = c
            .client()
            .query_one("SELECT count(*) FROM counter", &[])
            .await
            .unwrap()
            .get(0);
        assert!(rows_after >= rows, "{rows_after} < {rows}");
        assert_eq!(
            c.client()
                .execute("INSERT INTO counter(n) VALUES (5000000)", &[])
                .await
                .unwrap(),
            1
        );
    });
}

/// A superuser connection string to the server on `port`, whose socket is
/// in one of `dirs`.
fn admin_at(port: u16, dirs: &[&Path]) -> String {
    let dir = dirs
        .iter()
        .find(|d| d.join(format!(".s.PGSQL.{port}")).exists())
        .unwrap_or(&dirs[0]);
    format!(
        "host={} port={port} user=postgres dbname=postgres",
        dir.display()
    )
}

/// Runs `o`, which must not ask anything, and unwraps its report.
async fn run_unasked(o: &Options) -> Report {
    autofailover::run(o, &mut |_: &str| panic!("asked"))
        .await
        .unwrap()
}
