//! Errors of pg_hba.conf installation: one variant per thing that can go
//! wrong, each with the OS error or SQLSTATE behind it and a sentence an
//! operator can act on.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// One problem in a pg_hba file, as the server's `pg_hba_file_rules` view or
/// the offline validator reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaProblem {
    /// The file holding the line (PostgreSQL 16+ reports included files;
    /// `None` when the source does not say).
    pub file: Option<PathBuf>,
    /// 1-based line number, when known.
    pub line: Option<u32>,
    /// What is wrong, in the server's (or validator's) words.
    pub message: String,
}

impl fmt::Display for HbaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: {}", file.display(), line, self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            (None, Some(line)) => write!(f, "line {}: {}", line, self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// Formats a list of problems as `; `-separated `file:line: message` items.
pub(crate) struct Problems<'a>(pub(crate) &'a [HbaProblem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Why a pg_hba.conf installation did not happen (or was undone).
///
/// Unless a variant says otherwise, the hba file is unchanged when one of
/// these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The connection is not a superuser's: only a superuser may read
    /// `pg_hba_file_rules` and call `pg_reload_conf()`.
    #[error("the database user {user:?} is not a superuser; installing pg_hba.conf needs a superuser connection (to check the file with pg_hba_file_rules and reload it)")]
    NotSuperuser {
        /// `current_user` of the connection.
        user: String,
    },
    /// The server could not be reached (connection closed, I/O error, server
    /// shutting down).
    #[error("cannot reach the PostgreSQL server while {during}{}: {source}", if *.file_restored { " (the previous pg_hba.conf was put back)" } else { "" })]
    ServerUnreachable {
        /// What was being done.
        during: &'static str,
        /// True when the new file had already been written and the old
        /// bytes were restored.
        file_restored: bool,
        /// The client error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A query failed for another reason (see [`InstallError::sqlstate`]).
    #[error("the server refused to {during}: {source}")]
    Query {
        /// What was being done.
        during: &'static str,
        /// The client error, with its SQLSTATE.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The path given is not the `hba_file` of the connected server, so the
    /// server could not check it.
    #[error("{given} is not the pg_hba.conf of the connected server (its hba_file is {server}); refusing to install a file the server will not check")]
    NotTheServersHbaFile {
        /// The path the caller gave.
        given: PathBuf,
        /// `SHOW hba_file`.
        server: PathBuf,
    },
    /// Another installer held the lock for longer than the timeout.
    #[error("another process{} holds the lock {lock_file} and did not release it within {waited:?}; try again later", holder_pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    LockTimeout {
        /// The lock file.
        lock_file: PathBuf,
        /// The pid written into the lock file by its holder, if readable.
        holder_pid: Option<u32>,
        /// How long this caller waited.
        waited: Duration,
    },
    /// The file, or its directory, cannot be written: EPERM (immutable or
    /// append-only attribute), EACCES, EROFS (read-only file system).
    #[error("cannot write {path} ({}): {source}", not_writable_hint(source))]
    NotWritable {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No space left (ENOSPC), quota exceeded (EDQUOT) or file size limit
    /// reached (EFBIG).
    #[error("the disk holding {path} is full or a size limit was reached; nothing was changed: {source}")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another I/O error.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "rename", ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file on disk already has lines the server rejects; editing it
    /// would hide them. Fix them first or pass `force`.
    #[error(
        "{path} already has lines PostgreSQL rejects, so it was not edited (fix them or force): {}",
        Problems(problems)
    )]
    ExistingErrors {
        /// The hba file.
        path: PathBuf,
        /// The rejected lines.
        problems: Vec<HbaProblem>,
    },
    /// The offline validator rejected the new text; nothing was written.
    #[error(
        "the new pg_hba.conf would be rejected by PostgreSQL {major}; nothing was written: {}",
        Problems(problems)
    )]
    ValidationFailed {
        /// The server's major version the text was validated for.
        major: u32,
        /// The rejected lines.
        problems: Vec<HbaProblem>,
    },
    /// The server found errors in the new file on disk; the old file was put
    /// back at once and the server was not reloaded.
    #[error("PostgreSQL rejected the new pg_hba.conf, so the previous file was restored and nothing was reloaded: {}", Problems(problems))]
    ServerRejected {
        /// The rejected lines, as `pg_hba_file_rules` reported them.
        problems: Vec<HbaProblem>,
    },
    /// Restoring the old file after a failure failed too: the file on disk
    /// is the new one and the server is still running the old rules. The
    /// backup holds the old bytes.
    #[error("{failure}; restoring the previous pg_hba.conf ALSO failed ({restore_error}); copy the backup {backup} over {path} by hand")]
    RollbackFailed {
        /// The hba file.
        path: PathBuf,
        /// The backup with the old bytes.
        backup: PathBuf,
        /// Why the installation was being undone.
        failure: Box<InstallError>,
        /// Why the restore failed.
        restore_error: Box<InstallError>,
    },
    /// The caller's edit function failed; nothing was written.
    #[error("the edit of pg_hba.conf failed; nothing was written: {0}")]
    Edit(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The file changed on disk while this process held the lock (someone
    /// edited it without taking the lock).
    #[error("{path} was changed by another program during the installation; its current content was left as is and nothing was reloaded")]
    ChangedUnderneath {
        /// The hba file.
        path: PathBuf,
    },
    /// `pg_reload_conf()` was sent but no new server process saw the new
    /// configuration in time (a postgresql.conf with errors also prevents
    /// it: see the server log).
    #[error("the server was asked to reload but did not confirm it within {waited:?}; see the server log (a postgresql.conf error prevents the reload)")]
    ReloadNotConfirmed {
        /// How long the confirmation was awaited.
        waited: Duration,
    },
}

fn not_writable_hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EPERM) => "operation not permitted: is it immutable or append-only? see lsattr",
        Some(libc::EROFS) => "the file system is read-only",
        Some(libc::EACCES) => "permission denied",
        _ => "not writable",
    }
}

