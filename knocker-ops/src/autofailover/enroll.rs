//! `--enroll --monitor URI`: this node (a running primary, or a standby
//! cloned by `knocker replica`, data kept) handed to pg_auto_failover, as
//! docs/pg_auto_failover.md section 5 describes.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use pgctl::conninfo::{ConnInfo, Keyword};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::Client;

use super::autoctl::{self, passfile_line, Autoctl};
use super::debian::{self, current_setting, DebianLayout};
use super::service::{self, ServiceUnit, Supervision};
use super::{block, EnrollReport, Options, Secret, HEALTH_CHECK_ROLE, KEEPER_PARTITION_TIMEOUT};
use super::{MONITOR_DATABASE, MONITOR_ROLE, REPLICATOR_ROLE};
use crate::{Error, FileChange, Plan};

/// The settings pg_autoctl's "pgtuning" and defaults would change and the
/// operator's values must win for: memory sized for a host that also runs
/// the web app, and the WAL kept without slots (pg_autoctl writes 8 GB).
/// `ALTER SYSTEM` (postgresql.auto.conf) wins over pg_autoctl's include.
pub const KEPT_SETTINGS: [&str; 5] = [
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "wal_keep_size",
];

/// Settings pg_auto_failover's guarantees rest on, with the value knocker
/// sets (`ALTER SYSTEM`) when the server has another: `postgresql.conf`
/// lines come after pg_autoctl's include and would win over it. With
/// `synchronous_commit = off` a commit is acknowledged before the
/// synchronous standby has it, and a failover loses it (seen in this
/// crate's test: 4 acknowledged commits lost); `pg_rewind` needs
/// `full_page_writes`.
pub const REQUIRED_SETTINGS: [(&str, &str); 2] =
    [("synchronous_commit", "on"), ("full_page_writes", "on")];

/// Applies the `ALTER SYSTEM` changes that need no restart at once (the
/// standby then stops streaming under its old name).
const RELOAD_SQL: &str = "SELECT pg_catalog.pg_reload_conf()";

/// The functions `pg_rewind` needs as a non-superuser.
const REWIND_FUNCTIONS: &str = "pg_catalog.pg_ls_dir(text, boolean, boolean), \
     pg_catalog.pg_stat_file(text, boolean), pg_catalog.pg_read_binary_file(text), \
     pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)";

/// How long `pg_autoctl create postgres` may take (it restarts its own
/// failing steps up to 5 times before giving up).
const CREATE_TIMEOUT: Duration = Duration::from_secs(180);

/// How long the keeper's service may take to start PostgreSQL.
const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(90);

/// The monitor URI, checked: TLS with verification and a password.
struct MonitorUri {
    /// Without its password: what pg_autoctl.cfg holds.
    public: ConnInfo,
    host: String,
    port: String,
    password: String,
    sslrootcert: String,
}

fn parse_monitor(uri: &Secret) -> Result<MonitorUri, Error> {
    let mut info = ConnInfo::parse_checked(&uri.0)
        .map_err(|e| Error::usage(format!("--monitor: not a valid connection string: {e}")))?;
    let need = |k: Keyword, what: &str| -> Result<String, Error> {
        info.get(k)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Error::usage(format!("--monitor: the URI has no {what}")))
    };
    let host = need(Keyword::Host, "host")?;
    if host.contains(',') || host.starts_with('/') {
        return Err(Error::usage(
            "--monitor: the URI must name one monitor host (a name or an address)",
        ));
    }
    let port = info.get(Keyword::Port).unwrap_or("5432").to_string();
    if port.parse::<u16>().is_err() {
        return Err(Error::usage(format!("--monitor: bad port {port:?}")));
    }
    let password = need(
        Keyword::Password,
        "password (use the URI that --monitor-init printed)",
    )?;
    if info.get(Keyword::User) != Some(MONITOR_ROLE)
        || info.get(Keyword::Dbname) != Some(MONITOR_DATABASE)
    {
        return Err(Error::usage(format!(
            "--monitor: the URI must name user {MONITOR_ROLE} and database {MONITOR_DATABASE}"
        )));
    }
    match info.get(Keyword::Sslmode) {
        Some("verify-full") | Some("verify-ca") => {}
        _ => {
            return Err(Error::usage(
                "--monitor: the URI must carry sslmode=verify-full (or verify-ca): \
                 keepers talk to the monitor over verified TLS",
            ))
        }
    }
    let sslrootcert = need(Keyword::Sslrootcert, "sslrootcert (the CA file)")?;
    info.remove(Keyword::Password);
    Ok(MonitorUri {
        public: info,
        host,
        port,
        password,
        sslrootcert,
    })
}

