//! `cargo xtask bench failover [--runs N] [--size-mb N] [--only
//! clone,switchover,promote,rejoin] [--bin-dir DIR]`: `knocker replica` and
//! `knocker failover` against PostgreSQL's own tools run by hand, on two
//! Debian PostgreSQL 15 clusters of this machine (node A, node B), in one
//! run, with the targets of the Benchmarks section as verdicts.
//!
//! 1. Node A gets a Knocknoc database of about `--size-mb` (pgbench -i,
//!    server-side generation, vacuumed), a `counter` table, then `knocker
//!    replica --init` and `--allow --name node_b`.
//! 2. clone: `pg_basebackup -X stream -c fast` by hand with the replication
//!    string `--init` printed, into a directory beside node B's, next to
//!    `knocker replica --clone-from` (the whole command: checks, stop, move
//!    aside, pg_basebackup with the slot, configuration, start, streaming
//!    confirmed) onto node B. Throughput = size of the data directory made
//!    / wall time. `--runs N` pairs (default 3), node B made afresh each
//!    time, the order swapped from one run to the next; the verdict takes
//!    the median run. Every timed step starts after a sync(2), so that it
//!    does not pay for the writeback of the untimed steps before it, and
//!    each clone after a CHECKPOINT on node A, so that its own fast
//!    checkpoint does not pay for what autovacuum dirtied meanwhile.
//! 3. switchover: a writer (a web node's stand-in: INSERTs of 1, 2, 3 ...
//!    through the multi-host string `--print-url` printed, both nodes,
//!    `target_session_attrs=read-write`, reconnecting after every error)
//!    runs while `knocker failover --switchover` hands the primary role to
//!    the other node; lost = acknowledged values missing on the new
//!    primary; unavailable = the longest time between two acknowledged
//!    writes. `--runs N` switchovers, back and forth.
//! 4. promote (async): the writer runs; the primary's postmaster and all its
//!    children are SIGKILLed (and reaped); then `knocker failover --promote
//!    --yes` on the standby; measured from the command's start to the
//!    writer's first acknowledged write after it; lost as above.
//! 5. rejoin: the killed old primary is started alone (with `wal_keep_size`
//!    for that run) and takes writes (an UPDATE of a tenth of
//!    pgbench_accounts: a split brain's divergence), then is stopped
//!    cleanly; it is fenced, the new primary admits it (`replica --init`,
//!    `--allow`), its data directory is copied. `pg_rewind` by hand runs
//!    on it (over TCP to the new primary as the rewind role `--init` made,
//!    with the replication string's sslmode and password: the connection
//!    knocker's own pg_rewind makes), then the copy is put back and
//!    `knocker failover --rejoin` (checks, pg_rewind, configuration, start,
//!    streaming confirmed) runs on the very same situation. A clean stop,
//!    because pg_rewind's own crash recovery of a target that died ends in
//!    a checkpoint that recycles the WAL it then needs ("could not find
//!    previous WAL record"; knocker recovers such a node itself first,
//!    keeping every segment).
//! 6. promote (sync): `replica --allow --sync` for the rejoined node, the
//!    writer, SIGKILL of the primary's tree, `failover --promote` as in 4.
//!
//! Every cluster it makes is dropped (with what the commands left beside
//! it) however it ends: `DebianCluster`'s destructor. Not part of `cargo
//! xtask test`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use pg_harness::DebianCluster;
use pgctl::conninfo::{ConnInfo, Keyword};

use crate::demo_ha::{longest_gap, uri_in, with_host_port, Writer};

const USAGE: &str = "usage: cargo xtask bench failover [--runs N] [--size-mb N] \
[--only clone,switchover,promote,rejoin,autofailover] [--bin-dir DIR]
  --runs N        clone pairs and switchovers to measure (default 3)
  --size-mb N     size of the database to clone and rewind, in MiB (default 1024, at least 16)
  --only LIST     the sections to measure (default all); the others' steps run unmeasured
                  where a later section needs them; autofailover is pg_auto_failover's
                  defaults vs knocker's tuned profile (`bench autofailover`, one run per fault)
  --bin-dir DIR   use the knocker binary in DIR instead of building it";

/// Debian's PostgreSQL (the only one here with pg_basebackup and pg_rewind).
const MAJOR: u32 = 15;

/// The application's role and database.
const APP: &str = "knocknoc";
/// The application's password (the bench's own clusters).
const APP_PASSWORD: &str = "bench-app-secret";

/// pgbench's size of one scale unit on disk (pgbench_accounts with its
/// primary key, vacuumed), in MiB.
const MIB_PER_SCALE: u64 = 15;

