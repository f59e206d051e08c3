//! Crash-safe installation of a new pg_hba.conf on a running server.
//!
//! [`edit`] (or [`install`] for a whole new text) does, in this order:
//!
//! 1. checks the connection is a superuser's and reads the server's version
//!    and `hba_file` (the path given must be that file);
//! 2. takes an exclusive lock (`flock` on `.pg_hba.conf.TOOL.lock` next to
//!    the file), reporting [`InstallEvent::WaitingForLock`] with the holder's
//!    pid when another installer has it; the kernel releases the lock of a
//!    killed process;
//! 3. removes temp files a killed run left behind (`.pg_hba.conf.TOOL-*`);
//! 4. reads the current file, checks it can be written (immutable and
//!    read-only files are refused before anything is written) and asks the
//!    server (`pg_hba_file_rules`) whether it already has errors: if so it
//!    stops and names them, unless [`InstallOptions::force`] (not asked when
//!    the lock file records that this very file version, same device, inode,
//!    size and modification time, was installed without errors and its
//!    reload confirmed);
//! 5. applies the caller's edit to the current bytes, under the lock, so
//!    concurrent editors never lose each other's changes;
//! 6. validates the new text offline for the server's version (or takes
//!    the caller's [`Validation`] of exactly that text, when it still holds:
//!    [`InstallOptions::validated`]);
//! 7. writes a backup `pg_hba.conf.TOOL-backup-<UTC timestamp>` with the
//!    owner and mode of the original (temp file, fsync, rename);
//! 8. writes the new text to `.pg_hba.conf.TOOL-XXXXXX` with the original's
//!    owner and mode, fsyncs it, renames it over the file, fsyncs the
//!    directory: every reader sees the old or the new file, never a mix;
//! 9. asks the server to check the file now on disk; on any error, puts the
//!    old bytes back at once (same atomic write) and stops, without reloading;
//! 10. reloads (`pg_reload_conf()`) and confirms the reload took effect (see
//!     [`ReloadConfirmation`]); prunes backups to the newest
//!     [`InstallOptions::backups_kept`].
//!
//! A failure before step 8's rename leaves the file as it was (and removes
//! the backup just taken); a failure after it restores the old bytes. Killing
//! the process at any point leaves the old or the new file; the next run
//! cleans up and converges (an unchanged file that is newer than the
//! server's last reload is reloaded again).
//!
//! None of the generated names ends in `.conf`, so an `include_dir` pointed
//! at the directory never reads them.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client, config: tokio_postgres::Config)
//! #     -> Result<(), pgctl::hba_install::InstallError> {
//! use std::path::Path;
//! use std::sync::Arc;
//! use pgctl::hba_install::{edit, InstallEvent, InstallOptions};
//!
//! let options = InstallOptions {
//!     reconnect: Some(Arc::new(config)),
//!     events: Some(Arc::new(|event: InstallEvent| eprintln!("{event}"))),
//!     ..InstallOptions::default()
//! };
//! let hba = Path::new("/etc/postgresql/15/main/pg_hba.conf");
//! let report = edit(client, hba, |old: &[u8]| {
//!     let mut new = old.to_vec();
//!     new.extend_from_slice(b"host appdb app_remote 203.0.113.7/32 scram-sha-256\n");
//!     Ok::<_, std::convert::Infallible>(new)
//! }, &options).await?;
//! assert!(report.changed);
//! # Ok(()) }
//! ```

mod error;
mod files;
mod lock;
pub mod owner;
mod server;
mod validate;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

pub use error::{HbaProblem, InstallError};
pub use validate::{validate, validate_observed, Validation, ValidationSettings};

use crate::naming::Naming;
use files::{HbaPaths, Ownership, Syncer, TempFile};
use lock::{FileId, HbaLock};

/// The statement that asks the server to reload its configuration after a
/// new pg_hba.conf is in place, exactly as sent: a dry run prints this.
pub const RELOAD_SQL: &str = "SELECT pg_catalog.pg_reload_conf()";

