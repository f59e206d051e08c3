//! The running HAProxy: found from its processes, checked with its own
//! arguments, reloaded through systemd or its master CLI, and the reload
//! confirmed on the master CLI (a service manager's exit code is not proof:
//! HAProxy keeps the old worker when a reload fails).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::runtime::{MasterCli, ProcList};
use crate::Error;

/// The master socket of Debian's haproxy.service (`EXTRAOPTS=-S ...`).
pub const DEBIAN_MASTER_SOCKET: &str = "/run/haproxy-master.sock";
/// How long a reload may take to show a new worker.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// The HAProxy serving a configuration file, as far as it could be found.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its master CLI, when known (given, found from the process, or
    /// Debian's default path when that socket exists).
    pub master: Option<MasterCli>,
    /// Its processes when the master CLI answered.
    pub procs: Option<ProcList>,
    /// The master's command line (from `/proc`), when readable.
    pub argv: Vec<String>,
    /// The master's working directory (relative paths in its arguments and
    /// configuration are resolved from there).
    pub cwd: PathBuf,
    /// Whether systemd manages services here (`/run/systemd/system`).
    pub systemd: bool,
    /// The master's executable (`/proc/PID/exe`), so `-c` runs the same
    /// HAProxy version.
    pub executable: Option<PathBuf>,
    /// The master's environment without HAProxy's own `HAPROXY_*`
    /// variables: the configuration may use `"${VAR}"`.
    pub environment: Vec<(String, String)>,
}

impl Service {
    /// Finds the HAProxy that loads `config`: through `master_socket` when
    /// given (it must answer), else from the running processes, else
    /// Debian's default master socket.
    pub fn discover(config: &Path, master_socket: Option<&Path>) -> Result<Service, Error> {
        let systemd = Path::new("/run/systemd/system").exists();
        let master = match master_socket {
            Some(path) => Some(MasterCli::new(path)),
            None => find_master_socket(config)
                .or_else(|| {
                    Path::new(DEBIAN_MASTER_SOCKET)
                        .exists()
                        .then(|| PathBuf::from(DEBIAN_MASTER_SOCKET))
                })
                .map(MasterCli::new),
        };
        let procs = match &master {
            Some(cli) => match cli.show_proc() {
                Ok(procs) => Some(procs),
                Err(e) if master_socket.is_some() => {
                    return Err(Error::failed(format!(
                        "HAProxy's master CLI at {} does not answer",
                        cli.socket().display()
                    ))
                    .with_source(e))
                }
                Err(_) => None,
            },
            None => None,
        };
        // Debian's default socket may belong to a HAProxy that does not
        // load this file: never reload that one by mistake.
        let procs = procs.filter(|p| {
            master_socket.is_some()
                || cmdline(p.master_pid)
                    .is_some_and(|argv| loads_config(&argv, p.master_pid, config))
        });
        let master = if procs.is_some() { master } else { None };
        let (argv, cwd) = procs
            .as_ref()
            .map(|p| {
                (
                    cmdline(p.master_pid).unwrap_or_default(),
                    fs::read_link(format!("/proc/{}/cwd", p.master_pid))
                        .unwrap_or_else(|_| PathBuf::from("/")),
                )
            })
            .unwrap_or_else(|| (Vec::new(), PathBuf::from("/")));
        let pid = procs.as_ref().map(|p| p.master_pid);
        let executable = pid.and_then(|pid| fs::read_link(format!("/proc/{pid}/exe")).ok());
        let environment = pid
            .and_then(|pid| fs::read(format!("/proc/{pid}/environ")).ok())
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter_map(|kv| {
                        let kv = String::from_utf8_lossy(kv);
                        kv.split_once('=')
                            // HAPROXY_* is HAProxy's own state (master-worker
                            // re-exec, "wait only" mode...): with it, -c checks
                            // as a re-executing master would.
                            .filter(|(k, _)| !k.starts_with("HAPROXY_"))
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Service {
            master,
            procs,
            argv,
            cwd,
            systemd,
            executable,
            environment,
        })
    }

    /// Whether a running HAProxy was found.
    pub fn running(&self) -> bool {
        self.procs.is_some()
    }

    /// The pids of the master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        self.procs
            .as_ref()
            .map(|p| {
                let mut pids = vec![p.master_pid];
                pids.extend(&p.workers);
                pids.extend(&p.old_workers);
                pids
            })
            .unwrap_or_default()
    }

