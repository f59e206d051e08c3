//! Restarting the server through whatever manages it (systemd,
//! `pg_ctlcluster`, `pg_ctl` as the data directory's owner, or the
//! caller's command), waiting until it is back, and what waits for a
//! restart. Which manager runs a server is found by
//! [`crate::server::detect_manager`].

use std::future::Future;
use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};
use crate::server::{shell_word, user_groups, user_name, ServerManager};

/// The names of settings that changed in the configuration files but wait
/// for a restart (`pg_settings.pending_restart`; the server must have been
/// told to reload first).
pub async fn pending_restart(client: &impl GenericClient) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT name FROM pg_catalog.pg_settings WHERE pending_restart ORDER BY name",
            &[],
        )
        .await
        .map_err(Error::sql("reading pending_restart"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How to restart the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartWith {
    /// Through the detected manager.
    Manager(ServerManager),
    /// A command given by the caller (program and arguments), run as is.
    Command(Vec<String>),
}

/// A prepared process: argv plus the identity to run it as.
struct Prepared {
    argv: Vec<String>,
    run_as: Option<(u32, u32, Vec<u32>)>,
}

impl Prepared {
    fn display(&self) -> String {
        self.argv
            .iter()
            .map(|w| shell_word(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn prepare(how: &RestartWith, wait: Duration) -> Result<Prepared> {
    match how {
        RestartWith::Command(argv) if argv.is_empty() => Err(Error::NoManager {
            reason: "the restart command is empty".into(),
        }),
        RestartWith::Command(argv) => Ok(Prepared {
            argv: argv.clone(),
            run_as: None,
        }),
        RestartWith::Manager(ServerManager::Systemd { unit }) => Ok(Prepared {
            argv: vec!["systemctl".into(), "restart".into(), unit.clone()],
            run_as: None,
        }),
        RestartWith::Manager(ServerManager::PgCtlCluster { version, cluster }) => Ok(Prepared {
            argv: vec![
                "pg_ctlcluster".into(),
                "-m".into(),
                "fast".into(),
                version.clone(),
                cluster.clone(),
                "restart".into(),
            ],
            run_as: None,
        }),
        RestartWith::Manager(ServerManager::PgCtl {
            pg_ctl,
            data_directory,
            uid,
            gid,
            log_file,
        }) => {
            let mut argv = vec![
                pg_ctl.to_string_lossy().into_owned(),
                "-D".into(),
                data_directory.to_string_lossy().into_owned(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
                "-t".into(),
                wait.as_secs().max(1).to_string(),
            ];
            argv.extend([
                "-l".into(),
                log_file
                    .as_ref()
                    .map_or_else(|| "/dev/null".into(), |l| l.to_string_lossy().into_owned()),
            ]);
            argv.push("restart".into());
            let groups = user_name(*uid)
                .map(|name| user_groups(&name, *gid))
                .unwrap_or_else(|| vec![*gid]);
            Ok(Prepared {
                argv,
                run_as: Some((*uid, *gid, groups)),
            })
        }
        RestartWith::Manager(ServerManager::Unknown { reason }) => Err(Error::NoManager {
            reason: reason.clone(),
        }),
    }
}

async fn start_time(client: &Client) -> std::result::Result<String, tokio_postgres::Error> {
    client
        .query_one("SELECT pg_catalog.pg_postmaster_start_time()::text", &[])
        .await
        .map(|row| row.get(0))
}

/// Restarts the server and waits until a new server process accepts
/// connections, giving up after `timeout`. `before` is a session on the
/// server (it will be cut off by the restart); `connect` opens a new one.
///
/// Success means a connection made through `connect` reports a later
/// `pg_postmaster_start_time()` than before; the restart command's exit
/// status is only reported, never trusted. Returns the new session.
///
/// `connect` may fail with any error (a driver error, this crate's
/// [`crate::connect::ConnectError`], ...): when the server does not come
/// back, [`Error::RestartTimeout`] carries the last one's text with its
/// causes (e.g. "error connecting to server: Connection refused").
pub async fn restart_and_wait<F, Fut, E>(
    before: &Client,
    how: &RestartWith,
    timeout: Duration,
    mut connect: F,
) -> Result<Client>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<Client, E>>,
    E: std::error::Error,
{
    let began = Instant::now();
    let deadline = began + timeout;
    let started_before = start_time(before)
        .await
        .map_err(Error::sql("reading the server's start time"))?;
    let prepared = prepare(how, timeout)?;
    let command = prepared.display();
    let mut output_file = tempfile::tempfile().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    let mut cmd = tokio::process::Command::new(&prepared.argv[0]);
    cmd.args(&prepared.argv[1..])
        .stdin(Stdio::null())
        .current_dir("/")
        .kill_on_drop(true);
    // The server started by the command inherits its environment, and
    // PGPORT/PGDATA/PGOPTIONS there would change where and how it runs.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    let out = output_file
        .try_clone()
        .and_then(|o| Ok((o.try_clone()?, o)));
    let (stdout, stderr) = out.map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    cmd.stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
    if let Some((uid, gid, groups)) = prepared.run_as.clone() {
        let groups: Vec<libc::gid_t> = groups.into_iter().collect();
        // SAFETY: only async-signal-safe system calls run between fork and
        // exec; the group list was built before forking.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;

    let mut status: Option<i32> = None;
    let mut exited = false;
    let mut failed_at: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    loop {
        if !exited {
            match child.try_wait() {
                Ok(Some(s)) => {
                    exited = true;
                    status = s.code();
                    if !s.success() {
                        failed_at = Some(Instant::now());
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    exited = true;
                    last_error = Some(e.to_string());
                }
            }
        }
        if exited {
            // A connection attempt may hang (e.g. no connect timeout):
            // the deadline bounds it too.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(remaining, async {
                let client = connect().await.map_err(|e| error_chain(&e))?;
                let started = start_time(&client).await.map_err(|e| error_chain(&e))?;
                Ok::<_, String>((client, started))
            })
            .await;
            match attempt {
                Ok(Ok((client, t))) if t != started_before => return Ok(client),
                Ok(Ok(_)) => last_error = Some("the server has not restarted yet".into()),
                Ok(Err(e)) => last_error = Some(e),
                Err(_) => last_error = Some("the connection attempt timed out".into()),
            }
        }
        // A manager that reported failure while the old server runs on will
        // not restart it; give it a short grace for asynchronous managers.
        let gave_up = failed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(5));
        if Instant::now() >= deadline || gave_up {
            let _ = child.start_kill();
            let output = read_tail(&mut output_file);
            return Err(Error::RestartTimeout {
                waited: began.elapsed(),
                command,
                status,
                output,
                last_error,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An error's text followed by its causes' (drivers often keep the OS
/// error, "Connection refused", only in the source), skipping a cause whose
/// text is already part of the message.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

fn read_tail(file: &mut std::fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    text.push_str(&String::from_utf8_lossy(&bytes));
    let tail: Vec<&str> = text.lines().rev().take(10).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}
