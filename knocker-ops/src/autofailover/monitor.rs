//! `--monitor-init` (on a third host): the pg_auto_failover monitor as
//! docs/pg_auto_failover.md section 5 describes it, made safe:
//!
//! 1. `pg_autoctl create monitor --skip-pg-hba` with the operator's CA,
//!    server certificate and key (`--ssl-mode verify-full`): its own
//!    cluster, in a data directory owned by the PostgreSQL user;
//! 2. initdb's `trust` pg_hba.conf replaced by knocker's block: the
//!    superuser and the monitor's own listener over the socket (`peer`),
//!    the keepers as `autoctl_node` over verified TLS with scram-sha-256,
//!    from `--allow` (default `samenet`); pg_ident.conf maps the OS user to
//!    `autoctl_node` for the listener;
//! 3. PostgreSQL started once on a private socket, no TCP, to give
//!    `autoctl_node` a generated password as a SCRAM verifier made here
//!    (the password never reaches the server, a log or argv) and to apply
//!    [`super::MONITOR_PROFILE`] with `ALTER SYSTEM`; stopped again;
//! 4. the password in the user's passfile (0600) beside the data
//!    directory, for `pg_autoctl show` on this host;
//! 5. the monitor URI, with the password, returned once.
//!
//! The service: where systemd runs, [`super::MONITOR_UNIT`] (written,
//! enabled and started as `--enroll` does for a keeper); elsewhere the
//! report's `supervise` is the command that runs `pg_autoctl run` in the
//! foreground as the PostgreSQL user. A failure removes what this call created (the data directory
//! was new or empty), so a second try starts clean.

use std::collections::BTreeSet;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use pgctl::conninfo::{ConnInfo, SslMode};
use postgres_protocol::escape::escape_literal;

use super::autoctl::{self, passfile_line, Autoctl};
use super::service::{self, ServiceUnit, Supervision};
use super::{block, MonitorInit, MonitorInitReport, Secret, MONITOR_DATABASE, MONITOR_ROLE};
use crate::{Error, FileChange, Plan};

/// The PostgreSQL major version pg_auto_failover 2.0 is packaged for.
const MAJOR: u32 = 15;
/// Its binaries.
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The monitor extension's control file (package
/// `postgresql-15-auto-failover`).
const EXTENSION_CONTROL: &str = "/usr/share/postgresql/15/extension/pgautofailover.control";
/// The socket directory the monitor's PostgreSQL uses (pg_autoctl's
/// default): a running server there on the same port is refused.
const SOCKET_DIR: &str = "/var/run/postgresql";
/// The name of the pg_ident.conf map the monitor's listener logs in with.
const IDENT_MAP: &str = "pgautofailover";
/// How long `pg_autoctl create monitor` may take (it restarts failing
/// steps a few times before giving up).
const CREATE_TIMEOUT: Duration = Duration::from_secs(180);

/// How long the service may take to open the monitor's socket.
const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `--monitor-init` puts the monitor by default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/postgresql/15/monitor";

/// The pg_hba.conf of the monitor: a header and knocker's block.
pub fn hba_text(superuser: &str, os_user: &str, allow: &[String]) -> Result<Vec<u8>, Error> {
    let header =
        "# pg_hba.conf of the pg_auto_failover monitor (knocker autofailover --monitor-init)\n\
                  # TYPE  DATABASE  USER  ADDRESS  METHOD\n";
    let version = pghba::PgVersion::new(MAJOR)
        .map_err(|e| Error::failed(format!("unsupported server version: {e}")))?;
    let mut doc = pghba::HbaDocument::parse_for(header.as_bytes(), version);
    let near = doc.lines().len();
    let quote = |name: &str| {
        pghba::quote_name(name)
            .ok_or_else(|| Error::usage(format!("the name {name:?} cannot go in pg_hba.conf")))
    };
    let user = quote(superuser)?;
    let _ = quote(os_user)?;
    let map = format!("map={IDENT_MAP}");
    let mut lines = vec![
        doc.format_record(
            near,
            &["local", "all", &user, "peer"],
            Some("the superuser over the socket"),
        ),
        doc.format_record(
            near,
            &["local", MONITOR_DATABASE, MONITOR_ROLE, "peer", &map],
            Some("the monitor's own listener (pg_autoctl run)"),
        ),
    ];
    for cidr in allow {
        lines.push(doc.format_record(
            near,
            &[
                "hostssl",
                MONITOR_DATABASE,
                MONITOR_ROLE,
                cidr,
                "scram-sha-256",
            ],
            Some("the nodes' keepers"),
        ));
    }
    doc.set_block(block::BEGIN, block::END, &lines, near)
        .map_err(|e| Error::failed(format!("writing the monitor's pg_hba.conf: {e}")))?;
    let text = doc.to_bytes();
    let report = pghba::lint_bytes(
        "pg_hba.conf",
        &text,
        &mut pghba::NoFiles,
        &pghba::ValidateOptions::for_version(version),
    );
    if !report.verdict.loads {
        return Err(Error::usage(
            "--allow: the monitor's pg_hba.conf would not load with these addresses",
        ));
    }
    Ok(text)
}

