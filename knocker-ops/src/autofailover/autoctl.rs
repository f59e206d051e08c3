//! Running `pg_autoctl` for one node: as the PostgreSQL OS user, with a
//! clean environment (a `PGPASSWORD` inherited from the operator's shell
//! overrides the passfile for every connection the keeper makes and made
//! it fail: docs/pg_auto_failover.md section 2), and with its state kept
//! next to the data directory rather than in the user's home:
//! `<parent>/.<data dir name>.pg_autoctl/{config,data,run}` and the
//! passfile `<parent>/.<data dir name>.pg_autoctl/pgpass`. One directory
//! per data directory means two clusters of one host never share
//! `/tmp/pg_autoctl` (which the first user to run pg_autoctl owns).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;

use super::PG_AUTOCTL;

/// One node's pg_autoctl: who runs it, where its files are.
#[derive(Debug, Clone)]
pub struct Autoctl {
    /// The PostgreSQL OS user (owner of the data directory).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its home directory.
    pub home: PathBuf,
    /// The data directory.
    pub pgdata: PathBuf,
    /// `pg_ctl` of the server's version.
    pub pg_ctl: PathBuf,
}

impl Autoctl {
    /// The node whose data directory is `pgdata`, run by the directory's
    /// owner, with the `pg_ctl` in `bin_dir`.
    pub fn for_data_dir(pgdata: &Path, bin_dir: &Path) -> Result<Autoctl, Error> {
        let meta = std::fs::metadata(pgdata).map_err(|e| {
            Error::failed(format!("cannot read {}", pgdata.display())).with_source(e)
        })?;
        let user = nix_user(meta.uid()).ok_or_else(|| {
            Error::failed(format!(
                "the owner (uid {}) of {} has no passwd entry",
                meta.uid(),
                pgdata.display()
            ))
        })?;
        Ok(Autoctl {
            user: user.0,
            uid: meta.uid(),
            gid: meta.gid(),
            home: user.1,
            pgdata: pgdata.to_owned(),
            pg_ctl: bin_dir.join("pg_ctl"),
        })
    }

    /// The node whose data directory `pgdata` (which may not exist yet)
    /// will belong to `uid`/`gid`: `--monitor-init` before it creates it.
    pub fn for_owner(pgdata: &Path, bin_dir: &Path, uid: u32, gid: u32) -> Result<Autoctl, Error> {
        let user = nix_user(uid).ok_or_else(|| {
            Error::failed(format!(
                "the owner (uid {uid}) of {} has no passwd entry",
                pgdata.display()
            ))
        })?;
        Ok(Autoctl {
            user: user.0,
            uid,
            gid,
            home: user.1,
            pgdata: pgdata.to_owned(),
            pg_ctl: bin_dir.join("pg_ctl"),
        })
    }

    /// The directory holding pg_autoctl's configuration, state and
    /// runtime files and the passfile for this data directory.
    pub fn state_dir(&self) -> PathBuf {
        let name = self
            .pgdata
            .file_name()
            .map_or_else(|| "pgdata".into(), |n| n.to_string_lossy().into_owned());
        self.pgdata
            .parent()
            .unwrap_or(Path::new("/"))
            .join(format!(".{name}.pg_autoctl"))
    }

    /// The passfile (mode 0600, owned by the PostgreSQL user).
    pub fn passfile(&self) -> PathBuf {
        self.state_dir().join("pgpass")
    }

    /// pg_autoctl's configuration file for this data directory.
    pub fn config_file(&self) -> PathBuf {
        let rel = self.pgdata.strip_prefix("/").unwrap_or(&self.pgdata);
        self.state_dir()
            .join("config/pg_autoctl")
            .join(rel)
            .join("pg_autoctl.cfg")
    }

