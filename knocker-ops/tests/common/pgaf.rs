//! pg_auto_failover test beds shared by the autofailover tests: keepers
//! as child processes stopped by pid, a CA, a monitor created with
//! pg_autoctl and tuned with knocker's profile, the formation's state,
//! and a client writing one row per connection.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knocker_ops::autofailover::{self, Action, Options, Report, Secret};
use pg_harness::{Cluster, ClusterOptions, OsUser};

/// PostgreSQL 15's programs (Debian's: pg_auto_failover is packaged for 15).
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

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

pub fn stop_child(child: &mut Child) {
    let t = Instant::now();
    let _guard = Timed(child.id(), t);
    // Its descendants now: one that outlives the keeper is killed too.
    let family = tree(child.id());
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while family.iter().skip(1).any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in family.iter().rev().filter(|p| alive(**p)) {
        // SAFETY: kill(2) on our own child and the descendants it had.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    let _ = child.wait();
}

pub struct Timed(u32, Instant);
impl Drop for Timed {
    fn drop(&mut self) {
        eprintln!(
            "stopped keeper {} in {:.1} s",
            self.0,
            self.1.elapsed().as_secs_f64()
        );
    }
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

/// The scratch directory (CA, monitor, logs), removed last.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pid` and all its descendants (from /proc), parents first.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parent_of: BTreeMap<u32, u32> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parent_of.insert(p, ppid);
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| **pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s[s.rfind(')').unwrap_or(0) + 1..]
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Runs `argv` (the form knocker prints: `runuser -u USER -- env ...`)
/// as a child, switching user directly so that the child's pid is the
/// keeper's own (SIGTERM to it stops the keeper and its PostgreSQL).
pub fn spawn(argv: &[String], log: &Path) -> Child {
    let (user, rest) = match argv {
        [r, u, user, dd, rest @ ..] if r == "runuser" && u == "-u" && dd == "--" => {
            (Some(OsUser::lookup(user).unwrap()), rest)
        }
        _ => (None, argv),
    };
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(&rest[0]);
    cmd.args(&rest[1..])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd.spawn().unwrap()
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One CA and a server certificate for 127.0.0.1 / localhost, shared by
/// the monitor and both nodes, owned by the server user.
pub fn make_tls(dir: &Path, user: &OsUser, san: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (ca, cakey, crt, key, csr, ext) = (
        dir.join("ca.crt"),
        dir.join("ca.key"),
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("ext.cnf"),
    );
    let ok = |c: &mut Command| {
        assert!(c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success())
    };
    ok(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=knocker test CA",
        ])
        .arg("-keyout")
        .arg(&cakey)
        .arg("-out")
        .arg(&ca));
    ok(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    std::fs::write(&ext, format!("subjectAltName={san}\n")).unwrap();
    ok(Command::new("openssl")
        .args(["x509", "-req", "-days", "2"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&cakey)
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&crt));
    for f in [&ca, &crt, &key] {
        user.chown(f).unwrap();
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&crt, std::fs::Permissions::from_mode(0o644)).unwrap();
    (ca, crt, key)
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

/// One write attempt of the client: its value, when it started, and
/// whether the server acknowledged it.
#[derive(Clone, Copy)]
pub struct Attempt {
    /// The value inserted.
    pub n: i64,
    /// When the attempt began.
    pub started: Instant,
    /// Whether the commit was acknowledged.
    pub acked: bool,
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
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (attempts, stop) = (attempts.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = first_n;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let acked = write_once(&params, n).await;
                attempts.lock().unwrap().push(Attempt { n, started, acked });
                n += 1;
                tokio::time::sleep(if acked {
                    pause
                } else {
                    Duration::from_millis(100)
                })
                .await;
            }
        })
    };
    (attempts, stop, handle)
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
