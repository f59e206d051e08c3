//! Shared by the hba_install test binaries: a child process that runs one
//! installation (the test binary re-executed), and file helpers.
//!
//! The child is this same test binary started with `--exact
//! child_process_entry`; the parameters travel in `HBA_CHILD_*` variables.
//! It appends one rule (if absent) through `pgctl::hba_install::edit` and
//! prints `CHILD-EVENT <event>` lines and one `CHILD-OK ...` or
//! `CHILD-ERR <kind> <message>` line. `HBA_CHILD_KILL_AT=<step>` makes it
//! SIGKILL itself right after that step, from the installer's event
//! callback: fault injection lives in the test, the library has no kill
//! switch.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pg_harness::Cluster;
use pgctl::hba_install::{edit, InstallError, InstallEvent, InstallOptions, InstallReport};

/// What a child run should do.
#[derive(Debug, Default, Clone)]
pub struct ChildSpec {
    /// The line to add (without newline).
    pub add: String,
    /// Step name at which to SIGKILL itself.
    pub kill_at: Option<&'static str>,
    /// RLIMIT_FSIZE to set before installing.
    pub fsize_limit: Option<u64>,
    /// Lock timeout in milliseconds.
    pub lock_timeout_ms: Option<u64>,
}

/// How a child ended.
#[derive(Debug)]
pub struct ChildOutcome {
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// Its `CHILD-*` lines.
    pub lines: Vec<String>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl ChildOutcome {
    /// Killed by SIGKILL?
    pub fn killed(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal() == Some(libc::SIGKILL)
    }

    /// The `CHILD-OK` line, panicking with the whole output otherwise.
    pub fn ok_line(&self) -> &str {
        self.lines
            .iter()
            .find(|l| l.starts_with("CHILD-OK"))
            .unwrap_or_else(|| panic!("child did not succeed: {self:?}"))
    }

    /// The `CHILD-ERR` line, panicking with the whole output otherwise.
    pub fn err_line(&self) -> &str {
        self.lines
            .iter()
            .find(|l| l.starts_with("CHILD-ERR"))
            .unwrap_or_else(|| panic!("child did not fail: {self:?}"))
    }

    /// Its events.
    pub fn events(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("CHILD-EVENT "))
            .collect()
    }
}

/// Adds `line` (if absent) to the hba file at `hba` through `edit`: what
/// most tests install.
pub async fn add_line(
    client: &tokio_postgres::Client,
    hba: &Path,
    line: &str,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    let add = |old: &[u8]| Ok::<_, std::io::Error>(with_line(old, line));
    edit(client, hba, add, options).await
}

/// Starts a child against `pg` (it runs concurrently until awaited).
pub fn spawn_child(pg: &Cluster, spec: &ChildSpec) -> tokio::process::Child {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HBA_CHILD", "1")
    .env("HBA_CHILD_PORT", pg.port().to_string())
    .env("HBA_CHILD_HBA", pg.hba_file())
    .env("HBA_CHILD_ADD", &spec.add)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if let Some(step) = spec.kill_at {
        cmd.env("HBA_CHILD_KILL_AT", step);
    }
    if let Some(limit) = spec.fsize_limit {
        cmd.env("HBA_CHILD_FSIZE", limit.to_string());
    }
    if let Some(ms) = spec.lock_timeout_ms {
        cmd.env("HBA_CHILD_LOCK_TIMEOUT_MS", ms.to_string());
    }
    cmd.spawn().expect("spawn child")
}