/// Acknowledged writes waited for before a measured step, and after it.
const WRITES_AROUND: usize = 40;

/// The targets.
const CLONE_MIN_RATIO: f64 = 0.8;
const SWITCHOVER_MAX_GAP: Duration = Duration::from_secs(3);
const PROMOTE_MAX: Duration = Duration::from_secs(3);
const REJOIN_MAX_RATIO: f64 = 2.0;

/// The sections, as `--only` names them: knocker's own failover, then
/// pg_auto_failover's (issue 13's and issue 15's halves of one bench).
const SECTIONS: [&str; 5] = ["clone", "switchover", "promote", "rejoin", "autofailover"];

/// The sections of knocker's own (manual) failover.
const MANUAL: [&str; 4] = ["clone", "switchover", "promote", "rejoin"];

/// Parsed arguments.
#[derive(Debug)]
struct Options {
    runs: usize,
    size_mb: u64,
    only: Vec<&'static str>,
    bin_dir: Option<PathBuf>,
}

impl Options {
    fn measures(&self, section: &str) -> bool {
        self.only.contains(&section)
    }
}

fn parse(args: &[&str]) -> Result<Options> {
    let mut o = Options {
        runs: 3,
        size_mb: 1024,
        only: SECTIONS.to_vec(),
        bin_dir: None,
    };
    let mut rest = args.iter();
    while let Some(&arg) = rest.next() {
        match arg {
            "--runs" => {
                let v = crate::option_value(&mut rest, arg, USAGE)?;
                o.runs = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| crate::usage_error("--runs takes a number from 1", USAGE))?;
            }
            "--size-mb" => {
                let v = crate::option_value(&mut rest, arg, USAGE)?;
                o.size_mb = v.parse().ok().filter(|&n| n >= 16).ok_or_else(|| {
                    crate::usage_error("--size-mb takes a number of MiB from 16", USAGE)
                })?;
            }
            "--only" => {
                let v = crate::option_value(&mut rest, arg, USAGE)?;
                let mut only = Vec::new();
                for name in v.split(',').map(str::trim) {
                    let Some(&s) = SECTIONS.iter().find(|&&s| s == name) else {
                        return Err(crate::usage_error(
                            &format!("--only: unknown section {name:?}"),
                            USAGE,
                        ));
                    };
                    if !only.contains(&s) {
                        only.push(s);
                    }
                }
                o.only = only;
            }
            "--bin-dir" => {
                o.bin_dir = Some(crate::option_value(&mut rest, arg, USAGE)?.into());
            }
            "--" => {}
            _ => {
                return Err(crate::usage_error(
                    &format!("unknown argument {arg:?}"),
                    USAGE,
                ))
            }
        }
    }
    Ok(o)
}

/// One node of the pair: its cluster and its name (`--name`).
struct Node {
    cluster: DebianCluster,
    name: &'static str,
}

impl Node {
    fn cluster_arg(&self) -> String {
        format!("{}/{}", self.cluster.major(), self.cluster.name())
    }

    fn app_conn(&self) -> String {
        format!(
            "postgresql://{APP}:{APP_PASSWORD}@127.0.0.1:{}/{APP}",
            self.cluster.port()
        )
    }

    fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// `psql -XAtq -c SQL` as `postgres` over the unix socket: its output.
    fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = as_postgres(&pg_bin("psql"))
            .args(["-h", "/var/run/postgresql", "-p", &self.port().to_string()])
            .args(["-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("cannot run psql")?;
        ensure!(
            out.status.success(),
            "psql on port {} failed: {sql}: {}",
            self.port(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `pg_ctlcluster MAJOR NAME ARGS...`.
    fn ctl(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("pg_ctlcluster")
            .arg(self.cluster.major().to_string())
            .arg(self.cluster.name())
            .args(args)
            .output()
            .context("cannot run pg_ctlcluster")?;
        ensure!(
            out.status.success(),
            "pg_ctlcluster {} {args:?} failed: {}",
            self.cluster.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

fn pg_bin(name: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/postgresql/{MAJOR}/bin/{name}"))
}

/// `program` run as the `postgres` user (PostgreSQL refuses root, and
/// Debian's clusters admit `postgres` by peer authentication).
fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(program);
    // runuser keeps the working directory: root's may be unreadable.
    cmd.current_dir("/");
    cmd
}

/// Whether a process named `pg_basebackup` runs (not a zombie) on this
/// machine.
fn basebackup_running() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
                // `PID (COMM) STATE ...`: a zombie (`Z`) does not count
                // (PID 1 here reaps only every few seconds).
                stat.split_once(" (").is_some_and(|(_, rest)| {
                    rest.rsplit_once(") ").is_some_and(|(comm, tail)| {
                        comm == "pg_basebackup" && !tail.starts_with('Z')
                    })
                })
            })
    })
}

fn progress(line: &str) {
    eprintln!("bench failover: {line}");
}

/// The `knocker` binary the bench runs.
struct Knocker(PathBuf);

impl Knocker {
    /// Runs `knocker ARGS`, timed; fails with its output unless it exits 0.
    fn run(&self, args: &[&str]) -> Result<(Duration, String)> {
        let started = Instant::now();
        let out: Output = Command::new(&self.0)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.0.display()))?;
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "knocker {} failed ({}):\n{stdout}{}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((took, stdout))
    }

    /// [`Knocker::run`], also timing the `pg_basebackup` it runs: from
    /// the first to the last moment a process of that name is seen (polled
    /// every 5 ms; the bench runs no other pg_basebackup meanwhile).
    fn run_timing_basebackup(&self, args: &[&str]) -> Result<(Duration, Duration)> {
        let started = Instant::now();
        let child = Command::new(&self.0)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.0.display()))?;
        let waiter = std::thread::spawn(move || child.wait_with_output());
        let (mut first, mut last) = (None, None);
        while !waiter.is_finished() {
            if basebackup_running() {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = waiter
            .join()
            .map_err(|_| anyhow::anyhow!("waiting for knocker panicked"))??;
        let took = started.elapsed();
        ensure!(
            out.status.success(),
            "knocker {} failed ({}):\n{}{}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let copy = match (first, last) {
            (Some(f), Some(l)) => l - f,
            _ => anyhow::bail!("knocker {args:?} ran no pg_basebackup that the bench saw"),
        };
        Ok((took, copy))
    }

    /// `knocker replica ARGS --cluster --conn` on `node`.
    fn replica(&self, node: &Node, args: &[&str]) -> Result<(Duration, String)> {
        let (cluster, conn) = (node.cluster_arg(), node.app_conn());
        let mut all = vec!["replica"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--cluster", &cluster, "--conn", &conn]);
        self.run(&all)
    }

    /// `knocker failover ARGS --cluster` on `node`.
    fn failover(&self, node: &Node, args: &[&str]) -> Result<(Duration, String)> {
        let cluster = node.cluster_arg();
        let mut all = vec!["failover"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--cluster", &cluster]);
        self.run(&all)
    }
}

/// Total size of the files under `dir` (symbolic links not followed).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

const MIB: f64 = 1024.0 * 1024.0;

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// SIGKILLs the postmaster of `node` and its whole tree, and waits until
/// it is gone.
fn kill_tree(node: &Node) -> Result<()> {
    pg_harness::pgaf::kill_postmaster_tree(&node.cluster.data_dir(), Duration::from_secs(20))?;
    Ok(())
}

/// What one measured section found: rows of its table and verdicts.
#[derive(Default)]
struct Report {
    text: String,
    verdicts: Vec<(String, bool, String)>,
}

impl Report {
    fn verdict(&mut self, target: &str, met: bool, figures: String) {
        progress(&format!(
            "{target}: {} ({figures})",
            if met { "met" } else { "NOT met" }
        ));
        self.verdicts.push((target.to_string(), met, figures));
    }
}

/// The writer's connection parameters: the string `--print-url` printed
/// on the primary, with this machine's addresses (both nodes at 127.0.0.1,
/// their own ports, `first` first) and the application's role (the pair
/// has no exposedb role).
fn web_params(web_url: &str, first: &Node, second: &Node) -> Result<pgctl::connect::ConnectParams> {
    let mut info = ConnInfo::parse(web_url).context("parsing --print-url's string")?;
    info.set(Keyword::Host, "127.0.0.1,127.0.0.1");
    info.set(Keyword::Port, format!("{},{}", first.port(), second.port()));
    info.set(Keyword::User, APP);
    info.set(Keyword::Password, APP_PASSWORD);
    Ok(pgctl::conninfo::resolve_from_process_env(&info)
        .context("resolving the web nodes' string")?
        .params)
}

/// Starts the writer on an emptied counter table (through `primary`) and
/// waits for its first acknowledged writes.
fn start_writer(primary: &Node, params: pgctl::connect::ConnectParams) -> Result<Writer> {
    primary.psql(APP, "TRUNCATE counter")?;
    let writer = Writer::start(params)?;
    ensure!(
        writer.wait_for(WRITES_AROUND),
        "the writer got no acknowledged writes through the multi-host string"
    );
    Ok(writer)
}

/// Values acknowledged to the writer but missing on `primary`.
fn lost_on(primary: &Node, acks: &[(i32, Instant)]) -> Result<usize> {
    let stored: HashSet<i32> = primary
        .psql(APP, "SELECT v FROM counter")?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    Ok(acks.iter().filter(|(v, _)| !stored.contains(v)).count())
}

/// Runs the benchmark and prints its report on stdout (progress on stderr).
pub fn run(args: &[&str]) -> Result<()> {
    let o = parse(args)?;
    if MANUAL.iter().any(|s| o.measures(s)) {
        run_manual(&o, args)?;
    }
    if o.measures("autofailover") {
        crate::bench_autofailover::run(&[])?;
    }
    Ok(())
}

/// The manual half: knocker replica and knocker failover against
/// pg_basebackup and pg_rewind run by hand.
fn run_manual(o: &Options, args: &[&str]) -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "bench failover needs root (pg_createcluster, pg_ctlcluster, runuser)"
    );
    crate::provision::provision_all()?;
    for tool in ["pg_basebackup", "pg_rewind", "pgbench", "psql"] {
        ensure!(
            pg_bin(tool).is_file(),
            "{} is missing (cargo xtask pg installs Debian's postgresql-{MAJOR})",
            pg_bin(tool).display()
        );
    }
    let knocker = Knocker(match &o.bin_dir {
        Some(dir) => dir.join("knocker"),
        None => {
            progress("cargo build -p knocker-cli -p installer-cli");
            crate::build_binaries(&["--quiet"])?.join("knocker")
        }
    });
    ensure!(knocker.0.is_file(), "{} is missing", knocker.0.display());

    let started = Instant::now();
    let load_start = crate::bench::loadavg();
    let when = pgctl::os::utc_timestamp();
    progress(&format!("load average at start: {load_start}"));
    let mut report = Report::default();
    let result = bench(o, &knocker, &mut report);
    let load_end = crate::bench::loadavg();
    progress(&format!("load average at end: {load_end}"));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## cargo xtask bench failover{} ({when}, load average {load_start} at start, \
         {load_end} at end, {:.0} s)\n",
        args.iter().map(|a| format!(" {a}")).collect::<String>(),
        started.elapsed().as_secs_f64()
    );
    out.push_str(&report.text);
    if !report.verdicts.is_empty() {
        out.push_str("\n| target | verdict | figures |\n|---|---|---|\n");
        for (target, met, figures) in &report.verdicts {
            let _ = writeln!(
                out,
                "| {target} | {} | {figures} |",
                if *met { "met" } else { "**not met**" }
            );
        }
    }
    print!("{out}");
    result
}

