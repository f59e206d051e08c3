//! The parts of a pg_auto_failover test bed that the knocker-ops tests and
//! `cargo xtask bench autofailover` share: the monitor's and the keepers'
//! `pg_autoctl run` as child processes stopped by pid with everything they
//! started, a CA and server certificate made with openssl, and a client
//! writing one row per connection whose attempts are kept.
//!
//! What each caller does with them (knocker's commands, the faults, the
//! checks) stays with the caller.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::OsUser;

/// PostgreSQL 15's programs (Debian's: pg_auto_failover is packaged for 15).
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A scratch directory (CA, monitor, logs), removed when dropped; drop it
/// after the processes that use it.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new directory `/dev/shm/PREFIXxxxxxx` (memory-backed: the
    /// clusters' and monitor's fsyncs stay cheap), mode 0755 and owned by
    /// `owner`, who runs the monitor and writes its state and logs there.
    pub fn create(prefix: &str, owner: &OsUser) -> std::io::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/dev/shm")?
            .keep();
        let scratch = Scratch(dir);
        std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755))?;
        owner.chown(&scratch.0)?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pid` and all its descendants (from /proc), parents first.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parent_of.push((p, ppid));
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// SIGKILLs the postmaster that `data_dir`'s `postmaster.pid` names and
/// every descendant of it (a host's death, for failover tests), then waits
/// up to `within` until its pid has left /proc: PID 1 here reaps only every
/// few seconds, and a zombie's pid still looks alive to the lock check of
/// the next postmaster started on that directory. Returns the pid.
pub fn kill_postmaster_tree(data_dir: &Path, within: Duration) -> std::io::Result<u32> {
    let pid_file = data_dir.join("postmaster.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)?
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no pid in {}", pid_file.display()),
            )
        })?;
    for p in tree(pid) {
        signal(p, libc::SIGKILL);
    }
    let deadline = Instant::now() + within;
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("postmaster {pid} survived SIGKILL for {within:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pid)
}

/// Whether `pid` runs (a zombie does not: PID 1 here reaps only every few
/// seconds).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s[s.rfind(')').unwrap_or(0) + 1..]
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid the caller started (or a descendant of it).
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// SIGSTOPs `pid`'s tree until no new descendant appears (a stopped
/// process cannot fork), and returns that tree.
pub fn freeze_tree(pid: u32) -> Vec<u32> {
    let mut frozen: Vec<u32> = Vec::new();
    for _ in 0..20 {
        let fresh: Vec<u32> = tree(pid)
            .into_iter()
            .filter(|p| !frozen.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for p in &fresh {
            signal(*p, libc::SIGSTOP);
        }
        frozen.extend(fresh);
    }
    frozen
}

/// Stops a keeper (or the monitor's `pg_autoctl run`) and everything under
/// it: SIGCONT to the tree (it may be frozen), SIGTERM to the child (it
/// stops its PostgreSQL), up to 30 s for it and 5 s more for its
/// descendants, then SIGKILL to what is left. Returns the pids that needed
/// the SIGKILL (for the caller to report).
pub fn stop_tree(child: &mut Child) -> Vec<u32> {
    // Its descendants now: one that outlives the keeper is killed too.
    let family = tree(child.id());
    for pid in &family {
        signal(*pid, libc::SIGCONT);
    }
    signal(child.id(), libc::SIGTERM);
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
    let leftovers: Vec<u32> = family.iter().rev().copied().filter(|p| alive(*p)).collect();
    for pid in &leftovers {
        signal(*pid, libc::SIGKILL);
    }
    let _ = child.wait();
    leftovers
}

/// Runs `argv` (the form knocker prints: `runuser -u USER -- env ...`) as
/// a child writing to `log`, switching user directly so that the child's
/// pid is the keeper's own (SIGTERM to it stops the keeper and its
/// PostgreSQL).
pub fn spawn(argv: &[String], log: &Path) -> std::io::Result<Child> {
    let (user, rest) = match argv {
        [r, u, user, dd, rest @ ..] if r == "runuser" && u == "-u" && dd == "--" => {
            let found = OsUser::lookup(user).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("no OS user {user}"))
            })?;
            (Some(found), rest)
        }
        _ => (None, argv),
    };
    let Some((program, args)) = rest.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no program in {argv:?}"),
        ));
    };
    let out = std::fs::File::create(log)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd.spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {program}: {e}")))
}

/// A loopback TCP port free right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One CA and a server certificate with the subjectAltName `san` (for
/// example `IP:127.0.0.1,DNS:localhost`) in `dir`, shared by the monitor
/// and the nodes, owned by `user`: `(ca.crt, server.crt, server.key)`.
pub fn make_tls(
    dir: &Path,
    user: &OsUser,
    san: &str,
) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let (ca, cakey, crt, key, csr, ext) = (
        dir.join("ca.crt"),
        dir.join("ca.key"),
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("ext.cnf"),
    );
    let ok = |c: &mut Command| -> std::io::Result<()> {
        let status = c.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("openssl failed: {c:?}")))
        }
    };
    ok(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-days", "2", "-subj", "/CN=knocker test CA"])
        .arg("-keyout")
        .arg(&cakey)
        .arg("-out")
        .arg(&ca))?;
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
        .arg(&csr))?;
    std::fs::write(&ext, format!("subjectAltName={san}\n"))?;
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
        .arg(&crt))?;
    for f in [&ca, &crt, &key] {
        user.chown(f)?;
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644))?;
    std::fs::set_permissions(&crt, std::fs::Permissions::from_mode(0o644))?;
    Ok((ca, crt, key))
}

/// One write attempt of a [`Writer`]: its value, when it started and
/// ended, and whether the server acknowledged it.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// The value inserted.
    pub n: i64,
    /// When the attempt began.
    pub started: Instant,
    /// When it ended (acknowledged, refused or timed out).
    pub finished: Instant,
    /// Whether the commit was acknowledged.
    pub acked: bool,
}

/// A client writing a new value per attempt (one connection each, made by
/// the caller's `write`) until stopped; every attempt is kept.
#[derive(Debug)]
pub struct Writer {
    /// The attempts so far, in order.
    pub attempts: Arc<Mutex<Vec<Attempt>>>,
    /// Set to stop the writer after its current attempt.
    pub stop: Arc<AtomicBool>,
    /// The writer's task.
    pub handle: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts writing the values taken from `next` (shared between writers
    /// so that no two write the same value) with `write`, which returns
    /// whether the server acknowledged the value. It pauses `pause` after an
    /// acknowledged write and 100 ms after a failed one. Call from within a
    /// tokio runtime.
    pub fn start<F, Fut>(next: Arc<AtomicI64>, pause: Duration, write: F) -> Writer
    where
        F: Fn(i64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (attempts, stop) = (attempts.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let acked = write(n).await;
                    attempts.lock().unwrap().push(Attempt {
                        n,
                        started,
                        finished: Instant::now(),
                        acked,
                    });
                    tokio::time::sleep(if acked {
                        pause
                    } else {
                        Duration::from_millis(100)
                    })
                    .await;
                }
            })
        };
        Writer {
            attempts,
            stop,
            handle,
        }
    }

    /// Stops the writer and returns all its attempts.
    pub async fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.await;
        let attempts = self.attempts.lock().unwrap().clone();
        attempts
    }

    /// When the first acknowledged attempt that began after `t` began.
    pub fn first_ack_started_after(&self, t: Instant) -> Option<Instant> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.acked && a.started > t)
            .map(|a| a.started)
    }
}
