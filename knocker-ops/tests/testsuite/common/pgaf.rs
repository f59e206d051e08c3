//! pg_auto_failover test beds shared by the autofailover tests: keepers
//! as child processes stopped by pid, a CA, a monitor created with
//! pg_autoctl and tuned with knocker's profile, the formation's state,
//! and a client writing one row per connection.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knocker_ops::autofailover::{self, Action, Options, Report, Secret};
use pg_harness::{Cluster, ClusterOptions, OsUser};

// Each test crate uses part of them.
#[allow(unused_imports)]
pub use pg_harness::pgaf::{alive, tree, Attempt, Scratch, BIN};

/// Processes of this test (keepers), stopped by pid at the end; and the
/// scratch directory, removed after them.
pub struct Keepers {
    /// The keepers (and the monitor), stopped in reverse order.
    pub children: Vec<Child>,
    /// Where their logs are (printed when the test fails).
    pub scratch: PathBuf,
}

impl Keepers {
    /// Stops the child `pid` (and what it started).
    pub fn stop(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.remove(i);
            stop_child(&mut child);
        }
    }
}

/// Stops a keeper and its tree ([`pg_harness::pgaf::stop_tree`]), saying
/// how long it took (a slow stop is what makes these tests slow).
pub fn stop_child(child: &mut Child) {
    let (pid, t) = (child.id(), Instant::now());
    let leftovers = pg_harness::pgaf::stop_tree(child);
    eprintln!(
        "stopped keeper {pid} in {:.1} s (SIGKILL to {leftovers:?})",
        t.elapsed().as_secs_f64()
    );
}

impl Drop for Keepers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir(&self.scratch)
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("==== {} (last 40 lines)", path.display());
                    for l in &lines[lines.len().saturating_sub(40)..] {
                        eprintln!("{l}");
                    }
                }
            }
        }
        // Nodes first: the monitor's PostgreSQL waits for their sessions.
        for mut c in std::mem::take(&mut self.children).into_iter().rev() {
            stop_child(&mut c);
        }
    }
}

/// Runs `argv` (the form knocker prints) as a child logging to `log`
/// ([`pg_harness::pgaf::spawn`]).
pub fn spawn(argv: &[String], log: &Path) -> Child {
    pg_harness::pgaf::spawn(argv, log).unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"))
}

pub fn run_as(user: &OsUser, argv: &[&str], env: &[(&str, String)]) -> String {
    let mut cmd = user.command(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{argv:?} failed: {text}");
    text
}

/// A loopback TCP port free right now.
pub fn free_port() -> u16 {
    pg_harness::pgaf::free_port().unwrap()
}

/// One CA and a server certificate for `san`, shared by the monitor and
/// the nodes, owned by the server user ([`pg_harness::pgaf::make_tls`]).
pub fn make_tls(dir: &Path, user: &OsUser, san: &str) -> (PathBuf, PathBuf, PathBuf) {
    pg_harness::pgaf::make_tls(dir, user, san).unwrap()
}

pub fn node_options(tls: &(PathBuf, PathBuf, PathBuf)) -> ClusterOptions {
    ClusterOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_ca_file".into(), tls.0.display().to_string()),
            ("ssl_cert_file".into(), tls.1.display().to_string()),
            ("ssl_key_file".into(), tls.2.display().to_string()),
        ],
        ..Default::default()
    }
}

pub fn admin(c: &Cluster) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        c.socket_dir().display(),
        c.port()
    )
}

/// The application's role `app` (password `apppw`) and its database
/// `appdb` on `c`.
pub async fn app_database(c: &Cluster) {
    let p = c.connect().await;
    p.batch_execute("CREATE ROLE app LOGIN PASSWORD 'apppw'")
        .await
        .unwrap();
    p.batch_execute("CREATE DATABASE appdb OWNER app")
        .await
        .unwrap();
}

