//! kill -9 of the real `knocker` binary at each step of
//! `replica --clone-from` and `failover --switchover`
//! (`KNOCKER_TEST_STOP_AT`, docs/ARCHITECTURE.md "Test hooks"): the process
//! stops itself at the step, the test SIGKILLs it, and the next run of the
//! same command (or the one its error names) must leave a working pair: one
//! primary taking writes, the other streaming from it, no acknowledged
//! write lost, the data directories kept aside named in the output.
//!
//! Runs the binary next to this test's directory: `cargo build -p
//! knocker-cli` first.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{options, replica_primary, run_replica, wait_for};
use knocker_ops::replica::{self, Action, Secret};
use knocker_ops::test_hook::STOP_AT_ENV;
use pg_harness::DebianCluster;

/// `target/<profile>/knocker`, beside this test's `deps` directory.
fn knocker_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("knocker");
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p knocker-cli first",
        bin.display()
    );
    bin
}

/// The state letter of `/proc/PID/stat` (`T` once stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Runs `knocker args` until it stops itself at `step`, then SIGKILLs it.
fn kill_at(args: &[String], step: &str) {
    let mut child = Command::new(knocker_bin())
        .args(args)
        .env(STOP_AT_ENV, step)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("knocker ended ({status}) before reaching {step}: {args:?}");
        }
        if proc_state(child.id()) == Some('T') {
            break;
        }
        assert!(Instant::now() < deadline, "knocker never reached {step}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill has no memory preconditions; the pid is our child,
    // not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    // Our child: waiting reaps it.
    child.wait().unwrap();
}

