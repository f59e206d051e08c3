//! `--status`: the formation as the monitor sees it (`pg_autoctl show
//! state --json`), each node's role derived from its pg_auto_failover
//! state (docs/pg_auto_failover.md section 5), the multi-host string for
//! the web nodes, and warnings where synchronous replication can hold or
//! lose commits.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pgctl::conninfo::{ConnInfo, Keyword};
use serde::{Deserialize, Serialize};

use super::autoctl::{self, passfile_line, Autoctl};
use super::{Options, Secret, MONITOR_DATABASE, MONITOR_ROLE};
use crate::Error;

/// One node of the formation.
#[derive(Debug, Clone, Serialize)]
pub struct FormationNode {
    /// Its name in the formation.
    pub name: String,
    /// Where the other nodes and the web nodes reach it.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// pg_auto_failover's state the node reported.
    pub state: String,
    /// The state the monitor assigned (differs while a change is under way).
    pub assigned_state: String,
    /// `primary` (takes writes), `standby`, `promoting` (a standby being
    /// promoted, not writable yet), `demoting` or `unknown`.
    pub role: &'static str,
    /// Whether the monitor's health check reaches it.
    pub healthy: bool,
    /// Counts for synchronous replication (`replication_quorum`).
    pub replication_quorum: bool,
    /// Promotion priority (0 = never promoted).
    pub candidate_priority: i64,
    /// The WAL position it last reported.
    pub reported_lsn: String,
}

/// What `--status` reports.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The nodes, as the monitor sees them.
    pub nodes: Vec<FormationNode>,
    /// The multi-host connection string (without user and password) for
    /// the web nodes: every node, writable first, `target_session_attrs=read-write`.
    pub multi_host_url: String,
    /// Things the operator should know (synchronous replication, health).
    pub warnings: Vec<String>,
    /// The last failover among the monitor's recent events, if any.
    pub last_failover: Option<LastFailover>,
}

/// A failover as the monitor's events record it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LastFailover {
    /// The node promoted.
    pub node: String,
    /// When the monitor assigned it `prepare_promotion`.
    pub started_at: String,
    /// When it reported `wait_primary` (writable), if it has.
    pub writable_at: Option<String>,
}

/// `show events` arguments: enough recent events to find the last failover.
const EVENTS: &[&str] = &["events", "--count", "200"];

/// The last failover in `pg_autoctl show events --json` (rows of the
/// monitor's `pgautofailover.event`): the last row assigning
/// `prepare_promotion`, and that node's first `wait_primary` report after it.
pub fn last_failover(json: &str) -> Option<LastFailover> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).ok()?;
    let text =
        |r: &serde_json::Value, k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let mut rows: Vec<&serde_json::Value> = rows.iter().collect();
    rows.sort_by_key(|r| r.get("eventid").and_then(|v| v.as_i64()).unwrap_or(0));
    let start = rows
        .iter()
        .rposition(|r| text(r, "goalstate").as_deref() == Some("prepare_promotion"))?;
    let node = text(rows[start], "nodename")?;
    let writable_at = rows[start..]
        .iter()
        .find(|r| {
            text(r, "nodename").as_deref() == Some(node.as_str())
                && text(r, "reportedstate").as_deref() == Some("wait_primary")
        })
        .and_then(|r| text(r, "eventtime"));
    Some(LastFailover {
        started_at: text(rows[start], "eventtime")?,
        node,
        writable_at,
    })
}

/// The role a pg_auto_failover state means (states of
/// `src/monitor/replication_state.h`; `stop_replication` is a promoted
/// node that does not take writes until `wait_primary`).
pub fn role_of(state: &str) -> &'static str {
    match state {
        "single" | "wait_primary" | "primary" | "join_primary" | "apply_settings" => "primary",
        "stop_replication" | "prepare_promotion" => "promoting",
        "draining" | "demote_timeout" | "demoted" | "prepare_maintenance" => "demoting",
        "catchingup" | "secondary" | "report_lsn" | "fast_forward" | "join_secondary"
        | "wait_standby" | "maintenance" | "wait_maintenance" => "standby",
        _ => "unknown",
    }
}

#[derive(Deserialize)]
struct StateRow {
    nodename: String,
    nodehost: String,
    nodeport: u16,
    current_group_state: String,
    assigned_group_state: String,
    health: i64,
    #[serde(default)]
    replication_quorum: bool,
    #[serde(default)]
    candidate_priority: i64,
    #[serde(default)]
    reported_lsn: String,
}

