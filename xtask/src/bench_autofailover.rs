//! `cargo xtask bench autofailover [--runs N] [--faults LIST]`: how fast pg_auto_failover
//! fails over with its default monitor settings and with knocker's tuned
//! profile ([`autofailover::MONITOR_PROFILE`] and
//! [`autofailover::KEEPER_PARTITION_TIMEOUT`]), side by side in one run,
//! with nothing lost (issue 15, "Speed, with nothing lost").
//!
//! The bed: a monitor (`pg_autoctl create monitor`, pg_hba.conf and the
//! `autoctl_node` password set as `knocker-ops/tests/testsuite/autofailover_pg15.rs`
//! does it) and two pg-harness PostgreSQL 15 nodes on loopback, one CA
//! for all three, `sslmode=verify-full` everywhere; the primary enrolled
//! with `knocker autofailover --enroll` (the library call), a standby
//! cloned with `pg_basebackup -R` and enrolled keeping its data; the
//! keepers run as child processes of this program with the `supervise`
//! command the enrolment reported (no systemd here).
//!
//! For each profile (applied to the running formation: `ALTER SYSTEM` on
//! the monitor, `pg_autoctl config set timeout.network_partition_timeout`
//! on both keepers), under a client that inserts a new counter value per
//! attempt through the multi-host string (`target_session_attrs=read-write`,
//! one connection per attempt, each bounded to 3 s) and records every
//! acknowledged value, and one probe per node writing to that node's own
//! address every ~100 ms:
//!
//! * **kill**: the primary's host dies: its keeper (`pg_autoctl run`) and
//!   every descendant, PostgreSQL included, get SIGKILL at once (a host
//!   death takes the keeper too; a PostgreSQL killed under a live keeper
//!   is simply restarted by it). Measured: the first acknowledged write
//!   started after the kill. The node is then restarted (its keeper) and
//!   rejoins as a standby.
//! * **freeze**: the primary's host stalls: the same process tree gets
//!   SIGSTOP; SIGCONT 2 s after the first write through the new primary.
//!   Measured: the first write, whether both nodes ever acknowledged
//!   writes at once (the probes), and how long after SIGCONT the old
//!   primary stops taking writes (a direct check every 100 ms: stopped, in
//!   recovery or read-only).
//! * **freeze-postgres**: PostgreSQL alone hangs under a live keeper: the
//!   postmaster and its children get SIGSTOP, the rest as for freeze. The
//!   keeper then goes on reporting "PostgreSQL is running" to the monitor
//!   (about every 5 s), which pg_auto_failover's default
//!   `node_considered_unhealthy_timeout` (20 s) never counts as a failure.
//!
//! Each fault gives up after [`FAULT_BOUND`] without a write (and then
//! measures no demotion: the old primary simply goes on). After each
//! fault: every acknowledged value must be on the new primary; the table
//! (standard output) has the two profiles side by side, the issue's
//! targets for the tuned one and whether they are met.
//! Everything started is stopped by pid and every directory removed, also
//! on error. Not part of `cargo xtask test` (about 5 minutes per run).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use knocker_ops::autofailover::{self, Action, Autoctl, Options, Report, Secret};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_harness::pgaf::{self, free_port, freeze_tree, make_tls, spawn, Attempt, Scratch, Writer};
use pg_harness::{Cluster, ClusterOptions, OsUser};
use pgctl::connect::ConnectParams;

const USAGE: &str =
    "usage: cargo xtask bench autofailover [--runs N]   (N = 1..5 faults of each kind per profile)";

/// PostgreSQL 15 from Debian: the only version with pg_auto_failover here.
const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The application's password (a throwaway bed on loopback).
const APP_PASSWORD: &str = "bench-app-pw";
/// The monitor URI's password (the formation's one secret).
const MONITOR_PASSWORD: &str = "bench-formation-pw";
/// pg_autoctl's default `timeout.network_partition_timeout` (seconds).
const DEFAULT_PARTITION_TIMEOUT: u32 = 20;
/// How long a fault may go without a write before the run gives up on it.
/// (The defaults took 51-56 s here; a fault the monitor does not act on
/// would otherwise hold the run for ever.)
const FAULT_BOUND: Duration = Duration::from_secs(90);
/// SIGCONT this long after the first write through the new primary.
const RESUME_AFTER: Duration = Duration::from_secs(2);

/// Runs the benchmark and prints its markdown table on standard output
/// (progress on standard error).
pub fn run(args: &[&str]) -> Result<()> {
    let mut runs = 1usize;
    let mut faults: Vec<Fault> = Fault::ALL.to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--runs" => {
                let v = crate::option_value(&mut it, "--runs", USAGE)?;
                runs = match v.parse() {
                    Ok(n @ 1..=5) => n,
                    _ => {
                        return Err(crate::usage_error(
                            &format!("--runs wants a number from 1 to 5, not {v:?}"),
                            USAGE,
                        ))
                    }
                };
            }
            "--faults" => {
                let v = crate::option_value(&mut it, "--faults", USAGE)?;
                faults = Vec::new();
                for name in v.split(',') {
                    match Fault::ALL.into_iter().find(|f| f.name() == name) {
                        Some(f) if !faults.contains(&f) => faults.push(f),
                        _ => {
                            return Err(crate::usage_error(
                                &format!("--faults: {name:?} is not one of kill, freeze, freeze-postgres (each once)"),
                                USAGE,
                            ))
                        }
                    }
                }
            }
            other => {
                return Err(crate::usage_error(
                    &format!("unknown argument {other:?}"),
                    USAGE,
                ))
            }
        }
    }
    ensure!(
        nix::unistd::geteuid().is_root(),
        "bench autofailover runs as root (the servers run as an unprivileged user)"
    );
    crate::provision::provision_pg_auto_failover()?;
    pg_harness::block_on(bench(runs, &faults))
}

