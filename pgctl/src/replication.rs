//! Streaming replication primitives: physical slots, the primary's view of
//! its standbys (`pg_stat_replication`), a standby's view of its upstream
//! (`pg_stat_wal_receiver`), recovery state, timeline and LSNs, the
//! settings replication depends on, and builders for `primary_conninfo`,
//! password files, `postgresql.auto.conf` lines and the exact
//! `pg_basebackup` / `pg_ctl` argument lists (so a dry run prints what a
//! real run executes).
//!
//! Every statement is schema-qualified (`pg_catalog.`) and every value
//! inlined into SQL is quoted with `postgres_protocol::escape`, so the
//! printed statements are the ones that run.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client) -> Result<(), pgctl::error::Error> {
//! use pgctl::replication::{create_physical_slot, list_slots, node_status, standbys};
//!
//! create_physical_slot(client, "standby_b").await?;
//! for slot in list_slots(client).await? {
//!     println!("{} {:?} {:?}", slot.name, slot.wal_status, slot.safe_wal_size);
//! }
//! let node = node_status(client).await?;
//! if !node.in_recovery {
//!     for s in standbys(client).await? {
//!         println!("{} {} lag {:?} bytes", s.application_name, s.state, s.lag_bytes);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::GenericClient;

use crate::connect::SslMode;
use crate::conninfo::{ConnInfo, Keyword};
use crate::error::{Error, Result};

/// Longest replication slot name the server keeps (NAMEDATALEN - 1).
pub const MAX_SLOT_NAME_BYTES: usize = 63;

