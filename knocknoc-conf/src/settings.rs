//! The typed view: the keys Knocknoc knows ([`Listen`],
//! [`TrustedForwarders`], [`DatabaseUrl`]), read from and written to a
//! [`Document`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use thiserror::Error;

use crate::document::{Document, LineContent};
use crate::error::{EditError, ParseErrorKind};
use crate::parser::{column_of, parse_value};
use crate::redact::redact_secrets;
use crate::value::{Value, ValueStyle};

/// The spelling this crate writes for each known key. Reading ignores ASCII
/// case; an existing key keeps its spelling when set.
pub mod keys {
    /// The address the web app listens on.
    pub const LISTEN: &str = "Listen";
    /// The reverse proxies whose forwarding headers are trusted.
    pub const TRUSTED_FORWARDERS: &str = "TrustedForwarders";
    /// The PostgreSQL connection string.
    pub const DATABASE_URL: &str = "DatabaseURL";
    /// All known keys.
    pub const ALL: [&str; 3] = [LISTEN, TRUSTED_FORWARDERS, DATABASE_URL];
}

/// `Listen`: an IP address and a port (1-65535). Written `127.0.0.1:8756`,
/// IPv6 in brackets: `[::1]:8756`. Host names and IPv6 zone ids are not
/// accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Listen(SocketAddr);

/// Why a `Listen` value is not an IP address and port.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenError {
    /// No `:port` part.
    #[error("expected IP:port, e.g. 127.0.0.1:8756 or [::1]:8756")]
    MissingPort,
    /// An IPv6 address without brackets.
    #[error("an IPv6 address must be in brackets, e.g. [::1]:8756")]
    Ipv6WithoutBrackets,
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address (host names are not accepted)")]
    BadAddress(String),
    /// The port part is not a number from 1 to 65535.
    #[error("{0:?} is not a port number from 1 to 65535")]
    BadPort(String),
    /// An IPv6 address with a zone id or flow info.
    #[error("IPv6 zone ids and flow info are not supported")]
    Scoped,
}

impl Listen {
    /// Knocknoc's default, `127.0.0.1:8756`.
    pub const DEFAULT: Listen = Listen(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8756));

    /// Checks that the port is not 0 and that an IPv6 address has no zone id
    /// or flow info.
    pub fn new(addr: SocketAddr) -> Result<Self, ListenError> {
        if addr.port() == 0 {
            return Err(ListenError::BadPort("0".into()));
        }
        if let SocketAddr::V6(v6) = addr {
            if v6.scope_id() != 0 || v6.flowinfo() != 0 {
                return Err(ListenError::Scoped);
            }
        }
        Ok(Listen(addr))
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen::DEFAULT
    }
}

impl FromStr for Listen {
    type Err = ListenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| ListenError::BadAddress(s.to_owned()))?;
            let ip = Ipv6Addr::from_str(inside)
                .map_err(|_| ListenError::BadAddress(inside.to_owned()))?;
            let port = after.strip_prefix(':').ok_or(ListenError::MissingPort)?;
            (IpAddr::V6(ip), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or(ListenError::MissingPort)?;
            if host.contains(':') {
                return Err(if host.parse::<Ipv6Addr>().is_ok() {
                    ListenError::Ipv6WithoutBrackets
                } else {
                    ListenError::BadAddress(host.to_owned())
                });
            }
            let ip =
                Ipv4Addr::from_str(host).map_err(|_| ListenError::BadAddress(host.to_owned()))?;
            (IpAddr::V4(ip), port)
        };
        let number = Some(port)
            .filter(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .ok_or_else(|| ListenError::BadPort(port.to_owned()))?;
        Ok(Listen(SocketAddr::new(ip, number)))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.ip() {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.0.port()),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.0.port()),
        }
    }
}

/// `TrustedForwarders`: a list of networks (CIDRs), written as an array of
/// strings (`["10.0.0.0/8", "192.168.1.0/24"]`) or as one comma-separated
/// string (`10.0.0.0/8, 192.168.1.0/24`).
///
/// A bare address means that single host (`/32` or `/128`). A network with
/// host bits set (`10.0.0.1/8`) is rejected rather than silently truncated:
/// it usually hides a typo, and the error names the network that was
/// probably meant. An empty list (`[]` or `""`) trusts no forwarder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrustedForwarders(Vec<IpNet>);

/// Why an entry of `TrustedForwarders` is not a network.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{entry:?}: {kind}")]
pub struct CidrError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub kind: CidrErrorKind,
}