/// What the server says about itself.
struct NodeFacts {
    data_dir: PathBuf,
    config_file: PathBuf,
    hba_file: PathBuf,
    ident_file: PathBuf,
    port: u16,
    listen: String,
    socket_dir: String,
    in_recovery: bool,
    ssl: bool,
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    bin_dir: PathBuf,
    superuser: String,
    major: u32,
    kept: Vec<(String, String)>,
    required: Vec<(String, String)>,
    fsync: bool,
    max_slot_wal_keep_size: String,
}

async fn read_facts(client: &Client) -> Result<NodeFacts, Error> {
    let failed =
        |e: tokio_postgres::Error| Error::failed("reading the server's settings").with_source(e);
    let row = client
        .query_one(
            "SELECT current_setting('data_directory'), current_setting('config_file'), \
             current_setting('hba_file'), current_setting('port')::int, \
             current_setting('listen_addresses'), current_setting('unix_socket_directories'), \
             pg_catalog.pg_is_in_recovery(), current_setting('ssl') = 'on', \
             current_setting('ssl_cert_file'), current_setting('ssl_key_file'), \
             current_setting('ssl_ca_file'), current_setting('server_version_num')::int / 10000, \
             (SELECT setting FROM pg_catalog.pg_config WHERE name = 'BINDIR'), current_user::text, \
             (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), \
             current_setting('max_slot_wal_keep_size'), current_setting('ident_file')",
            &[],
        )
        .await
        .map_err(failed)?;
    if !row.get::<_, bool>(14) {
        return Err(Error::refused_always(
            "--enroll needs a superuser session (the default peer login as postgres, or --admin-conn)",
        ));
    }
    let data_dir = PathBuf::from(row.get::<_, String>(0));
    let in_data = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            data_dir.join(p)
        }
    };
    let ca: String = row.get(10);
    let mut kept = Vec::new();
    for name in KEPT_SETTINGS {
        kept.push((name.to_string(), current_setting(client, name).await?));
    }
    let mut required = Vec::new();
    for (name, want) in REQUIRED_SETTINGS {
        let value = current_setting(client, name).await?;
        if value != want {
            required.push((name.to_string(), value));
        }
    }
    let fsync = current_setting(client, "fsync").await?;
    let sockets: String = row.get(5);
    Ok(NodeFacts {
        config_file: PathBuf::from(row.get::<_, String>(1)),
        hba_file: PathBuf::from(row.get::<_, String>(2)),
        ident_file: PathBuf::from(row.get::<_, String>(16)),
        port: u16::try_from(row.get::<_, i32>(3)).unwrap_or(5432),
        listen: row.get(4),
        socket_dir: sockets.split(',').next().unwrap_or("").trim().to_string(),
        in_recovery: row.get(6),
        ssl: row.get(7),
        cert: in_data(row.get(8)),
        key: in_data(row.get(9)),
        ca: (!ca.is_empty()).then(|| in_data(ca)),
        major: u32::try_from(row.get::<_, i32>(11)).unwrap_or(0),
        bin_dir: PathBuf::from(row.get::<_, String>(12)),
        superuser: row.get(13),
        kept,
        required,
        fsync: fsync == "on",
        max_slot_wal_keep_size: row.get(15),
        data_dir,
    })
}

