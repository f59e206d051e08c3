//! `knocker autofailover`: automated failover by pg_auto_failover 2.0,
//! set up and kept safe by knocker (docs/pg_auto_failover.md is the
//! verified reference every step here follows).
//!
//! - `--monitor-init` (on a third host) creates the monitor: its own
//!   cluster by `pg_autoctl create monitor --skip-pg-hba`, knocker's
//!   pg_hba.conf block (scram-sha-256 over verified TLS, no trust), a
//!   generated password set as a client-made SCRAM verifier, the tuned
//!   [`MONITOR_PROFILE`], and the monitor URI returned once.
//! - `--enroll --monitor URI` hands this node (a running primary, or a
//!   standby cloned by `knocker replica`, keeping its data) to
//!   pg_auto_failover: its own pg_hba.conf block (`--skip-pg-hba`), the
//!   roles with client-made SCRAM verifiers, the passwords in a passfile
//!   of the PostgreSQL user (never in `pg_autoctl.cfg`), the operator's
//!   memory settings and WAL bound kept with `ALTER SYSTEM` (they win over
//!   pg_autoctl's `postgresql-auto-failover.conf`), `primary_conninfo` /
//!   `primary_slot_name` reset on a standby (else it streams under the
//!   wrong name and the primary's synchronous commits hang), the server
//!   stopped (pg_auto_failover 2.0 refuses a running one) and
//!   `pg_autoctl create postgres` run with `--listen`/`--pgport` (the
//!   postmaster's command line wins over everything).
//! - `--disable`: back to knocker's manual mode with nothing lost.
//! - `--status`: the formation's nodes as the monitor sees them, the
//!   multi-host string for web nodes, and warnings on synchronous
//!   replication.
//!
//! Where systemd runs, the monitor and each keeper run as a unit of their
//! own, written, enabled and started by `--monitor-init`/`--enroll` (the
//! report's `service`) and removed by `--disable`; where there is none the
//! process is not started: the report's `supervise` is the command that
//! runs it in the foreground as the PostgreSQL user (`service.rs`). See
//! docs/ARCHITECTURE.md.

mod autoctl;
mod block;
mod debian;
mod disable;
mod enroll;
mod monitor;
mod service;
mod status;
mod switchover;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

pub use autoctl::{is_enrolled, Autoctl};
pub use block::{BEGIN, END};
pub use monitor::DEFAULT_DATA_DIR;
pub use service::{ServiceUnit, MONITOR_UNIT};
pub use status::{FormationNode, StatusReport};
pub use switchover::{enrolled_switchover, SwitchoverOutcome};

/// A secret shown once (the monitor URI): the type `knocker replica`
/// uses for its replication URI.
pub use crate::replica::Secret;

use crate::{Error, Plan};

/// The role pg_auto_failover's keepers use on the monitor.
pub const MONITOR_ROLE: &str = "autoctl_node";
/// The monitor's database.
pub const MONITOR_DATABASE: &str = "pg_auto_failover";
/// The role pg_auto_failover streams, clones and rewinds as (its name is
/// fixed in pg_autoctl).
pub const REPLICATOR_ROLE: &str = "pgautofailover_replicator";
/// The role of the monitor's health checks: NOLOGIN is enough (the check
/// counts an authentication request as alive).
pub const HEALTH_CHECK_ROLE: &str = "pgautofailover_monitor";
/// Where Debian installs pg_autoctl.
pub const PG_AUTOCTL: &str = "/usr/bin/pg_autoctl";

