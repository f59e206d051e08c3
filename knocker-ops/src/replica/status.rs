//! `--status`: this node's role, timeline and WAL positions, its standbys
//! (primary) or its upstream (standby), the slots with how much WAL they
//! may still hold, and whether `pg_rewind` could rejoin this node.

use pgctl::replication;
use serde::Serialize;

use super::block::{self, Allowed};
use super::target::Admin;
use super::{pg, Report};
use crate::Error;

/// A standby as the primary sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandbyReport {
    /// Its `application_name`.
    pub name: String,
    /// `streaming`, `catchup`, `startup`, `backup`, `stopping`.
    pub state: String,
    /// `async`, `potential`, `sync`, `quorum`.
    pub sync_state: String,
    /// WAL bytes it has still to replay.
    pub lag_bytes: Option<i64>,
    /// Replay lag in seconds.
    pub replay_lag_seconds: Option<f64>,
    /// Where it connects from.
    pub client_addr: Option<String>,
}

/// A replication slot and the WAL it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotReport {
    /// The slot.
    pub name: String,
    /// Whether a standby streams through it.
    pub active: bool,
    /// `reserved`, `extended`, `unreserved`, `lost` (`None`: reserves nothing).
    pub wal_status: Option<String>,
    /// Bytes that may still be written before it is lost (`None`: unbounded).
    pub safe_wal_size: Option<i64>,
}

/// One node's replication state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    /// `primary` or `standby`.
    pub role: &'static str,
    /// Its timeline.
    pub timeline: i32,
    /// Primary: the current WAL position; standby: the last replayed.
    pub current_lsn: Option<String>,
    /// Standby: WAL received.
    pub receive_lsn: Option<String>,
    /// Standby: WAL replayed.
    pub replay_lsn: Option<String>,
    /// Standby: commit time of the last replayed transaction.
    pub last_replay_time: Option<String>,
    /// The standbys streaming from this node.
    pub standbys: Vec<StandbyReport>,
    /// Standby: the upstream's `host:port`.
    pub upstream: Option<String>,
    /// Primary: some standby streams; standby: receiving from its upstream.
    pub streaming: bool,
    /// The node's replication slots.
    pub replication_slots: Vec<SlotReport>,
    /// `synchronous_standby_names`.
    pub synchronous_standby_names: String,
    /// `max_slot_wal_keep_size` in MB (-1: unbounded).
    pub max_slot_wal_keep_size_mb: i64,
    /// `pg_rewind` can rejoin this node after a failover (wal_log_hints or
    /// data checksums).
    pub rewind_ready: bool,
    /// The standbys the knocker replica block admits.
    pub allowed: Vec<Allowed>,
}

pub(super) async fn status(admin: &Admin, report: &mut Report) -> Result<(), Error> {
    let c = admin.client();
    let node = replication::node_status(c).await.map_err(pg)?;
    let settings = replication::read_settings(c).await.map_err(pg)?;
    let standbys = replication::standbys(c).await.map_err(pg)?;
    let slots = replication::list_slots(c).await.map_err(pg)?;
    let receiver = replication::wal_receiver(c).await.map_err(pg)?;
    let allowed = match (admin.read_hba(), admin.version()) {
        (Ok((_, text)), Ok(v)) => block::allowed(&text, v).unwrap_or_default(),
        _ => Vec::new(),
    };
    let streaming = if node.in_recovery {
        receiver.as_ref().is_some_and(|r| r.status == "streaming")
    } else {
        standbys.iter().any(|s| s.state == "streaming")
    };
    report.status = Some(NodeReport {
        role: if node.in_recovery {
            "standby"
        } else {
            "primary"
        },
        timeline: node.timeline,
        current_lsn: node.current_lsn,
        receive_lsn: node.receive_lsn,
        replay_lsn: node.replay_lsn,
        last_replay_time: node.last_replay_time,
        standbys: standbys
            .into_iter()
            .map(|s| StandbyReport {
                name: s.application_name,
                state: s.state,
                sync_state: s.sync_state,
                lag_bytes: s.lag_bytes,
                replay_lag_seconds: s.replay_lag_seconds,
                client_addr: s.client_addr,
            })
            .collect(),
        upstream: receiver.as_ref().and_then(|r| {
            r.sender_host
                .as_ref()
                .map(|h| format!("{h}:{}", r.sender_port.unwrap_or(0)))
        }),
        streaming,
        replication_slots: slots
            .into_iter()
            .map(|s| SlotReport {
                name: s.name,
                active: s.active,
                wal_status: s.wal_status,
                safe_wal_size: s.safe_wal_size,
            })
            .collect(),
        synchronous_standby_names: settings.synchronous_standby_names,
        max_slot_wal_keep_size_mb: settings.max_slot_wal_keep_size_mb,
        rewind_ready: settings.wal_log_hints || settings.data_checksums,
        allowed,
    });
    Ok(())
}
