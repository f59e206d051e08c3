//! Resolution: from what a connection string set to everything needed to
//! connect, the way libpq fills it in (`conninfo_add_defaults`,
//! `pqConnectOptions2` and the checks libpq makes when it starts connecting).
//!
//! Order of precedence per keyword, as in libpq: the string, then the
//! keyword's `PG*` environment variable, then the built-in default. Then the
//! host, `hostaddr` and port lists are paired, the user defaults to the OS
//! user and the database to the user, and, when no password was given, the
//! password file (`passfile`, `PGPASSFILE`, else `~/.pgpass`) is searched
//! once per host.
//!
//! Defaults that differ between builds of libpq follow **Debian's libpq**,
//! since the operators run Debian: with no host, the unix socket directory
//! `/var/run/postgresql` (upstream's default is `/tmp`), which is also the
//! directory `.pgpass` calls `localhost`. The port defaults to 5432.
//!
//! Options that `ConnectParams` cannot carry are ignored when harmless
//! (keepalives, `client_encoding`, Kerberos names ...) and refused when
//! ignoring them would weaken the connection: `require_auth`, `requirepeer`,
//! `sslcrl`, `sslcrldir`, `replication`, `channel_binding=require`,
//! `sslcertmode=require`, `ssl_min_protocol_version=TLSv1.3`,
//! `gssencmode=require` and `sslnegotiation=direct`
//! ([`ResolveError::Unsupported`] and friends).
//!
//! The environment is an input ([`Environment`]) so that callers and tests
//! decide what it holds; [`ProcessEnvironment`] reads the real one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keyword::{Keyword, KEYWORD_COUNT};
use super::params::{ConnectParams, HostParam, SslMode, TargetSessionAttrs};
use super::passfile::{self, PassfileKey, ResolveWarning};
use super::ConnInfo;

/// The unix socket directory used when no host is given (Debian's libpq).
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The port used when none is given.
pub const DEFAULT_PORT: u16 = 5432;

/// What resolution reads from the outside world, besides files.
pub trait Environment {
    /// An environment variable; `None` when unset (or not UTF-8).
    fn var(&self, name: &str) -> Option<String>;
    /// The name of the OS user the process runs as (libpq's default user).
    fn os_user(&self) -> Option<String>;
    /// The home directory from the password database, used when `HOME` is
    /// unset or empty (as libpq does).
    fn passwd_home(&self) -> Option<PathBuf>;
}

/// The real process environment and the password database entry of the
/// effective user.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn os_user(&self) -> Option<String> {
        passwd_entry().map(|(name, _)| name)
    }

    fn passwd_home(&self) -> Option<PathBuf> {
        passwd_entry().map(|(_, home)| home)
    }
}

/// `getpwuid_r(geteuid())`: user name and home directory.
fn passwd_entry() -> Option<(String, PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;

    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `pwd` is plain old data that getpwuid_r fills in; `buf` outlives
    // every pointer getpwuid_r stores into `pwd`, and we copy the strings out
    // before it goes away.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        let name = CStr::from_ptr(pwd.pw_name).to_str().ok()?.to_owned();
        let home = std::ffi::OsStr::from_bytes(CStr::from_ptr(pwd.pw_dir).to_bytes());
        Some((name, PathBuf::from(home)))
    }
}

/// An environment held in memory, for tests and for callers that want to
/// decide exactly what resolution sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapEnvironment {
    vars: HashMap<String, String>,
    os_user: Option<String>,
    passwd_home: Option<PathBuf>,
}

impl MapEnvironment {
    /// Nothing set: no variables, no OS user, no home directory.
    pub fn new() -> Self {
        MapEnvironment::default()
    }

    /// Sets a variable.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Sets the OS user name.
    pub fn with_os_user(mut self, user: impl Into<String>) -> Self {
        self.os_user = Some(user.into());
        self
    }

    /// Sets the password-database home directory.
    pub fn with_passwd_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.passwd_home = Some(home.into());
        self
    }
}

