//! The three database options: what each asks and prints, ending with the
//! connection string to store. The checks and the creation are
//! `knocker_ops::installer`'s.

use std::net::IpAddr;

use knocker_ops::installer::{self as ops, APP_NAME};
use knocknoc_conf::DatabaseUrl;
use pgctl::connect::{self, ConnectParams, Connected, LocalSuperuser, LocalSuperuserError};
use pgctl::conninfo::{ConnInfo, Keyword};

use crate::ui::Term;
use crate::{Abort, Args};

/// The environment variable that can carry the connection string.
const URL_ENV: &str = "KNOCKNOC_DB_URL";

/// The database choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbOption {
    /// 1: local PostgreSQL, role and database created here.
    Local,
    /// 2: a new external database, checked empty and writable.
    NewExternal,
    /// 3: web node only, an existing Knocknoc database.
    ExistingExternal,
}

impl DbOption {
    /// Reads `1`, `2` or `3`.
    pub fn parse(s: &str) -> Option<DbOption> {
        match s {
            "1" => Some(DbOption::Local),
            "2" => Some(DbOption::NewExternal),
            "3" => Some(DbOption::ExistingExternal),
            _ => None,
        }
    }

    /// The option's number.
    pub fn number(self) -> u8 {
        match self {
            DbOption::Local => 1,
            DbOption::NewExternal => 2,
            DbOption::ExistingExternal => 3,
        }
    }
}

