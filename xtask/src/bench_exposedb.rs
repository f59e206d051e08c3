//! `cargo xtask bench exposedb [--runs N] [--ansible-runs N] [--sizes 1000,10000]
//! [--major 17] [--skip-ansible] [--knocker PATH]`: whole-process time of `knocker exposedb
//! --add` and `--list` next to psql and Ansible's `postgresql_pg_hba`.
//!
//! For each size it starts a throwaway server (pg-harness, PostgreSQL 17 by
//! default) whose `hba_file` is a generated file of that many rules on a real
//! disk (`/var/tmp`: the harness keeps data directories on tmpfs, where fsync
//! is free), ending in catch-all rejects, so the managed block is placed
//! before them. A knocknoc.conf names an application database and role;
//! `knocker exposedb --init --yes --no-restart` runs once (untimed). Then,
//! interleaved (one run of each series in turn, after warm-up rounds), each
//! command started on a settled server (after a reload, untimed, until a new
//! session shows the new `pg_conf_load_time()`):
//!
//! * `psql -c 'select 1'` and `psql -c 'select pg_reload_conf()'` (PostgreSQL
//!   15's psql: the npm builds of 16-18 ship none), over the unix socket;
//! * the installer's server check of the new file (`pg_hba_file_rules`,
//!   the query `pgctl::hba_install` sends before reloading) through psql:
//!   the server's own share of an `--add`;
//! * `knocker exposedb --list` and `knocker exposedb --add CIDR` (release
//!   build) with `--admin-conn` naming the same unix socket; each add is a
//!   new /32 and is removed again, untimed, so the file keeps its size;
//! * `ansible localhost -c local -m community.postgresql.postgresql_pg_hba`
//!   adding the same kind of rule to a copy of the same file (restored,
//!   untimed, before each run), alone and followed by a psql reload (the
//!   module does not reload the server; an operator has to).
//!
//! Ansible comes from PyPI (`ansible`, which bundles community.postgresql)
//! into a venv under `/var/cache/knocker-bench` (or `$KNOCKER_BENCH_CACHE`),
//! made on first use and reused. Not part of `cargo xtask test`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pg_harness::{Cluster, ClusterOptions};

/// The `ansible` release installed into the venv (bundles community.postgresql).
const ANSIBLE_VERSION: &str = "12.3.0";

/// The application's database and role, as in knocknoc.conf.
const APP_DB: &str = "knocknoc";
/// The remote role `--init` creates (`<application role>_remote`).
const REMOTE_ROLE: &str = "knocknoc_remote";

/// Untimed rounds before measuring.
const WARMUP: usize = 2;

