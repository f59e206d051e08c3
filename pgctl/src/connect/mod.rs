//! Connecting to PostgreSQL as libpq would: TLS per `sslmode`, several hosts
//! tried in order, `target_session_attrs`, connect timeout, and peer
//! authentication over the unix socket as another OS user.
//!
//! tokio-postgres knows only `sslmode` disable/prefer/require and no
//! standby-aware `target_session_attrs`, so this module drives every attempt
//! itself: it opens the socket, hands it to tokio-postgres's `connect_raw`
//! with the TLS mode of that attempt and a rustls configuration whose
//! certificate verifier implements libpq's checks, then checks the server
//! kind.
//!
//! ```no_run
//! # async fn demo(params: pgctl::connect::ConnectParams) -> Result<(), pgctl::connect::ConnectError> {
//! let connected = pgctl::connect::connect(&params).await?;
//! let row = connected.client().query_one("SELECT 1", &[]).await;
//! # let _ = row; Ok(()) }
//! ```
//!
//! Behaviour, following libpq 17 (`fe-connect.c`, `fe-secure-openssl.c`):
//! - `disable`: plain text. `allow`: plain text, and a second attempt over
//!   TLS only when the server rejected the plain one with an error.
//!   `prefer`: TLS, on the same socket plain text when the server declines
//!   TLS, and a second plain-text attempt when the server rejected the TLS
//!   session with an error or the TLS handshake failed (libpq 17 does so
//!   even when a root file made it verify the certificate: `prefer` never
//!   protects against an active attacker).
//!   `require`: TLS without verification, unless a root certificate file
//!   exists (`sslrootcert`; conninfo fills in libpq's default
//!   `~/.postgresql/root.crt` when that file exists), in which case the
//!   chain is verified as for `verify-ca` (this applies to allow/prefer too).
//!   `verify-ca`: chain. `verify-full`: chain and host name (IP addresses
//!   against IP SANs). `sslrootcert=system` takes the OS roots and requires
//!   verify-full. Unix sockets never use TLS.
//! - Hosts in order; for each, every address it resolves to (or `hostaddr`),
//!   each attempt under `connect_timeout` (at least 2 s when set). A server
//!   answering 57P03 (starting up, shutting down) or of the wrong kind moves
//!   on to the next host, not the next address.
//! - `target_session_attrs`: read-write/read-only from the reported
//!   `default_transaction_read_only` and `in_hot_standby` (14+), else
//!   `SHOW transaction_read_only`; primary/standby from `in_hot_standby`,
//!   else `pg_is_in_recovery()`; prefer-standby tries all hosts for a
//!   standby, then all hosts again accepting any server.
//!
//! Known differences from libpq: host-name checks follow webpki (subject
//! alternative names only; libpq falls back to the common name when a
//! certificate has no DNS SAN); no CRLs; `sslcertmode`, `sslpassword`,
//! `channel_binding`, `require_auth`, GSSAPI and `load_balance_hosts` are
//! not supported.

mod certificate;
mod error;
mod local;
mod tls;
mod transport;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::Client;

pub use crate::conninfo::{ConnectParams, HostParam, SslMode, TargetSessionAttrs};
pub use certificate::{fetch_server_certificate, ServerCertificate};
pub use error::{ConnectError, ConnectErrorKind, HbaRejection, HostAttempt, TlsFailureReason};
pub use local::{LocalSuperuser, LocalSuperuserError, DEFAULT_SOCKET_DIR, DEFAULT_SUPERUSER};
pub use tls::CertificateCheck;

use tls::TlsPolicy;
use transport::{OsIdentity, PgStream};

/// libpq never waits less than this per host when a timeout is set.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server told about itself at startup or when asked while
/// checking `target_session_attrs`. `None` means not reported and not asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version` as reported at startup.
    pub server_version: Option<String>,
    /// `in_hot_standby` as reported at startup (servers 14+).
    pub in_hot_standby: Option<bool>,
    /// `default_transaction_read_only` as reported at startup (14+).
    pub default_transaction_read_only: Option<bool>,
    /// `SHOW transaction_read_only`, when it had to be asked.
    pub transaction_read_only: Option<bool>,
    /// `pg_is_in_recovery()`, when it had to be asked.
    pub in_recovery: Option<bool>,
}