/// The query that asks a server of major version `major` which lines of its
/// hba file (as now on disk, includes too) it rejects, exactly as sent:
/// `(file, line, error)` rows of `pg_hba_file_rules` with an error and no
/// rule (the file name only from 16 on, where includes exist).
pub fn file_problems_sql(major: u32) -> &'static str {
    if major >= 16 {
        "select file_name, line_number, error from pg_hba_file_rules \
         where error is not null and type is null \
         order by rule_number nulls last, file_name, line_number"
    } else {
        "select null::text, line_number, error from pg_hba_file_rules \
         where error is not null and type is null order by line_number"
    }
}

/// A future returned by [`Reconnect::reconnect`].
pub type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<Client, tokio_postgres::Error>> + Send + 'static>>;

/// Opens a new superuser session to the same server; used to confirm a
/// reload from a freshly forked server process.
///
/// Implemented for [`tokio_postgres::Config`] (plain connection, e.g. over
/// the unix socket) and for closures returning a [`ConnectFuture`] (TLS or
/// anything else the caller's own connect code does).
pub trait Reconnect: Send + Sync {
    /// Opens the session; the connection task is the implementor's business.
    fn reconnect(&self) -> ConnectFuture;
}

impl Reconnect for tokio_postgres::Config {
    fn reconnect(&self) -> ConnectFuture {
        let config = self.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok(client)
        })
    }
}

impl<F> Reconnect for F
where
    F: Fn() -> ConnectFuture + Send + Sync,
{
    fn reconnect(&self) -> ConnectFuture {
        self()
    }
}

/// A callback receiving [`InstallEvent`]s.
pub type EventSink = Arc<dyn Fn(InstallEvent) + Send + Sync>;

/// How an installation behaves. `Default` gives the safe settings.
#[derive(Clone)]
pub struct InstallOptions {
    /// Edit even though the file on disk already has lines the server
    /// rejects (default false: refuse and name them).
    pub force: bool,
    /// How long to wait for another installer's lock (default 60 s).
    pub lock_timeout: Duration,
    /// How many backups to keep (default 10); older ones are removed after
    /// a successful installation.
    pub backups_kept: usize,
    /// fsync files and the directory (default true). Turning it off gives
    /// up crash safety; it exists to measure what durability costs.
    pub fsync: bool,
    /// Validate the new text offline before writing (default true).
    pub offline_validation: bool,
    /// The caller's own [`Validation`] of the text it expects its edit to
    /// produce (default none): when the edit produces exactly that text and
    /// the verdict still holds (same server version and settings, every
    /// included file reads the same under the lock), it stands for the
    /// offline validation instead of a second whole-file pass; otherwise
    /// the text is validated again.
    pub validated: Option<Arc<Validation>>,
    /// How long to wait for the server to confirm a reload (default 10 s).
    pub reload_timeout: Duration,
    /// Opens new sessions to confirm the reload from a freshly forked server
    /// process (strongly recommended). Without it the installer can only see
    /// that its own session was signalled ([`ReloadConfirmation::OwnSession`]).
    pub reconnect: Option<Arc<dyn Reconnect>>,
    /// Receives progress events, e.g. to print "waiting for lock held by pid
    /// N". Called synchronously, right after each step completes.
    pub events: Option<EventSink>,
    /// The caller's name for the lock, temp and backup files (default:
    /// [`Naming::default`]). Callers that edit the same file must agree on
    /// it: the lock is only shared under one name.
    pub naming: Naming,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            force: false,
            lock_timeout: Duration::from_secs(60),
            backups_kept: 10,
            fsync: true,
            offline_validation: true,
            validated: None,
            reload_timeout: Duration::from_secs(10),
            reconnect: None,
            events: None,
            naming: Naming::default(),
        }
    }
}

impl fmt::Debug for InstallOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallOptions")
            .field("force", &self.force)
            .field("lock_timeout", &self.lock_timeout)
            .field("backups_kept", &self.backups_kept)
            .field("fsync", &self.fsync)
            .field("offline_validation", &self.offline_validation)
            .field("validated", &self.validated.as_ref().map(|_| ".."))
            .field("reload_timeout", &self.reload_timeout)
            .field("reconnect", &self.reconnect.as_ref().map(|_| ".."))
            .field("events", &self.events.as_ref().map(|_| ".."))
            .field("naming", &self.naming)
            .finish()
    }
}