    /// The node name in pg_autoctl.cfg (`name` of `[pg_autoctl]`), once
    /// enrolled.
    pub fn configured_name(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.config_file()).ok()?;
        let mut section = "";
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s;
            } else if section == "pg_autoctl" {
                if let Some((key, value)) = line.split_once('=') {
                    if key.trim() == "name" && !value.trim().is_empty() {
                        return Some(value.trim().to_string());
                    }
                }
            }
        }
        None
    }

    /// The running keeper's pid file (`pg_autoctl.pid` in its runtime
    /// directory).
    pub fn keeper_pid_file(&self) -> PathBuf {
        let rel = self.pgdata.strip_prefix("/").unwrap_or(&self.pgdata);
        self.state_dir()
            .join("run/pg_autoctl")
            .join(rel)
            .join("pg_autoctl.pid")
    }

    /// The argument list that runs `pg_autoctl ARGS` as the PostgreSQL user
    /// with only the environment it needs.
    pub fn command(&self, args: &[&str]) -> Vec<String> {
        let state = self.state_dir();
        let mut argv: Vec<String> = Vec::new();
        if self.uid != current_uid() {
            argv.extend(["runuser", "-u", &self.user, "--"].map(String::from));
        }
        argv.extend([
            "env".into(),
            "-i".into(),
            "PATH=/usr/bin:/bin".into(),
            format!("HOME={}", self.home.display()),
            format!("XDG_CONFIG_HOME={}", state.join("config").display()),
            format!("XDG_DATA_HOME={}", state.join("data").display()),
            format!("XDG_RUNTIME_DIR={}", state.join("run").display()),
            format!("PGPASSFILE={}", self.passfile().display()),
            PG_AUTOCTL.into(),
        ]);
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// The argument list that runs `argv` as the PostgreSQL user.
    pub fn as_user(&self, argv: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.uid != current_uid() {
            out.extend(["runuser", "-u", &self.user, "--"].map(String::from));
        }
        out.extend(argv.iter().map(|a| a.to_string()));
        out
    }

    /// The keeper in the foreground: what a supervisor runs.
    pub fn supervise(&self) -> Vec<String> {
        let pgdata = self.pgdata.display().to_string();
        self.command(&["run", "--pgdata", &pgdata])
    }

    /// The systemd unit that runs the keeper (or the monitor) as the
    /// PostgreSQL user: the unit `pg_autoctl show systemd` prints
    /// (docs/pg_auto_failover.md section 2), with the environment of
    /// [`Autoctl::command`] (state beside the data directory, the
    /// passfile; systemd starts services with a clean environment, so no
    /// `PGPASSWORD` reaches it).
    pub fn systemd_unit(&self, description: &str) -> String {
        let state = self.state_dir();
        let pgdata = self.pgdata.display().to_string();
        let env = [
            "PATH=/usr/bin:/bin".to_string(),
            format!("PGDATA={pgdata}"),
            format!("XDG_CONFIG_HOME={}", state.join("config").display()),
            format!("XDG_DATA_HOME={}", state.join("data").display()),
            format!("XDG_RUNTIME_DIR={}", state.join("run").display()),
            format!("PGPASSFILE={}", self.passfile().display()),
        ]
        .iter()
        .map(|e| systemd_quote(e, false))
        .collect::<Vec<_>>()
        .join(" ");
        let run = |verb: &str| {
            [PG_AUTOCTL, verb, "--pgdata", &pgdata]
                .iter()
                .map(|a| systemd_quote(a, true))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "# Written by knocker autofailover (the unit pg_autoctl show systemd describes)\n\
             [Unit]\n\
             Description={description}\n\
             After=network-online.target\n\
             Wants=network-online.target\n\
             StartLimitBurst=0\n\
             \n\
             [Service]\n\
             Type=simple\n\
             User={user}\n\
             WorkingDirectory={home}\n\
             Environment={env}\n\
             ExecStart={start}\n\
             ExecReload={reload}\n\
             Restart=always\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            description = description.replace('%', "%%").replace('\n', " "),
            user = self.user,
            home = self.home.display().to_string().replace('%', "%%"),
            start = run("run"),
            reload = run("reload"),
        )
    }

    /// Creates the state directories (0700, owned by the PostgreSQL user).
    pub fn create_state_dirs(&self) -> Result<(), Error> {
        let state = self.state_dir();
        for dir in [
            state.clone(),
            state.join("config"),
            state.join("data"),
            state.join("run"),
        ] {
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(
                        Error::failed(format!("cannot create {}", dir.display())).with_source(e)
                    )
                }
            }
            std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid)).map_err(|e| {
                Error::failed(format!("cannot give {} to {}", dir.display(), self.user))
                    .with_source(e)
            })?;
        }
        Ok(())
    }
}

/// One word of a systemd unit line, double-quoted: `\\` and `"` escaped,
/// `%` (specifiers) doubled, and in `Exec*=` lines (`exec`) `$` (variable
/// expansion) too.
pub fn systemd_quote(word: &str, exec: bool) -> String {
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if exec => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether the node whose data directory is `pgdata` is enrolled in
/// pg_auto_failover the way knocker enrols it (its pg_autoctl
/// configuration beside the data directory).
pub fn is_enrolled(pgdata: &Path) -> bool {
    Autoctl {
        user: String::new(),
        uid: 0,
        gid: 0,
        home: PathBuf::new(),
        pgdata: pgdata.to_owned(),
        pg_ctl: PathBuf::new(),
    }
    .config_file()
    .exists()
}

/// The passfile line for `host:port:database:user:password`, each field
/// escaped as libpq reads them (`\` before `:` and `\`).
pub fn passfile_line(fields: [&str; 5]) -> String {
    let escaped: Vec<String> = fields
        .iter()
        .map(|f| f.replace('\\', "\\\\").replace(':', "\\:"))
        .collect();
    format!("{}\n", escaped.join(":"))
}

/// Runs `argv` (its own process group, killed whole at `timeout`) and
/// returns its exit status with standard output and error.
pub async fn run(argv: &[String], timeout: Duration) -> Result<std::process::Output, Error> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::failed("empty command"))?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run {program}")).with_source(e))?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| Error::failed(format!("running {program}")).with_source(e)),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the process group this function created.
                unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            }
            Err(Error::failed(format!(
                "`{}` did not finish within {} s and was killed",
                crate::plan::shell_words(argv),
                timeout.as_secs()
            )))
        }
    }
}

/// Runs `argv` like [`run`]; a non-zero exit is [`command_failed`] for
/// `what`.
pub async fn run_ok(
    what: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<std::process::Output, Error> {
    let out = run(argv, timeout).await?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(command_failed(what, &out))
    }
}

/// A command that exited non-zero: what failed, its exit status and the
/// end of its output.
pub fn command_failed(what: &str, out: &std::process::Output) -> Error {
    Error::failed(format!(
        "{what} failed ({}):\n{}",
        out.status,
        output_tail(out)
    ))
}

/// The last lines of a command's output, for an error message.
pub fn output_tail(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// The effective uid of this process.
pub(super) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Name and home of `uid` from the passwd database.
fn nix_user(uid: u32) -> Option<(String, PathBuf)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| (f[0].to_string(), PathBuf::from(f[5])))
    })
}