impl ServerFacts {
    /// Whether sessions are read-only, as far as known (libpq's test for
    /// read-write / read-only).
    pub fn read_only(&self) -> Option<bool> {
        if let Some(v) = self.transaction_read_only {
            return Some(v);
        }
        match (self.default_transaction_read_only, self.in_hot_standby) {
            (Some(a), Some(b)) => Some(a || b),
            (Some(true), None) | (None, Some(true)) => Some(true),
            _ => None,
        }
    }

    /// Whether the server is a standby (in recovery), as far as known.
    pub fn standby(&self) -> Option<bool> {
        self.in_hot_standby.or(self.in_recovery)
    }
}

/// An open connection: the client, which host answered and how, and the
/// server facts learnt on the way. The connection task runs on the tokio
/// runtime until the client is dropped.
pub struct Connected {
    client: Client,
    host: HostParam,
    address: String,
    tls: bool,
    certificate_check: Option<CertificateCheck>,
    server_certificate: Option<ServerCertificate>,
    facts: ServerFacts,
    task: JoinHandle<()>,
}

impl fmt::Debug for Connected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connected")
            .field("host", &self.host)
            .field("address", &self.address)
            .field("tls", &self.tls)
            .field("certificate_check", &self.certificate_check)
            .field("server_certificate", &self.server_certificate)
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl Connected {
    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutable (for transactions).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Gives up everything but the client; the connection task keeps
    /// running until the client is dropped.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// The host entry that answered.
    pub fn host(&self) -> &HostParam {
        &self.host
    }

    /// The address connected to: an IP address or a socket file path.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the session is encrypted with TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// How much of the server certificate was checked (`None` without TLS).
    pub fn certificate_check(&self) -> Option<CertificateCheck> {
        self.certificate_check
    }

    /// The server's leaf certificate, when TLS is in use.
    pub fn server_certificate(&self) -> Option<&ServerCertificate> {
        self.server_certificate.as_ref()
    }

    /// What the server reported about itself.
    pub fn server_facts(&self) -> &ServerFacts {
        &self.facts
    }

    /// Whether the connection task has ended (the server closed the
    /// connection or the client was dropped).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.task.is_finished()
    }
}

/// Connects as libpq would (see the module documentation).
pub async fn connect(params: &ConnectParams) -> Result<Connected, ConnectError> {
    connect_inner(params, None, None).await
}

/// Like [`connect`], but unix-socket hosts are connected with the effective
/// uid and gid of OS user `os_user` (e.g. `postgres`), so that `peer`
/// authentication sees that user: the way `sudo -u postgres psql` gets in,
/// without running the whole process as that user. TCP hosts are connected
/// normally. Needs root (or to already be that user).
///
/// The identity is taken on a dedicated short-lived thread with the raw
/// `setresuid`/`setresgid` system calls, which on Linux change only the
/// calling thread (libc's wrappers change every thread of the process);
/// the thread connects the socket and exits, so no other code ever runs with
/// the borrowed identity.
pub async fn connect_as_os_user(
    params: &ConnectParams,
    os_user: &str,
) -> Result<Connected, ConnectError> {
    let who = transport::lookup_os_user(os_user)
        .map_err(|e| ConnectError::invalid(format!("cannot use OS user \"{os_user}\": {e}")))?;
    connect_inner(params, Some(who), None).await
}

/// Like [`connect`], but TCP sockets are bound to the local address
/// `source` before connecting, so the server sees that client address (the
/// way a host with several addresses picks the one a primary's pg_hba.conf
/// allows; tests use 127.0.0.x to play remote hosts). Unix sockets are
/// unaffected.
pub async fn connect_from(
    params: &ConnectParams,
    source: IpAddr,
) -> Result<Connected, ConnectError> {
    connect_inner(params, None, Some(source)).await
}

/// libpq's rule: unset or zero means no timeout, anything else at least 2 s.
fn effective_timeout(timeout: Option<Duration>) -> Option<Duration> {
    match timeout {
        None => None,
        Some(t) if t.is_zero() => None,
        Some(t) => Some(t.max(MIN_CONNECT_TIMEOUT)),
    }
}