/// The address the other nodes reach this one at: the one address
/// `listen_addresses` names, else the host's advertised address.
fn node_address(listen: &str) -> Result<IpAddr, Error> {
    let parts: Vec<&str> = listen.split(',').map(str::trim).collect();
    if let [one] = parts.as_slice() {
        if let Ok(ip) = one.parse::<IpAddr>() {
            if !ip.is_unspecified() {
                return Ok(ip);
            }
        }
    }
    let (chosen, _) = crate::network::advertise_candidates();
    chosen.ok_or_else(|| {
        Error::refused_always(format!(
            "cannot tell which address the other nodes reach this one at \
             (listen_addresses = {listen:?}); make PostgreSQL listen on that one address"
        ))
    })
}

fn node_name(options: &Options) -> Result<String, Error> {
    let name = match &options.name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
    };
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(name)
    } else {
        Err(Error::usage(format!(
            "--name {name:?}: a node name is 1-63 letters, digits, '_', '-' or '.'"
        )))
    }
}

/// `pg_autoctl config set` of knocker's keeper network partition timeout.
fn partition_timeout_command(autoctl: &Autoctl, pgdata: &Path) -> Vec<String> {
    autoctl.command(&[
        "config",
        "set",
        "--pgdata",
        &pgdata.display().to_string(),
        "timeout.network_partition_timeout",
        &KEEPER_PARTITION_TIMEOUT.to_string(),
    ])
}

