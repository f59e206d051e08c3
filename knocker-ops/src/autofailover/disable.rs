//! `--disable`: this node back to knocker's manual mode with nothing lost
//! (data directory layout kept by pg-harness-style clusters whose
//! configuration lives in PGDATA; docs/pg_auto_failover.md section 4):
//! the node dropped from the monitor (its keeper then stops PostgreSQL and
//! exits), pg_autoctl's include line and files removed, PostgreSQL started
//! with `pg_ctl`, and what pg_autoctl left in `postgresql.auto.conf`
//! reset: `synchronous_standby_names` (a primary left waiting for a
//! standby that is gone holds every commit) and
//! `default_transaction_read_only`. A standby keeps streaming: its
//! `primary_conninfo`, which pg_autoctl kept in its own include, is
//! written with `ALTER SYSTEM`, with the passfile named in it (the keeper
//! passed it in the environment); its slot is gone (pg_auto_failover drops
//! it on the primary as the node leaves). The pg_hba.conf block stays: the
//! replication lines are still in use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postgres_protocol::escape::escape_literal;

use super::autoctl::{self, Autoctl};
use super::debian;
use super::service::{self, ServiceUnit};
use super::{DisableReport, Options};
use crate::{Error, FileChange, Plan};

/// The start of the lines pg_autoctl prepends to postgresql.conf:
/// `include 'postgresql-auto-failover.conf'` and, on a node that has been
/// a standby, `include 'postgresql-auto-failover-standby.conf'`.
pub(super) const INCLUDE_LINE_START: &str = "include 'postgresql-auto-failover";

/// Settings whose current values `--disable` writes with ALTER SYSTEM.
pub const KEPT_ON_DISABLE: [&str; 9] = [
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "max_wal_senders",
    "max_replication_slots",
    "wal_level",
    "wal_log_hints",
    "hot_standby",
    "hot_standby_feedback",
];

/// How long stopping the keeper (and its PostgreSQL, shutdown checkpoint
/// included) may take.
const KEEPER_STOP_TIMEOUT: Duration = Duration::from_secs(180);

/// pg_autoctl's files in the data directory.
const AUTOCTL_FILES: [&str; 2] = [
    "postgresql-auto-failover.conf",
    "postgresql-auto-failover-standby.conf",
];

/// The other nodes of this node's formation group, by name, as the monitor
/// lists them (`pg_autoctl show state`, through this node's own
/// configuration).
async fn enrolled_peers(autoctl: &Autoctl, pgdata: &str) -> Result<Vec<String>, Error> {
    let own = autoctl.configured_name();
    let out = autoctl::run_ok(
        "pg_autoctl show state",
        &autoctl.command(&["show", "state", "--pgdata", pgdata, "--json"]),
        Duration::from_secs(30),
    )
    .await?;
    let nodes = super::status::parse_state(&String::from_utf8_lossy(&out.stdout))?;
    Ok(nodes
        .into_iter()
        .filter(|n| Some(&n.name) != own.as_ref())
        .map(|n| n.name)
        .collect())
}

/// postgresql.conf without pg_autoctl's include line.
pub fn without_include(conf: &str) -> String {
    conf.split_inclusive('\n')
        .filter(|l| !l.trim_start().starts_with(INCLUDE_LINE_START))
        .collect()
}

