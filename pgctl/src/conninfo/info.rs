//! [`ConnInfo`]: what a connection string itself sets, and its two renderings.

use std::fmt;
use std::str::FromStr;

use super::keyword::{Keyword, KEYWORD_COUNT};
use super::params::{SslMode, TargetSessionAttrs};
use super::parse::{self, is_c_space, ParseError};

/// The keyword -> value pairs a connection string sets, nothing else: no
/// defaults, no environment, no `.pgpass` (see [`super::resolve()`] for those).
///
/// Values are kept verbatim, as libpq's `PQconninfoParse` returns them (a
/// multi-host value such as `host=a,,b` stays one comma-separated string,
/// empty entries included). Iteration follows **libpq's keyword order** (the
/// order of [`Keyword::ALL`], i.e. of `PQconninfoOptions`), whatever order the
/// string used; a keyword given twice keeps its last value, as in libpq.
///
/// `Display` renders the `key=value` form and `Debug` a map, both with
/// secrets (`password`, `sslpassword`) shown as `********`. The unredacted
/// renderings are [`ConnInfo::to_uri`] and [`ConnInfo::to_keyword_value`].
///
/// ```
/// use pgctl::conninfo::{ConnInfo, Keyword};
///
/// let info: ConnInfo = "postgresql://app:s3cret@db1:5432,db2:5433/appdb?sslmode=require"
///     .parse()
///     .unwrap();
/// assert_eq!(info.get(Keyword::Host), Some("db1,db2"));
/// assert_eq!(info.get(Keyword::Port), Some("5432,5433"));
/// assert_eq!(info.get(Keyword::Password), Some("s3cret"));
/// assert!(!format!("{info} {info:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConnInfo {
    values: Vec<Option<String>>,
}

impl Default for ConnInfo {
    fn default() -> Self {
        ConnInfo::new()
    }
}

impl ConnInfo {
    /// An empty set (what the empty string parses to).
    pub fn new() -> Self {
        ConnInfo {
            values: vec![None; KEYWORD_COUNT],
        }
    }

    /// Parses a `postgresql://` / `postgres://` URI or a `key=value` string,
    /// accepting and rejecting exactly what libpq 17's `PQconninfoParse`
    /// does, with the same values. Only syntax and keywords are checked.
    pub fn parse(s: &str) -> Result<ConnInfo, ParseError> {
        parse::parse(s)
    }

    /// [`ConnInfo::parse`] for strings people type or paste: it also refuses
    /// a URI with an `@` that libpq would not read as the end of the user
    /// name and password ([`ParseErrorKind::AmbiguousUriCredentials`]). That
    /// is what `postgresql://app:pa/ss@db.example/app` looks like: libpq
    /// would take `app` as the host, `pa` as the port and `ss@db.example/app`
    /// as the database, and a later error would show pieces of the password.
    /// A database name that really holds an `@` can be written `%40`.
    ///
    /// [`ParseErrorKind::AmbiguousUriCredentials`]: super::ParseErrorKind::AmbiguousUriCredentials
    pub fn parse_checked(s: &str) -> Result<ConnInfo, ParseError> {
        parse::parse_checked(s)
    }

    /// A builder with typed setters.
    pub fn builder() -> ConnInfoBuilder {
        ConnInfoBuilder::default()
    }

    /// The value the string set for `keyword`, if any (possibly empty).
    pub fn get(&self, keyword: Keyword) -> Option<&str> {
        self.values[keyword.index()].as_deref()
    }

    /// Sets a value (verbatim; nothing is checked).
    pub fn set(&mut self, keyword: Keyword, value: impl Into<String>) -> &mut Self {
        self.values[keyword.index()] = Some(value.into());
        self
    }

    /// Unsets a keyword, returning its value.
    pub fn remove(&mut self, keyword: Keyword) -> Option<String> {
        self.values[keyword.index()].take()
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }

    /// How many keywords are set.
    pub fn len(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }

    /// The keywords that are set, with their values, in libpq's keyword order.
    /// Secrets are included unredacted.
    pub fn iter(&self) -> impl Iterator<Item = (Keyword, &str)> + '_ {
        Keyword::ALL
            .iter()
            .zip(&self.values)
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
    }

    /// The same set with secrets replaced by `********` (for logs and output).
    pub fn redacted(&self) -> ConnInfo {
        let mut out = self.clone();
        for k in Keyword::ALL {
            if k.is_secret() {
                if let Some(v) = out.values[k.index()].as_mut() {
                    *v = REDACTED.to_owned();
                }
            }
        }
        out
    }

    /// Renders the `key=value` form, **including the password**. Values are
    /// single-quoted when needed (empty, blanks, `'` or `\`), with `\'` and `\\`
    /// escapes; parsing the result gives back an equal `ConnInfo`.
    pub fn to_keyword_value(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.iter() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k.as_str());
            out.push('=');
            push_kv_value(&mut out, v);
        }
        out
    }

    /// Renders a `postgresql://` URI, **including the password**.
    pub fn to_uri(&self) -> String {
        self.to_uri_with(UriScheme::Postgresql)
    }

    /// Renders a URI with the chosen scheme, **including the password**.
    ///
    /// Everything outside RFC 3986's unreserved characters is percent-encoded
    /// (IPv6 addresses go in brackets). Host and port go into the authority
    /// part when libpq would read them back identically there, otherwise into
    /// query parameters (`?host=...&port=...`), as do empty user, password and
    /// database names; parsing the result gives back an equal `ConnInfo`.
    pub fn to_uri_with(&self, scheme: UriScheme) -> String {
        let mut out = String::from(scheme.prefix());
        let user = self.get(Keyword::User).filter(|u| !u.is_empty());
        let password = self.get(Keyword::Password).filter(|p| !p.is_empty());
        if user.is_some() || password.is_some() {
            if let Some(u) = user {
                percent_encode(&mut out, u, b"");
            }
            if let Some(p) = password {
                out.push(':');
                percent_encode(&mut out, p, b"");
            }
            out.push('@');
        }
        let netloc = self.netloc_hosts();
        if let Some(entries) = &netloc {
            for (i, (host, port)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if host.contains(':') {
                    out.push('[');
                    percent_encode(&mut out, host, b":");
                    out.push(']');
                } else {
                    percent_encode(&mut out, host, b"");
                }
                if let Some(port) = port {
                    out.push(':');
                    percent_encode(&mut out, port, b"");
                }
            }
        }
        let dbname = self.get(Keyword::Dbname).filter(|d| !d.is_empty());
        if let Some(db) = dbname {
            out.push('/');
            percent_encode(&mut out, db, b"");
        }
        let mut first = true;
        for (k, v) in self.iter() {
            let in_authority = match k {
                Keyword::User => user.is_some(),
                Keyword::Password => password.is_some(),
                Keyword::Host | Keyword::Port => netloc.is_some(),
                Keyword::Dbname => dbname.is_some(),
                _ => false,
            };
            if in_authority {
                continue;
            }
            if first {
                out.push('?');
                first = false;
            } else {
                out.push('&');
            }
            out.push_str(k.as_str());
            out.push('=');
            percent_encode(&mut out, v, b"");
        }
        out
    }

    /// The `postgresql://` URI with secrets shown as `********` (for display).
    pub fn redacted_uri(&self) -> String {
        self.redacted().to_uri()
    }

    /// Host and port entries for the authority part, when libpq's URI parser
    /// would read them back to exactly `host` and `port`.
    fn netloc_hosts(&self) -> Option<Vec<(&str, Option<&str>)>> {
        let host = self.get(Keyword::Host)?;
        let hosts: Vec<&str> = host.split(',').collect();
        match self.get(Keyword::Port) {
            // One host, no port: "h" (the host must not be empty, or libpq
            // would not store it).
            None => (hosts.len() == 1 && !host.is_empty()).then(|| vec![(host, None)]),
            Some(port) => {
                let ports: Vec<&str> = port.split(',').collect();
                // libpq joins the netloc ports with commas and stores the
                // result only when it is not empty.
                if ports.len() != hosts.len()
                    || port.is_empty()
                    || (host.is_empty() && hosts.len() == 1)
                {
                    return None;
                }
                Some(hosts.into_iter().zip(ports.into_iter().map(Some)).collect())
            }
        }
    }
}

const REDACTED: &str = "********";

/// Which URI scheme to write (libpq accepts both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum UriScheme {
    /// `postgresql://`
    #[default]
    Postgresql,
    /// `postgres://`
    Postgres,
}

impl UriScheme {
    fn prefix(self) -> &'static str {
        match self {
            UriScheme::Postgresql => "postgresql://",
            UriScheme::Postgres => "postgres://",
        }
    }
}