/// What is wrong with a `TrustedForwarders` entry.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CidrErrorKind {
    /// Nothing between two commas.
    #[error("empty entry")]
    Empty,
    /// Not `address/prefix` nor an address.
    #[error("not a CIDR such as 10.0.0.0/8 or an IP address")]
    NotACidr,
    /// The address has bits set beyond the prefix.
    #[error("host bits are set; the network is {network}")]
    HostBitsSet {
        /// The network the entry probably meant.
        network: IpNet,
    },
}

impl TrustedForwarders {
    /// Checks that no network has host bits set.
    pub fn new(nets: Vec<IpNet>) -> Result<Self, CidrError> {
        for net in &nets {
            check_host_bits(net, &net.to_string())?;
        }
        Ok(TrustedForwarders(nets))
    }

    /// The networks, in the file's order.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// Parses one entry: `address/prefix` or a bare address.
    pub fn parse_entry(entry: &str) -> Result<IpNet, CidrError> {
        let error = |kind| CidrError {
            entry: entry.to_owned(),
            kind,
        };
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err(error(CidrErrorKind::Empty));
        }
        let net = if trimmed.contains('/') {
            IpNet::from_str(trimmed).map_err(|_| error(CidrErrorKind::NotACidr))?
        } else {
            IpNet::from(IpAddr::from_str(trimmed).map_err(|_| error(CidrErrorKind::NotACidr))?)
        };
        check_host_bits(&net, entry)?;
        Ok(net)
    }

    /// Parses a comma-separated list; each entry is trimmed of blanks. Gives
    /// each entry's byte offset in `s` along with any error.
    fn parse_list(s: &str) -> Result<Self, (usize, CidrError)> {
        if s.trim().is_empty() {
            return Ok(TrustedForwarders(Vec::new()));
        }
        let mut nets = Vec::new();
        let mut offset = 0;
        for part in s.split(',') {
            let lead = part.len() - part.trim_start().len();
            nets.push(Self::parse_entry(part).map_err(|e| (offset + lead, e))?);
            offset += part.len() + 1;
        }
        Ok(TrustedForwarders(nets))
    }
}

fn check_host_bits(net: &IpNet, entry: &str) -> Result<(), CidrError> {
    if net.addr() != net.network() {
        return Err(CidrError {
            entry: entry.to_owned(),
            kind: CidrErrorKind::HostBitsSet {
                network: net.trunc(),
            },
        });
    }
    Ok(())
}

/// Knocknoc's default: `127.0.0.1/32`.
impl Default for TrustedForwarders {
    fn default() -> Self {
        TrustedForwarders(vec![IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST))])
    }
}

/// A comma-separated list of CIDRs (what the installer asks for).
impl FromStr for TrustedForwarders {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_list(s).map_err(|(_, e)| e)
    }
}

/// The comma-separated form, each network as `address/prefix`.
impl fmt::Display for TrustedForwarders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// `DatabaseURL`: the PostgreSQL connection string, kept as text (pgctl
/// parses it). `Debug` and `Display` redact the password; use
/// [`DatabaseUrl::expose_secret`] to get the real string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DatabaseUrl(String);

/// Why a `DatabaseURL` value cannot be used.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseUrlError {
    /// The string is empty.
    #[error("the connection string is empty")]
    Empty,
    /// The string contains NUL.
    #[error("the connection string contains NUL")]
    Nul,
}

impl DatabaseUrl {
    /// Wraps a connection string; it must be non-empty and free of NUL.
    pub fn new(url: impl Into<String>) -> Result<Self, DatabaseUrlError> {
        let url = url.into();
        if url.is_empty() {
            Err(DatabaseUrlError::Empty)
        } else if url.contains('\0') {
            Err(DatabaseUrlError::Nul)
        } else {
            Ok(DatabaseUrl(url))
        }
    }

    /// The connection string with its password. Do not print it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The connection string with its password, consuming `self`.
    pub fn into_secret(self) -> String {
        self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&redact_secrets(&self.0))
            .finish()
    }
}

/// The connection string with its password redacted.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_secrets(&self.0))
    }
}

/// The known settings of a document. A key that is absent is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `Listen`.
    pub listen: Option<Listen>,
    /// `TrustedForwarders`.
    pub trusted_forwarders: Option<TrustedForwarders>,
    /// `DatabaseURL`.
    pub database_url: Option<DatabaseUrl>,
}

