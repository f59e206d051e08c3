//! Connection failures, classified for humans: what failed, on which host,
//! and what to do next. Nothing here ever holds the password.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use rustls::CertificateError;

/// What kind of failure ended a connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The parameters cannot work (e.g. a missing root certificate file for
    /// `verify-full`, an unknown OS user); nothing was sent.
    InvalidParameters,
    /// The host name could not be resolved.
    Dns,
    /// Nothing listens there (TCP connection refused, or no socket file).
    Refused,
    /// No answer within `connect_timeout`.
    Timeout,
    /// Another network or socket error (unreachable, reset, closed early).
    Network,
    /// The TLS handshake failed (see [`HostAttempt::tls_reason`]).
    TlsFailure,
    /// The server does not support TLS, but `sslmode` requires it.
    TlsUnsupported,
    /// The server refused the unencrypted connection in pg_hba.conf while it
    /// does accept TLS: it probably wants `hostssl` connections only.
    TlsRequired,
    /// pg_hba.conf has no rule for this connection, or a `reject` rule
    /// (see [`HostAttempt::hba`]).
    NoHbaEntry,
    /// Password authentication failed (SQLSTATE 28P01).
    BadPassword,
    /// The server asked for a password and none was given.
    PasswordMissing,
    /// Authentication failed otherwise (peer/ident mismatch, role not
    /// permitted to log in, SCRAM failure).
    AuthenticationFailed,
    /// The role does not exist (SQLSTATE 28000, reported only by methods
    /// that do not hide it, such as trust and peer).
    RoleDoesNotExist,
    /// The database does not exist (SQLSTATE 3D000).
    DatabaseDoesNotExist,
    /// The server is starting up, shutting down or in recovery without hot
    /// standby (SQLSTATE 57P03).
    ServerNotAccepting,
    /// Too many connections (SQLSTATE 53300).
    TooManyConnections,
    /// Connected, but the server is not of the kind `target_session_attrs`
    /// asks for.
    WrongSessionType,
    /// Taking the OS user's identity for peer authentication failed.
    OsUser,
    /// Any other error the server reported (see [`HostAttempt::sqlstate`]).
    Server,
    /// The server sent something unexpected.
    Protocol,
}

impl ConnectErrorKind {
    /// How far the attempt got: the failure that got furthest is the one
    /// worth telling first (a wrong password on one host matters more than
    /// a refused connection on another).
    fn progress(self) -> u8 {
        use ConnectErrorKind::*;
        match self {
            InvalidParameters | OsUser => 0,
            Dns => 1,
            Refused | Network => 2,
            Timeout => 3,
            TlsUnsupported | TlsFailure | Protocol => 4,
            TlsRequired | NoHbaEntry | BadPassword | PasswordMissing | AuthenticationFailed
            | RoleDoesNotExist | DatabaseDoesNotExist | ServerNotAccepting | TooManyConnections
            | Server => 5,
            WrongSessionType => 6,
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailureReason {
    /// The certificate chain does not lead to a trusted root (`sslrootcert`).
    UntrustedCertificate,
    /// The certificate is not valid for the host name (verify-full); the
    /// names it carries.
    NameMismatch {
        /// The names (DNS and IP) in the certificate.
        presented: Vec<String>,
    },
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate is malformed or unusable for a server.
    BadCertificate,
    /// The server rejected us during the handshake (e.g. it wants a client
    /// certificate), or the handshake broke for another reason.
    Handshake,
}

impl fmt::Display for TlsFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailureReason::UntrustedCertificate => {
                f.write_str("the server certificate is not signed by a trusted root (sslrootcert)")
            }
            TlsFailureReason::NameMismatch { presented } if presented.is_empty() => {
                f.write_str("the server certificate does not carry the host name")
            }
            TlsFailureReason::NameMismatch { presented } => write!(
                f,
                "the server certificate is for {} and not for this host name",
                presented.join(", ")
            ),
            TlsFailureReason::Expired => f.write_str("the server certificate has expired"),
            TlsFailureReason::NotYetValid => f.write_str("the server certificate is not valid yet"),
            TlsFailureReason::BadCertificate => f.write_str("the server certificate is unusable"),
            TlsFailureReason::Handshake => f.write_str("the TLS handshake failed"),
        }
    }
}