/// The option a stored DatabaseURL stands for: 1 when every host is local
/// (a unix socket, `localhost`, a loopback address, or no host at all),
/// else 3. Option 2 is never the default: once Knocknoc has created its
/// schema in a new external database, that database is an existing one.
pub fn option_for_url(url: &DatabaseUrl) -> DbOption {
    let Ok(info) = ConnInfo::parse(url.expose_secret()) else {
        return DbOption::ExistingExternal;
    };
    let hosts = info.get(Keyword::Host).unwrap_or("");
    let local = hosts.split(',').all(|h| {
        h.is_empty()
            || h.starts_with('/')
            || h.starts_with('@')
            || h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if local && info.get(Keyword::Hostaddr).is_none() {
        DbOption::Local
    } else {
        DbOption::ExistingExternal
    }
}

/// The connection string given out of band: `--db-url`, `--db-url-file`
/// (first line), or `KNOCKNOC_DB_URL`, in that order.
pub fn url_from_args(args: &Args) -> Result<Option<String>, Abort> {
    if let Some(url) = &args.db_url {
        return Ok(Some(url.trim().to_owned()));
    }
    if let Some(path) = &args.db_url_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Abort::Usage(format!(
                "--db-url-file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("").trim().to_owned();
        if line.is_empty() {
            return Err(Abort::Usage(format!(
                "--db-url-file: {} holds no connection string",
                path.display()
            )));
        }
        return Ok(Some(line));
    }
    Ok(std::env::var(URL_ENV).ok().filter(|v| !v.trim().is_empty()))
}

/// Parses and resolves a connection string, with a reason for people.
pub(crate) fn resolve(url: &str) -> Result<ConnectParams, String> {
    ops::resolve(url).map_err(|e| e.to_string())
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// Each host of the string on its own: reachable, primary or standby.
async fn report_hosts(term: &Term, params: &ConnectParams, source: Option<IpAddr>) {
    for host in ops::hosts(params, source).await {
        match host.status {
            Ok(f) => {
                let tls = if f.tls { ", TLS" } else { "" };
                term.say(&format!(
                    "  {}: {}, PostgreSQL {}{tls}",
                    host.name, f.role, f.version
                ));
            }
            Err(why) => term.say(&format!("  {}: unavailable ({why})", host.name)),
        }
    }
}

/// Option 3's check ([`ops::check_existing`]), said.
pub(crate) async fn check_existing(
    term: &Term,
    params: &ConnectParams,
    source: Option<IpAddr>,
) -> Result<(), String> {
    if params.hosts.len() > 1 {
        term.say("Hosts:");
        report_hosts(term, params, source).await;
    }
    let found = ops::check_existing(params, source)
        .await
        .map_err(|e| e.to_string())?;
    let tls = if found.tls { " over TLS" } else { "" };
    term.ok(&format!(
        "Connected to {} as \"{}\"{tls}: database \"{}\" has {} table(s) this role can read and write.",
        found.address, params.user, params.dbname, found.usable_tables
    ));
    Ok(())
}

/// What option 2's check found.
pub(crate) enum NewDbCheck {
    Empty,
    HasTables(Vec<String>),
}

pub(crate) async fn check_new(
    term: &Term,
    params: &ConnectParams,
    source: Option<IpAddr>,
) -> Result<NewDbCheck, String> {
    let found = ops::check_new(params, source)
        .await
        .map_err(|e| e.to_string())?;
    term.ok(&format!(
        "Connected to {} as \"{}\": database \"{}\" is writable.",
        found.address, params.user, params.dbname
    ));
    if found.tables.is_empty() {
        Ok(NewDbCheck::Empty)
    } else {
        Ok(NewDbCheck::HasTables(found.tables))
    }
}

/// The administrator connection for option 1 ([`LocalSuperuser`], as
/// knocker opens it): `--admin-conn`, else peer authentication as OS user
/// `postgres` over /var/run/postgresql (port from `PGPORT`, else 5432).
async fn admin(args: &Args) -> Result<(Connected, ConnectParams), String> {
    let who = LocalSuperuser::new(args.admin_conn.as_deref(), None).map_err(|e| {
        let what = match args.admin_conn {
            Some(_) => "--admin-conn",
            None => "local administrator connection",
        };
        match e {
            LocalSuperuserError::Parse(e) => format!("{what}: Not a valid connection string: {e}"),
            LocalSuperuserError::Resolve(e) => match args.admin_conn {
                Some(_) => format!("{what}: Unusable connection string: {e}"),
                None => format!("{what}: {e}"),
            },
        }
    })?;
    let connected = who.connect().await.map_err(|e| match args.admin_conn {
        Some(_) => format!("Cannot connect as administrator: {e}"),
        None => format!("Cannot connect to the local PostgreSQL as OS user postgres (is it installed and running?): {e}"),
    })?;
    Ok((connected, who.params))
}

/// Option 1: re-check the current local string when there is one that
/// works; otherwise create (or re-key) role and database `knocknoc` and
/// test the new string.
pub(crate) async fn local(
    args: &Args,
    term: &Term,
    current: Option<&DatabaseUrl>,
) -> Result<DatabaseUrl, Abort> {
    if let Some(url) = current.filter(|u| option_for_url(u) == DbOption::Local) {
        if let Ok(params) = resolve(url.expose_secret()) {
            term.say(&format!("Checking the current connection string {url} ..."));
            match connect::connect(&params).await {
                Ok(_) => {
                    term.ok("It works: keeping it, nothing re-created.");
                    return Ok(url.clone());
                }
                Err(e) => term.problem(&format!(
                    "{}\nCreating the database afresh.",
                    ops::explain(&e)
                )),
            }
        }
    }
    let (connected, admin_params) = admin(args).await.map_err(Abort::Check)?;
    let created = ops::create_local(&connected, &admin_params)
        .await
        .map_err(|e| Abort::Check(e.to_string()))?;
    term.ok(&format!(
        "Role \"{APP_NAME}\" {}, database \"{APP_NAME}\" {}.",
        if created.role_created {
            "created"
        } else {
            "given a new password"
        },
        if created.database_created {
            "created"
        } else {
            "already present"
        }
    ));
    ops::check_new_login(&created.url)
        .await
        .map_err(|e| Abort::Check(e.to_string()))?;
    let stored = DatabaseUrl::new(created.url).map_err(|e| Abort::Check(e.to_string()))?;
    term.ok(&format!("The new connection string works: {stored}"));
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_option_is_1_for_local_hosts_and_3_otherwise() {
        let option = |s: &str| option_for_url(&DatabaseUrl::new(s).unwrap());
        assert_eq!(
            option("postgres://u:p@127.0.0.1:5432/knocknoc"),
            DbOption::Local
        );
        assert_eq!(option("postgres://u:p@localhost/knocknoc"), DbOption::Local);
        assert_eq!(option("postgres://u:p@[::1]/knocknoc"), DbOption::Local);
        assert_eq!(
            option("host=/var/run/postgresql dbname=knocknoc"),
            DbOption::Local
        );
        assert_eq!(option("dbname=knocknoc"), DbOption::Local);
        assert_eq!(
            option("postgres://u:p@10.0.0.5/knocknoc"),
            DbOption::ExistingExternal
        );
        assert_eq!(
            option("postgres://u:p@127.0.0.1,db.example.com/knocknoc"),
            DbOption::ExistingExternal
        );
        assert_eq!(
            option("host=localhost hostaddr=10.0.0.5"),
            DbOption::ExistingExternal
        );
        assert_eq!(option("not a conninfo"), DbOption::ExistingExternal);
    }
}