/// The monitor settings knocker recommends (docs/pg_auto_failover.md
/// section 6): health checks every second, a node unhealthy after 3 s, and
/// the new primary writable 5 s after the old one was demoted, which stays
/// above the keepers' `network_partition_timeout` of
/// [`KEEPER_PARTITION_TIMEOUT`] s plus their 1 s loop, so an isolated old
/// primary has fenced itself before the new one takes writes. The 3 s
/// unhealthy timeout must also stay below the interval at which a keeper
/// reports while its PostgreSQL hangs (about 5 s: two 2 s local connection
/// timeouts per loop): the monitor fails a node over only once its keeper
/// has stopped reporting for that long, so with pg_auto_failover's default
/// of 20 s a hung PostgreSQL under a live keeper is never failed over.
/// Measured by `cargo xtask bench autofailover` (BENCHMARKS.md): first
/// write 8.7 s after the primary's host died (defaults 51.7 s), 10.6 s
/// after it stalled (53.0 s) or its PostgreSQL hung (no failover), nothing
/// acknowledged lost, never two nodes taking writes.
pub const MONITOR_PROFILE: [(&str, &str); 6] = [
    ("pgautofailover.health_check_period", "1000"),
    ("pgautofailover.health_check_timeout", "1000"),
    ("pgautofailover.health_check_max_retries", "1"),
    ("pgautofailover.health_check_retry_delay", "500"),
    ("pgautofailover.node_considered_unhealthy_timeout", "3000"),
    ("pgautofailover.primary_demote_timeout", "5000"),
];

/// The keepers' `timeout.network_partition_timeout` (seconds) that goes
/// with [`MONITOR_PROFILE`].
pub const KEEPER_PARTITION_TIMEOUT: u32 = 3;

/// The statements that apply [`MONITOR_PROFILE`] on a monitor (superuser
/// session): `ALTER SYSTEM` for each, then a reload.
pub fn monitor_profile_sql() -> Vec<String> {
    let mut sql: Vec<String> = MONITOR_PROFILE
        .iter()
        .map(|(name, value)| format!("ALTER SYSTEM SET {name} = {value}"))
        .collect();
    sql.push("SELECT pg_catalog.pg_reload_conf()".into());
    sql
}

/// Where and how `--monitor-init` creates the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorInit {
    /// The monitor's data directory (new or empty; its parent belongs to
    /// the PostgreSQL user, who will own and run it).
    pub data_dir: PathBuf,
    /// Its port.
    pub port: u16,
    /// The host name or address the nodes reach it at (the server
    /// certificate must name it); default: this host's advertised address.
    pub address: Option<String>,
    /// The formation's CA certificate (the keepers verify the monitor).
    pub ssl_ca: Option<PathBuf>,
    /// The monitor's server certificate, signed by that CA.
    pub ssl_cert: Option<PathBuf>,
    /// Its private key (readable by the PostgreSQL user only).
    pub ssl_key: Option<PathBuf>,
    /// Addresses or CIDRs the keepers connect from (default: `samenet`).
    pub allow: Vec<String>,
}

impl MonitorInit {
    /// The defaults: [`DEFAULT_DATA_DIR`], port 5432, no TLS files yet.
    pub fn new() -> MonitorInit {
        MonitorInit {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            port: 5432,
            address: None,
            ssl_ca: None,
            ssl_cert: None,
            ssl_key: None,
            allow: Vec::new(),
        }
    }
}

impl Default for MonitorInit {
    fn default() -> MonitorInit {
        MonitorInit::new()
    }
}

/// The action of one call.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the monitor on this host.
    MonitorInit(MonitorInit),
    /// Hand this node to pg_auto_failover.
    Enroll {
        /// The monitor URI `--monitor-init` printed (with its password).
        monitor: Secret,
    },
    /// Back to knocker's manual mode, nothing lost.
    Disable,
    /// The formation's state.
    Status {
        /// The monitor URI, when this node is not enrolled.
        monitor: Option<Secret>,
    },
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Action {
    /// The flag that names the action, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Action::MonitorInit(_) => "monitor-init",
            Action::Enroll { .. } => "enroll",
            Action::Status { .. } => "status",
            Action::Disable => "disable",
        }
    }
}

/// What to do and where: plain data, no command-line parser types.
/// `Debug` shows the connection strings without their passwords.
#[derive(Clone)]
pub struct Options {
    /// The action.
    pub action: Action,
    /// knocknoc.conf, for the application's database name.
    pub config: PathBuf,
    /// The application's connection string instead of knocknoc.conf's.
    pub conn: Option<String>,
    /// A superuser connection string to this node (default: peer login as
    /// `postgres` over `/var/run/postgresql`).
    pub admin_conn: Option<String>,
    /// `VERSION/NAME` of a Debian cluster.
    pub cluster: Option<String>,
    /// The node's name in the formation (default: the host name).
    pub name: Option<String>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Pass the overridable safety checks.
    pub force: bool,
}

