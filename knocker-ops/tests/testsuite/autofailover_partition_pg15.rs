//! A network partition of the primary under `knocker autofailover`: the
//! primary (its PostgreSQL and its keeper) runs inside a network namespace
//! joined to this one by a veth pair; the monitor, the standby and a
//! client writing through the multi-host string are on the host side. The
//! primary is enrolled by the `knocker` binary run inside the namespace
//! (pg_autoctl starts PostgreSQL on the namespace's address), the standby
//! by the library. With a second client writing on the primary's own
//! socket (the isolated node's local application), the host side's veth is
//! taken down: the standby is promoted, the cut-off primary acknowledges
//! no write started after the cut (synchronous replication), and once the
//! link is back the old primary rejoins as a standby; no acknowledged
//! write is lost. The namespace and veth are removed when the test ends,
//! also on failure. About 60 s; needs `cargo build -p knocker-cli` first.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::netns::Netns;
use common::pgaf::{self, admin, Keepers, Scratch, BIN};
use knocker_ops::replica;
use pg_harness::{Cluster, ClusterOptions, OsUser, DEFAULT_HBA};

/// The `knocker` binary built by `cargo build -p knocker-cli` (this crate
/// cannot depend on the binary's package).
fn knocker_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/knocker");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p knocker-cli` first",
        bin.display()
    );
    bin
}