/// A step of the installation, reported right after it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstallStep {
    /// The lock is held and stale temp files are gone.
    Locked,
    /// The backup of the old file is written, synced and named.
    BackupWritten,
    /// The new text is in the temp file, not yet synced.
    TempWritten,
    /// The temp file is fsynced.
    TempSynced,
    /// The temp file was renamed over the hba file and the directory synced.
    Renamed,
    /// The server found no error in the new file on disk.
    ServerChecked,
    /// The old bytes were put back after a failure.
    RolledBack,
    /// `pg_reload_conf()` was sent.
    ReloadSent,
    /// The reload was confirmed.
    ReloadConfirmed,
}

impl InstallStep {
    /// Every step, in the order a successful installation passes them.
    pub const ALL_SUCCESSFUL: [InstallStep; 8] = [
        InstallStep::Locked,
        InstallStep::BackupWritten,
        InstallStep::TempWritten,
        InstallStep::TempSynced,
        InstallStep::Renamed,
        InstallStep::ServerChecked,
        InstallStep::ReloadSent,
        InstallStep::ReloadConfirmed,
    ];

    /// A short, stable name (`after_backup` style names are the tests').
    pub fn name(self) -> &'static str {
        match self {
            InstallStep::Locked => "locked",
            InstallStep::BackupWritten => "backup_written",
            InstallStep::TempWritten => "temp_written",
            InstallStep::TempSynced => "temp_synced",
            InstallStep::Renamed => "renamed",
            InstallStep::ServerChecked => "server_checked",
            InstallStep::RolledBack => "rolled_back",
            InstallStep::ReloadSent => "reload_sent",
            InstallStep::ReloadConfirmed => "reload_confirmed",
        }
    }
}

/// Progress of an installation, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallEvent {
    /// Another process holds the lock; this one waits (sent once).
    WaitingForLock {
        /// The lock file.
        lock_file: PathBuf,
        /// The holder's pid, as it wrote it into the lock file.
        holder_pid: Option<u32>,
    },
    /// A temp file of a killed run was removed.
    StaleTempRemoved {
        /// The removed file.
        path: PathBuf,
    },
    /// An old backup was removed.
    BackupPruned {
        /// The removed file.
        path: PathBuf,
    },
    /// A step completed.
    Step(InstallStep),
}

impl fmt::Display for InstallEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallEvent::WaitingForLock {
                lock_file,
                holder_pid: Some(pid),
            } => {
                write!(
                    f,
                    "waiting for lock held by pid {pid} ({})",
                    lock_file.display()
                )
            }
            InstallEvent::WaitingForLock {
                lock_file,
                holder_pid: None,
            } => {
                write!(f, "waiting for lock {}", lock_file.display())
            }
            InstallEvent::StaleTempRemoved { path } => {
                write!(f, "removed {} left by an interrupted run", path.display())
            }
            InstallEvent::BackupPruned { path } => {
                write!(f, "removed old backup {}", path.display())
            }
            InstallEvent::Step(step) => write!(f, "{}", step.name()),
        }
    }
}

/// How the reload was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadConfirmation {
    /// A session opened after the reload reported a configuration load time
    /// after the reload request: the postmaster had finished reloading,
    /// pg_hba.conf included, and the file it read was the checked one.
    NewSession,
    /// Only the installer's own session saw the reload: the postmaster got
    /// the signal and re-read postgresql.conf; its pg_hba.conf reload follows
    /// immediately but was not observed.
    OwnSession,
}

/// Which offline validation an installation relied on (step 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfflineValidation {
    /// None: the file did not change, or
    /// [`InstallOptions::offline_validation`] is off.
    NotRun,
    /// The caller's [`InstallOptions::validated`], which still held.
    Reused,
    /// Its own whole-file pass.
    Run,
}