/// Waits for a child and collects its `CHILD-*` lines.
pub async fn wait_child(child: tokio::process::Child) -> ChildOutcome {
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("child finished within 120 s")
        .expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // libtest prints "test child_process_entry ... " without a newline
    // before the test runs: the first line of the child follows it.
    let lines: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.find("CHILD-").map(|at| l[at..].to_string()))
        .collect();
    if lines.is_empty() && output.status.signal_is_none() {
        panic!(
            "child printed nothing: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    ChildOutcome {
        status: output.status,
        lines,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

trait SignalIsNone {
    fn signal_is_none(&self) -> bool;
}

impl SignalIsNone for std::process::ExitStatus {
    fn signal_is_none(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.signal().is_none()
    }
}

/// Runs one child to completion.
pub async fn run_child(pg: &Cluster, spec: &ChildSpec) -> ChildOutcome {
    wait_child(spawn_child(pg, spec)).await
}

/// `old` plus `line` (and a newline), unless `old` already has that line.
pub fn with_line(old: &[u8], line: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(old);
    if text.lines().any(|l| l == line) {
        return old.to_vec();
    }
    let mut new = old.to_vec();
    if !new.is_empty() && !new.ends_with(b"\n") {
        new.push(b'\n');
    }
    new.extend_from_slice(line.as_bytes());
    new.push(b'\n');
    new
}

/// The body of the child process (see the module documentation).
pub fn child_main() {
    let port: u16 = std::env::var("HBA_CHILD_PORT")
        .expect("port")
        .parse()
        .expect("port number");
    let hba = PathBuf::from(std::env::var_os("HBA_CHILD_HBA").expect("hba path"));
    let add = std::env::var("HBA_CHILD_ADD").expect("line to add");
    let kill_at = std::env::var("HBA_CHILD_KILL_AT").ok();
    if let Ok(limit) = std::env::var("HBA_CHILD_FSIZE") {
        limit_file_size(limit.parse().expect("size"));
    }
    let mut options = InstallOptions::default();
    if let Ok(ms) = std::env::var("HBA_CHILD_LOCK_TIMEOUT_MS") {
        options.lock_timeout = Duration::from_millis(ms.parse().expect("ms"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .dbname("postgres");
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("child connects");
        tokio::spawn(connection);
        options.reconnect = Some(Arc::new(config));
        options.events = Some(Arc::new(move |event: InstallEvent| {
            println!("CHILD-EVENT {event}");
            if let (InstallEvent::Step(step), Some(kill_at)) = (&event, &kill_at) {
                if step.name() == kill_at {
                    // SAFETY: kill(2) on our own pid has no memory effects.
                    unsafe {
                        libc::kill(libc::getpid(), libc::SIGKILL);
                    }
                }
            }
        }));
        let result = edit(
            &client,
            &hba,
            |old: &[u8]| Ok::<_, std::convert::Infallible>(with_line(old, &add)),
            &options,
        )
        .await;
        match result {
            Ok(report) => println!(
                "CHILD-OK changed={} reload={:?} stale_removed={} backups_pruned={}",
                report.changed,
                report.reload,
                report.stale_temps_removed.len(),
                report.pruned_backups.len()
            ),
            Err(err) => println!("CHILD-ERR {} {err}", error_kind(&err)),
        }
    });
}

/// The variant name of an error, for the parent to match on.
pub fn error_kind(err: &InstallError) -> String {
    let debug = format!("{err:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// RLIMIT_FSIZE for this process, with SIGXFSZ ignored so that writes past
/// the limit fail with EFBIG instead of killing the process.
fn limit_file_size(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setting a signal disposition to SIG_IGN and a resource limit
    // of this process; no memory is shared with the kernel beyond `limit`.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
}

/// Knocker's temp files next to `hba`.
pub fn temp_files(hba: &Path) -> Vec<PathBuf> {
    let name = hba.file_name().unwrap().to_str().unwrap();
    let prefix = format!(".{name}.knocker-");
    list(hba, |n| n.starts_with(&prefix))
}

/// Knocker's backups of `hba`, oldest first.
pub fn backups(hba: &Path) -> Vec<PathBuf> {
    let name = hba.file_name().unwrap().to_str().unwrap();
    let prefix = pgctl::naming::Naming::default().backup_prefix(name);
    list(hba, |n| n.starts_with(&prefix))
}

fn list(hba: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(hba.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| keep(p.file_name().unwrap().to_str().unwrap()))
        .collect();
    found.sort();
    found
}

/// Errors the server reports for its hba file now on disk.
pub async fn server_errors(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query("select coalesce(line_number, 0)::text || ': ' || error from pg_hba_file_rules where error is not null", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A file attribute set with `chattr` (`i` immutable, `a` append-only),
/// removed on drop (also during a panic).
pub struct Attribute(PathBuf, char);

impl Attribute {
    /// Sets the attribute, panicking when the file system refuses it.
    pub fn set(path: &Path, attribute: char) -> Attribute {
        let status = std::process::Command::new("chattr")
            .arg(format!("+{attribute}"))
            .arg(path)
            .status()
            .expect("run chattr");
        assert!(
            status.success(),
            "chattr +{attribute} {} failed: the file system must support it",
            path.display()
        );
        Attribute(path.to_path_buf(), attribute)
    }
}

impl Drop for Attribute {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg(format!("-{}", self.1))
            .arg(&self.0)
            .status();
    }
}