fn knocker(args: &[String]) -> Output {
    Command::new(knocker_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The directories clones moved `data` aside to.
fn kept_aside(data: &Path) -> Vec<PathBuf> {
    let prefix = format!(
        "{}.knocker-replaced-",
        data.file_name().unwrap().to_string_lossy()
    );
    std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Waits until `primary` is a primary that `standby` streams from, and a
/// row written on it is read on `standby_cluster`.
async fn assert_pair(
    primary: &DebianCluster,
    standby: &str,
    standby_cluster: &DebianCluster,
    n: i32,
) {
    let p = primary.connect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = p
            .query_one(
                "SELECT pg_is_in_recovery(), (SELECT state FROM pg_stat_replication WHERE application_name = $1)",
                &[&standby],
            )
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0), "{} is in recovery", primary.name());
        if row.get::<_, Option<String>>(1).as_deref() == Some("streaming") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{standby} does not stream from {}",
            primary.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.execute("INSERT INTO marks VALUES ($1)", &[&n])
        .await
        .unwrap();
    let s = standby_cluster.connect().await.unwrap();
    assert!(s
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get::<_, bool>(0));
    loop {
        let seen = s
            .query_one("SELECT count(*) FROM marks WHERE v = $1", &[&n])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if seen == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mark {n} never reached the standby"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no process holds slot `slot` on `primary`.
async fn slot_released(primary: &DebianCluster, slot: &str) {
    let p = primary.connect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pgctl::replication::slot(&p, slot)
        .await
        .unwrap()
        .is_some_and(|s| s.active)
    {
        assert!(Instant::now() < deadline, "slot {slot} stays in use");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn clone_killed_at_each_step_recovers_debian_cluster() {
    pg_harness::block_on(async {
        let (mut leftovers, a, b) = common::debian_pair().await;
        let url = replica_primary(&a, "node_b").await;
        a.connect()
            .await
            .unwrap()
            .batch_execute("CREATE TABLE marks (v int)")
            .await
            .unwrap();
        let args: Vec<String> = [
            "replica",
            "--clone-from",
            &url,
            "--name",
            "node_b",
            "--cluster",
            &format!("15/{}", b.name()),
            "--config",
            "/nonexistent/knocknoc.conf",
            "--yes",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let started = Instant::now();
        for (i, step) in replica::CLONE_STEPS.iter().enumerate() {
            let t = Instant::now();
            if i > 0 {
                // B streams from the last round: it stays up, in recovery,
                // and lets go of its slot, as a standby whose primary went
                // away (a running standby streaming through the slot is
                // refused by design).
                let s = b.connect().await.unwrap();
                s.batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
                    .await
                    .unwrap();
                s.batch_execute("SELECT pg_reload_conf()").await.unwrap();
                slot_released(&a, "knocker_node_b").await;
            }
            kill_at(&args, step);
            let mut out = knocker(&args);
            if !out.status.success() {
                // A copy that outlived its knocker: the error says which
                // pid to stop; do that and run again.
                let said = text(&out);
                let pids: Vec<i32> = said
                    .split("pg_basebackup (pid ")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .map(|p| p.split(' ').filter_map(|p| p.parse().ok()).collect())
                    .unwrap_or_default();
                eprintln!("{step}: the next run said: {said}");
                assert_eq!(*step, "clone:copying", "{said}");
                assert!(!pids.is_empty(), "after a kill at {step}: {said}");
                let listed = pids
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ");
                assert!(said.contains(&format!("kill {listed}")), "{said}");
                // Do what it says.
                for pid in &pids {
                    // SAFETY: kill has no memory preconditions.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                for pid in &pids {
                    // Gone, or a zombie (empty command line) until PID 1 reaps it.
                    while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
                    {
                        assert!(
                            Instant::now() < deadline,
                            "pg_basebackup {pid} survived SIGKILL"
                        );
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                out = knocker(&args);
            }
            let said = text(&out);
            assert!(out.status.success(), "after a kill at {step}: {said}");
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(json["streaming"], true, "after a kill at {step}: {json}");
            assert_eq!(json["role"], "standby", "{json}");
            if matches!(*step, "clone:started" | "clone:streaming") {
                // Finished, not copied again.
                assert!(said.contains("already streams"), "{said}");
            }
            // Every data directory kept aside is named in the output.
            for kept in kept_aside(&b.data_dir()) {
                if !leftovers.0.contains(&kept) {
                    leftovers.0.push(kept.clone());
                }
                assert!(
                    said.contains(&kept.display().to_string()),
                    "after a kill at {step}: {} is not named: {said}",
                    kept.display()
                );
            }
            assert_pair(&a, "node_b", &b, i as i32).await;
            eprintln!("{step}: killed and recovered in {:?}", t.elapsed());
        }
        eprintln!(
            "clone: {} kills in {:?}",
            replica::CLONE_STEPS.len(),
            started.elapsed()
        );

        // A standby of this primary through the slot that cannot stream
        // (here: a role that does not exist) is cloned again, not waited
        // for at every run.
        let s = b.connect().await.unwrap();
        s.batch_execute(&format!(
            "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={} user=nobody_here'",
            a.port()
        ))
        .await
        .unwrap();
        s.batch_execute("SELECT pg_reload_conf()").await.unwrap();
        drop(s);
        slot_released(&a, "knocker_node_b").await;
        let out = knocker(&args);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("does not stream after"), "{said}");
        leftovers.0.extend(kept_aside(&b.data_dir()));
        assert_pair(&a, "node_b", &b, 100).await;
    });
}

#[test]
fn switchover_killed_at_each_step_recovers_debian_cluster() {
    pg_harness::block_on(async {
        let (mut leftovers, a, b) = common::debian_pair().await;
        let url = replica_primary(&a, "node_b").await;
        let mut clone = options(
            Action::CloneFrom {
                uri: Secret(url.clone()),
            },
            &b,
        );
        clone.name = Some("node_b".into());
        run_replica(&clone).await;
        leftovers.0.extend(kept_aside(&b.data_dir()));
        let p = a.connect().await.unwrap();
        p.batch_execute(
            "CREATE TABLE marks (v int); CREATE TABLE counter (v int PRIMARY KEY); \
             GRANT INSERT, SELECT ON counter TO knocknoc",
        )
        .await
        .unwrap();
        drop(p);
        let (stop, acks, w) = common::multi_host_writer([a.port(), b.port()], "postgres");
        wait_for(&acks, 10).await;
        let started = Instant::now();
        let nodes = [(&a, "node_a"), (&b, "node_b")];
        for (i, step) in knocker_ops::failover::switchover::SWITCHOVER_STEPS
            .iter()
            .enumerate()
        {
            let t = Instant::now();
            let ((from, from_name), (to, _)) = (nodes[i % 2], nodes[(i + 1) % 2]);
            let args: Vec<String> = [
                "failover",
                "--switchover",
                "--cluster",
                &format!("15/{}", from.name()),
                "--name",
                from_name,
                "--peer",
                &format!("127.0.0.1:{}", to.port()),
                "--yes",
                "--json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            kill_at(&args, step);
            if *step == "switchover:fenced" {
                // A run refused while the fence of the killed one holds
                // says so, and how to lift it.
                let mut wrong = args.clone();
                let peer = wrong.iter().position(|a| a == "--peer").unwrap() + 1;
                wrong[peer] = format!("127.0.0.9:{}", to.port());
                let out = knocker(&wrong);
                let said = text(&out);
                assert_eq!(out.status.code(), Some(1), "{said}");
                assert!(said.contains("still fenced"), "{said}");
                assert!(
                    said.contains("RESET default_transaction_read_only"),
                    "{said}"
                );
            }
            let out = knocker(&args);
            let said = text(&out);
            assert!(out.status.success(), "after a kill at {step}: {said}");
            // The next run says where it took over.
            let expected = match *step {
                "switchover:stopped" => "was not promoted",
                "switchover:promoted" => "already the primary",
                "switchover:configured" => "already set up as a standby",
                "switchover:started" => "already a standby streaming",
                _ => "promoted",
            };
            assert!(said.contains(expected), "after a kill at {step}: {said}");
            assert_pair(to, from_name, from, i as i32).await;
            let n = acks.lock().unwrap().len();
            wait_for(&acks, n + 10).await;
            eprintln!("{step}: killed and recovered in {:?}", t.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        eprintln!(
            "switchover: {} kills in {:?}",
            knocker_ops::failover::switchover::SWITCHOVER_STEPS.len(),
            started.elapsed()
        );
        // Every acknowledged value is on the final primary.
        let steps = knocker_ops::failover::switchover::SWITCHOVER_STEPS.len();
        let last = nodes[steps % 2].0;
        let p = last.connect().await.unwrap();
        let stored: std::collections::HashSet<i32> = p
            .query("SELECT v FROM counter", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let lost = common::lost(&acks.lock().unwrap(), &stored);
        assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
    });
}
