//! The demo's standby, failover and switchover sections (`knocker
//! replica`, `knocker failover`), on a pair of Debian clusters made by
//! `pg_createcluster`: node A, a primary with a Knocknoc database, and node
//! B, cloned from it.
//!
//! They use Debian clusters, not the throwaway primary of the first
//! sections, because that is the layout these commands drive:
//! `--clone-from` stops and starts the standby with `pg_ctlcluster`,
//! `--fence` writes Debian's `start.conf`, `--rejoin` restores it. Both
//! nodes live on this machine, on 127.0.0.1 with their own ports, so the
//! demo puts 127.0.0.1 and the right port into the strings the commands
//! print for other hosts (and says so).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pg_harness::DebianCluster;
use pgctl::conninfo::{ConnInfo, Keyword};

use crate::demo::{show, Demo};

/// The Debian major version the pair runs (the only one with
/// `pg_createcluster`, `pg_basebackup` and `pg_rewind` here).
const DEBIAN_MAJOR: u32 = 15;

/// The application's password on node A (the role comes with the data to B).
const APP_PASSWORD: &str = "app-secret";

/// How long a change may take to reach the other node.
const REPLICATION_WAIT: Duration = Duration::from_secs(30);

/// Why the standby and failover sections cannot run here, if they cannot.
pub fn unavailable(major: u32) -> Option<String> {
    if major != DEBIAN_MAJOR {
        Some(format!(
            "they run on Debian's PostgreSQL {DEBIAN_MAJOR} (pg_createcluster, pg_basebackup, \
             pg_rewind), not on the PostgreSQL {major} asked for"
        ))
    } else if !nix::unistd::geteuid().is_root() {
        Some("they need root (pg_createcluster, pg_ctlcluster)".into())
    } else if !Path::new("/usr/bin/pg_createcluster").is_file() {
        Some("pg_createcluster is missing (Debian's postgresql-common)".into())
    } else {
        None
    }
}

/// Node A and node B, dropped (`pg_dropcluster --stop`) with everything the
/// commands left beside them, however the demo ends.
pub struct Pair {
    a: DebianCluster,
    b: DebianCluster,
    /// The replication string `--init` printed, with 127.0.0.1 for its host.
    replication_url: String,
    /// The web nodes' string `--print-url` printed.
    web_url: String,
}

impl Pair {
    fn cluster_arg(c: &DebianCluster) -> String {
        format!("{}/{}", c.major(), c.name())
    }

    fn app_conn(c: &DebianCluster) -> String {
        format!(
            "postgresql://knocknoc:{APP_PASSWORD}@127.0.0.1:{}/knocknoc",
            c.port()
        )
    }

    /// Drops both clusters, showing the commands (the end of the demo's
    /// part that made them).
    pub fn remove(self) -> Result<()> {
        println!("\n$ # remove the demo's two Debian clusters");
        for c in [&self.a, &self.b] {
            show(
                Path::new("pg_dropcluster"),
                &["--stop", &c.major().to_string(), c.name()],
            )?;
        }
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in [&self.a, &self.b] {
            // Quietly again if `remove` ran: a cluster already dropped is
            // an error pg_dropcluster reports and nothing else.
            let _ = Command::new("pg_dropcluster")
                .args(["--stop", &c.major().to_string(), c.name()])
                .output();
            remove_leftovers(c);
        }
    }
}

