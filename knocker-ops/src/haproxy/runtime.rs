//! A small client of HAProxy's master CLI (`-S` socket) and, through it,
//! of the current worker's Runtime API (commands prefixed with `@1`).
//!
//! One connection per command: the command and a newline are written, then
//! the write side is shut (half-close). HAProxy 2.6's master CLI answers only
//! then, and closes the connection after the answer, so the answer is
//! everything read until end of file. `reload` is answered by a reset or an
//! empty read, as the master re-executes itself.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a master that is re-executing itself (a reload, knocker's or
/// anyone's) may refuse connections or answer `show proc` with nothing
/// before that counts as not answering.
const REEXEC_WAIT: Duration = Duration::from_secs(5);

/// How often a re-executing master is asked again.
const REEXEC_POLL: Duration = Duration::from_millis(50);

/// The master CLI at a socket path.
#[derive(Debug, Clone)]
pub struct MasterCli {
    socket: PathBuf,
}

impl MasterCli {
    /// The master CLI listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> MasterCli {
        MasterCli {
            socket: socket.into(),
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connects, waiting while the master re-executes itself: during a
    /// reload its socket exists but refuses connections for a moment.
    fn connect(&self) -> io::Result<UnixStream> {
        let deadline = Instant::now() + REEXEC_WAIT;
        loop {
            match UnixStream::connect(&self.socket) {
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(REEXEC_POLL)
                }
                other => return other,
            }
        }
    }

    /// Sends one command and returns the whole answer.
    pub fn command(&self, command: &str) -> io::Result<String> {
        let mut stream = self.connect()?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// Sends `command` (one that may be sent twice: a query, or setting a
    /// state), asking again while the master re-executes itself: a
    /// reload, someone else's or a killed run's, drops the connections it
    /// holds (ECONNRESET).
    fn command_again_on_reset(&self, command: &str) -> io::Result<String> {
        let deadline = Instant::now() + REEXEC_WAIT;
        loop {
            match self.command(command) {
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionReset && Instant::now() < deadline =>
                {
                    std::thread::sleep(REEXEC_POLL)
                }
                other => return other,
            }
        }
    }

    /// A command for the current worker's Runtime API (a query or a state
    /// change that may be sent twice).
    pub fn worker_command(&self, command: &str) -> io::Result<String> {
        self.command_again_on_reset(&format!("@1 {command}"))
    }

    /// `show proc`, parsed. A master in the middle of re-executing itself
    /// answers with nothing: it is asked again for a moment.
    pub fn show_proc(&self) -> io::Result<ProcList> {
        let deadline = Instant::now() + REEXEC_WAIT;
        let mut answer = self.command_again_on_reset("show proc")?;
        while answer.trim().is_empty() && Instant::now() < deadline {
            std::thread::sleep(REEXEC_POLL);
            answer = self.command_again_on_reset("show proc")?;
        }
        ProcList::parse(&answer).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to show proc: {answer:?}"),
            )
        })
    }

    /// Asks the master to reload (re-execute itself with the file on disk).
    pub fn reload(&self) -> io::Result<()> {
        match self.command("reload") {
            Ok(_) => Ok(()),
            // The master re-executes itself and drops the connection.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The backend's servers as the worker sees them (`show stat`).
    pub fn server_stats(&self, backend: &str) -> io::Result<Vec<ServerStat>> {
        let answer = self.worker_command("show stat")?;
        Ok(ServerStat::parse(&answer, backend))
    }
}

/// The processes of a master-worker HAProxy (`show proc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcList {
    /// The master's pid.
    pub master_pid: u32,
    /// How many reloads the master has done.
    pub reloads: u64,
    /// How many of them failed (the old worker kept running).
    pub failed_reloads: u64,
    /// The workers of the current generation.
    pub workers: Vec<u32>,
    /// Workers of older generations still finishing their sessions.
    pub old_workers: Vec<u32>,
}

impl ProcList {
    /// Parses the answer to `show proc` (HAProxy 2.6's format):
    ///
    /// ```text
    /// #<PID>          <type>          <reloads>       <uptime>        <version>
    /// 20359           master          2 [failed: 1]   0d00h00m33s     2.6.12-1+deb12u3
    /// # workers
    /// 23275           worker          1               0d00h00m06s     2.6.12-1+deb12u3
    /// # old workers
    /// ...
    /// ```
    pub fn parse(text: &str) -> Option<ProcList> {
        let mut master = None;
        let mut workers = Vec::new();
        let mut old_workers = Vec::new();
        let mut section = "";
        for line in text.lines() {
            if let Some(title) = line.strip_prefix("# ") {
                section = title.trim();
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(pid) = words.first().and_then(|w| w.parse::<u32>().ok()) else {
                continue;
            };
            match (words.get(1).copied(), section) {
                (Some("master"), _) => {
                    let reloads = words.get(2)?.parse().ok()?;
                    let failed = line
                        .split_once("[failed:")
                        .and_then(|(_, rest)| rest.split(']').next())
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0);
                    master = Some((pid, reloads, failed));
                }
                (Some("worker"), "workers") => workers.push(pid),
                (Some("worker"), "old workers") => old_workers.push(pid),
                _ => {}
            }
        }
        let (master_pid, reloads, failed_reloads) = master?;
        Some(ProcList {
            master_pid,
            reloads,
            failed_reloads,
            workers,
            old_workers,
        })
    }
}

/// One server of a backend as the worker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStat {
    /// The server's name.
    pub name: String,
    /// HAProxy's status: `UP`, `DOWN`, `DRAIN`, `MAINT`, `UP 1/2` (going
    /// down), `no check`, ...
    pub status: String,
    /// Its effective weight (0 drains it).
    pub weight: u32,
    /// Current sessions.
    pub sessions: u64,
}

impl ServerStat {
    /// Picks `backend`'s servers out of `show stat` CSV.
    pub fn parse(csv: &str, backend: &str) -> Vec<ServerStat> {
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let header: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(status), Some(weight), Some(scur)) = (
            column("pxname"),
            column("svname"),
            column("status"),
            column("weight"),
            column("scur"),
        ) else {
            return Vec::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.get(px) == Some(&backend)
                    && !matches!(f.get(sv), Some(&"BACKEND") | Some(&"FRONTEND") | None)
            })
            .map(|f| ServerStat {
                name: f[sv].to_string(),
                status: f.get(status).unwrap_or(&"").to_string(),
                weight: f.get(weight).and_then(|w| w.parse().ok()).unwrap_or(0),
                sessions: f.get(scur).and_then(|w| w.parse().ok()).unwrap_or(0),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_proc_of_haproxy_2_6_after_a_failed_reload() {
        let text =
            "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
20359           master          2 [failed: 1]   0d00h00m33s     2.6.12-1+deb12u3\n\
# workers\n\
23275           worker          1               0d00h00m06s     2.6.12-1+deb12u3\n\
# old workers\n\
20360           worker          2               0d00h00m30s     2.6.12-1+deb12u3\n\
# programs\n\n";
        assert_eq!(
            ProcList::parse(text).unwrap(),
            ProcList {
                master_pid: 20359,
                reloads: 2,
                failed_reloads: 1,
                workers: vec![23275],
                old_workers: vec![20360],
            }
        );
        assert_eq!(ProcList::parse(""), None);
    }
}
