//! The three database options: what each asks, checks and creates, ending
//! with the connection string to store.

use std::net::IpAddr;

use knocknoc_conf::DatabaseUrl;
use pgctl::appdb;
use pgctl::connect::{
    self, ConnectError, ConnectErrorKind, ConnectParams, Connected, LocalSuperuser,
    LocalSuperuserError,
};
use pgctl::conninfo::{resolve_from_process_env, ConnInfo, Keyword};
use pgctl::naming::Naming;
use pgctl::roles::{self, EnsureRole};

use crate::answers::{PROMPT_EXISTING_URL, PROMPT_NEW_URL};
use crate::ui::Term;
use crate::{Abort, Args};

/// The application role and database option 1 creates.
const APP_NAME: &str = "knocknoc";

/// The installer's names for what pgctl creates: the database comment
/// `created by knocknoc-installer`, the write probe
/// `knocknoc_installer_probe`.
fn naming() -> Naming {
    Naming::new("knocknoc-installer")
}

/// The mark of the roles it creates: `managed by knocker`, the mark the
/// knocker tools share, so a re-run rotates the role an earlier run created
/// instead of refusing it as someone else's.
fn role_naming() -> Naming {
    Naming::new("knocker")
}

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

/// Parses and resolves a connection string (syntax, keywords, values,
/// `PG*` environment, `.pgpass`), with a reason for people on failure.
fn resolve(url: &str) -> Result<ConnectParams, String> {
    let info =
        ConnInfo::parse_checked(url).map_err(|e| format!("Not a valid connection string: {e}"))?;
    let resolved =
        resolve_from_process_env(&info).map_err(|e| format!("Unusable connection string: {e}"))?;
    Ok(resolved.params)
}

async fn open(params: &ConnectParams, source: Option<IpAddr>) -> Result<Connected, ConnectError> {
    match source {
        Some(ip) => connect::connect_from(params, ip).await,
        None => connect::connect(params).await,
    }
}