/// `Key = value` lines of the known settings that are present, with the
/// connection string's password redacted.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(listen) = &self.listen {
            writeln!(f, "{} = {listen}", keys::LISTEN)?;
        }
        if let Some(tf) = &self.trusted_forwarders {
            writeln!(f, "{} = {tf}", keys::TRUSTED_FORWARDERS)?;
        }
        if let Some(url) = &self.database_url {
            writeln!(f, "{} = {url}", keys::DATABASE_URL)?;
        }
        Ok(())
    }
}

/// A problem with a known setting, at a line and column.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("line {line}, column {column}: {kind}")]
pub struct SettingsError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: SettingsErrorKind,
}

/// What is wrong with a known setting.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsErrorKind {
    /// The line setting a known key does not follow the grammar.
    #[error("{key}: {error}")]
    Syntax {
        /// The key as spelled.
        key: String,
        /// The grammar error.
        error: ParseErrorKind,
    },
    /// A known key given a second time.
    #[error("{key} is given again (first on line {first_line})")]
    Duplicate {
        /// The key as spelled on this line.
        key: String,
        /// 1-based line of the first occurrence.
        first_line: usize,
    },
    /// A value of the wrong kind, e.g. an integer for `Listen`.
    #[error("{key} must be {expected}, not {found}")]
    WrongType {
        /// The key as spelled.
        key: String,
        /// What the key takes.
        expected: &'static str,
        /// What the value is.
        found: &'static str,
    },
    /// A bad `Listen` value.
    #[error("Listen: {0}")]
    Listen(ListenError),
    /// A bad `TrustedForwarders` entry.
    #[error("TrustedForwarders: {0}")]
    TrustedForwarders(CidrError),
    /// A bad `DatabaseURL` value.
    #[error("DatabaseURL: {0}")]
    DatabaseUrl(DatabaseUrlError),
}

/// Every problem found with the known settings, in line order.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Listen,
    TrustedForwarders,
    DatabaseUrl,
}

impl Known {
    fn of(key: &str) -> Option<Known> {
        [Known::Listen, Known::TrustedForwarders, Known::DatabaseUrl]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(key))
    }

    fn name(self) -> &'static str {
        match self {
            Known::Listen => keys::LISTEN,
            Known::TrustedForwarders => keys::TRUSTED_FORWARDERS,
            Known::DatabaseUrl => keys::DATABASE_URL,
        }
    }
}

/// Character offset of byte `offset` of a string value within the value's
/// text, when it can be told exactly (no escapes before it).
fn value_char_offset(repr: &str, style: ValueStyle, s: &str, offset: usize) -> usize {
    match style {
        ValueStyle::Bare => s[..offset].chars().count(),
        ValueStyle::SingleQuoted => s[..offset].chars().count() + 1,
        ValueStyle::DoubleQuoted if !repr.contains('\\') => s[..offset].chars().count() + 1,
        _ => 0,
    }
}