/// A settings profile of the formation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Profile {
    /// pg_auto_failover's own defaults (monitor and keepers).
    Defaults,
    /// knocker's profile, as `--enroll` and the monitor set-up apply it.
    Tuned,
}

impl Profile {
    fn label(self) -> &'static str {
        match self {
            Profile::Defaults => "pg_auto_failover defaults",
            Profile::Tuned => "knocker tuned",
        }
    }

    /// The statements that put the monitor on this profile.
    fn monitor_sql(self) -> Vec<String> {
        match self {
            Profile::Tuned => autofailover::monitor_profile_sql(),
            Profile::Defaults => autofailover::MONITOR_PROFILE
                .iter()
                .map(|(name, _)| format!("ALTER SYSTEM RESET {name}"))
                .chain(["SELECT pg_catalog.pg_reload_conf()".to_string()])
                .collect(),
        }
    }

    fn partition_timeout(self) -> u32 {
        match self {
            Profile::Defaults => DEFAULT_PARTITION_TIMEOUT,
            Profile::Tuned => autofailover::KEEPER_PARTITION_TIMEOUT,
        }
    }
}

/// The fault a run inflicts on the primary.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// The host dies: SIGKILL of the keeper and every descendant.
    Kill,
    /// The host stalls: SIGSTOP of the keeper and every descendant,
    /// SIGCONT later.
    Freeze,
    /// PostgreSQL alone stalls (its keeper runs on): SIGSTOP of the
    /// postmaster and its children, SIGCONT later.
    FreezePostgres,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::Kill, Fault::Freeze, Fault::FreezePostgres];

    /// The name `--faults` takes.
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Freeze => "freeze",
            Fault::FreezePostgres => "freeze-postgres",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Fault::Kill => "SIGKILL of the primary's keeper + PostgreSQL (host death)",
            Fault::Freeze => "SIGSTOP of the primary's keeper + PostgreSQL (host stall)",
            Fault::FreezePostgres => "SIGSTOP of the primary's PostgreSQL only, keeper running",
        }
    }
}

/// What one fault showed.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// The first acknowledged write (through the multi-host string)
    /// started after the fault, from the fault.
    first_write: Option<f64>,
    /// From the monitor's events: the monitor assigned `prepare_promotion`.
    prepare_promotion: Option<f64>,
    /// From the monitor's events: the monitor assigned the new primary
    /// `wait_primary` (writable without a standby): the end of its wait
    /// for the old primary (`primary_demote_timeout`). The node may take
    /// writes a moment before its report of that state is recorded.
    wait_primary: Option<f64>,
    /// Acknowledged writes of every client during the fault's window.
    acked: usize,
    /// Of those, missing from the new primary afterwards.
    lost: usize,
    /// Writes the old primary acknowledged once the other node had taken
    /// one (both accepting writes); `None` when no failover happened.
    both_accepting: Option<usize>,
    /// Whether the two nodes' acknowledged writes ever overlapped in time,
    /// and the gap between the old primary's last and the new primary's
    /// first (negative = overlap).
    gap: Option<f64>,
    /// Freeze: SIGCONT to "the old primary refuses writes" (direct check).
    refuses_writes_after: Option<f64>,
    /// Freeze: SIGCONT to the old primary's first report of a state that
    /// is not a primary's (the monitor's view).
    reported_demoted_after: Option<f64>,
    /// From the node's restart (kill) or SIGCONT (freeze) until both nodes
    /// are `primary`/`secondary` again.
    rejoined_after: Option<f64>,
}

/// A client writing through `params` the values taken from `next` (one
/// connection per attempt) until stopped.
fn start_writer(params: ConnectParams, next: Arc<AtomicI64>, pause: Duration) -> Writer {
    let params = Arc::new(params);
    Writer::start(next, pause, move |n| {
        let params = params.clone();
        async move { write_once(&params, n).await }
    })
}

/// One connection, one INSERT, bounded to 3 s: true when acknowledged.
async fn write_once(params: &ConnectParams, n: i64) -> bool {
    let attempt = async {
        let c = pgctl::connect::connect(params).await.ok()?;
        c.client()
            .execute("INSERT INTO counter(n) VALUES ($1)", &[&n])
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Some(1))
    )
}