/// A failed connection explained, with the exact command for the primary
/// when its pg_hba.conf has no entry for the address it saw.
fn explain(e: &ConnectError) -> String {
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

/// The command that lets client address `reported` (as the server wrote it
/// in its pg_hba refusal) in: `/32` for IPv4, `/128` for IPv6. `None` for
/// what is not an IP address (`[local]`).
fn exposedb_command(reported: &str) -> Option<String> {
    let addr = reported.trim_start_matches('[').trim_end_matches(']');
    let ip = addr.parse::<IpAddr>().ok()?;
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    Some(format!("sudo knocker exposedb --add \"{ip}/{prefix}\""))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// Each host of the string on its own: reachable, primary or standby.
async fn report_hosts(term: &Term, params: &ConnectParams, source: Option<IpAddr>) {
    for host in &params.hosts {
        let mut single = params.clone();
        single.hosts = vec![host.clone()];
        single.target_session_attrs = Default::default();
        let name = if host.is_unix_socket() {
            format!("{} (port {})", host.host, host.port)
        } else {
            format!("{}:{}", host.host, host.port)
        };
        match open(&single, source).await {
            Ok(c) => {
                let role = match pgctl::server::is_in_recovery(c.client()).await {
                    Ok(true) => "standby (read-only)",
                    Ok(false) => "primary",
                    Err(_) => "role unknown",
                };
                let tls = if c.is_tls() { ", TLS" } else { "" };
                let version = c.server_facts().server_version.clone().unwrap_or_default();
                term.say(&format!("  {name}: {role}, PostgreSQL {version}{tls}"));
            }
            Err(e) => term.say(&format!("  {name}: unavailable ({})", e.kind_text())),
        }
    }
}

trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for ConnectError {
    fn kind_text(&self) -> String {
        self.main_attempt()
            .map(|a| a.message.clone())
            .unwrap_or_else(|| self.to_string())
    }
}

/// Option 3's check: connect as the string says and find a schema this
/// role can read and write.
async fn check_existing(
    term: &Term,
    params: &ConnectParams,
    source: Option<IpAddr>,
) -> Result<(), String> {
    if params.hosts.len() > 1 {
        term.say("Hosts:");
        report_hosts(term, params, source).await;
    }
    let connected = open(params, source).await.map_err(|e| explain(&e))?;
    let schema = appdb::check_application_schema(connected.client())
        .await
        .map_err(|e| format!("Connected, but {e}"))?;
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
        return Err(format!(
            "Database \"{}\" {what}: it is not an existing Knocknoc database (for a new, empty database choose option 2)",
            params.dbname
        ));
    }
    let tls = if connected.is_tls() { " over TLS" } else { "" };
    term.ok(&format!(
        "Connected to {} as \"{}\"{tls}: database \"{}\" has {} table(s) this role can read and write.",
        connected.address(),
        params.user,
        params.dbname,
        schema.usable().count()
    ));
    Ok(())
}

/// What option 2's check found.
enum NewDbCheck {
    Empty,
    HasTables(Vec<String>),
}

async fn check_new(
    term: &Term,
    params: &ConnectParams,
    source: Option<IpAddr>,
) -> Result<NewDbCheck, String> {
    let mut connected = open(params, source).await.map_err(|e| explain(&e))?;
    appdb::check_can_create(connected.client_mut(), &naming())
        .await
        .map_err(|e| {
            format!(
                "Role \"{}\" cannot create objects in database \"{}\": {e}",
                params.user, params.dbname
            )
        })?;
    let tables = appdb::tables(connected.client())
        .await
        .map_err(|e| format!("Connected, but {e}"))?;
    term.ok(&format!(
        "Connected to {} as \"{}\": database \"{}\" is writable.",
        connected.address(),
        params.user,
        params.dbname
    ));
    if tables.is_empty() {
        Ok(NewDbCheck::Empty)
    } else {
        Ok(NewDbCheck::HasTables(
            tables.iter().map(|t| t.qualified_name()).collect(),
        ))
    }
}

/// Reads a connection string: the flag/file/environment value, else the
/// prompt (empty = `default`, or the last string tried, to retry).
fn next_url(
    term: &mut Term,
    prompt: &str,
    given: &mut Option<String>,
    default: Option<&str>,
) -> Result<String, Abort> {
    if let Some(url) = given.take() {
        return Ok(url);
    }
    if !term.can_prompt() {
        return default.map(str::to_owned).ok_or_else(|| {
            Abort::Usage(
                "no connection string given (--db-url, --db-url-file or KNOCKNOC_DB_URL)".into(),
            )
        });
    }
    loop {
        let answer = term.ask(prompt).ok_or(Abort::EndOfInput)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
        if let Some(d) = default {
            return Ok(d.to_owned());
        }
        term.problem(
            "A connection string is required, e.g. postgres://USER:PASSWORD@HOST:5432/knocknoc",
        );
    }
}

/// Runs the chosen option to the end and gives the connection string to
/// store. Interactive: every failure is explained and the prompt comes back
/// (an empty answer retries the same string). Otherwise the first failure
/// ends the run.
pub fn settle(
    args: &Args,
    term: &mut Term,
    option: DbOption,
    mut given: Option<String>,
    current: Option<&DatabaseUrl>,
) -> Result<DatabaseUrl, Abort> {
    let interactive_retry = term.can_prompt();
    let rt = runtime();
    match option {
        DbOption::Local => {
            if given.is_some() {
                return Err(Abort::Usage(
                    "option 1 creates its own connection string: --db-url is for options 2 and 3"
                        .into(),
                ));
            }
            rt.block_on(local(args, term, current))
        }
        DbOption::ExistingExternal | DbOption::NewExternal => {
            let prompt = if option == DbOption::ExistingExternal {
                PROMPT_EXISTING_URL
            } else {
                PROMPT_NEW_URL
            };
            let mut default = if option == DbOption::ExistingExternal {
                current.map(|u| u.expose_secret().to_owned())
            } else {
                None
            };
            loop {
                let from_flag = given.is_some();
                let url = next_url(term, prompt, &mut given, default.as_deref())?;
                let fail = |term: &Term, reason: String, usage: bool| -> Result<(), Abort> {
                    if interactive_retry && !from_flag {
                        term.problem(&reason);
                        term.say("Press Enter to retry with the same connection string, or enter another one.");
                        Ok(())
                    } else if usage {
                        Err(Abort::Usage(reason))
                    } else {
                        Err(Abort::Check(reason))
                    }
                };
                let params = match resolve(&url) {
                    Ok(p) => p,
                    Err(reason) => {
                        fail(term, reason, true)?;
                        default = None;
                        continue;
                    }
                };
                let stored =
                    DatabaseUrl::new(url.clone()).map_err(|e| Abort::Usage(e.to_string()))?;
                term.say(&format!("Checking {stored} ..."));
                default = Some(url.clone());
                if option == DbOption::ExistingExternal {
                    match rt.block_on(check_existing(term, &params, args.bind_source)) {
                        Ok(()) => return Ok(stored),
                        Err(reason) => fail(term, reason, false)?,
                    }
                    continue;
                }
                match rt.block_on(check_new(term, &params, args.bind_source)) {
                    Ok(NewDbCheck::Empty) => return Ok(stored),
                    Ok(NewDbCheck::HasTables(names)) => {
                        let list = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                        let more = if names.len() > 5 { ", ..." } else { "" };
                        let what = format!(
                            "Database \"{}\" already holds {} table(s) ({list}{more}): it may belong to another application.",
                            params.dbname,
                            names.len()
                        );
                        if args.allow_nonempty {
                            term.problem(&format!("{what} Using it anyway (--allow-nonempty)."));
                            return Ok(stored);
                        }
                        if !term.can_prompt() {
                            return Err(Abort::Usage(format!(
                                "{what} Refusing it (--allow-nonempty to accept)."
                            )));
                        }
                        term.problem(&what);
                        let answer = term
                            .ask("Use it anyway? [y/N]: ")
                            .ok_or(Abort::EndOfInput)?;
                        if answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes") {
                            return Ok(stored);
                        }
                        default = None;
                        if from_flag {
                            return Err(Abort::Usage(format!("{what} Not confirmed.")));
                        }
                    }
                    Err(reason) => fail(term, reason, false)?,
                }
            }
        }
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
async fn local(
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
                Err(e) => term.problem(&format!("{}\nCreating the database afresh.", explain(&e))),
            }
        }
    }
    let (connected, admin_params) = admin(args).await.map_err(Abort::Check)?;
    let client = connected.client();
    let port: u16 = client
        .query_one("SELECT current_setting('port')::int", &[])
        .await
        .map(|r| r.get::<_, i32>(0) as u16)
        .map_err(|e| Abort::Check(format!("Cannot read the server's port: {e}")))?;
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
    .map_err(|e| Abort::Check(format!("Cannot create the application role: {e}")))?;
    let password = outcome
        .password()
        .cloned()
        .ok_or_else(|| Abort::Check("the application role's password could not be set".into()))?;
    let created = appdb::ensure_database(client, APP_NAME, APP_NAME, &naming())
        .await
        .map_err(|e| Abort::Check(format!("Cannot create the database: {e}")))?;
    term.ok(&format!(
        "Role \"{APP_NAME}\" {}, database \"{APP_NAME}\" {}.",
        match outcome {
            roles::RoleOutcome::Created(_) => "created",
            _ => "given a new password",
        },
        if created {
            "created"
        } else {
            "already present"
        }
    ));
    let info = ConnInfo::builder()
        .host(host)
        .port(port)
        .user(APP_NAME)
        .password(password.expose())
        .dbname(APP_NAME)
        .build();
    let url = info.to_uri();
    let params = resolve(&url).map_err(Abort::Check)?;
    let mut app = connect::connect(&params)
        .await
        .map_err(|e| Abort::Check(format!("The new role cannot log in: {}", explain(&e))))?;
    appdb::check_can_create(app.client_mut(), &naming())
        .await
        .map_err(|e| Abort::Check(format!("The new role cannot create tables: {e}")))?;
    let stored = DatabaseUrl::new(url).map_err(|e| Abort::Check(e.to_string()))?;
    term.ok(&format!("The new connection string works: {stored}"));
    Ok(stored)
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
