//! A throwaway PostgreSQL server in a temp dir.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_postgres::{Client, Config, NoTls};

use crate::os_user::OsUser;
use crate::template::{check_reachable, ensure_template};

/// The pg_hba.conf a cluster gets unless [`ClusterOptions::hba`] says
/// otherwise: trust on the unix socket, trust for `postgres` over loopback,
/// SCRAM for everyone else over loopback (`127.0.0.1` and `::1` only, so
/// other loopback addresses such as `127.0.0.2` match no line).
pub const DEFAULT_HBA: &str = "\
# pg-harness default
local   all   all                     trust
host    all   postgres   127.0.0.1/32 trust
host    all   postgres   ::1/128      trust
host    all   all        127.0.0.1/32 scram-sha-256
host    all   all        ::1/128      scram-sha-256
";

/// How long a server may take to start or stop before the harness gives up.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// How [`Cluster::start_with`] sets a cluster up.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `ssl = on` with a certificate generated at start, signed by a throwaway
    /// CA ([`Cluster::ca_cert_pem`]), valid for `localhost`, `127.0.0.1`, `::1`.
    pub ssl: bool,
    /// Extra `postgresql.conf` settings, written after the harness's own (so
    /// they win), e.g. `("log_connections", "on")`. Values are quoted for you.
    pub settings: Vec<(String, String)>,
    /// Replaces pg_hba.conf before the first start (default: [`DEFAULT_HBA`]).
    pub hba: Option<String>,
    /// Extra `initdb` options (e.g. `--data-checksums`); each distinct set
    /// gets its own cached template.
    pub initdb_args: Vec<String>,
}

impl ClusterOptions {
    /// The default options with [`ssl`](ClusterOptions::ssl) on: what a
    /// test of TLS starts from.
    pub fn with_ssl() -> ClusterOptions {
        ClusterOptions {
            ssl: true,
            ..ClusterOptions::default()
        }
    }

    /// The default options with this pg_hba.conf
    /// ([`hba`](ClusterOptions::hba)).
    pub fn with_hba(hba: &str) -> ClusterOptions {
        ClusterOptions {
            hba: Some(hba.to_owned()),
            ..ClusterOptions::default()
        }
    }
}

/// A running throwaway PostgreSQL server.
///
/// Listens on `127.0.0.1` on a free port and on a unix socket in its own
/// directory; the superuser is `postgres`. Dropping it stops the server
/// (immediate shutdown), also one the code under test started in its data
/// directory (a `pg_ctl restart`), and removes its directory, also during a
/// panic.
#[derive(Debug)]
pub struct Cluster {
    major: u32,
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    ca_cert_pem: Option<String>,
    os_user: OsUser,
    child: Mutex<Option<Child>>,
}

impl Cluster {
    /// Starts a cluster of PostgreSQL `major` with default options.
    ///
    /// Panics (naming `cargo xtask pg` when binaries are missing) if it
    /// cannot.
    pub async fn start(major: u32) -> Cluster {
        Cluster::start_with(major, ClusterOptions::default()).await
    }

    /// Starts a cluster of PostgreSQL `major` with `options`.
    pub async fn start_with(major: u32, options: ClusterOptions) -> Cluster {
        let task = tokio::task::spawn_blocking(move || Cluster::start_blocking(major, &options));
        match task.await {
            Ok(cluster) => cluster,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("pg-harness: cluster start was cancelled: {e}"),
        }
    }

