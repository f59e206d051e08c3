//! `--switchover`, on the primary (a Debian cluster): hand the primary
//! role to the streaming standby without losing an acknowledged commit.
//!
//! Checks first (nothing changes): this node is a primary, exactly one
//! standby streams from it (or `--peer` names it), the passfile `--init`
//! wrote holds the shared password, the standby answers this host as the
//! promote role, is in recovery and has the slot `knocker_<this name>`
//! this node will stream through. Then, each step said in the error when
//! it fails, with what to run:
//!
//! 1. fence: `default_transaction_read_only = on`, reload, end the
//!    application sessions (`pg_terminate_backend` on client backends);
//! 2. wait (bounded) until the standby has replayed everything; on
//!    timeout the fence is lifted and nothing has changed;
//! 3. stop cleanly (`pg_ctlcluster -m fast`: the walsenders send the
//!    shutdown checkpoint and wait for the standby to flush it);
//! 4. wait until the standby has replayed past that checkpoint (else this
//!    node is started again, unfenced: nothing has changed);
//! 5. promote the standby over the network (`pg_promote` as the promote
//!    role);
//! 6. check with the new timeline's history (read as the rewind role) that
//!    this node's last checkpoint lies before the switch point, so no
//!    rewind is needed (else: `--rejoin`);
//! 7. this node's `postgresql.auto.conf` without the fence and with
//!    `primary_conninfo` (passfile, `application_name`) and
//!    `primary_slot_name`, `standby.signal`, start, confirm streaming.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgctl::connect::SslMode;
use pgctl::conninfo::{ConnInfo, Keyword};
use pgctl::replication::{self, PrimaryConninfo};
use tokio_postgres::Client;

use super::rejoin::{control_value, controldata};
use super::{Options, Report};
use crate::replica::block::{BlockRoles, REWIND_DATABASE};
use crate::replica::clone::{
    ctlcluster, local_cluster, passfile_password, passfile_path, passfile_user, roles_of,
    run_command, start_standby, wait_streaming, write_owned,
};
use crate::replica::target::{Admin, DebianCluster};
use crate::replica::{default_name, slot_name, validate_standby_name};
use crate::{Error, FileChange, Plan};

/// How long the standby may take to replay what the primary wrote.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// The setting that fences a primary for the switchover.
const FENCE_SQL: &str = "ALTER SYSTEM SET default_transaction_read_only = 'on'";
/// Lifts it.
const UNFENCE_SQL: &str = "ALTER SYSTEM RESET default_transaction_read_only";
/// Ends the application sessions (not walsenders, not this session).
const TERMINATE_SQL: &str = "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) \
     FROM pg_catalog.pg_stat_activity \
     WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid()";

/// The steps of a switchover, in order, as [`crate::test_hook::stop_at`]
/// names them: fenced (read-only, sessions not yet ended), sessions ended,
/// the standby has replayed everything, stopped cleanly, the standby
/// promoted, this node's standby files written (not started), started as
/// a standby (streaming not yet confirmed). A run killed at any of them is
/// finished by the next `--switchover` (with `--peer` once this node is
/// down).
pub const SWITCHOVER_STEPS: [&str; 7] = [
    "switchover:fenced",
    "switchover:sessions-ended",
    "switchover:caught-up",
    "switchover:stopped",
    "switchover:promoted",
    "switchover:configured",
    "switchover:started",
];

/// An LSN `X/Y` as a number.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The switch point from timeline `old` in a timeline history file's text
/// (`TLI<tab>LSN<tab>reason` per line).
pub(crate) fn switch_point(history: &str, old: u32) -> Option<u64> {
    history.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let tli: u32 = f.next()?.parse().ok()?;
        (tli == old).then(|| f.next().and_then(parse_lsn)).flatten()
    })
}

/// The standby this switchover hands over to.
struct Peer {
    host: String,
    port: u16,
    name: String,
}

async fn connect_peer(
    peer: &Peer,
    user: &str,
    password: &str,
    database: &str,
) -> Result<Client, Error> {
    let info = ConnInfo::builder()
        .host(peer.host.clone())
        .port(peer.port)
        .user(user)
        .password(password)
        .dbname(database)
        .connect_timeout(5)
        .build();
    let params = pgctl::conninfo::resolve_from_process_env(&info)
        .map_err(|e| Error::failed(format!("the standby's address: {e}")))?
        .params;
    pgctl::connect::connect(&params)
        .await
        .map(|c| c.into_client())
        .map_err(|e| {
            Error::refused_always(format!(
                "cannot reach the standby {} at {}:{} as {user}: {e} \
                 (give its address with --peer HOST:PORT; it must admit this host: \
                 knocker replica --clone-from does so)",
                peer.name, peer.host, peer.port
            ))
        })
}