crate::replica::debug_redacting_conns!(Options {
    action, config, cluster, name, dry_run, force;
    redacted: conn, admin_conn
});

impl Options {
    /// Options for `action` with every other field at its default.
    pub fn new(action: Action) -> Options {
        Options {
            action,
            config: PathBuf::from("/opt/knocknoc/etc/knocknoc.conf"),
            conn: None,
            admin_conn: None,
            cluster: None,
            name: None,
            dry_run: false,
            force: false,
        }
    }
}

/// What `--enroll` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct EnrollReport {
    /// Whether anything changed.
    pub changed: bool,
    /// The node's role when enrolled: `primary` or `standby`.
    pub role: &'static str,
    /// The node's name in the formation.
    pub name: String,
    /// `--dry-run`: the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// What was done, one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// Things the operator should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Where systemd runs: the unit that runs the keeper (enabled and
    /// started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceUnit>,
    /// Where there is no systemd: the command that runs the keeper in the
    /// foreground as the PostgreSQL user (PostgreSQL stays stopped until
    /// it runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervise: Option<Vec<String>>,
}

/// What `--monitor-init` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct MonitorInitReport {
    /// Whether anything changed.
    pub changed: bool,
    /// The monitor URI with the formation's password, for `--enroll`:
    /// present once, when the monitor was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_url: Option<Secret>,
    /// The monitor's data directory.
    pub data_dir: PathBuf,
    /// Its port.
    pub port: u16,
    /// The address the nodes reach it at.
    pub address: String,
    /// The sslmode the keepers connect with.
    pub sslmode: &'static str,
    /// `--dry-run`: the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// What was done, one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// Things the operator should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Where systemd runs: the unit that runs the monitor (enabled and
    /// started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceUnit>,
    /// Where there is no systemd: the command that runs the monitor in the
    /// foreground as the PostgreSQL user (it is stopped until it runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervise: Option<Vec<String>>,
}

/// What `--disable` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct DisableReport {
    /// Whether anything changed.
    pub changed: bool,
    /// `--dry-run`: the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// What was done, one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// Things the operator should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The report of one call.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Report {
    /// `--monitor-init`.
    MonitorInit(MonitorInitReport),
    /// `--enroll`.
    Enroll(EnrollReport),
    /// `--status`.
    Status(StatusReport),
    /// `--disable`.
    Disable(DisableReport),
}

/// Runs `options.action`. `ask` is called before the server is stopped,
/// with the question; answering false refuses (nothing changed).
pub async fn run(options: &Options, ask: &mut dyn FnMut(&str) -> bool) -> Result<Report, Error> {
    match &options.action {
        Action::MonitorInit(init) => monitor::monitor_init(init, options.dry_run)
            .await
            .map(Report::MonitorInit),
        Action::Enroll { monitor } => enroll::enroll(options, monitor, ask)
            .await
            .map(Report::Enroll),
        Action::Disable => disable::disable(options).await.map(Report::Disable),
        Action::Status { monitor } => status::status(options, monitor.as_ref())
            .await
            .map(Report::Status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let mut o = Options::new(Action::Enroll {
            monitor: Secret("postgres://autoctl_node:s3cret@m/pg_auto_failover".into()),
        });
        o.conn = Some("postgres://app:s3cret@h/db".into());
        o.admin_conn = Some("host=/run user=postgres password=s3cret".into());
        let text = format!("{o:?}");
        assert!(!text.contains("s3cret"), "{text}");
        // Every other field is still shown, the connection strings
        // without their passwords.
        for shown in ["admin_conn: Some(", "user=postgres", "force: false"] {
            assert!(text.contains(shown), "{shown}: {text}");
        }
    }
}