pub async fn status(monitor: &str) -> autofailover::StatusReport {
    let o = Options::new(Action::Status {
        monitor: Some(Secret(monitor.into())),
    });
    match autofailover::run(&o, &mut |_: &str| true).await.unwrap() {
        Report::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

pub async fn wait_states(monitor: &str, want: &[(&str, &str)], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = status(monitor).await;
        let have: BTreeSet<(String, String)> = s
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.state.clone()))
            .collect();
        if want
            .iter()
            .all(|(n, st)| have.contains(&(n.to_string(), st.to_string())))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "states {want:?} not reached: {have:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn write_once(params: &pgctl::connect::ConnectParams, n: i64) -> bool {
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

pub type Writer = (
    Arc<Mutex<Vec<Attempt>>>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<()>,
);

/// A client inserting `first_n`, `first_n + 1`, ... through `params`, one
/// connection per attempt, until its flag is set.
pub fn start_writer(
    params: pgctl::connect::ConnectParams,
    first_n: i64,
    pause: Duration,
) -> Writer {
    let params = Arc::new(params);
    let w = pg_harness::pgaf::Writer::start(Arc::new(AtomicI64::new(first_n)), pause, move |n| {
        let params = params.clone();
        async move { write_once(&params, n).await }
    });
    (w.attempts, w.stop, w.handle)
}

/// A monitor in `dir` (created with `pg_autoctl create monitor`, owned by
/// `user`, TLS files `tls`, listening on `host`), its pg_hba.conf
/// admitting keepers from `keepers_cidr`, run as a child kept in
/// `keepers`, `autoctl_node`'s password set and knocker's profile
/// applied. Returns the monitor URI (with its password).
pub async fn start_monitor(
    keepers: &mut Keepers,
    dir: &Path,
    user: &OsUser,
    tls: &(PathBuf, PathBuf, PathBuf),
    host: &str,
    keepers_cidr: &str,
) -> String {
    let mport = free_port().to_string();
    let mon = dir.join("monitor");
    let mstate = dir.join("monitor-state");
    std::fs::create_dir(&mstate).unwrap();
    user.chown(&mstate).unwrap();
    let menv = vec![
        ("HOME", mstate.display().to_string()),
        ("XDG_CONFIG_HOME", mstate.display().to_string()),
        ("XDG_DATA_HOME", mstate.display().to_string()),
        ("XDG_RUNTIME_DIR", mstate.display().to_string()),
    ];
    let mon_s = mon.display().to_string();
    let ca = tls.0.display().to_string();
    run_as(
        user,
        &[
            "pg_autoctl",
            "create",
            "monitor",
            "--pgctl",
            &format!("{BIN}/pg_ctl"),
            "--pgdata",
            &mon_s,
            "--pgport",
            &mport,
            "--hostname",
            host,
            "--skip-pg-hba",
            "--ssl-ca-file",
            &ca,
            "--server-cert",
            &tls.1.display().to_string(),
            "--server-key",
            &tls.2.display().to_string(),
            "--ssl-mode",
            "verify-full",
        ],
        &menv,
    );
    std::fs::write(
        mon.join("pg_hba.conf"),
        format!(
            "local all {u} peer\nlocal pg_auto_failover autoctl_node peer map=pgautofailover\n\
             hostssl pg_auto_failover autoctl_node {keepers_cidr} scram-sha-256\n",
            u = user.name
        ),
    )
    .unwrap();
    std::fs::write(
        mon.join("pg_ident.conf"),
        format!("pgautofailover {} autoctl_node\n", user.name),
    )
    .unwrap();
    let mut margv: Vec<String> = vec![
        "runuser".into(),
        "-u".into(),
        user.name.clone(),
        "--".into(),
        "env".into(),
        "-i".into(),
        "PATH=/usr/bin:/bin".into(),
    ];
    margv.extend(menv.iter().map(|(k, v)| format!("{k}={v}")));
    margv.extend(["pg_autoctl", "run", "--pgdata", &mon_s].map(String::from));
    keepers
        .children
        .push(spawn(&margv, &keepers.scratch.join("monitor.log")));
    let password = "formation-Secret:1";
    // One -c per statement: ALTER SYSTEM refuses a transaction block.
    let mut statements = vec![format!("ALTER ROLE autoctl_node PASSWORD '{password}'")];
    statements.extend(autofailover::monitor_profile_sql());
    let mut last = String::new();
    for _ in 0..60 {
        let mut cmd = user.command(format!("{BIN}/psql"));
        cmd.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "/var/run/postgresql",
            "-p",
            &mport,
            "-d",
            "pg_auto_failover",
        ]);
        for sql in &statements {
            cmd.args(["-c", sql]);
        }
        let out = cmd.output().unwrap();
        if out.status.success() {
            return format!(
                "postgres://autoctl_node:formation-Secret%3A1@{host}:{mport}/pg_auto_failover?sslmode=verify-full&sslrootcert={ca}"
            );
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("monitor did not come up: {last}");
}

/// Connection parameters for a URI (nothing from the environment but
/// what libpq would read too).
pub fn params_for(url: &str) -> pgctl::connect::ConnectParams {
    pgctl::conninfo::resolve_from_process_env(&pgctl::conninfo::ConnInfo::parse(url).unwrap())
        .unwrap()
        .params
}

/// Where [`clone_and_enroll_standby`] clones from.
pub struct CloneSource<'a> {
    /// The enrolled primary's address as the standby reaches it.
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// The formation's CA certificate (the clone verifies the primary).
    pub ca: &'a str,
    /// The passfile with `pgautofailover_replicator`'s password (the
    /// primary keeper's).
    pub passfile: &'a Path,
}

