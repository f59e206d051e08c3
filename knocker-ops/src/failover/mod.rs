//! `knocker failover`: operator-run promotion of a standby. knocker never
//! decides by itself that a primary is dead (docs/ARCHITECTURE.md).
//!
//! Built so far: `--switchover` ([`switchover`]), on the primary;
//! `--promote`, on the standby when the primary is gone;
//! `--fence` ([`fence`]) and `--rejoin`, on an old primary.
//! It refuses while the primary still answers (that is a switchover's job)
//! unless forced, reports the last WAL this standby received and replayed
//! (what the old primary may have committed after that is lost, unless
//! this standby was synchronous), asks, promotes (`pg_promote`, waiting),
//! runs a CHECKPOINT (so the control file carries the new timeline, which
//! `pg_rewind` on the old primary reads), and confirms a write works.

pub mod fence;
mod rejoin;
pub mod switchover;

use std::time::{Duration, Instant};

use pgctl::connect::ConnectErrorKind;
use pgctl::conninfo::{ConnInfo, Keyword};
use pgctl::replication;
use serde::Serialize;

use crate::replica::target::{self, Admin};
use crate::{Error, Plan};

/// Seconds `pg_promote` may take.
pub const PROMOTE_WAIT_S: u32 = 60;

/// The statement that promotes and waits.
pub fn promote_sql() -> String {
    format!("SELECT pg_catalog.pg_promote(true, {PROMOTE_WAIT_S})")
}

/// The action of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand the primary role to the streaming standby (on the primary).
    Switchover,
    /// Promote this standby; the primary is gone.
    Promote,
    /// Keep this old primary from coming back as a writable primary.
    Fence,
    /// Rewind this fenced old primary and make it a standby of the new one.
    Rejoin {
        /// The replication connection string of the new primary.
        uri: crate::replica::Secret,
    },
}

/// What to do and where.
#[derive(Clone)]
pub struct Options {
    /// The action.
    pub action: Action,
    /// Superuser connection string (default: peer login as `postgres`).
    pub admin_conn: Option<String>,
    /// `VERSION/NAME` of the Debian cluster.
    pub cluster: Option<String>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Promote although the primary still answers.
    pub force: bool,
    /// This node's standby name (`--rejoin`, `--switchover`; slot
    /// `knocker_<name>`).
    pub name: Option<String>,
    /// `--switchover`: the standby as `HOST[:PORT]` (default: the one
    /// streaming standby's address and this server's port).
    pub peer: Option<String>,
    /// `--rejoin`: when `pg_rewind` cannot rejoin this node (or fails),
    /// clone it afresh from the new primary instead (the old data
    /// directory is kept aside).
    pub reclone: bool,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("action", &self.action)
            .field("admin_conn", &self.admin_conn.as_ref().map(|_| "<given>"))
            .field("cluster", &self.cluster)
            .field("dry_run", &self.dry_run)
            .field("force", &self.force)
            .field("name", &self.name)
            .field("peer", &self.peer)
            .field("reclone", &self.reclone)
            .finish()
    }
}

/// What this standby had from the primary when it was promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LossWindow {
    /// WAL received (and flushed here).
    pub received_lsn: Option<String>,
    /// WAL replayed.
    pub replayed_lsn: Option<String>,
    /// Commit time (on the primary) of the last replayed transaction.
    pub last_replayed_commit: Option<String>,
    /// The primary as `primary_conninfo` names it.
    pub upstream: Option<String>,
    /// What the probe of the primary met.
    pub upstream_probe: String,
}

/// What a call did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The action's flag name.
    pub action: &'static str,
    /// Whether anything changed.
    pub changed: bool,
    /// `--dry-run`: the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// The WAL this node had; later commits of the old primary are lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_window: Option<LossWindow>,
    /// The new timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i32>,
    /// `--switchover`: milliseconds from the fence to the standby's
    /// promotion (writes refused meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_ms: Option<u64>,
    /// `--switchover` on a node enrolled in pg_auto_failover: who decided
    /// (`pg_auto_failover`); absent when knocker switched over itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated_to: Option<&'static str>,
    /// `--switchover` through pg_auto_failover: the primary before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_primary: Option<String>,
    /// See `old_primary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_primary: Option<String>,
    /// Milliseconds from the start of the call to the first write here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writable_after_ms: Option<u64>,
    /// What was done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// What the operator must do next.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    /// Things the operator should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn pg(e: pgctl::error::Error) -> Error {
    Error::failed(e.to_string()).with_source(e)
}