/// Starts the keeper command `argv` (as knocker prints it: `runuser -u
/// USER -- env -i ...`) inside the namespace; `setpriv` changes user
/// without forking, so the child's pid is the keeper's.
fn spawn_in(ns: &Netns, argv: &[String], log: &Path) -> Child {
    let rest = match argv {
        [r, u, user, dd, rest @ ..] if r == "runuser" && u == "-u" && dd == "--" => {
            let u = OsUser::lookup(user).unwrap();
            let mut v = vec![
                "setpriv".to_string(),
                format!("--reuid={}", u.uid),
                format!("--regid={}", u.gid),
                "--clear-groups".to_string(),
            ];
            v.extend(rest.iter().cloned());
            v
        }
        _ => argv.to_vec(),
    };
    let out = std::fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(&rest)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// The node `name`'s state as the monitor sees it.
async fn state_of(monitor: &str, name: &str) -> Option<String> {
    pgaf::status(monitor)
        .await
        .nodes
        .into_iter()
        .find(|n| n.name == name)
        .map(|n| n.state)
}

#[test]
fn partitioned_primary_fails_over_and_rejoins_pg15() {
    pg_harness::block_on(async {
        let begun = Instant::now();
        let user = OsUser::server_user().clone();
        let _scratch = Scratch::create("knocker-af-partition-", &user).unwrap();
        let scratch = _scratch.0.clone();
        let ns = Netns::create("kn15", 215);
        let tls = pgaf::make_tls(
            &scratch.join("tls"),
            &user,
            &format!("IP:127.0.0.1,IP:{},IP:{}", ns.host_ip, ns.ns_ip),
        );
        let ca = tls.0.display().to_string();
        let mut settings = pgaf::node_options(&tls).settings;
        settings.push(("log_connections".into(), "on".into()));
        // Clients of the other side arrive from the veth subnet.
        let hba = format!("{DEFAULT_HBA}hostssl all all {} scram-sha-256\n", ns.subnet);
        let primary = Cluster::start_with(
            15,
            ClusterOptions {
                settings: settings.clone(),
                hba: Some(hba.clone()),
                ..Default::default()
            },
        )
        .await;
        let mut standby_settings = settings.clone();
        standby_settings.push(("listen_addresses".into(), ns.host_ip.clone()));
        let standby = Cluster::start_with(
            15,
            ClusterOptions {
                settings: standby_settings,
                hba: Some(hba),
                ..Default::default()
            },
        )
        .await;
        let mut keepers = Keepers {
            children: Vec::new(),
            scratch: scratch.clone(),
        };
        let monitor =
            pgaf::start_monitor(&mut keepers, &scratch, &user, &tls, &ns.host_ip, &ns.subnet).await;

        // The application, and knocker replica admitting the standby's
        // address on the primary (what --enroll then lists in its block).
        pgaf::app_database(&primary).await;
        let conn = format!(
            "postgresql://app:apppw@127.0.0.1:{}/appdb?sslmode=verify-full&sslrootcert={ca}",
            primary.port()
        );
        let c = pgctl::connect::connect(&pgaf::params_for(&conn))
            .await
            .unwrap();
        c.client()
            .batch_execute("CREATE TABLE counter(n bigint PRIMARY KEY)")
            .await
            .unwrap();
        drop(c);
        let mut init = replica::Options::new(replica::Action::Init);
        init.conn = Some(conn.clone());
        init.admin_conn = Some(admin(&primary));
        init.config = "/nonexistent".into();
        init.name = Some("node_a".into());
        replica::run(&init, &mut |_: &str| true).await.unwrap();
        let mut allow = init.clone();
        allow.action = replica::Action::Allow {
            cidr: format!("{}/32", ns.host_ip).parse().unwrap(),
            sync: false,
        };
        allow.name = Some("node_b".into());
        replica::run(&allow, &mut |_: &str| true).await.unwrap();

        // The primary moves into the namespace: its address there.
        let pdata = primary.data_dir().display().to_string();
        pgaf::run_as(
            &user,
            &[
                &format!("{BIN}/pg_ctl"),
                "-D",
                &pdata,
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            &[],
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(primary.conf_file())
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            format!("listen_addresses = '{}'\n", ns.ns_ip).as_bytes(),
        )
        .unwrap();
        let start = Command::new("ip")
            .args(["netns", "exec", &ns.name, "runuser", "-u", &user.name, "--"])
            .arg(format!("{BIN}/pg_ctl"))
            .args(["-D", &pdata, "-l"])
            .arg(scratch.join("primary-start.log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(start.status.success(), "{start:?}");

        // Enrol it from inside the namespace (pg_autoctl starts PostgreSQL
        // there) with the knocker binary.
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(knocker_bin())
            .args(["autofailover", "--enroll", "--monitor", &monitor])
            .args(["--admin-conn", &admin(&primary)])
            .args(["--name", "node_a", "--yes", "--json"])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "knocker --enroll: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(out.status.success(), "{json}");
        let supervise: Vec<String> = serde_json::from_value(json["supervise"].clone()).unwrap();
        keepers
            .children
            .push(spawn_in(&ns, &supervise, &scratch.join("node_a.log")));
        pgaf::wait_states(&monitor, &[("node_a", "single")], Duration::from_secs(60)).await;
        eprintln!("primary enrolled in {:.1} s", t.elapsed().as_secs_f64());

        // The standby: cloned over the veth, enrolled keeping its data.
        let passfile = primary
            .data_dir()
            .parent()
            .unwrap()
            .join(".data.pg_autoctl/pgpass");
        let from = pgaf::CloneSource {
            host: &ns.ns_ip,
            port: primary.port(),
            ca: &ca,
            passfile: &passfile,
        };
        let extra = format!("listen_addresses = '{}'\n", ns.host_ip);
        let start_log = scratch.join("standby-start.log");
        let r =
            pgaf::clone_and_enroll_standby(&user, &standby, &from, &extra, &monitor, &start_log)
                .await;
        keepers.children.push(pgaf::spawn(
            r.supervise.as_ref().unwrap(),
            &scratch.join("node_b.log"),
        ));
        pgaf::wait_states(
            &monitor,
            &[("node_a", "primary"), ("node_b", "secondary")],
            Duration::from_secs(90),
        )
        .await;
        eprintln!("both enrolled after {:.1} s", begun.elapsed().as_secs_f64());

        // Two clients: the web app on the host side through the multi-host
        // string, and the isolated node's own (its unix socket).
        let url = format!(
            "postgres://app:apppw@{}:{},{}:{}/appdb?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full&sslrootcert={ca}",
            ns.ns_ip,
            primary.port(),
            ns.host_ip,
            standby.port()
        );
        let (host_attempts, host_stop, host_writer) =
            pgaf::start_writer(pgaf::params_for(&url), 1, Duration::from_millis(20));
        let local = format!(
            "host={} port={} user=postgres dbname=appdb",
            primary.socket_dir().display(),
            primary.port()
        );
        let (local_attempts, local_stop, local_writer) = pgaf::start_writer(
            pgaf::params_for(&local),
            1_000_000,
            Duration::from_millis(20),
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(host_attempts.lock().unwrap().iter().any(|a| a.acked));
        assert!(local_attempts.lock().unwrap().iter().any(|a| a.acked));

        // The partition.
        let cut = Instant::now();
        ns.link(false);
        let deadline = cut + Duration::from_secs(40);
        let promoted = loop {
            let s = state_of(&monitor, "node_b").await;
            if matches!(s.as_deref(), Some("wait_primary" | "primary")) {
                break cut.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "node_b not promoted 40 s after the partition: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // Let the host side write to the new primary for a while, with the
        // old one still cut off.
        let first_write = loop {
            let first = host_attempts
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.acked && a.started > cut)
                .map(|a| a.started - cut);
            if let Some(f) = first {
                break f;
            }
            assert!(
                cut.elapsed() < Duration::from_secs(40),
                "no write on the host side 40 s after the partition"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let healed_at = cut.elapsed();
        ns.link(true);

        // The old primary rejoins as a standby.
        pgaf::wait_states(
            &monitor,
            &[("node_a", "secondary"), ("node_b", "primary")],
            Duration::from_secs(90),
        )
        .await;
        let rejoined = cut.elapsed();
        host_stop.store(true, Ordering::Relaxed);
        local_stop.store(true, Ordering::Relaxed);
        host_writer.await.unwrap();
        local_writer.await.unwrap();

        // The cut-off primary acknowledged nothing started after the cut
        // (its commits wait for the synchronous standby it lost).
        let local_attempts = local_attempts.lock().unwrap().clone();
        let acked_isolated: Vec<i64> = local_attempts
            .iter()
            .filter(|a| a.acked && a.started > cut && a.started - cut < healed_at)
            .map(|a| a.n)
            .collect();
        assert!(
            acked_isolated.is_empty(),
            "the cut-off primary acknowledged {acked_isolated:?}"
        );
        // Nothing acknowledged is lost (read on the new primary).
        let host_attempts = host_attempts.lock().unwrap().clone();
        let acked: Vec<i64> = host_attempts
            .iter()
            .chain(&local_attempts)
            .filter(|a| a.acked)
            .map(|a| a.n)
            .collect();
        let c = pgctl::connect::connect(&pgaf::params_for(&format!(
            "postgres://app:apppw@{}:{}/appdb?sslmode=verify-full&sslrootcert={ca}",
            ns.host_ip,
            standby.port()
        )))
        .await
        .unwrap();
        let present: BTreeSet<i64> = c
            .client()
            .query("SELECT n FROM counter", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let lost: Vec<&i64> = acked.iter().filter(|n| !present.contains(n)).collect();
        eprintln!(
            "partition: node_b promoted (wait_primary) after {:.2} s, first host write after {:.2} s, \
             link back at {:.2} s, old primary secondary again at {:.2} s; {} acknowledged, {} lost, \
             {} acknowledged by the cut-off primary; whole test {:.1} s",
            promoted.as_secs_f64(),
            first_write.as_secs_f64(),
            healed_at.as_secs_f64(),
            rejoined.as_secs_f64(),
            acked.len(),
            lost.len(),
            acked_isolated.len(),
            begun.elapsed().as_secs_f64()
        );
        assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
        drop(keepers);
    });
}