    /// The blocking part of [`Cluster::start_with`], for callers without a
    /// tokio runtime.
    pub fn start_blocking(major: u32, options: &ClusterOptions) -> Cluster {
        let os_user = OsUser::server_user().clone();
        let template = ensure_template(major, &options.initdb_args, &os_user);

        let base = clusters_base_dir();
        check_reachable(&base, &os_user);
        sweep_stale_clusters(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "{CLUSTER_DIR_PREFIX}{}-{major}-",
                std::process::id()
            ))
            .tempdir_in(&base)
            .unwrap_or_else(|e| {
                panic!(
                    "pg-harness: cannot make a temp dir in {}: {e}",
                    base.display()
                )
            })
            .keep();
        let mut cluster = Cluster {
            major,
            data_dir: dir.join("data"),
            socket_dir: dir.join("sock"),
            log_path: dir.join("server.log"),
            dir,
            port: 0,
            ca_cert_pem: None,
            os_user,
            child: Mutex::new(None),
        };
        // From here on, a panic drops `cluster`, which removes the dir.
        cluster.prepare(&template, options);
        cluster.launch_on_free_port();
        cluster
    }

    fn prepare(&mut self, template: &Path, options: &ClusterOptions) {
        let user = &self.os_user;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755))
            .expect("pg-harness: chmod cluster dir");
        user.chown(&self.dir)
            .expect("pg-harness: chown cluster dir");

        let copy = std::process::Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(template)
            .arg(&self.data_dir)
            .output()
            .expect("pg-harness: cannot run cp");
        assert!(
            copy.status.success(),
            "pg-harness: copying the template {} failed: {}",
            template.display(),
            String::from_utf8_lossy(&copy.stderr)
        );

        fs::create_dir(&self.socket_dir).expect("pg-harness: create socket dir");
        fs::set_permissions(&self.socket_dir, fs::Permissions::from_mode(0o755))
            .expect("pg-harness: chmod socket dir");
        user.chown(&self.socket_dir)
            .expect("pg-harness: chown socket dir");

        fs::File::create(&self.log_path).expect("pg-harness: create server log");
        user.chown(&self.log_path)
            .expect("pg-harness: chown server log");

        // Overwriting existing files keeps their owner (the server user).
        let hba = options.hba.as_deref().unwrap_or(DEFAULT_HBA);
        fs::write(self.hba_file(), hba).expect("pg-harness: write pg_hba.conf");

        let mut conf = String::from("\n# ---- pg-harness ----\n");
        let mut set = |name: &str, value: &str| {
            conf.push_str(&format!("{name} = {}\n", quote_setting(value)));
        };
        set("listen_addresses", "127.0.0.1");
        set(
            "unix_socket_directories",
            self.socket_dir.to_str().expect("socket dir is UTF-8"),
        );
        set("fsync", "off");
        set("synchronous_commit", "off");
        set("full_page_writes", "off");
        set("shared_buffers", "32MB");
        set("lc_messages", "C");
        // Shared memory segments as files in the data dir, not in /dev/shm:
        // a killed server leaves nothing behind outside its directory.
        set("dynamic_shared_memory_type", "mmap");
        if options.ssl {
            let certs = crate::tls::generate();
            self.write_private_file("server.crt", &certs.server_cert_pem, 0o644);
            self.write_private_file("server.key", &certs.server_key_pem, 0o600);
            self.write_private_file("root.crt", &certs.ca_cert_pem, 0o644);
            set("ssl", "on");
            set("ssl_cert_file", "server.crt");
            set("ssl_key_file", "server.key");
            self.ca_cert_pem = Some(certs.ca_cert_pem);
        }
        for (name, value) in &options.settings {
            set(name, value);
        }
        self.append_conf(&conf);
    }

    fn write_private_file(&self, name: &str, contents: &str, mode: u32) {
        let path = self.data_dir.join(name);
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("pg-harness: write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("pg-harness: chmod {}: {e}", path.display()));
        self.os_user
            .chown(&path)
            .unwrap_or_else(|e| panic!("pg-harness: chown {}: {e}", path.display()));
    }

    fn append_conf(&self, text: &str) {
        let path = self.data_dir.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("pg-harness: open {}: {e}", path.display()));
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("pg-harness: write {}: {e}", path.display()));
    }

    /// Picks a free port and starts; retries with another port when a
    /// parallel process took it first.
    fn launch_on_free_port(&mut self) {
        let mut last_failure = String::new();
        for _ in 0..20 {
            let port = free_port();
            self.append_conf(&format!("port = {port}\n"));
            self.port = port;
            match self.launch() {
                Ok(()) => return,
                Err(Launch::PortTaken(log)) => last_failure = log,
                Err(Launch::Failed(log)) => panic!(
                    "pg-harness: PostgreSQL {} did not start; server log:\n{log}",
                    self.major
                ),
            }
        }
        panic!(
            "pg-harness: PostgreSQL {} found no free port after 20 tries; last log:\n{last_failure}",
            self.major
        );
    }

    /// Starts the postmaster and waits until it reports `ready`.
    fn launch(&self) -> Result<(), Launch> {
        let log_offset = fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let _ = fs::remove_file(self.data_dir.join("postmaster.pid"));
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("pg-harness: open server log");
        let log_err = log.try_clone().expect("pg-harness: clone log handle");
        let mut child = self
            .os_user
            .command(self.bin_dir().join("postgres"))
            .arg("-D")
            .arg(&self.data_dir)
            .current_dir(&self.data_dir)
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("pg-harness: cannot run postgres {}: {e}", self.major));

        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.log_since(log_offset);
                let log = format!("(postgres exited: {status})\n{log}");
                return Err(
                    if log.contains("Address already in use")
                        || log.contains("could not create any TCP/IP sockets")
                    {
                        Launch::PortTaken(log)
                    } else {
                        Launch::Failed(log)
                    },
                );
            }
            if postmaster_ready(&self.data_dir) {
                *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Launch::Failed(format!(
                    "(not ready after {SERVER_TIMEOUT:?})\n{}",
                    self.log_since(log_offset)
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// Stops the postmaster with `signal` (SIGINT fast, SIGQUIT immediate),
    /// escalating if it takes too long. No-op when not running.
    fn shutdown(&self, signal: Signal) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = guard.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        let _ = kill(pid, signal);
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// The major version (15-18).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The TCP port (on `127.0.0.1`) and the unix socket's port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP listen address, `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The directory holding the unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The unix socket's path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `postgresql.conf` in the data directory.
    pub fn conf_file(&self) -> PathBuf {
        self.data_dir.join("postgresql.conf")
    }

    /// `pg_hba.conf` in the data directory.
    pub fn hba_file(&self) -> PathBuf {
        self.data_dir.join("pg_hba.conf")
    }

    /// The directory of this version's `initdb`, `pg_ctl` and `postgres`.
    pub fn bin_dir(&self) -> PathBuf {
        crate::bin_dir(self.major)
    }

    /// The OS user the server runs as.
    pub fn os_user(&self) -> &OsUser {
        &self.os_user
    }

    /// The server log so far (stdout and stderr of the postmaster).
    pub fn log(&self) -> String {
        self.log_since(0)
    }

    /// The server log's path.
    pub fn log_file(&self) -> &Path {
        &self.log_path
    }

    /// Waits until the server log contains `needle` at least `occurrences`
    /// times; returns whether it did within `timeout`.
    pub async fn wait_for_log(&self, needle: &str, occurrences: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= occurrences {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The PEM of the CA that signed the server certificate.
    ///
    /// Panics unless the cluster was started with [`ClusterOptions::ssl`].
    pub fn ca_cert_pem(&self) -> &str {
        self.ca_cert_pem
            .as_deref()
            .expect("pg-harness: ca_cert_pem() needs a cluster started with ssl: true")
    }

    /// The postmaster's process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Connection settings for the superuser `postgres`, database `postgres`,
    /// over TCP to `127.0.0.1`.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host(self.host())
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Connection settings for the superuser over the unix socket.
    pub fn unix_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Connects as the superuser over TCP (panics on failure). The connection
    /// runs in a spawned tokio task.
    pub async fn connect(&self) -> Client {
        spawn_connection(self.config().connect(NoTls).await).unwrap_or_else(|e| {
            panic!(
                "pg-harness: cannot connect to PostgreSQL {} on port {}: {e}\n{}",
                self.major,
                self.port,
                self.log()
            )
        })
    }

    /// Connects as the superuser over the unix socket (panics on failure).
    pub async fn connect_unix(&self) -> Client {
        spawn_connection(self.unix_config().connect(NoTls).await).unwrap_or_else(|e| {
            panic!(
                "pg-harness: cannot connect to PostgreSQL {} over {}: {e}",
                self.major,
                self.socket_dir.display()
            )
        })
    }

    /// Connects over TCP from `127.0.0.1` as `user` to `db`.
    pub async fn connect_as<'a>(
        &self,
        user: &str,
        password: impl Into<Option<&'a str>>,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let mut config = self.config();
        config.user(user).dbname(db);
        if let Some(password) = password.into() {
            config.password(password);
        }
        spawn_connection(config.connect(NoTls).await)
    }

    /// Connects as `user` to `db` from the loopback address `source` (e.g.
    /// `127.0.0.2`): the client socket is bound to `source` before connecting
    /// and handed to `connect_raw`, so the server sees `source` as the
    /// client address, as it would see a remote host.
    ///
    /// Panics if the socket cannot be bound or connected (that is not a
    /// PostgreSQL error); authentication errors are returned.
    pub async fn connect_from<'a>(
        &self,
        source: IpAddr,
        user: &str,
        password: impl Into<Option<&'a str>>,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        connect_from(self.config(), self.port, source, user, password.into(), db).await
    }

    /// A TCP connection to the server whose local address is `source` (for
    /// `connect_raw` with TLS or other settings). IPv6 sources connect to
    /// `::1` (which the server only listens on if `listen_addresses` says
    /// so).
    pub async fn tcp_stream_from(&self, source: IpAddr) -> io::Result<tokio::net::TcpStream> {
        tcp_stream_from(source, self.port).await
    }

    /// Creates a login role with `password` (none when `None`). Panics on
    /// failure.
    pub async fn create_role<'a>(&self, name: &str, password: impl Into<Option<&'a str>>) {
        let sql = match password.into() {
            Some(p) => format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_ident(name),
                quote_literal(p)
            ),
            None => format!("CREATE ROLE {} LOGIN", quote_ident(name)),
        };
        self.execute_as_superuser(&sql).await;
    }

    /// Creates database `name` owned by `owner`. Panics on failure.
    pub async fn create_database(&self, name: &str, owner: &str) {
        let sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        );
        self.execute_as_superuser(&sql).await;
    }

    async fn execute_as_superuser(&self, sql: &str) {
        let client = self.connect_unix().await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("pg-harness: `{sql}` failed: {e}"));
    }

    /// Makes the server re-read its configuration files (SIGHUP) and waits
    /// until the postmaster has logged that it is reloading. Connections
    /// opened after this returns see the new pg_hba.conf (the postmaster
    /// loads it right after that log line; a short grace period covers that).
    pub async fn reload(&self) {
        const NEEDLE: &str = "received SIGHUP, reloading configuration files";
        let before = self.log().matches(NEEDLE).count();
        let pid = self
            .pid()
            .expect("pg-harness: reload() on a stopped cluster");
        kill(
            Pid::from_raw(i32::try_from(pid).expect("pid fits in i32")),
            Signal::SIGHUP,
        )
        .expect("pg-harness: send SIGHUP");
        assert!(
            self.wait_for_log(NEEDLE, before + 1, SERVER_TIMEOUT).await,
            "pg-harness: PostgreSQL {} did not reload; log:\n{}",
            self.major,
            self.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Stops the server (fast shutdown) and starts it again on the same port
    /// (also starts a stopped cluster).
    pub async fn restart(&self) {
        self.shutdown(Signal::SIGINT);
        let mut last = String::new();
        for _ in 0..50 {
            match self.launch() {
                Ok(()) => return,
                Err(Launch::PortTaken(log)) => {
                    last = log;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Launch::Failed(log)) => panic!(
                    "pg-harness: PostgreSQL {} did not restart; log:\n{log}",
                    self.major
                ),
            }
        }
        panic!(
            "pg-harness: PostgreSQL {} could not get port {} back; log:\n{last}",
            self.major, self.port
        );
    }

    /// Stops the server (fast shutdown) and waits for it to exit. The data
    /// directory stays until the cluster is dropped; [`Cluster::restart`]
    /// starts it again.
    pub async fn stop(&self) {
        self.shutdown(Signal::SIGINT);
    }

    /// `psql` (the program at `psql`) running `sql` as `postgres` over the
    /// unix socket, unaligned and tuples only (`-X -q -A -t`): what the
    /// benchmarks time against.
    pub fn psql_command(&self, psql: &Path, sql: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(psql);
        cmd.args(["-X", "-q", "-A", "-t", "-h"])
            .arg(self.socket_dir())
            .args(["-p", &self.port().to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", sql]);
        cmd
    }

    /// Whether the postmaster is running.
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *guard = None;
                false
            }
            None => false,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown(Signal::SIGQUIT);
        // A postmaster that is not our child (restarted by pg_ctl under the
        // code being tested) still holds the lock file.
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self
                .os_user
                .command(self.bin_dir().join("pg_ctl"))
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "stop"])
                .output();
        }
        if std::env::var_os("PG_HARNESS_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Cluster directories are `<base>/knocker-pg-<pid>-<major>-XXXXXX`; the pid
/// lets [`sweep_stale_clusters`] recognise leftovers of dead test processes.
const CLUSTER_DIR_PREFIX: &str = "knocker-pg-";

/// Where cluster directories go: `$KNOCKER_PG_TMPDIR`, else `/dev/shm` when
/// it is a usable directory (memory: copying the template and running the
/// server there is an order of magnitude faster than on a busy disk), else
/// the system temp dir.
fn clusters_base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KNOCKER_PG_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let usable =
        fs::metadata(shm).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o1777 == 0o1777);
    if usable {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Once per process: stops and removes cluster dirs left in `base` by test
/// processes that died without dropping their clusters (e.g. killed by a
/// nextest timeout).
fn sweep_stale_clusters(base: &Path) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let Ok(entries) = fs::read_dir(base) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = name
                .strip_prefix(CLUSTER_DIR_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            let dir = entry.path();
            let postmaster = fs::read_to_string(dir.join("data/postmaster.pid"))
                .ok()
                .and_then(|text| {
                    text.lines()
                        .next()
                        .and_then(|l| l.trim().parse::<i32>().ok())
                });
            if let Some(pid) = postmaster {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "postgres" {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
                    for _ in 0..200 {
                        if !Path::new(&format!("/proc/{pid}")).exists() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
    });
}

enum Launch {
    PortTaken(String),
    Failed(String),
}

/// Whether `postmaster.pid` says the server accepts connections.
fn postmaster_ready(data_dir: &Path) -> bool {
    fs::read_to_string(data_dir.join("postmaster.pid")).is_ok_and(|pid| {
        // "standby": a hot standby accepting read-only connections
        pid.lines()
            .nth(7)
            .is_some_and(|l| matches!(l.trim(), "ready" | "standby"))
    })
}

/// Connects with `config` (host and port of the server at `port`) as
/// `user` to `db` from the loopback address `source`; panics when no TCP
/// connection can be made, returns the server's refusal.
pub(crate) async fn connect_from(
    mut config: Config,
    port: u16,
    source: IpAddr,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    let stream = tcp_stream_from(source, port)
        .await
        .unwrap_or_else(|e| panic!("pg-harness: cannot connect from {source} to port {port}: {e}"));
    config.user(user).dbname(db);
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config.connect_raw(stream, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A TCP connection to `port` on the loopback address of `source`'s family,
/// with `source` as the local address.
pub(crate) async fn tcp_stream_from(
    source: IpAddr,
    port: u16,
) -> io::Result<tokio::net::TcpStream> {
    let (socket, target) = match source {
        IpAddr::V4(_) => (
            tokio::net::TcpSocket::new_v4()?,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        ),
        IpAddr::V6(_) => (
            tokio::net::TcpSocket::new_v6()?,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ),
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// A TCP port nothing holds now, chosen at random BELOW the kernel's
/// ephemeral range. A port from that range (what binding port 0 gives) can
/// be taken as the source port of any client connection while the server is
/// down for a restart, and then the server cannot get it back (seen as
/// "could not get port back" when several suites ran at once).
pub fn free_port() -> u16 {
    const FLOOR: u16 = 16384;
    let low = ephemeral_range_start().unwrap_or(32768);
    if low > FLOOR + 1024 {
        for _ in 0..200 {
            let port = FLOOR + (random_u64() % u64::from(low - FLOOR)) as u16;
            // 0.0.0.0 conflicts with any listener or bound client on the
            // port, whatever its address.
            if TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("pg-harness: cannot bind a probe socket on 127.0.0.1")
}

/// The first port of `net.ipv4.ip_local_port_range`.
fn ephemeral_range_start() -> Option<u16> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A random number from the standard library's per-process random hash keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn spawn_connection<S, T>(
    result: Result<(Client, tokio_postgres::Connection<S, T>), tokio_postgres::Error>,
) -> Result<Client, tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = result?;
    tokio::spawn(connection);
    Ok(client)
}

/// `'value'` with backslashes and quotes escaped, as postgresql.conf wants.
fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A double-quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string literal (standard_conforming_strings on).
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod port_tests {
    use super::*;

    /// Guards the restart race: ports come from below the ephemeral range,
    /// where no client connection gets its source port, and are free.
    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_bindable() {
        let low = ephemeral_range_start().expect("Linux has ip_local_port_range");
        let ports: std::collections::BTreeSet<u16> = (0..20).map(|_| free_port()).collect();
        assert!(ports.len() > 10, "not random: {ports:?}");
        for port in ports {
            assert!((16384..low).contains(&port), "{port}");
            assert!(TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok());
        }
    }
}