impl Environment for MapEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn os_user(&self) -> Option<String> {
        self.os_user.clone()
    }

    fn passwd_home(&self) -> Option<PathBuf> {
        self.passwd_home.clone()
    }
}

/// A value libpq would refuse when connecting. `Display` is libpq's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// `host` and `hostaddr` list different numbers of entries.
    #[error("could not match {hosts} host names to {hostaddrs} hostaddr values")]
    HostCountMismatch {
        /// Entries of `host`.
        hosts: usize,
        /// Entries of `hostaddr`.
        hostaddrs: usize,
    },
    /// `port` lists neither one entry nor one per host.
    #[error("could not match {ports} port numbers to {hosts} hosts")]
    PortCountMismatch {
        /// Entries of `port`.
        ports: usize,
        /// Number of hosts.
        hosts: usize,
    },
    /// A keyword with a fixed set of values has another one.
    #[error("invalid {keyword} value: \"{value}\"")]
    InvalidValue {
        /// The keyword.
        keyword: &'static str,
        /// Its value.
        value: String,
    },
    /// An integer keyword (`port`, `connect_timeout`) is not an integer.
    #[error("invalid integer value \"{value}\" for connection option \"{keyword}\"")]
    InvalidInteger {
        /// The keyword.
        keyword: &'static str,
        /// Its value.
        value: String,
    },
    /// A port outside 1-65535.
    #[error("invalid port number: \"{0}\"")]
    InvalidPort(String),
    /// A `hostaddr` entry that is not a numeric IP address (as the C
    /// library's `getaddrinfo` with `AI_NUMERICHOST` reads them, so `127.1`
    /// is 127.0.0.1, as in libpq).
    #[error("could not parse network address \"{value}\": {reason}")]
    InvalidHostaddr {
        /// The entry.
        value: String,
        /// `gai_strerror`'s reason.
        reason: String,
    },
    /// `ssl_min_protocol_version` / `ssl_max_protocol_version` is not a TLS
    /// version libpq knows.
    #[error("invalid \"{keyword}\" value: \"{value}\"")]
    InvalidSslProtocolVersion {
        /// The keyword.
        keyword: &'static str,
        /// Its value.
        value: String,
    },
    /// `sslrootcert=system` with an sslmode weaker than verify-full.
    #[error("weak sslmode \"{0}\" may not be used with sslrootcert=system (use \"verify-full\")")]
    WeakSslmodeWithSystemRoots(String),
    /// `sslnegotiation=direct` with an sslmode that allows plain text.
    #[error("weak sslmode \"{0}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")")]
    WeakSslmodeWithDirect(String),
    /// `ssl_min_protocol_version` above `ssl_max_protocol_version`.
    #[error("invalid SSL protocol version range")]
    InvalidSslProtocolRange,
    /// `gssencmode=require`: this client has no GSSAPI.
    #[error("gssencmode value \"{0}\" invalid when GSSAPI support is not compiled in")]
    GssNotSupported(String),
    /// The socket file name would exceed the system limit.
    #[error("Unix-domain socket path \"{0}\" is too long (maximum 107 bytes)")]
    SocketPathTooLong(String),
    /// No user given and the OS user name is unknown.
    #[error("could not look up the local user name")]
    NoUser,
    /// A service name was given (string or `PGSERVICE`): service files are
    /// not read by this crate.
    #[error("service \"{0}\" given, but connection service files are not supported")]
    ServiceNotSupported(String),
    /// A security-relevant option this client cannot honour; refusing it is
    /// safer than connecting with less protection than asked for.
    #[error(
        "connection option \"{keyword}\" with value \"{value}\" is not supported by this client"
    )]
    Unsupported {
        /// The keyword.
        keyword: &'static str,
        /// Its value.
        value: String,
    },
    /// `sslnegotiation=direct`, which this client cannot do yet.
    #[error("sslnegotiation value \"direct\" is not supported by this client")]
    DirectSslNotSupported,
}