/// Whether the server behind `params` takes writes now: `Some(true)` a
/// writable primary, `Some(false)` it refuses them (connection refused or
/// failed, in recovery, read-only), `None` no answer within 1.5 s (a
/// server that is only slow to accept is not counted as demoted).
async fn takes_writes(params: &ConnectParams) -> Option<bool> {
    let check = async {
        let c = match pgctl::connect::connect(params).await {
            Ok(c) => c,
            Err(_) => return false,
        };
        match c
            .client()
            .query_one(
                "SELECT pg_catalog.pg_is_in_recovery() \
                 OR pg_catalog.current_setting('transaction_read_only')::bool",
                &[],
            )
            .await
        {
            Ok(row) => !row.get::<_, bool>(0),
            Err(_) => false,
        }
    };
    tokio::time::timeout(Duration::from_millis(1500), check)
        .await
        .ok()
}

/// The keeper processes (and the monitor's `pg_autoctl run`), children of
/// this program, stopped by pid (nodes first) when dropped.
#[derive(Default)]
struct Keepers(Vec<(String, Child)>);

impl Keepers {
    fn pid(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    fn take(&mut self, name: &str) -> Option<Child> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }
}

impl Drop for Keepers {
    fn drop(&mut self) {
        // Nodes first: the monitor's PostgreSQL waits for their sessions.
        let mut all = std::mem::take(&mut self.0);
        all.sort_by_key(|(n, _)| n == "monitor");
        for (name, mut child) in all {
            stop_child(&name, &mut child);
        }
    }
}

/// Stops a keeper and everything under it ([`pgaf::stop_tree`]), naming
/// what needed a SIGKILL.
fn stop_child(name: &str, child: &mut Child) {
    for pid in pgaf::stop_tree(child) {
        eprintln!("bench autofailover: {name}: SIGKILL to leftover pid {pid}");
    }
}

fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Runs `argv` as `user` with a clean environment, asynchronously; the
/// output, or an error holding it.
async fn run_as(user: &OsUser, argv: &[&str], env: &[(&str, String)]) -> Result<String> {
    let mut cmd = tokio::process::Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .uid(user.uid)
        .gid(user.gid);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run {}", argv[0]))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{argv:?} failed: {text}");
    Ok(text)
}

/// Runs a command of knocker's `Autoctl` argument form (maybe with
/// `runuser`), returning its output.
async fn run_argv(argv: &[String]) -> Result<String> {
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", argv[0]))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{argv:?} failed: {text}");
    Ok(text)
}

/// A node's state as the monitor records it.
#[derive(Debug, Clone)]
struct NodeState {
    name: String,
    reported: String,
    goal: String,
    health: i32,
}

/// One enrolled node.
struct Node {
    name: String,
    cluster: Cluster,
    supervise: Vec<String>,
}

/// The whole bed. Dropped in field order after `keepers` stopped: the
/// keepers first (a cluster removed under a running keeper is restarted
/// by it), then the clusters, then the scratch directory.
struct Bed {
    keepers: Keepers,
    nodes: Vec<Node>,
    user: OsUser,
    scratch: PathBuf,
    ca: String,
    monitor_port: u16,
    monitor_started: Instant,
    next_n: Arc<AtomicI64>,
    begun: Instant,
    _scratch: Scratch,
}

impl Bed {
    fn progress(&self, what: &str) {
        eprintln!(
            "bench autofailover [{:>6.1} s] {what}",
            self.begun.elapsed().as_secs_f64()
        );
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("a node")
    }

    /// The application's URL to `ports` (127.0.0.1 each), TLS verified.
    fn app_url(&self, ports: &[u16], read_write: bool) -> String {
        format!(
            "postgres://app:{APP_PASSWORD}@{}/appdb?{}connect_timeout=2&sslmode=verify-full&sslrootcert={}",
            ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            if read_write {
                "target_session_attrs=read-write&"
            } else {
                ""
            },
            self.ca
        )
    }