/// Which server kind one pass over the hosts accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
}

async fn connect_inner(
    params: &ConnectParams,
    peer: Option<OsIdentity>,
    source: Option<IpAddr>,
) -> Result<Connected, ConnectError> {
    if params.hosts.is_empty() {
        return Err(ConnectError::invalid("no host given"));
    }
    let needs_tls =
        params.sslmode != SslMode::Disable && params.hosts.iter().any(|h| !h.is_unix_socket());
    let policy = if needs_tls {
        TlsPolicy::resolve(params).map_err(|e| ConnectError::invalid(e.0))?
    } else {
        TlsPolicy::plain()
    };
    let timeout = effective_timeout(params.connect_timeout);
    let passes: &[Wanted] = match params.target_session_attrs {
        TargetSessionAttrs::Any => &[Wanted::Any],
        TargetSessionAttrs::ReadWrite => &[Wanted::ReadWrite],
        TargetSessionAttrs::ReadOnly => &[Wanted::ReadOnly],
        TargetSessionAttrs::Primary => &[Wanted::Primary],
        TargetSessionAttrs::Standby => &[Wanted::Standby],
        TargetSessionAttrs::PreferStandby => &[Wanted::Standby, Wanted::Any],
    };
    let ctx = Ctx {
        params,
        policy: &policy,
        peer,
        source,
        timeout,
    };
    let mut attempts = Vec::new();
    for &wanted in passes {
        for index in 0..params.hosts.len() {
            match ctx.try_host(index, wanted, &mut attempts).await {
                Some(connected) => return Ok(connected),
                None => continue,
            }
        }
    }
    Err(ConnectError::from_attempts(&params.user, attempts))
}

/// Where one attempt goes.
#[derive(Clone, Debug)]
enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{}", a.ip()),
            Address::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What one attempt on one address does about TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Plain,
    /// TLS, falling back to plain text on the same socket if the server
    /// declines (tokio-postgres's prefer).
    TlsOrPlain,
    /// TLS or nothing.
    Tls,
}

struct Ctx<'a> {
    params: &'a ConnectParams,
    policy: &'a TlsPolicy,
    peer: Option<OsIdentity>,
    source: Option<IpAddr>,
    timeout: Option<Duration>,
}

/// Why an address attempt ended without a connection.
enum AddressOutcome {
    /// Try the next address of this host.
    NextAddress,
    /// Skip the remaining addresses of this host (57P03, wrong kind).
    NextHost,
}

