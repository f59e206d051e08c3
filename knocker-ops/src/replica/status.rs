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
    /// Whether the server refuses writes by default
    /// (`default_transaction_read_only = on`): a node fenced by
    /// `failover --fence` or by a switchover that did not finish.
    pub fenced: bool,
    /// `synchronous_standby_names`.
    pub synchronous_standby_names: String,
    /// `max_slot_wal_keep_size` in MB (-1: unbounded).
    pub max_slot_wal_keep_size_mb: i64,
    /// `pg_rewind` can rejoin this node after a failover (wal_log_hints or
    /// data checksums).
    pub rewind_ready: bool,
    /// The standbys the knocker replica block admits.
    pub allowed: Vec<Allowed>,
    /// Whether this node's `# BEGIN knocker exposedb` block is the
    /// primary's: `same`, `differs` or `unknown` (on a standby compared
    /// with the primary's copy read over the network as the rewind role;
    /// on the primary compared with the copy its standbys get, which
    /// every `knocker exposedb` change and `--init`/`--allow` refresh).
    pub exposedb_block: &'static str,
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
    let exposedb_block = compare_exposedb(admin, node.in_recovery, &mut report.warnings).await;
    let fenced = settings.default_transaction_read_only;
    if fenced && !node.in_recovery {
        report.warnings.push(
            "this primary is fenced (default_transaction_read_only = on): it refuses writes. A switchover \
             that was interrupted leaves this: run `knocker failover --switchover` again; or, if this node \
             should take writes, lift the fence: ALTER SYSTEM RESET default_transaction_read_only; \
             SELECT pg_reload_conf()"
                .into(),
        );
    }
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
        fenced,
        synchronous_standby_names: settings.synchronous_standby_names,
        max_slot_wal_keep_size_mb: settings.max_slot_wal_keep_size_mb,
        rewind_ready: settings.wal_log_hints || settings.data_checksums,
        allowed,
        exposedb_block,
    });
    Ok(())
}

/// See [`NodeReport::exposedb_block`].
async fn compare_exposedb(
    admin: &Admin,
    in_recovery: bool,
    warnings: &mut Vec<String>,
) -> &'static str {
    use super::exposedb_copy::{block_text, COPY_FILE};
    let (Ok((_, hba)), Ok(version), Some(data)) = (
        admin.read_hba(),
        admin.version(),
        admin.facts.data_directory.as_deref(),
    ) else {
        return "unknown";
    };
    let Ok(own) = block_text(&hba, version) else {
        return "unknown";
    };
    let primary_copy = if in_recovery {
        match read_primary_copy(admin, data).await {
            Ok(bytes) => bytes,
            Err(why) => {
                warnings.push(format!(
                    "cannot compare the exposedb block with the primary's: {why}"
                ));
                return "unknown";
            }
        }
    } else {
        match std::fs::read(data.join(COPY_FILE)) {
            Ok(bytes) => bytes,
            Err(_) => return "unknown",
        }
    };
    let theirs = block_text(&primary_copy, version).ok().flatten();
    if theirs == own {
        return "same";
    }
    warnings.push(if in_recovery {
        "this node's exposedb block differs from the primary's: after a switchover or promotion the web nodes it \
         lacks cannot connect; --promote applies the primary's copy, a switchover does not"
            .into()
    } else {
        "the copy of the exposedb block that standbys get is older than pg_hba.conf's (changed by hand, or by an older \
         knocker exposedb): run knocker replica --allow for a standby again to refresh it"
            .into()
    });
    "differs"
}

/// The primary's copy of its exposedb block, read as the rewind role with
/// the password from this node's passfile (`pg_read_binary_file` reads
/// inside the data directory without a superuser).
async fn read_primary_copy(admin: &Admin, data: &std::path::Path) -> Result<Vec<u8>, String> {
    use pgctl::conninfo::{ConnInfo, Keyword};
    let conninfo: String = admin
        .client()
        .query_one(
            "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'primary_conninfo'",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    let mut info = ConnInfo::parse(&conninfo).map_err(|e| e.to_string())?;
    let user = info.get(Keyword::User).unwrap_or("").to_string();
    let roles = super::clone::roles_of(&user);
    let pass = std::fs::read_to_string(super::clone::passfile_for_data_directory(data))
        .map_err(|e| format!("the passfile: {e}"))?;
    let password = super::clone::passfile_password(&pass, &roles.rewind)
        .ok_or("the passfile has no password for the rewind role")?;
    info.set(Keyword::User, roles.rewind);
    info.set(Keyword::Password, password);
    info.set(Keyword::Dbname, super::block::REWIND_DATABASE);
    info.set(Keyword::ConnectTimeout, "5");
    info.remove(Keyword::Passfile);
    info.remove(Keyword::Replication);
    let params = pgctl::conninfo::resolve_from_process_env(&info)
        .map_err(|e| e.to_string())?
        .params;
    let client = pgctl::connect::connect(&params)
        .await
        .map_err(|e| e.to_string())?
        .into_client();
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_read_binary_file($1, 0, 1048576, true)",
            &[&super::exposedb_copy::COPY_FILE],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, Option<Vec<u8>>>(0).unwrap_or_default())
}