/// What an installation did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InstallReport {
    /// The hba file.
    pub path: PathBuf,
    /// The server's major version.
    pub server_major: u32,
    /// Whether the file's bytes changed.
    pub changed: bool,
    /// The backup of the previous content, when the file changed.
    pub backup: Option<PathBuf>,
    /// Backups removed because more than `backups_kept` existed.
    pub pruned_backups: Vec<PathBuf>,
    /// Temp files of interrupted runs that were removed.
    pub stale_temps_removed: Vec<PathBuf>,
    /// Problems the file already had when `force` let the edit go on.
    pub forced_over: Vec<HbaProblem>,
    /// How the reload was confirmed; `None` when no reload was needed (the
    /// file is unchanged and older than the server's last reload).
    pub reload: Option<ReloadConfirmation>,
    /// Time spent waiting for the lock.
    pub lock_wait: Duration,
    /// Time spent in fsync (files and directory).
    pub fsync_time: Duration,
    /// Whose offline validation of the new text it relied on.
    pub offline_validation: OfflineValidation,
}

/// Replaces the server's pg_hba file with `new_text` (see the module
/// documentation for the steps and guarantees).
pub async fn install(
    client: &Client,
    hba_path: &Path,
    new_text: &[u8],
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    edit(
        client,
        hba_path,
        |_old: &[u8]| Ok::<_, std::convert::Infallible>(new_text.to_vec()),
        options,
    )
    .await
}