/// What the server said when pg_hba.conf refused a connection, parsed from
/// its message (`no pg_hba.conf entry for host "X", user "U", database "D",
/// no encryption`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HbaRejection {
    /// The client address as the server saw it (`[local]` for unix sockets).
    pub client_address: String,
    /// The user name.
    pub user: String,
    /// The database, absent for replication connections.
    pub database: Option<String>,
    /// `no encryption`, `SSL encryption` or `GSS encryption`, when reported.
    pub encryption: Option<String>,
    /// A `reject` rule matched (rather than no rule at all).
    pub rejected_by_rule: bool,
}

impl HbaRejection {
    /// Parses the server's message, in English (lc_messages other than
    /// English cannot be parsed and give `None`).
    pub fn parse(message: &str) -> Option<HbaRejection> {
        let (rejected_by_rule, rest) =
            if let Some(r) = message.strip_prefix("no pg_hba.conf entry for ") {
                (false, r)
            } else if let Some(r) = message.strip_prefix("pg_hba.conf rejects ") {
                (true, r)
            } else {
                return None;
            };
        let start = rest.find("host \"")? + "host \"".len();
        let rest = &rest[start..];
        let user_at = rest.find("\", user \"")?;
        let client_address = rest[..user_at].to_owned();
        let rest = &rest[user_at + "\", user \"".len()..];
        let (user, database, tail) = match rest.find("\", database \"") {
            Some(db_at) => {
                let user = rest[..db_at].to_owned();
                let rest = &rest[db_at + "\", database \"".len()..];
                let end = rest.rfind('"')?;
                (user, Some(rest[..end].to_owned()), &rest[end + 1..])
            }
            None => {
                let end = rest.rfind('"')?;
                (rest[..end].to_owned(), None, &rest[end + 1..])
            }
        };
        let encryption = tail
            .strip_prefix(", ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Some(HbaRejection {
            client_address,
            user,
            database,
            encryption,
            rejected_by_rule,
        })
    }
}

/// One failed try: which host and address, with or without TLS, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAttempt {
    /// The host as given (name, address, or socket directory).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The address tried (resolved IP, or the socket file), when known.
    pub address: Option<String>,
    /// Whether this try used (or asked for) TLS.
    pub tls: bool,
    /// The classification.
    pub kind: ConnectErrorKind,
    /// The underlying message (server message, OS error, TLS error).
    pub message: String,
    /// The SQLSTATE the server reported, if it reported an error.
    pub sqlstate: Option<String>,
    /// The OS error number, for socket errors.
    pub os_error: Option<i32>,
    /// Why TLS failed, for [`ConnectErrorKind::TlsFailure`].
    pub tls_reason: Option<TlsFailureReason>,
    /// The server's pg_hba.conf verdict, for [`ConnectErrorKind::NoHbaEntry`]
    /// and [`ConnectErrorKind::TlsRequired`].
    pub hba: Option<HbaRejection>,
}

impl HostAttempt {
    pub(crate) fn new(host: &str, port: u16, address: Option<String>, tls: bool) -> HostAttempt {
        HostAttempt {
            host: host.to_owned(),
            port,
            address,
            tls,
            kind: ConnectErrorKind::Protocol,
            message: String::new(),
            sqlstate: None,
            os_error: None,
            tls_reason: None,
            hba: None,
        }
    }

    fn target(&self) -> String {
        let is_socket = self.host.starts_with('/') || self.host.starts_with('@');
        if is_socket {
            match &self.address {
                Some(a) => format!("socket \"{a}\""),
                None => format!("socket \"{}/.s.PGSQL.{}\"", self.host, self.port),
            }
        } else {
            let shown = if self.host.is_empty() {
                self.address.clone().unwrap_or_default()
            } else {
                self.host.clone()
            };
            let host_port = if shown.contains(':') {
                format!("[{shown}]:{}", self.port)
            } else {
                format!("{shown}:{}", self.port)
            };
            match &self.address {
                Some(a) if *a != self.host && !self.host.is_empty() => format!("{host_port} ({a})"),
                _ => host_port,
            }
        }
    }