/// Whether the primary still answers: `Ok(Some(true))` a primary answered,
/// `Ok(Some(false))` a server answered but is not (or not known to be) a
/// writable primary, `Ok(None)` nothing answered. The text says what was
/// met.
async fn probe_upstream(conninfo: &ConnInfo) -> (Option<bool>, String) {
    let mut info = conninfo.clone();
    let user = info.get(Keyword::User).unwrap_or("").to_string();
    info.set(Keyword::User, crate::replica::clone::rewind_role_of(&user));
    info.set(Keyword::Dbname, crate::replica::block::REWIND_DATABASE);
    info.set(Keyword::ConnectTimeout, "3");
    info.remove(Keyword::Replication);
    let params = match pgctl::conninfo::resolve_from_process_env(&info) {
        Ok(r) => r.params,
        Err(e) => return (Some(false), format!("cannot use primary_conninfo: {e}")),
    };
    match pgctl::connect::connect(&params).await {
        Ok(c) => {
            let client = c.into_client();
            match replication::is_in_recovery(&client).await {
                Ok(false) => (Some(true), "the primary answers and is a primary".into()),
                Ok(true) => (Some(false), "it answers, as a standby".into()),
                Err(e) => (Some(false), format!("it answers, but: {e}")),
            }
        }
        Err(e) => match e.kind() {
            ConnectErrorKind::Refused
            | ConnectErrorKind::Timeout
            | ConnectErrorKind::Network
            | ConnectErrorKind::Dns => (None, format!("unreachable: {e}")),
            _ => (Some(false), format!("a server answers there: {e}")),
        },
    }
}

/// Runs one call; `ask` is asked before promoting (a terminal prompt, or
/// `--yes`).
pub async fn run(o: &Options, ask: &mut dyn FnMut(&str) -> bool) -> Result<Report, Error> {
    let started = Instant::now();
    if let Some(c) = &o.cluster {
        target::parse_cluster_arg(c)?;
    }
    if o.peer.is_some() && o.action != Action::Switchover {
        return Err(Error::usage("--peer goes with --switchover"));
    }
    if o.reclone && !matches!(o.action, Action::Rejoin { .. }) {
        return Err(Error::usage("--reclone goes with --rejoin"));
    }
    match &o.action {
        Action::Fence => {
            let mut report = Report {
                action: "fence",
                ..Report::default()
            };
            fence::fence(o, ask, &mut report).await?;
            return Ok(report);
        }
        Action::Rejoin { uri } => {
            let mut report = Report {
                action: "rejoin",
                ..Report::default()
            };
            rejoin::rejoin(o, &uri.0, ask, &mut report).await?;
            return Ok(report);
        }
        Action::Switchover => {
            let mut report = Report {
                action: "switchover",
                ..Report::default()
            };
            // An enrolled node's primary is the monitor's to choose: the
            // keepers would undo a switchover done behind its back.
            {
                let port = match o.admin_conn {
                    Some(_) => None,
                    None => target::choose_port(o.cluster.as_deref(), None).ok(),
                };
                if let Some(done) = crate::autofailover::enrolled_switchover(
                    o.admin_conn.as_deref(),
                    port,
                    o.peer.is_some(),
                    o.dry_run,
                    ask,
                )
                .await?
                {
                    report.delegated_to = Some("pg_auto_failover");
                    report.changed = done.new_primary.is_some();
                    report.plan = done.plan;
                    report.old_primary = done.old_primary;
                    report.new_primary = done.new_primary;
                    report.done = done.done;
                    report.warnings = done.warnings;
                    return Ok(report);
                }
            }
            switchover::switchover(o, ask, &mut report).await?;
            return Ok(report);
        }
        Action::Promote => {}
    }
    let port = if o.admin_conn.is_some() {
        5432
    } else {
        target::choose_port(o.cluster.as_deref(), None)?
    };
    let admin = Admin::connect(o.admin_conn.as_deref(), port).await?;
    let mut report = Report {
        action: "promote",
        ..Report::default()
    };
    promote(o, &admin, ask, &mut report, started).await?;
    Ok(report)
}

