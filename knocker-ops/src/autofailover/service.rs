//! How a pg_autoctl process (the monitor of `--monitor-init`, a node's
//! keeper of `--enroll`) is kept running: where systemd runs, a unit of
//! its own (the unit `pg_autoctl show systemd` describes, with knocker's
//! environment: [`Autoctl::systemd_unit`]) written, enabled and started
//! the same way for both, and stopped, disabled and removed by
//! `--disable`; elsewhere (containers, tests) the foreground command a
//! supervisor must run, reported as `supervise`.
//!
//! Whether systemd runs is `pgctl::server::HostProbe::systemd_running`
//! (`/run/systemd/system` is a directory, as `sd_booted(3)` checks),
//! passed in as a flag so that tests exercise both plans on a host
//! without systemd.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::autoctl::{self, Autoctl};
use crate::{Error, FileChange, Plan};

/// Where knocker writes its units.
const UNIT_DIR: &str = "/etc/systemd/system";
/// The monitor's unit: one monitor per host.
pub const MONITOR_UNIT: &str = "pgautofailover-monitor.service";
/// How long `systemctl` may take (`enable --now` waits for the start).
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(90);

/// Whether systemd runs as init on this host.
pub fn systemd_runs() -> bool {
    pgctl::server::HostProbe::local().systemd_running
}

/// A systemd unit of knocker autofailover: its name and file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceUnit {
    /// The unit name, e.g. `pgautofailover-node1.service`.
    pub name: String,
    /// Its file under `/etc/systemd/system`.
    pub path: PathBuf,
}

impl fmt::Display for ServiceUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.path.display())
    }
}

impl ServiceUnit {
    /// The unit named `name` in `/etc/systemd/system`.
    fn named(name: String) -> ServiceUnit {
        ServiceUnit {
            path: Path::new(UNIT_DIR).join(&name),
            name,
        }
    }

    /// The monitor's unit.
    pub fn monitor() -> ServiceUnit {
        ServiceUnit::named(MONITOR_UNIT.to_string())
    }

    /// The keeper's unit of the node named `node` in the formation
    /// (1-63 letters, digits, `_`, `-` or `.`, all valid in a unit name).
    pub fn keeper(node: &str) -> ServiceUnit {
        ServiceUnit::named(format!("pgautofailover-{node}.service"))
    }

    /// The keeper's unit of an enrolled node: named after the node name
    /// in its `pg_autoctl.cfg`. `None` when that file names none.
    pub fn of_enrolled(autoctl: &Autoctl) -> Option<ServiceUnit> {
        autoctl.configured_name().map(|n| ServiceUnit::keeper(&n))
    }

