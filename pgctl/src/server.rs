//! Facts about a running server: its version and settings, whether it is
//! a standby, and who manages it (so it can be restarted the way the
//! operator would, see [`crate::restart`]). Whether some other tool owns
//! its pg_hba.conf is [`crate::hba_install::owner`]'s question.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client) -> Result<(), pgctl::error::Error> {
//! let facts = pgctl::server::read_facts(client).await?;
//! let manager = pgctl::server::detect_manager(&facts);
//! let standby = pgctl::server::is_in_recovery(client).await?;
//! println!("PostgreSQL {} managed by {manager}, standby: {standby}", facts.major());
//! # Ok(()) }
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// Settings and session facts read from a running server.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. 150004.
    pub version_num: u32,
    /// `config_file` (`None` when the session may not read it).
    pub config_file: Option<PathBuf>,
    /// `hba_file` (`None` when the session may not read it).
    pub hba_file: Option<PathBuf>,
    /// `data_directory` (`None` when the session may not read it).
    pub data_directory: Option<PathBuf>,
    /// `listen_addresses`, as the server reports it.
    pub listen_addresses: String,
    /// `port`.
    pub port: u16,
    /// `ssl`.
    pub ssl: bool,
    /// `password_encryption` (`scram-sha-256` or `md5`).
    pub password_encryption: String,
    /// `max_connections`.
    pub max_connections: u32,
    /// `cluster_name` (empty when unset).
    pub cluster_name: String,
    /// The session user.
    pub user: String,
    /// Whether the session user is a superuser.
    pub is_superuser: bool,
    /// `oauth_validator_libraries` (18+; empty before), split on commas:
    /// whether `oauth` lines of pg_hba.conf load depends on it.
    pub oauth_validator_libraries: Vec<String>,
}

impl ServerFacts {
    /// The major version, e.g. 15.
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

/// Reads the facts of the server `client` is connected to.
///
/// Works for any role; settings a non-superuser may not read (the file
/// paths) come back as `None`.
pub async fn read_facts(client: &impl GenericClient) -> Result<ServerFacts> {
    let action = "reading server settings";
    let names: Vec<&str> = vec![
        "server_version_num",
        "config_file",
        "hba_file",
        "data_directory",
        "listen_addresses",
        "port",
        "ssl",
        "password_encryption",
        "max_connections",
        "cluster_name",
        "oauth_validator_libraries",
    ];
    let rows = client
        .query(
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY($1)",
            &[&names],
        )
        .await
        .map_err(Error::sql(action))?;
    let get = |name: &str| -> Option<String> {
        rows.iter()
            .find(|row| row.get::<_, &str>(0) == name)
            .map(|row| row.get::<_, String>(1))
    };
    let session = client
        .query_one(
            "SELECT session_user::text, current_setting('is_superuser') = 'on'",
            &[],
        )
        .await
        .map_err(Error::sql(action))?;
    let number = |name: &str| get(name).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    Ok(ServerFacts {
        version_num: number("server_version_num"),
        config_file: get("config_file").map(PathBuf::from),
        hba_file: get("hba_file").map(PathBuf::from),
        data_directory: get("data_directory").map(PathBuf::from),
        listen_addresses: get("listen_addresses").unwrap_or_default(),
        port: u16::try_from(number("port")).unwrap_or(0),
        ssl: get("ssl").as_deref() == Some("on"),
        password_encryption: get("password_encryption").unwrap_or_default(),
        max_connections: number("max_connections"),
        cluster_name: get("cluster_name").unwrap_or_default(),
        user: session.get(0),
        is_superuser: session.get(1),
        oauth_validator_libraries: crate::hba_install::ValidationSettings::split_libraries(
            &get("oauth_validator_libraries").unwrap_or_default(),
        ),
    })
}

/// Whether the server is a standby (in recovery): `pg_is_in_recovery()`.
pub async fn is_in_recovery(client: &impl GenericClient) -> Result<bool> {
    Ok(client
        .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
        .await
        .map_err(Error::sql("asking whether the server is in recovery"))?
        .get(0))
}

/// Fails with [`Error::NotSuperuser`] unless the session is a superuser.
pub async fn require_superuser(client: &impl GenericClient, action: &str) -> Result<()> {
    let row = client
        .query_one(
            "SELECT session_user::text, current_setting('is_superuser') = 'on'",
            &[],
        )
        .await
        .map_err(Error::sql("checking superuser rights"))?;
    if row.get::<_, bool>(1) {
        Ok(())
    } else {
        Err(Error::NotSuperuser {
            action: action.to_owned(),
            user: row.get(0),
        })
    }
}

/// How the server is started and stopped on this host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerManager {
    /// A systemd service, e.g. `postgresql@15-main` (without `.service`).
    Systemd {
        /// The unit name.
        unit: String,
    },
    /// Debian's postgresql-common wrapper (`pg_ctlcluster VERSION NAME`).
    PgCtlCluster {
        /// The cluster's version directory, e.g. `15`.
        version: String,
        /// The cluster name, e.g. `main`.
        cluster: String,
    },
    /// Plain `pg_ctl -D DATADIR`, run as the data directory's owner.
    PgCtl {
        /// The `pg_ctl` next to the running server's binary.
        pg_ctl: PathBuf,
        /// The data directory.
        data_directory: PathBuf,
        /// Owner of the data directory (the server's OS user).
        uid: u32,
        /// That user's primary group.
        gid: u32,
        /// The file the server's standard error goes to, passed as `-l` so
        /// the log keeps going to the same place after a restart.
        log_file: Option<PathBuf>,
    },
    /// Nothing recognisable; the caller must restart the server itself.
    Unknown {
        /// Why detection failed, for the operator.
        reason: String,
    },
}

