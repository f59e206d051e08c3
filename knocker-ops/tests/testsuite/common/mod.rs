//! Setup shared by the replica and failover tests on Debian clusters: the
//! primary of a pair, the client writing through the multi-host string,
//! what to remove afterwards; and the pg_auto_failover and netns beds.
// Each test crate uses part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knocker_ops::replica::{Action, Options};
use pg_harness::DebianCluster;
use pgctl::conninfo::{ConnInfo, Keyword};

pub mod netns;
pub mod pgaf;

/// Paths a test removes when it ends (files a command left beside a
/// cluster: a moved-aside data directory, a passfile, backups), also on
/// failure.
pub struct Leftovers(pub Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// `knocker replica` options for `action` on the Debian cluster `cluster`,
/// with no knocknoc.conf (tests pass `--conn`).
pub fn options(action: Action, cluster: &DebianCluster) -> Options {
    let mut o = Options::new(action);
    o.cluster = Some(format!("{}/{}", cluster.major(), cluster.name()));
    o.config = "/nonexistent/knocknoc.conf".into();
    o
}

impl Leftovers {
    /// Adds what `knocker replica` leaves outside Debian clusters: their
    /// configuration directories (hba_install's backups and lock file keep
    /// pg_dropcluster from removing them) and their passfiles.
    pub fn debian_clusters(&mut self, clusters: &[&DebianCluster]) {
        for c in clusters {
            self.0.push(c.conf_dir());
            self.0.push(passfile(c));
        }
    }
}

/// Two new Debian PostgreSQL 15 clusters and what to remove after them
/// ([`Leftovers::debian_clusters`]). Bind them with `let (leftovers, a,
/// b) = ...`: the leftovers are then dropped after the clusters.
pub async fn debian_pair() -> (Leftovers, DebianCluster, DebianCluster) {
    let mut leftovers = Leftovers(Vec::new());
    let a = DebianCluster::create(15).await;
    let b = DebianCluster::create(15).await;
    leftovers.debian_clusters(&[&a, &b]);
    (leftovers, a, b)
}

/// The passfile `knocker replica` keeps for `cluster`'s walreceiver.
pub fn passfile(cluster: &DebianCluster) -> PathBuf {
    PathBuf::from(format!(
        "/var/lib/postgresql/15/.{}.knocker-replica.pgpass",
        cluster.name()
    ))
}

/// Creates the application role `knocknoc` (password `pw`) and its
/// database on `cluster`; returns the application's connection string.
pub async fn app_database(cluster: &DebianCluster) -> String {
    let p = cluster.connect().await.unwrap();
    p.batch_execute("CREATE ROLE knocknoc LOGIN PASSWORD 'pw'")
        .await
        .unwrap();
    p.batch_execute("CREATE DATABASE knocknoc OWNER knocknoc")
        .await
        .unwrap();
    format!(
        "postgresql://knocknoc:pw@127.0.0.1:{}/knocknoc",
        cluster.port()
    )
}

/// Runs `knocker replica` with `o`, failing the test with the error and
/// its causes.
pub async fn run_replica(o: &Options) -> knocker_ops::replica::Report {
    knocker_ops::replica::run(o, &mut |_: &str| true)
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", e.causes()))
}

/// A primary for a loopback standby named `standby`: the application
/// database on `a`, `replica --init` (name `node_a`) and `--allow
/// 127.0.0.1/32 --name STANDBY` there. Returns the replication URL with
/// host 127.0.0.1 (the test's primary listens on localhost only).
pub async fn replica_primary(a: &DebianCluster, standby: &str) -> String {
    let conn = app_database(a).await;
    let mut init = options(Action::Init, a);
    init.conn = Some(conn.clone());
    init.name = Some("node_a".into());
    let url = run_replica(&init).await.replication_url.unwrap().0;
    let mut allow = options(
        Action::Allow {
            cidr: "127.0.0.1/32".parse().unwrap(),
            sync: false,
        },
        a,
    );
    allow.conn = Some(conn);
    allow.name = Some(standby.into());
    run_replica(&allow).await;
    let mut info = ConnInfo::parse(&url).unwrap();
    info.set(Keyword::Host, "127.0.0.1");
    info.to_uri()
}

/// Acknowledged values of a [`writer`], with the time each was
/// acknowledged.
pub type Acks = Arc<Mutex<Vec<(i32, Instant)>>>;

/// Writes 1, 2, 3, ... into `counter` through `url` (a multi-host string
/// with `target_session_attrs=read-write`) until `stop`, reconnecting after
/// every error; records what the server acknowledged.
pub fn writer(url: String, stop: Arc<AtomicBool>, acks: Acks) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut next = 1;
            let mut client = None;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                        Ok((c, conn)) => {
                            tokio::spawn(conn);
                            client = Some(c);
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
                let c = client.as_ref().unwrap();
                match c.execute("INSERT INTO counter VALUES ($1)", &[&next]).await {
                    Ok(_) => acks.lock().unwrap().push((next, Instant::now())),
                    // Unknown outcome: the value is not counted as
                    // acknowledged and never reused.
                    Err(_) => client = None,
                }
                next += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    })
}

/// A [`writer`] through the multi-host string of the loopback servers on
/// `ports` (`target_session_attrs=read-write`, 2 s connect timeout) as
/// `knocknoc` into `dbname`: its stop flag, its acknowledgements, its
/// thread.
pub fn multi_host_writer(
    ports: [u16; 2],
    dbname: &str,
) -> (Arc<AtomicBool>, Acks, std::thread::JoinHandle<()>) {
    let multi = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=knocknoc password=pw dbname={dbname} \
         target_session_attrs=read-write connect_timeout=2",
        ports[0], ports[1]
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Acks = Arc::default();
    let handle = writer(multi, stop.clone(), acks.clone());
    (stop, acks, handle)
}

/// Waits (30 s at most) until the writer has more than `more_than`
/// acknowledged values.
pub async fn wait_for(acks: &Acks, more_than: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.lock().unwrap().len() <= more_than {
        assert!(Instant::now() < deadline, "the writer makes no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The acknowledged values missing from `stored` (the table's values at
/// the end), printing how many were acknowledged and lost.
pub fn lost(acks: &[(i32, Instant)], stored: &HashSet<i32>) -> Vec<i32> {
    let lost: Vec<i32> = acks
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| !stored.contains(v))
        .collect();
    eprintln!("acknowledged {} writes, lost {}", acks.len(), lost.len());
    lost
}