    /// Fills in kind and details from an I/O error of the socket stage.
    pub(crate) fn set_io(&mut self, error: &io::Error) {
        self.os_error = error.raw_os_error();
        self.message = error.to_string();
        self.kind = match error.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ConnectErrorKind::Refused,
            io::ErrorKind::TimedOut => ConnectErrorKind::Timeout,
            io::ErrorKind::PermissionDenied if self.host.starts_with('/') => {
                ConnectErrorKind::OsUser
            }
            _ => ConnectErrorKind::Network,
        };
    }

    /// Fills in kind and details from a tokio-postgres startup error.
    /// `tls_started` tells whether the server agreed to TLS (so a TLS error
    /// without it means the server declined).
    pub(crate) fn set_postgres(&mut self, error: &tokio_postgres::Error, tls_started: bool) {
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            self.sqlstate = Some(code.to_owned());
            self.message = db.message().to_owned();
            self.kind = match code {
                "28P01" => ConnectErrorKind::BadPassword,
                "3D000" => ConnectErrorKind::DatabaseDoesNotExist,
                "57P03" => ConnectErrorKind::ServerNotAccepting,
                "53300" => ConnectErrorKind::TooManyConnections,
                "28000" => {
                    if let Some(hba) = HbaRejection::parse(db.message()) {
                        self.hba = Some(hba);
                        ConnectErrorKind::NoHbaEntry
                    } else if db.message().starts_with("role \"")
                        && db.message().ends_with("\" does not exist")
                    {
                        ConnectErrorKind::RoleDoesNotExist
                    } else {
                        ConnectErrorKind::AuthenticationFailed
                    }
                }
                _ if code.starts_with("28") => ConnectErrorKind::AuthenticationFailed,
                _ => ConnectErrorKind::Server,
            };
            return;
        }
        let mut source: Option<&(dyn StdError + 'static)> = error.source();
        while let Some(e) = source {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                self.kind = ConnectErrorKind::TlsFailure;
                self.message = tls.to_string();
                self.tls_reason = Some(tls_reason(tls));
                return;
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    self.kind = ConnectErrorKind::TlsFailure;
                    self.message = tls.to_string();
                    self.tls_reason = Some(tls_reason(tls));
                    return;
                }
                self.set_io(io);
                if matches!(
                    io.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) {
                    self.message = "server closed the connection unexpectedly".to_owned();
                    if self.tls && tls_started {
                        self.kind = ConnectErrorKind::TlsFailure;
                        self.tls_reason = Some(TlsFailureReason::Handshake);
                    }
                }
                return;
            }
            source = e.source();
        }
        let text = error.to_string();
        let detail = error.source().map(|s| s.to_string()).unwrap_or_default();
        if text.contains("TLS") && self.tls && !tls_started {
            self.kind = ConnectErrorKind::TlsUnsupported;
            self.message = "the server does not support TLS".to_owned();
        } else if detail.contains("password missing") {
            self.kind = ConnectErrorKind::PasswordMissing;
            self.message = "the server asked for a password, but none was given".to_owned();
        } else if text.contains("authentication") {
            self.kind = ConnectErrorKind::AuthenticationFailed;
            self.message = if detail.is_empty() {
                text
            } else {
                format!("{text}: {detail}")
            };
        } else {
            self.kind = ConnectErrorKind::Protocol;
            self.message = if detail.is_empty() {
                text
            } else {
                format!("{text}: {detail}")
            };
        }
    }

    /// A timeout of the whole attempt.
    pub(crate) fn set_timeout(&mut self, after: Duration) {
        self.kind = ConnectErrorKind::Timeout;
        self.message = format!("timeout expired after {} s", after.as_secs());
    }

    /// What to do about it, in one sentence.
    fn advice(&self, user: &str) -> String {
        use ConnectErrorKind::*;
        let port = self.port;
        match self.kind {
            InvalidParameters => "fix the connection parameters".to_owned(),
            Dns => "check the host name in the connection string".to_owned(),
            Refused if self.host.starts_with('/') || self.host.starts_with('@') => {
                "is the server running locally and accepting connections on that socket?".to_owned()
            }
            Refused => format!(
                "is the server running on that host and accepting TCP connections on port {port} \
                 (listen_addresses)?"
            ),
            Timeout => format!(
                "check that the host is reachable and that firewalls let port {port} through"
            ),
            Network => "check the network path to the server".to_owned(),
            TlsFailure => match &self.tls_reason {
                Some(TlsFailureReason::UntrustedCertificate) => "give the CA certificate that signed the server certificate in sslrootcert, or use sslmode=require to encrypt without verifying".to_owned(),
                Some(TlsFailureReason::NameMismatch { .. }) => "connect with the host name the certificate was issued for, or use sslmode=verify-ca to check the chain only".to_owned(),
                Some(TlsFailureReason::Expired | TlsFailureReason::NotYetValid) => "renew the server certificate (or check the clocks)".to_owned(),
                _ => "check the server's ssl settings and certificate".to_owned(),
            },
            TlsUnsupported => "turn ssl on in the server's configuration, or use sslmode=prefer".to_owned(),
            TlsRequired => {
                "the server accepts TLS: connect with sslmode=require (or stronger)".to_owned()
            }
            NoHbaEntry => match &self.hba {
                Some(hba) if hba.rejected_by_rule => format!(
                    "a reject rule in the server's pg_hba.conf matches {}; change that rule if this client should get in",
                    hba.client_address
                ),
                Some(hba) => format!(
                    "add a pg_hba.conf rule for {} on the database server",
                    cidr_of(&hba.client_address)
                ),
                None => "add a pg_hba.conf rule for this client on the database server".to_owned(),
            },
            BadPassword => format!(
                "check the password of role \"{user}\" (connection string, PGPASSWORD or .pgpass)"
            ),
            PasswordMissing => "put the password in the connection string, PGPASSWORD or .pgpass".to_owned(),
            AuthenticationFailed => "check the user name and the authentication method pg_hba.conf chose".to_owned(),
            RoleDoesNotExist => format!("create role \"{user}\" or connect as an existing role"),
            DatabaseDoesNotExist => "create the database or fix dbname".to_owned(),
            ServerNotAccepting => "wait until the server has started (or finished recovery) and try again".to_owned(),
            TooManyConnections => "close idle connections or raise max_connections on the server".to_owned(),
            WrongSessionType => "list a server of the wanted kind, or change target_session_attrs".to_owned(),
            OsUser => "run as root (or as that OS user) to use peer authentication".to_owned(),
            Server | Protocol => "see the server log for details".to_owned(),
        }
    }
}