impl ServerManager {
    /// The restart command line as an operator would type it (`None` for
    /// [`ServerManager::Unknown`]).
    pub fn restart_command_line(&self) -> Option<String> {
        match self {
            ServerManager::Systemd { unit } => Some(format!("systemctl restart {unit}")),
            ServerManager::PgCtlCluster { version, cluster } => {
                Some(format!("pg_ctlcluster {version} {cluster} restart"))
            }
            ServerManager::PgCtl {
                pg_ctl,
                data_directory,
                uid,
                log_file,
                ..
            } => {
                let user = user_name(*uid).unwrap_or_else(|| format!("#{uid}"));
                let log = log_file
                    .as_ref()
                    .map(|l| format!(" -l {}", shell_word(&l.to_string_lossy())))
                    .unwrap_or_default();
                Some(format!(
                    "runuser -u {} -- {} -D {}{log} -m fast restart",
                    shell_word(&user),
                    shell_word(&pg_ctl.to_string_lossy()),
                    shell_word(&data_directory.to_string_lossy()),
                ))
            }
            ServerManager::Unknown { .. } => None,
        }
    }
}

impl fmt::Display for ServerManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerManager::Systemd { unit } => write!(f, "systemd unit {unit}"),
            ServerManager::PgCtlCluster { version, cluster } => {
                write!(f, "pg_ctlcluster (cluster {version}/{cluster})")
            }
            ServerManager::PgCtl { data_directory, .. } => {
                write!(f, "pg_ctl -D {}", data_directory.display())
            }
            ServerManager::Unknown { reason } => write!(f, "unknown manager ({reason})"),
        }
    }
}

/// What [`detect_manager_with`] looks at, so tests can describe a host.
#[derive(Clone, Debug)]
pub struct HostProbe {
    /// Whether systemd runs as init (`/run/systemd/system` exists).
    pub systemd_running: bool,
    /// Where procfs is mounted (normally `/proc`).
    pub proc_root: PathBuf,
}