    /// `haproxy -c` of `candidate` in place of `config`, with the other
    /// configuration files (`-f`), local peer name (`-L`) and directory
    /// (`-C`) the running master was started with.
    pub fn check_command(&self, config: &Path, candidate: &Path) -> Vec<String> {
        let program = self
            .executable
            .as_ref()
            .map_or_else(|| "haproxy".to_string(), |p| p.display().to_string());
        let mut command = vec![program, "-c".to_string()];
        // Master-worker mode matters: without -W, a configuration with no
        // listener (Debian's stock file) "will not start" (exit 2), while a
        // master reloads it fine. No master found: Debian's service uses -Ws.
        let mode = self
            .argv
            .iter()
            .find(|a| *a == "-W" || *a == "-Ws")
            .cloned()
            .unwrap_or_else(|| "-Ws".to_string());
        command.push(mode);
        let config = fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
        let mut replaced = false;
        let mut args = self.argv.iter().skip(1);
        while let Some(arg) = args.next() {
            if let ("-f" | "-L" | "-C", Some(value)) = (arg.as_str(), args.clone().next()) {
                args.next();
                let target = fs::canonicalize(self.cwd.join(value)).ok();
                if arg == "-f" && target.as_deref() == Some(config.as_path()) {
                    replaced = true;
                    command.extend(["-f".to_string(), candidate.display().to_string()]);
                } else if arg == "-f"
                    && target.as_deref().is_some_and(Path::is_dir)
                    && config.parent() == target.as_deref()
                {
                    // A directory holding the file: HAProxy loads its *.cfg
                    // files in name order; list them, the candidate in place
                    // of the file.
                    replaced = true;
                    let mut files: Vec<PathBuf> = fs::read_dir(self.cwd.join(value))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
                        .collect();
                    files.sort();
                    for file in files {
                        let same =
                            fs::canonicalize(&file).ok().as_deref() == Some(config.as_path());
                        command.push("-f".into());
                        command.push(if same {
                            candidate.display().to_string()
                        } else {
                            file.display().to_string()
                        });
                    }
                } else {
                    command.extend([arg.clone(), value.clone()]);
                }
            }
        }
        if !replaced {
            command.push("-f".into());
            command.push(candidate.display().to_string());
        }
        command
    }

