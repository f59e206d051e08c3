//! What the installation asks the server: who we are, which file it reads,
//! what it thinks of the file on disk, and the reload with its confirmation.
//!
//! # How a reload is confirmed
//!
//! `pg_reload_conf()` only sends SIGHUP to the postmaster and returns. The
//! postmaster, in one go, re-reads postgresql.conf (setting its reload time,
//! `pg_conf_load_time()`), signals its children, then re-reads pg_hba.conf
//! (`load_hba()`), keeping the old rules if the file does not parse. New
//! sessions are forked by the postmaster from its main loop, never in the
//! middle of that sequence, and inherit its reload time. So:
//!
//! 1. before the reload, note the server clock (`clock_timestamp()`);
//! 2. after it, open *new* sessions until one reports a `pg_conf_load_time()`
//!    at or after that instant: that session was forked after the
//!    postmaster finished the reload, hba file included;
//! 3. `load_hba()` succeeds exactly when the file parses without errors, and
//!    `pg_hba_file_rules` runs the same parser on the file on disk: the file
//!    was checked clean, and the installer (holding the lock) then checks it
//!    is still byte-identical, so the postmaster loaded those rules.
//!
//! `pg_hba_file_rules` alone cannot confirm a reload: it reads the file on
//! disk, not the rules the postmaster holds (and no view exposes those, up to
//! PostgreSQL 18). Without a way to open new sessions (no
//! [`Reconnect`](super::Reconnect)), the installer falls back to watching its
//! own session's reload time, which proves the postmaster received the signal
//! and re-read postgresql.conf, but not that it had finished `load_hba()`
//! ([`ReloadConfirmation::OwnSession`](super::ReloadConfirmation::OwnSession)).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::error::{HbaProblem, InstallError};
use super::validate::ValidationSettings;
use super::{Reconnect, ReloadConfirmation};

/// What the installer needs to know about the server.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub(crate) major: u32,
    pub(crate) hba_file: PathBuf,
    /// `pg_conf_load_time()` of this session, microseconds since the epoch.
    pub(crate) conf_load_time_us: i64,
    /// The settings the offline validation depends on.
    pub(crate) validation: ValidationSettings,
}

/// Reads the facts, refusing a non-superuser connection.
pub(crate) async fn facts(client: &Client) -> Result<Facts, InstallError> {
    let row = client
        .query_one(
            "select current_user::text, current_setting('is_superuser') = 'on'",
            &[],
        )
        .await
        .map_err(|e| InstallError::from_pg("check the connection's privileges", e))?;
    let user: String = row.get(0);
    let superuser: bool = row.get(1);
    if !superuser {
        return Err(InstallError::NotSuperuser { user });
    }
    let row = client
        .query_one(
            "select current_setting('server_version_num')::int4, current_setting('hba_file'), \
             (extract(epoch from pg_conf_load_time()) * 1000000)::int8, \
             current_setting('ssl') = 'on', \
             current_setting('oauth_validator_libraries', true)",
            &[],
        )
        .await
        .map_err(|e| InstallError::from_pg("read server_version_num and hba_file", e))?;
    let version_num: i32 = row.get(0);
    let hba_file: String = row.get(1);
    Ok(Facts {
        major: u32::try_from(version_num / 10_000).unwrap_or(0),
        hba_file: PathBuf::from(hba_file),
        conf_load_time_us: row.get(2),
        validation: ValidationSettings {
            ssl: row.get(3),
            // missing before 18: no such setting, NULL
            oauth_validator_libraries: ValidationSettings::split_libraries(
                &row.get::<_, Option<String>>(4).unwrap_or_default(),
            ),
        },
    })
}

/// The lines of the server's hba file (as now on disk, includes too) that
/// the server rejects, per `pg_hba_file_rules`: rows with an error and no
/// rule. A row with both (`hostssl` while `ssl = off`, `hostgssenc` without
/// GSSAPI: "record cannot match") is a line the server loads and only warns
/// about, so it does not count.
pub(crate) async fn file_problems(
    client: &Client,
    major: u32,
    during: &'static str,
) -> Result<Vec<HbaProblem>, InstallError> {
    let rows = client
        .query(super::file_problems_sql(major), &[])
        .await
        .map_err(|e| InstallError::from_pg(during, e))?;
    Ok(rows
        .iter()
        .map(|row| HbaProblem {
            file: row.get::<_, Option<String>>(0).map(PathBuf::from),
            line: row
                .get::<_, Option<i32>>(1)
                .and_then(|n| u32::try_from(n).ok()),
            message: row.get::<_, Option<String>>(2).unwrap_or_default(),
        })
        .collect())
}

/// The server clock in microseconds since the epoch.
async fn server_clock_us(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "select (extract(epoch from clock_timestamp()) * 1000000)::int8",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

async fn conf_load_time_us(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "select (extract(epoch from pg_conf_load_time()) * 1000000)::int8",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Sends `pg_reload_conf()`. Errors here mean the signal was not sent.
pub(crate) async fn send_reload(client: &Client) -> Result<i64, InstallError> {
    let before = server_clock_us(client)
        .await
        .map_err(|e| InstallError::from_pg("read the server clock before reloading", e))?;
    let row = client
        .query_one(super::RELOAD_SQL, &[])
        .await
        .map_err(|e| InstallError::from_pg("reload the configuration (pg_reload_conf)", e))?;
    let sent: bool = row.get(0);
    if !sent {
        // pg_reload_conf() returns false when kill() failed: it warns, and
        // nothing was reloaded.
        return Err(InstallError::ReloadNotConfirmed {
            waited: Duration::ZERO,
        });
    }
    Ok(before)
}

/// How long [`confirm_reload`] polls every millisecond before backing off.
const FAST_POLLING: Duration = Duration::from_millis(100);

/// Waits until the reload sent at server time `sent_at_us` is visible (see
/// the module documentation).
pub(crate) async fn confirm_reload(
    client: &Client,
    reconnect: Option<&dyn Reconnect>,
    sent_at_us: i64,
    timeout: Duration,
) -> Result<ReloadConfirmation, InstallError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let seen = match reconnect {
            Some(reconnect) => {
                let fresh = reconnect.reconnect().await.map_err(|e| {
                    InstallError::from_pg("open a new session to confirm the reload", e)
                })?;
                conf_load_time_us(&fresh).await
            }
            None => conf_load_time_us(client).await,
        }
        .map_err(|e| InstallError::from_pg("confirm the reload", e))?;
        if seen >= sent_at_us {
            return Ok(match reconnect {
                Some(_) => ReloadConfirmation::NewSession,
                None => ReloadConfirmation::OwnSession,
            });
        }
        if start.elapsed() >= timeout {
            return Err(InstallError::ReloadNotConfirmed {
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(pause).await;
        // The reload usually shows within a few milliseconds (the
        // postmaster re-reads postgresql.conf, then signals its children):
        // poll every millisecond at first, so an installation does not
        // wait for the next doubled pause (BENCHMARKS.md).
        if start.elapsed() >= FAST_POLLING {
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
