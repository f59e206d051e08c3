//! `knocker failover --switchover` on a node enrolled in pg_auto_failover:
//! the formation's monitor decides who is primary, so knocker asks it
//! (`pg_autoctl perform switchover --pgdata PGDATA`, which waits until a
//! standby is the new primary; docs/pg_auto_failover.md section 5) instead
//! of fencing and promoting by itself, which the keepers would undo.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::autoctl::{self, Autoctl};
use super::status::{parse_state, FormationNode};
use crate::{Error, Plan};

/// How long `pg_autoctl perform switchover` may take (5 s measured here;
/// it waits for the new primary, including its catch-up).
const PERFORM_TIMEOUT: Duration = Duration::from_secs(120);

/// What a delegated switchover did (or, with `dry_run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct SwitchoverOutcome {
    /// `--dry-run`: the command.
    pub plan: Option<Plan>,
    /// The primary before.
    pub old_primary: Option<String>,
    /// The primary after.
    pub new_primary: Option<String>,
    /// Milliseconds `perform switchover` took.
    pub took_ms: Option<u64>,
    /// What was done.
    pub done: Vec<String>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
}

fn primaries(nodes: &[FormationNode]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.role == "primary")
        .map(|n| n.name.clone())
        .collect()
}

async fn state(autoctl: &Autoctl, pgdata: &str) -> Result<Vec<FormationNode>, Error> {
    let out = autoctl::run_ok(
        "pg_autoctl show state",
        &autoctl.command(&["show", "state", "--pgdata", pgdata, "--json"]),
        Duration::from_secs(30),
    )
    .await?;
    parse_state(&String::from_utf8_lossy(&out.stdout))
}

/// The switchover through pg_auto_failover when the local node (the
/// superuser session `admin_conn`, default peer login as `postgres` on
/// `port`) is
/// enrolled; `Ok(None)` when it is not (or does not answer): the caller
/// does the switchover itself. `ask` is asked before anything changes.
/// `peer_given` (`--peer`) is refused on an enrolled node: the monitor
/// picks the standby.
pub async fn enrolled_switchover(
    admin_conn: Option<&str>,
    port: Option<u16>,
    peer_given: bool,
    dry_run: bool,
    ask: &mut dyn FnMut(&str) -> bool,
) -> Result<Option<SwitchoverOutcome>, Error> {
    let Ok(local) = pgctl::connect::LocalSuperuser::new(admin_conn, port) else {
        return Ok(None);
    };
    let Ok(session) = local.connect().await else {
        return Ok(None);
    };
    let Ok(row) = session
        .client()
        .query_one(
            "SELECT current_setting('data_directory'), \
             (SELECT setting FROM pg_catalog.pg_config WHERE name = 'BINDIR')",
            &[],
        )
        .await
    else {
        return Ok(None);
    };
    drop(session);
    let pgdata: String = row.get(0);
    let bin_dir: String = row.get(1);
    let autoctl = Autoctl::for_data_dir(pgdata.as_ref(), bin_dir.as_ref())?;
    if !autoctl.config_file().exists() {
        return Ok(None);
    }
    if peer_given {
        return Err(Error::usage(
            "--peer: this node is enrolled in pg_auto_failover, whose monitor picks the standby \
             (set candidate priorities to steer it)",
        ));
    }
    let perform = autoctl.command(&["perform", "switchover", "--pgdata", &pgdata]);
    let before = state(&autoctl, &pgdata).await?;
    let mut outcome = SwitchoverOutcome::default();
    let old = primaries(&before);
    outcome.old_primary = old.first().cloned();
    let standbys = before
        .iter()
        .filter(|n| n.role == "standby" && n.healthy && n.candidate_priority > 0)
        .count();
    if old.len() != 1 || standbys == 0 {
        return Err(Error::refused_always(format!(
            "pg_auto_failover cannot switch over now: {} ({}); see knocker autofailover --status",
            match (old.len(), standbys) {
                (0, _) => "no node is primary".to_string(),
                (1, _) => "no healthy standby may be promoted".to_string(),
                (n, _) => format!("{n} nodes are primary"),
            },
            before
                .iter()
                .map(|n| format!("{} {}", n.name, n.state))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if dry_run {
        outcome.plan = Some(Plan {
            commands: vec![perform],
            ..Plan::default()
        });
        outcome.done.push(format!(
            "{pgdata} is enrolled in pg_auto_failover: its monitor performs the switchover \
             (primary now: {})",
            old[0]
        ));
        return Ok(Some(outcome));
    }
    let question = format!(
        "Ask pg_auto_failover to switch over? {} hands the primary role to a standby; writes \
         pause for a few seconds.",
        old[0]
    );
    if !ask(&question) {
        return Err(Error::refused_always("no switchover (declined)"));
    }
    let started = Instant::now();
    autoctl::run_ok("pg_autoctl perform switchover", &perform, PERFORM_TIMEOUT)
        .await
        .map_err(|e| Error::failed(format!("{e}\nSee knocker autofailover --status.")))?;
    let took = started.elapsed();
    outcome.took_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
    let after = state(&autoctl, &pgdata).await?;
    let new = primaries(&after);
    match new.as_slice() {
        [one] if *one != old[0] => {
            outcome.done.push(format!(
                "pg_auto_failover switched over in {:.1} s: {one} is the primary (was {})",
                took.as_secs_f64(),
                old[0]
            ));
            outcome.new_primary = Some(one.clone());
        }
        _ => {
            return Err(Error::failed(format!(
                "pg_autoctl perform switchover finished, but the monitor now reports {}",
                after
                    .iter()
                    .map(|n| format!("{} {}", n.name, n.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
    for n in after.iter().filter(|n| n.name == old[0]) {
        if n.role != "standby" {
            outcome.warnings.push(format!(
                "{} is {} (not yet a standby): pg_auto_failover is still rejoining it",
                n.name, n.state
            ));
        }
    }
    Ok(Some(outcome))
}