fn push_kv_value(out: &mut String, v: &str) {
    let needs_quotes = v.is_empty() || v.bytes().any(|b| is_c_space(b) || b == b'\'' || b == b'\\');
    if !needs_quotes {
        out.push_str(v);
        return;
    }
    out.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
}

fn percent_encode(out: &mut String, v: &str, keep: &[u8]) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl FromStr for ConnInfo {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnInfo::parse(s)
    }
}

impl fmt::Display for ConnInfo {
    /// The `key=value` form with secrets shown as `********`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted().to_keyword_value())
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = self.redacted();
        f.debug_tuple("ConnInfo")
            .field(&DebugMap(&redacted))
            .finish()
    }
}

struct DebugMap<'a>(&'a ConnInfo);

impl fmt::Debug for DebugMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k.as_str(), v)))
            .finish()
    }
}

/// Typed construction of a [`ConnInfo`]; render it with
/// [`ConnInfo::to_uri`] or [`ConnInfo::to_keyword_value`].
///
/// ```
/// use pgctl::conninfo::ConnInfo;
/// use pgctl::connect::SslMode;
///
/// let info = ConnInfo::builder()
///     .user("app_remote")
///     .password("p@ss word")
///     .host("203.0.113.5")
///     .port(5432)
///     .dbname("appdb")
///     .sslmode(SslMode::Require)
///     .build();
/// assert_eq!(
///     info.to_uri(),
///     "postgresql://app_remote:p%40ss%20word@203.0.113.5:5432/appdb?sslmode=require"
/// );
/// assert_eq!(
///     info.to_keyword_value(),
///     "user=app_remote password='p@ss word' dbname=appdb host=203.0.113.5 port=5432 sslmode=require"
/// );
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnInfoBuilder {
    info: ConnInfo,
}

impl fmt::Debug for ConnInfoBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnInfoBuilder").field(&self.info).finish()
    }
}

impl ConnInfoBuilder {
    /// Sets any keyword, verbatim.
    pub fn set(mut self, keyword: Keyword, value: impl Into<String>) -> Self {
        self.info.set(keyword, value);
        self
    }

    /// `host` (one host; call [`ConnInfoBuilder::hosts`] for several).
    pub fn host(self, host: impl Into<String>) -> Self {
        self.set(Keyword::Host, host)
    }

    /// `host` as a comma-separated list.
    pub fn hosts<I, S>(self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = hosts.into_iter().map(|h| h.as_ref().to_owned()).collect();
        self.set(Keyword::Host, joined.join(","))
    }

    /// `port` (one port, used for every host).
    pub fn port(self, port: u16) -> Self {
        self.set(Keyword::Port, port.to_string())
    }

    /// `port` as a comma-separated list, one per host.
    pub fn ports<I: IntoIterator<Item = u16>>(self, ports: I) -> Self {
        let joined: Vec<String> = ports.into_iter().map(|p| p.to_string()).collect();
        self.set(Keyword::Port, joined.join(","))
    }

    /// `user`
    pub fn user(self, user: impl Into<String>) -> Self {
        self.set(Keyword::User, user)
    }

    /// `password`
    pub fn password(self, password: impl Into<String>) -> Self {
        self.set(Keyword::Password, password)
    }

    /// `dbname`
    pub fn dbname(self, dbname: impl Into<String>) -> Self {
        self.set(Keyword::Dbname, dbname)
    }

    /// `sslmode`
    pub fn sslmode(self, mode: SslMode) -> Self {
        self.set(Keyword::Sslmode, mode.as_str())
    }

    /// `sslrootcert`
    pub fn sslrootcert(self, path: impl Into<String>) -> Self {
        self.set(Keyword::Sslrootcert, path)
    }

    /// `target_session_attrs`
    pub fn target_session_attrs(self, attrs: TargetSessionAttrs) -> Self {
        self.set(Keyword::TargetSessionAttrs, attrs.as_str())
    }

    /// `connect_timeout`, in seconds.
    pub fn connect_timeout(self, seconds: u32) -> Self {
        self.set(Keyword::ConnectTimeout, seconds.to_string())
    }

    /// `application_name`
    pub fn application_name(self, name: impl Into<String>) -> Self {
        self.set(Keyword::ApplicationName, name)
    }

    /// The finished set.
    pub fn build(self) -> ConnInfo {
        self.info
    }
}
