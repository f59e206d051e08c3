//! Errors of the server operations ([`crate::server`], [`crate::roles`],
//! [`crate::grants`], [`crate::listen`]).
//!
//! Every variant carries what a person needs to act on it: the SQLSTATE and
//! server message for database errors, the OS error and path for file and
//! process errors, and a sentence saying what was being done. Programs match
//! on the variant or on [`Error::code`] / [`Error::os_error`], never on text.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// Result of the server operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed server operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A statement failed (or the connection broke) while doing `action`.
    #[error("{action}: {}", DbMessage(.source))]
    Sql {
        /// What was being done, e.g. "creating role \"app_remote\"".
        action: String,
        /// The driver's error (SQLSTATE via [`Error::code`]).
        #[source]
        source: tokio_postgres::Error,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "writing".
        action: String,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A command (service manager, pg_ctl, ...) could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line, for the operator to run by hand.
        command: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The operation needs superuser rights and the session lacks them.
    #[error("{action} needs a superuser connection, but role \"{user}\" is not a superuser")]
    NotSuperuser {
        /// What was attempted.
        action: String,
        /// The session user.
        user: String,
    },
    /// A name (role or database) cannot be used as given.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// "role" or "database".
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A role exists without the caller's mark (or is a superuser), so
    /// taking it over was refused.
    #[error("role \"{role}\" already exists and is not marked '{mark}'; taking it over was refused (choose another name)")]
    RoleNotManaged {
        /// The role name.
        role: String,
        /// The mark it lacks (the caller's [`crate::naming::Naming::role_comment`]).
        mark: String,
    },
    /// A role to be dropped still owns objects or holds privileges in
    /// databases other than the one it was linked to; dropping it would
    /// fail (SQLSTATE 2BP01) and reassigning them is the operator's call.
    #[error("role \"{role}\" owns objects or holds privileges in database(s) {}; only those in database \"{database}\" are reassigned. In each of those databases run REASSIGN OWNED BY {role_sql} TO {owner_sql}; DROP OWNED BY {role_sql}; (or drop the objects), then run this again", .others.join(", "))]
    RoleHasObjectsElsewhere {
        /// The role.
        role: String,
        /// The role, quoted for SQL.
        role_sql: String,
        /// The owner role, quoted for SQL.
        owner_sql: String,
        /// The database the role was linked to.
        database: String,
        /// The other databases where it has objects or privileges.
        others: Vec<String>,
    },
    /// A role that must exist does not.
    #[error("role \"{role}\" does not exist")]
    RoleMissing {
        /// The role name.
        role: String,
    },
    /// A database that must exist does not.
    #[error("database \"{database}\" does not exist")]
    DatabaseMissing {
        /// The database name.
        database: String,
    },
    /// The role that owns the application's data is a superuser: linking
    /// another login role to it would hand out superuser rights.
    #[error("the owner role \"{role}\" is a superuser; linking a remote login role to it would make that role a superuser too (give the application's own role instead)")]
    OwnerIsSuperuser {
        /// The owner role.
        role: String,
    },
    /// The login role and the owner role are the same role.
    #[error("role \"{role}\" cannot be linked to itself")]
    SelfLink {
        /// The role.
        role: String,
    },
    /// A `listen_addresses` value that cannot be set safely.
    #[error("invalid listen_addresses value {value:?}: {reason}")]
    InvalidListenAddresses {
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// `listen_addresses` cannot be changed from a configuration file
    /// because a higher-priority source sets it.
    #[error("listen_addresses is set by the server's {source_kind}, which no configuration file can override; change it there")]
    ListenSetOutsideFiles {
        /// pg_settings.source, e.g. "command line".
        source_kind: String,
    },
    /// ALTER SYSTEM is refused and the configuration has no include directory
    /// to put a file into.
    #[error("ALTER SYSTEM is not allowed on this server (allow_alter_system = off) and {} has no include_dir to add a file to; set listen_addresses = '{wanted}' by hand", .config_file.display())]
    NoIncludeDir {
        /// The main configuration file.
        config_file: PathBuf,
        /// The value that should be set.
        wanted: String,
    },
    /// The new setting was written, but another file sets the parameter
    /// later and wins.
    #[error("listen_addresses was written to {}, but {}:{} sets it later and wins; remove or change that line", .written.display(), .winner.display(), .line)]
    Overridden {
        /// Where the new value was written.
        written: PathBuf,
        /// The file whose setting wins.
        winner: PathBuf,
        /// Its line number.
        line: i32,
    },
    /// No way to restart the server was found.
    #[error("cannot tell how this server is managed ({reason}); restart it by hand or give a restart command")]
    NoManager {
        /// Why detection failed.
        reason: String,
    },
    /// The server did not come back in time after a restart.
    #[error("the server did not accept connections again within {}s after `{command}` ({}){}{}", .waited.as_secs(), ExitText(.status), Tail(.output), LastError(.last_error))]
    RestartTimeout {
        /// How long we waited.
        waited: Duration,
        /// The restart command line.
        command: String,
        /// Its exit status (`None`: still running when given up, or killed).
        status: Option<i32>,
        /// The last lines the command printed.
        output: String,
        /// The last connection error seen while waiting.
        last_error: Option<String>,
    },
    /// The server came back but does not listen where it was asked to.
    #[error("after the restart the server does not accept TCP connections on {address} (listen_addresses = '{listen_addresses}'): {source}")]
    NotListening {
        /// The address:port probed.
        address: String,
        /// The value the server reports.
        listen_addresses: String,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// After the restart the server reports a different listen_addresses.
    #[error("after the restart listen_addresses is '{actual}', not '{expected}'")]
    ListenMismatch {
        /// What was set.
        expected: String,
        /// What the server reports.
        actual: String,
    },
}

impl Error {
    /// The SQLSTATE of a database error, if this is one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Error::Sql { source, .. } => source.code(),
            _ => None,
        }
    }

    /// The OS error number of a file, process or socket error, if this is one.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::Spawn { source, .. }
            | Error::NotListening { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn sql(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let action = action.into();
        move |source| Error::Sql { action, source }
    }

    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let action = action.into();
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// The server's message with its SQLSTATE, detail and hint, or the
/// driver's own text for errors that did not come from the server.
struct DbMessage<'a>(&'a tokio_postgres::Error);

impl fmt::Display for DbMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(f, "{} (SQLSTATE {})", db.message(), db.code().code())?;
                if let Some(detail) = db.detail() {
                    write!(f, "; {detail}")?;
                }
                if let Some(hint) = db.hint() {
                    write!(f, "; hint: {hint}")?;
                }
                Ok(())
            }
            None => write!(f, "{}", self.0),
        }
    }
}

struct ExitText<'a>(&'a Option<i32>);

impl fmt::Display for ExitText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(0) => f.write_str("the command itself reported success"),
            Some(code) => write!(f, "the command exited with status {code}"),
            None => f.write_str("the command did not finish"),
        }
    }
}

struct Tail<'a>(&'a str);

impl fmt::Display for Tail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.trim();
        if text.is_empty() {
            Ok(())
        } else {
            write!(f, "; it said: {text}")
        }
    }
}

struct LastError<'a>(&'a Option<String>);

impl fmt::Display for LastError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) => write!(f, "; last connection attempt: {e}"),
            None => Ok(()),
        }
    }
}