/// Applies `edit` to the current content of the server's pg_hba file under
/// the lock and installs the result (see the module documentation).
///
/// `edit` receives the bytes on disk and returns the new bytes; returning
/// them unchanged installs nothing (the server is still reloaded when the
/// file is newer than its last reload, so a run interrupted after the
/// rename converges). Its error aborts the installation
/// ([`InstallError::Edit`]).
pub async fn edit<F, E>(
    client: &Client,
    hba_path: &Path,
    edit: F,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError>
where
    F: FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    let events = |event: InstallEvent| {
        if let Some(sink) = &options.events {
            sink(event);
        }
    };
    let facts = server::facts(client).await?;
    check_same_file(hba_path, &facts.hba_file)?;
    let paths = HbaPaths::new(hba_path, &options.naming)?;

    let lock_path = HbaLock::path_for(&paths.dir, &paths.name, &options.naming);
    let (mut lock, lock_wait) = HbaLock::acquire(&lock_path, options.lock_timeout, &events).await?;
    let stale_temps_removed = paths.remove_stale_temps()?;
    for path in &stale_temps_removed {
        events(InstallEvent::StaleTempRemoved { path: path.clone() });
    }
    events(InstallEvent::Step(InstallStep::Locked));

    let old = std::fs::read(hba_path).map_err(|e| InstallError::from_io("read", hba_path, e))?;
    let meta =
        std::fs::metadata(hba_path).map_err(|e| InstallError::from_io("stat", hba_path, e))?;
    let owner = Ownership::of(&meta);
    // The lock file sits next to pg_hba.conf, which may be inside the data
    // directory: owned by root there, it would make every pg_basebackup
    // and pg_rewind of the server fail ("could not open file ./<lock
    // file>: Permission denied"). It belongs to the
    // hba file's owner, like the backups. Best effort: not root, no chown.
    let _ = std::os::unix::fs::chown(&lock_path, Some(owner.uid), Some(owner.gid));
    files::check_writable(hba_path)?;

    // This very file version was installed and its reload confirmed by an
    // installer (a version with server errors is never recorded): the
    // server parsed it without errors then, so asking again only costs a
    // whole-file parse (measured by the end-to-end add benchmark). Errors that appeared
    // since without a change of the file (an included file edited, a
    // setting changed) are still caught by the check of the new file in
    // step 9, which then puts the old bytes back.
    let existing = if lock.loaded() == Some(FileId::of(&meta)) {
        Vec::new()
    } else {
        server::file_problems(client, facts.major, "check the current pg_hba.conf").await?
    };
    if !existing.is_empty() && !options.force {
        return Err(InstallError::ExistingErrors {
            path: hba_path.to_path_buf(),
            problems: existing,
        });
    }

    let new = edit(&old).map_err(|e| InstallError::Edit(e.into()))?;
    let changed = new != old;
    let mut syncer = Syncer {
        enabled: options.fsync,
        spent: Duration::ZERO,
    };
    let mut backup = None;
    let mut offline_validation = OfflineValidation::NotRun;

    if changed {
        if options.offline_validation {
            let settings = &facts.validation;
            let shared = options
                .validated
                .as_deref()
                .filter(|v| v.holds_for(hba_path, &new, facts.major, settings));
            let fresh;
            let validation = match shared {
                Some(v) => {
                    offline_validation = OfflineValidation::Reused;
                    v
                }
                None => {
                    offline_validation = OfflineValidation::Run;
                    fresh = validate::validate(hba_path, &new, facts.major, settings);
                    &fresh
                }
            };
            if !validation.problems().is_empty() {
                return Err(InstallError::ValidationFailed {
                    major: facts.major,
                    problems: validation.problems().to_vec(),
                });
            }
        }
        let backup_path = paths.new_backup_path();
        files::replace_atomically(&paths, &backup_path, owner, &old, &mut syncer)?;
        events(InstallEvent::Step(InstallStep::BackupWritten));
        let written = write_new(&paths, owner, &new, &mut syncer, &events);
        let undo = |failure: InstallError, syncer: &mut Syncer| {
            rollback(&paths, owner, &old, &backup_path, failure, syncer, &events)
        };
        match written {
            Ok(()) => {}
            Err(NewFileError::BeforeRename(err)) => {
                // Nothing replaced: the backup would only duplicate the file.
                let _ = std::fs::remove_file(&backup_path);
                return Err(err);
            }
            Err(NewFileError::AfterRename(err)) => return Err(undo(err, &mut syncer)),
        }
        match server::file_problems(client, facts.major, "check the new pg_hba.conf").await {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                return Err(undo(InstallError::ServerRejected { problems }, &mut syncer))
            }
            Err(err) => return Err(undo(mark_restored(err), &mut syncer)),
        }
        events(InstallEvent::Step(InstallStep::ServerChecked));
        backup = Some(backup_path);
    }

    // Unchanged: reload only when the server may not run the file on disk,
    // i.e. a run was killed between rename and reload, or someone else
    // edited the file. Known when the last confirmed reload recorded this
    // very file version; guessed from the modification time otherwise.
    let needs_reload = changed
        || (lock.loaded() != Some(FileId::of(&meta))
            && modified_since_reload(&meta, facts.conf_load_time_us));
    let mut reload = None;
    if needs_reload {
        let sent_at = match server::send_reload(client).await {
            Ok(sent_at) => sent_at,
            Err(err) if changed => {
                let backup_path = backup.as_deref().expect("set when changed");
                return Err(rollback(
                    &paths,
                    owner,
                    &old,
                    backup_path,
                    mark_restored(err),
                    &mut syncer,
                    &events,
                ));
            }
            Err(err) => return Err(err),
        };
        events(InstallEvent::Step(InstallStep::ReloadSent));
        let confirmation = server::confirm_reload(
            client,
            options.reconnect.as_deref(),
            sent_at,
            options.reload_timeout,
        )
        .await?;
        // The postmaster parsed whatever was on disk when it reloaded; the
        // lock keeps other installers out, this catches hand edits.
        let now =
            std::fs::read(hba_path).map_err(|e| InstallError::from_io("read", hba_path, e))?;
        if now != new {
            return Err(InstallError::ChangedUnderneath {
                path: hba_path.to_path_buf(),
            });
        }
        let loaded =
            std::fs::metadata(hba_path).map_err(|e| InstallError::from_io("stat", hba_path, e))?;
        // Unchanged and forced over errors: not recorded, so the next run
        // asks the server about this version again.
        if changed || existing.is_empty() {
            lock.record_loaded(FileId::of(&loaded));
        }
        events(InstallEvent::Step(InstallStep::ReloadConfirmed));
        reload = Some(confirmation);
    }

    // Also when unchanged: a killed run may have left one backup too many.
    let pruned_backups = paths.prune_backups(options.backups_kept)?;
    for path in &pruned_backups {
        events(InstallEvent::BackupPruned { path: path.clone() });
    }

    Ok(InstallReport {
        path: hba_path.to_path_buf(),
        server_major: facts.major,
        changed,
        backup,
        pruned_backups,
        stale_temps_removed,
        forced_over: existing,
        reload,
        lock_wait,
        fsync_time: syncer.spent,
        offline_validation,
    })
}