/// The outcome of [`resolve`]: the parameters, and what libpq would have
/// printed as warnings on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Everything needed to connect.
    pub params: ConnectParams,
    /// Password-file problems (the file was then ignored).
    pub warnings: Vec<ResolveWarning>,
}

/// Fills in what the string left out from `env`, the defaults and the
/// password file, and checks every value libpq checks before or while
/// connecting, with libpq's messages. See the module documentation.
pub fn resolve(info: &ConnInfo, env: &dyn Environment) -> Result<Resolved, ResolveError> {
    Resolver::new(info, env).run()
}

/// [`resolve`] with the real process environment.
pub fn resolve_from_process_env(info: &ConnInfo) -> Result<Resolved, ResolveError> {
    resolve(info, &ProcessEnvironment)
}

struct Resolver<'a> {
    values: Vec<Option<String>>,
    env: &'a dyn Environment,
}

/// libpq's built-in defaults for a client without GSSAPI.
fn compiled_default(k: Keyword) -> Option<&'static str> {
    Some(match k {
        Keyword::ChannelBinding => "prefer",
        Keyword::Port => "5432",
        Keyword::Options => "",
        Keyword::Sslmode => "prefer",
        Keyword::Sslnegotiation => "postgres",
        Keyword::Sslcompression => "0",
        Keyword::Sslsni => "1",
        Keyword::SslMinProtocolVersion => "TLSv1.2",
        Keyword::Gssencmode => "disable",
        Keyword::Krbsrvname => "postgres",
        Keyword::Gssdelegation => "0",
        Keyword::TargetSessionAttrs => "any",
        Keyword::LoadBalanceHosts => "disable",
        _ => return None,
    })
}

/// libpq's `pqParseIntParam`: strtol with leading and trailing blanks.
fn parse_int(value: &str, keyword: &'static str) -> Result<i32, ResolveError> {
    let bad = || ResolveError::InvalidInteger {
        keyword,
        value: value.to_owned(),
    };
    let t = value.trim_start_matches(|c: char| c.is_ascii() && super::parse::is_c_space(c as u8));
    let t = t.trim_end_matches(|c: char| c.is_ascii() && super::parse::is_c_space(c as u8));
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    t.parse::<i32>().map_err(|_| bad())
}