/// What the commands keep beside a cluster: its configuration directory
/// (pg_hba.conf backups and lock keep pg_dropcluster from removing it), the
/// data directory `--clone-from` moved aside, the replication passfile,
/// the log.
fn remove_leftovers(c: &DebianCluster) {
    let name = c.name();
    let mut paths: Vec<PathBuf> = vec![c.conf_dir(), c.data_dir(), c.log_file()];
    let home = PathBuf::from(format!("/var/lib/postgresql/{}", c.major()));
    if let Ok(entries) = std::fs::read_dir(&home) {
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.starts_with(&format!("{name}.")) || file.starts_with(&format!(".{name}.")) {
                paths.push(e.path());
            }
        }
    }
    for p in paths {
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// `knocker replica --ARGS` with `--cluster` and `--conn` for `node`.
fn replica(demo: &Demo<'_>, node: &DebianCluster, args: &[&str]) -> Result<(i32, String)> {
    let cluster = Pair::cluster_arg(node);
    let conn = Pair::app_conn(node);
    let mut all = vec!["replica"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--cluster", &cluster, "--conn", &conn]);
    show(demo.knocker, &all)
}

/// `knocker failover --ARGS --cluster` for `node`.
fn failover_cmd(demo: &Demo<'_>, node: &DebianCluster, args: &[&str]) -> Result<(i32, String)> {
    let cluster = Pair::cluster_arg(node);
    let mut all = vec!["failover"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--cluster", &cluster]);
    show(demo.knocker, &all)
}

/// The first word of `out` that is a connection URI.
pub(crate) fn uri_in(out: &str) -> Option<String> {
    out.split_whitespace()
        .find(|w| w.starts_with("postgresql://") || w.starts_with("postgres://"))
        .map(str::to_string)
}

/// `uri` with one host and port replaced (the pair shares 127.0.0.1).
pub(crate) fn with_host_port(uri: &str, port: u16) -> Result<String> {
    let mut info = ConnInfo::parse(uri).context("parsing the printed string")?;
    info.set(Keyword::Host, "127.0.0.1");
    info.set(Keyword::Port, port.to_string());
    Ok(info.to_uri())
}

/// `replica --init` and `--allow` on node A, `--clone-from` on node B, a
/// row written on A read on B, `--status`, `--print-url`.
pub async fn standby(demo: &mut Demo<'_>) -> Result<Pair> {
    demo.section("A standby: knocker replica (node A, the primary; node B, its standby)");
    eprintln!("xtask demo: creating two Debian clusters (pg_createcluster, initdb)");
    let a = DebianCluster::create(DEBIAN_MAJOR).await;
    let b = DebianCluster::create(DEBIAN_MAJOR).await;
    println!(
        "\n  Two Debian clusters made with pg_createcluster, both on this machine:\n  \
         node A = {}/{} (port {}), a primary with a Knocknoc database;\n  \
         node B = {}/{} (port {}), a fresh cluster to replace with a standby.\n  \
         --cluster names the cluster and --conn the application's string, since\n  \
         this host's /opt/knocknoc/etc/knocknoc.conf is not theirs.",
        a.major(),
        a.name(),
        a.port(),
        b.major(),
        b.name(),
        b.port()
    );
    let mut pair = Pair {
        a,
        b,
        replication_url: String::new(),
        web_url: String::new(),
    };
    let admin = pair.a.connect().await.context("connecting to node A")?;
    // Two statements: CREATE DATABASE cannot run in the implicit
    // transaction of a multi-statement batch.
    admin
        .batch_execute(&format!(
            "CREATE ROLE knocknoc LOGIN PASSWORD '{APP_PASSWORD}'"
        ))
        .await
        .context("creating the application's role on node A")?;
    admin
        .batch_execute("CREATE DATABASE knocknoc OWNER knocknoc")
        .await
        .context("creating the application's database on node A")?;
    drop(admin);
    let app = pair
        .a
        .connect_from("127.0.0.1".parse()?, "knocknoc", APP_PASSWORD, "knocknoc")
        .await
        .context("connecting to node A as the application")?;
    app.batch_execute(
        "CREATE TABLE settings (key text PRIMARY KEY, value text); \
         INSERT INTO settings VALUES ('written-before-the-clone', 'on node A')",
    )
    .await
    .context("creating the demo table on node A")?;
    // `--init` restarts node A: this session ends there.
    drop(app);

    println!("\n$ # on node A (the primary)");
    // Node A's own name: the standby it clones gets ready to serve it after
    // a switchover (slot knocker_node_a, pg_hba.conf lines for node_a).
    let (code, out) = replica(demo, &pair.a, &["--init", "--yes", "--name", "node_a"])?;
    demo.checks.check("replica --init exits 0", code == 0);
    let printed = uri_in(&out);
    demo.checks.check(
        "--init printed the replication connection string",
        printed.is_some(),
    );
    pair.replication_url = with_host_port(&printed.unwrap_or_default(), pair.a.port())?;
    let (code, _) = replica(
        demo,
        &pair.a,
        &["--allow", "127.0.0.1/32", "--name", "node_b"],
    )?;
    demo.checks.check("replica --allow exits 0", code == 0);

    println!(
        "\n$ # on node B (the standby host); the string names this host's network\n  \
         # address, which node A does not listen on here: the demo gives 127.0.0.1"
    );
    let url = pair.replication_url.clone();
    let (code, _) = show(
        demo.knocker,
        &[
            "replica",
            "--clone-from",
            &url,
            "--name",
            "node_b",
            "--cluster",
            &Pair::cluster_arg(&pair.b),
        ],
    )?;
    demo.checks
        .check("replica --clone-from exits 0 (streaming)", code == 0);
    let cloned = code == 0;

    println!("\n$ # a row written on node A, read on node B");
    let app = pair
        .a
        .connect_from("127.0.0.1".parse()?, "knocknoc", APP_PASSWORD, "knocknoc")
        .await
        .context("connecting to node A as the application")?;
    app.execute(
        "INSERT INTO settings VALUES ('written-after-the-clone', 'on node A')",
        &[],
    )
    .await
    .context("writing on node A")?;
    drop(app);
    let visible = cloned && wait_for_standby_row(&pair.b, "written-after-the-clone").await;
    println!(
        "  node B: {}",
        if visible {
            "the row is there"
        } else {
            "the row never arrived"
        }
    );
    demo.checks
        .check("a row written on node A is read on node B", visible);

    let (_, status) = replica(demo, &pair.a, &["--status"])?;
    demo.checks.check(
        "replica --status on node A shows node_b streaming",
        status.contains("standby node_b: streaming"),
    );
    let (code, out) = replica(demo, &pair.a, &["--print-url"])?;
    let web_url = uri_in(&out);
    demo.checks.check(
        "replica --print-url prints the web nodes' multi-host string",
        code == 0 && web_url.is_some(),
    );
    pair.web_url = web_url.unwrap_or_default();
    Ok(pair)
}

/// Whether the settings row `key` reaches `node` (in the Knocknoc
/// database) within [`REPLICATION_WAIT`].
async fn wait_for_standby_row(node: &DebianCluster, key: &str) -> bool {
    let deadline = Instant::now() + REPLICATION_WAIT;
    // tokio-postgres's own connect: a node that is down (a rejoin that
    // failed) is a failed check, not a pg-harness panic.
    let mut config = node.tcp_config();
    config
        .user("knocknoc")
        .password(APP_PASSWORD)
        .dbname("knocknoc");
    while Instant::now() < deadline {
        if let Ok((c, connection)) = config.connect(tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            if let Ok(Some(_)) = c
                .query_opt("SELECT 1 FROM settings WHERE key = $1", &[&key])
                .await
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Node A crashes; `failover --promote` on B; a write through the web
/// nodes' string; `--fence` of A; B admits A (`replica --init`, `--allow`);
/// `failover --rejoin` on A, which then streams from B.
pub async fn failover(demo: &mut Demo<'_>, pair: &Pair) -> Result<()> {
    demo.section("Failover: node A fails, node B is promoted, node A rejoins as its standby");
    println!("\n$ # node A crashes (an immediate stop: no shutdown checkpoint, like a power cut)");
    let (code, _) = show(
        Path::new("pg_ctlcluster"),
        &[
            &pair.a.major().to_string(),
            pair.a.name(),
            "stop",
            "-m",
            "immediate",
        ],
    )?;
    demo.checks.check("node A is down", code == 0);

    println!("\n$ # on node B");
    let (code, _) = failover_cmd(demo, &pair.b, &["--promote", "--yes"])?;
    demo.checks.check("failover --promote exits 0", code == 0);

    let wrote = write_through_web_url(pair).await;
    demo.checks.check(
        "a write through --print-url's multi-host string reaches node B",
        wrote,
    );

    println!("\n$ # on node A (the old primary, down)");
    let (code, _) = failover_cmd(demo, &pair.a, &["--fence", "--yes"])?;
    demo.checks.check("failover --fence exits 0", code == 0);

    println!("\n$ # on node B (the new primary): admit node A; the roles came with the data");
    let (code, _) = replica(demo, &pair.b, &["--init", "--yes"])?;
    demo.checks
        .check("replica --init on node B exits 0", code == 0);
    let (code, _) = replica(
        demo,
        &pair.b,
        &["--allow", "127.0.0.1/32", "--name", "node_a"],
    )?;
    demo.checks
        .check("replica --allow node_a on node B exits 0", code == 0);

    println!(
        "\n$ # on node A: the replication string, now naming node B (port {})",
        pair.b.port()
    );
    let to_b = with_host_port(&pair.replication_url, pair.b.port())?;
    let (code, _) = failover_cmd(
        demo,
        &pair.a,
        &["--rejoin", &to_b, "--name", "node_a", "--yes"],
    )?;
    demo.checks.check("failover --rejoin exits 0", code == 0);
    // (Not waited for when the rejoin failed: node A is down then.)
    let caught_up = code == 0 && wait_for_standby_row(&pair.a, "written-after-the-failover").await;
    println!(
        "\n$ # node A: the row written on node B after the failover {}",
        if caught_up {
            "is there"
        } else {
            "never arrived"
        }
    );
    demo.checks.check(
        "node A replays what node B wrote after the failover",
        caught_up,
    );
    let (_, status) = replica(demo, &pair.b, &["--status"])?;
    demo.checks.check(
        "replica --status on node B shows node_a streaming",
        status.contains("standby node_a: streaming"),
    );
    Ok(())
}

/// Connects the way a web node does, with the string `--print-url`
/// printed (every node, `target_session_attrs=read-write`), and writes.
async fn write_through_web_url(pair: &Pair) -> bool {
    println!(
        "\n$ # a web node's write with the string --print-url printed on node A:\n  \
         #   {}\n  \
         # on this machine both nodes are 127.0.0.1 (ports {} and {}), and the\n  \
         # pair has no exposedb role, so the demo connects as the application's role",
        pair.web_url,
        pair.a.port(),
        pair.b.port()
    );
    let params = match web_node_params(pair) {
        Ok(params) => params,
        Err(e) => {
            println!("  {e}");
            return false;
        }
    };
    match pgctl::connect::connect(&params).await {
        Ok(c) => {
            let port: String = match c
                .client()
                .query_one("SELECT current_setting('port')", &[])
                .await
            {
                Ok(row) => row.get(0),
                Err(_) => "?".into(),
            };
            let wrote = c
                .client()
                .execute(
                    "INSERT INTO settings VALUES ('written-after-the-failover', 'through the web nodes'' string')",
                    &[],
                )
                .await;
            println!(
                "  connected to {} port {port} ({}); INSERT: {}",
                c.address(),
                if c.is_tls() { "TLS" } else { "no TLS" },
                match &wrote {
                    Ok(n) => format!("{n} row"),
                    Err(e) => e.to_string(),
                }
            );
            wrote.is_ok() && port == pair.b.port().to_string()
        }
        Err(e) => {
            println!("  no writable node: {e}");
            false
        }
    }
}

/// The string `--print-url` printed, as a web node on this machine uses
/// it: both nodes at 127.0.0.1 (their own ports, A first), the
/// application's role (the pair has no exposedb role); printed with the
/// password masked.
fn web_node_params(pair: &Pair) -> Result<pgctl::connect::ConnectParams, String> {
    let mut info = ConnInfo::parse(&pair.web_url).map_err(|e| format!("cannot parse it: {e}"))?;
    info.set(Keyword::Host, "127.0.0.1,127.0.0.1");
    info.set(
        Keyword::Port,
        format!("{},{}", pair.a.port(), pair.b.port()),
    );
    info.set(Keyword::User, "knocknoc");
    info.set(Keyword::Password, APP_PASSWORD);
    let mut shown = info.clone();
    shown.set(Keyword::Password, "xxxxxxxx");
    println!("  {}", shown.to_uri());
    pgctl::conninfo::resolve_from_process_env(&info)
        .map(|r| r.params)
        .map_err(|e| format!("cannot use it: {e}"))
}

/// How long the writer may take to get its next acknowledgements.
const WRITER_PROGRESS_WAIT: Duration = Duration::from_secs(30);

/// The values the writer's INSERTs were acknowledged for, with when.
pub(crate) type Acks = Arc<Mutex<Vec<(i32, Instant)>>>;

/// A web node's stand-in: a thread writing 1, 2, 3 ... into `counter`
/// through the multi-host string, reconnecting after every error, and
/// keeping what the server acknowledged. Stopped and joined when dropped,
/// however the section ends.
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    acks: Acks,
    /// INSERTs that failed (refused, or the session ended): not
    /// acknowledged, so they may or may not be stored.
    failed: Arc<Mutex<u32>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(params: pgctl::connect::ConnectParams) -> Result<Writer> {
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Acks = Arc::default();
        let failed = Arc::new(Mutex::new(0));
        // Its own thread and runtime: the demo's commands run blocking
        // (`show`), and the writer must go on while they do.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("a runtime for the writer")?;
        let thread = {
            let (stop, acks, failed) = (stop.clone(), acks.clone(), failed.clone());
            std::thread::spawn(move || {
                runtime.block_on(write_until(params, stop, acks, failed));
            })
        };
        Ok(Writer {
            stop,
            acks,
            failed,
            thread: Some(thread),
        })
    }

    pub(crate) fn acknowledged(&self) -> usize {
        self.acks.lock().map_or(0, |a| a.len())
    }

    /// Whether `more` further writes are acknowledged within
    /// [`WRITER_PROGRESS_WAIT`].
    pub(crate) fn wait_for(&self, more: usize) -> bool {
        let target = self.acknowledged() + more;
        let deadline = Instant::now() + WRITER_PROGRESS_WAIT;
        while self.acknowledged() < target {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops the thread; returns the acknowledged values (with when) and
    /// the number of failed INSERTs.
    pub(crate) fn finish(mut self) -> (Vec<(i32, Instant)>, u32) {
        self.halt();
        let acks = self.acks.lock().map(|a| a.clone()).unwrap_or_default();
        let failed = self.failed.lock().map_or(0, |f| *f);
        (acks, failed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The writer's loop (see [`Writer`]).
async fn write_until(
    params: pgctl::connect::ConnectParams,
    stop: Arc<AtomicBool>,
    acks: Acks,
    failed: Arc<Mutex<u32>>,
) {
    let mut next: i32 = 1;
    let mut session: Option<pgctl::connect::Connected> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = &session else {
            match pgctl::connect::connect(&params).await {
                Ok(c) => session = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        match c
            .client()
            .execute("INSERT INTO counter VALUES ($1)", &[&next])
            .await
        {
            Ok(_) => {
                if let Ok(mut a) = acks.lock() {
                    a.push((next, Instant::now()));
                }
            }
            Err(_) => {
                // Outcome unknown: not counted as acknowledged, and the
                // value is never used again.
                if let Ok(mut f) = failed.lock() {
                    *f += 1;
                }
                session = None;
            }
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A session on `node`'s Knocknoc database as the application, or why not
/// (a node that is down is a failed check, not a pg-harness panic).
async fn app_session(node: &DebianCluster) -> Result<tokio_postgres::Client, String> {
    let mut config = node.tcp_config();
    config
        .user("knocknoc")
        .password(APP_PASSWORD)
        .dbname("knocknoc")
        .connect_timeout(Duration::from_secs(5));
    let (c, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(c)
}

/// The longest time between two acknowledged writes.
pub(crate) fn longest_gap(acks: &[(i32, Instant)]) -> Duration {
    acks.windows(2)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default()
}

/// `failover --switchover` on node B (the primary since the failover)
/// while a writer goes through the web nodes' string: node A is the
/// primary again, B streams from it, and no acknowledged write is lost.
pub async fn switchover(demo: &mut Demo<'_>, pair: &Pair) -> Result<()> {
    demo.section(
        "Switchover: node B hands the primary role back to node A, no acknowledged write lost",
    );
    println!(
        "\n$ # a web node writes 1, 2, 3 ... into a new table through --print-url's string,\n  \
         # reconnecting after every error, and counts what was acknowledged"
    );
    let table = match app_session(&pair.b).await {
        Ok(c) => c
            .batch_execute("CREATE TABLE counter (v int PRIMARY KEY)")
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if let Err(e) = &table {
        println!("  cannot create it on node B: {e}");
    }
    demo.checks
        .check("the writer's table is created on node B", table.is_ok());
    let params = match web_node_params(pair) {
        Ok(params) => params,
        Err(e) => {
            println!("  {e}");
            demo.checks.check("the writer can use the string", false);
            return Ok(());
        }
    };
    let writer = Writer::start(params)?;
    let writing = writer.wait_for(20);
    println!(
        "  {} writes acknowledged so far (on node B)",
        writer.acknowledged()
    );
    demo.checks
        .check("the writer writes through node B", writing);

    println!(
        "\n$ # on node B (the primary); --peer names node A, whose port differs from B's here"
    );
    let peer = format!("127.0.0.1:{}", pair.a.port());
    let (code, out) = failover_cmd(
        demo,
        &pair.b,
        &["--switchover", "--peer", &peer, "--name", "node_b", "--yes"],
    )?;
    demo.checks
        .check("failover --switchover exits 0", code == 0);
    let after = writer.wait_for(20);
    let (acks, failed) = writer.finish();
    demo.checks.check(
        "the writer goes on writing after the switchover (through node A)",
        after,
    );

    let a_primary = match app_session(&pair.a).await {
        Ok(c) => c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map(|r| !r.get::<_, bool>(0))
            .unwrap_or(false),
        Err(_) => false,
    };
    println!(
        "\n$ # node A: {}",
        if a_primary {
            "pg_is_in_recovery() = false, the primary again"
        } else {
            "not a primary"
        }
    );
    demo.checks.check("node A is the primary again", a_primary);
    let (_, status) = replica(demo, &pair.a, &["--status"])?;
    demo.checks.check(
        "replica --status on node A shows node_b streaming",
        status.contains("standby node_b: streaming"),
    );

    println!("\n$ # every acknowledged write is on node A, the new primary");
    let stored: Result<std::collections::HashSet<i32>, String> = match app_session(&pair.a).await {
        Ok(c) => c
            .query("SELECT v FROM counter", &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let lost = match &stored {
        Ok(stored) => acks.iter().filter(|(v, _)| !stored.contains(v)).count(),
        Err(e) => {
            println!("  cannot read them: {e}");
            acks.len()
        }
    };
    println!(
        "  {} writes acknowledged, {lost} of them lost; {failed} refused or cut off (never acknowledged)",
        acks.len()
    );
    demo.checks.check(
        "no acknowledged write was lost",
        stored.is_ok() && lost == 0 && !acks.is_empty(),
    );
    let read_only = out
        .lines()
        .find_map(|l| l.strip_prefix("writes were refused for "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string);
    println!(
        "  read-only window (switchover report, fence to promotion): {} ms; \
         the writer's longest wait between two acknowledged writes: {} ms",
        read_only.as_deref().unwrap_or("?"),
        longest_gap(&acks).as_millis()
    );
    demo.checks.check(
        "the switchover report gives the read-only window",
        read_only.is_some(),
    );
    Ok(())
}