impl Document {
    /// The known settings, or every problem with them: lines setting a known
    /// key that do not follow the grammar, known keys given twice (naming both
    /// lines), and values that are not what the key takes. Each error has a
    /// line and a column. Keys match ignoring ASCII case.
    ///
    /// Unknown keys are not looked at, and invalid lines that do not start
    /// with a known key are not errors here; see [`Document::parse_errors`].
    pub fn settings(&self) -> Result<Settings, SettingsErrors> {
        let (settings, errors) = self.settings_and_errors();
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsErrors(errors))
        }
    }

    /// Like [`Document::settings`], but keeps what could be read: a key with
    /// any problem (including one given twice) is `None` in the settings and
    /// has its errors in the list. Useful to offer the current values as
    /// defaults while asking again for a broken one.
    pub fn settings_and_errors(&self) -> (Settings, Vec<SettingsError>) {
        let mut settings = Settings::default();
        let mut errors = Vec::new();
        let mut first_seen: [Option<usize>; 3] = [None; 3];
        for (index, line) in self.lines().iter().enumerate() {
            let line_no = index + 1;
            let Some(key) = line.key() else { continue };
            let Some(known) = Known::of(key) else {
                continue;
            };
            let mut error = |column, kind| {
                errors.push(SettingsError {
                    line: line_no,
                    column,
                    kind,
                })
            };
            let seen = &mut first_seen[known as usize];
            let entry = match line.content() {
                LineContent::Entry(entry) => entry,
                LineContent::Invalid(invalid) => {
                    seen.get_or_insert(line_no);
                    error(
                        invalid.column(),
                        SettingsErrorKind::Syntax {
                            key: key.to_owned(),
                            error: invalid.kind().clone(),
                        },
                    );
                    continue;
                }
                _ => continue,
            };
            if let Some(first_line) = *seen {
                let column = entry.indent.chars().count() + 1;
                error(
                    column,
                    SettingsErrorKind::Duplicate {
                        key: key.to_owned(),
                        first_line,
                    },
                );
                continue;
            }
            *seen = Some(line_no);
            let column = entry.value_column();
            let wrong_type = |expected| SettingsErrorKind::WrongType {
                key: key.to_owned(),
                expected,
                found: entry.value().kind_name(),
            };
            match known {
                Known::Listen => match entry.value() {
                    Value::String(s) => match s.parse() {
                        Ok(listen) => settings.listen = Some(listen),
                        Err(e) => error(column, SettingsErrorKind::Listen(e)),
                    },
                    _ => error(column, wrong_type("a string such as 127.0.0.1:8756")),
                },
                Known::TrustedForwarders => match entry.value() {
                    Value::String(s) => match TrustedForwarders::parse_list(s) {
                        Ok(tf) => settings.trusted_forwarders = Some(tf),
                        Err((offset, e)) => {
                            let shift = value_char_offset(&entry.repr, entry.style, s, offset);
                            error(column + shift, SettingsErrorKind::TrustedForwarders(e));
                        }
                    },
                    Value::Array(items) => {
                        let parsed: Result<Vec<_>, _> = items
                            .iter()
                            .enumerate()
                            .map(|(i, item)| {
                                TrustedForwarders::parse_entry(item).map_err(|e| (i, e))
                            })
                            .collect();
                        match parsed {
                            Ok(nets) => settings.trusted_forwarders = Some(TrustedForwarders(nets)),
                            Err((i, e)) => {
                                let shift = parse_value(&entry.repr)
                                    .ok()
                                    .and_then(|p| p.item_offsets.get(i).copied())
                                    .map_or(0, |o| column_of(&entry.repr, o) - 1);
                                error(column + shift, SettingsErrorKind::TrustedForwarders(e));
                            }
                        }
                    }
                    _ => error(
                        column,
                        wrong_type("an array of CIDRs or a comma-separated string"),
                    ),
                },
                Known::DatabaseUrl => match entry.value() {
                    Value::String(s) => match DatabaseUrl::new(s.as_str()) {
                        Ok(url) => settings.database_url = Some(url),
                        Err(e) => error(column, SettingsErrorKind::DatabaseUrl(e)),
                    },
                    _ => error(column, wrong_type("a connection string")),
                },
            }
        }
        // A key with any problem (bad, duplicated) has no trustworthy value.
        for error in &errors {
            match self.lines()[error.line - 1].key().and_then(Known::of) {
                Some(Known::Listen) => settings.listen = None,
                Some(Known::TrustedForwarders) => settings.trusted_forwarders = None,
                Some(Known::DatabaseUrl) => settings.database_url = None,
                None => {}
            }
        }
        (settings, errors)
    }

    /// Sets `Listen` (see [`Document::set`] for what is kept).
    pub fn set_listen(&mut self, listen: Listen) -> Result<(), EditError> {
        let key = self.spelling(Known::Listen);
        self.set(&key, listen.to_string())
    }

    /// Sets `TrustedForwarders`, as an array if the file already writes it
    /// as one, otherwise as a comma-separated string.
    pub fn set_trusted_forwarders(
        &mut self,
        forwarders: &TrustedForwarders,
    ) -> Result<(), EditError> {
        let key = self.spelling(Known::TrustedForwarders);
        let as_array = self
            .entry(&key)
            .is_some_and(|e| matches!(e.value(), Value::Array(_)));
        let value = if as_array {
            Value::Array(forwarders.nets().iter().map(ToString::to_string).collect())
        } else {
            Value::String(forwarders.to_string())
        };
        self.set(&key, value)
    }

    /// Sets `DatabaseURL`, quoted as needed so that it reads back exactly.
    pub fn set_database_url(&mut self, url: &DatabaseUrl) -> Result<(), EditError> {
        let key = self.spelling(Known::DatabaseUrl);
        self.set(&key, url.expose_secret())
    }

    /// The key as the file spells it, or this crate's spelling.
    fn spelling(&self, known: Known) -> String {
        self.lines()
            .iter()
            .filter_map(|l| l.key())
            .find(|k| k.eq_ignore_ascii_case(known.name()))
            .unwrap_or(known.name())
            .to_owned()
    }
}
