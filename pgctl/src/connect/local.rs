//! The local superuser: how an administrator's tool run as root on the
//! database server gets in without a password, the way `sudo -u postgres
//! psql` does (peer authentication over the unix socket), or through an
//! explicit superuser connection string.

use crate::conninfo::{resolve_from_process_env, ConnInfo, ParseError, ResolveError};

use super::{connect, connect_as_os_user, ConnectError, ConnectParams, Connected};

/// The socket directory of a stock Debian/Ubuntu server.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The OS user (and role) peer authentication logs in as by default.
pub const DEFAULT_SUPERUSER: &str = "postgres";

/// Why the local superuser's connection parameters cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LocalSuperuserError {
    /// The explicit connection string does not parse.
    #[error("not a valid connection string")]
    Parse(#[source] ParseError),
    /// The parameters cannot be resolved (environment, `.pgpass`, values).
    #[error("unusable connection parameters")]
    Resolve(#[source] ResolveError),
}

/// How to open superuser sessions on this host's server: the resolved
/// parameters and, for peer authentication as root, the OS user whose
/// identity the socket connection takes.
#[derive(Clone, Debug)]
pub struct LocalSuperuser {
    /// The connection parameters.
    pub params: ConnectParams,
    /// The OS user to connect as (peer authentication), when running as
    /// root without an explicit connection string.
    pub os_user: Option<String>,
}

impl LocalSuperuser {
    /// `conn` when given (a superuser's connection string); else peer login
    /// as `postgres` to database `postgres` over [`DEFAULT_SOCKET_DIR`] at
    /// `port` (default: `PGPORT`, else 5432), with the identity of OS user
    /// `postgres` when this process runs as root.
    pub fn new(
        conn: Option<&str>,
        port: Option<u16>,
    ) -> Result<LocalSuperuser, LocalSuperuserError> {
        let (info, os_user) = match conn {
            Some(text) => (
                ConnInfo::parse_checked(text).map_err(LocalSuperuserError::Parse)?,
                None,
            ),
            None => {
                let mut builder = ConnInfo::builder()
                    .host(DEFAULT_SOCKET_DIR)
                    .user(DEFAULT_SUPERUSER)
                    .dbname(DEFAULT_SUPERUSER);
                if let Some(port) = port {
                    builder = builder.port(port);
                }
                let info = builder.build();
                let root = crate::os::is_root();
                (info, root.then(|| DEFAULT_SUPERUSER.to_owned()))
            }
        };
        let params = resolve_from_process_env(&info)
            .map_err(LocalSuperuserError::Resolve)?
            .params;
        Ok(LocalSuperuser { params, os_user })
    }

    /// Opens a session.
    pub async fn connect(&self) -> Result<Connected, ConnectError> {
        match &self.os_user {
            Some(u) => connect_as_os_user(&self.params, u).await,
            None => connect(&self.params).await,
        }
    }

    /// The same, to database `dbname`.
    pub fn to_database(&self, dbname: &str) -> LocalSuperuser {
        let mut other = self.clone();
        other.params.dbname = dbname.to_owned();
        other
    }
}