/// The pg_ident.conf of the monitor: the OS user logs in as
/// `autoctl_node` over the socket (the monitor's listener).
pub fn ident_text(os_user: &str) -> String {
    format!(
        "# pg_ident.conf of the pg_auto_failover monitor (knocker autofailover --monitor-init)\n\
         {}\n{IDENT_MAP}  {os_user}  {MONITOR_ROLE}\n{}\n",
        block::BEGIN,
        block::END
    )
}

/// Checks what needs no system: a bad value is a usage error (exit 2),
/// nothing touched.
fn check_input(init: &MonitorInit) -> Result<(String, Vec<String>), Error> {
    if !init.data_dir.is_absolute() {
        return Err(Error::usage(format!(
            "--data-dir {}: give an absolute path",
            init.data_dir.display()
        )));
    }
    let text = init.data_dir.display().to_string();
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "'\"\\$`".contains(c))
    {
        return Err(Error::usage(format!(
            "--data-dir {text:?}: no spaces, quotes, backslashes or $ (the path goes into \
             PostgreSQL's command line)"
        )));
    }
    if init.data_dir.parent().is_none_or(|p| p == Path::new("/")) {
        return Err(Error::usage("--data-dir: a directory below / please"));
    }
    if init.port == 0 {
        return Err(Error::usage("--port: 1-65535"));
    }
    let address = match &init.address {
        Some(a) => a.clone(),
        None => crate::network::advertise_candidates()
            .0
            .map(|a| a.to_string())
            .ok_or_else(|| {
                Error::usage(
                    "--address: this host has no address to advertise; give the one the nodes reach it at",
                )
            })?,
    };
    let ok_host = !address.is_empty()
        && address.len() <= 253
        && (address.parse::<std::net::IpAddr>().is_ok()
            || address
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !ok_host {
        return Err(Error::usage(format!(
            "--address {address:?}: one host name or IP address"
        )));
    }
    for (flag, file) in [
        ("--ssl-ca", &init.ssl_ca),
        ("--ssl-cert", &init.ssl_cert),
        ("--ssl-key", &init.ssl_key),
    ] {
        match file {
            None => {
                return Err(Error::usage(format!(
                    "{flag} is needed: the monitor serves TLS with the formation CA's certificate, and \
                     the keepers connect with sslmode=verify-full (a keeper that cannot check the \
                     monitor's identity would take failover orders from whoever answers at its \
                     address; --enroll accepts verify-full or verify-ca only)"
                )))
            }
            Some(f) if !f.is_absolute() || !f.is_file() => {
                return Err(Error::usage(format!(
                    "{flag} {}: no such file (give an absolute path)",
                    f.display()
                )))
            }
            Some(_) => {}
        }
    }
    let allow = if init.allow.is_empty() {
        vec!["samenet".to_string()]
    } else {
        let mut set = BTreeSet::new();
        for a in &init.allow {
            let net: IpNet = a
                .parse()
                .or_else(|_| a.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::usage(format!("--allow {a:?}: an address or CIDR (10.0.0.0/24)"))
                })?;
            set.insert(net.trunc());
        }
        set.into_iter().map(|n| n.to_string()).collect()
    };
    Ok((address, allow))
}