/// Checks a physical slot name the way the server does
/// (`ReplicationSlotValidateName`): 1-63 bytes of lower-case letters,
/// digits and underscores.
pub fn validate_slot_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_SLOT_NAME_BYTES {
        "it is longer than 63 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        "slot names may contain only lower-case letters, digits and underscores"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        what: "replication slot",
        name: name.to_owned(),
        reason,
    })
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Slot {
    /// `slot_name`.
    pub name: String,
    /// `slot_type`: `physical` or `logical`.
    pub slot_type: String,
    /// Whether a walsender uses it now.
    pub active: bool,
    /// The pid of that walsender.
    pub active_pid: Option<i32>,
    /// `restart_lsn` (`None` while the slot reserves no WAL, or once lost).
    pub restart_lsn: Option<String>,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost` (`None`
    /// while the slot reserves no WAL).
    pub wal_status: Option<String>,
    /// `safe_wal_size`: bytes of WAL that may still be written before the
    /// slot is in danger of being lost (`None` when unbounded or lost).
    pub safe_wal_size: Option<i64>,
}

const SLOT_COLUMNS: &str = "slot_name::text, slot_type, active, active_pid, \
     restart_lsn::text, wal_status, safe_wal_size";

fn slot_from_row(row: &tokio_postgres::Row) -> Slot {
    Slot {
        name: row.get(0),
        slot_type: row.get(1),
        active: row.get(2),
        active_pid: row.get(3),
        restart_lsn: row.get(4),
        wal_status: row.get(5),
        safe_wal_size: row.get(6),
    }
}

/// Every replication slot of the server, by name.
pub async fn list_slots(client: &impl GenericClient) -> Result<Vec<Slot>> {
    let rows = client
        .query(
            &format!(
                "SELECT {SLOT_COLUMNS} FROM pg_catalog.pg_replication_slots ORDER BY slot_name"
            ),
            &[],
        )
        .await
        .map_err(Error::sql("listing replication slots"))?;
    Ok(rows.iter().map(slot_from_row).collect())
}

/// One slot, `None` when it does not exist.
pub async fn slot(client: &impl GenericClient, name: &str) -> Result<Option<Slot>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {SLOT_COLUMNS} FROM pg_catalog.pg_replication_slots WHERE slot_name = $1"
            ),
            &[&name],
        )
        .await
        .map_err(Error::sql(format!("reading replication slot {name:?}")))?;
    Ok(row.as_ref().map(slot_from_row))
}

/// The statement of [`create_physical_slot`]. The slot reserves WAL at
/// once (`immediately_reserve`), so a base backup that streams through it
/// never misses a segment; `max_slot_wal_keep_size` bounds what it holds.
pub fn create_physical_slot_sql(name: &str) -> String {
    format!(
        "SELECT pg_catalog.pg_create_physical_replication_slot({}, true)",
        escape_literal(name)
    )
}

/// Creates physical slot `name` reserving WAL now; `Ok(false)` when a
/// physical slot of that name already exists (a logical one is an error).
pub async fn create_physical_slot(client: &impl GenericClient, name: &str) -> Result<bool> {
    validate_slot_name(name)?;
    if let Some(existing) = slot(client, name).await? {
        if existing.slot_type == "physical" {
            return Ok(false);
        }
        return Err(Error::InvalidName {
            what: "replication slot",
            name: name.to_owned(),
            reason: "a logical slot of that name exists",
        });
    }
    client
        .execute(&create_physical_slot_sql(name), &[])
        .await
        .map_err(Error::sql(format!("creating replication slot {name:?}")))?;
    Ok(true)
}

/// The statement that ends the walsender using slot `name` (one row: how
/// many there were), waiting up to 5 s for it to go.
pub fn terminate_slot_user_sql(name: &str) -> String {
    format!(
        "SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(active_pid, 5000)) \
         FROM pg_catalog.pg_replication_slots WHERE slot_name = {} AND active_pid IS NOT NULL",
        escape_literal(name)
    )
}

/// The statement of [`drop_slot`].
pub fn drop_slot_sql(name: &str) -> String {
    format!(
        "SELECT pg_catalog.pg_drop_replication_slot({})",
        escape_literal(name)
    )
}

/// What [`drop_slot`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropSlot {
    /// The slot was dropped.
    Dropped,
    /// There was no such slot.
    Absent,
    /// A walsender uses the slot and `terminate` was not asked for.
    Active {
        /// The walsender's pid.
        pid: i32,
    },
}

/// Drops slot `name`. An active slot cannot be dropped: with `terminate`
/// its walsender is ended first (and the drop retried while the standby's
/// walsender lets go, up to 10 s), else [`DropSlot::Active`] says who uses it.
pub async fn drop_slot(
    client: &impl GenericClient,
    name: &str,
    terminate: bool,
) -> Result<DropSlot> {
    validate_slot_name(name)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let Some(current) = slot(client, name).await? else {
            return Ok(DropSlot::Absent);
        };
        if let Some(pid) = current.active_pid {
            if !terminate {
                return Ok(DropSlot::Active { pid });
            }
            client
                .query_one(&terminate_slot_user_sql(name), &[])
                .await
                .map_err(Error::sql(format!(
                    "ending the walsender of replication slot {name:?}"
                )))?;
        }
        match client.execute(&drop_slot_sql(name), &[]).await {
            Ok(_) => return Ok(DropSlot::Dropped),
            // 55006 object_in_use: a walsender took it (again) in between.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(Error::Sql {
                    action: format!("dropping replication slot {name:?}"),
                    source: e,
                })
            }
        }
    }
}

/// The functions `pg_rewind` calls on its source server, with the exact
/// signatures its documentation grants EXECUTE on, so a role that is not a
/// superuser can be its source.
pub const REWIND_FUNCTIONS: [&str; 4] = [
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

/// `GRANT EXECUTE ON FUNCTION f TO role` for each of [`REWIND_FUNCTIONS`].
pub fn rewind_grants_sql(role: &str) -> Vec<String> {
    execute_grants_sql(role, &REWIND_FUNCTIONS)
}

/// The statements of [`rewind_grants_sql`] that `role` still needs (all of
/// them when the role does not exist yet).
pub async fn missing_rewind_grants(client: &impl GenericClient, role: &str) -> Result<Vec<String>> {
    missing_execute_grants(client, role, &REWIND_FUNCTIONS).await
}

/// What a role needs to promote a standby remotely and nothing else:
/// `pg_promote` is superuser-only until granted.
pub const PROMOTE_FUNCTIONS: &[&str] = &["pg_catalog.pg_promote(boolean, integer)"];

/// `pg_hba_file_rules` (view and function) are superuser-only until
/// granted; they show the rules, not passwords.
pub const HBA_RULES_FUNCTIONS: &[&str] = &["pg_catalog.pg_hba_file_rules()"];

/// The statements that let `role` read `pg_hba_file_rules`, those it
/// still needs (all when it does not exist yet).
pub async fn missing_hba_rules_grants(
    client: &impl GenericClient,
    role: &str,
) -> Result<Vec<String>> {
    let mut out = missing_execute_grants(client, role, HBA_RULES_FUNCTIONS).await?;
    let has_select: Option<bool> = client
        .query_one(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1) \
                 THEN pg_catalog.has_table_privilege($1, 'pg_catalog.pg_hba_file_rules', 'SELECT') END",
            &[&role],
        )
        .await
        .map_err(Error::sql(format!("checking SELECT on pg_hba_file_rules for {role:?}")))?
        .get(0);
    if has_select != Some(true) {
        out.push(format!(
            "GRANT SELECT ON pg_catalog.pg_hba_file_rules TO {}",
            escape_identifier(role)
        ));
    }
    Ok(out)
}

/// `GRANT EXECUTE ON FUNCTION f TO role` for each of `functions`
/// (signatures as `has_function_privilege` takes them).
pub fn execute_grants_sql(role: &str, functions: &[&str]) -> Vec<String> {
    functions
        .iter()
        .map(|f| {
            format!(
                "GRANT EXECUTE ON FUNCTION {f} TO {}",
                escape_identifier(role)
            )
        })
        .collect()
}

/// The statements of [`execute_grants_sql`] that `role` still needs (all
/// of them when the role does not exist yet).
pub async fn missing_execute_grants(
    client: &impl GenericClient,
    role: &str,
    functions: &[&str],
) -> Result<Vec<String>> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(Error::sql(format!("looking up role {role:?}")))?
        .is_some();
    if !exists {
        return Ok(execute_grants_sql(role, functions));
    }
    let mut out = Vec::new();
    for (f, sql) in functions.iter().zip(execute_grants_sql(role, functions)) {
        let granted: bool = client
            .query_one(
                "SELECT pg_catalog.has_function_privilege($1, $2, 'EXECUTE')",
                &[&role, f],
            )
            .await
            .map_err(Error::sql(format!("checking EXECUTE on {f}")))?
            .get(0);
        if !granted {
            out.push(sql);
        }
    }
    Ok(out)
}

/// `ALTER ROLE role REPLICATION`.
pub fn replication_attribute_sql(role: &str) -> String {
    format!("ALTER ROLE {} REPLICATION", escape_identifier(role))
}

/// Whether `role` exists and has the REPLICATION attribute.
pub async fn has_replication_attribute(client: &impl GenericClient, role: &str) -> Result<bool> {
    Ok(client
        .query_opt(
            "SELECT rolreplication FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(Error::sql(format!("looking up role {role:?}")))?
        .is_some_and(|r| r.get::<_, bool>(0)))
}

/// One standby as the primary sees it (`pg_stat_replication`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StandbyRow {
    /// The walsender's pid.
    pub pid: i32,
    /// The role it logged in as.
    pub user: String,
    /// `application_name` (the standby's name).
    pub application_name: String,
    /// `client_addr` (`None` over a unix socket).
    pub client_addr: Option<String>,
    /// `state`: `startup`, `catchup`, `streaming`, `backup`, `stopping`.
    pub state: String,
    /// `sync_state`: `async`, `potential`, `sync`, `quorum`.
    pub sync_state: String,
    /// `sent_lsn`.
    pub sent_lsn: Option<String>,
    /// `write_lsn`.
    pub write_lsn: Option<String>,
    /// `flush_lsn`.
    pub flush_lsn: Option<String>,
    /// `replay_lsn`.
    pub replay_lsn: Option<String>,
    /// Bytes between the primary's current WAL position and `replay_lsn`.
    pub lag_bytes: Option<i64>,
    /// `replay_lag` in seconds (`None` when the standby is idle and caught up).
    pub replay_lag_seconds: Option<f64>,
}

/// The standbys connected to this server, by name (empty on a standby
/// without cascading standbys).
pub async fn standbys(client: &impl GenericClient) -> Result<Vec<StandbyRow>> {
    let rows = client
        .query(
            "SELECT pid, usename::text, application_name, pg_catalog.host(client_addr), state, sync_state, \
                    sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text, \
                    CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL \
                         ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn)::int8 END, \
                    pg_catalog.date_part('epoch', replay_lag)::float8 \
             FROM pg_catalog.pg_stat_replication ORDER BY application_name, pid",
            &[],
        )
        .await
        .map_err(Error::sql("reading pg_stat_replication"))?;
    Ok(rows
        .iter()
        .map(|r| StandbyRow {
            pid: r.get(0),
            user: r.get::<_, Option<String>>(1).unwrap_or_default(),
            application_name: r.get::<_, Option<String>>(2).unwrap_or_default(),
            client_addr: r.get(3),
            state: r.get::<_, Option<String>>(4).unwrap_or_default(),
            sync_state: r.get::<_, Option<String>>(5).unwrap_or_default(),
            sent_lsn: r.get(6),
            write_lsn: r.get(7),
            flush_lsn: r.get(8),
            replay_lsn: r.get(9),
            lag_bytes: r.get(10),
            replay_lag_seconds: r.get(11),
        })
        .collect())
}

/// A standby's WAL receiver (`pg_stat_wal_receiver`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WalReceiver {
    /// `status`: `streaming`, `starting`, `waiting`, `stopping`, ...
    pub status: String,
    /// The upstream's host as the receiver connected to it.
    pub sender_host: Option<String>,
    /// The upstream's port.
    pub sender_port: Option<i32>,
    /// The slot it streams through.
    pub slot_name: Option<String>,
    /// The timeline it receives.
    pub received_tli: Option<i32>,
    /// `flushed_lsn`: WAL received and flushed to disk here.
    pub flushed_lsn: Option<String>,
    /// `latest_end_lsn`: the upstream's position last reported.
    pub latest_end_lsn: Option<String>,
    /// When the last message from the upstream arrived (ISO 8601 text).
    pub last_msg_receipt_time: Option<String>,
}

/// The WAL receiver of a standby; `None` when there is none (a primary, or
/// a standby not connected to its upstream).
pub async fn wal_receiver(client: &impl GenericClient) -> Result<Option<WalReceiver>> {
    let row = client
        .query_opt(
            "SELECT status, sender_host, sender_port, slot_name, received_tli, \
                    flushed_lsn::text, latest_end_lsn::text, last_msg_receipt_time::text \
             FROM pg_catalog.pg_stat_wal_receiver",
            &[],
        )
        .await
        .map_err(Error::sql("reading pg_stat_wal_receiver"))?;
    Ok(row.map(|r| WalReceiver {
        status: r.get::<_, Option<String>>(0).unwrap_or_default(),
        sender_host: r.get(1),
        sender_port: r.get(2),
        slot_name: r.get(3),
        received_tli: r.get(4),
        flushed_lsn: r.get(5),
        latest_end_lsn: r.get(6),
        last_msg_receipt_time: r.get(7),
    }))
}

/// Where a node stands: recovery, timeline and WAL positions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// `pg_is_in_recovery()`: a standby (or a node still recovering).
    pub in_recovery: bool,
    /// The current timeline. Primary: the one WAL is written on (the first
    /// eight hex digits of `pg_walfile_name(pg_current_wal_lsn())`; the
    /// last checkpoint's lags behind a promotion until the next
    /// checkpoint). Standby: the newest of the receiver's timeline, the
    /// minimum recovery point's and the last restartpoint's.
    pub timeline: i32,
    /// Primary: `pg_current_wal_lsn()`. Standby: the last replayed LSN.
    pub current_lsn: Option<String>,
    /// Standby: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<String>,
    /// Standby: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<String>,
    /// Standby: when the last replayed transaction committed on the primary.
    pub last_replay_time: Option<String>,
}

/// Whether the server is in recovery (a standby).
pub async fn is_in_recovery(client: &impl GenericClient) -> Result<bool> {
    client
        .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
        .await
        .map(|r| r.get(0))
        .map_err(Error::sql("asking whether the server is in recovery"))
}

/// Reads [`NodeStatus`].
pub async fn node_status(client: &impl GenericClient) -> Result<NodeStatus> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), \
                    CASE WHEN pg_catalog.pg_is_in_recovery() \
                         THEN greatest((pg_catalog.pg_control_checkpoint()).timeline_id, \
                                       (pg_catalog.pg_control_recovery()).min_recovery_end_timeline, \
                                       (SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver)) \
                         ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))\
                              ::pg_catalog.bit(32)::pg_catalog.int4 END, \
                    CASE WHEN pg_catalog.pg_is_in_recovery() \
                         THEN pg_catalog.pg_last_wal_replay_lsn() \
                         ELSE pg_catalog.pg_current_wal_lsn() END::text, \
                    pg_catalog.pg_last_wal_receive_lsn()::text, \
                    pg_catalog.pg_last_wal_replay_lsn()::text, \
                    pg_catalog.pg_last_xact_replay_timestamp()::text",
            &[],
        )
        .await
        .map_err(Error::sql("reading the recovery state"))?;
    Ok(NodeStatus {
        in_recovery: row.get(0),
        timeline: row.get::<_, Option<i32>>(1).unwrap_or(0),
        current_lsn: row.get(2),
        receive_lsn: row.get(3),
        replay_lsn: row.get(4),
        last_replay_time: row.get(5),
    })
}

/// The settings replication depends on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReplicationSettings {
    /// `data_checksums` (fixed at initdb or by `pg_checksums`).
    pub data_checksums: bool,
    /// `wal_log_hints` (needs a restart).
    pub wal_log_hints: bool,
    /// `wal_level`.
    pub wal_level: String,
    /// `max_wal_senders` (needs a restart).
    pub max_wal_senders: i64,
    /// `max_replication_slots` (needs a restart).
    pub max_replication_slots: i64,
    /// `max_slot_wal_keep_size` in MB; `-1` is unbounded (reload).
    pub max_slot_wal_keep_size_mb: i64,
    /// `synchronous_standby_names` (reload).
    pub synchronous_standby_names: String,
    /// `hot_standby`.
    pub hot_standby: bool,
    /// `wal_segment_size` in bytes.
    pub wal_segment_size: i64,
    /// `default_transaction_read_only` as the server's configuration sets
    /// it (a fenced node has it on).
    pub default_transaction_read_only: bool,
    /// Settings changed in the files that wait for a restart.
    pub pending_restart: Vec<String>,
}

/// Reads [`ReplicationSettings`].
pub async fn read_settings(client: &impl GenericClient) -> Result<ReplicationSettings> {
    let names = [
        "data_checksums",
        "wal_log_hints",
        "wal_level",
        "max_wal_senders",
        "max_replication_slots",
        "max_slot_wal_keep_size",
        "synchronous_standby_names",
        "hot_standby",
        "wal_segment_size",
        "default_transaction_read_only",
    ];
    let rows = client
        .query(
            "SELECT name, reset_val, unit, pending_restart FROM pg_catalog.pg_settings \
             WHERE name = ANY($1)",
            &[&&names[..]],
        )
        .await
        .map_err(Error::sql("reading replication settings"))?;
    let get = |name: &str| -> String {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == name)
            .map(|r| r.get::<_, String>(1))
            .unwrap_or_default()
    };
    let on = |name: &str| get(name) == "on";
    let int = |name: &str| get(name).parse::<i64>().unwrap_or(0);
    // wal_segment_size is reported in bytes ("B") since 11; keep the unit honest.
    let segment = rows
        .iter()
        .find(|r| r.get::<_, &str>(0) == "wal_segment_size")
        .map(|r| {
            let n = r.get::<_, String>(1).parse::<i64>().unwrap_or(0);
            match r.get::<_, Option<String>>(2).as_deref() {
                Some("8kB") => n * 8192,
                Some("MB") => n * 1024 * 1024,
                _ => n,
            }
        })
        .unwrap_or(0);
    Ok(ReplicationSettings {
        data_checksums: on("data_checksums"),
        wal_log_hints: on("wal_log_hints"),
        wal_level: get("wal_level"),
        max_wal_senders: int("max_wal_senders"),
        max_replication_slots: int("max_replication_slots"),
        max_slot_wal_keep_size_mb: int("max_slot_wal_keep_size"),
        synchronous_standby_names: get("synchronous_standby_names"),
        hot_standby: on("hot_standby"),
        wal_segment_size: segment,
        default_transaction_read_only: on("default_transaction_read_only"),
        pending_restart: rows
            .iter()
            .filter(|r| r.get::<_, bool>(3))
            .map(|r| r.get(0))
            .collect(),
    })
}

/// `ALTER SYSTEM SET name = 'value'`, the value quoted as a literal.
/// `name` must be a plain parameter name (letters, digits, `_`, `.`).
pub fn alter_system_sql(name: &str, value: &str) -> Result<String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return Err(Error::InvalidName {
            what: "parameter",
            name: name.to_owned(),
            reason: "parameter names are letters, digits, '_' and '.'",
        });
    }
    Ok(format!(
        "ALTER SYSTEM SET {name} = {}",
        escape_literal(value)
    ))
}

/// The statement of [`reload`].
pub const RELOAD_SQL: &str = "SELECT pg_catalog.pg_reload_conf()";

/// Asks the server to re-read its configuration files (settings that need
/// no restart take effect in new and, soon after, existing sessions).
pub async fn reload(client: &impl GenericClient) -> Result<()> {
    client
        .execute(RELOAD_SQL, &[])
        .await
        .map(|_| ())
        .map_err(Error::sql("reloading the configuration"))
}

/// Runs `ALTER SYSTEM SET name = 'value'` ([`alter_system_sql`]); like every
/// ALTER SYSTEM it cannot run inside a transaction block.
pub async fn alter_system(client: &impl GenericClient, name: &str, value: &str) -> Result<()> {
    client
        .batch_execute(&alter_system_sql(name, value)?)
        .await
        .map_err(Error::sql(format!("setting {name}")))
}

/// `ALTER SYSTEM RESET name`.
pub fn alter_system_reset_sql(name: &str) -> Result<String> {
    alter_system_sql(name, "").map(|_| format!("ALTER SYSTEM RESET {name}"))
}

/// `synchronous_standby_names` that makes `name` the one synchronous
/// standby: `FIRST 1 ("name")`. The name is double-quoted so the server
/// compares it with `application_name` exactly (unquoted names are
/// case-folded by its parser).
pub fn first_one_synchronous(name: &str) -> String {
    format!("FIRST 1 ({})", escape_identifier(name))
}

/// The `host:port:database:user:password` line of a libpq password file,
/// with `:` and `\` escaped as libpq reads them. Use database
/// `replication` for walreceiver and `pg_basebackup` connections.
pub fn passfile_line(host: &str, port: u16, database: &str, user: &str, password: &str) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!(
        "{}:{port}:{}:{}:{}\n",
        esc(host),
        esc(database),
        esc(user),
        esc(password)
    )
}

/// What a standby's `primary_conninfo` says. No password: the walreceiver
/// reads it from [`PrimaryConninfo::passfile`], so it never lands in
/// `postgresql.auto.conf` (readable by anyone who can read the data
/// directory, and printed by `SHOW primary_conninfo` to superusers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryConninfo {
    /// The upstream's host (or hosts, comma-separated).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The replication role.
    pub user: String,
    /// This standby's name, as the upstream's `pg_stat_replication` and
    /// `synchronous_standby_names` know it.
    pub application_name: String,
    /// TLS mode.
    pub sslmode: Option<SslMode>,
    /// The password file (mode 0600, owned by the server's OS user).
    pub passfile: Option<PathBuf>,
    /// `connect_timeout` in seconds.
    pub connect_timeout: Option<u32>,
}

impl PrimaryConninfo {
    /// As a [`ConnInfo`].
    pub fn to_conninfo(&self) -> ConnInfo {
        let mut b = ConnInfo::builder()
            .user(self.user.clone())
            .host(self.host.clone())
            .port(self.port)
            .application_name(self.application_name.clone());
        if let Some(mode) = self.sslmode {
            b = b.sslmode(mode);
        }
        if let Some(t) = self.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(p) = &self.passfile {
            b = b.set(Keyword::Passfile, p.to_string_lossy().into_owned());
        }
        b.build()
    }

    /// The `key=value` text (libpq quoting), the value of `primary_conninfo`.
    pub fn to_keyword_value(&self) -> String {
        self.to_conninfo().to_keyword_value()
    }
}

/// A `name = 'value'` line as the server writes `postgresql.auto.conf`
/// (single quotes doubled, backslashes doubled).
pub fn auto_conf_line(name: &str, value: &str) -> String {
    format!(
        "{name} = '{}'\n",
        value.replace('\\', "\\\\").replace('\'', "''")
    )
}

/// Sets `name = 'value'` lines in the text of a `postgresql.auto.conf`
/// (or any postgresql.conf-style file): a line already setting `name` is
/// replaced in place, else the line is appended. Other lines keep their
/// bytes. The server uses the last setting of a name, so earlier duplicates
/// are removed.
pub fn set_conf_values(text: &str, values: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
    for (name, value) in values {
        let new = auto_conf_line(name, value);
        let matches: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| conf_line_name(l).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|(i, _)| i)
            .collect();
        match matches.split_last() {
            Some((&last, earlier)) => {
                lines[last] = new;
                for &i in earlier.iter().rev() {
                    lines.remove(i);
                }
            }
            None => lines.push(new),
        }
    }
    lines.concat()
}

/// Removes every line setting one of `names` from a postgresql.conf-style
/// text; other lines keep their bytes.
pub fn remove_conf_values(text: &str, names: &[&str]) -> String {
    text.lines()
        .filter(|l| {
            !conf_line_name(l).is_some_and(|n| names.iter().any(|x| x.eq_ignore_ascii_case(n)))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The value of the last `name = 'value'` line in the text of a
/// `postgresql.auto.conf` (quoted as the server writes it: `''` and `\\`
/// escapes; an unquoted value up to a comment), or `None`.
pub fn conf_value(text: &str, name: &str) -> Option<String> {
    text.lines()
        .rev()
        .find(|l| conf_line_name(l).is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|l| {
            let rest = l.trim_start()[name.len()..].trim_start();
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
            let Some(quoted) = rest.strip_prefix('\'') else {
                return rest.split('#').next().unwrap_or("").trim().to_string();
            };
            let mut value = String::new();
            let mut chars = quoted.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    '\'' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            value
        })
}

fn conf_line_name(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(t.len());
    let (name, rest) = t.split_at(end);
    let rest = rest.trim_start();
    (!name.is_empty() && !rest.is_empty() && !rest.starts_with('#')).then_some(name)
}

/// A `pg_basebackup` run that clones a primary into a standby's data
/// directory: `-X stream` (WAL streamed alongside, so the copy is
/// consistent on its own), `-c fast` (an immediate checkpoint), through a
/// named slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basebackup {
    /// Directory holding `pg_basebackup`.
    pub bin_dir: PathBuf,
    /// Target data directory (must be empty or absent).
    pub data_directory: PathBuf,
    /// Connection to the primary, without password (use a passfile).
    pub source: ConnInfo,
    /// The physical slot WAL is streamed through.
    pub slot: Option<String>,
    /// `--waldir` for a WAL directory outside the data directory.
    pub wal_directory: Option<PathBuf>,
    /// Print progress (`-P`).
    pub progress: bool,
}

impl Basebackup {
    /// The argument list, program first.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.bin_dir
                .join("pg_basebackup")
                .to_string_lossy()
                .into_owned(),
            "--pgdata".into(),
            self.data_directory.to_string_lossy().into_owned(),
            "--dbname".into(),
            self.source.to_keyword_value(),
            "--wal-method=stream".into(),
            "--checkpoint=fast".into(),
            "--no-password".into(),
        ];
        if let Some(slot) = &self.slot {
            argv.push("--slot".into());
            argv.push(slot.clone());
        }
        if let Some(w) = &self.wal_directory {
            argv.push("--waldir".into());
            argv.push(w.to_string_lossy().into_owned());
        }
        if self.progress {
            argv.push("--progress".into());
        }
        argv
    }
}

/// What a [`PgCtl`] run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgCtlAction {
    /// `start`, with `-l LOGFILE` when given.
    Start {
        /// Where the server's standard error goes.
        log_file: Option<PathBuf>,
        /// Extra server options (`-o`), e.g. `-c config_file=...`.
        options: Option<String>,
    },
    /// `stop -m fast`.
    StopFast,
    /// `stop -m immediate` (crash; recovery at next start).
    StopImmediate,
    /// `promote`.
    Promote,
}

/// A `pg_ctl` run on a data directory, waiting (`-w`) up to `timeout_s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgCtl {
    /// Directory holding `pg_ctl`.
    pub bin_dir: PathBuf,
    /// The data directory.
    pub data_directory: PathBuf,
    /// What to do.
    pub action: PgCtlAction,
    /// Seconds to wait.
    pub timeout_s: u32,
}

impl PgCtl {
    /// The argument list, program first.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.bin_dir.join("pg_ctl").to_string_lossy().into_owned(),
            "--pgdata".into(),
            self.data_directory.to_string_lossy().into_owned(),
            "--wait".into(),
            "--timeout".into(),
            self.timeout_s.to_string(),
        ];
        match &self.action {
            PgCtlAction::Start { log_file, options } => {
                if let Some(l) = log_file {
                    argv.push("--log".into());
                    argv.push(l.to_string_lossy().into_owned());
                }
                if let Some(o) = options {
                    argv.push("--options".into());
                    argv.push(o.clone());
                }
                argv.push("start".into());
            }
            PgCtlAction::StopFast => argv.extend(["--mode=fast".into(), "stop".into()]),
            PgCtlAction::StopImmediate => argv.extend(["--mode=immediate".into(), "stop".into()]),
            PgCtlAction::Promote => argv.push("promote".into()),
        }
        argv
    }
}

