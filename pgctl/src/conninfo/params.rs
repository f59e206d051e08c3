//! The fully resolved inputs of a connection attempt.
//!
//! [`crate::conninfo`] produces these from a connection string, the `PG*`
//! environment variables and `.pgpass` (so they live here, and conninfo
//! never imports connect); [`crate::connect`] consumes them.
//! Nothing here is optional any more except where libpq itself treats a value
//! as absent.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// libpq's `sslmode`, checked (a bad value is an error at resolution time,
/// as libpq rejects it when connecting, not when parsing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// Plain text first; TLS only if the server demands it.
    Allow,
    /// TLS first; plain text only if the server declines TLS (libpq's default).
    #[default]
    Prefer,
    /// TLS, without verifying the certificate (unless a root cert file is
    /// present, in which case libpq behaves as `verify-ca`).
    Require,
    /// TLS, certificate chain verified against the root certificates.
    VerifyCa,
    /// TLS, chain verified and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// The keyword as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode libpq spells `text`, if any.
    pub fn from_keyword(text: &str) -> Option<SslMode> {
        [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }
}

/// libpq's `target_session_attrs`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TargetSessionAttrs {
    /// Any server will do (the default).
    #[default]
    Any,
    /// A server that accepts writes (`transaction_read_only = off`).
    ReadWrite,
    /// A server that is read only.
    ReadOnly,
    /// A server not in recovery.
    Primary,
    /// A server in recovery.
    Standby,
    /// A standby if any host is one, else any server.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// The keyword as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
            TargetSessionAttrs::Primary => "primary",
            TargetSessionAttrs::Standby => "standby",
            TargetSessionAttrs::PreferStandby => "prefer-standby",
        }
    }
}

/// One entry of the host list, after `host`, `hostaddr` and `port` have been
/// paired up the way libpq pairs them. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct HostParam {
    /// The host name as given: a DNS name, a numeric address, or (when it
    /// starts with `/` or `@`) a unix-socket directory / abstract namespace.
    /// Empty when only `hostaddr` was given.
    pub host: String,
    /// A numeric address that replaces name resolution, when given.
    pub hostaddr: Option<IpAddr>,
    /// The TCP port, or the number in the unix socket's file name.
    pub port: u16,
    /// The password `.pgpass` holds for this host (libpq looks it up per
    /// host/port pair); used only when [`ConnectParams::password`] is `None`.
    pub password: Option<String>,
}

impl fmt::Debug for HostParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostParam")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

impl HostParam {
    /// A TCP host (name or numeric address) and port.
    pub fn tcp(host: impl Into<String>, port: u16) -> HostParam {
        HostParam {
            host: host.into(),
            hostaddr: None,
            port,
            password: None,
        }
    }

    /// A unix-socket directory and the port in the socket's file name.
    pub fn unix(dir: impl Into<String>, port: u16) -> HostParam {
        HostParam::tcp(dir, port)
    }

    /// Whether this host is this machine: a unix socket, `localhost`, or a
    /// loopback address (as host or hostaddr).
    pub fn is_local(&self) -> bool {
        if let Some(addr) = self.hostaddr {
            return addr.is_loopback();
        }
        self.is_unix_socket()
            || self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The password to use for this host: the connection's own, else the
    /// one `.pgpass` gave for this host.
    pub fn effective_password<'a>(&'a self, params: &'a ConnectParams) -> Option<&'a str> {
        params.password.as_deref().or(self.password.as_deref())
    }

    /// Whether this entry names a unix-socket directory rather than a TCP host.
    pub fn is_unix_socket(&self) -> bool {
        self.hostaddr.is_none() && (self.host.starts_with('/') || self.host.starts_with('@'))
    }
}

/// Everything needed to open a connection. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// Hosts to try, in order (at least one).
    pub hosts: Vec<HostParam>,
    /// The role to log in as.
    pub user: String,
    /// The password from the string or `PGPASSWORD`; when `None`, each
    /// host's [`HostParam::password`] (from `.pgpass`) applies.
    pub password: Option<String>,
    /// The password file consulted for the hosts' passwords, when it was
    /// (libpq mentions it when such a password is rejected).
    pub passfile: Option<PathBuf>,
    /// The database name.
    pub dbname: String,
    /// TLS policy.
    pub sslmode: SslMode,
    /// Root certificates for verify-ca / verify-full (and for `require` when
    /// the file exists, as libpq does).
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate and key, when given.
    pub sslcert: Option<PathBuf>,
    /// Client key for `sslcert`.
    pub sslkey: Option<PathBuf>,
    /// Which kind of server is acceptable.
    pub target_session_attrs: TargetSessionAttrs,
    /// Per-host connect timeout (libpq: at least 2 s when set, 0 = none).
    pub connect_timeout: Option<Duration>,
    /// `application_name`, when given.
    pub application_name: Option<String>,
    /// `options` (command-line options sent to the server), when given.
    pub options: Option<String>,
}

impl ConnectParams {
    /// Parameters for `hosts` (at least one), logging in as `user` to
    /// `dbname`, with libpq's defaults for the rest: no password, `sslmode`
    /// prefer, any server, no timeout. Set the other fields directly.
    pub fn new(
        hosts: Vec<HostParam>,
        user: impl Into<String>,
        dbname: impl Into<String>,
    ) -> ConnectParams {
        ConnectParams {
            hosts,
            user: user.into(),
            password: None,
            passfile: None,
            dbname: dbname.into(),
            sslmode: SslMode::default(),
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
            target_session_attrs: TargetSessionAttrs::default(),
            connect_timeout: None,
            application_name: None,
            options: None,
        }
    }

    /// Whether every host is this machine ([`HostParam::is_local`]): the
    /// server can be reached through its unix socket or loopback, and its
    /// files read here.
    pub fn hosts_are_local(&self) -> bool {
        !self.hosts.is_empty() && self.hosts.iter().all(HostParam::is_local)
    }
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("passfile", &self.passfile)
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .field("options", &self.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_are_sockets_localhost_and_loopback() {
        let p = |hosts: Vec<HostParam>| ConnectParams::new(hosts, "u", "d");
        assert!(p(vec![HostParam::unix("/var/run/postgresql", 5432)]).hosts_are_local());
        assert!(p(vec![
            HostParam::tcp("localhost", 5432),
            HostParam::tcp("127.0.0.2", 5433),
            HostParam::tcp("[::1]", 5432),
        ])
        .hosts_are_local());
        assert!(!p(vec![
            HostParam::tcp("127.0.0.1", 5432),
            HostParam::tcp("db2", 5432)
        ])
        .hosts_are_local());
        let mut named = HostParam::tcp("db.example", 5432);
        named.hostaddr = Some("127.0.0.1".parse().unwrap());
        assert!(p(vec![named]).hosts_are_local());
        assert!(!p(Vec::new()).hosts_are_local());
        assert_eq!(p(Vec::new()).sslmode, SslMode::Prefer);
    }
}