/// The whole run on one pair (dropped, with its leftovers, at the end).
fn bench(o: &Options, knocker: &Knocker, report: &mut Report) -> Result<()> {
    progress("creating node A (pg_createcluster)");
    let a = Node {
        cluster: DebianCluster::create_blocking(MAJOR),
        name: "node_a",
    };
    a.psql(
        "postgres",
        &format!("CREATE ROLE {APP} LOGIN PASSWORD '{APP_PASSWORD}'"),
    )?;
    a.psql("postgres", &format!("CREATE DATABASE {APP} OWNER {APP}"))?;
    a.psql(
        APP,
        &format!("CREATE TABLE counter (v int PRIMARY KEY); ALTER TABLE counter OWNER TO {APP}"),
    )?;
    let scale = o.size_mb.div_ceil(MIB_PER_SCALE).max(1);
    progress(&format!(
        "pgbench -i -s {scale} on node A (about {} MiB)",
        o.size_mb
    ));
    let t = Instant::now();
    let out = as_postgres(&pg_bin("pgbench"))
        .args(["-i", "-q", "-I", "dtGvp", "-s", &scale.to_string()])
        .args([
            "-h",
            "/var/run/postgresql",
            "-p",
            &a.port().to_string(),
            APP,
        ])
        .output()
        .context("cannot run pgbench")?;
    ensure!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db_bytes: u64 = a
        .psql(APP, &format!("SELECT pg_database_size('{APP}')"))?
        .parse()
        .context("pg_database_size")?;
    progress(&format!(
        "database {:.0} MiB loaded in {}",
        db_bytes as f64 / MIB,
        secs(t.elapsed())
    ));
    let _ = writeln!(
        report.text,
        "PostgreSQL {MAJOR} (Debian), two clusters on this machine; database `{APP}`: {:.0} MiB \
         (pgbench -i -s {scale}); knocker {}\n",
        db_bytes as f64 / MIB,
        knocker.0.display()
    );

    progress("knocker replica --init, --allow node_b on node A");
    let (_, out) = knocker.replica(&a, &["--init", "--yes", "--name", a.name])?;
    let replication_url = with_host_port(
        &uri_in(&out).context("replica --init printed no replication string")?,
        a.port(),
    )?;
    knocker.replica(&a, &["--allow", "127.0.0.1/32", "--name", "node_b"])?;

    // 2. clone
    let mut b = None;
    let mut clone_rows = Vec::new();
    let clone_runs = if o.measures("clone") { o.runs } else { 1 };
    for run in 0..clone_runs {
        drop(b.take());
        progress("creating node B (pg_createcluster)");
        let node = Node {
            cluster: DebianCluster::create_blocking(MAJOR),
            name: "node_b",
        };
        // Each run in the other order than the last, so that neither side
        // always meets the page cache and writeback the other left.
        let hand_first = run % 2 == 0;
        let mut hand = None;
        if o.measures("clone") && hand_first {
            hand = Some(hand_basebackup(&a, &node, &replication_url, run)?);
        }
        progress(&format!("run {}: knocker replica --clone-from", run + 1));
        settle_primary(&a)?;
        let (took, copy) = knocker.run_timing_basebackup(&[
            "replica",
            "--clone-from",
            &replication_url,
            "--name",
            node.name,
            "--cluster",
            &node.cluster_arg(),
        ])?;
        let bytes = dir_size(&node.cluster.data_dir());
        progress(&format!(
            "run {}: knocker {} for {:.0} MiB",
            run + 1,
            secs(took),
            bytes as f64 / MIB
        ));
        if o.measures("clone") && !hand_first {
            hand = Some(hand_basebackup(&a, &node, &replication_url, run)?);
        }
        if let Some(hand) = hand {
            clone_rows.push((hand, (took, copy, bytes), hand_first));
        }
        b = Some(node);
    }
    let b = b.context("no node B")?;
    if !clone_rows.is_empty() {
        report.text.push_str(
            "### clone\n\n| run | first | pg_basebackup by hand | MiB | MiB/s | knocker replica \
             --clone-from (whole command) | MiB | MiB/s | its pg_basebackup | MiB/s | whole command / \
             by hand | its copy / by hand |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let (mut whole_ratios, mut copy_ratios) = (Vec::new(), Vec::new());
        let (mut whole_figures, mut copy_figures) = (Vec::new(), Vec::new());
        for (i, ((ht, hb), (kt, kc, kb), hand_first)) in clone_rows.iter().enumerate() {
            let mib = |b: u64| b as f64 / MIB;
            let hand_rate = mib(*hb) / ht.as_secs_f64();
            let knocker_rate = mib(*kb) / kt.as_secs_f64();
            let copy_rate = mib(*kb) / kc.as_secs_f64();
            let (whole, copy) = (knocker_rate / hand_rate, copy_rate / hand_rate);
            whole_ratios.push(whole);
            copy_ratios.push(copy);
            whole_figures.push(format!(
                "{knocker_rate:.0} vs {hand_rate:.0} MiB/s = {:.0}%",
                whole * 100.0
            ));
            copy_figures.push(format!(
                "{copy_rate:.0} vs {hand_rate:.0} MiB/s = {:.0}%",
                copy * 100.0
            ));
            let _ = writeln!(
                report.text,
                "| {} | {} | {} | {:.0} | {hand_rate:.0} | {} | {:.0} | {knocker_rate:.0} | {} | \
                 {copy_rate:.0} | {:.0}% | {:.0}% |",
                i + 1,
                if *hand_first { "by hand" } else { "knocker" },
                secs(*ht),
                mib(*hb),
                secs(*kt),
                mib(*kb),
                secs(*kc),
                whole * 100.0,
                copy * 100.0
            );
        }
        report.text.push('\n');
        // The median run: one run on this shared machine moves by 2x.
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (whole, copy) = (median(whole_ratios), median(copy_ratios));
        report.verdict(
            "clone: the copy's throughput (knocker's pg_basebackup) >= 80% of pg_basebackup by hand (median run)",
            copy >= CLONE_MIN_RATIO,
            format!("median {:.0}%; {}", copy * 100.0, copy_figures.join("; ")),
        );
        report.verdict(
            "clone: the whole command (checks, stop, copy, start, streaming) >= 80% of pg_basebackup by hand (median run)",
            whole >= CLONE_MIN_RATIO,
            format!("median {:.0}%; {}", whole * 100.0, whole_figures.join("; ")),
        );
    }

    progress("knocker replica --print-url on node A");
    let (_, out) = knocker.replica(&a, &["--print-url"])?;
    let web_url = uri_in(&out).context("replica --print-url printed no string")?;
    let params = web_params(&web_url, &a, &b)?;

    // 3. switchover, back and forth: `nodes[0]` is the primary.
    let mut nodes = [a, b];
    if o.measures("switchover") {
        report.text.push_str(
            "### switchover (writer through the multi-host string)\n\n| run | from -> to | \
             knocker failover --switchover | writes refused (knocker's report) | longest gap \
             between acknowledged writes | acknowledged | lost | not acknowledged |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|\n",
        );
        let (mut worst_gap, mut lost_total) = (Duration::ZERO, 0);
        for run in 0..o.runs {
            let [p, s] = &nodes;
            let writer = start_writer(p, params.clone())?;
            progress(&format!(
                "run {}: knocker failover --switchover {} -> {}",
                run + 1,
                p.name,
                s.name
            ));
            let peer = format!("127.0.0.1:{}", s.port());
            let (took, out) = knocker.failover(
                p,
                &["--switchover", "--peer", &peer, "--name", p.name, "--yes"],
            )?;
            ensure!(
                writer.wait_for(WRITES_AROUND),
                "the writer did not go on after the switchover"
            );
            let (acks, failed) = writer.finish();
            let lost = lost_on(s, &acks)?;
            let gap = longest_gap(&acks);
            let refused = out
                .lines()
                .find_map(|l| l.strip_prefix("writes were refused for "))
                .and_then(|l| l.split_whitespace().next())
                .map_or("?".to_string(), |ms| format!("{ms} ms"));
            let _ = writeln!(
                report.text,
                "| {} | {} -> {} | {} | {refused} | {} | {} | {lost} | {failed} |",
                run + 1,
                p.name,
                s.name,
                secs(took),
                secs(gap),
                acks.len()
            );
            progress(&format!(
                "run {}: {}, longest gap {}, lost {lost}",
                run + 1,
                secs(took),
                secs(gap)
            ));
            worst_gap = worst_gap.max(gap);
            lost_total += lost;
            nodes.swap(0, 1);
        }
        report.text.push('\n');
        report.verdict(
            "switchover: acknowledged commits lost = 0",
            lost_total == 0,
            format!("{lost_total} lost in {} switchovers", o.runs),
        );
        report.verdict(
            "switchover: writes unavailable <= 3 s",
            worst_gap <= SWITCHOVER_MAX_GAP,
            format!("longest gap {}", secs(worst_gap)),
        );
    }

    if !o.measures("promote") && !o.measures("rejoin") {
        return Ok(());
    }

    // 4. promote after SIGKILL, asynchronous standby.
    let mut promote_rows = Vec::new();
    let [p, s] = &nodes;
    let row = promote(knocker, p, s, &params, "async")?;
    promote_rows.push(row);

    // 5. rejoin of the killed old primary, with a rewind.
    rejoin(o, knocker, p, s, &replication_url, report)?;

    // 6. promote after SIGKILL, synchronous standby (the rejoined node).
    if o.measures("promote") {
        progress(&format!(
            "knocker replica --allow --sync for {} on {}",
            p.name, s.name
        ));
        knocker.replica(s, &["--allow", "127.0.0.1/32", "--name", p.name, "--sync"])?;
        let row = promote(knocker, s, p, &params, "sync")?;
        promote_rows.push(row);
        report.text.push_str(
            "### promote after SIGKILL of the primary's process tree (writer through the \
             multi-host string)\n\n| standby | knocker failover --promote | command start -> \
             first acknowledged write | acknowledged | lost | not acknowledged |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for r in &promote_rows {
            let _ = writeln!(
                report.text,
                "| {} | {} | {} | {} | {} | {} |",
                r.mode,
                secs(r.command),
                secs(r.first_write),
                r.acknowledged,
                r.lost,
                r.failed
            );
        }
        report.text.push('\n');
        let worst = promote_rows
            .iter()
            .map(|r| r.first_write)
            .max()
            .unwrap_or_default();
        report.verdict(
            "promote: command start to first write <= 3 s",
            worst <= PROMOTE_MAX,
            promote_rows
                .iter()
                .map(|r| format!("{} {}", r.mode, secs(r.first_write)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let sync_lost = promote_rows[1].lost;
        report.verdict(
            "promote: lost = 0 with --sync",
            sync_lost == 0,
            format!(
                "sync {sync_lost} lost; async {} lost (reported, no target)",
                promote_rows[0].lost
            ),
        );
    }
    Ok(())
}

/// Writes every dirty page out (sync(2)) before a timed step, so that it
/// does not pay for the writeback of what the untimed steps before it
/// wrote (a 1 GB `cp -a`, a dropped cluster).
fn settle() {
    nix::unistd::sync();
}

/// [`settle`], after a CHECKPOINT on `primary`: a clone's own
/// `--checkpoint=fast` then costs each side alike, not whatever autovacuum
/// dirtied on the freshly loaded tables since the last one (a knocker run
/// that came first took 9.2 s, against 3.7 and 6.6 s after a hand run).
fn settle_primary(primary: &Node) -> Result<()> {
    primary.psql("postgres", "CHECKPOINT")?;
    settle();
    Ok(())
}

/// `pg_basebackup -X stream -c fast` by hand with the replication string
/// into a directory beside `node`'s data directory (named so that
/// dropping the node removes it too; removed at once): time and bytes.
fn hand_basebackup(
    primary: &Node,
    node: &Node,
    replication_url: &str,
    run: usize,
) -> Result<(Duration, u64)> {
    let target = node
        .cluster
        .data_dir()
        .with_file_name(format!("{}.bench-basebackup", node.cluster.name()));
    progress(&format!("run {}: pg_basebackup by hand", run + 1));
    settle_primary(primary)?;
    let t = Instant::now();
    let out = as_postgres(&pg_bin("pg_basebackup"))
        .args(["-d", replication_url, "-X", "stream", "-c", "fast", "-D"])
        .arg(&target)
        .output()
        .context("cannot run pg_basebackup")?;
    let took = t.elapsed();
    ensure!(
        out.status.success(),
        "pg_basebackup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = dir_size(&target);
    std::fs::remove_dir_all(&target)?;
    Ok((took, bytes))
}

/// One promotion's figures.
struct PromoteRow {
    mode: &'static str,
    command: Duration,
    first_write: Duration,
    acknowledged: usize,
    lost: usize,
    failed: u32,
}

/// The writer runs through `primary`; its process tree is SIGKILLed;
/// `failover --promote` on `standby`.
fn promote(
    knocker: &Knocker,
    primary: &Node,
    standby: &Node,
    params: &pgctl::connect::ConnectParams,
    mode: &'static str,
) -> Result<PromoteRow> {
    let writer = start_writer(primary, params.clone())?;
    progress(&format!(
        "promote ({mode}): SIGKILL of {}'s process tree",
        primary.name
    ));
    kill_tree(primary)?;
    progress(&format!(
        "promote ({mode}): knocker failover --promote on {}",
        standby.name
    ));
    let t0 = Instant::now();
    let (command, _) = knocker.failover(standby, &["--promote", "--yes"])?;
    ensure!(
        writer.wait_for(WRITES_AROUND),
        "the writer did not go on after the promotion"
    );
    let (acks, failed) = writer.finish();
    let first_write = acks
        .iter()
        .find(|(_, at)| *at > t0)
        .map(|(_, at)| *at - t0)
        .context("no write acknowledged after the promotion")?;
    let lost = lost_on(standby, &acks)?;
    progress(&format!(
        "promote ({mode}): command {}, first write after {}, lost {lost}",
        secs(command),
        secs(first_write)
    ));
    Ok(PromoteRow {
        mode,
        command,
        first_write,
        acknowledged: acks.len(),
        lost,
        failed,
    })
}

/// The old primary `old` (killed) diverges, dies, is fenced, and rejoins
/// `new` (see the module's step 5); `pg_rewind` by hand on a copy of the
/// same situation first when the rejoin section is measured.
fn rejoin(
    o: &Options,
    knocker: &Knocker,
    old: &Node,
    new: &Node,
    replication_url: &str,
    report: &mut Report,
) -> Result<()> {
    progress(&format!(
        "rejoin: {} started alone, takes writes, dies",
        old.name
    ));
    // wal_keep_size for this run alone: pg_rewind reads this node's WAL back
    // from the divergence to the checkpoint before it, which the
    // end-of-recovery and shutdown checkpoints would otherwise recycle
    // ("could not find previous WAL record").
    old.ctl(&["start", "--", "-o", "-c wal_keep_size=4096"])?;
    let accounts: i64 = old
        .psql(APP, "SELECT count(*) FROM pgbench_accounts")?
        .parse()
        .context("counting pgbench_accounts")?;
    old.psql(
        APP,
        &format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {}",
            accounts / 10
        ),
    )?;
    old.ctl(&["stop", "-m", "fast"])?;
    knocker.failover(old, &["--fence", "--yes"])?;
    knocker.replica(new, &["--init", "--yes"])?;
    knocker.replica(new, &["--allow", "127.0.0.1/32", "--name", old.name])?;
    let to_new = with_host_port(replication_url, new.port())?;

    let data = old.cluster.data_dir();
    let hand = if o.measures("rejoin") {
        let name = old.cluster.name();
        let copy = data.with_file_name(format!("{name}.bench-copy"));
        let rewound = data.with_file_name(format!("{name}.bench-rewound"));
        progress("rejoin: copying the old primary's data directory (cp -a)");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&data)
            .arg(&copy)
            .status()?;
        ensure!(status.success(), "cp -a {} failed", data.display());
        let config = old.cluster.conf_file();
        // The connection knocker's pg_rewind makes (the one an operator on
        // the old primary's host has): TCP, the replication string's
        // sslmode and password, the rewind role `replica --init` made.
        let mut source = ConnInfo::parse(&to_new).context("parsing the replication string")?;
        let password = source
            .remove(Keyword::Password)
            .context("the replication string has no password")?;
        let user = source.get(Keyword::User).unwrap_or_default().to_string();
        let rewind_role = format!(
            "{}_rewind",
            user.strip_suffix("_replication").unwrap_or(&user)
        );
        source.set(Keyword::User, rewind_role);
        source.set(Keyword::Dbname, "postgres");
        source.remove(Keyword::Replication);
        let source = source.to_keyword_value();
        progress("rejoin: pg_rewind by hand");
        settle();
        let t = Instant::now();
        let out = as_postgres(&pg_bin("pg_rewind"))
            .arg("-D")
            .arg(&data)
            .arg("--source-server")
            .arg(&source)
            .arg("--config-file")
            .arg(&config)
            .env("PGPASSWORD", password)
            .output()
            .context("cannot run pg_rewind")?;
        let took = t.elapsed();
        ensure!(
            out.status.success(),
            "pg_rewind by hand failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        progress(&format!("rejoin: pg_rewind by hand {}", secs(took)));
        std::fs::rename(&data, &rewound)?;
        std::fs::rename(&copy, &data)?;
        std::fs::remove_dir_all(&rewound)?;
        Some(took)
    } else {
        None
    };
    progress(&format!(
        "rejoin: knocker failover --rejoin on {}",
        old.name
    ));
    settle();
    let (took, out) = knocker.failover(old, &["--rejoin", &to_new, "--name", old.name, "--yes"])?;
    progress(&format!("rejoin: knocker {}", secs(took)));

    if let Some(hand) = hand {
        let ratio = took.as_secs_f64() / hand.as_secs_f64();
        let discarded = out
            .lines()
            .find(|l| l.contains("discard"))
            .map_or(String::new(), |l| l.trim().to_string());
        let _ = writeln!(
            report.text,
            "### rejoin with rewind (old primary diverged by an UPDATE of {} rows, then stopped)\n\n\
             | pg_rewind by hand | knocker failover --rejoin (until streaming) | knocker / by hand |\n\
             |---:|---:|---:|\n| {} | {} | {ratio:.2}x |\n",
            accounts / 10,
            secs(hand),
            secs(took)
        );
        if !discarded.is_empty() {
            let _ = writeln!(report.text, "knocker: {discarded}\n");
        }
        report.verdict(
            "rejoin <= 2x pg_rewind by hand",
            ratio <= REJOIN_MAX_RATIO,
            format!("{} vs {} = {ratio:.2}x", secs(took), secs(hand)),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_the_defaults_and_each_option() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.runs, o.size_mb, o.only.len()), (3, 1024, 5));
        let o = parse(&["--runs", "3", "--size-mb", "64", "--only", "clone,rejoin"]).unwrap();
        assert_eq!((o.runs, o.size_mb), (3, 64));
        assert_eq!(o.only, ["clone", "rejoin"]);
    }

    #[test]
    fn parse_refuses_bad_arguments_as_usage_errors() {
        for bad in [
            &["--runs", "0"][..],
            &["--runs"],
            &["--size-mb", "8"],
            &["--only", "clone,nope"],
            &["--frobnicate"],
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.is::<crate::Usage>(), "{bad:?}: {e}");
        }
    }
}