pub(super) async fn enroll(
    options: &Options,
    monitor: &Secret,
    ask: &mut dyn FnMut(&str) -> bool,
) -> Result<EnrollReport, Error> {
    // Input first: a bad one exits 2 with nothing touched.
    let monitor = parse_monitor(monitor)?;
    let name = node_name(options)?;
    let systemd = service::systemd_runs();
    let (_, session) = debian::connect_node(options).await?;
    let client = session.client();
    let facts = read_facts(client).await?;
    if facts.major != 15 {
        return Err(Error::refused_always(format!(
            "PostgreSQL {}: Debian packages pg_auto_failover 2.0 for PostgreSQL 15 only",
            facts.major
        )));
    }
    // Checked before "already enrolled": an adopted cluster's
    // configuration is in its data directory again.
    let layout = debian::detect(
        &facts.data_dir,
        &facts.config_file,
        &facts.hba_file,
        &facts.ident_file,
        facts.major,
    )?;
    if !facts.ssl {
        return Err(Error::refused_always(
            "ssl is off: pg_auto_failover's connections must use verified TLS; turn ssl on with a \
             certificate of the formation's CA",
        ));
    }
    let ca = match &facts.ca {
        Some(ca) => ca.clone(),
        None => PathBuf::from(&monitor.sslrootcert),
    };
    if !ca.is_file() {
        return Err(Error::usage(format!(
            "the CA file {} (ssl_ca_file, else the monitor URI's sslrootcert) does not exist here",
            ca.display()
        )));
    }
    let autoctl = Autoctl::for_data_dir(&facts.data_dir, &facts.bin_dir)?;
    let mut report = EnrollReport {
        role: if facts.in_recovery {
            "standby"
        } else {
            "primary"
        },
        name: name.clone(),
        ..Default::default()
    };
    // The PostgreSQL socket the keeper's server opens: the service is up.
    let ready = if facts.socket_dir.is_empty() {
        facts.data_dir.join("postmaster.pid")
    } else {
        Path::new(&facts.socket_dir).join(format!(".s.PGSQL.{}", facts.port))
    };
    if autoctl.config_file().exists() {
        // The unit is named after the name the node was enrolled with.
        let unit = ServiceUnit::of_enrolled(&autoctl).unwrap_or_else(|| ServiceUnit::keeper(&name));
        let supervision = keeper_supervision(&autoctl, unit, systemd)?;
        report.done.push(format!(
            "{} is already enrolled ({} exists){}",
            facts.data_dir.display(),
            autoctl.config_file().display(),
            if systemd { "" } else { "; nothing to do" }
        ));
        // A run that stopped after `create` may have missed the keeper's
        // partition timeout, which fences an isolated primary before the
        // monitor's demote timeout ends (mod.rs): set again (idempotent).
        let tune = partition_timeout_command(&autoctl, &facts.data_dir);
        if options.dry_run {
            report
                .plan
                .get_or_insert_with(Plan::default)
                .commands
                .push(tune);
        } else {
            autoctl::run_ok(
                "setting the keeper's network partition timeout",
                &tune,
                Duration::from_secs(30),
            )
            .await?;
        }
        // A run that stopped before its service started finishes here.
        if let Supervision::Service { unit, text } = &supervision {
            if options.dry_run {
                supervision.plan(report.plan.get_or_insert_with(Plan::default));
            } else {
                // A keeper already running outside the unit (started by
                // hand, or by another unit) would make the unit's own
                // `pg_autoctl run` exit on its pid file and restart for
                // ever while the socket check below passes.
                if !unit.is_active().await
                    && super::disable::keeper_running(&autoctl.keeper_pid_file())
                {
                    return Err(Error::refused_always(format!(
                        "a keeper of {} already runs outside {unit} (its pid file is {}): stop \
                         it, then run --enroll again to run it under systemd",
                        facts.data_dir.display(),
                        autoctl.keeper_pid_file().display()
                    )));
                }
                report.changed = unit.install(text, &ready, SERVICE_START_TIMEOUT).await?;
                report
                    .done
                    .push(format!("the keeper runs under systemd ({unit}, enabled)"));
            }
        }
        (report.service, report.supervise) = supervision.report();
        return Ok(report);
    }
    let supervision = keeper_supervision(&autoctl, ServiceUnit::keeper(&name), systemd)?;

    let address = node_address(&facts.listen)?;
    let version = pghba::PgVersion::new(facts.major)
        .map_err(|e| Error::failed(format!("unsupported server version: {e}")))?;
    let hba_old = std::fs::read(&facts.hba_file).map_err(|e| {
        Error::failed(format!("cannot read {}", facts.hba_file.display())).with_source(e)
    })?;
    // pg_auto_failover's own files are expected here (a standby cloned
    // from an enrolled primary carries them); any other manager wins.
    let owner = pgctl::hba_install::owner::hba_owner(
        &String::from_utf8_lossy(&hba_old),
        Some(&facts.data_dir),
        &crate::naming(),
    );
    if let Some(owner) = owner {
        if owner.kind != pgctl::hba_install::owner::HbaOwnerKind::PgAutoFailover && !options.force {
            return Err(Error::refused(format!(
                "pg_hba.conf is left alone: {owner}; edits made here would be overwritten"
            )));
        }
    }
    // Every node of the group: those this block already lists, the
    // standbys `knocker replica --allow` admitted, and this one.
    let mut nodes: BTreeSet<IpNet> = block::nodes(&hba_old, version)?;
    nodes.extend(
        crate::replica::block::allowed(&hba_old, version)?
            .into_iter()
            .map(|a| a.cidr),
    );
    nodes.insert(IpNet::from(address));
    let hba_new = block::edit(&hba_old, version, &facts.superuser, &nodes, true)?;

    // The SQL, shown with a placeholder for the verifier.
    let mut sql: Vec<String> = Vec::new();
    let rep = escape_identifier(REPLICATOR_ROLE);
    let verifier = postgres_protocol::password::scram_sha_256(monitor.password.as_bytes());
    let role_sql = |verifier: &str| -> Vec<String> {
        vec![
            format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {lit}) \
                 THEN CREATE ROLE {rep} LOGIN REPLICATION NOSUPERUSER; END IF; END$$",
                lit = escape_literal(REPLICATOR_ROLE)
            ),
            format!(
                "ALTER ROLE {rep} LOGIN REPLICATION NOSUPERUSER PASSWORD {}",
                escape_literal(verifier)
            ),
            format!("COMMENT ON ROLE {rep} IS 'managed by knocker autofailover'"),
            format!("GRANT EXECUTE ON FUNCTION {REWIND_FUNCTIONS} TO {rep}"),
            format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {lit}) \
                 THEN CREATE ROLE {ident} NOLOGIN; END IF; END$$",
                lit = escape_literal(HEALTH_CHECK_ROLE),
                ident = escape_identifier(HEALTH_CHECK_ROLE)
            ),
        ]
    };
    let mut settings_sql = Vec::new();
    if facts.in_recovery {
        // pg_autoctl's own primary_conninfo must win (finding 1 of the doc).
        settings_sql.push("ALTER SYSTEM RESET primary_conninfo".to_string());
        settings_sql.push("ALTER SYSTEM RESET primary_slot_name".to_string());
    }
    for (name, value) in &facts.kept {
        settings_sql.push(format!(
            "ALTER SYSTEM SET {name} = {}",
            escape_literal(value)
        ));
    }
    for (name, was) in &facts.required {
        let want = REQUIRED_SETTINGS
            .iter()
            .find(|(n, _)| n == name)
            .map_or("on", |(_, v)| v);
        settings_sql.push(format!(
            "ALTER SYSTEM SET {name} = {}",
            escape_literal(want)
        ));
        report.warnings.push(format!(
            "{name} was {was}: set to {want}, which pg_auto_failover's guarantees need"
        ));
    }
    if !facts.fsync {
        report.warnings.push(
            "fsync is off: a power loss can corrupt this node; pg_auto_failover cannot make up for it"
                .into(),
        );
    }
    if !facts.in_recovery {
        sql.extend(role_sql(pgctl::roles::PASSWORD_PLACEHOLDER));
    }
    sql.extend(settings_sql.iter().cloned());
    sql.push(RELOAD_SQL.into());

    let pgdata = facts.data_dir.display().to_string();
    let stop = server_stop(&autoctl, layout.as_ref(), systemd);
    let mut public_monitor = monitor.public.clone();
    public_monitor.set(Keyword::Sslrootcert, ca.display().to_string());
    let monitor_uri = public_monitor.to_uri();
    let (port, listen, host) = (
        facts.port.to_string(),
        facts.listen.clone(),
        address.to_string(),
    );
    let pg_ctl = autoctl.pg_ctl.display().to_string();
    let (ca_s, cert_s, key_s) = (
        ca.display().to_string(),
        facts.cert.display().to_string(),
        facts.key.display().to_string(),
    );
    let create = autoctl.command(&[
        "create",
        "postgres",
        "--pgctl",
        &pg_ctl,
        "--pgdata",
        &pgdata,
        "--pghost",
        &facts.socket_dir,
        "--pgport",
        &port,
        "--listen",
        &listen,
        "--hostname",
        &host,
        "--name",
        &name,
        "--username",
        &facts.superuser,
        "--dbname",
        "postgres",
        "--skip-pg-hba",
        "--ssl-ca-file",
        &ca_s,
        "--server-cert",
        &cert_s,
        "--server-key",
        &key_s,
        "--ssl-mode",
        "verify-full",
        "--monitor",
        &monitor_uri,
    ]);
    let tune = partition_timeout_command(&autoctl, &facts.data_dir);

    let passfile_new = format!(
        "{}{}",
        passfile_line([
            &monitor.host,
            &monitor.port,
            MONITOR_DATABASE,
            MONITOR_ROLE,
            &monitor.password
        ]),
        passfile_line(["*", "*", "*", REPLICATOR_ROLE, &monitor.password]),
    );
    let mut plan = Plan::default();
    plan.files
        .push(FileChange::new(&facts.hba_file, &hba_old, &hba_new));
    plan.sql = sql;
    plan.commands = vec![stop.clone(), create.clone(), tune.clone()];
    supervision.plan(&mut plan);
    let kept_includes = match &layout {
        Some(layout) => plan_debian(layout, &mut plan, &mut report)?,
        None => Vec::new(),
    };
    report.warnings.push(match &supervision {
        Supervision::Service { unit, .. } => format!(
            "PostgreSQL is stopped for the enrolment (pg_auto_failover 2.0 refuses a running \
             server) and started again by the keeper, which runs under systemd as {unit}"
        ),
        Supervision::Foreground(argv) => format!(
            "PostgreSQL is stopped for the enrolment (pg_auto_failover 2.0 refuses a running \
             server) and stays stopped until the keeper runs: {}",
            crate::plan::shell_words(argv)
        ),
    });
    report.warnings.push(format!(
        "the passwords go to {} (mode 0600, owner {}); the formation's one secret (the monitor \
         URI's password) is also the replicator's password",
        autoctl.passfile().display(),
        autoctl.user
    ));
    if facts.max_slot_wal_keep_size == "-1" {
        report.warnings.push(
            "max_slot_wal_keep_size is unbounded: pg_auto_failover's slots may keep WAL until the \
             disk is full; run knocker replica --init to bound it"
                .into(),
        );
    }
    if facts.in_recovery {
        report.warnings.push(
            "knocker replica's slot for this standby on the primary (knocker_<name>) is no longer \
             used (pg_auto_failover streams through its own): drop it with knocker replica --revoke"
                .into(),
        );
    }
    if options.dry_run {
        report.plan = Some(plan);
        (report.service, report.supervise) = supervision.report();
        return Ok(report);
    }

    let question = match &layout {
        None => format!(
            "Enrolling stops PostgreSQL at {} (about a second; it comes back when the keeper runs). \
             Go on?",
            facts.data_dir.display()
        ),
        Some(layout) => format!(
            "Enrolling stops PostgreSQL at {} (about a second; it comes back when the keeper runs), \
             and pg_auto_failover moves the Debian cluster {}'s postgresql.conf, pg_hba.conf and \
             pg_ident.conf from {} into the data directory and disables its start.conf: \
             pg_lsclusters and pg_ctlcluster no longer see it until --disable puts them back \
             (conf.d stays in force). Go on?",
            facts.data_dir.display(),
            layout.id(),
            layout.conf_dir.display()
        ),
    };
    if !ask(&question) {
        return Err(Error::refused_always(
            "not enrolled: stopping PostgreSQL was not confirmed",
        ));
    }

    autoctl.create_state_dirs()?;
    crate::replica::clone::write_owned(
        &autoctl.passfile(),
        passfile_new.as_bytes(),
        0o600,
        autoctl.uid,
        autoctl.gid,
    )?;
    report
        .done
        .push(format!("wrote {}", autoctl.passfile().display()));

    let logged_off = pgctl::roles::suppress_statement_logging(client)
        .await
        .unwrap_or(false);
    let run_sql = |stmts: Vec<String>| async move {
        for s in &stmts {
            client
                .batch_execute(s)
                .await
                .map_err(|e| Error::failed("preparing the node").with_source(e))?;
        }
        Ok::<(), Error>(())
    };
    if !facts.in_recovery {
        if !logged_off {
            report.warnings.push(
                "statement logging could not be turned off for this session: the replicator's \
                 SCRAM verifier (not the password) may be in the server log"
                    .into(),
            );
        }
        run_sql(role_sql(&verifier)).await?;
        report.done.push(format!(
            "roles {REPLICATOR_ROLE} (replication, pg_rewind's functions) and \
             {HEALTH_CHECK_ROLE} (NOLOGIN) ready"
        ));
    }
    run_sql(settings_sql).await?;
    client
        .batch_execute(RELOAD_SQL)
        .await
        .map_err(|e| Error::failed("reloading the configuration").with_source(e))?;
    report.done.push(format!(
        "kept {} with ALTER SYSTEM",
        facts
            .kept
            .iter()
            .map(|(n, v)| format!("{n} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let install = pgctl::hba_install::InstallOptions {
        naming: crate::naming(),
        force: options.force,
        ..Default::default()
    };
    let new_text = hba_new.clone();
    pgctl::hba_install::edit(
        client,
        &facts.hba_file,
        move |_| Ok::<_, std::convert::Infallible>(new_text),
        &install,
    )
    .await
    .map_err(|e| Error::failed(format!("{}", facts.hba_file.display())).with_source(e))?;
    report.done.push(format!(
        "pg_hba.conf: the knocker autofailover block admits {} node address(es)",
        nodes.len()
    ));
    drop(session);

    if let Some(layout) = &layout {
        let backup = debian_backup_dir(&autoctl);
        debian::back_up(layout, &backup, autoctl.uid, autoctl.gid)?;
        report.done.push(format!(
            "copied {}'s configuration files to {} (the way back)",
            layout.conf_dir.display(),
            backup.display()
        ));
    }
    for (what, argv, timeout) in [
        ("stopping PostgreSQL", &stop, Duration::from_secs(90)),
        ("pg_autoctl create postgres", &create, CREATE_TIMEOUT),
        (
            "setting the keeper's partition timeout",
            &tune,
            Duration::from_secs(30),
        ),
    ] {
        autoctl::run_ok(what, argv, timeout).await.map_err(|e| {
            if what.starts_with("pg_autoctl create") {
                Error::failed(format!(
                    "{e}\nThe node may be registered on the monitor already; running --enroll again \
                     continues where this one stopped."
                ))
            } else {
                e
            }
        })?;
        if argv == &stop {
            // `systemctl stop` of Debian's unit succeeds while a server
            // started outside that unit keeps running; create would then
            // register the node and refuse the running server.
            let pid_file = facts.data_dir.join("postmaster.pid");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while super::disable::postmaster_running(&pid_file) {
                if std::time::Instant::now() > deadline {
                    return Err(Error::failed(format!(
                        "PostgreSQL still runs after `{}` (started outside that service?): stop \
                         it, then run --enroll again",
                        crate::plan::shell_words(&stop)
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        report.done.push(format!("{what}: done"));
    }
    if let Some(layout) = &layout {
        if layout.etc("postgresql.conf").exists() {
            return Err(Error::failed(format!(
                "pg_autoctl create postgres left {} in place: the Debian configuration was not \
                 adopted as expected; run knocker autofailover --disable before trying again",
                layout.etc("postgresql.conf").display()
            )));
        }
        if debian::keep_includes(layout, &kept_includes)? {
            report.done.push(format!(
                "{}: {} kept in force with an absolute include_dir line",
                layout.data_dir.join("postgresql.conf").display(),
                layout.conf_dir.join("conf.d").display()
            ));
        }
        report.done.push(format!(
            "the Debian cluster {} now keeps its configuration in {} (pg_lsclusters no longer \
             lists it); --disable puts it back in {}",
            layout.id(),
            layout.data_dir.display(),
            layout.conf_dir.display()
        ));
    }
    if let Supervision::Service { unit, text } = &supervision {
        unit.install(text, &ready, SERVICE_START_TIMEOUT).await?;
        report.done.push(format!(
            "the keeper runs under systemd ({unit}, enabled); PostgreSQL is up again"
        ));
    }
    report.changed = true;
    (report.service, report.supervise) = supervision.report();
    Ok(report)
}

/// The command that stops this node's PostgreSQL for the enrolment. Under
/// systemd a Debian cluster runs as Debian's unit and is stopped through
/// it (pg_autoctl then disables `start.conf`, and Debian's generator no
/// longer starts it at boot); otherwise `pg_ctl stop` as the PostgreSQL
/// user.
fn server_stop(autoctl: &Autoctl, layout: Option<&DebianLayout>, systemd: bool) -> Vec<String> {
    match layout {
        Some(l) if systemd => vec!["systemctl".to_string(), "stop".into(), l.systemd_unit()],
        _ => autoctl.as_user(&[
            &autoctl.pg_ctl.display().to_string(),
            "-D",
            &autoctl.pgdata.display().to_string(),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "stop",
        ]),
    }
}

/// How this node's keeper runs: `unit` under systemd, else in the
/// foreground under the operator's supervisor.
fn keeper_supervision(
    autoctl: &Autoctl,
    unit: ServiceUnit,
    systemd: bool,
) -> Result<Supervision, Error> {
    let description = format!(
        "pg_auto_failover keeper of {} (knocker autofailover)",
        autoctl.pgdata.display()
    );
    Supervision::choose(autoctl, unit, &description, systemd)
}

/// Where `--enroll` keeps a copy of a Debian cluster's `/etc` files.
pub(super) fn debian_backup_dir(autoctl: &Autoctl) -> PathBuf {
    autoctl.state_dir().join("debian-etc-backup")
}

/// What pg_auto_failover will do to the Debian layout, in the plan (the
/// files as pg_autoctl will leave them, knocker's include line included)
/// and in the warnings. Returns knocker's include lines.
fn plan_debian(
    layout: &DebianLayout,
    plan: &mut Plan,
    report: &mut EnrollReport,
) -> Result<Vec<String>, Error> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| Error::failed(format!("cannot read {}", p.display())).with_source(e))
    };
    let conf = read(&layout.etc("postgresql.conf"))?;
    let conf_text = String::from_utf8_lossy(&conf).into_owned();
    let kept = debian::kept_include_lines(&conf_text, layout)?;
    let start = read(&layout.etc("start.conf")).unwrap_or_default();
    plan.files.push(FileChange::new(
        layout.data_dir.join("postgresql.conf"),
        b"",
        debian::adopted_conf(&conf_text, &kept).as_bytes(),
    ));
    plan.files
        .push(FileChange::new(layout.etc("postgresql.conf"), &conf, b""));
    plan.files.push(FileChange::new(
        layout.etc("start.conf"),
        &start,
        debian::autoctl_start_conf().as_bytes(),
    ));
    report.warnings.push(format!(
        "Debian cluster {id}: pg_auto_failover moves postgresql.conf (the lines data_directory, \
         hba_file, ident_file and include_dir commented out), pg_hba.conf (knocker's blocks \
         with it) and pg_ident.conf from {etc} into {data}, keeps the original start.conf as \
         start.conf.orig and disables it: pg_lsclusters no longer lists the cluster and \
         pg_ctlcluster no longer starts it (the keeper does); logs go to {data}/log. knocker \
         adds {includes} at the end of the moved postgresql.conf so that conf.d stays in \
         force, and --disable puts the files back in {etc}",
        id = layout.id(),
        etc = layout.conf_dir.display(),
        data = layout.data_dir.display(),
        includes = if kept.is_empty() {
            "no include_dir line (the Debian postgresql.conf has none)".to_string()
        } else {
            kept.iter()
                .map(|l| l.split('\t').next().unwrap_or(l).trim().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debian_cluster_is_stopped_through_its_unit_only_under_systemd() {
        let pgdata = Path::new("/var/lib/postgresql/15/main");
        // Owned by whoever runs the test: no runuser in the commands.
        let me = autoctl::current_uid();
        let autoctl =
            Autoctl::for_owner(pgdata, Path::new("/usr/lib/postgresql/15/bin"), me, 0).unwrap();
        let layout = DebianLayout::for_data_dir(pgdata, 15).unwrap();
        assert_eq!(
            server_stop(&autoctl, Some(&layout), true),
            ["systemctl", "stop", "postgresql@15-main.service"]
        );
        let pg_ctl = [
            "/usr/lib/postgresql/15/bin/pg_ctl",
            "-D",
            "/var/lib/postgresql/15/main",
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "stop",
        ];
        assert_eq!(server_stop(&autoctl, Some(&layout), false), pg_ctl);
        assert_eq!(server_stop(&autoctl, None, true), pg_ctl);
    }
}
