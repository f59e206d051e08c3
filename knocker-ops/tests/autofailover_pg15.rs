//! `knocker autofailover` against real pg_auto_failover 2.0 on one machine:
//! a monitor (created with pg_autoctl as docs/pg_auto_failover.md section 5
//! describes, tuned with [`autofailover::monitor_profile_sql`]) and two
//! pg-harness PostgreSQL 15 nodes on loopback, one CA for all three, the
//! keepers as child processes of this test (no systemd here). Enrol the
//! running primary, clone a standby with `pg_basebackup -R` (what
//! `knocker replica --clone-from` leaves: a primary_conninfo of its own)
//! and enrol it keeping its data; under a client writing through the
//! multi-host string: SIGKILL the monitor's tree (no failover, every write
//! goes on) and restart it; SIGKILL the primary's whole process tree
//! (every acknowledged commit on the new primary, time to the first write
//! printed); let the old primary rejoin, then SIGSTOP the new primary's
//! tree (same checks, plus a probe writing to the frozen node alone: no
//! write acknowledged there once the other took writes, and demoted soon
//! after SIGCONT); then `--disable` the standby (it keeps streaming, the
//! primary's writes stop waiting for it). Bad input is refused with
//! nothing touched. About 60 s. Every process is stopped by its pid and
//! every directory removed, also on failure.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knocker_ops::autofailover::{self, Action, Options, Report, Secret};
use knocker_ops::ErrorKind;
use pg_harness::{Cluster, ClusterOptions, OsUser};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Processes of this test (keepers), stopped by pid at the end; and the
/// scratch directory, removed after them.
struct Keepers {
    children: Vec<Child>,
    scratch: PathBuf,
}

impl Keepers {
    fn stop(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.remove(i);
            stop_child(&mut child);
        }
    }
}