fn cidr_of(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => format!("{a}/32"),
        Ok(std::net::IpAddr::V6(a)) => format!("{a}/128"),
        Err(_) => address.to_owned(),
    }
}

fn tls_reason(error: &rustls::Error) -> TlsFailureReason {
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsFailureReason::UntrustedCertificate
            }
            CertificateError::NotValidForName => TlsFailureReason::NameMismatch {
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext { presented, .. } => {
                TlsFailureReason::NameMismatch {
                    presented: presented.clone(),
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsFailureReason::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsFailureReason::NotYetValid
            }
            _ => TlsFailureReason::BadCertificate,
        },
        _ => TlsFailureReason::Handshake,
    }
}

/// A failed [`connect`](super::connect): the overall kind, and every host
/// attempt with its own reason. `Display` says what failed and what to do
/// next; it never contains the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    user: String,
    detail: Option<String>,
    attempts: Vec<HostAttempt>,
}

impl ConnectError {
    pub(crate) fn invalid(detail: impl Into<String>) -> ConnectError {
        ConnectError {
            kind: ConnectErrorKind::InvalidParameters,
            user: String::new(),
            detail: Some(detail.into()),
            attempts: Vec::new(),
        }
    }

    pub(crate) fn from_attempts(user: &str, attempts: Vec<HostAttempt>) -> ConnectError {
        let kind = main_attempt(&attempts)
            .map(|a| a.kind)
            .unwrap_or(ConnectErrorKind::InvalidParameters);
        ConnectError {
            kind,
            user: user.to_owned(),
            detail: None,
            attempts,
        }
    }

    /// The classification of the failure that got furthest.
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// Every attempt, in the order made (several per host when the sslmode
    /// retries, one per address when a name resolves to several).
    pub fn attempts(&self) -> &[HostAttempt] {
        &self.attempts
    }

    /// The attempt the summary is about (the one that got furthest).
    pub fn main_attempt(&self) -> Option<&HostAttempt> {
        main_attempt(&self.attempts)
    }

    /// The SQLSTATE of the main attempt, if the server reported one.
    pub fn sqlstate(&self) -> Option<&str> {
        self.main_attempt().and_then(|a| a.sqlstate.as_deref())
    }

    /// The pg_hba.conf rejection of the main attempt, if that is what failed.
    pub fn hba_rejection(&self) -> Option<&HbaRejection> {
        self.main_attempt().and_then(|a| a.hba.as_ref())
    }