async fn promote(
    o: &Options,
    admin: &Admin,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
    started: Instant,
) -> Result<(), Error> {
    let c = admin.client();
    let node = replication::node_status(c).await.map_err(pg)?;
    if !node.in_recovery {
        report.done.push(format!(
            "this node is a primary already (timeline {}); nothing to do",
            node.timeline
        ));
        return Ok(());
    }
    let conninfo_text: String = c
        .query_one(
            "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'primary_conninfo'",
            &[],
        )
        .await
        .map_err(|e| Error::failed(format!("reading primary_conninfo: {e}")).with_source(e))?
        .get(0);
    let (mut upstream_host, mut upstream_user) = (None, None);
    let (upstream, probe) = if conninfo_text.trim().is_empty() {
        (None, (None, "primary_conninfo is empty".to_string()))
    } else {
        let info = ConnInfo::parse(&conninfo_text).map_err(|e| {
            Error::failed(format!(
                "primary_conninfo is not a valid connection string: {e}"
            ))
        })?;
        let up = format!(
            "{}:{}",
            info.get(Keyword::Host).unwrap_or("?"),
            info.get(Keyword::Port).unwrap_or("5432")
        );
        upstream_host = info.get(Keyword::Host).map(str::to_string);
        upstream_user = info.get(Keyword::User).map(str::to_string);
        (Some(up), probe_upstream(&info).await)
    };
    let window = LossWindow {
        received_lsn: node.receive_lsn.clone(),
        replayed_lsn: node.replay_lsn.clone(),
        last_replayed_commit: node.last_replay_time.clone(),
        upstream: upstream.clone(),
        upstream_probe: probe.1.clone(),
    };
    report.loss_window = Some(window.clone());
    if probe.0 == Some(true) && !o.force {
        return Err(Error::refused(format!(
            "the primary {} still answers and is a primary: promoting now would make two primaries. \
             Plan a switchover instead, or fence that node first",
            upstream.unwrap_or_default()
        )));
    }
    let mut plan = Plan::default();
    plan.sql.push(promote_sql());
    plan.sql.push("CHECKPOINT".into());
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }
    let question = format!(
        "Promote this standby? It received WAL up to {} and replayed up to {} (last replayed commit {}); \
         whatever the old primary committed after that is lost unless this standby was synchronous. \
         Primary {}: {}.",
        window.received_lsn.as_deref().unwrap_or("-"),
        window.replayed_lsn.as_deref().unwrap_or("-"),
        window.last_replayed_commit.as_deref().unwrap_or("-"),
        window.upstream.as_deref().unwrap_or("unknown"),
        window.upstream_probe
    );
    if !ask(&question) {
        return Err(Error::refused_always("not promoted (declined)"));
    }
    report.changed = true;
    let promoted: bool = c
        .query_one(&promote_sql(), &[])
        .await
        .map_err(|e| Error::failed(format!("pg_promote: {e}")).with_source(e))?
        .get(0);
    if !promoted {
        return Err(Error::failed(format!(
            "pg_promote did not finish within {PROMOTE_WAIT_S}s; see the server log"
        )));
    }
    // The first write: an xid is assigned only on a writable primary.
    let deadline = Instant::now() + Duration::from_secs(u64::from(PROMOTE_WAIT_S));
    loop {
        match c
            .query_one("SELECT pg_catalog.pg_current_xact_id()::text", &[])
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(
                    Error::failed(format!("promoted, but writes still fail: {e}")).with_source(e),
                )
            }
        }
    }
    report.writable_after_ms =
        Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    c.batch_execute("CHECKPOINT")
        .await
        .map_err(|e| Error::failed(format!("CHECKPOINT after promotion: {e}")).with_source(e))?;
    let after = replication::node_status(c).await.map_err(pg)?;
    report.timeline = Some(after.timeline);
    report.done.push(format!(
        "promoted: this node is the primary on timeline {}",
        after.timeline
    ));
    ready_for_old_primary(
        admin,
        upstream_host.as_deref(),
        upstream_user.as_deref(),
        report,
    )
    .await?;
    Ok(())
}

/// After a promotion: the slot the old primary will stream through (its
/// name from the replica block line admitting its address, which
/// `--clone-from` wrote), the primary's exposedb block from the copy the
/// clone brought, and the exact commands for the old primary.
async fn ready_for_old_primary(
    admin: &Admin,
    old_host: Option<&str>,
    replication_role: Option<&str>,
    report: &mut Report,
) -> Result<(), Error> {
    let (_, hba) = admin.read_hba()?;
    let version = admin.version()?;
    let old_addr = old_host.and_then(|h| h.parse::<std::net::IpAddr>().ok());
    let old_name = old_addr.and_then(|addr| {
        crate::replica::block::allowed(&hba, version)
            .ok()?
            .into_iter()
            .find(|a| a.cidr.contains(&addr))
            .map(|a| a.name)
    });
    if let Some(name) = &old_name {
        let slot = crate::replica::slot_name(name);
        if replication::create_physical_slot(admin.client(), &slot)
            .await
            .map_err(pg)?
        {
            report.done.push(format!("slot {slot} created for {name}"));
        } else {
            report.done.push(format!("slot {slot} is ready for {name}"));
        }
    }
    if let Some(data) = admin.facts.data_directory.as_deref() {
        let mut r = crate::replica::Report::default();
        crate::replica::clone::copy_exposedb_block(
            admin,
            &data.join(crate::replica::exposedb_copy::COPY_FILE),
            &mut r,
        )
        .await?;
        report.done.extend(r.done);
        report.warnings.extend(r.warnings);
    }
    let here = crate::network::advertise_candidates()
        .0
        .map_or_else(|| "THIS_HOST".to_string(), |a| a.to_string());
    let url = ConnInfo::builder()
        .user(replication_role.unwrap_or("REPLICATION_ROLE"))
        .host(here)
        .port(admin.facts.port)
        .build()
        .to_uri();
    let name = old_name.as_deref().unwrap_or("OLD_NAME");
    report.next_steps = vec![
        "Keep the old primary stopped: its data has diverged from this timeline and it must not take writes again.".into(),
        "On the old primary: knocker failover --fence".into(),
        format!(
            "Then there: knocker failover --rejoin '{url}' --name {name} (the password comes from that node's knocker passfile)"
        ),
    ];
    if old_name.is_none() {
        report.next_steps.push(
            "This node's replica block does not name the old primary: first run knocker replica --allow OLD_ADDRESS/32 --name OLD_NAME here".into(),
        );
    }
    Ok(())
}