fn stop_child(child: &mut Child) {
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

struct Timed(u32, Instant);
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
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pid` and all its descendants (from /proc), parents first.
fn tree(pid: u32) -> Vec<u32> {
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

fn alive(pid: u32) -> bool {
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
fn spawn(argv: &[String], log: &Path) -> Child {
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

fn run_as(user: &OsUser, argv: &[&str], env: &[(&str, String)]) -> String {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One CA and a server certificate for 127.0.0.1 / localhost, shared by
/// the monitor and both nodes, owned by the server user.
fn make_tls(dir: &Path, user: &OsUser) -> (PathBuf, PathBuf, PathBuf) {
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
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
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

fn node_options(tls: &(PathBuf, PathBuf, PathBuf)) -> ClusterOptions {
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

fn admin(c: &Cluster) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        c.socket_dir().display(),
        c.port()
    )
}

async fn status(monitor: &str) -> autofailover::StatusReport {
    let o = Options::new(Action::Status {
        monitor: Some(Secret(monitor.into())),
    });
    match autofailover::run(&o, &mut |_: &str| true).await.unwrap() {
        Report::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

async fn wait_states(monitor: &str, want: &[(&str, &str)], within: Duration) {
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
struct Attempt {
    n: i64,
    started: Instant,
    acked: bool,
}

async fn write_once(params: &pgctl::connect::ConnectParams, n: i64) -> bool {
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

type Writer = (
    Arc<Mutex<Vec<Attempt>>>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<()>,
);

/// A client inserting `first_n`, `first_n + 1`, ... through `params`, one
/// connection per attempt, until its flag is set.
fn start_writer(params: pgctl::connect::ConnectParams, first_n: i64, pause: Duration) -> Writer {
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

#[test]
fn enroll_then_kill_monitor_kill_primary_freeze_primary_disable_standby_pg15() {
    pg_harness::block_on(async {
        let begun = Instant::now();
        let user = OsUser::server_user().clone();
        let scratch = tempfile::Builder::new()
            .prefix("knocker-autofailover-")
            .tempdir_in("/dev/shm")
            .unwrap()
            .keep();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
        user.chown(&scratch).unwrap();
        // Dropped in reverse: the keepers stop first (a cluster dropped
        // under a running keeper is restarted by it), then the clusters,
        // then the scratch directory.
        let _scratch = Scratch(scratch.clone());
        let tls = make_tls(&scratch.join("tls"), &user);
        let ca = tls.0.display().to_string();
        let primary = Cluster::start_with(15, node_options(&tls)).await;
        let standby = Cluster::start_with(15, node_options(&tls)).await;
        let mut keepers = Keepers {
            children: Vec::new(),
            scratch: scratch.clone(),
        };

        // The monitor, set up as --monitor-init will do it.
        let mport = free_port().to_string();
        let mon = scratch.join("monitor");
        let mstate = scratch.join("monitor-state");
        std::fs::create_dir(&mstate).unwrap();
        user.chown(&mstate).unwrap();
        let menv = vec![
            ("HOME", mstate.display().to_string()),
            ("XDG_CONFIG_HOME", mstate.display().to_string()),
            ("XDG_DATA_HOME", mstate.display().to_string()),
            ("XDG_RUNTIME_DIR", mstate.display().to_string()),
        ];
        let mon_s = mon.display().to_string();
        run_as(
            &user,
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
                "127.0.0.1",
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
                 hostssl pg_auto_failover autoctl_node 127.0.0.1/32 scram-sha-256\n",
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
            .push(spawn(&margv, &scratch.join("monitor.log")));
        let monitor_password = "formation-Secret:1";
        // One -c per statement: ALTER SYSTEM refuses a transaction block.
        let mut statements = vec![format!(
            "ALTER ROLE autoctl_node PASSWORD '{monitor_password}'"
        )];
        statements.extend(autofailover::monitor_profile_sql());
        let mut last = String::new();
        let mut psql_ok = false;
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
                psql_ok = true;
                break;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(psql_ok, "monitor did not come up: {last}");
        let monitor = format!(
            "postgres://autoctl_node:{}@127.0.0.1:{mport}/pg_auto_failover?sslmode=verify-full&sslrootcert={ca}",
            "formation-Secret%3A1"
        );

        // The running primary, with the application's table.
        let p = primary.connect().await;
        p.batch_execute("CREATE ROLE app LOGIN PASSWORD 'apppw'")
            .await
            .unwrap();
        p.batch_execute("CREATE DATABASE appdb OWNER app")
            .await
            .unwrap();
        drop(p);
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
        let Report::Enroll(r) = autofailover::run(&dry, &mut |_: &str| panic!("asked"))
            .await
            .unwrap()
        else {
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
        assert!(!plan.contains("formation-Secret"), "{plan}");
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
        assert!(!cfg.contains("formation-Secret"), "{cfg}");
        let passfile = state_dir.join("pgpass");
        assert_eq!(
            std::fs::metadata(&passfile).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // A standby cloned from it (primary_conninfo of its own, as knocker
        // replica leaves it), running, then enrolled keeping its data.
        let sdata = standby.data_dir().display().to_string();
        run_as(
            &user,
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
        // The keeper may still be restarting its PostgreSQL ("starting
        // up"): a few attempts, each from an empty directory.
        let mut cloned = false;
        for _ in 0..20 {
            let _ = std::fs::remove_dir_all(standby.data_dir());
            let out = user
                .command(format!("{BIN}/pg_basebackup"))
                .args(["-D", &sdata, "-X", "stream", "-c", "fast", "-R", "-d"])
                .arg(format!("host=127.0.0.1 port={} user=pgautofailover_replicator sslmode=verify-full sslrootcert={ca} application_name=node_b", primary.port()))
                .env_clear()
                .env("PGPASSFILE", &passfile)
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
            .open(standby.data_dir().join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            format!(
                "port = {}\nunix_socket_directories = '{}'\n",
                standby.port(),
                standby.socket_dir().display()
            )
            .as_bytes(),
        )
        .unwrap();
        run_as(
            &user,
            &[
                &format!("{BIN}/pg_ctl"),
                "-D",
                &sdata,
                "-l",
                &scratch.join("standby-start.log").display().to_string(),
                "-w",
                "start",
            ],
            &[],
        );
        let mut enroll_b = Options::new(Action::Enroll {
            monitor: Secret(monitor.clone()),
        });
        enroll_b.admin_conn = Some(admin(&standby));
        enroll_b.name = Some("node_b".into());
        let Report::Enroll(r) = autofailover::run(&enroll_b, &mut |_: &str| true)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(r.role, "standby");
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
        let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (attempts, stop, params) = (attempts.clone(), stop.clone(), params.clone());
            tokio::spawn(async move {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let acked = write_once(&params, n).await;
                    attempts.lock().unwrap().push(Attempt { n, started, acked });
                    if !acked {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        };
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

        // --disable on the standby (node_b): manual mode, still streaming
        // (its primary_conninfo kept, with the passfile), and the primary's
        // writes no longer wait for it.
        let mut disable = Options::new(Action::Disable);
        // The rewind copied node_a's postgresql.conf, socket directory
        // included, to node_b (its port comes from pg_autoctl's -p).
        disable.admin_conn = Some(format!(
            "host={} port={} user=postgres dbname=postgres",
            primary.socket_dir().display(),
            standby.port()
        ));
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
                .position(|c| c.id() == keeper_b_pid)
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
                unsafe { libc::kill(keeper_b_pid as libc::pid_t, libc::SIGTERM) };
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
        let direct_a = params_for(&appurl(&[primary.port()]));
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 3_000_000i64;
        while !write_once(&direct_a, n).await {
            assert!(
                Instant::now() < deadline,
                "the primary's writes wait for the dropped standby"
            );
            n += 1;
        }
        // Every row reaches the disabled standby, which streams on its own.
        let read_b =
            params_for(&appurl(&[standby.port()]).replace("target_session_attrs=read-write&", ""));
        let c = pgctl::connect::connect(&read_b).await.unwrap();
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
        let conf = std::fs::read_to_string(standby.data_dir().join("postgresql.conf")).unwrap();
        assert!(!conf.contains("postgresql-auto-failover"), "{conf}");
        assert!(!standby
            .data_dir()
            .join("postgresql-auto-failover.conf")
            .exists());
        let state = standby
            .data_dir()
            .parent()
            .unwrap()
            .join(".data.pg_autoctl");
        assert!(!state.join("config").exists());
        let s = status(&monitor).await;
        assert!(s.nodes.iter().all(|n| n.name != "node_b"), "{s:?}");
        drop(c);
        // Stop knocker's own start of it before the harness removes it.
        let out = user
            .command(format!("{BIN}/pg_ctl"))
            .args(["-D", &sdata, "-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success());
    });
}