/// PostgreSQL's rule for `ssl_key_file` (it refuses to start otherwise,
/// and pg_autoctl then retries for a minute): owned by the server's user
/// with no group or other access, or by root, readable by a group of that
/// user and not by others. Checked before anything is created.
fn check_key_file(key: &Path, autoctl: &Autoctl) -> Result<(), Error> {
    let meta = std::fs::metadata(key)
        .map_err(|e| Error::usage(format!("--ssl-key {}: {e}", key.display())))?;
    let mode = meta.mode() & 0o777;
    let ok = if meta.uid() == autoctl.uid {
        mode & 0o077 == 0
    } else if meta.uid() == 0 {
        mode & 0o037 == 0 && mode & 0o040 != 0 && in_group(&autoctl.user, autoctl.gid, meta.gid())
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--ssl-key {} (owner uid {}, mode {mode:04o}): PostgreSQL needs it owned by {} with \
             mode 0600, or by root with mode 0640 and a group {} belongs to",
            key.display(),
            meta.uid(),
            autoctl.user,
            autoctl.user
        )))
    }
}

/// Whether `user` (primary group `primary_gid`) belongs to group `gid`.
fn in_group(user: &str, primary_gid: u32, gid: u32) -> bool {
    primary_gid == gid
        || std::fs::read_to_string("/etc/group")
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let f: Vec<&str> = l.split(':').collect();
                f.len() >= 4
                    && f[2].parse::<u32>().ok() == Some(gid)
                    && f[3].split(',').any(|m| m == user)
            })
}

/// The owner of `dir`, or of its parent when it does not exist yet.
fn owner_of(dir: &Path) -> Result<(u32, u32), Error> {
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(Path::new("/"))
    };
    let meta = std::fs::metadata(probe).map_err(|e| {
        Error::refused_always(format!(
            "cannot read {} ({e}): create it, owned by the PostgreSQL user",
            probe.display()
        ))
    })?;
    if meta.uid() == 0 {
        return Err(Error::refused_always(format!(
            "{} belongs to root and PostgreSQL refuses to run as root: give --data-dir in a \
             directory of the PostgreSQL user (on Debian /var/lib/postgresql belongs to postgres)",
            probe.display()
        )));
    }
    Ok((meta.uid(), meta.gid()))
}

/// Whether something already listens on `port` (TCP, or the socket
/// PostgreSQL would use).
fn port_taken(port: u16) -> bool {
    let socket = Path::new(SOCKET_DIR).join(format!(".s.PGSQL.{port}"));
    socket.exists() || std::net::TcpListener::bind(("0.0.0.0", port)).is_err()
}