    /// The multi-host string of the web nodes: every node, read-write.
    fn multi_host(&self) -> Result<ConnectParams> {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.cluster.port()).collect();
        params(&self.app_url(&ports, true))
    }

    /// One node's own address, no session attribute: the probe's view.
    fn direct(&self, name: &str) -> Result<ConnectParams> {
        params(&self.app_url(&[self.node(name).cluster.port()], false))
    }

    fn monitor_uri(&self) -> String {
        format!(
            "postgres://autoctl_node:{MONITOR_PASSWORD}@127.0.0.1:{}/pg_auto_failover?sslmode=verify-full&sslrootcert={}",
            self.monitor_port, self.ca
        )
    }

    /// SQL on the monitor as its superuser (peer over the socket), one
    /// `-c` per statement (ALTER SYSTEM refuses a transaction block);
    /// unaligned rows, fields separated by `|`.
    async fn monitor_sql(&self, statements: &[String]) -> Result<String> {
        let port = self.monitor_port.to_string();
        let psql = format!("{BIN}/psql");
        let mut argv: Vec<&str> = vec![
            &psql,
            "-X",
            "-A",
            "-t",
            "-q",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "/var/run/postgresql",
            "-p",
            &port,
            "-d",
            "pg_auto_failover",
        ];
        for s in statements {
            argv.extend(["-c", s.as_str()]);
        }
        run_as(&self.user, &argv, &[]).await
    }

    async fn states(&self) -> Result<Vec<NodeState>> {
        let out = self
            .monitor_sql(&["SELECT nodename, reportedstate, goalstate, health \
                            FROM pgautofailover.node ORDER BY nodeid"
                .into()])
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() == 4).then(|| NodeState {
                    name: f[0].into(),
                    reported: f[1].into(),
                    goal: f[2].into(),
                    health: f[3].parse().unwrap_or(-1),
                })
            })
            .collect())
    }

    fn describe(states: &[NodeState]) -> String {
        states
            .iter()
            .map(|s| {
                format!(
                    "{} {}{}{}",
                    s.name,
                    s.reported,
                    if s.goal != s.reported {
                        format!("->{}", s.goal)
                    } else {
                        String::new()
                    },
                    if s.health == 1 { "" } else { " (unhealthy)" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Waits until one node is `primary` and the other `secondary`, both
    /// reached and healthy; returns (primary, secondary).
    async fn wait_stable(&self, within: Duration) -> Result<(String, String)> {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            if let Ok(s) = self.states().await {
                let settled = |st: &str| {
                    s.iter()
                        .find(|n| n.reported == st && n.goal == st && n.health == 1)
                        .map(|n| n.name.clone())
                };
                if let (2, Some(p), Some(q)) = (s.len(), settled("primary"), settled("secondary")) {
                    return Ok((p, q));
                }
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "the formation did not settle within {} s: {}",
            within.as_secs(),
            Bed::describe(&last)
        )
    }

    async fn wait_state(&self, name: &str, state: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            if let Ok(s) = self.states().await {
                if s.iter().any(|n| n.name == name && n.reported == state) {
                    return Ok(());
                }
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "{name} not {state} within {within:?}: {}",
            Bed::describe(&last)
        )
    }

    /// Puts the formation on `profile` and checks that the monitor and
    /// both keepers have it.
    async fn apply(&self, profile: Profile) -> Result<String> {
        self.monitor_sql(&profile.monitor_sql()).await?;
        let names: Vec<String> = autofailover::MONITOR_PROFILE
            .iter()
            .map(|(n, _)| format!("'{n}'"))
            .collect();
        let query = format!(
            "SELECT name, setting, boot_val FROM pg_catalog.pg_settings WHERE name IN ({}) ORDER BY name",
            names.join(", ")
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let summary = loop {
            let out = self.monitor_sql(std::slice::from_ref(&query)).await?;
            let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
            let applied = rows.len() == names.len()
                && rows.iter().all(|r| {
                    r.len() == 3
                        && r[1]
                            == match profile {
                                Profile::Defaults => r[2],
                                Profile::Tuned => autofailover::MONITOR_PROFILE
                                    .iter()
                                    .find(|(n, _)| *n == r[0])
                                    .map_or("?", |(_, v)| v),
                            }
                });
            if applied {
                break rows
                    .iter()
                    .map(|r| format!("{} {}", r[0].trim_start_matches("pgautofailover."), r[1]))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            ensure!(
                Instant::now() < deadline,
                "the monitor does not show the {} settings: {out}",
                profile.label()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let timeout = profile.partition_timeout().to_string();
        for node in &self.nodes {
            let autoctl = Autoctl::for_data_dir(node.cluster.data_dir(), Path::new(BIN))?;
            let pgdata = node.cluster.data_dir().display().to_string();
            run_argv(&autoctl.command(&[
                "config",
                "set",
                "--pgdata",
                &pgdata,
                "timeout.network_partition_timeout",
                &timeout,
            ]))
            .await?;
            let got = run_argv(&autoctl.command(&[
                "config",
                "get",
                "--pgdata",
                &pgdata,
                "timeout.network_partition_timeout",
            ]))
            .await?;
            ensure!(
                got.trim() == timeout,
                "{}: network_partition_timeout is {got:?}",
                node.name
            );
        }
        Ok(format!(
            "monitor: {summary} (ms); keepers: network_partition_timeout {timeout} s"
        ))
    }

    /// The monitor's events since `since` (seconds since the epoch), as
    /// (seconds after `since`, node, reported state, goal state).
    async fn events_since(&self, since: f64) -> Result<Vec<(f64, String, String, String)>> {
        let out = self
            .monitor_sql(&[format!(
                "SELECT extract(epoch FROM eventtime) - {since}, nodename, reportedstate, goalstate \
                 FROM pgautofailover.event WHERE eventtime >= to_timestamp({since}) ORDER BY eventid"
            )])
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() == 4).then(|| {
                    (
                        f[0].parse().unwrap_or(f64::NAN),
                        f[1].to_string(),
                        f[2].to_string(),
                        f[3].to_string(),
                    )
                })
            })
            .collect())
    }

    /// The acknowledged values in `acked` missing on the primary now.
    async fn lost(&self, acked: &[i64]) -> Result<usize> {
        let Some(&first) = acked.iter().min() else {
            return Ok(0);
        };
        let params = self.multi_host()?;
        let mut last_err = None;
        for _ in 0..20 {
            match pgctl::connect::connect(&params).await {
                Ok(c) => {
                    let present: BTreeSet<i64> = c
                        .client()
                        .query("SELECT n FROM counter WHERE n >= $1", &[&first])
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    return Ok(acked.iter().filter(|n| !present.contains(n)).count());
                }
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("cannot read the counter back: {last_err:?}")
    }

    /// Inflicts `fault` on the current primary and measures.
    async fn fault(&mut self, profile: Profile, fault: Fault) -> Result<Outcome> {
        let grace = Duration::from_secs(11);
        if self.monitor_started.elapsed() < grace {
            // No failover within the monitor's startup_grace_period (10 s).
            tokio::time::sleep(grace - self.monitor_started.elapsed()).await;
        }
        let (victim, other) = self.wait_stable(Duration::from_secs(120)).await?;
        let writer = start_writer(
            self.multi_host()?,
            self.next_n.clone(),
            Duration::from_millis(20),
        );
        let probe_victim = start_writer(
            self.direct(&victim)?,
            self.next_n.clone(),
            Duration::from_millis(100),
        );
        let probe_other = start_writer(
            self.direct(&other)?,
            self.next_n.clone(),
            Duration::from_millis(100),
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = Instant::now();
        let keeper = self.keepers.pid(&victim).context("the victim's keeper")?;
        let root = match fault {
            Fault::Kill | Fault::Freeze => keeper,
            Fault::FreezePostgres => postmaster_pid(self.node(&victim).cluster.data_dir())?,
        };
        let pids = freeze_tree(root);
        // Times count from here, once the whole tree is stopped (3-15 ms
        // after the first SIGSTOP here; the progress line says how long).
        let fault_at = Instant::now();
        let fault_epoch = epoch();
        if fault == Fault::Kill {
            for p in &pids {
                signal(*p, Signal::SIGKILL);
            }
            if let Some(mut child) = self.keepers.take(&victim) {
                let _ = child.wait();
            }
        }
        self.progress(&format!(
            "{}: {} of {victim}'s {} and its {} descendants (took {:.0} ms)",
            profile.label(),
            if fault == Fault::Kill {
                "SIGKILL"
            } else {
                "SIGSTOP"
            },
            if root == keeper {
                "keeper"
            } else {
                "postmaster"
            },
            pids.len() - 1,
            fault_at.duration_since(before).as_secs_f64() * 1000.0
        ));
        let mut out = Outcome::default();
        let mut said = Instant::now();
        let first = loop {
            if let Some(t) = writer.first_ack_started_after(fault_at) {
                break Some(t);
            }
            if fault_at.elapsed() > FAULT_BOUND {
                break None;
            }
            if said.elapsed() > Duration::from_secs(5) {
                said = Instant::now();
                let s = self.states().await.unwrap_or_default();
                self.progress(&format!(
                    "  +{:.0} s, no write yet; monitor: {}",
                    fault_at.elapsed().as_secs_f64(),
                    Bed::describe(&s)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        out.first_write = first.map(|t| t.duration_since(fault_at).as_secs_f64());
        match out.first_write {
            Some(s) => self.progress(&format!("  first acknowledged write after {s:.2} s")),
            None => self.progress(&format!(
                "  no write within {} s: giving up on this fault",
                FAULT_BOUND.as_secs()
            )),
        }

        let mut resumed_at = None;
        if fault != Fault::Kill && first.is_none() {
            // No failover: the node simply goes on as the primary.
            for p in &pids {
                signal(*p, Signal::SIGCONT);
            }
            resumed_at = Some(Instant::now());
            self.progress("  SIGCONT (no failover happened: the old primary goes on)");
        } else if fault != Fault::Kill {
            tokio::time::sleep(RESUME_AFTER).await;
            let resumed = Instant::now();
            for p in &pids {
                signal(*p, Signal::SIGCONT);
            }
            resumed_at = Some(resumed);
            let direct = self.direct(&victim)?;
            let deadline = resumed + Duration::from_secs(30);
            while Instant::now() < deadline
                && (out.refuses_writes_after.is_none() || out.reported_demoted_after.is_none())
            {
                if out.refuses_writes_after.is_none() && takes_writes(&direct).await == Some(false)
                {
                    out.refuses_writes_after = Some(resumed.elapsed().as_secs_f64());
                }
                if out.reported_demoted_after.is_none() {
                    if let Ok(s) = self.states().await {
                        if s.iter().any(|n| {
                            n.name == victim
                                && !matches!(
                                    n.reported.as_str(),
                                    "primary" | "wait_primary" | "single" | "join_primary"
                                )
                        }) {
                            out.reported_demoted_after = Some(resumed.elapsed().as_secs_f64());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            self.progress(&format!(
                "  SIGCONT; old primary refuses writes after {}, reports a demoted state after {}",
                secs(out.refuses_writes_after),
                secs(out.reported_demoted_after)
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let writes = writer.finish().await;
        let victim_probe = probe_victim.finish().await;
        let other_probe = probe_other.finish().await;

        let acked: Vec<i64> = writes
            .iter()
            .chain(&victim_probe)
            .chain(&other_probe)
            .filter(|a| a.acked)
            .map(|a| a.n)
            .collect();
        out.acked = acked.len();
        out.lost = self.lost(&acked).await?;
        let victim_acks: Vec<&Attempt> = victim_probe.iter().filter(|a| a.acked).collect();
        let other_first = other_probe
            .iter()
            .filter(|a| a.acked)
            .map(|a| a.started)
            .min();
        if let Some(o) = other_first {
            out.both_accepting = Some(victim_acks.iter().filter(|a| a.finished >= o).count());
            if let Some(v) = victim_acks.iter().map(|a| a.finished).max() {
                out.gap = Some(if o >= v {
                    o.duration_since(v).as_secs_f64()
                } else {
                    -v.duration_since(o).as_secs_f64()
                });
            }
        }
        for (t, node, _reported, goal) in self.events_since(fault_epoch).await? {
            if out.prepare_promotion.is_none() && node == other && goal == "prepare_promotion" {
                out.prepare_promotion = Some(t);
            }
            if out.wait_primary.is_none() && node == other && goal == "wait_primary" {
                out.wait_primary = Some(t);
            }
        }
        self.progress(&format!(
            "  monitor assigned prepare_promotion +{}, wait_primary +{}; {} acknowledged, {} lost; \
             old primary's acks once the new one took writes: {}; gap old->new acks {}",
            secs(out.prepare_promotion),
            secs(out.wait_primary),
            out.acked,
            out.lost,
            out.both_accepting.map_or_else(|| "- (no failover)".into(), |n| n.to_string()),
            secs(out.gap)
        ));

        // The old primary back as a standby.
        let back_from = match fault {
            Fault::Kill => {
                let deadline = Instant::now() + Duration::from_secs(20);
                while pids
                    .iter()
                    .any(|p| Path::new(&format!("/proc/{p}")).exists())
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let supervise = self.node(&victim).supervise.clone();
                let log = self.scratch.join(format!(
                    "{victim}-{}.log",
                    self.next_n.load(Ordering::Relaxed)
                ));
                let child = spawn(&supervise, &log)?;
                self.keepers.0.push((victim.clone(), child));
                Instant::now()
            }
            Fault::Freeze | Fault::FreezePostgres => resumed_at.unwrap_or_else(Instant::now),
        };
        let (p, _) = self.wait_stable(Duration::from_secs(120)).await?;
        out.rejoined_after = Some(back_from.elapsed().as_secs_f64());
        self.progress(&format!(
            "  {victim} rejoined as secondary after {:.1} s; primary now {p}",
            back_from.elapsed().as_secs_f64()
        ));
        Ok(out)
    }
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(data_dir: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .with_context(|| format!("no postmaster.pid in {}", data_dir.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("{}/postmaster.pid names no pid", data_dir.display()))
}

fn params(url: &str) -> Result<ConnectParams> {
    let info = pgctl::conninfo::ConnInfo::parse(url)?;
    Ok(pgctl::conninfo::resolve_from_process_env(&info)?.params)
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{s:.2} s"))
}

/// `date -u` and the load average, for the report.
fn stamp() -> String {
    format!(
        "{}, load average {}",
        pgctl::os::utc_timestamp(),
        crate::bench::loadavg()
    )
}

/// Sets up the bed: TLS, monitor, two enrolled nodes.
async fn setup(begun: Instant) -> Result<Bed> {
    let user = OsUser::server_user().clone();
    let scratch_guard = Scratch::create("knocker-bench-autofailover-", &user)?;
    let scratch = scratch_guard.0.clone();
    let tls = make_tls(&scratch.join("tls"), &user, "IP:127.0.0.1,DNS:localhost")?;
    let ca = tls.0.display().to_string();
    let node_options = ClusterOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_ca_file".into(), ca.clone()),
            ("ssl_cert_file".into(), tls.1.display().to_string()),
            ("ssl_key_file".into(), tls.2.display().to_string()),
        ],
        ..Default::default()
    };
    let a = Cluster::start_with(15, node_options.clone()).await;
    let b = Cluster::start_with(15, node_options).await;
    let mut bed = Bed {
        keepers: Keepers::default(),
        nodes: Vec::new(),
        user: user.clone(),
        scratch: scratch.clone(),
        ca: ca.clone(),
        monitor_port: free_port()?,
        monitor_started: Instant::now(),
        next_n: Arc::new(AtomicI64::new(1)),
        begun,
        _scratch: scratch_guard,
    };
    bed.progress("two PostgreSQL 15 nodes started; creating the monitor");

    // The monitor, set up as autofailover_pg15.rs does it.
    let mon = scratch.join("monitor");
    let mstate = scratch.join("monitor-state");
    std::fs::create_dir(&mstate)?;
    user.chown(&mstate)?;
    let menv: Vec<(&str, String)> = [
        "HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
    ]
    .into_iter()
    .map(|k| (k, mstate.display().to_string()))
    .collect();
    let mon_s = mon.display().to_string();
    let mport = bed.monitor_port.to_string();
    let pg_ctl = format!("{BIN}/pg_ctl");
    let (crt, key) = (tls.1.display().to_string(), tls.2.display().to_string());
    run_as(
        &user,
        &[
            "pg_autoctl",
            "create",
            "monitor",
            "--pgctl",
            &pg_ctl,
            "--pgdata",
            &mon_s,
            "--pgport",
            &mport,
            "--hostname",
            "127.0.0.1",
            "--skip-pg-hba",
            "--ssl-ca-file",
            &ca,
            "--server-cert",
            &crt,
            "--server-key",
            &key,
            "--ssl-mode",
            "verify-full",
        ],
        &menv,
    )
    .await?;
    std::fs::write(
        mon.join("pg_hba.conf"),
        format!(
            "local all {u} peer\nlocal pg_auto_failover autoctl_node peer map=pgautofailover\n\
             hostssl pg_auto_failover autoctl_node 127.0.0.1/32 scram-sha-256\n",
            u = user.name
        ),
    )?;
    std::fs::write(
        mon.join("pg_ident.conf"),
        format!("pgautofailover {} autoctl_node\n", user.name),
    )?;
    let mut margv: Vec<String> = ["runuser", "-u", &user.name, "--", "env", "-i"]
        .map(String::from)
        .to_vec();
    margv.push("PATH=/usr/bin:/bin".into());
    margv.extend(menv.iter().map(|(k, v)| format!("{k}={v}")));
    margv.extend(["pg_autoctl", "run", "--pgdata", &mon_s].map(String::from));
    bed.keepers.0.push((
        "monitor".into(),
        spawn(&margv, &scratch.join("monitor.log"))?,
    ));
    bed.monitor_started = Instant::now();
    let mut statements = vec![format!(
        "ALTER ROLE autoctl_node PASSWORD '{MONITOR_PASSWORD}'"
    )];
    statements.extend(autofailover::monitor_profile_sql());
    let mut last = None;
    for _ in 0..60 {
        match bed.monitor_sql(&statements).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(e) = last {
        bail!("the monitor did not come up: {e:#}");
    }
    let monitor = bed.monitor_uri();
    bed.progress("monitor running; enrolling the primary");

    // The running primary with the application's table.
    let c = a.connect().await;
    c.batch_execute(&format!("CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'"))
        .await?;
    c.batch_execute("CREATE DATABASE appdb OWNER app").await?;
    drop(c);
    let app_a = params(&bed.app_url(&[a.port()], false))?;
    let c = pgctl::connect::connect(&app_a).await?;
    c.client()
        .batch_execute("CREATE TABLE counter(n bigint PRIMARY KEY)")
        .await?;
    drop(c);

    let admin = |c: &Cluster| {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            c.socket_dir().display(),
            c.port()
        )
    };
    let mut enroll = Options::new(Action::Enroll {
        monitor: Secret(monitor.clone()),
    });
    enroll.admin_conn = Some(admin(&a));
    enroll.name = Some("node_a".into());
    let Report::Enroll(r) = autofailover::run(&enroll, &mut |_: &str| true).await? else {
        bail!("--enroll gave another report");
    };
    let supervise_a = r.supervise.context("--enroll named no supervise command")?;
    bed.keepers.0.push((
        "node_a".into(),
        spawn(&supervise_a, &scratch.join("node_a.log"))?,
    ));
    bed.wait_state("node_a", "single", Duration::from_secs(60))
        .await?;
    bed.progress("node_a enrolled (single); cloning and enrolling node_b");

    // A standby cloned from it, as `knocker replica` leaves one, enrolled
    // keeping its data.
    let bdata = b.data_dir().display().to_string();
    run_as(
        &user,
        &[&pg_ctl, "-D", &bdata, "-m", "fast", "-w", "stop"],
        &[],
    )
    .await?;
    let passfile = Autoctl::for_data_dir(a.data_dir(), Path::new(BIN))?.passfile();
    let mut cloned = false;
    for _ in 0..20 {
        let _ = std::fs::remove_dir_all(b.data_dir());
        let out = user
            .command(format!("{BIN}/pg_basebackup"))
            .args(["-D", &bdata, "-X", "stream", "-c", "fast", "-R", "-d"])
            .arg(format!(
                "host=127.0.0.1 port={} user={} sslmode=verify-full sslrootcert={ca} application_name=node_b",
                a.port(),
                autofailover::REPLICATOR_ROLE
            ))
            .env_clear()
            .env("PGPASSFILE", &passfile)
            .output()?;
        if out.status.success() {
            cloned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(cloned, "could not clone node_a with pg_basebackup");
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(b.data_dir().join("postgresql.conf"))?;
    std::io::Write::write_all(
        &mut conf,
        format!(
            "port = {}\nunix_socket_directories = '{}'\n",
            b.port(),
            b.socket_dir().display()
        )
        .as_bytes(),
    )?;
    let start_log = scratch.join("node_b-start.log").display().to_string();
    run_as(
        &user,
        &[&pg_ctl, "-D", &bdata, "-l", &start_log, "-w", "start"],
        &[],
    )
    .await?;
    let mut enroll_b = Options::new(Action::Enroll {
        monitor: Secret(monitor),
    });
    enroll_b.admin_conn = Some(admin(&b));
    enroll_b.name = Some("node_b".into());
    let Report::Enroll(r) = autofailover::run(&enroll_b, &mut |_: &str| true).await? else {
        bail!("--enroll gave another report");
    };
    let supervise_b = r.supervise.context("--enroll named no supervise command")?;
    bed.keepers.0.push((
        "node_b".into(),
        spawn(&supervise_b, &scratch.join("node_b.log"))?,
    ));
    bed.nodes.push(Node {
        name: "node_a".into(),
        cluster: a,
        supervise: supervise_a,
    });
    bed.nodes.push(Node {
        name: "node_b".into(),
        cluster: b,
        supervise: supervise_b,
    });
    bed.wait_stable(Duration::from_secs(120)).await?;
    bed.progress("node_a primary, node_b secondary");
    Ok(bed)
}

async fn bench(runs: usize, faults: &[Fault]) -> Result<()> {
    let begun = Instant::now();
    let start_stamp = stamp();
    let names: Vec<&str> = faults.iter().map(|f| f.name()).collect();
    eprintln!(
        "bench autofailover: {start_stamp}; {runs} run(s) of {} per profile",
        names.join(", ")
    );
    let mut bed = setup(begun).await?;
    let profiles = [Profile::Tuned, Profile::Defaults];
    let mut settings: Vec<(Profile, String)> = Vec::new();
    let mut results: Vec<(Profile, Fault, Outcome)> = Vec::new();
    for run in 1..=runs {
        for profile in profiles {
            let applied = bed.apply(profile).await?;
            bed.progress(&format!("run {run}: {}: {applied}", profile.label()));
            if !settings.iter().any(|(p, _)| *p == profile) {
                settings.push((profile, applied));
            }
            for &fault in faults {
                let outcome = bed.fault(profile, fault).await?;
                results.push((profile, fault, outcome));
            }
        }
    }
    let took = begun.elapsed();
    drop(bed);
    let end_stamp = stamp();
    print!(
        "{}",
        report(&results, &settings, &start_stamp, &end_stamp, runs, took)
    );
    Ok(())
}

/// The markdown report: one row per measure, the two profiles side by
/// side, the targets (for the tuned profile) and whether they are met.
fn report(
    results: &[(Profile, Fault, Outcome)],
    settings: &[(Profile, String)],
    start: &str,
    end: &str,
    runs: usize,
    took: Duration,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nbench autofailover: started {start}; ended {end}; took {:.0} s; {runs} run(s) per fault and profile\n",
        took.as_secs_f64()
    );
    for (p, s) in settings {
        let _ = writeln!(t, "- {}: {s}", p.label());
    }
    let _ = writeln!(
        t,
        "\n| fault | measure | {} | {} | target (tuned) | met? |\n|---|---|---|---|---|---|",
        Profile::Defaults.label(),
        Profile::Tuned.label()
    );
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| results.iter().any(|(_, rf, _)| rf == f))
        .collect();
    for fault in faults {
        let of = |p: Option<Profile>| -> Vec<&Outcome> {
            results
                .iter()
                .filter(|(rp, rf, _)| *rf == fault && p.is_none_or(|p| p == *rp))
                .map(|(_, _, o)| o)
                .collect()
        };
        let cells = |p: Profile, get: &dyn Fn(&Outcome) -> String| -> String {
            of(Some(p))
                .into_iter()
                .map(get)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let met = |ok: bool| if ok { "yes" } else { "**NO**" }.to_string();
        let within = |get: fn(&Outcome) -> Option<f64>, limit: f64| {
            met(of(Some(Profile::Tuned))
                .iter()
                .all(|o| get(o).is_some_and(|s| s <= limit)))
        };
        let first_limit = if fault == Fault::Kill { 10.0 } else { 15.0 };
        type Row = (&'static str, fn(&Outcome) -> String, String, String);
        let mut rows: Vec<Row> = vec![
            (
                "first acknowledged write through the multi-host string",
                |o| secs(o.first_write),
                format!("<= {first_limit:.0} s"),
                within(|o| o.first_write, first_limit),
            ),
            (
                "monitor assigned the new primary prepare_promotion / wait_primary",
                |o| format!("{} / {}", secs(o.prepare_promotion), secs(o.wait_primary)),
                String::new(),
                String::new(),
            ),
            (
                "acknowledged writes / lost",
                |o| format!("{} / {}", o.acked, o.lost),
                "0 lost".into(),
                met(of(None).iter().all(|o| o.lost == 0)),
            ),
        ];
        if fault == Fault::Kill {
            rows.push((
                "old primary back as secondary after its restart",
                |o| secs(o.rejoined_after),
                String::new(),
                String::new(),
            ));
        } else {
            rows.extend([
                (
                    "writes the old primary acknowledged once the new one took writes; gap from its last to the new primary's first",
                    (|o| match o.both_accepting {
                        Some(n) => format!("{n}; {}", secs(o.gap)),
                        None => "no failover".into(),
                    }) as fn(&Outcome) -> String,
                    "0; gap > 0".to_string(),
                    met(of(None).iter().all(|o| {
                        o.both_accepting.is_none_or(|n| n == 0) && o.gap.is_none_or(|g| g > 0.0)
                    })),
                ),
                (
                    "after SIGCONT: old primary refuses writes (direct check)",
                    |o| secs(o.refuses_writes_after),
                    "<= 5 s".into(),
                    within(|o| o.refuses_writes_after, 5.0),
                ),
                (
                    "after SIGCONT: old primary reports a demoted state to the monitor",
                    |o| secs(o.reported_demoted_after),
                    String::new(),
                    String::new(),
                ),
                (
                    "old primary back as secondary after SIGCONT",
                    |o| secs(o.rejoined_after),
                    String::new(),
                    String::new(),
                ),
            ]);
        }
        for (measure, get, target, ok) in rows {
            let _ = writeln!(
                t,
                "| {} | {measure} | {} | {} | {target} | {ok} |",
                fault.label(),
                cells(Profile::Defaults, &get),
                cells(Profile::Tuned, &get),
            );
        }
    }
    t
}