/// A numeric address as libpq reads `hostaddr`: `getaddrinfo` with
/// `AI_NUMERICHOST` (never a DNS query), so the C library's rules apply
/// (`127.1`, `0x7f.1`, IPv6 scope ids). The error is `gai_strerror`'s text.
fn parse_numeric_address(s: &str) -> Result<IpAddr, String> {
    use std::ffi::{CStr, CString};
    use std::net::{Ipv4Addr, Ipv6Addr};

    let Ok(c) = CString::new(s) else {
        return Err("Name or service not known".to_owned());
    };
    // SAFETY: getaddrinfo gets a valid C string and zeroed hints, and fills
    // `res` with a list we read (checking the family before casting the
    // address) and then free with freeaddrinfo; gai_strerror returns a
    // static string.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_NUMERICHOST;
        hints.ai_family = libc::AF_UNSPEC;
        hints.ai_socktype = libc::SOCK_STREAM;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        let rc = libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res);
        if rc != 0 || res.is_null() {
            return Err(CStr::from_ptr(libc::gai_strerror(rc))
                .to_string_lossy()
                .into_owned());
        }
        let ai = &*res;
        let addr = match ai.ai_family {
            libc::AF_INET if !ai.ai_addr.is_null() => {
                let sin = &*(ai.ai_addr as *const libc::sockaddr_in);
                Ok(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            libc::AF_INET6 if !ai.ai_addr.is_null() => {
                let sin6 = &*(ai.ai_addr as *const libc::sockaddr_in6);
                Ok(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => Err("Address family for hostname not supported".to_owned()),
        };
        libc::freeaddrinfo(res);
        addr
    }
}

fn split_list(s: &str) -> Vec<&str> {
    s.split(',').collect()
}

impl<'a> Resolver<'a> {
    fn new(info: &ConnInfo, env: &'a dyn Environment) -> Self {
        let mut values = vec![None; KEYWORD_COUNT];
        let mut sslmode_defaulted = false;
        for &k in Keyword::ALL {
            let mut v = info.get(k).map(str::to_owned);
            if v.is_none() {
                v = k.env_var().and_then(|name| env.var(name));
            }
            if v.is_none() && k == Keyword::Sslmode {
                if env.var("PGREQUIRESSL").is_some_and(|r| r.starts_with('1')) {
                    v = Some("require".to_owned());
                } else {
                    sslmode_defaulted = true;
                }
            }
            if v.is_none() {
                v = compiled_default(k).map(str::to_owned);
            }
            if v.is_none() && k == Keyword::User {
                v = env.os_user();
            }
            values[k.index()] = v;
        }
        if sslmode_defaulted && values[Keyword::Sslrootcert.index()].as_deref() == Some("system") {
            values[Keyword::Sslmode.index()] = Some("verify-full".to_owned());
        }
        Resolver { values, env }
    }

    fn get(&self, k: Keyword) -> Option<&str> {
        self.values[k.index()].as_deref()
    }

    /// The value when set and not empty (libpq treats empty as absent for
    /// most keywords).
    fn nonempty(&self, k: Keyword) -> Option<&str> {
        self.get(k).filter(|v| !v.is_empty())
    }

    fn home_dir(&self) -> Option<PathBuf> {
        match self.env.var("HOME") {
            Some(h) if !h.is_empty() => Some(PathBuf::from(h)),
            _ => self.env.passwd_home(),
        }
    }

    fn check_choice(&self, k: Keyword, allowed: &[&str]) -> Result<(), ResolveError> {
        match self.get(k) {
            Some(v) if !allowed.contains(&v) => Err(ResolveError::InvalidValue {
                keyword: k.as_str(),
                value: v.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Options libpq would honour but `ConnectParams` cannot carry, where
    /// ignoring them would weaken the connection (or change its kind).
    fn refuse_unsupported(&self) -> Result<(), ResolveError> {
        let refused = |k: Keyword, value: &str| ResolveError::Unsupported {
            keyword: k.as_str(),
            value: value.to_owned(),
        };
        for k in [
            Keyword::RequireAuth,
            Keyword::Requirepeer,
            Keyword::Sslcrl,
            Keyword::Sslcrldir,
            Keyword::Replication,
        ] {
            if let Some(v) = self.nonempty(k) {
                return Err(refused(k, v));
            }
        }
        for (k, bad) in [
            (Keyword::ChannelBinding, "require"),
            (Keyword::Sslcertmode, "require"),
        ] {
            if self.get(k) == Some(bad) {
                return Err(refused(k, bad));
            }
        }
        if let Some(v) = self
            .get(Keyword::SslMinProtocolVersion)
            .filter(|v| v.eq_ignore_ascii_case("TLSv1.3"))
        {
            return Err(refused(Keyword::SslMinProtocolVersion, v));
        }
        Ok(())
    }

    fn run(self) -> Result<Resolved, ResolveError> {
        if let Some(service) = self.nonempty(Keyword::Service) {
            return Err(ResolveError::ServiceNotSupported(service.to_owned()));
        }

        // Pair up host, hostaddr and port (pqConnectOptions2).
        let hostaddrs: Option<Vec<&str>> = self.nonempty(Keyword::Hostaddr).map(split_list);
        let hosts: Option<Vec<&str>> = self.nonempty(Keyword::Host).map(split_list);
        let count = match (&hostaddrs, &hosts) {
            (Some(a), _) => a.len(),
            (None, Some(h)) => h.len(),
            (None, None) => 1,
        };
        if let Some(h) = &hosts {
            if h.len() != count {
                return Err(ResolveError::HostCountMismatch {
                    hosts: h.len(),
                    hostaddrs: count,
                });
            }
        }
        let ports: Vec<&str> = match self.nonempty(Keyword::Port) {
            None => vec![""; count],
            Some(p) => {
                let list = split_list(p);
                if list.len() == 1 {
                    vec![list[0]; count]
                } else if list.len() == count {
                    list
                } else {
                    return Err(ResolveError::PortCountMismatch {
                        ports: list.len(),
                        hosts: count,
                    });
                }
            }
        };

        let user = match self.nonempty(Keyword::User) {
            Some(u) => u.to_owned(),
            None => self.env.os_user().ok_or(ResolveError::NoUser)?,
        };
        let dbname = self
            .nonempty(Keyword::Dbname)
            .map_or_else(|| user.clone(), str::to_owned);
        let password = self.nonempty(Keyword::Password).map(str::to_owned);

        let mut warnings = Vec::new();
        let passfile: Option<PathBuf> = if password.is_none() {
            match self.nonempty(Keyword::Passfile) {
                Some(p) => Some(PathBuf::from(p)),
                None => self.home_dir().map(|h| h.join(".pgpass")),
            }
        } else {
            None
        };

        let mut host_params = Vec::with_capacity(count);
        for (i, raw_port) in ports.iter().enumerate() {
            let hostaddr_text = hostaddrs.as_ref().map_or("", |a| a[i]);
            let host_text = hosts.as_ref().map_or("", |h| h[i]);
            let host = if hostaddr_text.is_empty() && host_text.is_empty() {
                DEFAULT_SOCKET_DIR.to_owned()
            } else {
                host_text.to_owned()
            };
            let host_password = passfile.as_deref().and_then(|path| {
                let pwhost = if host.is_empty() {
                    hostaddr_text
                } else {
                    &host
                };
                passfile::lookup(
                    path,
                    &PassfileKey {
                        host: pwhost,
                        port: raw_port,
                        dbname: &dbname,
                        user: &user,
                    },
                    DEFAULT_SOCKET_DIR,
                    &mut warnings,
                )
            });
            host_params.push((host, hostaddr_text, *raw_port, host_password));
        }

        // Option checks, in pqConnectOptions2's order.
        self.check_choice(Keyword::ChannelBinding, &["disable", "prefer", "require"])?;
        let sslmode_text = self.get(Keyword::Sslmode).unwrap_or("prefer");
        let sslmode = match sslmode_text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ResolveError::InvalidValue {
                    keyword: "sslmode",
                    value: other.to_owned(),
                })
            }
        };
        if self.get(Keyword::Sslrootcert) == Some("system") && sslmode != SslMode::VerifyFull {
            return Err(ResolveError::WeakSslmodeWithSystemRoots(
                sslmode_text.to_owned(),
            ));
        }
        self.check_choice(Keyword::Sslnegotiation, &["postgres", "direct"])?;
        if self.get(Keyword::Sslnegotiation) == Some("direct") {
            if matches!(sslmode, SslMode::Disable | SslMode::Allow | SslMode::Prefer) {
                return Err(ResolveError::WeakSslmodeWithDirect(sslmode_text.to_owned()));
            }
            return Err(ResolveError::DirectSslNotSupported);
        }
        let tls_versions = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
        let version_ok = |v: Option<&str>| {
            v.is_none_or(|v| v.is_empty() || tls_versions.iter().any(|t| t.eq_ignore_ascii_case(v)))
        };
        for k in [
            Keyword::SslMinProtocolVersion,
            Keyword::SslMaxProtocolVersion,
        ] {
            if !version_ok(self.get(k)) {
                return Err(ResolveError::InvalidSslProtocolVersion {
                    keyword: k.as_str(),
                    value: self.get(k).unwrap_or_default().to_owned(),
                });
            }
        }
        if let (Some(min), Some(max)) = (
            self.nonempty(Keyword::SslMinProtocolVersion),
            self.nonempty(Keyword::SslMaxProtocolVersion),
        ) {
            let (min, max) = (min.to_ascii_lowercase(), max.to_ascii_lowercase());
            if min != "tlsv1" && (max == "tlsv1" || min > max) {
                return Err(ResolveError::InvalidSslProtocolRange);
            }
        }
        self.check_choice(Keyword::Sslcertmode, &["disable", "allow", "require"])?;
        self.check_choice(Keyword::Gssencmode, &["disable", "prefer", "require"])?;
        if self.get(Keyword::Gssencmode) == Some("require") {
            return Err(ResolveError::GssNotSupported("require".to_owned()));
        }
        let target_session_attrs = match self.get(Keyword::TargetSessionAttrs).unwrap_or("any") {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" => TargetSessionAttrs::Primary,
            "standby" => TargetSessionAttrs::Standby,
            "prefer-standby" => TargetSessionAttrs::PreferStandby,
            other => {
                return Err(ResolveError::InvalidValue {
                    keyword: "target_session_attrs",
                    value: other.to_owned(),
                })
            }
        };
        self.check_choice(Keyword::LoadBalanceHosts, &["disable", "random"])?;
        self.refuse_unsupported()?;

        // What libpq checks when it starts on each host.
        let mut resolved_hosts = Vec::with_capacity(count);
        for (host, hostaddr_text, raw_port, host_password) in host_params {
            let port = if raw_port.is_empty() {
                DEFAULT_PORT
            } else {
                let n = parse_int(raw_port, "port")?;
                u16::try_from(n)
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| ResolveError::InvalidPort(raw_port.to_owned()))?
            };
            let hostaddr = if hostaddr_text.is_empty() {
                None
            } else {
                Some(parse_numeric_address(hostaddr_text).map_err(|reason| {
                    ResolveError::InvalidHostaddr {
                        value: hostaddr_text.to_owned(),
                        reason,
                    }
                })?)
            };
            let entry = HostParam {
                host,
                hostaddr,
                port,
                password: host_password,
            };
            if entry.is_unix_socket() {
                let path = format!("{}/.s.PGSQL.{}", entry.host, port);
                if path.len() >= 108 {
                    return Err(ResolveError::SocketPathTooLong(path));
                }
            }
            resolved_hosts.push(entry);
        }
        if self.get(Keyword::LoadBalanceHosts) == Some("random") {
            use rand::seq::SliceRandom;
            resolved_hosts.shuffle(&mut rand::rng());
        }

        let connect_timeout = match self.get(Keyword::ConnectTimeout) {
            None => None,
            Some(t) => {
                let secs = parse_int(t, "connect_timeout")?;
                (secs > 0).then(|| Duration::from_secs(secs.max(2) as u64))
            }
        };

        let home = self.home_dir();
        let ssl_file = |k: Keyword, default_name: &str| -> Option<PathBuf> {
            match self.nonempty(k) {
                Some(p) => Some(PathBuf::from(p)),
                None => home
                    .as_deref()
                    .map(|h| h.join(".postgresql").join(default_name))
                    .filter(|p| Path::is_file(p)),
            }
        };

        let params = ConnectParams {
            hosts: resolved_hosts,
            user,
            password,
            passfile,
            dbname,
            sslmode,
            sslrootcert: ssl_file(Keyword::Sslrootcert, "root.crt"),
            sslcert: ssl_file(Keyword::Sslcert, "postgresql.crt"),
            sslkey: ssl_file(Keyword::Sslkey, "postgresql.key"),
            target_session_attrs,
            connect_timeout,
            application_name: self
                .nonempty(Keyword::ApplicationName)
                .or_else(|| self.nonempty(Keyword::FallbackApplicationName))
                .map(str::to_owned),
            options: self.nonempty(Keyword::Options).map(str::to_owned),
        };
        Ok(Resolved { params, warnings })
    }
}