pub(super) async fn monitor_init(
    init: &MonitorInit,
    dry_run: bool,
) -> Result<MonitorInitReport, Error> {
    let (address, allow) = check_input(init)?;
    let data_dir = init.data_dir.clone();
    let bin_dir = PathBuf::from(BIN_DIR);
    if !bin_dir.join("pg_ctl").is_file()
        || !Path::new(super::PG_AUTOCTL).is_file()
        || !Path::new(EXTENSION_CONTROL).is_file()
    {
        return Err(Error::refused_always(format!(
            "pg_auto_failover 2.0 for PostgreSQL {MAJOR} is not installed here \
             (apt-get install postgresql-{MAJOR} pg-auto-failover-cli postgresql-{MAJOR}-auto-failover)"
        )));
    }
    let systemd = service::systemd_runs();
    let (uid, gid) = owner_of(&data_dir)?;
    let autoctl = Autoctl::for_owner(&data_dir, &bin_dir, uid, gid)?;
    if let Some(key) = &init.ssl_key {
        check_key_file(key, &autoctl)?;
    }
    let mut report = MonitorInitReport {
        data_dir: data_dir.clone(),
        port: init.port,
        address: address.clone(),
        sslmode: "verify-full",
        ..Default::default()
    };
    let hba_path = data_dir.join("pg_hba.conf");
    // The passfile is written last: with it and knocker's block, an
    // earlier --monitor-init finished.
    let was_made_here = std::fs::read_to_string(&hba_path)
        .map(|t| t.contains(block::BEGIN) && t.contains(MONITOR_DATABASE))
        .unwrap_or(false)
        && autoctl.passfile().exists();
    if autoctl.config_file().exists() {
        if was_made_here {
            report.done.push(format!(
                "{} is a pg_auto_failover monitor set up by knocker already; nothing to do \
                 (its URI and password were shown once, when it was created)",
                data_dir.display()
            ));
            (report.service, report.supervise) = if systemd {
                (Some(ServiceUnit::monitor()), None)
            } else {
                (None, Some(autoctl.supervise()))
            };
            return Ok(report);
        }
        return Err(Error::refused_always(format!(
            "{} holds a pg_auto_failover node knocker did not finish setting up ({} exists): \
             remove both to start again",
            data_dir.display(),
            autoctl.state_dir().display()
        )));
    }
    let data_existed = data_dir.exists();
    if data_existed {
        let empty = std::fs::read_dir(&data_dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Error::refused_always(format!(
                "{} exists and is not empty: give --data-dir a new (or empty) directory",
                data_dir.display()
            )));
        }
    }
    if autoctl.state_dir().exists() {
        return Err(Error::refused_always(format!(
            "{} exists (left by an earlier attempt?): remove it to start again",
            autoctl.state_dir().display()
        )));
    }
    // A unit file of that name that runs another monitor is refused.
    let supervision = Supervision::choose(
        &autoctl,
        ServiceUnit::monitor(),
        &format!(
            "pg_auto_failover monitor {} (knocker autofailover)",
            data_dir.display()
        ),
        systemd,
    )?;
    if port_taken(init.port) {
        return Err(Error::refused_always(format!(
            "port {} is in use on this host: give the monitor another with --port",
            init.port
        )));
    }

    let pgdata = data_dir.display().to_string();
    let port = init.port.to_string();
    let pg_ctl = autoctl.pg_ctl.display().to_string();
    let path_s = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let (ca, cert, key) = (
        path_s(&init.ssl_ca),
        path_s(&init.ssl_cert),
        path_s(&init.ssl_key),
    );
    let create = autoctl.command(&[
        "create",
        "monitor",
        "--pgctl",
        &pg_ctl,
        "--pgdata",
        &pgdata,
        "--pgport",
        &port,
        "--hostname",
        &address,
        "--skip-pg-hba",
        "--ssl-ca-file",
        &ca,
        "--server-cert",
        &cert,
        "--server-key",
        &key,
        "--ssl-mode",
        "verify-full",
    ]);
    // Started once to set the password: socket only, in the private run
    // directory, so no client can reach it meanwhile.
    let run_dir = autoctl.state_dir().join("run");
    let start_log = autoctl.state_dir().join("monitor-init.log");
    let start = autoctl.as_user(&[
        &pg_ctl,
        "-D",
        &pgdata,
        "-l",
        &start_log.display().to_string(),
        "-o",
        &format!(
            "-p {port} -c listen_addresses='' -c unix_socket_directories='{}'",
            run_dir.display()
        ),
        "-w",
        "-t",
        "60",
        "start",
    ]);
    let stop = autoctl.as_user(&[
        &pg_ctl, "-D", &pgdata, "-m", "fast", "-w", "-t", "60", "stop",
    ]);
    let superuser = autoctl.user.clone();
    let hba_new = hba_text(&superuser, &autoctl.user, &allow)?;
    let ident_new = ident_text(&autoctl.user);
    let mut sql = vec![format!(
        "ALTER ROLE {MONITOR_ROLE} PASSWORD {}",
        escape_literal(pgctl::roles::PASSWORD_PLACEHOLDER)
    )];
    sql.extend(super::monitor_profile_sql());
    let mut plan = Plan::default();
    // initdb's files (trust for every local connection) are replaced whole.
    plan.files.push(FileChange::new(&hba_path, b"", &hba_new));
    plan.files.push(FileChange::new(
        data_dir.join("pg_ident.conf"),
        b"",
        ident_new.as_bytes(),
    ));
    plan.sql = sql;
    plan.commands = vec![create.clone(), start.clone(), stop.clone()];
    supervision.plan(&mut plan);
    report.warnings.push(format!(
        "the monitor's pg_hba.conf admits the keepers (scram-sha-256 over verified TLS) from {}",
        allow.join(", ")
    ));
    report.warnings.push(format!(
        "the keepers connect with sslmode=verify-full: the server certificate {} must name {address}",
        cert
    ));
    if dry_run {
        report.plan = Some(plan);
        (report.service, report.supervise) = supervision.report();
        return Ok(report);
    }

    let mut undo = Undo {
        data_dir: data_dir.clone(),
        data_existed,
        state_dir: autoctl.state_dir(),
        // `create monitor` starts PostgreSQL itself: a failure may leave
        // it running, and it is stopped before its directory goes.
        stop: Some(stop.clone()),
        unit: None,
        armed: true,
    };
    if !data_existed {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&data_dir)
            .map_err(|e| {
                Error::failed(format!("cannot create {}", data_dir.display())).with_source(e)
            })?;
        std::os::unix::fs::chown(&data_dir, Some(uid), Some(gid)).map_err(|e| {
            Error::failed(format!(
                "cannot give {} to {}",
                data_dir.display(),
                autoctl.user
            ))
            .with_source(e)
        })?;
    }
    autoctl.create_state_dirs()?;
    autoctl::run_ok("pg_autoctl create monitor", &create, CREATE_TIMEOUT).await?;
    report.done.push(format!(
        "pg_autoctl create monitor: {} on port {port}",
        data_dir.display()
    ));
    crate::replica::clone::write_owned(&hba_path, &hba_new, 0o600, uid, gid)?;
    crate::replica::clone::write_owned(
        &data_dir.join("pg_ident.conf"),
        ident_new.as_bytes(),
        0o600,
        uid,
        gid,
    )?;
    report.done.push(format!(
        "pg_hba.conf: initdb's trust lines replaced by the knocker autofailover block ({})",
        hba_path.display()
    ));

    autoctl::run_ok(
        "starting the monitor's PostgreSQL",
        &start,
        Duration::from_secs(90),
    )
    .await?;
    let password = pgctl::roles::Password::generate();
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    let local = pgctl::connect::LocalSuperuser {
        params: pgctl::conninfo::resolve_from_process_env(
            &ConnInfo::builder()
                .host(run_dir.display().to_string())
                .port(init.port)
                .user(superuser.clone())
                .dbname(MONITOR_DATABASE)
                .build(),
        )
        .map_err(|e| Error::failed("the monitor's socket").with_source(e))?
        .params,
        os_user: (uid != autoctl::current_uid()).then(|| autoctl.user.clone()),
    };
    let session = local
        .connect()
        .await
        .map_err(|e| Error::failed("connecting to the monitor's PostgreSQL").with_source(e))?;
    let client = session.client();
    if !pgctl::roles::suppress_statement_logging(client)
        .await
        .unwrap_or(false)
    {
        report.warnings.push(
            "statement logging could not be turned off for this session: autoctl_node's SCRAM \
             verifier (not the password) may be in the monitor's log"
                .into(),
        );
    }
    let mut statements = vec![format!(
        "ALTER ROLE {MONITOR_ROLE} PASSWORD {}",
        escape_literal(&verifier)
    )];
    statements.extend(super::monitor_profile_sql());
    for s in &statements {
        client
            .batch_execute(s)
            .await
            .map_err(|e| Error::failed("setting up the monitor").with_source(e))?;
    }
    drop(session);
    report.done.push(format!(
        "{MONITOR_ROLE}'s password set (SCRAM verifier made here); monitor profile applied \
         (health checks every 1 s, node unhealthy after 3 s, demote timeout 5 s)"
    ));
    autoctl::run_ok(
        "stopping the monitor's PostgreSQL",
        &stop,
        Duration::from_secs(90),
    )
    .await?;

    let uri = ConnInfo::builder()
        .host(address.clone())
        .port(init.port)
        .user(MONITOR_ROLE)
        .password(password.expose())
        .dbname(MONITOR_DATABASE)
        .sslmode(SslMode::VerifyFull)
        .sslrootcert(ca.clone())
        .build();
    if let Supervision::Service { unit, text } = &supervision {
        // A failure here rolls everything back: the URI was never shown.
        undo.unit = Some(unit.clone());
        let socket = Path::new(SOCKET_DIR).join(format!(".s.PGSQL.{port}"));
        unit.install(text, &socket, SERVICE_START_TIMEOUT).await?;
        report.done.push(format!(
            "{} written; the monitor runs under systemd ({}, enabled)",
            unit.path.display(),
            unit.name
        ));
    }
    // Last, after the service is up: the passfile marks a finished
    // --monitor-init (see `was_made_here`), and a run killed before this
    // point never showed its URI.
    crate::replica::clone::write_owned(
        &autoctl.passfile(),
        passfile_line([
            &address,
            &port,
            MONITOR_DATABASE,
            MONITOR_ROLE,
            password.expose(),
        ])
        .as_bytes(),
        0o600,
        uid,
        gid,
    )?;
    report.done.push(format!(
        "the password is kept for pg_autoctl on this host in {} (mode 0600, owner {})",
        autoctl.passfile().display(),
        autoctl.user
    ));
    (report.service, report.supervise) = supervision.report();
    undo.armed = false;
    report.changed = true;
    report.monitor_url = Some(Secret(uri.to_uri()));
    report.warnings.push(format!(
        "sslrootcert in the URI is this host's CA file ({ca}); --enroll uses each node's own \
         ssl_ca_file instead"
    ));
    report.warnings.push(
        "the monitor URI carries the formation's password: keep it for --enroll on each node; \
         it is not shown again"
            .into(),
    );
    Ok(report)
}