    /// Refuses a unit file of that name that runs something else (another
    /// data directory: a monitor, another cluster of this host with the
    /// same node name). The same text is ours from an earlier run.
    pub fn check_free(&self, text: &str) -> Result<(), Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(old) if old != text => Err(Error::refused_always(format!(
                "{} exists and runs something else (another monitor or node of this host): \
                 stop and remove it first (one monitor per host; a node's unit is named \
                 after its --name)",
                self.path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// `systemctl ARGS... NAME`.
    fn systemctl(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec!["systemctl".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.push(self.name.clone());
        argv
    }

    /// Whether systemd runs the unit now (`systemctl is-active`).
    pub async fn is_active(&self) -> bool {
        autoctl::run(
            &self.systemctl(&["is-active", "--quiet"]),
            SYSTEMCTL_TIMEOUT,
        )
        .await
        .is_ok_and(|o| o.status.success())
    }

    /// The commands that start the unit once its file is written.
    fn install_commands(&self) -> [Vec<String>; 2] {
        [daemon_reload(), self.systemctl(&["enable", "--now"])]
    }

    /// Adds the unit file and its commands to `plan`.
    pub fn plan_install(&self, text: &str, plan: &mut Plan) {
        let old = std::fs::read(&self.path).unwrap_or_default();
        plan.files
            .push(FileChange::new(&self.path, &old, text.as_bytes()));
        plan.commands.extend(self.install_commands());
    }

    /// Writes the unit file (root, 0644, atomically), enables and starts
    /// the unit, and waits up to `timeout` for `ready` to exist (the
    /// PostgreSQL socket the process opens). Returns whether the file
    /// changed.
    pub async fn install(
        &self,
        text: &str,
        ready: &Path,
        timeout: Duration,
    ) -> Result<bool, Error> {
        let changed = std::fs::read_to_string(&self.path).ok().as_deref() != Some(text);
        if changed {
            crate::replica::clone::write_owned(&self.path, text.as_bytes(), 0o644, 0, 0)?;
        }
        for argv in self.install_commands() {
            run_checked(&argv).await?;
        }
        let deadline = Instant::now() + timeout;
        while !ready.exists() {
            if Instant::now() > deadline {
                return Err(Error::failed(format!(
                    "{} started, but {} did not appear within {} s (journalctl -u {})",
                    self.name,
                    ready.display(),
                    timeout.as_secs(),
                    self.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(changed)
    }

    /// The command that stops the unit and keeps it from starting at boot.
    pub fn stop_command(&self) -> Vec<String> {
        self.systemctl(&["disable", "--now"])
    }

    /// The unit file's removal, for a plan (the file, then `daemon-reload`).
    pub fn plan_removal(&self, plan: &mut Plan) {
        let old = std::fs::read(&self.path).unwrap_or_default();
        plan.files.push(FileChange::new(&self.path, &old, b""));
        plan.commands.push(daemon_reload());
    }

    /// Removes the unit file (gone already is fine) and reloads systemd.
    pub async fn remove(&self) -> Result<(), Error> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    Error::failed(format!("cannot remove {}", self.path.display())).with_source(e),
                )
            }
        }
        run_checked(&daemon_reload()).await
    }

    /// Best effort, for a rollback: stop, disable, remove, reload.
    pub fn remove_quietly(&self) {
        run_quietly(&self.stop_command());
        let _ = std::fs::remove_file(&self.path);
        run_quietly(&daemon_reload());
    }
}

/// Runs `argv` synchronously with no input or output, ignoring how it
/// ends: rollbacks (in `Drop`) that do their best.
pub fn run_quietly(argv: &[String]) {
    if let Some((program, args)) = argv.split_first() {
        let _ = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `systemctl daemon-reload`: systemd reads unit files (and runs
/// generators, such as Debian's for `start.conf`) again.
pub fn daemon_reload() -> Vec<String> {
    ["systemctl", "daemon-reload"].map(String::from).to_vec()
}

/// Runs `argv` (systemctl); a non-zero exit is an error with its output.
pub async fn run_checked(argv: &[String]) -> Result<(), Error> {
    autoctl::run_ok(&crate::plan::shell_words(argv), argv, SYSTEMCTL_TIMEOUT)
        .await
        .map(drop)
}

/// How a pg_autoctl process runs on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervision {
    /// Under systemd: the unit and the text of its file.
    Service {
        /// The unit.
        unit: ServiceUnit,
        /// Its file.
        text: String,
    },
    /// Elsewhere: the foreground command a supervisor runs as the
    /// PostgreSQL user.
    Foreground(Vec<String>),
}

impl Supervision {
    /// The supervision of `autoctl`'s process: `unit` with its file when
    /// `systemd` runs (refused when a file of that name runs something
    /// else), else the foreground command.
    pub fn choose(
        autoctl: &Autoctl,
        unit: ServiceUnit,
        description: &str,
        systemd: bool,
    ) -> Result<Supervision, Error> {
        if !systemd {
            return Ok(Supervision::Foreground(autoctl.supervise()));
        }
        let text = autoctl.systemd_unit(description);
        unit.check_free(&text)?;
        Ok(Supervision::Service { unit, text })
    }

    /// Adds what starting it changes to `plan` (nothing without systemd:
    /// the operator's supervisor starts it).
    pub fn plan(&self, plan: &mut Plan) {
        if let Supervision::Service { unit, text } = self {
            unit.plan_install(text, plan);
        }
    }

    /// The report's `service` and `supervise`: one of them is set.
    pub fn report(&self) -> (Option<ServiceUnit>, Option<Vec<String>>) {
        match self {
            Supervision::Service { unit, .. } => (Some(unit.clone()), None),
            Supervision::Foreground(argv) => (None, Some(argv.clone())),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn autoctl() -> Autoctl {
        Autoctl::for_owner(
            Path::new("/var/lib/postgresql/15/main"),
            Path::new("/usr/lib/postgresql/15/bin"),
            0,
            0,
        )
        .unwrap()
    }

    /// What systemd says of a unit file (empty when it accepts it).
    pub(in crate::autofailover) fn systemd_verify(name: &str, text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&file)
            .output()
            .expect("systemd-analyze (package systemd)");
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.success() {
            err
        } else {
            format!("{}: {err}", out.status)
        }
    }

    #[test]
    fn an_enrolled_nodes_unit_is_named_after_its_configured_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = Autoctl::for_owner(&dir.path().join("main"), Path::new("/bin"), 0, 0).unwrap();
        assert_eq!(ServiceUnit::of_enrolled(&a), None);
        let cfg = a.config_file();
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(
            &cfg,
            "[pg_autoctl]\nrole = keeper\nmonitor = postgres://m/pg_auto_failover\n\
             formation = default\nname = node_b-2\nhostname = 10.0.0.2\n\n\
             [postgresql]\nname = not-this\n",
        )
        .unwrap();
        assert_eq!(
            ServiceUnit::of_enrolled(&a),
            Some(ServiceUnit::keeper("node_b-2"))
        );
    }

    #[test]
    fn with_systemd_the_plan_writes_and_starts_the_keepers_unit() {
        let a = autoctl();
        let unit = ServiceUnit::keeper("node1");
        assert_eq!(unit.name, "pgautofailover-node1.service");
        assert_eq!(
            unit.path,
            Path::new("/etc/systemd/system/pgautofailover-node1.service")
        );
        let s = Supervision::choose(&a, unit.clone(), "keeper of node1", true).unwrap();
        let mut plan = Plan::default();
        s.plan(&mut plan);
        assert_eq!(plan.files.len(), 1);
        assert_eq!(plan.files[0].path, unit.path);
        let text = String::from_utf8(plan.files[0].new.clone()).unwrap();
        assert!(text.contains("User=root\n"), "{text}");
        assert!(
            text.contains("\"PGDATA=/var/lib/postgresql/15/main\""),
            "{text}"
        );
        assert!(
            text.contains("\"XDG_CONFIG_HOME=/var/lib/postgresql/15/.main.pg_autoctl/config\""),
            "{text}"
        );
        assert!(!text.to_lowercase().contains("password"), "{text}");
        assert_eq!(
            plan.commands,
            vec![
                vec!["systemctl".to_string(), "daemon-reload".into()],
                vec![
                    "systemctl".to_string(),
                    "enable".into(),
                    "--now".into(),
                    "pgautofailover-node1.service".into()
                ],
            ]
        );
        assert_eq!(s.report(), (Some(unit), None));
        let verdict = systemd_verify("pgautofailover-node1.service", &text);
        assert!(verdict.is_empty(), "{verdict}\n{text}");
    }

    #[test]
    fn without_systemd_the_plan_names_the_foreground_command() {
        let a = autoctl();
        let s = Supervision::choose(&a, ServiceUnit::keeper("node1"), "keeper", false).unwrap();
        let mut plan = Plan::default();
        s.plan(&mut plan);
        assert!(plan.is_empty(), "{plan}");
        let (service, supervise) = s.report();
        assert_eq!(service, None);
        let argv = supervise.unwrap();
        assert_eq!(argv, a.supervise());
        assert!(argv.ends_with(&[
            "run".to_string(),
            "--pgdata".into(),
            "/var/lib/postgresql/15/main".into()
        ]));
    }

    #[test]
    fn a_unit_file_of_something_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let unit = ServiceUnit {
            name: "pgautofailover-node1.service".into(),
            path: dir.path().join("pgautofailover-node1.service"),
        };
        let text = autoctl().systemd_unit("keeper");
        unit.check_free(&text).unwrap();
        std::fs::write(&unit.path, &text).unwrap();
        unit.check_free(&text).unwrap();
        std::fs::write(&unit.path, "[Service]\nExecStart=/bin/true\n").unwrap();
        assert_eq!(
            unit.check_free(&text).unwrap_err().kind(),
            crate::ErrorKind::Refused { overridable: false }
        );
        let mut plan = Plan::default();
        unit.plan_removal(&mut plan);
        assert_eq!(plan.files[0].new, b"");
        assert_eq!(plan.commands, vec![daemon_reload()]);
    }
}