impl Ctx<'_> {
    async fn try_host(
        &self,
        index: usize,
        wanted: Wanted,
        attempts: &mut Vec<HostAttempt>,
    ) -> Option<Connected> {
        let host = &self.params.hosts[index];
        let addresses = match self.addresses(host).await {
            Ok(a) => a,
            Err(attempt) => {
                attempts.push(*attempt);
                return None;
            }
        };
        for address in addresses {
            let attempt = self.try_address(index, &address, wanted, attempts);
            let outcome = match self.timeout {
                Some(limit) => match tokio::time::timeout(limit, attempt).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        let mut a = HostAttempt::new(
                            &host.host,
                            host.port,
                            Some(address.to_string()),
                            false,
                        );
                        a.set_timeout(limit);
                        attempts.push(a);
                        Err(AddressOutcome::NextAddress)
                    }
                },
                None => attempt.await,
            };
            match outcome {
                Ok(connected) => return Some(connected),
                Err(AddressOutcome::NextAddress) => continue,
                Err(AddressOutcome::NextHost) => return None,
            }
        }
        None
    }

    async fn addresses(&self, host: &HostParam) -> Result<Vec<Address>, Box<HostAttempt>> {
        if host.is_unix_socket() {
            return Ok(vec![Address::Unix(transport::socket_path(
                &host.host, host.port,
            ))]);
        }
        if let Some(ip) = host.hostaddr {
            return Ok(vec![Address::Tcp(SocketAddr::new(ip, host.port))]);
        }
        if let Ok(ip) = host.host.parse::<IpAddr>() {
            return Ok(vec![Address::Tcp(SocketAddr::new(ip, host.port))]);
        }
        let mut attempt = HostAttempt::new(&host.host, host.port, None, false);
        let lookup = tokio::net::lookup_host((host.host.as_str(), host.port));
        let resolved = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, lookup).await {
                Ok(r) => r,
                Err(_) => {
                    attempt.set_timeout(limit);
                    return Err(Box::new(attempt));
                }
            },
            None => lookup.await,
        };
        match resolved {
            Ok(addrs) => {
                let list: Vec<_> = addrs.map(Address::Tcp).collect();
                if list.is_empty() {
                    attempt.kind = ConnectErrorKind::Dns;
                    attempt.message = "the name has no addresses".to_owned();
                    return Err(Box::new(attempt));
                }
                Ok(list)
            }
            Err(e) => {
                attempt.kind = ConnectErrorKind::Dns;
                attempt.os_error = e.raw_os_error();
                attempt.message = e.to_string();
                Err(Box::new(attempt))
            }
        }
    }

    fn steps(&self, address: &Address) -> &'static [Step] {
        if matches!(address, Address::Unix(_)) {
            return &[Step::Plain];
        }
        match self.params.sslmode {
            SslMode::Disable => &[Step::Plain],
            SslMode::Allow => &[Step::Plain, Step::Tls],
            SslMode::Prefer => &[Step::TlsOrPlain, Step::Plain],
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => &[Step::Tls],
        }
    }

    async fn try_address(
        &self,
        index: usize,
        address: &Address,
        wanted: Wanted,
        attempts: &mut Vec<HostAttempt>,
    ) -> Result<Connected, AddressOutcome> {
        let host = &self.params.hosts[index];
        let steps = self.steps(address);
        for (step_no, &step) in steps.iter().enumerate() {
            let mut attempt = match self.attempt(index, address, step).await {
                Ok(started) => {
                    return self
                        .check_target(host, address, started, wanted, attempts)
                        .await
                }
                Err(attempt) => attempt,
            };
            if attempt.kind == ConnectErrorKind::BadPassword && self.params.password.is_none() {
                if let (Some(_), Some(file)) = (&host.password, &self.params.passfile) {
                    attempt.message = format!(
                        "{} (password retrieved from file \"{}\")",
                        attempt.message,
                        file.display()
                    );
                }
            }
            let server_error = attempt.sqlstate.is_some();
            let tls_failed = attempt.kind == ConnectErrorKind::TlsFailure;
            let cannot_connect_now = attempt.sqlstate.as_deref() == Some("57P03");
            let used_tls = attempt.tls;
            attempts.push(attempt);
            if cannot_connect_now {
                return Err(AddressOutcome::NextHost);
            }
            // libpq 17 tries the other encryption after the server rejected
            // the session (an ErrorResponse during startup): allow -> TLS
            // after a plain-text rejection; and prefer -> plain text after a
            // rejection over TLS or a failed TLS handshake (certificate
            // verification included; tests/testsuite/connect_libpq17.rs shows it).
            let retry = step_no + 1 < steps.len()
                && match step {
                    Step::Plain => server_error,
                    Step::TlsOrPlain => used_tls && (server_error || tls_failed),
                    Step::Tls => false,
                };
            if !retry {
                if step == Step::Plain && self.params.sslmode == SslMode::Disable {
                    self.refine_tls_required(address, attempts).await;
                }
                return Err(AddressOutcome::NextAddress);
            }
        }
        Err(AddressOutcome::NextAddress)
    }

    /// A plain-text session refused by pg_hba.conf ("no encryption") on a
    /// server that accepts TLS most likely met `hostssl` rules only.
    async fn refine_tls_required(&self, address: &Address, attempts: &mut [HostAttempt]) {
        let Some(last) = attempts.last_mut() else {
            return;
        };
        let plain_refused = last.kind == ConnectErrorKind::NoHbaEntry
            && last.hba.as_ref().is_some_and(|h| {
                !h.rejected_by_rule && h.encryption.as_deref() == Some("no encryption")
            });
        let Address::Tcp(addr) = address else {
            return;
        };
        if plain_refused && server_accepts_tls(*addr).await {
            last.kind = ConnectErrorKind::TlsRequired;
        }
    }

    async fn open(&self, address: &Address) -> std::io::Result<PgStream> {
        match address {
            Address::Tcp(addr) => transport::tcp(*addr, self.source).await,
            Address::Unix(path) => match self.peer {
                Some(who) => transport::unix_as(path.clone(), who).await,
                None => transport::unix(path.clone()).await,
            },
        }
    }

    /// The login settings for one host (conninfo's conversion, which picks
    /// the host's `.pgpass` password), with this attempt's TLS mode.
    /// `connect_raw` ignores the host, port and timeout fields: the socket
    /// and the loop are ours.
    fn config(&self, host_index: usize, mode: PgSslMode) -> tokio_postgres::Config {
        let mut config = crate::conninfo::tokio_config(self.params, host_index);
        config.ssl_mode(mode);
        config
    }

    async fn attempt(
        &self,
        index: usize,
        address: &Address,
        step: Step,
    ) -> Result<Started, HostAttempt> {
        let host = &self.params.hosts[index];
        let mode = match step {
            Step::Plain => PgSslMode::Disable,
            Step::TlsOrPlain => PgSslMode::Prefer,
            Step::Tls => PgSslMode::Require,
        };
        let mut attempt = HostAttempt::new(
            &host.host,
            host.port,
            Some(address.to_string()),
            step != Step::Plain,
        );
        let server_name = if host.host.is_empty() || host.is_unix_socket() {
            host.hostaddr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "localhost".to_owned())
        } else {
            host.host.clone()
        };
        if step != Step::Plain
            && self.policy.check == CertificateCheck::ChainAndName
            && host.host.is_empty()
        {
            attempt.kind = ConnectErrorKind::InvalidParameters;
            attempt.message =
                "host name must be specified for a verified SSL connection".to_owned();
            return Err(attempt);
        }
        let connector = match self.policy.connector(&server_name) {
            Ok(c) => c,
            Err(e) => {
                attempt.kind = ConnectErrorKind::InvalidParameters;
                attempt.message = e.0;
                return Err(attempt);
            }
        };
        let record = connector.record.clone();
        let stream = match self.open(address).await {
            Ok(s) => s,
            Err(e) => {
                // The socket never opened: no TLS was attempted.
                attempt.tls = false;
                attempt.set_io(&e);
                if self.peer.is_some() && e.kind() == std::io::ErrorKind::PermissionDenied {
                    attempt.kind = ConnectErrorKind::OsUser;
                }
                return Err(attempt);
            }
        };
        match self
            .config(index, mode)
            .connect_raw(stream, connector)
            .await
        {
            Ok((client, connection)) => {
                let param = |name: &str| connection.parameter(name).map(str::to_owned);
                let on = |v: Option<String>| v.map(|v| v == "on");
                let facts = ServerFacts {
                    server_version: param("server_version"),
                    in_hot_standby: on(param("in_hot_standby")),
                    default_transaction_read_only: on(param("default_transaction_read_only")),
                    transaction_read_only: None,
                    in_recovery: None,
                };
                let task = tokio::spawn(async move {
                    // The connection's error, if any, surfaces through the
                    // client's next call; nothing to do with it here.
                    let _ = connection.await;
                });
                let tls = record.started();
                Ok(Started {
                    client,
                    task,
                    facts,
                    tls,
                    leaf: if tls { record.leaf() } else { None },
                })
            }
            Err(e) => {
                attempt.set_postgres(&e, record.started());
                // An attempt that fell back to plain text on the same socket
                // (prefer, server declined) was not a TLS attempt.
                if step == Step::TlsOrPlain && !record.started() {
                    attempt.tls = false;
                }
                Err(attempt)
            }
        }
    }

    async fn check_target(
        &self,
        host: &HostParam,
        address: &Address,
        mut started: Started,
        wanted: Wanted,
        attempts: &mut Vec<HostAttempt>,
    ) -> Result<Connected, AddressOutcome> {
        let mut attempt = HostAttempt::new(
            &host.host,
            host.port,
            Some(address.to_string()),
            started.tls,
        );
        let verdict: Result<(), &'static str> = match wanted {
            Wanted::Any => Ok(()),
            Wanted::ReadWrite | Wanted::ReadOnly => {
                let known = match (
                    started.facts.default_transaction_read_only,
                    started.facts.in_hot_standby,
                ) {
                    (Some(a), Some(b)) => Some(a || b),
                    _ => None,
                };
                let read_only = match known {
                    Some(v) => v,
                    None => match started
                        .client
                        .simple_query("SHOW transaction_read_only")
                        .await
                    {
                        Ok(rows) => {
                            let v = first_value(&rows).is_some_and(|v| v.starts_with("on"));
                            started.facts.transaction_read_only = Some(v);
                            v
                        }
                        Err(e) => {
                            attempt.set_postgres(&e, started.tls);
                            attempts.push(attempt);
                            return Err(AddressOutcome::NextHost);
                        }
                    },
                };
                match (wanted, read_only) {
                    (Wanted::ReadWrite, true) => Err("session is read-only"),
                    (Wanted::ReadOnly, false) => Err("session is not read-only"),
                    _ => Ok(()),
                }
            }
            Wanted::Primary | Wanted::Standby => {
                let standby = match started.facts.in_hot_standby {
                    Some(v) => v,
                    None => match started
                        .client
                        .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
                        .await
                    {
                        Ok(rows) => {
                            let v = first_value(&rows) == Some("t");
                            started.facts.in_recovery = Some(v);
                            v
                        }
                        Err(e) => {
                            attempt.set_postgres(&e, started.tls);
                            attempts.push(attempt);
                            return Err(AddressOutcome::NextHost);
                        }
                    },
                };
                match (wanted, standby) {
                    (Wanted::Primary, true) => Err("server is in hot standby mode"),
                    (Wanted::Standby, false) => Err("server is not in hot standby mode"),
                    _ => Ok(()),
                }
            }
        };
        match verdict {
            Ok(()) => Ok(Connected {
                client: started.client,
                host: host.clone(),
                address: address.to_string(),
                tls: started.tls,
                certificate_check: started.tls.then_some(self.policy.check),
                server_certificate: started.leaf.map(ServerCertificate::from_der),
                facts: started.facts,
                task: started.task,
            }),
            Err(message) => {
                attempt.kind = ConnectErrorKind::WrongSessionType;
                attempt.message = message.to_owned();
                attempts.push(attempt);
                // Dropping the client sends Terminate and ends the task.
                drop(started.client);
                Err(AddressOutcome::NextHost)
            }
        }
    }
}