/// Size and free space of the file system holding `path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FsSpace {
    /// Total bytes.
    pub total: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
}

/// `statvfs(path)`: the file system's size and free space.
pub fn filesystem_space(path: &Path) -> Result<FsSpace> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Io {
        action: "measuring the file system of".into(),
        path: path.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized,
    // zero-initialised out parameter that statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::Io {
            action: "measuring the file system of".into(),
            path: path.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between libcs
    let frsize = (st.f_frsize as u64).max(1);
    #[allow(clippy::unnecessary_cast)]
    Ok(FsSpace {
        total: st.f_blocks as u64 * frsize,
        available: st.f_bavail as u64 * frsize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_the_server_rules() {
        assert!(validate_slot_name("standby_node_b2").is_ok());
        assert!(validate_slot_name("Node").is_err());
        assert!(validate_slot_name("a-b").is_err());
        assert!(validate_slot_name("").is_err());
        assert!(validate_slot_name(&"a".repeat(64)).is_err());
        assert!(validate_slot_name("x'; DROP TABLE t; --").is_err());
    }

    #[test]
    fn sync_names_are_quoted_identifiers() {
        assert_eq!(first_one_synchronous("node_b"), "FIRST 1 (\"node_b\")");
        assert_eq!(first_one_synchronous("Wé\"ird"), "FIRST 1 (\"Wé\"\"ird\")");
    }

    #[test]
    fn passfile_lines_escape_colons_and_backslashes() {
        assert_eq!(
            passfile_line("::1", 5432, "replication", "rep", "a:b\\c"),
            "\\:\\:1:5432:replication:rep:a\\:b\\\\c\n"
        );
    }

    #[test]
    fn primary_conninfo_has_no_password_and_quotes_values() {
        let c = PrimaryConninfo {
            host: "10.0.0.1".into(),
            port: 5433,
            user: "app_replication".into(),
            application_name: "node b".into(),
            sslmode: Some(SslMode::Require),
            passfile: Some("/var/lib/postgresql/15/.main pass".into()),
            connect_timeout: Some(5),
        };
        let text = c.to_keyword_value();
        assert_eq!(
            text,
            "user=app_replication passfile='/var/lib/postgresql/15/.main pass' \
             connect_timeout=5 host=10.0.0.1 port=5433 application_name='node b' sslmode=require"
        );
        let back = ConnInfo::parse(&text).unwrap();
        assert_eq!(back.get(Keyword::ApplicationName), Some("node b"));
        assert_eq!(back.get(Keyword::Password), None);
    }

    #[test]
    fn auto_conf_values_replace_in_place_and_append() {
        let old = "# Do not edit this file manually!\nwork_mem = '4MB'\nprimary_conninfo = 'old'\nprimary_conninfo = 'older'\n";
        let new = set_conf_values(
            old,
            &[
                ("primary_conninfo", "host=a user='x y'"),
                ("primary_slot_name", "s"),
            ],
        );
        assert_eq!(
            new,
            "# Do not edit this file manually!\nwork_mem = '4MB'\nprimary_conninfo = 'host=a user=''x y'''\nprimary_slot_name = 's'\n"
        );
    }

    #[test]
    fn conf_values_are_read_as_written() {
        let text = set_conf_values(
            "work_mem = 4MB # note\nprimary_conninfo = 'old'\n",
            &[("primary_conninfo", "host=a user='x y' sslmode=require")],
        );
        assert_eq!(
            conf_value(&text, "primary_conninfo").as_deref(),
            Some("host=a user='x y' sslmode=require")
        );
        assert_eq!(conf_value(&text, "work_mem").as_deref(), Some("4MB"));
        assert_eq!(conf_value(&text, "primary_slot_name"), None);
        assert_eq!(conf_value("a = 'b\\\\c'\n", "a").as_deref(), Some("b\\c"));
    }

    #[test]
    fn conf_values_are_removed_by_name() {
        let text =
            "a = 1\nsynchronous_standby_names = 'x'\n# synchronous_standby_names = 'y'\nb = 2\n";
        assert_eq!(
            remove_conf_values(text, &["synchronous_standby_names"]),
            "a = 1\n# synchronous_standby_names = 'y'\nb = 2\n"
        );
    }

    #[test]
    fn command_lines_are_exact() {
        let b = Basebackup {
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
            data_directory: "/var/lib/postgresql/15/main".into(),
            source: ConnInfo::parse("host=10.0.0.1 port=5432 user=rep").unwrap(),
            slot: Some("standby_b".into()),
            wal_directory: None,
            progress: true,
        };
        assert_eq!(
            b.argv().join(" "),
            "/usr/lib/postgresql/15/bin/pg_basebackup --pgdata /var/lib/postgresql/15/main \
             --dbname user=rep host=10.0.0.1 port=5432 --wal-method=stream --checkpoint=fast \
             --no-password --slot standby_b --progress"
        );
        let c = PgCtl {
            bin_dir: "/b".into(),
            data_directory: "/d".into(),
            action: PgCtlAction::StopFast,
            timeout_s: 60,
        };
        assert_eq!(
            c.argv().join(" "),
            "/b/pg_ctl --pgdata /d --wait --timeout 60 --mode=fast stop"
        );
    }

    #[test]
    fn alter_system_refuses_odd_names() {
        assert_eq!(
            alter_system_sql("wal_log_hints", "on").unwrap(),
            "ALTER SYSTEM SET wal_log_hints = 'on'"
        );
        assert!(alter_system_sql("x; DROP", "on").is_err());
        assert_eq!(
            alter_system_reset_sql("synchronous_standby_names").unwrap(),
            "ALTER SYSTEM RESET synchronous_standby_names"
        );
    }

    #[test]
    fn filesystem_space_of_root_is_nonzero() {
        let s = filesystem_space(Path::new("/")).unwrap();
        assert!(s.total > 0 && s.available <= s.total);
    }
}