/// Replaces `standby` (a pg-harness cluster run by `user`) with a clone of
/// the enrolled primary (`pg_basebackup -R`, a primary_conninfo of its
/// own as `knocker replica --clone-from` leaves it), starts it with its
/// port, socket directory and `extra_conf`, and enrols it as `node_b` with
/// `monitor`, keeping its data. Returns the enrolment's report (its role
/// checked: standby); the keeper is the caller's to start.
pub async fn clone_and_enroll_standby(
    user: &OsUser,
    standby: &Cluster,
    from: &CloneSource<'_>,
    extra_conf: &str,
    monitor: &str,
    start_log: &Path,
) -> autofailover::EnrollReport {
    let sdata = standby.data_dir().display().to_string();
    run_as(
        user,
        &[
            &format!("{BIN}/pg_ctl"),
            "-D",
            &sdata,
            "-m",
            "fast",
            "-w",
            "stop",
        ],
        &[],
    );
    // The keeper may still be restarting its PostgreSQL ("starting up"):
    // a few attempts, each from an empty directory.
    let mut cloned = false;
    for _ in 0..20 {
        let _ = std::fs::remove_dir_all(standby.data_dir());
        let out = user
            .command(format!("{BIN}/pg_basebackup"))
            .args(["-D", &sdata, "-X", "stream", "-c", "fast", "-R", "-d"])
            .arg(format!(
                "host={} port={} user=pgautofailover_replicator sslmode=verify-full \
                 sslrootcert={} application_name=node_b",
                from.host, from.port, from.ca
            ))
            .env_clear()
            .env("PGPASSFILE", from.passfile)
            .output()
            .unwrap();
        if out.status.success() {
            cloned = true;
            break;
        }
        eprintln!(
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(cloned, "could not clone the primary");
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(standby.conf_file())
        .unwrap();
    std::io::Write::write_all(
        &mut conf,
        format!(
            "port = {}\nunix_socket_directories = '{}'\n{extra_conf}",
            standby.port(),
            standby.socket_dir().display()
        )
        .as_bytes(),
    )
    .unwrap();
    run_as(
        user,
        &[
            &format!("{BIN}/pg_ctl"),
            "-D",
            &sdata,
            "-l",
            &start_log.display().to_string(),
            "-w",
            "start",
        ],
        &[],
    );
    let mut enroll_b = Options::new(Action::Enroll {
        monitor: Secret(monitor.into()),
    });
    enroll_b.admin_conn = Some(admin(standby));
    enroll_b.name = Some("node_b".into());
    let Report::Enroll(r) = autofailover::run(&enroll_b, &mut |_: &str| true)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.role, "standby");
    r
}