pub(super) async fn disable(options: &Options) -> Result<DisableReport, Error> {
    let (local, session) = debian::connect_node(options).await?;
    let row = session
        .client()
        .query_one(
            "SELECT current_setting('data_directory'), \
             (SELECT setting FROM pg_catalog.pg_config WHERE name = 'BINDIR'), \
             pg_catalog.pg_is_in_recovery(), current_setting('primary_conninfo'), \
             current_setting('primary_slot_name'), current_setting('config_file'), \
             current_setting('port'), current_setting('listen_addresses'), \
             current_setting('unix_socket_directories'), \
             current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .map_err(|e| Error::failed("reading the server's settings").with_source(e))?;
    let pgdata = PathBuf::from(row.get::<_, String>(0));
    let bin_dir = PathBuf::from(row.get::<_, String>(1));
    let in_recovery: bool = row.get(2);
    let (conninfo, slot): (String, String) = (row.get(3), row.get(4));
    let config_file = PathBuf::from(row.get::<_, String>(5));
    let major = u32::try_from(row.get::<_, i32>(9)).unwrap_or(0);
    // A Debian cluster pg_autoctl adopted: its /etc files come back.
    let layout = debian::adopted(&pgdata, &config_file, major);
    // What the node runs with now and must keep once pg_autoctl's include
    // and command line are gone (ALTER SYSTEM, before the drop): its
    // addresses (pg_autoctl passes -p and -h, and a rewind copied the other
    // node's postgresql.conf, port and socket directory included), and the
    // replication settings of pg_autoctl's include (a standby whose
    // max_wal_senders falls below the primary's refuses to start).
    let mut keep_now: Vec<String> = Vec::new();
    for name in KEPT_ON_DISABLE {
        // ALTER SYSTEM writes a list setting with each element in double
        // quotes ('"/var/run/postgresql"'), which Debian's pg_ctlcluster
        // takes for part of the directory name (it then fails to create
        // `"`). A Debian cluster gets its own postgresql.conf back, which
        // names its socket directory.
        if name == "unix_socket_directories" && layout.is_some() {
            continue;
        }
        let value = debian::current_setting(session.client(), name).await?;
        keep_now.push(format!(
            "ALTER SYSTEM SET {name} = {}",
            escape_literal(&value)
        ));
    }
    let autoctl = Autoctl::for_data_dir(&pgdata, &bin_dir)?;
    let mut report = DisableReport::default();
    if !autoctl.config_file().exists() {
        drop(session);
        report.done.push(format!(
            "{} is not enrolled; nothing to do",
            pgdata.display()
        ));
        return Ok(report);
    }
    let conf_old = std::fs::read_to_string(&config_file).map_err(|e| {
        Error::failed(format!("cannot read {}", config_file.display())).with_source(e)
    })?;
    let conf_new = without_include(&conf_old);

    let pgdata_s = pgdata.display().to_string();
    // pg_autoctl drop node waits for the keeper's pid to vanish, up to
    // 30 s before it sends SIGQUIT: a keeper that has exited but is not
    // reaped by its supervisor (a zombie) costs those 30 s, PostgreSQL
    // already stopped.
    let drop_node = autoctl.command(&["drop", "node", "--pgdata", &pgdata_s]);
    // The keeper is stopped before the node is removed. The monitor of
    // pg_auto_failover 2.0 races when a node is removed while its keeper
    // runs: a node_active call of the leaving node that crosses
    // remove_node gets goal `single` ("there is no other node") instead of
    // `dropped` (ProceedGroupState counts the group without the node being
    // dropped). Seen here twice in a few runs: once the leaving standby
    // was promoted next to the running primary; with candidate priority 0
    // it got `report_lsn` instead and `drop node` failed after 30 s. With
    // no keeper running, `drop node` reports `dropped` itself. A standby
    // first leaves the synchronous quorum (the primary's commits would
    // otherwise wait for it until the monitor marks it unhealthy) and the
    // candidates for promotion.
    let set = |what: &str, value: &str| {
        autoctl.command(&["set", "node", what, "--pgdata", &pgdata_s, value])
    };
    let mut before_drop: Vec<(&str, Vec<String>)> = Vec::new();
    if in_recovery {
        before_drop.push((
            "leaving the synchronous quorum",
            set("replication-quorum", "false"),
        ));
        before_drop.push((
            "leaving the candidates for promotion",
            set("candidate-priority", "0"),
        ));
    }
    let systemd = service::systemd_runs();
    let start_log = autoctl.state_dir().join("postgres-start.log");
    let handback = Handback::new(
        &autoctl,
        layout.as_ref(),
        ServiceUnit::of_enrolled(&autoctl).filter(|u| u.path.exists()),
        systemd,
        &start_log,
    );
    let Handback {
        stop_keeper, start, ..
    } = &handback;
    if in_recovery && !conninfo.is_empty() {
        let with_passfile = format!(
            "{conninfo} passfile={}",
            quote_conninfo_value(&autoctl.passfile().display().to_string())
        );
        keep_now.push(format!(
            "ALTER SYSTEM SET primary_conninfo = {}",
            escape_literal(&with_passfile)
        ));
        // pg_auto_failover drops this node's slot on the primary when the
        // node leaves the formation: streaming on with it would fail.
        keep_now.push("ALTER SYSTEM RESET primary_slot_name".into());
        if !slot.is_empty() {
            report.warnings.push(format!(
                "this standby streams without a slot now (pg_auto_failover drops {slot} on the \
                 primary as the node leaves): give it knocker's slot back with knocker replica \
                 --allow on the primary"
            ));
        }
    }
    let mut sql = vec![
        "ALTER SYSTEM RESET synchronous_standby_names".to_string(),
        "ALTER SYSTEM RESET default_transaction_read_only".to_string(),
    ];
    sql.push("SELECT pg_catalog.pg_reload_conf()".into());

    let mut plan = Plan::default();
    match &layout {
        None => plan.files.push(FileChange::new(
            &config_file,
            conf_old.as_bytes(),
            conf_new.as_bytes(),
        )),
        Some(l) => {
            plan.files.push(FileChange::new(
                l.etc("postgresql.conf"),
                b"",
                debian::restored_conf(&conf_old).as_bytes(),
            ));
            plan.files
                .push(FileChange::new(&config_file, conf_old.as_bytes(), b""));
            let now = std::fs::read(l.etc("start.conf")).unwrap_or_default();
            let orig = std::fs::read(l.etc("start.conf.orig")).unwrap_or_else(|_| now.clone());
            plan.files
                .push(FileChange::new(l.etc("start.conf"), &now, &orig));
            report.warnings.push(format!(
                "Debian cluster {}: postgresql.conf (pg_auto_failover's and knocker's include \
                 lines removed, the lines it commented out restored), pg_hba.conf (knocker's \
                 blocks with it) and pg_ident.conf go back to {}, start.conf.orig back to \
                 start.conf; pg_lsclusters lists the cluster again and pg_ctlcluster starts it",
                l.id(),
                l.conf_dir.display()
            ));
        }
    }
    plan.commands = before_drop.iter().map(|(_, c)| c.clone()).collect();
    plan.commands.push(stop_keeper.clone());
    plan.commands.push(drop_node.clone());
    for f in AUTOCTL_FILES {
        plan.commands.push(vec![
            "rm".into(),
            "-f".into(),
            pgdata.join(f).display().to_string(),
        ]);
    }
    handback.plan_reload(&mut plan);
    plan.commands.push(start.clone());
    plan.sql = keep_now.iter().chain(&sql).cloned().collect();
    // Dropping the primary while other nodes are enrolled makes the monitor
    // promote one of them (the group goes to `single`), and this node comes
    // back writable in manual mode: two primaries.
    let peers = if in_recovery {
        Ok(Vec::new())
    } else {
        enrolled_peers(&autoctl, &pgdata_s).await
    };
    let two_primaries = match &peers {
        Ok(p) if p.is_empty() => None,
        Ok(p) => Some(format!(
            "this node is the formation's primary and {} still enrolled: dropping it makes \
             pg_auto_failover promote one of them while this node takes writes again in manual \
             mode (two primaries). Run --disable on each standby first, or `knocker failover \
             --switchover` and then --disable here",
            p.join(", ")
        )),
        Err(e) => Some(format!(
            "this node is the formation's primary and the monitor cannot say whether other nodes \
             are enrolled ({e}): if one is, dropping this node makes pg_auto_failover promote it \
             while this node takes writes again (two primaries). Run --disable on each standby first"
        )),
    };
    if options.dry_run {
        report.warnings.extend(two_primaries);
        report.plan = Some(plan);
        return Ok(report);
    }
    if let Some(why) = two_primaries {
        if !options.force {
            return Err(Error::refused(why));
        }
        report.warnings.push(format!("--force: {why}"));
    }

    for statement in &keep_now {
        session
            .client()
            .batch_execute(statement)
            .await
            .map_err(|e| Error::failed("keeping the node's addresses").with_source(e))?;
    }
    drop(session);
    let began = Instant::now();
    for (what, argv) in &before_drop {
        autoctl::run_ok(what, argv, Duration::from_secs(60)).await?;
        report.done.push(format!("{what}: done"));
    }
    // Not running (crashed, or stopped by its supervisor) is fine: the
    // wait below then returns at once.
    // Stopping includes PostgreSQL's shutdown checkpoint, which a busy
    // server with large shared_buffers can take minutes over (under systemd
    // `disable --now` waits for it, up to the unit's TimeoutStopSec, 90 s by
    // default).
    let out = autoctl::run(stop_keeper, KEEPER_STOP_TIMEOUT).await?;
    let keeper_pid_file = autoctl.keeper_pid_file();
    let deadline = Instant::now() + KEEPER_STOP_TIMEOUT;
    while keeper_running(&keeper_pid_file) || postmaster_running(&pgdata.join("postmaster.pid")) {
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "the keeper of {} still runs {} s after it was stopped ({}): is it restarted by \
                 a supervisor? Stop that supervisor and run --disable again\n{}",
                pgdata.display(),
                KEEPER_STOP_TIMEOUT.as_secs(),
                out.status,
                autoctl::output_tail(&out)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.done.push(format!(
        "keeper and PostgreSQL stopped ({:.1} s)",
        began.elapsed().as_secs_f64()
    ));
    let out = autoctl::run_ok("pg_autoctl drop node", &drop_node, Duration::from_secs(90)).await?;
    if began.elapsed() > Duration::from_secs(10) {
        report.warnings.push(format!(
            "pg_autoctl drop node took {:.0} s; it said:\n{}",
            began.elapsed().as_secs_f64(),
            autoctl::output_tail(&out)
        ));
    }
    report.done.push(format!(
        "dropped from the monitor (pg_autoctl drop node, {:.1} s)",
        began.elapsed().as_secs_f64()
    ));
    // The keeper stops PostgreSQL as it leaves; wait for that, so that
    // the start below is knocker's.
    let pid_file = pgdata.join("postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while postmaster_running(&pid_file) {
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "PostgreSQL at {} still runs 60 s after the node was dropped: is its keeper \
                 restarted by a supervisor? Stop that supervisor and run --disable again",
                pgdata.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match &layout {
        None => debian::rewrite(&config_file, conf_new.as_bytes())?,
        Some(l) => {
            let backup = super::enroll::debian_backup_dir(&autoctl);
            report.done.extend(debian::restore(l, &backup)?);
        }
    }
    for f in AUTOCTL_FILES {
        match std::fs::remove_file(pgdata.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::failed(format!("cannot remove {f}")).with_source(e));
            }
        }
    }
    report.done.push(match &layout {
        None => format!(
            "removed pg_autoctl's include line from {} and its files",
            config_file.display()
        ),
        Some(_) => format!("removed pg_autoctl's files from {}", pgdata.display()),
    });
    report.done.extend(handback.reload().await?);
    let out = autoctl::run(start, Duration::from_secs(90)).await?;
    if !out.status.success() {
        let log = std::fs::read_to_string(&start_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        return Err(Error::failed(format!(
            "starting PostgreSQL failed ({}):\n{}\n{}:\n{}",
            out.status,
            autoctl::output_tail(&out),
            start_log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let session = local
        .connect()
        .await
        .map_err(|e| Error::failed("connecting after the restart").with_source(e))?;
    for s in &sql {
        session
            .client()
            .batch_execute(s)
            .await
            .map_err(|e| Error::failed("resetting pg_autoctl's settings").with_source(e))?;
    }
    report.done.push(format!(
        "PostgreSQL started with {} {:.1} s after the drop began; reset synchronous_standby_names and \
         default_transaction_read_only{}",
        match &layout {
            Some(_) if systemd => "systemctl",
            Some(_) => "pg_ctlcluster",
            None => "pg_ctl",
        },
        began.elapsed().as_secs_f64(),
        if in_recovery {
            "; primary_conninfo kept with ALTER SYSTEM"
        } else {
            ""
        }
    ));
    let state = autoctl.state_dir();
    for sub in ["config", "data", "run", "debian-etc-backup"] {
        let _ = std::fs::remove_dir_all(state.join(sub));
    }
    report.done.push(format!(
        "removed pg_autoctl's state under {} (the passfile stays: replication uses it)",
        state.display()
    ));
    report.warnings.push(format!(
        "the knocker autofailover pg_hba.conf block stays (its replication lines are in use); {}",
        match &layout {
            Some(l) if systemd => format!("PostgreSQL runs as {} again", l.systemd_unit()),
            Some(l) => format!(
                "pg_ctlcluster {} {} manages PostgreSQL again",
                l.version, l.name
            ),
            None => "PostgreSQL now runs without a supervisor: start it with the host's service \
                     manager"
                .to_string(),
        }
    ));
    report.changed = true;
    Ok(report)
}

/// How `--disable` takes PostgreSQL back from the keeper.
#[derive(Debug, PartialEq, Eq)]
struct Handback {
    /// Stops the keeper (which stops PostgreSQL): its systemd unit's
    /// `disable --now` where `--enroll` wrote one (`Restart=always` would
    /// start a keeper stopped by `pg_autoctl stop` again), else
    /// `pg_autoctl stop`.
    stop_keeper: Vec<String>,
    /// The keeper's unit, removed once the node is out.
    unit: Option<ServiceUnit>,
    /// Whether systemd reads its units again before the start: the unit
    /// is gone, or Debian's generator must see `start.conf` back at
    /// `auto` so that the cluster starts at boot again.
    daemon_reload: bool,
    /// Starts PostgreSQL again: Debian's own service (`postgresql@V-N`)
    /// under systemd, `pg_ctlcluster` elsewhere, else `pg_ctl` as the
    /// PostgreSQL user.
    start: Vec<String>,
}

impl Handback {
    /// For the node of `autoctl`, whose keeper's unit file `unit` exists
    /// (`None`: no unit), on a host where `systemd` runs or not.
    fn new(
        autoctl: &Autoctl,
        layout: Option<&debian::DebianLayout>,
        unit: Option<ServiceUnit>,
        systemd: bool,
        start_log: &Path,
    ) -> Handback {
        let pgdata = autoctl.pgdata.display().to_string();
        let unit = unit.filter(|_| systemd);
        let stop_keeper = match &unit {
            Some(u) => u.stop_command(),
            None => autoctl.command(&["stop", "--pgdata", &pgdata]),
        };
        let start = match layout {
            Some(l) if systemd => vec!["systemctl".to_string(), "start".into(), l.systemd_unit()],
            Some(l) => ["pg_ctlcluster", &l.version, &l.name, "start"]
                .map(String::from)
                .to_vec(),
            None => autoctl.as_user(&[
                &autoctl.pg_ctl.display().to_string(),
                "-D",
                &pgdata,
                "-l",
                &start_log.display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ]),
        };
        Handback {
            stop_keeper,
            daemon_reload: unit.is_some() || (systemd && layout.is_some()),
            unit,
            start,
        }
    }

    /// The unit's removal and the reload, for the plan.
    fn plan_reload(&self, plan: &mut Plan) {
        match &self.unit {
            Some(u) => u.plan_removal(plan),
            None if self.daemon_reload => plan.commands.push(service::daemon_reload()),
            None => {}
        }
    }

    /// Removes the unit and reloads systemd, as planned; what was done.
    async fn reload(&self) -> Result<Vec<String>, Error> {
        match &self.unit {
            Some(u) => {
                u.remove().await?;
                Ok(vec![format!("removed the keeper's systemd unit {u}")])
            }
            None if self.daemon_reload => {
                service::run_checked(&service::daemon_reload()).await?;
                Ok(vec!["systemctl daemon-reload: done".into()])
            }
            None => Ok(Vec::new()),
        }
    }
}

/// A conninfo value in single quotes, as libpq reads them.
fn quote_conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Whether the keeper whose pid file is `pid_file` is alive (a zombie,
/// which its supervisor has not reaped yet, counts as gone).
/// Whether the keeper whose pid file is `pid_file` runs (not a zombie).
pub(super) fn keeper_running(pid_file: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
    else {
        return false;
    };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').map_or(0, |i| i + 1)..]
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Whether the postmaster that `pid_file` names runs.
pub(super) fn postmaster_running(pid_file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> (Autoctl, debian::DebianLayout) {
        let pgdata = Path::new("/var/lib/postgresql/15/main");
        // Owned by whoever runs the test: no runuser in the commands.
        let me = autoctl::current_uid();
        let autoctl =
            Autoctl::for_owner(pgdata, Path::new("/usr/lib/postgresql/15/bin"), me, 0).unwrap();
        (
            autoctl,
            debian::DebianLayout::for_data_dir(pgdata, 15).unwrap(),
        )
    }

    #[test]
    fn under_systemd_the_keepers_unit_goes_and_debians_service_comes_back() {
        let (autoctl, layout) = node();
        let unit = ServiceUnit::keeper("node1");
        let h = Handback::new(
            &autoctl,
            Some(&layout),
            Some(unit.clone()),
            true,
            Path::new("/tmp/log"),
        );
        assert_eq!(
            h.stop_keeper,
            [
                "systemctl",
                "disable",
                "--now",
                "pgautofailover-node1.service"
            ]
        );
        assert_eq!(
            h.start,
            ["systemctl", "start", "postgresql@15-main.service"]
        );
        let mut plan = Plan::default();
        h.plan_reload(&mut plan);
        assert_eq!(plan.files[0].path, unit.path);
        assert_eq!(plan.commands, [service::daemon_reload()]);
        // No unit of knocker's (the keeper was supervised otherwise): the
        // keeper is stopped by pg_autoctl, systemd still reloads so that
        // Debian's generator sees start.conf again.
        let h = Handback::new(&autoctl, Some(&layout), None, true, Path::new("/tmp/log"));
        assert!(h.stop_keeper.ends_with(&[
            "stop".to_string(),
            "--pgdata".into(),
            "/var/lib/postgresql/15/main".into()
        ]));
        assert!(h.daemon_reload && h.unit.is_none());
    }

    #[test]
    fn without_systemd_nothing_of_systemd_is_planned() {
        let (autoctl, layout) = node();
        let unit = Some(ServiceUnit::keeper("node1"));
        let h = Handback::new(
            &autoctl,
            Some(&layout),
            unit.clone(),
            false,
            Path::new("/tmp/log"),
        );
        assert!(h.stop_keeper.ends_with(&[
            "stop".to_string(),
            "--pgdata".into(),
            "/var/lib/postgresql/15/main".into()
        ]));
        assert_eq!(h.start, ["pg_ctlcluster", "15", "main", "start"]);
        let mut plan = Plan::default();
        h.plan_reload(&mut plan);
        assert!(plan.is_empty(), "{plan}");
        let h = Handback::new(&autoctl, None, unit, false, Path::new("/tmp/log"));
        assert_eq!(
            h.start,
            [
                "/usr/lib/postgresql/15/bin/pg_ctl",
                "-D",
                "/var/lib/postgresql/15/main",
                "-l",
                "/tmp/log",
                "-w",
                "-t",
                "60",
                "start"
            ]
        );
        assert!(!h.daemon_reload);
    }
}