/// The sslmode of this node's `primary_conninfo` toward its new primary
/// (reached through `peer`): the one its `postgresql.auto.conf` text
/// `auto` already names (what `--clone-from` wrote from the replication
/// URL: `require`, or `verify-full` when the operator asked for it), else
/// `require` when the peer has SSL on (what the URL `replica --init`
/// prints asks), else none. Never libpq's default `prefer`, which a
/// man in the middle can downgrade to plain text.
///
/// A `verify-full`/`verify-ca` is kept only where it can still verify:
/// the new string names `new_host` (the standby's address as the primary
/// saw it) and carries no `sslrootcert`, so a verify mode named with
/// another host name or its own root certificate would fail the
/// walreceiver after the promotion; it becomes `require` then, and
/// `warnings` says what to put back.
async fn follow_sslmode(
    peer: &Client,
    auto: &str,
    new_host: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<SslMode>, Error> {
    if let Some((mode, warning)) = carried_sslmode(auto, new_host) {
        warnings.extend(warning);
        return Ok(Some(mode));
    }
    let ssl: bool = peer
        .query_one("SELECT pg_catalog.current_setting('ssl')::bool", &[])
        .await
        .map_err(|e| {
            Error::failed(format!("asking the standby whether it has SSL on: {e}")).with_source(e)
        })?
        .get(0);
    Ok(ssl.then_some(SslMode::Require))
}

/// The part of [`follow_sslmode`] read from `postgresql.auto.conf` alone:
/// the sslmode its `primary_conninfo` names (not `prefer`), and a warning
/// when a verify mode cannot be carried to `new_host`.
fn carried_sslmode(auto: &str, new_host: &str) -> Option<(SslMode, Option<String>)> {
    let named =
        replication::conf_value(auto, "primary_conninfo").and_then(|c| ConnInfo::parse(&c).ok())?;
    let mode = named
        .get(Keyword::Sslmode)
        .and_then(SslMode::from_keyword)
        .filter(|m| *m != SslMode::Prefer)?;
    let verifies = matches!(mode, SslMode::VerifyFull | SslMode::VerifyCa);
    let other_host = named.get(Keyword::Host) != Some(new_host);
    let own_root = named.get(Keyword::Sslrootcert).is_some();
    if verifies && (own_root || (mode == SslMode::VerifyFull && other_host)) {
        return Some((
            SslMode::Require,
            Some(format!(
                "this node's primary_conninfo asked for sslmode={} (with its own host name or \
                 sslrootcert), which the new string to {new_host} cannot carry: it uses \
                 sslmode=require; set the verification back with ALTER SYSTEM SET \
                 primary_conninfo and a reload",
                mode.as_str()
            )),
        ));
    }
    Some((mode, None))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What to run to put this node back as the primary it was.
fn undo_hint(cluster: &DebianCluster) -> String {
    format!(
        "this node is still the primary: start it if it is down (pg_ctlcluster {} {} start) and lift the fence: \
         sudo -u postgres psql -p {} -c \"{UNFENCE_SQL}\" -c \"SELECT pg_reload_conf()\"",
        cluster.version, cluster.name, cluster.port
    )
}

pub(super) async fn switchover(
    o: &Options,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
) -> Result<(), Error> {
    let result = switchover_steps(o, ask, report).await;
    match result {
        // Refused before this run fenced anything: a fence left by an
        // earlier, interrupted run keeps this node read-only; say so.
        Err(e) if !report.changed => match local_cluster(o.cluster.as_deref()) {
            Ok(cluster) if fenced_on_disk(&cluster) => Err(e.with_note(&format!(
                "Note: {} is still fenced (read-only) by an interrupted switchover: run --switchover again once \
                 the standby streams, or {}",
                cluster.id(),
                undo_hint(&cluster)
            ))),
            _ => Err(e),
        },
        r => r,
    }
}

/// Whether the switchover's fence is in this node's `postgresql.auto.conf`.
fn fenced_on_disk(cluster: &DebianCluster) -> bool {
    std::fs::read_to_string(cluster.data_directory.join("postgresql.auto.conf"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.replace(' ', "") == "default_transaction_read_only='on'")
}

async fn switchover_steps(
    o: &Options,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
) -> Result<(), Error> {
    let name = o.name.clone().unwrap_or_else(default_name);
    validate_standby_name(&name).map_err(|_| {
        Error::usage(format!(
            "this host's name {name:?} cannot be a node name; give --name NAME"
        ))
    })?;
    let peer_arg = o.peer.as_deref().map(parse_peer).transpose()?;
    let cluster = local_cluster(o.cluster.as_deref())?;
    if !cluster.status.starts_with("online") {
        resume(o, &cluster, &name, peer_arg.as_ref(), report).await?;
        if report.changed || o.dry_run {
            return Ok(());
        }
    }
    let admin = Admin::connect(o.admin_conn.as_deref(), cluster.port).await?;
    // Never behind pg_auto_failover's back: its keepers would undo it.
    if let Some(data) = admin.facts.data_directory.as_deref() {
        if crate::autofailover::is_enrolled(data) {
            return Err(Error::refused_always(format!(
                "{} is enrolled in pg_auto_failover: run knocker failover --switchover with \
                 --admin-conn naming this node, so that its monitor performs the switchover",
                data.display()
            )));
        }
    }
    let c = admin.client();
    let node = replication::node_status(c).await.map_err(super::pg)?;
    if node.in_recovery {
        return already_standby(o, &cluster, &admin, report).await;
    }
    let sync_names = replication::read_settings(c)
        .await
        .map_err(super::pg)?
        .synchronous_standby_names;
    if !sync_names.is_empty() {
        report.warnings.push(format!(
            "synchronous_standby_names = '{sync_names}' here does not move with the switchover (each node keeps its own; \
             a clone starts without it): check the new primary's with knocker replica --status there, and make this node \
             its synchronous standby with knocker replica --allow ADDRESS/32 --name {name} --sync there"
        ));
    }
    // A standby reconnects within seconds of this node's start (a resumed
    // run has just started it): give it that long.
    let reconnect_deadline = Instant::now() + Duration::from_secs(10);
    let standbys = loop {
        let rows = replication::standbys(c).await.map_err(super::pg)?;
        if rows.iter().any(|s| s.state == "streaming") || Instant::now() > reconnect_deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let streaming: Vec<_> = standbys
        .iter()
        .filter(|s| s.state == "streaming")
        .filter(|s| {
            peer_arg
                .as_ref()
                .is_none_or(|(h, _)| s.client_addr.as_deref() == Some(h.as_str()))
        })
        .collect();
    let row = match streaming.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::refused_always(format!(
            "no standby streams from this node{}; a switchover needs one that is caught up ({})",
            peer_arg
                .as_ref()
                .map(|(h, _)| format!(" from {h}"))
                .unwrap_or_default(),
            if standbys.is_empty() {
                "none connected".to_string()
            } else {
                standbys
                    .iter()
                    .map(|s| format!("{} {}", s.application_name, s.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )))
        }
        several => {
            return Err(Error::usage(format!(
                "several standbys stream from this node ({}); name one with --peer HOST:PORT",
                several
                    .iter()
                    .map(|s| s.application_name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let peer = Peer {
        host: peer_arg
            .as_ref()
            .map(|(h, _)| h.clone())
            .or_else(|| row.client_addr.clone())
            .ok_or_else(|| {
                Error::usage("the standby connects over a unix socket: give --peer HOST:PORT")
            })?,
        port: peer_arg
            .as_ref()
            .and_then(|(_, p)| *p)
            .unwrap_or(cluster.port),
        name: row.application_name.clone(),
    };
    let roles: BlockRoles = roles_of(&row.user);
    let passfile = passfile_path(&cluster);
    let pass_text = std::fs::read_to_string(&passfile).unwrap_or_default();
    let password = passfile_password(&pass_text, &roles.promote).ok_or_else(|| {
        Error::refused_always(format!(
            "{} holds no password for {}: run knocker replica --init here (this knocker keeps it there), \
             and clone the standby again with the URL it prints",
            passfile.display(),
            roles.promote
        ))
    })?;
    let remote = connect_peer(&peer, &roles.promote, &password, REWIND_DATABASE).await?;
    let peer_row = remote
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical')",
            &[&slot_name(&name)],
        )
        .await
        .map_err(|e| Error::failed(format!("asking the standby: {e}")).with_source(e))?;
    if !peer_row.get::<_, bool>(0) {
        return Err(Error::refused_always(format!(
            "{}:{} is not in recovery: two primaries? Check it before anything else",
            peer.host, peer.port
        )));
    }
    let slot = slot_name(&name);
    if !peer_row.get::<_, bool>(1) {
        return Err(Error::refused_always(format!(
            "the standby {} has no slot {slot} for this node to stream through after the switchover; \
             on it run: sudo -u postgres psql -p {} -c \"{}\" (or give this node's name with --name)",
            peer.name,
            peer.port,
            crate::replica::clone::reserve_later_slot_sql(&slot)
        )));
    }

    match web_nodes_missing_on(&admin, &peer, &roles, &password).await {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => {
            let text = format!(
                "{} does not admit web nodes that this node's exposedb block admits ({}): after the switchover they \
                 could not connect. On {} run knocker exposedb --add for them (its pg_hba.conf is its own)",
                peer.name,
                missing.join("; "),
                peer.name
            );
            if !o.force {
                return Err(Error::refused(text));
            }
            report.warnings.push(text);
        }
        Err(why) => report.warnings.push(format!(
            "cannot check that {} admits the same web nodes: {why}",
            peer.name
        )),
    }
    let data = cluster.data_directory.clone();
    let auto = data.join("postgresql.auto.conf");
    let old_auto = std::fs::read_to_string(&auto).unwrap_or_default();
    let conninfo = PrimaryConninfo {
        host: peer.host.clone(),
        port: peer.port,
        user: roles.replication.clone(),
        application_name: name.clone(),
        sslmode: follow_sslmode(&remote, &old_auto, &peer.host, &mut report.warnings).await?,
        passfile: Some(passfile.clone()),
        connect_timeout: Some(5),
    };
    let new_auto = replication::set_conf_values(
        &replication::remove_conf_values(&old_auto, &["default_transaction_read_only"]),
        &[
            ("primary_conninfo", &conninfo.to_keyword_value()),
            ("primary_slot_name", &slot),
        ],
    );
    let mut plan = Plan::default();
    plan.sql.extend([
        FENCE_SQL.to_string(),
        replication::RELOAD_SQL.to_string(),
        TERMINATE_SQL.to_string(),
        format!(
            "-- wait up to {}s until pg_stat_replication.replay_lsn of {} reaches pg_current_wal_lsn()",
            CATCH_UP_TIMEOUT.as_secs(),
            peer.name
        ),
        format!(
            "-- on {}:{} as {}, once it has replayed this node's shutdown checkpoint",
            peer.host, peer.port, roles.promote
        ),
        super::promote_sql(),
    ]);
    plan.commands.push(ctlcluster(&cluster, "stop"));
    plan.commands.push(vec![
        format!("/usr/lib/postgresql/{}/bin/pg_controldata", cluster.version),
        data.to_string_lossy().into_owned(),
    ]);
    plan.files.push(FileChange::new(
        &auto,
        old_auto.as_bytes(),
        new_auto.as_bytes(),
    ));
    plan.files
        .push(FileChange::new(data.join("standby.signal"), b"", b"\n"));
    plan.commands.push(ctlcluster(&cluster, "start"));
    report.done.push(format!(
        "checked: {} ({}:{}) streams from this node and has slot {slot}; {} will be its standby",
        peer.name, peer.host, peer.port, name
    ));
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }
    if !ask(&format!(
        "Switch over to {} ({}:{})? This node turns read-only and its sessions end now; writes stop until {} is promoted (seconds).",
        peer.name, peer.host, peer.port, peer.name
    )) {
        return Err(Error::refused_always("not switched over (declined)"));
    }

    // 1. Fence.
    let fenced_at = Instant::now();
    report.changed = true;
    let step = |what: &str, e: &dyn std::fmt::Display| {
        Error::failed(format!(
            "switchover stopped at '{what}': {e}; {}",
            undo_hint(&cluster)
        ))
    };
    c.batch_execute(FENCE_SQL)
        .await
        .map_err(|e| step("fence", &e))?;
    replication::reload(c)
        .await
        .map_err(|e| step("fence", &e))?;
    crate::test_hook::stop_at("switchover:fenced");
    // The reload reaches new backends once the postmaster has read it; end
    // the sessions after that, and once more for any that slipped in.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ended: i64 = 0;
    for _ in 0..2 {
        ended += c
            .query_one(TERMINATE_SQL, &[])
            .await
            .map_err(|e| step("end sessions", &e))?
            .get::<_, i64>(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report.done.push(format!(
        "fenced: default_transaction_read_only = on, {ended} application session(s) ended"
    ));
    crate::test_hook::stop_at("switchover:sessions-ended");

    // 2. Catch-up.
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let rows = replication::standbys(c).await.map_err(super::pg)?;
        let lag = rows
            .iter()
            .find(|r| r.application_name == peer.name)
            .and_then(|r| r.lag_bytes);
        if lag == Some(0) {
            break;
        }
        if Instant::now() > deadline {
            let lifted =
                c.batch_execute(UNFENCE_SQL).await.is_ok() && replication::reload(c).await.is_ok();
            return Err(Error::failed(format!(
                "switchover stopped at 'wait for the standby': {} has not replayed everything after {}s (lag {} bytes); {}",
                peer.name,
                CATCH_UP_TIMEOUT.as_secs(),
                lag.map_or_else(|| "unknown".into(), |l| l.to_string()),
                if lifted {
                    "the fence is lifted: nothing has changed".to_string()
                } else {
                    undo_hint(&cluster)
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report
        .done
        .push(format!("{} has replayed everything", peer.name));
    crate::test_hook::stop_at("switchover:caught-up");

    // 3. Clean stop.
    drop(admin);
    run_command(&ctlcluster(&cluster, "stop"), false).map_err(|e| step("stop", &e))?;
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", cluster.version));
    let control = controldata(&bin, &data).map_err(|e| step("pg_controldata", &e))?;
    let state = control_value(&control, "Database cluster state").unwrap_or("");
    let checkpoint = control_value(&control, "Latest checkpoint location")
        .and_then(parse_lsn)
        .ok_or_else(|| step("pg_controldata", &"no latest checkpoint location"))?;
    if state != "shut down" {
        return Err(step(
            "stop",
            &format!("the cluster state is {state:?}, not shut down"),
        ));
    }
    report.done.push(format!(
        "stopped cleanly; shutdown checkpoint at {}",
        lsn_text(checkpoint)
    ));
    crate::test_hook::stop_at("switchover:stopped");

    // 4. The standby has the shutdown checkpoint.
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let replayed: Option<String> = remote
            .query_one("SELECT pg_catalog.pg_last_wal_replay_lsn()::text", &[])
            .await
            .map_err(|e| step("wait for the shutdown checkpoint", &e))?
            .get(0);
        if replayed
            .as_deref()
            .and_then(parse_lsn)
            .is_some_and(|r| r > checkpoint)
        {
            break;
        }
        if Instant::now() > deadline {
            let restarted = run_command(&ctlcluster(&cluster, "start"), false).is_ok();
            let mut lifted = false;
            if restarted {
                if let Ok(a) = Admin::connect(o.admin_conn.as_deref(), cluster.port).await {
                    lifted = a.client().batch_execute(UNFENCE_SQL).await.is_ok()
                        && replication::reload(a.client()).await.is_ok();
                }
            }
            return Err(Error::failed(format!(
                "switchover stopped at 'wait for the shutdown checkpoint': {} replayed only up to {} (checkpoint {}); {}",
                peer.name,
                replayed.unwrap_or_else(|| "-".into()),
                lsn_text(checkpoint),
                if lifted {
                    "this node is started again as the primary: nothing has changed".to_string()
                } else {
                    undo_hint(&cluster)
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 5. Promote over the network.
    let promoted: bool = remote
        .query_one(&super::promote_sql(), &[])
        .await
        .map_err(|e| {
            Error::failed(format!(
                "switchover stopped at 'promote': {e}. This node is stopped and fenced. \
                 Check {} with knocker replica --status there: if it is a primary, run \
                 knocker failover --rejoin URI here; if not, {}",
                peer.name,
                undo_hint(&cluster)
            ))
        })?
        .get(0);
    if !promoted {
        return Err(Error::failed(format!(
            "switchover stopped at 'promote': pg_promote did not finish within {}s on {}. This node is stopped; \
             check that one with knocker replica --status before starting anything",
            super::PROMOTE_WAIT_S,
            peer.name
        )));
    }
    report.read_only_ms = Some(ms(fenced_at.elapsed()));
    crate::test_hook::stop_at("switchover:promoted");
    let walfile: String = remote
        .query_one(
            "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())",
            &[],
        )
        .await
        .map_err(|e| after_promote("read the new timeline", &e, &peer))?
        .get(0);
    let new_tli = u32::from_str_radix(&walfile[..8.min(walfile.len())], 16).unwrap_or(0);
    report.timeline = i32::try_from(new_tli).ok();
    report.done.push(format!(
        "promoted {} over the network: it is the primary on timeline {new_tli}",
        peer.name
    ));

    follow(
        o, &cluster, &peer, &roles, &password, &name, new_tli, report,
    )
    .await
}

/// Steps 6 and 7: this node (stopped cleanly) follows `peer`, promoted on
/// timeline `new_tli`.
#[allow(clippy::too_many_arguments)]
async fn follow(
    o: &Options,
    cluster: &DebianCluster,
    peer: &Peer,
    roles: &BlockRoles,
    password: &str,
    name: &str,
    new_tli: u32,
    report: &mut Report,
) -> Result<(), Error> {
    let data = cluster.data_directory.clone();
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", cluster.version));
    let control =
        controldata(&bin, &data).map_err(|e| after_promote("pg_controldata", &e, peer))?;
    let checkpoint = control_value(&control, "Latest checkpoint location")
        .and_then(parse_lsn)
        .ok_or_else(|| after_promote("pg_controldata", &"no latest checkpoint location", peer))?;
    let old_tli: u32 = control_value(&control, "Latest checkpoint's TimeLineID")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let slot = slot_name(name);
    let passfile = passfile_path(cluster);
    // 6. No rewind needed: this node's end lies before the switch point.
    let rewind = connect_peer(peer, &roles.rewind, password, REWIND_DATABASE)
        .await
        .map_err(|e| after_promote("read the timeline history", &e, peer))?;
    let auto = data.join("postgresql.auto.conf");
    let old_auto = std::fs::read_to_string(&auto).unwrap_or_default();
    let conninfo = PrimaryConninfo {
        host: peer.host.clone(),
        port: peer.port,
        user: roles.replication.clone(),
        application_name: name.to_string(),
        sslmode: follow_sslmode(&rewind, &old_auto, &peer.host, &mut report.warnings)
            .await
            .map_err(|e| after_promote("ask for SSL", &e, peer))?,
        passfile: Some(passfile),
        connect_timeout: Some(5),
    };
    let new_auto = replication::set_conf_values(
        &replication::remove_conf_values(&old_auto, &["default_transaction_read_only"]),
        &[
            ("primary_conninfo", &conninfo.to_keyword_value()),
            ("primary_slot_name", &slot),
        ],
    );
    let history = rewind
        .query_one(
            "SELECT pg_catalog.convert_from(pg_catalog.pg_read_binary_file($1), 'UTF8')",
            &[&format!("pg_wal/{new_tli:08X}.history")],
        )
        .await
        .map_err(|e| after_promote("read the timeline history", &e, peer))?
        .get::<_, String>(0);
    match switch_point(&history, old_tli) {
        Some(sp) if checkpoint < sp => {}
        other => {
            return Err(after_promote(
                "compare timelines",
                &format!(
                "this node's checkpoint {} is not before the switch point {}: it needs a rewind",
                lsn_text(checkpoint),
                other.map_or_else(|| "(none for its timeline)".into(), lsn_text)
            ),
                peer,
            ))
        }
    }

    // 7. Follow the new primary.
    let meta = std::fs::metadata(&data).map_err(|e| after_promote("follow", &e, peer))?;
    write_owned(&auto, new_auto.as_bytes(), 0o600, meta.uid(), meta.gid())
        .map_err(|e| after_promote("write postgresql.auto.conf", &e, peer))?;
    write_owned(
        &data.join("standby.signal"),
        b"",
        0o600,
        meta.uid(),
        meta.gid(),
    )
    .map_err(|e| after_promote("write standby.signal", &e, peer))?;
    crate::test_hook::stop_at("switchover:configured");
    start_standby(o.admin_conn.as_deref(), cluster)
        .await
        .map_err(|e| after_promote("start as a standby and confirm streaming", &e, peer))?;
    crate::test_hook::stop_at("switchover:started");
    report.done.push(format!(
        "this node streams from {} ({}:{}) through slot {slot}",
        peer.name, peer.host, peer.port
    ));
    report.next_steps.push(format!(
        "web nodes on the multi-host string follow by themselves; if {} lacks this node's exposedb lines, run knocker exposedb --add there",
        peer.name
    ));
    Ok(())
}

/// `--switchover` on a standby: a switchover run here that was killed
/// after this node started as the standby of its peer has nothing left to
/// do once it streams (exit 0, said); a standby that does not stream is
/// refused (the switchover is run on the primary).
async fn already_standby(
    o: &Options,
    cluster: &DebianCluster,
    admin: &Admin,
    report: &mut Report,
) -> Result<(), Error> {
    let auto = std::fs::read_to_string(cluster.data_directory.join("postgresql.auto.conf"))
        .unwrap_or_default();
    let ours = auto.contains("primary_slot_name") && auto.contains("passfile=");
    let mut receiver = replication::wal_receiver(admin.client())
        .await
        .map_err(super::pg)?;
    if ours && receiver.as_ref().is_none_or(|r| r.status != "streaming") && !o.dry_run {
        // Just started by a run that was killed: give it time to connect.
        wait_streaming(o.admin_conn.as_deref(), cluster).await?;
        receiver = replication::wal_receiver(admin.client())
            .await
            .map_err(super::pg)?;
    }
    match receiver.filter(|r| r.status == "streaming") {
        Some(r) => {
            report.done.push(format!(
                "this node is already a standby streaming from {}:{} (a switchover that was interrupted after this \
                 node's start, or one already done): nothing to do; to switch back, run --switchover there",
                r.sender_host.unwrap_or_default(),
                r.sender_port.unwrap_or_default()
            ));
            Ok(())
        }
        None => Err(Error::refused_always(
            "this node is a standby that does not stream; run --switchover on the primary \
             (knocker replica --status shows where this node stands)",
        )),
    }
}

/// The rules of this node's exposedb block (as its own
/// `pg_hba_file_rules` reads them) that the standby's pg_hba.conf lacks
/// (its `pg_hba_file_rules`, read as the rewind role, granted by `--init`).
async fn web_nodes_missing_on(
    admin: &Admin,
    peer: &Peer,
    roles: &BlockRoles,
    password: &str,
) -> Result<Vec<String>, String> {
    const RULE: &str =
        "pg_catalog.concat_ws(' ', type, pg_catalog.array_to_string(database, ','), \
         pg_catalog.array_to_string(user_name, ','), address, netmask, auth_method)";
    let (_, hba) = admin.read_hba().map_err(|e| e.to_string())?;
    let version = admin.version().map_err(|e| e.to_string())?;
    let doc = pghba::HbaDocument::parse_for(&hba, version);
    let Some(range) = crate::exposedb::block::BLOCK
        .find(&doc)
        .map_err(|e| e.to_string())?
    else {
        return Ok(Vec::new());
    };
    let first = i32::try_from(doc.lines()[range.begin].line_number()).unwrap_or(i32::MAX);
    let last = i32::try_from(doc.lines()[range.end].line_number()).unwrap_or(i32::MAX);
    let ours: Vec<String> = admin
        .client()
        .query(
            &format!(
                "SELECT {RULE} FROM pg_catalog.pg_hba_file_rules r WHERE error IS NULL \
                 AND line_number BETWEEN $1 AND $2 \
                 AND coalesce(pg_catalog.to_jsonb(r)->>'file_name', pg_catalog.current_setting('hba_file')) \
                     = pg_catalog.current_setting('hba_file')"
            ),
            &[&first, &last],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let remote = connect_peer(peer, &roles.rewind, password, REWIND_DATABASE)
        .await
        .map_err(|e| e.to_string())?;
    let theirs: std::collections::HashSet<String> = remote
        .query(
            &format!("SELECT {RULE} FROM pg_catalog.pg_hba_file_rules WHERE error IS NULL"),
            &[],
        )
        .await
        .map_err(|e| format!("{e} (run knocker replica --init on the primary for the grant)"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(ours.into_iter().filter(|r| !theirs.contains(r)).collect())
}

/// A run killed after the clean stop left this node down: find where it
/// stopped from what is on disk and on the standby, and go on. Leaves
/// `report.changed` false when the caller should run the switchover from
/// the start (the standby was not promoted: this node is started again,
/// still fenced).
async fn resume(
    o: &Options,
    cluster: &DebianCluster,
    name: &str,
    peer_arg: Option<&(String, Option<u16>)>,
    report: &mut Report,
) -> Result<(), Error> {
    let data = &cluster.data_directory;
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap_or_default();
    let fenced = fenced_on_disk(cluster);
    if data.join("standby.signal").exists() && auto.contains("primary_slot_name") {
        // Killed between writing the standby's files and confirming.
        if o.dry_run {
            report.plan = Some(Plan {
                commands: vec![ctlcluster(cluster, "start")],
                ..Plan::default()
            });
            return Ok(());
        }
        report.changed = true;
        start_standby(o.admin_conn.as_deref(), cluster).await?;
        report.done.push(
            "resumed an interrupted switchover: this node was already set up as a standby; started, and it streams"
                .into(),
        );
        return Ok(());
    }
    if !fenced {
        return Err(Error::refused_always(format!(
            "{} is down, and not by a switchover (no fence in postgresql.auto.conf): start it \
             (pg_ctlcluster {} {} start) and run --switchover again",
            cluster.id(),
            cluster.version,
            cluster.name
        )));
    }
    let Some((host, port)) = peer_arg else {
        return Err(Error::usage(format!(
            "{} is down after an interrupted switchover: run --switchover again with --peer HOST:PORT \
             (the standby it was handing over to)",
            cluster.id()
        )));
    };
    let port = port.unwrap_or(cluster.port);
    let peer = Peer {
        host: host.clone(),
        port,
        name: format!("{host}:{port}"),
    };
    let passfile = passfile_path(cluster);
    let pass_text = std::fs::read_to_string(&passfile).unwrap_or_default();
    let roles = passfile_user(&pass_text, "replication")
        .map(|u| roles_of(&u))
        .ok_or_else(|| {
            Error::refused_always(format!("{} names no replication role", passfile.display()))
        })?;
    let password = passfile_password(&pass_text, &roles.promote).ok_or_else(|| {
        Error::refused_always(format!(
            "{} holds no password for {}",
            passfile.display(),
            roles.promote
        ))
    })?;
    let remote = connect_peer(&peer, &roles.promote, &password, REWIND_DATABASE).await?;
    let in_recovery = |c: Client| async move {
        c.query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_walfile_name(\
                 CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_current_wal_lsn() END)",
            &[],
        )
        .await
        .map(|r| (r.get::<_, bool>(0), r.get::<_, Option<String>>(1)))
        .map_err(|e| Error::failed(format!("asking the standby: {e}")).with_source(e))
    };
    let (recovering, walfile) = in_recovery(remote).await?;
    if !recovering {
        let new_tli = walfile
            .as_deref()
            .and_then(|w| u32::from_str_radix(w.get(..8)?, 16).ok())
            .unwrap_or(0);
        report.timeline = i32::try_from(new_tli).ok();
        if o.dry_run {
            report.plan = Some(Plan {
                commands: vec![ctlcluster(cluster, "start")],
                ..Plan::default()
            });
            report.done.push(format!(
                "an interrupted switchover: {} is already the primary (timeline {new_tli}); this node would follow it",
                peer.name
            ));
            return Ok(());
        }
        report.changed = true;
        report.done.push(format!(
            "resumed an interrupted switchover: {} is already the primary (timeline {new_tli})",
            peer.name
        ));
        return follow(o, cluster, &peer, &roles, &password, name, new_tli, report).await;
    }
    // Not promoted. A promotion asked for just before the kill may still
    // be under way: look again before starting this node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = connect_peer(&peer, &roles.promote, &password, REWIND_DATABASE).await?;
    if !in_recovery(again).await?.0 {
        return Err(Error::failed(format!(
            "{} was promoting while this run looked: run --switchover --peer {}:{} again to follow it",
            peer.name, peer.host, peer.port
        )));
    }
    if o.dry_run {
        report.done.push(format!(
            "an interrupted switchover: {} was not promoted; this node would start again (still fenced) and the switchover start over",
            peer.name
        ));
        report.plan = Some(Plan {
            commands: vec![ctlcluster(cluster, "start")],
            ..Plan::default()
        });
        return Ok(());
    }
    run_command(&ctlcluster(cluster, "start"), false)?;
    report.done.push(format!(
        "an interrupted switchover: {} was not promoted; this node is started again (still fenced) and the switchover starts over",
        peer.name
    ));
    Ok(())
}

/// A failure after the standby was promoted: this node must stay down.
fn after_promote(what: &str, e: &dyn std::fmt::Display, peer: &Peer) -> Error {
    Error::failed(format!(
        "switchover stopped at '{what}' after {} was promoted: {e}. {} is the primary now; \
         keep this node a standby: knocker failover --fence here, then knocker failover --rejoin URI \
         (the replication URL with {}:{})",
        peer.name, peer.name, peer.host, peer.port
    ))
}

fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// `--peer HOST[:PORT]`.
fn parse_peer(text: &str) -> Result<(String, Option<u16>), Error> {
    let bad = || Error::usage(format!("--peer {text:?}: give HOST or HOST:PORT"));
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
            h.trim_matches(['[', ']']),
            Some(p.parse::<u16>().map_err(|_| bad())?),
        ),
        _ => (text, None),
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == ',' || c == '/') {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verify_mode_is_carried_only_where_it_can_still_verify() {
        let auto = |conninfo: &str| format!("primary_conninfo = '{conninfo}'\n");
        // No sslmode, or prefer: asked of the server instead.
        assert_eq!(carried_sslmode("", "10.0.0.1"), None);
        assert_eq!(
            carried_sslmode(&auto("host=10.0.0.2 sslmode=prefer"), "10.0.0.1"),
            None
        );
        // require and the same host: kept as they are.
        assert_eq!(
            carried_sslmode(&auto("host=10.0.0.2 sslmode=require"), "10.0.0.1"),
            Some((SslMode::Require, None))
        );
        assert_eq!(
            carried_sslmode(&auto("host=10.0.0.1 sslmode=verify-full"), "10.0.0.1"),
            Some((SslMode::VerifyFull, None))
        );
        // verify-full named for a host name the new string does not carry,
        // or any verify mode with its own root certificate: require, said.
        for conninfo in [
            "host=db-a.example.com sslmode=verify-full",
            "host=10.0.0.1 sslmode=verify-ca sslrootcert=/etc/ssl/ca.pem",
        ] {
            let (mode, warning) = carried_sslmode(&auto(conninfo), "10.0.0.1").unwrap();
            assert_eq!(mode, SslMode::Require, "{conninfo}");
            assert!(warning.unwrap().contains("sslmode=require"), "{conninfo}");
        }
    }

    #[test]
    fn lsns_and_history_lines_are_read() {
        assert_eq!(parse_lsn("1/0000A0"), Some((1 << 32) | 0xa0));
        assert_eq!(parse_lsn("nope"), None);
        let h = "1\t0/3000148\tno recovery target specified\n\n2\t0/5000000\tx\n";
        assert_eq!(switch_point(h, 1), parse_lsn("0/3000148"));
        assert_eq!(switch_point(h, 2), parse_lsn("0/5000000"));
        assert_eq!(switch_point(h, 3), None);
        assert_eq!(lsn_text(parse_lsn("0/3000148").unwrap()), "0/3000148");
    }

    #[test]
    fn peer_is_host_or_host_port() {
        assert_eq!(
            parse_peer("10.0.0.2:5433").unwrap(),
            ("10.0.0.2".into(), Some(5433))
        );
        assert_eq!(parse_peer("10.0.0.2").unwrap(), ("10.0.0.2".into(), None));
        assert_eq!(
            parse_peer("[::1]:5432").unwrap(),
            ("::1".into(), Some(5432))
        );
        assert_eq!(parse_peer("::1").unwrap(), ("::1".into(), None));
        for bad in ["", "h:x", "a b", "a,b:1"] {
            assert!(parse_peer(bad).is_err(), "{bad}");
        }
    }
}
