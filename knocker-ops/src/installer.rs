//! The installer's database checks (docs/ARCHITECTURE.md): option 1
//! creates the application role and database on the local server, option 2
//! checks that a new external database is reachable and writable, option 3
//! that an existing Knocknoc database is reachable and usable. Each returns
//! what it found; the binary `knocknoc-installer` prompts and prints.
//!
//! Errors ([`crate::Error`]) carry the whole sentence an operator reads as
//! their message (the cause's text included, the cause kept as source).

use std::net::IpAddr;

use pgctl::appdb;
use pgctl::connect::{self, ConnectError, ConnectErrorKind, ConnectParams, Connected};
use pgctl::conninfo::{resolve_from_process_env, ConnInfo, Keyword, TargetSessionAttrs, UriScheme};
use pgctl::naming::Naming;
use pgctl::roles::{self, EnsureRole, RoleOutcome};

use crate::Error;

/// The application role and database option 1 creates.
pub const APP_NAME: &str = "knocknoc";

/// The installer's names for what pgctl creates: the database comment
/// `created by knocknoc-installer`, the write probe
/// `knocknoc_installer_probe`.
pub fn naming() -> Naming {
    Naming::new("knocknoc-installer")
}

/// The mark of the roles it creates: `managed by knocker`, the mark the
/// knocker tools share, so a re-run rotates the role an earlier run created
/// instead of refusing it as someone else's.
pub fn role_naming() -> Naming {
    Naming::new("knocker")
}

/// Parses and resolves a connection string (syntax, keywords, values,
/// `PG*` environment, `.pgpass`), with a reason for people on failure.
pub fn resolve(url: &str) -> Result<ConnectParams, Error> {
    let info = ConnInfo::parse_checked(url)
        .map_err(|e| Error::usage(format!("Not a valid connection string: {e}")).with_source(e))?;
    let resolved = resolve_from_process_env(&info)
        .map_err(|e| Error::usage(format!("Unusable connection string: {e}")).with_source(e))?;
    Ok(resolved.params)
}

/// Connects, from `source` when given (the address the primary's
/// pg_hba.conf should see).
pub async fn open(
    params: &ConnectParams,
    source: Option<IpAddr>,
) -> Result<Connected, ConnectError> {
    match source {
        Some(ip) => connect::connect_from(params, ip).await,
        None => connect::connect(params).await,
    }
}

/// A failed connection explained, with the exact command for the primary
/// when its pg_hba.conf has no entry for the address it saw.
pub fn explain(e: &ConnectError) -> String {
    let mut text = format!("Cannot connect: {e}");
    // Only a plain "no entry" refusal: a server that refuses plain text but
    // accepts TLS (TlsRequired) needs sslmode, not a new rule.
    let hba = e
        .attempts()
        .iter()
        .filter(|a| a.kind == ConnectErrorKind::NoHbaEntry)
        .find_map(|a| a.hba.as_ref());
    if let Some(hba) = hba {
        if let Some(command) = exposedb_command(&hba.client_address) {
            text.push_str(&format!(
                "\nThe server has no pg_hba.conf entry for this host ({}). On the primary, run:\n{command}",
                hba.client_address
            ));
        }
    }
    text
}

/// [`explain`] as an error.
fn cannot_connect(e: ConnectError) -> Error {
    Error::failed(explain(&e)).with_source(e)
}

/// The command that lets client address `reported` (as the server wrote it
/// in its pg_hba refusal) in: `/32` for IPv4, `/128` for IPv6. `None` for
/// what is not an IP address (`[local]`).
pub fn exposedb_command(reported: &str) -> Option<String> {
    let addr = reported.trim_start_matches('[').trim_end_matches(']');
    let ip = addr.parse::<IpAddr>().ok()?;
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    Some(format!("sudo knocker exposedb --add \"{ip}/{prefix}\""))
}

/// One host of a multi-host connection string, tried on its own.
#[derive(Debug, Clone)]
pub struct HostState {
    /// `host:port` (or the socket directory and port).
    pub name: String,
    /// What it is, or why it could not be reached.
    pub status: Result<HostFacts, String>,
}

/// A reachable host.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// `primary`, `standby (read-only)` or `role unknown`.
    pub role: &'static str,
    /// The server's version.
    pub version: String,
    /// Whether the session is encrypted.
    pub tls: bool,
}