/// A session that completed startup, before the target check.
struct Started {
    client: Client,
    task: JoinHandle<()>,
    facts: ServerFacts,
    tls: bool,
    leaf: Option<Vec<u8>>,
}

fn first_value(rows: &[tokio_postgres::SimpleQueryMessage]) -> Option<&str> {
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}

/// Sends only an SSLRequest and reads the one-byte answer: does the server
/// accept TLS? (No login, nothing else.)
async fn server_accepts_tls(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer[0] == b'S')
    };
    matches!(
        tokio::time::timeout(MIN_CONNECT_TIMEOUT, probe).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_follows_libpq_minimum() {
        assert_eq!(effective_timeout(None), None);
        assert_eq!(effective_timeout(Some(Duration::ZERO)), None);
        assert_eq!(
            effective_timeout(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            effective_timeout(Some(Duration::from_secs(10))),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn read_only_combines_reported_parameters_like_libpq() {
        let facts = ServerFacts {
            default_transaction_read_only: Some(true),
            in_hot_standby: Some(false),
            ..ServerFacts::default()
        };
        assert_eq!(facts.read_only(), Some(true));
        let facts = ServerFacts {
            default_transaction_read_only: Some(false),
            in_hot_standby: Some(false),
            ..ServerFacts::default()
        };
        assert_eq!(facts.read_only(), Some(false));
        assert_eq!(ServerFacts::default().read_only(), None);
    }
}