struct Options {
    runs: usize,
    ansible_runs: usize,
    ansible_budget: Duration,
    sizes: Vec<usize>,
    major: u32,
    skip_ansible: bool,
    knocker: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo xtask bench exposedb [--runs N] [--ansible-runs N] \
[--ansible-budget SECS] [--sizes 1000,10000] [--major 15|17] [--skip-ansible] \
[--knocker PATH (instead of building the release binary)]";

/// Ansible runs are never cut below this many by the time budget.
const ANSIBLE_MIN_RUNS: usize = 5;

fn parse(args: &[&str]) -> Result<Options> {
    let mut o = Options {
        runs: 20,
        ansible_runs: 0,
        ansible_budget: Duration::from_secs(75),
        sizes: vec![1000, 10000],
        major: 17,
        skip_ansible: false,
        knocker: None,
    };
    let mut ansible_runs = None;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut value = || {
            it.next()
                .copied()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a {
            "--runs" => o.runs = value()?.parse().context("--runs")?,
            "--ansible-runs" => ansible_runs = Some(value()?.parse().context("--ansible-runs")?),
            "--sizes" => {
                o.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--sizes takes numbers separated by commas")?;
            }
            "--ansible-budget" => {
                o.ansible_budget =
                    Duration::from_secs(value()?.parse().context("--ansible-budget")?);
            }
            "--major" => o.major = value()?.parse().context("--major")?,
            "--skip-ansible" => o.skip_ansible = true,
            "--knocker" => o.knocker = Some(PathBuf::from(value()?)),
            "--" => {}
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    ensure!(o.runs > 0 && !o.sizes.is_empty(), "{USAGE}");
    o.ansible_runs = ansible_runs.unwrap_or(o.runs).clamp(1, o.runs);
    Ok(o)
}

/// Runs the benchmark and prints the report.
pub fn run(args: &[&str]) -> Result<()> {
    let o = parse(args)?;
    crate::provision::provision_all()?;
    let psql = pg_harness::bin_dir(15).join("psql");
    ensure!(
        psql.exists(),
        "{} is missing (cargo xtask pg)",
        psql.display()
    );
    let knocker = match &o.knocker {
        Some(path) => path.clone(),
        None => crate::bench::build_knocker("exposedb")?,
    };
    let ansible = if o.skip_ansible {
        Err("skipped (--skip-ansible)".to_string())
    } else {
        Ansible::ensure().map_err(|e| {
            eprintln!("bench exposedb: WARNING: no Ansible series: {e:#}");
            format!("not measured: {e:#}")
        })
    };

    let started = Instant::now();
    let load_start = crate::bench::loadavg();
    let mut report = String::new();
    let mut sections = Vec::new();
    for &size in &o.sizes {
        eprintln!(
            "bench exposedb: {size} rules: setting up PostgreSQL {}",
            o.major
        );
        let results = measure(&o, size, &knocker, &psql, ansible.as_ref().ok())?;
        sections.push((size, results));
    }
    let load_end = crate::bench::loadavg();

    let _ = writeln!(
        report,
        "## `knocker exposedb` vs psql vs Ansible postgresql_pg_hba\n"
    );
    let _ = writeln!(
        report,
        "PostgreSQL {} (pg-harness), hba_file on /var/tmp; psql {} and knocker over the unix socket; \
         knocker {}; {}.",
        o.major,
        psql.display(),
        knocker.display(),
        match &ansible {
            Ok(a) => format!(
                "ansible {ANSIBLE_VERSION} (ansible-core {}, community.postgresql {}; module defaults, \
                 so it sorts the file)",
                a.core_version, a.collection_version
            ),
            Err(e) => format!("Ansible {e}"),
        }
    );
    let _ = writeln!(
        report,
        "Median of {} runs per series after {WARMUP} warm-up rounds, interleaved; p90 is nearest-rank.\n",
        o.runs
    );
    let _ = writeln!(
        report,
        "| rules | command | runs | median | p90 | ratio | target | met? |"
    );
    let _ = writeln!(report, "|---:|---|---:|---:|---:|---|---|---|");
    let mut all_met = true;
    for (size, r) in &mut sections {
        all_met &= table(&mut report, *size, r);
    }
    let _ = writeln!(report);
    for (size, r) in &sections {
        let _ = writeln!(
            report,
            "{size} rules: pg_hba.conf of {} lines, {:.0} kB after --init.",
            r.lines,
            r.bytes as f64 / 1000.0
        );
    }
    let _ = writeln!(
        report,
        "\nLoad average (1/5/15 min): start {load_start}, end {load_end}; measured in {:.0} s (after build and venv); all targets met: {}.",
        started.elapsed().as_secs_f64(),
        if all_met { "yes" } else { "NO" }
    );
    for (size, r) in &sections {
        if !r.ansible.is_empty() && r.ansible.len() < o.runs {
            let _ = writeln!(
                report,
                "Ansible ran {} times at {size} rules, not {}: each run takes seconds \
                 (--ansible-runs {}, --ansible-budget {} s, at least {ANSIBLE_MIN_RUNS}).",
                r.ansible.len(),
                o.runs,
                o.ansible_runs,
                o.ansible_budget.as_secs()
            );
        }
    }
    print!("{report}");
    let out_dir = crate::workspace_root().join("target/bench-exposedb");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("results.md"), &report)?;
    eprintln!(
        "bench exposedb: also written to {}",
        out_dir.join("results.md").display()
    );
    Ok(())
}

/// A pg_hba.conf of the harness's default lines plus `rules` generated
/// rules of varied shapes (all valid for PostgreSQL 15-18), a comment every
/// ten rules, and catch-all rejects at the end.
fn hba_text(rules: usize) -> String {
    let mut s = String::from(pg_harness::DEFAULT_HBA);
    s.push_str("# generated by cargo xtask bench exposedb\n");
    for n in 0..rules {
        if n % 10 == 0 {
            let _ = writeln!(s, "# team {}", n / 10);
        }
        let (a, b) = (n / 256 % 256, n % 256);
        // An IPv6 group holds 16 bits: past 65535 the count moves on to the
        // second group (2001:db9:...), so 100k rules stay valid addresses.
        let (hi, lo) = (0xdb8 + (n >> 16), n & 0xffff);
        let _ = match n % 5 {
            0 => writeln!(
                s,
                "host    app_{n}     user_{n}    10.{a}.{b}.0/24     scram-sha-256"
            ),
            1 => writeln!(
                s,
                "hostnossl  db_{n},reporting  +group_{n}  2001:{hi:x}:{lo:x}::/48  md5"
            ),
            2 => writeln!(s, "host    all   svc_{n}   198.18.{a}.{b}/32   reject"),
            3 => writeln!(
                s,
                "host  \"Db {n}\"  \"User {n}\"  172.16.{a}.{b}  255.255.255.255  scram-sha-256"
            ),
            _ => writeln!(s, "host    sameuser   all   100.64.{a}.{b}/32   password"),
        };
    }
    s.push_str("# nobody else\nhost    all   all   0.0.0.0/0   reject\nhost    all   all   ::/0   reject\n");
    s
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_dir(prefix: &str) -> Result<TempDir> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = PathBuf::from(format!("/var/tmp/{prefix}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(TempDir(dir))
}

/// The timings of one size.
#[derive(Default)]
struct Results {
    select1: Vec<Duration>,
    reload: Vec<Duration>,
    check: Vec<Duration>,
    list: Vec<Duration>,
    add: Vec<Duration>,
    ansible: Vec<Duration>,
    ansible_reload: Vec<Duration>,
    lines: usize,
    bytes: usize,
    ansible_error: Option<String>,
}

fn measure(
    o: &Options,
    size: usize,
    knocker: &Path,
    psql: &Path,
    ansible: Option<&Ansible>,
) -> Result<Results> {
    let dir = make_dir("knocker-bench-exposedb")?;
    let hba = dir.0.join("pg_hba.conf");
    std::fs::write(&hba, hba_text(size))?;
    std::fs::set_permissions(&hba, std::fs::Permissions::from_mode(0o644))?;
    let pg = Cluster::start_blocking(
        o.major,
        &ClusterOptions {
            settings: vec![("hba_file".into(), hba.to_string_lossy().into_owned())],
            ..ClusterOptions::default()
        },
    );
    pg_harness::block_on(async {
        pg.create_role(APP_DB, "app-secret").await;
        pg.create_database(APP_DB, APP_DB).await;
    });
    let conf = dir.0.join("knocknoc.conf");
    std::fs::write(
        &conf,
        format!(
            "Listen = 127.0.0.1:8756\nDatabaseURL = \"postgres://{APP_DB}:app-secret@127.0.0.1:{}/{APP_DB}\"\n",
            pg.port()
        ),
    )?;
    let psql_run = |sql: &str| -> Result<(Duration, String)> {
        let (t, out) = timed(&mut pg.psql_command(psql, sql))?;
        Ok((t, String::from_utf8_lossy(&out.stdout).trim().to_string()))
    };
    // The server accepts every generated line.
    let (_, check) = psql_run(
        "select count(*) || ' ' || count(*) filter (where error is not null) from pg_hba_file_rules",
    )?;
    let rows = size
        + pg_harness::DEFAULT_HBA
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count()
        + 2;
    ensure!(
        check == format!("{rows} 0"),
        "pg_hba_file_rules says {check:?} (rows, errors); expected {rows} 0"
    );

    let admin = format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.socket_dir().display(),
        pg.port()
    );
    let knocker_run = |args: &[&str]| -> Result<(Duration, Output)> {
        timed(
            Command::new(knocker)
                .args(["exposedb", "--config"])
                .arg(&conf)
                .args(["--admin-conn", &admin])
                .args(args),
        )
    };
    knocker_run(&[
        "--init",
        "--yes",
        "--no-restart",
        "--listen",
        "127.0.0.1",
        "--advertise",
        "127.0.0.1",
    ])?;
    let before = std::fs::read(&hba)?;
    let lines = before.iter().filter(|&&b| b == b'\n').count();

    // Ansible edits a copy of the same file, restored before each run.
    let ansible_dir = dir.0.join("ansible");
    std::fs::create_dir_all(&ansible_dir)?;
    let copy = ansible_dir.join("pg_hba.conf");

    let mut r = Results {
        lines,
        bytes: before.len(),
        ..Results::default()
    };
    // Every timed command starts on a settled server: after a reload, wait
    // (untimed) until a new session shows the new pg_conf_load_time(), i.e.
    // the postmaster has finished re-reading the files (at 10k rules that
    // takes long enough to delay the next connection otherwise).
    let mut load_time = psql_run("select pg_conf_load_time()")?.1;
    let mut settle = || -> Result<()> {
        for _ in 0..400 {
            let (_, now) = psql_run("select pg_conf_load_time()")?;
            if now != load_time {
                load_time = now;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("the server did not finish reloading")
    };
    let mut n = 0u32;
    let mut ansible_spent = Duration::ZERO;
    for i in 0..WARMUP + o.runs {
        let keep = i >= WARMUP;
        let push = |v: &mut Vec<Duration>, t: Duration| {
            if keep {
                v.push(t);
            }
        };
        let (t, out) = psql_run("select 1")?;
        ensure!(out == "1", "psql select 1 printed {out:?}");
        push(&mut r.select1, t);
        let (t, out) = psql_run("select pg_reload_conf()")?;
        ensure!(out == "t", "psql pg_reload_conf printed {out:?}");
        push(&mut r.reload, t);
        settle()?;
        let check = format!(
            "select pg_backend_pid(); {}",
            pgctl::hba_install::file_problems_sql(o.major)
        );
        let (t, out) = psql_run(&check)?;
        ensure!(
            out.parse::<u32>().is_ok(),
            "the server check found errors: {out:?}"
        );
        push(&mut r.check, t);
        // Its server process frees a whole parsed file as it exits, after
        // psql has its answer: wait (untimed) until it is gone, so the next
        // command does not share the CPU with it.
        wait_gone(&out)?;

        let (t, out) = knocker_run(&["--list"])?;
        ensure!(
            out.stdout.is_empty(),
            "knocker --list printed {:?} (expected no CIDR)",
            String::from_utf8_lossy(&out.stdout)
        );
        push(&mut r.list, t);

        n += 1;
        let cidr = bench_cidr(n);
        let (t, out) = knocker_run(&["--add", &cidr])?;
        ensure!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("Allowed {cidr}")),
            "knocker --add {cidr} printed {:?} (stderr {:?})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        push(&mut r.add, t);
        settle()?;
        knocker_run(&["--remove", &cidr])?;
        settle()?;

        let ansible_due = i < WARMUP + o.ansible_runs
            && (r.ansible.len() < ANSIBLE_MIN_RUNS || ansible_spent < o.ansible_budget);
        if let (Some(a), true) = (ansible, ansible_due) {
            std::fs::write(&copy, &before)?;
            let (t, _) = a.add_rule(&copy, &cidr, &ansible_dir)?;
            let edited = std::fs::read_to_string(&copy)?;
            ensure!(
                edited.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() == Some(&"host")
                        && f.contains(&cidr.as_str())
                        && f.contains(&REMOTE_ROLE)
                }),
                "Ansible reported success but {} has no rule for {cidr}",
                copy.display()
            );
            push(&mut r.ansible, t);
            if keep {
                ansible_spent += t;
            }
            let (reload, out) = psql_run("select pg_reload_conf()")?;
            ensure!(out == "t", "psql pg_reload_conf printed {out:?}");
            push(&mut r.ansible_reload, t + reload);
            settle()?;
        }
    }
    let after = std::fs::read(&hba)?;
    ensure!(
        after.iter().filter(|&&b| b == b'\n').count() == lines,
        "pg_hba.conf changed size during the run"
    );
    if ansible.is_none() {
        r.ansible_error = Some("not measured".into());
    }
    drop(pg);
    drop(dir);
    Ok(r)
}

/// Waits until the process `pid` has exited (at most 5 s).
fn wait_gone(pid: &str) -> Result<()> {
    let proc_dir = Path::new("/proc").join(pid);
    for _ in 0..1000 {
        if !proc_dir.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("server process {pid} did not exit")
}

/// `--add`'s target at `size` rules (issue 12): at most 4x the psql reload
/// up to 10k rules, under 250 ms from 100k.
fn add_target(size: usize) -> (&'static str, f64) {
    if size >= 100_000 {
        ("< 250 ms", 0.250)
    } else {
        ("<= 4x reload", 4.0)
    }
}

/// The CIDR of the `n`th add: a loopback /32 no generated line covers.
fn bench_cidr(n: u32) -> String {
    format!("127.77.{}.{}/32", n / 250 % 250, n % 250 + 1)
}

/// Runs `cmd` with no stdin, timing the whole process; fails on a non-zero exit.
fn timed(cmd: &mut Command) -> Result<(Duration, Output)> {
    cmd.stdin(Stdio::null());
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let t = start.elapsed();
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((t, out))
}

/// The Ansible venv.
struct Ansible {
    venv: PathBuf,
    core_version: String,
    collection_version: String,
}

impl Ansible {
    /// The venv with `ansible==ANSIBLE_VERSION`, made when missing.
    fn ensure() -> Result<Ansible> {
        let cache = std::env::var_os("KNOCKER_BENCH_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/knocker-bench"));
        let venv = cache.join("ansible-venv");
        let marker = venv.join(format!(".ansible-{ANSIBLE_VERSION}"));
        if !marker.exists() {
            eprintln!(
                "bench exposedb: installing ansible=={ANSIBLE_VERSION} from PyPI into {} (once)",
                venv.display()
            );
            std::fs::create_dir_all(&cache)?;
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .context("python3 -m venv (is python3-venv installed?)")?;
            ensure!(
                status.success(),
                "python3 -m venv {} failed",
                venv.display()
            );
            let out = Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .arg(format!("ansible=={ANSIBLE_VERSION}"))
                .stdin(Stdio::null())
                .output()
                .context("run pip")?;
            if !out.status.success() {
                bail!(
                    "pip install ansible=={ANSIBLE_VERSION} failed (is PyPI reachable?):\n{}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::fs::write(&marker, "")?;
        }
        let out = Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import ansible.release, json, pathlib, ansible_collections.community.postgresql as c; \
                 m = json.loads((pathlib.Path(c.__path__[0]) / 'MANIFEST.json').read_text()); \
                 print(ansible.release.__version__, m['collection_info']['version'])",
            ])
            .output()
            .context("ask the venv's python for versions")?;
        ensure!(
            out.status.success(),
            "the venv {} has no ansible-core or community.postgresql: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut v = text.split_whitespace();
        Ok(Ansible {
            core_version: v.next().unwrap_or("?").to_string(),
            collection_version: v.next().unwrap_or("?").to_string(),
            venv,
        })
    }

    /// `ansible localhost -c local -m community.postgresql.postgresql_pg_hba`
    /// adding `host knocknoc knocknoc_remote CIDR scram-sha-256` to `dest`.
    fn add_rule(&self, dest: &Path, cidr: &str, work: &Path) -> Result<(Duration, Output)> {
        let module_args = format!(
            "dest={} contype=host databases={APP_DB} users={REMOTE_ROLE} source={cidr} method=scram-sha-256",
            dest.display()
        );
        let mut cmd = Command::new(self.venv.join("bin/ansible"));
        cmd.current_dir(work)
            .args(["localhost", "-i", "localhost,", "-c", "local"])
            .args(["-m", "community.postgresql.postgresql_pg_hba"])
            .args(["-a", &module_args])
            // What an operator's ansible.cfg would say for local runs: no
            // interpreter discovery, no warnings about the inline inventory.
            .env("ANSIBLE_PYTHON_INTERPRETER", self.venv.join("bin/python"))
            .env("ANSIBLE_HOME", work.join(".ansible"))
            .env("ANSIBLE_LOCAL_TEMP", work.join(".ansible/tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCALHOST_WARNING", "False")
            .env("ANSIBLE_DEPRECATION_WARNINGS", "False")
            .env_remove("ANSIBLE_CONFIG");
        let (t, out) = timed(&mut cmd)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            stdout.contains("CHANGED"),
            "Ansible did not report a change:\n{stdout}"
        );
        Ok((t, out))
    }
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[Duration], p: usize) -> Duration {
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Appends the rows of one size; returns whether every target was met.
fn table(report: &mut String, size: usize, r: &mut Results) -> bool {
    for v in [
        &mut r.select1,
        &mut r.reload,
        &mut r.check,
        &mut r.list,
        &mut r.add,
        &mut r.ansible,
        &mut r.ansible_reload,
    ] {
        v.sort();
    }
    let med = |v: &[Duration]| percentile(v, 50);
    let mut met_all = true;
    let mut row = |name: &str,
                   v: &[Duration],
                   ratio: Option<(f64, &str)>,
                   target: &str,
                   met: Option<bool>| {
        if v.is_empty() {
            let _ = writeln!(
                report,
                "| {size} | {name} | 0 | {} | | | {target} | n/a |",
                r.ansible_error.as_deref().unwrap_or("not measured")
            );
            return;
        }
        met_all &= met.unwrap_or(true);
        let _ = writeln!(
            report,
            "| {size} | {name} | {} | {} | {} | {} | {target} | {} |",
            v.len(),
            ms(med(v)),
            ms(percentile(v, 90)),
            ratio.map_or(String::new(), |(x, of)| format!("{x:.2}x {of}")),
            match met {
                Some(true) => "yes",
                Some(false) => "**NO**",
                None => "",
            }
        );
    };
    let secs = |v: &[Duration]| med(v).as_secs_f64();
    row("`psql -c 'select 1'`", &r.select1, None, "baseline", None);
    row(
        "`psql -c 'select pg_reload_conf()'`",
        &r.reload,
        None,
        "baseline",
        None,
    );
    row(
        "`psql -c` the installer's server check (`pg_hba_file_rules`)",
        &r.check,
        Some((secs(&r.check) / secs(&r.reload), "of reload")),
        "server's share",
        None,
    );
    let list = secs(&r.list) / secs(&r.select1);
    row(
        "`knocker exposedb --list`",
        &r.list,
        Some((list, "of select 1")),
        "<= 2x select 1",
        Some(list <= 2.0),
    );
    let add = secs(&r.add) / secs(&r.reload);
    let (target, limit) = add_target(size);
    let met = if size >= 100_000 {
        secs(&r.add) < limit
    } else {
        add <= limit
    };
    row(
        "`knocker exposedb --add CIDR`",
        &r.add,
        Some((add, "of reload")),
        target,
        Some(met),
    );
    let (ansible, ansible_reload) = if r.ansible.is_empty() {
        (0.0, 0.0)
    } else {
        (
            secs(&r.ansible) / secs(&r.add),
            secs(&r.ansible_reload) / secs(&r.add),
        )
    };
    row(
        "Ansible `postgresql_pg_hba` add",
        &r.ansible,
        Some((ansible, "of knocker --add")),
        ">= 10x knocker --add",
        Some(ansible >= 10.0),
    );
    row(
        "Ansible add + psql reload",
        &r.ansible_reload,
        Some((ansible_reload, "of knocker --add")),
        ">= 10x knocker --add",
        Some(ansible_reload >= 10.0),
    );
    met_all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: past ~65k rules the generator wrote `2001:db8:1868d::/48`
    /// (a 5-digit group), which no server loads, so `--sizes 100000` died.
    #[test]
    fn generated_ipv6_groups_fit_in_16_bits_at_100k_rules() {
        let text = hba_text(100_000);
        for line in text.lines().filter(|l| l.contains("2001:")) {
            let addr = line.split_whitespace().nth(3).unwrap();
            let net = addr.trim_end_matches("/48");
            assert!(
                net.parse::<std::net::Ipv6Addr>().is_ok(),
                "{line}: {net} is not an IPv6 address"
            );
        }
        // n = 65536 (65536 % 5 == 1) is the first in the second group.
        assert!(text.contains("+group_65536  2001:db9:0::/48"));
    }
}
