//! A throwaway cluster managed by Debian's postgresql-common tools.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, Config, NoTls};

use crate::cluster::free_port;
use crate::os_user::{running_as_root, unix_stream_as, OsUser};

/// Prefix of the names of harness-made Debian clusters:
/// `knocker_<pid>_<n>`. Clusters whose process died are dropped by the next
/// [`DebianCluster::create`].
const NAME_PREFIX: &str = "knocker_";

/// Debian's socket directory.
const DEBIAN_SOCKET_DIR: &str = "/var/run/postgresql";

/// A cluster created with `pg_createcluster MAJOR NAME --port PORT` and
/// started with `pg_ctlcluster`: configuration in `/etc/postgresql/MAJOR/NAME`,
/// data in `/var/lib/postgresql/MAJOR/NAME`, peer authentication for
/// `postgres` over `/var/run/postgresql`, ssl on with the snakeoil
/// certificate, TCP on localhost. Dropped with `pg_dropcluster --stop`.
///
/// Needs root and Debian's `postgresql-MAJOR` package (`cargo xtask pg`
/// installs `postgresql-15`).
#[derive(Debug)]
pub struct DebianCluster {
    major: u32,
    name: String,
    port: u16,
}

impl DebianCluster {
    /// Creates and starts a cluster with a unique name on a free port.
    /// Panics if it cannot (naming `cargo xtask pg` when the package is
    /// missing).
    pub async fn create(major: u32) -> DebianCluster {
        let task = tokio::task::spawn_blocking(move || DebianCluster::create_blocking(major));
        match task.await {
            Ok(cluster) => cluster,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("pg-harness: Debian cluster creation was cancelled: {e}"),
        }
    }