impl HostProbe {
    /// This host.
    pub fn local() -> HostProbe {
        HostProbe {
            systemd_running: Path::new("/run/systemd/system").is_dir(),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Works out who manages the server on this host (see [`detect_manager_with`]).
pub fn detect_manager(facts: &ServerFacts) -> ServerManager {
    detect_manager_with(facts, &HostProbe::local())
}

/// Works out who manages the server: under systemd, the service whose
/// cgroup holds the postmaster (or `postgresql@VER-NAME` for a Debian
/// cluster); without systemd, `pg_ctlcluster` for a Debian cluster (config
/// file in `/etc/postgresql/VER/NAME/`); else `pg_ctl` as the data
/// directory's owner; else unknown.
pub fn detect_manager_with(facts: &ServerFacts, probe: &HostProbe) -> ServerManager {
    let postmaster = facts.data_directory.as_deref().and_then(postmaster_pid);
    let debian = facts.config_file.as_deref().and_then(debian_cluster);

    if probe.systemd_running {
        if let Some(unit) = postmaster.and_then(|pid| systemd_unit(&probe.proc_root, pid)) {
            return ServerManager::Systemd { unit };
        }
        if let Some((version, cluster)) = &debian {
            return ServerManager::Systemd {
                unit: format!("postgresql@{version}-{cluster}"),
            };
        }
    }
    if let Some((version, cluster)) = debian {
        return ServerManager::PgCtlCluster { version, cluster };
    }
    let Some(data_directory) = facts.data_directory.clone() else {
        return ServerManager::Unknown {
            reason: "the data directory is not visible to this session".into(),
        };
    };
    let Some(pid) = postmaster else {
        return ServerManager::Unknown {
            reason: format!(
                "no readable postmaster.pid in {} (is the server on another host?)",
                data_directory.display()
            ),
        };
    };
    let proc_dir = probe.proc_root.join(pid.to_string());
    let pg_ctl = fs::read_link(proc_dir.join("exe"))
        .ok()
        .and_then(|exe| exe.parent().map(|bin| bin.join("pg_ctl")))
        .filter(|p| p.is_file());
    let Some(pg_ctl) = pg_ctl else {
        return ServerManager::Unknown {
            reason: format!("no pg_ctl next to the binary of postmaster process {pid}"),
        };
    };
    let Ok(meta) = fs::metadata(&data_directory) else {
        return ServerManager::Unknown {
            reason: format!("cannot stat {}", data_directory.display()),
        };
    };
    use std::os::unix::fs::MetadataExt;
    let log_file = fs::read_link(proc_dir.join("fd/2"))
        .ok()
        .filter(|p| p.is_absolute() && p.is_file() && !p.to_string_lossy().ends_with(" (deleted)"));
    ServerManager::PgCtl {
        pg_ctl,
        data_directory,
        uid: meta.uid(),
        gid: meta.gid(),
        log_file,
    }
}

/// The postmaster's PID from the first line of `postmaster.pid`.
fn postmaster_pid(data_directory: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_directory.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The system service whose cgroup holds `pid` (`/system.slice/NAME.service`).
fn systemd_unit(proc_root: &Path, pid: u32) -> Option<String> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let rest = path.strip_prefix("/system.slice/")?;
        let first = rest.split('/').next()?;
        first.strip_suffix(".service").map(str::to_owned)
    })
}

/// `(version, name)` when the config file is `/etc/postgresql/VER/NAME/...`.
fn debian_cluster(config_file: &Path) -> Option<(String, String)> {
    let rest = config_file.strip_prefix("/etc/postgresql").ok()?;
    let mut parts = rest.components();
    let version = parts.next()?.as_os_str().to_str()?.to_owned();
    let cluster = parts.next()?.as_os_str().to_str()?.to_owned();
    parts.next()?;
    Some((version, cluster))
}

/// The login name of `uid`, from /etc/passwd.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

/// Supplementary groups of `user` from /etc/group (plus `primary`).
pub(crate) fn user_groups(user: &str, primary: u32) -> Vec<u32> {
    let mut groups = vec![primary];
    if let Ok(text) = fs::read_to_string("/etc/group") {
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() == 4 && fields[3].split(',').any(|m| m == user) {
                if let Ok(gid) = fields[2].parse() {
                    if !groups.contains(&gid) {
                        groups.push(gid);
                    }
                }
            }
        }
    }
    groups
}

/// Quotes a word for a POSIX shell when it needs it.
pub(crate) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_layout_is_recognised() {
        assert_eq!(
            debian_cluster(Path::new("/etc/postgresql/15/main/postgresql.conf")),
            Some(("15".into(), "main".into()))
        );
        assert_eq!(
            debian_cluster(Path::new("/var/lib/pg/postgresql.conf")),
            None
        );
        assert_eq!(debian_cluster(Path::new("/etc/postgresql/15/main")), None);
    }

    #[test]
    fn systemd_unit_comes_from_the_system_slice_only() {
        let proc_root = tempfile::tempdir().unwrap();
        let pid_dir = proc_root.path().join("42");
        fs::create_dir(&pid_dir).unwrap();
        fs::write(
            pid_dir.join("cgroup"),
            "0::/system.slice/postgresql@16-main.service\n",
        )
        .unwrap();
        assert_eq!(
            systemd_unit(proc_root.path(), 42).as_deref(),
            Some("postgresql@16-main")
        );
        fs::write(
            pid_dir.join("cgroup"),
            "0::/user.slice/user-0.slice/user@0.service/app.slice/x.service\n",
        )
        .unwrap();
        assert_eq!(systemd_unit(proc_root.path(), 42), None);
    }

    #[test]
    fn manager_serializes_with_a_kind_tag_for_json_output() {
        let json = serde_json::to_value(ServerManager::PgCtlCluster {
            version: "15".into(),
            cluster: "main".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "pg_ctl_cluster", "version": "15", "cluster": "main"})
        );
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(
            shell_word("/usr/lib/postgresql/15/bin/pg_ctl"),
            "/usr/lib/postgresql/15/bin/pg_ctl"
        );
        assert_eq!(shell_word("a b'c"), r"'a b'\''c'");
    }
}