/// Removes what a failed `--monitor-init` created.
struct Undo {
    data_dir: PathBuf,
    data_existed: bool,
    state_dir: PathBuf,
    /// The command that stops the monitor's PostgreSQL (harmless when it
    /// is not running).
    stop: Option<Vec<String>>,
    /// The systemd unit written, disabled and removed again.
    unit: Option<ServiceUnit>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(unit) = &self.unit {
            unit.remove_quietly();
        }
        if let Some(stop) = &self.stop {
            service::run_quietly(stop);
        }
        if self.data_existed {
            for entry in std::fs::read_dir(&self.data_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_hba_has_no_trust_and_loads() {
        let text = hba_text("postgres", "postgres", &["10.0.0.0/24".into()]).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(!text.contains("trust"), "{text}");
        assert!(text.contains("map=pgautofailover"), "{text}");
        assert!(
            text.contains("hostssl pg_auto_failover autoctl_node 10.0.0.0/24 scram-sha-256"),
            "{text}"
        );
        assert!(ident_text("postgres").contains("pgautofailover  postgres  autoctl_node"));
    }

    #[test]
    fn systemd_accepts_the_unit_even_for_awkward_paths() {
        let autoctl = Autoctl::for_owner(
            Path::new("/var/lib/postgresql/15/mon 100%$HOME\\x\"y"),
            Path::new(BIN_DIR),
            0,
            0,
        )
        .unwrap();
        let unit = autoctl.systemd_unit("pg_auto_failover monitor 100% (test)");
        assert!(
            unit.contains("\"PGDATA=/var/lib/postgresql/15/mon 100%%$HOME\\\\x\\\"y\""),
            "{unit}"
        );
        assert!(
            unit.contains("run\" \"--pgdata\" \"/var/lib/postgresql/15/mon 100%%$$HOME"),
            "{unit}"
        );
        let verdict =
            super::super::service::tests::systemd_verify(super::super::MONITOR_UNIT, &unit);
        assert!(verdict.is_empty(), "{verdict}\n{unit}");
    }

    #[test]
    fn bad_input_is_usage() {
        let good = MonitorInit {
            data_dir: "/var/lib/postgresql/15/monitor".into(),
            port: 5432,
            address: Some("10.0.0.9".into()),
            ssl_ca: Some("/etc/hostname".into()),
            ssl_cert: Some("/etc/hostname".into()),
            ssl_key: Some("/etc/hostname".into()),
            allow: vec![],
        };
        assert_eq!(check_input(&good).unwrap().1, vec!["samenet".to_string()]);
        for bad in [
            MonitorInit {
                data_dir: "rel/dir".into(),
                ..good.clone()
            },
            MonitorInit {
                ssl_ca: None,
                ..good.clone()
            },
            MonitorInit {
                data_dir: "/var/lib/it's".into(),
                ..good.clone()
            },
            MonitorInit {
                address: Some("a,b".into()),
                ..good.clone()
            },
            MonitorInit {
                allow: vec!["nonsense".into()],
                ..good.clone()
            },
        ] {
            assert_eq!(
                check_input(&bad).unwrap_err().kind(),
                crate::ErrorKind::Usage
            );
        }
    }
}