    /// Runs `haproxy -c`; `Err` carries HAProxy's own words.
    pub fn check(&self, command: &[String]) -> Result<(), Error> {
        let mut run = Command::new(&command[0]);
        run.args(&command[1..]).current_dir(&self.cwd);
        if !self.environment.is_empty() {
            run.env_clear().envs(self.environment.iter().cloned());
        }
        let output = run.output().map_err(|e| {
            Error::failed(
                "cannot run haproxy -c; is HAProxy installed? (sudo apt-get install haproxy)",
            )
            .with_source(e)
        })?;
        if output.status.success() {
            return Ok(());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Err(Error::refused_always(format!(
            "haproxy -c refuses the new configuration; nothing was changed:\n{}",
            text.trim_end()
        )))
    }

    /// The reload command, as it will be run.
    pub fn reload_command(&self) -> Option<Vec<String>> {
        if self.systemd {
            Some(vec![
                "systemctl".into(),
                "reload".into(),
                "haproxy.service".into(),
            ])
        } else {
            self.master
                .as_ref()
                .map(|m| super::master_cli_command(m.socket(), "reload"))
        }
    }

    /// Reloads and waits until the master shows a new worker. Returns the
    /// new worker's pid.
    pub fn reload(&mut self) -> Result<Reload, Error> {
        let (Some(master), Some(before)) = (self.master.clone(), self.procs.clone()) else {
            return Err(Error::failed("no running HAProxy master to reload"));
        };
        let started = Instant::now();
        if self.systemd {
            let status = Command::new("systemctl")
                .args(["reload", "haproxy.service"])
                .status()
                .map_err(|e| Error::failed("cannot run systemctl").with_source(e))?;
            if !status.success() {
                return Err(Error::failed(format!(
                    "systemctl reload haproxy.service failed ({status})"
                )));
            }
        } else {
            master.reload().map_err(|e| {
                Error::failed(format!(
                    "cannot send reload to {}",
                    master.socket().display()
                ))
                .with_source(e)
            })?;
        }
        let after = confirm(&master, &before)?;
        let new_worker = after
            .workers
            .iter()
            .copied()
            .find(|pid| !before.workers.contains(pid) && !before.old_workers.contains(pid))
            .unwrap_or_default();
        self.procs = Some(after);
        Ok(Reload {
            old_workers: before.workers,
            new_worker,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// A confirmed reload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reload {
    /// The workers that were current before.
    pub old_workers: Vec<u32>,
    /// The worker started by the reload.
    pub new_worker: u32,
    /// From the request to the confirmation.
    pub seconds: f64,
}

/// Waits until the master has counted one more reload and runs a worker
/// that was not there before; a reload counted as failed is an error.
fn confirm(master: &MasterCli, before: &ProcList) -> Result<ProcList, Error> {
    let deadline = Instant::now() + CONFIRM_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        // The master does not answer while it re-executes itself.
        if let Ok(now) = master.show_proc() {
            if now.reloads > before.reloads {
                if now.failed_reloads > before.failed_reloads {
                    return Err(Error::failed(format!(
                        "HAProxy refused the reload (the master counts {} failed reloads; the \
                         old worker {:?} still runs); see HAProxy's log",
                        now.failed_reloads, now.workers
                    )));
                }
                if now
                    .workers
                    .iter()
                    .any(|pid| !before.workers.contains(pid) && !before.old_workers.contains(pid))
                {
                    return Ok(now);
                }
            }
            last = Some(now);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::failed(format!(
        "no new HAProxy worker within {} s of the reload (last seen: {:?})",
        CONFIRM_TIMEOUT.as_secs(),
        last
    )))
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain blanks.
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

fn is_haproxy(argv: &[String]) -> bool {
    argv.first()
        .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "haproxy"))
}

/// Whether a master with command line `argv` loads `config`: one of its
/// `-f` is the file, or a directory holding it (HAProxy loads a
/// directory's `*.cfg` files).
fn loads_config(argv: &[String], pid: u32, config: &Path) -> bool {
    let Ok(config) = fs::canonicalize(config) else {
        return false;
    };
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| "/".into());
    argv.windows(2)
        .filter(|w| w[0] == "-f")
        .filter_map(|w| fs::canonicalize(cwd.join(&w[1])).ok())
        .any(|f| f == config || (f.is_dir() && config.parent() == Some(f.as_path())))
}

/// The `-S` socket of a running HAProxy master that loads `config`.
fn find_master_socket(config: &Path) -> Option<PathBuf> {
    let config = fs::canonicalize(config).ok()?;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(argv) = cmdline(pid).filter(|a| is_haproxy(a)) else {
            continue;
        };
        // Workers are children of the master, which is the one with the CLI.
        if parent_pid(pid)
            .and_then(cmdline)
            .is_some_and(|parent| is_haproxy(&parent))
        {
            continue;
        }
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| "/".into());
        let value_of = |flag: &str| -> Vec<String> {
            argv.windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].clone())
                .collect()
        };
        if !loads_config(&argv, pid, &config) {
            continue;
        }
        if let Some(socket) = value_of("-S").first() {
            // `-S path[,bind options]`
            let path = socket.split(',').next().unwrap_or(socket);
            return Some(cwd.join(path));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(argv: &[&str], cwd: &Path) -> Service {
        Service {
            master: None,
            procs: None,
            argv: argv.iter().map(|a| a.to_string()).collect(),
            cwd: cwd.to_path_buf(),
            systemd: false,
            executable: Some(PathBuf::from("/usr/sbin/haproxy")),
            environment: Vec::new(),
        }
    }

    #[test]
    fn the_check_uses_the_masters_files_with_the_candidate_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        for f in [
            "conf.d/10-a.cfg",
            "conf.d/50-knocker.cfg",
            "conf.d/90-z.cfg",
            "conf.d/notes.txt",
            "base.cfg",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let config = d.join("conf.d/50-knocker.cfg");
        let candidate = d.join("conf.d/.50-knocker.cfg.knocker-abc");
        let s = |p: &str| d.join(p).display().to_string();
        let got = service(
            &[
                "haproxy",
                "-Ws",
                "-f",
                "base.cfg",
                "-f",
                "conf.d",
                "-p",
                "/run/haproxy.pid",
                "-S",
                "/run/m.sock",
                "-L",
                "peer1",
            ],
            &d,
        )
        .check_command(&config, &candidate);
        let want: Vec<String> = vec![
            "/usr/sbin/haproxy".into(),
            "-c".into(),
            "-Ws".into(),
            "-f".into(),
            "base.cfg".into(),
            "-f".into(),
            s("conf.d/10-a.cfg"),
            "-f".into(),
            candidate.display().to_string(),
            "-f".into(),
            s("conf.d/90-z.cfg"),
            "-L".into(),
            "peer1".into(),
        ];
        assert_eq!(got, want);
        // No master: Debian's service arguments.
        let got = service(&[], &d).check_command(&config, &candidate);
        assert_eq!(
            got[1..],
            ["-c", "-Ws", "-f", &candidate.display().to_string()]
        );
    }
}