/// Parses `pg_autoctl show state --json` into nodes.
pub fn parse_state(json: &str) -> Result<Vec<FormationNode>, Error> {
    let rows: Vec<StateRow> = serde_json::from_str(json)
        .map_err(|e| Error::failed("reading pg_autoctl show state --json").with_source(e))?;
    Ok(rows
        .into_iter()
        .map(|r| FormationNode {
            role: role_of(&r.current_group_state),
            healthy: r.health == 1,
            name: r.nodename,
            host: r.nodehost,
            port: r.nodeport,
            state: r.current_group_state,
            assigned_state: r.assigned_group_state,
            replication_quorum: r.replication_quorum,
            candidate_priority: r.candidate_priority,
            reported_lsn: r.reported_lsn,
        })
        .collect())
}

/// The warnings a formation's states call for.
pub fn warnings(nodes: &[FormationNode]) -> Vec<String> {
    let mut out = Vec::new();
    let writable: Vec<&FormationNode> = nodes
        .iter()
        .filter(|n| matches!(n.state.as_str(), "single" | "wait_primary" | "primary"))
        .collect();
    match writable.as_slice() {
        [] => out.push("no node accepts writes now (a failover may be under way)".into()),
        [one] if one.state == "wait_primary" => out.push(format!(
            "{} runs without a synchronous standby (wait_primary): commits acknowledged now \
             would be lost if it failed before a standby caught up",
            one.name
        )),
        [_] => {}
        many => out.push(format!(
            "{} nodes report a writable state ({}): check them now",
            many.len(),
            many.iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    if writable.iter().any(|p| p.state == "primary") {
        for n in nodes
            .iter()
            .filter(|n| n.role == "standby" && n.replication_quorum && !n.healthy)
        {
            out.push(format!(
                "sync standby {} lost: commits on the primary wait until the monitor marks it \
                 unhealthy (node_considered_unhealthy_timeout)",
                n.name
            ));
        }
    }
    for n in nodes.iter().filter(|n| !n.healthy) {
        out.push(format!(
            "{} ({}:{}) fails the monitor's health check",
            n.name, n.host, n.port
        ));
    }
    out
}

/// The web nodes' connection string: every node, writable ones first.
pub fn multi_host_url(nodes: &[FormationNode], dbname: &str, sslrootcert: Option<&str>) -> String {
    let mut ordered: Vec<&FormationNode> = nodes.iter().collect();
    ordered.sort_by_key(|n| n.role != "primary");
    let hosts = ordered
        .iter()
        .map(|n| {
            if n.host.contains(':') {
                format!("[{}]:{}", n.host, n.port)
            } else {
                format!("{}:{}", n.host, n.port)
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut url = format!(
        "postgres://{hosts}/{dbname}?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full"
    );
    if let Some(ca) = sslrootcert {
        url.push_str("&sslrootcert=");
        url.push_str(ca);
    }
    url
}

pub(super) async fn status(
    options: &Options,
    monitor: Option<&Secret>,
) -> Result<StatusReport, Error> {
    let dbname = match &options.conn {
        Some(c) => ConnInfo::parse_checked(c)
            .map_err(|e| Error::usage(format!("--conn: not a valid connection string: {e}")))?
            .get(Keyword::Dbname)
            .unwrap_or("postgres")
            .to_string(),
        None => crate::replica::target::AppConn::load(None, &options.config)
            .map(|a| a.database)
            .unwrap_or_else(|_| "postgres".into()),
    };
    let (out, events, sslrootcert) = match monitor {
        Some(uri) => {
            let mut info = ConnInfo::parse_checked(&uri.0).map_err(|e| {
                Error::usage(format!("--monitor: not a valid connection string: {e}"))
            })?;
            let password = info.remove(Keyword::Password);
            let ca = info.get(Keyword::Sslrootcert).map(str::to_owned);
            // The password goes through a private passfile, never argv.
            let dir = tempfile_dir()?;
            let passfile = dir.join("pgpass");
            if let Some(pw) = &password {
                let host = info.get(Keyword::Host).unwrap_or("*").to_string();
                let port = info.get(Keyword::Port).unwrap_or("5432").to_string();
                std::fs::write(
                    &passfile,
                    passfile_line([&host, &port, MONITOR_DATABASE, MONITOR_ROLE, pw]),
                )
                .map_err(|e| Error::failed("writing a temporary passfile").with_source(e))?;
                std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::failed("writing a temporary passfile").with_source(e))?;
            }
            let argv = |what: &[&str]| -> Vec<String> {
                let mut argv: Vec<String> = vec![
                    "env".into(),
                    "-i".into(),
                    "PATH=/usr/bin:/bin".into(),
                    format!("HOME={}", dir.display()),
                    format!("XDG_RUNTIME_DIR={}", dir.display()),
                    format!("PGPASSFILE={}", passfile.display()),
                    super::PG_AUTOCTL.into(),
                    "show".into(),
                ];
                argv.extend(what.iter().map(|w| w.to_string()));
                argv.extend(["--monitor".into(), info.to_uri(), "--json".into()]);
                argv
            };
            let out = autoctl::run(&argv(&["state"]), Duration::from_secs(30)).await;
            let events = autoctl::run(&argv(EVENTS), Duration::from_secs(30)).await;
            let _ = std::fs::remove_dir_all(&dir);
            (out?, events.ok(), ca)
        }
        None => {
            // --cluster: an adopted Debian cluster is no longer listed by
            // pg_lsclusters; its port comes from its pg_autoctl.cfg.
            let local = super::debian::local_superuser(options)?;
            let session = local.connect().await.map_err(|e| {
                Error::failed(
                    "connecting to this node's PostgreSQL (give --monitor URI to ask the monitor)",
                )
                .with_source(e)
            })?;
            let row = session
                .client()
                .query_one(
                    "SELECT current_setting('data_directory'), \
                     (SELECT setting FROM pg_catalog.pg_config WHERE name = 'BINDIR'), \
                     current_setting('ssl_ca_file')",
                    &[],
                )
                .await
                .map_err(|e| Error::failed("reading the data directory").with_source(e))?;
            let pgdata: String = row.get(0);
            let autoctl = Autoctl::for_data_dir(pgdata.as_ref(), row.get::<_, String>(1).as_ref())?;
            if !autoctl.config_file().exists() {
                return Err(Error::refused_always(format!(
                    "{pgdata} is not enrolled (no {}); give --monitor URI to ask the monitor",
                    autoctl.config_file().display()
                )));
            }
            let ca: String = row.get(2);
            let argv = |what: &[&str]| {
                let mut args = vec!["show"];
                args.extend(what);
                args.extend(["--pgdata", &pgdata, "--json"]);
                autoctl.command(&args)
            };
            (
                autoctl::run(&argv(&["state"]), Duration::from_secs(30)).await?,
                autoctl::run(&argv(EVENTS), Duration::from_secs(30))
                    .await
                    .ok(),
                (!ca.is_empty()).then_some(ca),
            )
        }
    };
    if !out.status.success() {
        return Err(autoctl::command_failed("pg_autoctl show state", &out));
    }
    let nodes = parse_state(&String::from_utf8_lossy(&out.stdout))?;
    let last_failover = events
        .filter(|e| e.status.success())
        .and_then(|e| last_failover(&String::from_utf8_lossy(&e.stdout)));
    Ok(StatusReport {
        last_failover,
        multi_host_url: multi_host_url(&nodes, &dbname, sslrootcert.as_deref()),
        warnings: warnings(&nodes),
        nodes,
    })
}

/// A private (0700) directory for one `pg_autoctl` call run as root.
fn tempfile_dir() -> Result<std::path::PathBuf, Error> {
    let name = format!(
        "knocker-autofailover-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    );
    let dir = std::env::temp_dir().join(name);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::failed("creating a private temporary directory").with_source(e))?;
    Ok(dir)
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_warnings_follow_the_states() {
        let json = r#"[{"health":1,"node_id":1,"group_id":0,"nodehost":"10.0.0.1","nodename":"a","nodeport":5432,"nodecluster":"default","reported_lsn":"0/3000148","reported_tli":1,"formation_kind":"pgsql","candidate_priority":50,"replication_quorum":true,"current_group_state":"primary","assigned_group_state":"primary"},
        {"health":0,"node_id":2,"group_id":0,"nodehost":"10.0.0.2","nodename":"b","nodeport":5433,"nodecluster":"default","reported_lsn":"0/3000148","reported_tli":1,"formation_kind":"pgsql","candidate_priority":50,"replication_quorum":true,"current_group_state":"secondary","assigned_group_state":"secondary"}]"#;
        let nodes = parse_state(json).unwrap();
        assert_eq!(nodes[0].role, "primary");
        assert_eq!(nodes[1].role, "standby");
        assert!(!nodes[1].healthy);
        let w = warnings(&nodes).join("\n");
        assert!(w.contains("sync standby b lost"), "{w}");
        assert_eq!(
            multi_host_url(&nodes, "knocknoc", None),
            "postgres://10.0.0.1:5432,10.0.0.2:5433/knocknoc?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full"
        );
        assert_eq!(role_of("stop_replication"), "promoting");
    }
}