impl InstallError {
    /// Whether this is a safety check that [`InstallOptions::force`]
    /// passes (the file already has lines the server rejects).
    ///
    /// [`InstallOptions::force`]: super::InstallOptions::force
    pub fn is_refusal(&self) -> bool {
        matches!(self, InstallError::ExistingErrors { .. })
    }

    /// The SQLSTATE of the server error behind this error, if any.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            InstallError::ServerUnreachable { source, .. } | InstallError::Query { source, .. } => {
                source.code()
            }
            InstallError::RollbackFailed { failure, .. } => failure.sqlstate(),
            _ => None,
        }
    }

    /// The OS error behind this error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            InstallError::NotWritable { source, .. }
            | InstallError::DiskFull { source, .. }
            | InstallError::Io { source, .. } => Some(source),
            InstallError::RollbackFailed { failure, .. } => failure.io_error(),
            _ => None,
        }
    }

    /// Classifies an OS error met while writing `path`.
    pub(crate) fn from_io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES | libc::EROFS | libc::ETXTBSY) => {
                InstallError::NotWritable { path, source }
            }
            Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT) => {
                InstallError::DiskFull { path, source }
            }
            _ => InstallError::Io {
                action,
                path,
                source,
            },
        }
    }

    /// Classifies a client error: connection-level failures and server
    /// shutdowns are "unreachable", privilege errors "not superuser".
    pub(crate) fn from_pg(during: &'static str, source: tokio_postgres::Error) -> Self {
        Self::from_pg_restored(during, source, false)
    }

    pub(crate) fn from_pg_restored(
        during: &'static str,
        source: tokio_postgres::Error,
        file_restored: bool,
    ) -> Self {
        let unreachable = match source.code() {
            None => true,
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P")
            }
        };
        if unreachable {
            InstallError::ServerUnreachable {
                during,
                file_restored,
                source,
            }
        } else {
            InstallError::Query { during, source }
        }
    }
}