    /// The blocking part of [`DebianCluster::create`].
    pub fn create_blocking(major: u32) -> DebianCluster {
        let initdb = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/initdb"));
        assert!(
            initdb.is_file() && Path::new("/usr/bin/pg_createcluster").is_file(),
            "pg-harness: Debian's postgresql-{major} is not installed ({} missing); \
             run `cargo xtask pg` to provision it",
            initdb.display()
        );
        assert!(
            running_as_root(),
            "pg-harness: DebianCluster needs root (pg_createcluster)"
        );
        OsUser::lookup("postgres")
            .expect("pg-harness: Debian's postgresql package should have created user `postgres`");

        // Serialise creation: pg_createcluster's own port check and ours
        // would otherwise race between parallel test processes.
        let cache = crate::cache_dir();
        crate::template::create_dir_0755(&cache);
        let lock_path = cache.join("debian-clusters.lock");
        let _lock = crate::template::lock_exclusive(&lock_path);
        drop_stale_clusters(major);

        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{NAME_PREFIX}{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut last_failure = String::new();
        for _ in 0..10 {
            let port = free_port();
            run(Command::new("pg_createcluster")
                .arg(major.to_string())
                .arg(&name)
                .args(["--port", &port.to_string(), "--start-conf", "manual"])
                .args(["--", "--no-sync"]));
            let cluster = DebianCluster {
                major,
                name: name.clone(),
                port,
            };
            let start = Command::new("pg_ctlcluster")
                .arg(major.to_string())
                .arg(&name)
                .arg("start")
                .output()
                .expect("pg-harness: cannot run pg_ctlcluster");
            if start.status.success() {
                return cluster;
            }
            last_failure = format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&start.stdout),
                String::from_utf8_lossy(&start.stderr),
                cluster.log()
            );
            let port_taken = last_failure.contains("Address already in use");
            drop(cluster); // pg_dropcluster
            if !port_taken {
                break;
            }
        }
        panic!("pg-harness: pg_ctlcluster {major} {name} start failed:\n{last_failure}");
    }

    /// The PostgreSQL major version.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The cluster name (`knocker_<pid>_<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port (TCP on localhost, and the unix socket's number).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `/etc/postgresql/MAJOR/NAME`.
    pub fn conf_dir(&self) -> PathBuf {
        PathBuf::from(format!("/etc/postgresql/{}/{}", self.major, self.name))
    }

    /// `/etc/postgresql/MAJOR/NAME/pg_hba.conf`.
    pub fn hba_file(&self) -> PathBuf {
        self.conf_dir().join("pg_hba.conf")
    }

    /// `/etc/postgresql/MAJOR/NAME/postgresql.conf`.
    pub fn conf_file(&self) -> PathBuf {
        self.conf_dir().join("postgresql.conf")
    }

    /// `/var/lib/postgresql/MAJOR/NAME`.
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(format!("/var/lib/postgresql/{}/{}", self.major, self.name))
    }

    /// `/var/run/postgresql`.
    pub fn socket_dir(&self) -> &'static Path {
        Path::new(DEBIAN_SOCKET_DIR)
    }

    /// The unix socket's path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir().join(format!(".s.PGSQL.{}", self.port))
    }

    /// `/var/log/postgresql/postgresql-MAJOR-NAME.log`.
    pub fn log_file(&self) -> PathBuf {
        PathBuf::from(format!(
            "/var/log/postgresql/postgresql-{}-{}.log",
            self.major, self.name
        ))
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read(self.log_file())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Connection settings for `postgres` over the unix socket (use with
    /// [`unix_stream_as`] and `connect_raw`: peer authentication needs the
    /// client to be the OS user `postgres`).
    pub fn unix_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host_path(DEBIAN_SOCKET_DIR)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Connects as `postgres` by peer authentication: the unix socket is
    /// connected with the effective uid of the OS user `postgres`
    /// ([`unix_stream_as`]) and handed to `connect_raw`.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let postgres = OsUser::lookup("postgres").expect("OS user postgres exists");
        let stream = unix_stream_as(&postgres, &self.socket_path()).unwrap_or_else(|e| {
            panic!(
                "pg-harness: cannot connect {} as postgres: {e}",
                self.socket_path().display()
            )
        });
        let (client, connection) = self.unix_config().connect_raw(stream, NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Connection settings for `postgres` over TCP to `127.0.0.1` (Debian's
    /// pg_hba.conf wants a password there: set one first).
    pub fn tcp_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Connects as `user` to `db` over TCP from the loopback address
    /// `source` (see [`crate::Cluster::connect_from`]); the server only
    /// listens there if `listen_addresses` allows it (Debian's default is
    /// `localhost`, which accepts any 127.x source address on 127.0.0.1).
    pub async fn connect_from<'a>(
        &self,
        source: std::net::IpAddr,
        user: &str,
        password: impl Into<Option<&'a str>>,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        crate::cluster::connect_from(
            self.tcp_config(),
            self.port,
            source,
            user,
            password.into(),
            db,
        )
        .await
    }

    /// `pg_ctlcluster MAJOR NAME reload`.
    pub async fn reload(&self) {
        self.ctl("reload");
    }

    /// `pg_ctlcluster MAJOR NAME restart`.
    pub async fn restart(&self) {
        self.ctl("restart");
    }

    /// `pg_ctlcluster MAJOR NAME stop`.
    pub async fn stop(&self) {
        self.ctl("stop");
    }

    /// `pg_ctlcluster MAJOR NAME start`.
    pub async fn start(&self) {
        self.ctl("start");
    }

    fn ctl(&self, action: &str) {
        run(Command::new("pg_ctlcluster")
            .arg(self.major.to_string())
            .arg(&self.name)
            .arg(action));
    }
}

impl Drop for DebianCluster {
    fn drop(&mut self) {
        drop_cluster(self.major, &self.name);
    }
}

/// `pg_dropcluster --stop`, then what it leaves: it keeps a directory that
/// holds files it did not create (pg_hba.conf backups and lock files beside
/// the configuration, a data directory moved aside as `NAME.*`, a passfile
/// `.NAME.*`), so a harness cluster would otherwise leave them behind.
fn drop_cluster(major: u32, name: &str) {
    let _ = Command::new("pg_dropcluster")
        .arg("--stop")
        .arg(major.to_string())
        .arg(name)
        .output();
    let _ = fs::remove_dir_all(format!("/etc/postgresql/{major}/{name}"));
    let _ = fs::remove_file(format!("/var/log/postgresql/postgresql-{major}-{name}.log"));
    let Ok(entries) = fs::read_dir(format!("/var/lib/postgresql/{major}")) else {
        return;
    };
    let (moved, hidden) = (format!("{name}."), format!(".{name}."));
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file == name || file.starts_with(&moved) || file.starts_with(&hidden) {
            let path = entry.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// Runs `cmd`, panicking with its output if it fails.
fn run(cmd: &mut Command) {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("pg-harness: cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "pg-harness: {cmd:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Drops harness clusters left behind by test processes that died.
fn drop_stale_clusters(major: u32) {
    let Ok(entries) = fs::read_dir(format!("/etc/postgresql/{major}")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            drop_cluster(major, &name);
        }
    }
}