    /// The TLS failure reason of the main attempt.
    pub fn tls_reason(&self) -> Option<&TlsFailureReason> {
        self.main_attempt().and_then(|a| a.tls_reason.as_ref())
    }
}

fn main_attempt(attempts: &[HostAttempt]) -> Option<&HostAttempt> {
    attempts.iter().rev().max_by_key(|a| a.kind.progress())
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(detail) = &self.detail {
            return write!(f, "invalid connection parameters: {detail}");
        }
        let Some(main) = self.main_attempt() else {
            return f.write_str("could not connect: no host to try");
        };
        let target = main.target();
        let tls = if main.tls { " over TLS" } else { "" };
        match main.kind {
            ConnectErrorKind::Dns => write!(
                f,
                "could not resolve host name \"{}\": {}",
                main.host, main.message
            )?,
            ConnectErrorKind::Refused => {
                write!(f, "could not connect to {target}: {}", main.message)?
            }
            ConnectErrorKind::Timeout => {
                write!(f, "connection to {target} timed out ({})", main.message)?
            }
            ConnectErrorKind::TlsFailure => write!(
                f,
                "TLS with {target} failed: {} ({})",
                main.tls_reason
                    .as_ref()
                    .unwrap_or(&TlsFailureReason::Handshake),
                main.message
            )?,
            ConnectErrorKind::TlsUnsupported => {
                write!(f, "{target} does not support TLS, but sslmode requires it")?
            }
            ConnectErrorKind::TlsRequired => write!(
                f,
                "{target} refused the connection without TLS: {}",
                main.message
            )?,
            ConnectErrorKind::WrongSessionType => {
                write!(f, "no suitable server: {target}: {}", main.message)?
            }
            _ => write!(f, "connection to {target}{tls} failed: {}", main.message)?,
        }
        if let Some(sqlstate) = &main.sqlstate {
            write!(f, " (SQLSTATE {sqlstate})")?;
        }
        write!(f, "; {}", main.advice(&self.user))?;
        if self.attempts.len() > 1 {
            f.write_str("\nattempts:")?;
            for a in &self.attempts {
                let tls = if a.tls { " (TLS)" } else { "" };
                write!(f, "\n  {}{tls}: {}", a.target(), a.message)?;
            }
        }
        Ok(())
    }
}

impl StdError for ConnectError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_no_hba_entry_message() {
        let hba = HbaRejection::parse(
            "no pg_hba.conf entry for host \"127.0.0.2\", user \"app\", database \"appdb\", no encryption",
        )
        .unwrap();
        assert_eq!(hba.client_address, "127.0.0.2");
        assert_eq!(hba.user, "app");
        assert_eq!(hba.database.as_deref(), Some("appdb"));
        assert_eq!(hba.encryption.as_deref(), Some("no encryption"));
        assert!(!hba.rejected_by_rule);
    }

    #[test]
    fn parses_reject_rule_and_replication_messages() {
        let hba = HbaRejection::parse(
            "pg_hba.conf rejects connection for host \"[local]\", user \"a, \"b\", database \"d\", SSL encryption",
        )
        .unwrap();
        assert!(hba.rejected_by_rule);
        assert_eq!(hba.client_address, "[local]");
        assert_eq!(hba.user, "a, \"b");
        assert_eq!(hba.encryption.as_deref(), Some("SSL encryption"));
        let rep = HbaRejection::parse(
            "no pg_hba.conf entry for replication connection from host \"::1\", user \"rep\", no encryption",
        )
        .unwrap();
        assert_eq!(rep.client_address, "::1");
        assert_eq!(rep.user, "rep");
        assert_eq!(rep.database, None);
        assert!(HbaRejection::parse("password authentication failed for user \"x\"").is_none());
    }

    #[test]
    fn main_attempt_prefers_the_failure_that_got_furthest() {
        let mut refused = HostAttempt::new("127.0.0.1", 1, None, false);
        refused.kind = ConnectErrorKind::Refused;
        let mut password = HostAttempt::new("127.0.0.2", 2, None, false);
        password.kind = ConnectErrorKind::BadPassword;
        let mut refused2 = HostAttempt::new("127.0.0.3", 3, None, false);
        refused2.kind = ConnectErrorKind::Refused;
        let err = ConnectError::from_attempts("u", vec![refused, password, refused2]);
        assert_eq!(err.kind(), ConnectErrorKind::BadPassword);
        assert_eq!(err.main_attempt().unwrap().port, 2);
    }
}
