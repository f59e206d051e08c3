//! The application's connection string: which database and role Knocknoc
//! uses and the port it reaches the server on, from `--conn` or
//! knocknoc.conf's `DatabaseURL`. Every command that works on the
//! application's server starts here.

use std::path::Path;

use pgctl::connect::{LocalSuperuser, LocalSuperuserError, DEFAULT_SOCKET_DIR};
use pgctl::conninfo::{ConnInfo, Keyword};
use pgctl::server::ServerFacts;
use tokio_postgres::Client;

use crate::Error;

/// The application's connection string, read from `--conn` or knocknoc.conf.
#[derive(Debug, Clone)]
pub struct AppConn {
    /// The Knocknoc database.
    pub database: String,
    /// The application's role.
    pub user: String,
    /// The server's port as the application reaches it.
    pub port: u16,
}

impl AppConn {
    /// Reads and checks `conn`, else `DatabaseURL` from the knocknoc.conf
    /// at `config`.
    pub fn load(conn: Option<&str>, config: &Path) -> Result<AppConn, Error> {
        let (text, from) = match conn {
            Some(c) => (c.to_string(), "--conn".to_string()),
            None => {
                let doc = knocknoc_conf::Document::load(config).map_err(|e| {
                    Error::failed(format!(
                        "{e}\nGive the application's connection string with --conn URI, or --config PATH."
                    ))
                })?;
                let settings = doc
                    .settings()
                    .map_err(|e| Error::failed(config.display().to_string()).with_source(e))?;
                let url = settings.database_url.ok_or_else(|| {
                    Error::failed(format!(
                        "{} has no DatabaseURL; give the connection string with --conn URI",
                        config.display()
                    ))
                })?;
                (
                    url.expose_secret().to_string(),
                    format!("DatabaseURL in {}", config.display()),
                )
            }
        };
        let info = ConnInfo::parse_checked(&text).map_err(|e| {
            Error::usage(format!("{from}: not a valid connection string")).with_source(e)
        })?;
        let user = info
            .get(Keyword::User)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::usage(format!("{from}: the connection string names no user")))?
            .to_string();
        let database = info
            .get(Keyword::Dbname)
            .filter(|d| !d.is_empty())
            .unwrap_or(&user)
            .to_string();
        let port = match info.get(Keyword::Port) {
            None | Some("") => 5432,
            Some(p) => p
                .split(',')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| Error::usage(format!("{from}: bad port {p:?}")))?,
        };
        pgctl::roles::validate_name("role", &user)
            .map_err(|e| Error::usage(from.clone()).with_source(e))?;
        pgctl::roles::validate_name("database", &database)
            .map_err(|e| Error::usage(from).with_source(e))?;
        Ok(AppConn {
            database,
            user,
            port,
        })
    }

    /// `<application role><suffix>`, the role cut so that the name fits in
    /// 63 bytes (PostgreSQL's limit).
    pub fn derived_role(&self, suffix: &str) -> String {
        let mut base = self.user.clone();
        while base.len() + suffix.len() > pgctl::roles::MAX_NAME_BYTES {
            base.pop();
        }
        format!("{base}{suffix}")
    }
}

/// A connection string for `Debug` output, its password redacted (an
/// unparsable one is not shown at all).
pub fn redacted_conn(conn: &Option<String>) -> Option<String> {
    conn.as_ref().map(|t| {
        ConnInfo::parse(t)
            .map(|i| i.redacted().to_keyword_value())
            .unwrap_or_else(|_| "<unparsable>".into())
    })
}

/// Opens a session as `who`, saying how to get one when that fails.
pub async fn open_superuser(who: &LocalSuperuser) -> Result<Client, Error> {
    who.connect().await.map(|c| c.into_client()).map_err(|e| {
        Error::failed(format!(
            "cannot connect as the database administrator: {e}\n\
             Run as root on the database server (peer login as postgres over {DEFAULT_SOCKET_DIR}), \
             or give a superuser connection string with --admin-conn."
        ))
    })
}

/// A superuser session on the application's server: `admin_conn`, else
/// peer login as `postgres` over the unix socket of `port` (as that OS user
/// when running as root), with what the server said about itself. Refused
/// when the session is not a superuser's.
pub async fn superuser_session(
    admin_conn: Option<&str>,
    port: u16,
) -> Result<(Client, LocalSuperuser, ServerFacts), Error> {
    let who = LocalSuperuser::new(admin_conn, Some(port)).map_err(|e| match e {
        LocalSuperuserError::Parse(e) => {
            Error::usage("--admin-conn: not a valid connection string").with_source(e)
        }
        LocalSuperuserError::Resolve(e) => Error::usage("admin connection").with_source(e),
    })?;
    let client = open_superuser(&who).await?;
    let facts = pgctl::server::read_facts(&client)
        .await
        .map_err(|e| Error::failed("reading the server's settings").with_source(e))?;
    if !facts.is_superuser {
        return Err(Error::failed(format!(
            "the admin connection logs in as {:?}, which is not a superuser; use --admin-conn with a superuser",
            facts.user
        )));
    }
    Ok((client, who, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_roles_fit_in_63_bytes() {
        let app = AppConn {
            database: "d".into(),
            user: "a".repeat(60),
            port: 5432,
        };
        let r = app.derived_role("_replication");
        assert_eq!(r.len(), 63);
        assert!(r.ends_with("_replication"));
    }
}