/// The path of the connected server's hba file (`SHOW hba_file`); needs a
/// superuser connection.
pub async fn server_hba_file(client: &Client) -> Result<PathBuf, InstallError> {
    Ok(server::facts(client).await?.hba_file)
}

/// A failure of [`write_new`]: before the rename the file is untouched,
/// after it the new file is in place and must be rolled back.
enum NewFileError {
    BeforeRename(InstallError),
    AfterRename(InstallError),
}

/// Step 8 of the module documentation: temp file, fsync, rename, fsync dir.
fn write_new(
    paths: &HbaPaths,
    owner: Ownership,
    new: &[u8],
    syncer: &mut Syncer,
    events: &dyn Fn(InstallEvent),
) -> Result<(), NewFileError> {
    let mut temp = TempFile::create(paths, owner, new).map_err(NewFileError::BeforeRename)?;
    events(InstallEvent::Step(InstallStep::TempWritten));
    temp.sync(syncer).map_err(NewFileError::BeforeRename)?;
    events(InstallEvent::Step(InstallStep::TempSynced));
    temp.rename_to(&paths.file)
        .map_err(NewFileError::BeforeRename)?;
    syncer
        .sync_dir(&paths.dir)
        .map_err(NewFileError::AfterRename)?;
    events(InstallEvent::Step(InstallStep::Renamed));
    Ok(())
}

/// Puts the old bytes back after `failure`; returns the error to report.
fn rollback(
    paths: &HbaPaths,
    owner: Ownership,
    old: &[u8],
    backup: &Path,
    failure: InstallError,
    syncer: &mut Syncer,
    events: &dyn Fn(InstallEvent),
) -> InstallError {
    // Durability matters most here: always fsync the restore.
    let mut durable = Syncer {
        enabled: true,
        spent: Duration::ZERO,
    };
    let restored = files::replace_atomically(paths, &paths.file, owner, old, &mut durable);
    syncer.spent += durable.spent;
    match restored {
        Ok(()) => {
            events(InstallEvent::Step(InstallStep::RolledBack));
            failure
        }
        Err(restore_error) => InstallError::RollbackFailed {
            path: paths.file.clone(),
            backup: backup.to_path_buf(),
            failure: Box::new(failure),
            restore_error: Box::new(restore_error),
        },
    }
}

fn mark_restored(err: InstallError) -> InstallError {
    match err {
        InstallError::ServerUnreachable { during, source, .. } => InstallError::ServerUnreachable {
            during,
            source,
            file_restored: true,
        },
        other => other,
    }
}

/// Whether the file was modified at or after the server's last reload, i.e.
/// the server may not run what is on disk.
fn modified_since_reload(meta: &std::fs::Metadata, conf_load_time_us: i64) -> bool {
    let Ok(modified) = meta.modified() else {
        return true;
    };
    let modified_us = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    // File times come from the kernel's coarse clock (a tick, up to 10 ms,
    // behind); err on the side of one reload too many.
    modified_us + COARSE_CLOCK_MARGIN_US >= conf_load_time_us
}

/// Margin for coarse file timestamps (see [`modified_since_reload`]).
const COARSE_CLOCK_MARGIN_US: i64 = 20_000;

fn check_same_file(given: &Path, server: &Path) -> Result<(), InstallError> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canonical(given) == canonical(server) {
        Ok(())
    } else {
        Err(InstallError::NotTheServersHbaFile {
            given: given.to_path_buf(),
            server: server.to_path_buf(),
        })
    }
}