/// Each host of `params` on its own: reachable, primary or standby.
pub async fn hosts(params: &ConnectParams, source: Option<IpAddr>) -> Vec<HostState> {
    let mut out = Vec::new();
    for host in &params.hosts {
        let mut single = params.clone();
        single.hosts = vec![host.clone()];
        single.target_session_attrs = Default::default();
        let name = if host.is_unix_socket() {
            format!("{} (port {})", host.host, host.port)
        } else {
            format!("{}:{}", host.host, host.port)
        };
        let status = match open(&single, source).await {
            Ok(c) => {
                let role = match pgctl::server::is_in_recovery(c.client()).await {
                    Ok(true) => "standby (read-only)",
                    Ok(false) => PRIMARY,
                    Err(_) => "role unknown",
                };
                let version = c.server_facts().server_version.clone().unwrap_or_default();
                Ok(HostFacts {
                    role,
                    version,
                    tls: c.is_tls(),
                })
            }
            Err(e) => Err(e
                .main_attempt()
                .map(|a| a.message.clone())
                .unwrap_or_else(|| e.to_string())),
        };
        out.push(HostState { name, status });
    }
    out
}

/// One `HOST:PORT` of `--db-hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbHost {
    /// A host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

/// Reads `--db-hosts`: comma-separated `HOST:PORT` (IPv6 as `[ADDR]:PORT`),
/// at least one. Refused as bad input: an empty host, a missing or bad
/// port, a character that would change how the string or knocknoc.conf is
/// read (`#`, quotes, backslash, blanks, line breaks, other control
/// characters, `/`, `@`, `?`, `=`), and a host given twice.
pub fn parse_db_hosts(list: &str) -> Result<Vec<DbHost>, Error> {
    let mut out: Vec<DbHost> = Vec::new();
    for entry in list.split(',') {
        let bad = |why: &str| Error::usage(format!("--db-hosts: {entry:?}: {why}"));
        if let Some(c) = entry
            .chars()
            .find(|c| c.is_control() || c.is_whitespace() || "#'\"\\/@?=&%".contains(*c))
        {
            return Err(bad(&format!("{c:?} is not allowed in HOST:PORT")));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (addr, port) = rest
                .split_once("]:")
                .ok_or_else(|| bad("expected [IPV6]:PORT"))?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address in brackets"))?;
            (addr, port)
        } else {
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| bad("expected HOST:PORT"))?;
            if host.contains([':', '[', ']']) {
                return Err(bad("an IPv6 address goes in brackets: [ADDR]:PORT"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
        if out
            .iter()
            .any(|h| h.port == port && h.host.eq_ignore_ascii_case(host))
        {
            return Err(bad("given twice"));
        }
        out.push(DbHost {
            host: host.to_owned(),
            port,
        });
    }
    Ok(out)
}

/// The stored connection string `current` with `hosts` as its hosts: user,
/// password, database and every option kept, `hostaddr` dropped (it named
/// the old host), `target_session_attrs=read-write` added when absent so
/// that a client lands on the primary. Same form (URI scheme or
/// `key=value`) as `current`; built by [`ConnInfo`], never by pasting text.
pub fn multi_host_url(current: &str, hosts: &[DbHost]) -> Result<String, Error> {
    let info = ConnInfo::parse(current).map_err(|e| {
        Error::usage(format!(
            "The stored DatabaseURL is not a valid connection string: {e}"
        ))
        .with_source(e)
    })?;
    let mut builder = ConnInfo::builder();
    for (keyword, value) in info.iter() {
        if !matches!(keyword, Keyword::Host | Keyword::Hostaddr | Keyword::Port) {
            builder = builder.set(keyword, value);
        }
    }
    builder = builder
        .hosts(hosts.iter().map(|h| h.host.as_str()))
        .ports(hosts.iter().map(|h| h.port));
    if info.get(Keyword::TargetSessionAttrs).is_none() {
        builder = builder.target_session_attrs(TargetSessionAttrs::ReadWrite);
    }
    let built = builder.build();
    let trimmed = current.trim_start();
    Ok(if trimmed.starts_with("postgresql://") {
        built.to_uri_with(UriScheme::Postgresql)
    } else if trimmed.starts_with("postgres://") {
        built.to_uri_with(UriScheme::Postgres)
    } else {
        built.to_keyword_value()
    })
}

/// What `--db-hosts`' check found.
#[derive(Debug)]
pub struct DbHostsCheck {
    /// Each host on its own: primary, standby or why it is unreachable.
    pub hosts: Vec<HostState>,
    /// Option 3's check through the whole string, or why the string is
    /// refused (no primary among the hosts, or the check failed).
    pub outcome: Result<ExistingDb, Error>,
}

/// `--db-hosts`' check: every host of `params` on its own (as option 3
/// reports them), refused unless one is a primary, then option 3's check
/// through the whole string.
pub async fn check_db_hosts(params: &ConnectParams, source: Option<IpAddr>) -> DbHostsCheck {
    let states = hosts(params, source).await;
    let primary = states
        .iter()
        .any(|h| matches!(&h.status, Ok(f) if f.role == PRIMARY));
    let outcome = if primary {
        check_existing(params, source).await
    } else {
        Err(Error::refused_always(
            "None of the hosts is a primary: web nodes would have no database to write to",
        ))
    };
    DbHostsCheck {
        hosts: states,
        outcome,
    }
}

/// [`HostFacts::role`] of a primary.
pub const PRIMARY: &str = "primary";

/// What option 3's check found: an existing application database.
#[derive(Debug, Clone)]
pub struct ExistingDb {
    /// The server address connected to.
    pub address: String,
    /// Whether the session is encrypted.
    pub tls: bool,
    /// Tables this role can both read and write.
    pub usable_tables: usize,
}

/// Option 3's check: connect as the string says and find a schema this
/// role can read and write.
pub async fn check_existing(
    params: &ConnectParams,
    source: Option<IpAddr>,
) -> Result<ExistingDb, Error> {
    let connected = open(params, source).await.map_err(cannot_connect)?;
    let schema = appdb::check_application_schema(connected.client())
        .await
        .map_err(|e| Error::failed(format!("Connected, but {e}")).with_source(e))?;
    if !schema.is_usable() {
        let what = if schema.tables.is_empty() {
            "holds no tables".to_owned()
        } else {
            format!(
                "has {} table(s), none of which role \"{}\" can both SELECT from and INSERT into",
                schema.tables.len(),
                params.user
            )
        };
        return Err(Error::failed(format!(
            "Database \"{}\" {what}: it is not an existing Knocknoc database (for a new, empty database choose option 2)",
            params.dbname
        )));
    }
    Ok(ExistingDb {
        address: connected.address().to_string(),
        tls: connected.is_tls(),
        usable_tables: schema.usable().count(),
    })
}

/// What option 2's check found: a writable database, empty or not.
#[derive(Debug, Clone)]
pub struct NewDb {
    /// The server address connected to.
    pub address: String,
    /// The tables it already holds (schema-qualified); empty when empty.
    pub tables: Vec<String>,
}

/// Option 2's check: connect, prove the role can create a table (rolled
/// back), and list what the database already holds.
pub async fn check_new(params: &ConnectParams, source: Option<IpAddr>) -> Result<NewDb, Error> {
    let mut connected = open(params, source).await.map_err(cannot_connect)?;
    appdb::check_can_create(connected.client_mut(), &naming())
        .await
        .map_err(|e| {
            Error::failed(format!(
                "Role \"{}\" cannot create objects in database \"{}\": {e}",
                params.user, params.dbname
            ))
            .with_source(e)
        })?;
    let tables = appdb::tables(connected.client())
        .await
        .map_err(|e| Error::failed(format!("Connected, but {e}")).with_source(e))?;
    Ok(NewDb {
        address: connected.address().to_string(),
        tables: tables.iter().map(|t| t.qualified_name()).collect(),
    })
}

/// What option 1 created.
#[derive(Debug, Clone)]
pub struct LocalDb {
    /// The application's connection string (with the new password).
    pub url: String,
    /// Whether the role was created (else it got a new password).
    pub role_created: bool,
    /// Whether the database was created (else it was there).
    pub database_created: bool,
}

/// Option 1 on the local server, as the superuser `admin` (with its
/// connection parameters): role and database [`APP_NAME`], a new password,
/// and a check that the new string logs in and can create tables.
pub async fn create_local(
    admin: &Connected,
    admin_params: &ConnectParams,
) -> Result<LocalDb, Error> {
    let client = admin.client();
    let port: u16 = client
        .query_one("SELECT current_setting('port')::int", &[])
        .await
        .map(|r| r.get::<_, i32>(0) as u16)
        .map_err(|e| Error::failed(format!("Cannot read the server's port: {e}")).with_source(e))?;
    let host = admin_params
        .hosts
        .iter()
        .find(|h| !h.is_unix_socket())
        .map(|h| {
            h.hostaddr
                .map(|a| a.to_string())
                .unwrap_or_else(|| h.host.clone())
        })
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let outcome = roles::ensure_login_role(
        client,
        APP_NAME,
        &EnsureRole {
            rotate_password: true,
            naming: role_naming(),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| {
        Error::failed(format!("Cannot create the application role: {e}")).with_source(e)
    })?;
    let password = outcome
        .password()
        .cloned()
        .ok_or_else(|| Error::failed("the application role's password could not be set"))?;
    let database_created = appdb::ensure_database(client, APP_NAME, APP_NAME, &naming())
        .await
        .map_err(|e| Error::failed(format!("Cannot create the database: {e}")).with_source(e))?;
    let url = ConnInfo::builder()
        .host(host)
        .port(port)
        .user(APP_NAME)
        .password(password.expose())
        .dbname(APP_NAME)
        .build()
        .to_uri();
    Ok(LocalDb {
        url,
        role_created: matches!(outcome, RoleOutcome::Created(_)),
        database_created,
    })
}

/// Option 1's last step: the new string logs in and can create tables.
pub async fn check_new_login(url: &str) -> Result<(), Error> {
    let params = resolve(url).map_err(|e| Error::failed(e.to_string()))?;
    let mut app = connect::connect(&params).await.map_err(|e| {
        Error::failed(format!("The new role cannot log in: {}", explain(&e))).with_source(e)
    })?;
    appdb::check_can_create(app.client_mut(), &naming())
        .await
        .map_err(|e| {
            Error::failed(format!("The new role cannot create tables: {e}")).with_source(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposedb_command_uses_host_prefix_per_family() {
        assert_eq!(
            exposedb_command("127.0.0.3").as_deref(),
            Some("sudo knocker exposedb --add \"127.0.0.3/32\"")
        );
        assert_eq!(
            exposedb_command("2001:db8::7").as_deref(),
            Some("sudo knocker exposedb --add \"2001:db8::7/128\"")
        );
        assert_eq!(exposedb_command("[local]"), None);
    }

    #[test]
    fn db_hosts_accepts_names_ipv4_and_bracketed_ipv6() {
        let hosts = parse_db_hosts("db1.example:5432,10.0.0.6:5433,[2001:db8::7]:5432").unwrap();
        let got: Vec<(&str, u16)> = hosts.iter().map(|h| (h.host.as_str(), h.port)).collect();
        assert_eq!(
            got,
            [
                ("db1.example", 5432),
                ("10.0.0.6", 5433),
                ("2001:db8::7", 5432)
            ]
        );
    }

    #[test]
    fn db_hosts_refuses_bad_input_as_usage() {
        for bad in [
            "",
            ":5432",
            "db1:5432,",
            "db1",
            "db1:",
            "db1:0",
            "db1:65536",
            "db1:+5",
            "db1:54x",
            "db#1:5432",
            "'db1':5432",
            "\"db1\":5432",
            "db1\n:5432",
            "db1:5432\n",
            "db 1:5432",
            "db1:5432,DB1:5432",
            "2001:db8::7:5432",
            "[zz]:5432",
            "u@db1:5432",
            "db1/x:5432",
        ] {
            let e = parse_db_hosts(bad).expect_err(bad);
            assert_eq!(e.kind(), crate::ErrorKind::Usage, "{bad:?}");
        }
    }

    #[test]
    fn multi_host_url_keeps_credentials_and_options_and_adds_read_write() {
        let hosts = parse_db_hosts("10.0.0.5:5432,[2001:db8::7]:5433").unwrap();
        let url = multi_host_url(
            "postgres://app:p%40ss%20w@old.example:6543/knocknoc?sslmode=require&hostaddr=10.9.9.9",
            &hosts,
        )
        .unwrap();
        let info = ConnInfo::parse(&url).unwrap();
        assert!(url.starts_with("postgres://"), "{url}");
        assert_eq!(info.get(Keyword::Host), Some("10.0.0.5,2001:db8::7"));
        assert_eq!(info.get(Keyword::Port), Some("5432,5433"));
        assert_eq!(info.get(Keyword::Password), Some("p@ss w"));
        assert_eq!(info.get(Keyword::User), Some("app"));
        assert_eq!(info.get(Keyword::Dbname), Some("knocknoc"));
        assert_eq!(info.get(Keyword::Sslmode), Some("require"));
        assert_eq!(info.get(Keyword::Hostaddr), None);
        assert_eq!(info.get(Keyword::TargetSessionAttrs), Some("read-write"));

        let kv = multi_host_url(
            "host=old user=app password='a b' target_session_attrs=primary",
            &hosts,
        )
        .unwrap();
        let info = ConnInfo::parse(&kv).unwrap();
        assert!(!kv.contains("://"), "{kv}");
        assert_eq!(info.get(Keyword::Password), Some("a b"));
        assert_eq!(info.get(Keyword::TargetSessionAttrs), Some("primary"));
        assert_eq!(info.get(Keyword::Port), Some("5432,5433"));
    }
}
