//! Which rule a connection hits first, decided the way the server's
//! `check_hba()` decides it (hba.c: `check_db()`, `check_role()`,
//! `check_hostname()`, `check_ip()`, `check_same_host_or_net()`).
//!
//! What the file alone cannot say (role membership, the server's network
//! interfaces, DNS, the regular expression engine) comes from a
//! [`MatchContext`] the caller implements. Every question may be answered
//! "unknown"; the matcher then says which rules *might* match before the
//! first one that surely does.
//!
//! ```
//! use std::net::IpAddr;
//! use pghba::matcher::{Connection, RuleSet, StaticContext};
//! use pghba::{NoFiles, PgVersion, ValidateOptions};
//!
//! let text = b"local all all peer\n\
//!              host  all all 10.0.0.0/8 reject\n\
//!              hostssl app app_remote 0.0.0.0/0 scram-sha-256\n";
//! let rules = RuleSet::load("/etc/pg_hba.conf", text, &mut NoFiles,
//!                           &ValidateOptions::for_version(PgVersion::V16));
//! let from: IpAddr = "203.0.113.7".parse().unwrap();
//! let conn = Connection::host(from, "app", "app_remote").with_ssl(true);
//! let hit = rules.first_match(&conn, &StaticContext::default());
//! assert_eq!(hit.rule().map(|r| r.line), Some(3));
//! assert!(hit.certain);
//!
//! let plain = Connection::host(from, "app", "app_remote");
//! assert!(rules.first_match(&plain, &StaticContext::default()).rule().is_none());
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use crate::check::{check_bytes, FileLoader, FileVerdict, FsLoader};
use crate::rule::{AuthToken, ConnectionType, HbaAddress, HbaRule};
use crate::version::{PgVersion, ValidateOptions};

/// How a client reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    /// Over the Unix-domain socket.
    Local,
    /// Over TCP from `addr`.
    Host {
        /// SSL is in use.
        ssl: bool,
        /// GSSAPI encryption is in use (the server never runs it together
        /// with SSL).
        gss: bool,
        /// The client address the server sees. An IPv4 client that reached
        /// an IPv6 socket arrives as `::ffff:a.b.c.d` and matches IPv6 rules
        /// only: the server compares address families before masks.
        addr: IpAddr,
    },
}

/// A connection attempt, as `check_hba()` sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Transport.
    pub kind: ConnectionKind,
    /// Database name asked for (libpq defaults it to the user name).
    pub database: String,
    /// Role name asked for.
    pub user: String,
    /// A physical replication connection (`replication=true`): it matches
    /// only the `replication` keyword in the database column. Logical
    /// replication (`replication=database`) connects to a database and
    /// matches like an ordinary connection: leave this `false` for it.
    pub replication: bool,
}

impl Connection {
    /// A TCP connection without SSL or GSSAPI encryption.
    pub fn host(addr: IpAddr, database: impl Into<String>, user: impl Into<String>) -> Self {
        Connection {
            kind: ConnectionKind::Host {
                ssl: false,
                gss: false,
                addr,
            },
            database: database.into(),
            user: user.into(),
            replication: false,
        }
    }

    /// A Unix-socket connection.
    pub fn local(database: impl Into<String>, user: impl Into<String>) -> Self {
        Connection {
            kind: ConnectionKind::Local,
            database: database.into(),
            user: user.into(),
            replication: false,
        }
    }

    /// The same connection with SSL on or off (TCP only; SSL on turns GSSAPI
    /// encryption off).
    pub fn with_ssl(mut self, on: bool) -> Self {
        if let ConnectionKind::Host { ssl, gss, .. } = &mut self.kind {
            *ssl = on;
            if on {
                *gss = false;
            }
        }
        self
    }

    /// The same connection with GSSAPI encryption on or off (TCP only; on
    /// turns SSL off).
    pub fn with_gss(mut self, on: bool) -> Self {
        if let ConnectionKind::Host { ssl, gss, .. } = &mut self.kind {
            *gss = on;
            if on {
                *ssl = false;
            }
        }
        self
    }

    /// The same connection as a physical replication connection.
    pub fn with_replication(mut self, on: bool) -> Self {
        self.replication = on;
        self
    }
}

/// The reverse lookup of a client address (`getnameinfo(NI_NAMEREQD)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReverseLookup {
    /// Not known to the caller.
    Unknown,
    /// The address has no name (then no host-name rule matches).
    NoName,
    /// The address's name.
    Name(String),
}

/// What the matcher asks the caller. Every method may answer `None`
/// ("unknown"); the defaults do, except [`MatchContext::regex_match`].
pub trait MatchContext {
    /// The server's `is_member()`: does role `user` belong to role `role`,
    /// directly or through other roles? A role belongs to itself. The
    /// server ignores `INHERIT` here, and superusers are *not* members of
    /// every role (on every version 13-18). `false` when either role does not
    /// exist.
    fn is_member(&self, user: &str, role: &str) -> Option<bool> {
        let _ = (user, role);
        None
    }

    /// The server's network interfaces as (address, netmask) pairs, for
    /// `samehost` (a client equal to one of the addresses) and `samenet` (a
    /// client inside one of the interfaces' networks).
    fn interfaces(&self) -> Option<Vec<(IpAddr, IpAddr)>> {
        None
    }

    /// Reverse lookup of a client address, for host-name rules.
    fn reverse_lookup(&self, addr: IpAddr) -> ReverseLookup {
        let _ = addr;
        ReverseLookup::Unknown
    }

    /// Forward lookup of a host name (all its addresses); a host-name rule
    /// matches only when the client address is among them.
    fn forward_lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let _ = name;
        None
    }

    /// Does `subject` contain a match of the PostgreSQL advanced regular
    /// expression `pattern` (16+: the text after `/`)? The default is
    /// [`approximate_regex_match`]: exact for a common subset, unknown
    /// beyond it.
    fn regex_match(&self, pattern: &str, subject: &str) -> Option<bool> {
        approximate_regex_match(pattern, subject)
    }
}

/// A [`MatchContext`] from tables the caller fills in; anything not filled
/// in is unknown.
#[derive(Clone, Debug, Default)]
pub struct StaticContext {
    /// Roles known to exist, each with the roles it is directly a member
    /// of. When `Some`, membership is answered for every pair (a role
    /// missing from the map does not exist).
    pub roles: Option<HashMap<String, Vec<String>>>,
    /// The server's interfaces, (address, netmask).
    pub interfaces: Option<Vec<(IpAddr, IpAddr)>>,
    /// Reverse lookups; addresses missing from the map are unknown unless
    /// `dns_complete`.
    pub reverse: HashMap<IpAddr, String>,
    /// Forward lookups; names missing from the map are unknown unless
    /// `dns_complete`.
    pub forward: HashMap<String, Vec<IpAddr>>,
    /// The two DNS maps are complete: what is missing does not resolve.
    pub dns_complete: bool,
}

impl StaticContext {
    /// Declare that `role` exists and is directly a member of `groups`
    /// (turns membership answers on).
    pub fn role(mut self, role: &str, groups: &[&str]) -> Self {
        let map = self.roles.get_or_insert_with(HashMap::new);
        let entry = map.entry(role.to_string()).or_default();
        entry.extend(groups.iter().map(|g| g.to_string()));
        for g in groups {
            map.entry(g.to_string()).or_default();
        }
        self
    }
}

impl MatchContext for StaticContext {
    fn is_member(&self, user: &str, role: &str) -> Option<bool> {
        let roles = self.roles.as_ref()?;
        if !roles.contains_key(user) || !roles.contains_key(role) {
            return Some(false);
        }
        let mut seen = HashSet::new();
        let mut todo = vec![user];
        while let Some(r) = todo.pop() {
            if r == role {
                return Some(true);
            }
            if seen.insert(r) {
                if let Some(gs) = roles.get(r) {
                    todo.extend(gs.iter().map(String::as_str));
                }
            }
        }
        Some(false)
    }

    fn interfaces(&self) -> Option<Vec<(IpAddr, IpAddr)>> {
        self.interfaces.clone()
    }

    fn reverse_lookup(&self, addr: IpAddr) -> ReverseLookup {
        match self.reverse.get(&addr) {
            Some(n) => ReverseLookup::Name(n.clone()),
            None if self.dns_complete => ReverseLookup::NoName,
            None => ReverseLookup::Unknown,
        }
    }

    fn forward_lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        match self.forward.get(name) {
            Some(a) => Some(a.clone()),
            None if self.dns_complete => Some(Vec::new()),
            None => None,
        }
    }
}

/// A three-valued answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Certainly.
    Yes,
    /// Certainly not.
    No,
    /// The context could not tell.
    Unknown,
}

impl Answer {
    fn from_opt(b: Option<bool>) -> Answer {
        match b {
            Some(true) => Answer::Yes,
            Some(false) => Answer::No,
            None => Answer::Unknown,
        }
    }

    fn from_bool(b: bool) -> Answer {
        if b {
            Answer::Yes
        } else {
            Answer::No
        }
    }

    /// Any of: yes when one is yes, else unknown when one is unknown.
    fn or(self, other: Answer) -> Answer {
        match (self, other) {
            (Answer::Yes, _) | (_, Answer::Yes) => Answer::Yes,
            (Answer::Unknown, _) | (_, Answer::Unknown) => Answer::Unknown,
            _ => Answer::No,
        }
    }
}

/// The column (check) of a rule that decided it, in the server's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// `local` vs TCP.
    ConnectionType,
    /// `hostssl` / `hostnossl` vs the connection's SSL state.
    Ssl,
    /// `hostgssenc` / `hostnogssenc` vs the connection's GSSAPI encryption.
    Gss,
    /// The address column.
    Address,
    /// The database column.
    Database,
    /// The user column.
    User,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::ConnectionType => "connection type",
            Check::Ssl => "SSL",
            Check::Gss => "GSSAPI encryption",
            Check::Address => "address",
            Check::Database => "database",
            Check::User => "user",
        })
    }
}

/// Why a rule was passed over, or could not be decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// The check concerned.
    pub check: Check,
    /// A sentence for humans.
    pub detail: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// What one rule did with the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleOutcome {
    /// The rule matches.
    Matches,
    /// The rule does not match: the first failing check in the server's
    /// order.
    NoMatch(Reason),
    /// No check failed, but these could not be decided.
    Unknown(Vec<Reason>),
}

/// A rule the server loaded, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedRule {
    /// File name as the server names it (included files by full path).
    pub file: String,
    /// Line number in that file (first physical line).
    pub line: u32,
    /// The rule.
    pub rule: HbaRule,
    /// A warning the server attached while keeping the line (e.g. a
    /// `hostssl` line with `ssl = off`: it never matches).
    pub warning: Option<String>,
}

/// One step of an explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Index of the rule in [`RuleSet::rules`].
    pub index: usize,
    /// What the rule did.
    pub outcome: RuleOutcome,
}

/// The result of [`RuleSet::first_match`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match<'r> {
    /// The first rule that surely matches (index, rule), or `None`: the
    /// server rejects implicitly ("no pg_hba.conf entry"), unless one of
    /// `maybe` matches.
    pub matched: Option<(usize, &'r LocatedRule)>,
    /// Earlier rules that might match (the context could not tell); when
    /// one of them does, it wins instead.
    pub maybe: Vec<usize>,
    /// No rule before `matched` was undecided: the answer is the server's.
    pub certain: bool,
    /// Every rule examined, in order, up to and including the match (or all
    /// rules): why each earlier one was passed over.
    pub steps: Vec<Step>,
}

impl<'r> Match<'r> {
    /// The matched rule.
    pub fn rule(&self) -> Option<&'r LocatedRule> {
        self.matched.map(|(_, r)| r)
    }
}

/// The rules of a `pg_hba.conf` (includes expanded) in the server's order,
/// with the version whose matching rules apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    /// Version (regular expressions are 16+).
    pub version: PgVersion,
    /// The rules the server keeps, in order.
    pub rules: Vec<LocatedRule>,
    /// Whether the server would load the file at all (if not, it keeps the
    /// rules it had, or refuses to start).
    pub verdict: FileVerdict,
}

impl RuleSet {
    /// Check a file like [`check_bytes`] and keep the rules it yields.
    pub fn load(
        name: &str,
        bytes: &[u8],
        loader: &mut dyn FileLoader,
        opts: &ValidateOptions,
    ) -> RuleSet {
        let mut rules = Vec::new();
        let verdict = check_bytes(name, bytes, loader, opts, &mut |l| {
            if let Some(rule) = &l.verdict.rule {
                rules.push(LocatedRule {
                    file: l.file_name.to_string(),
                    line: l.line_number,
                    rule: rule.clone(),
                    warning: l.verdict.error.clone(),
                });
            }
        });
        RuleSet {
            version: opts.version,
            rules,
            verdict,
        }
    }

    /// Read and load a file from disk (includes from disk too).
    pub fn load_path(path: &Path, opts: &ValidateOptions) -> io::Result<RuleSet> {
        let bytes = std::fs::read(path)?;
        Ok(Self::load(
            &path.to_string_lossy(),
            &bytes,
            &mut FsLoader,
            opts,
        ))
    }

    /// The first rule matching `conn`, with the steps that led there.
    pub fn first_match<'r>(&'r self, conn: &Connection, ctx: &dyn MatchContext) -> Match<'r> {
        let mut steps = Vec::new();
        let mut maybe = Vec::new();
        for (index, r) in self.rules.iter().enumerate() {
            let outcome = rule_outcome(&r.rule, self.version, conn, ctx);
            let hit = outcome == RuleOutcome::Matches;
            if matches!(outcome, RuleOutcome::Unknown(_)) {
                maybe.push(index);
            }
            steps.push(Step { index, outcome });
            if hit {
                return Match {
                    matched: Some((index, r)),
                    certain: maybe.is_empty(),
                    maybe,
                    steps,
                };
            }
        }
        Match {
            matched: None,
            certain: maybe.is_empty(),
            maybe,
            steps,
        }
    }
}

/// Does one rule match `conn` (under the matching rules of `version`)?
pub fn rule_outcome(
    rule: &HbaRule,
    version: PgVersion,
    conn: &Connection,
    ctx: &dyn MatchContext,
) -> RuleOutcome {
    let mut unknown = Vec::new();
    let ct = rule.connection_type;
    match conn.kind {
        ConnectionKind::Local => {
            if ct != ConnectionType::Local {
                return no(Check::ConnectionType, "TCP rule, Unix-socket connection");
            }
        }
        ConnectionKind::Host { ssl, gss, addr } => {
            if ct == ConnectionType::Local {
                return no(Check::ConnectionType, "local rule, TCP connection");
            }
            if ssl && ct == ConnectionType::HostNoSsl {
                return no(Check::Ssl, "hostnossl rule, SSL connection");
            }
            if !ssl && ct == ConnectionType::HostSsl {
                return no(Check::Ssl, "hostssl rule, connection without SSL");
            }
            if gss && ct == ConnectionType::HostNoGssEnc {
                return no(Check::Gss, "hostnogssenc rule, GSSAPI-encrypted connection");
            }
            if !gss && ct == ConnectionType::HostGssEnc {
                return no(
                    Check::Gss,
                    "hostgssenc rule, connection without GSSAPI encryption",
                );
            }
            match address_matches(rule.address.as_ref(), addr, ctx) {
                (Answer::Yes, _) => {}
                (Answer::No, why) => return no(Check::Address, why),
                (Answer::Unknown, why) => unknown.push(Reason {
                    check: Check::Address,
                    detail: why,
                }),
            }
        }
    }
    match database_matches(&rule.databases, version, conn, ctx) {
        Answer::Yes => {}
        Answer::No => {
            return no(
                Check::Database,
                format!(
                    "{} not in {}",
                    if conn.replication {
                        "replication connection".to_string()
                    } else {
                        format!("database \"{}\"", conn.database)
                    },
                    list(&rule.databases)
                ),
            )
        }
        Answer::Unknown => unknown.push(Reason {
            check: Check::Database,
            detail: format!(
                "cannot tell whether database \"{}\" matches {}",
                conn.database,
                list(&rule.databases)
            ),
        }),
    }
    match user_matches(&rule.users, version, &conn.user, ctx) {
        Answer::Yes => {}
        Answer::No => {
            return no(
                Check::User,
                format!("user \"{}\" not in {}", conn.user, list(&rule.users)),
            )
        }
        Answer::Unknown => unknown.push(Reason {
            check: Check::User,
            detail: format!(
                "cannot tell whether user \"{}\" matches {}",
                conn.user,
                list(&rule.users)
            ),
        }),
    }
    if unknown.is_empty() {
        RuleOutcome::Matches
    } else {
        RuleOutcome::Unknown(unknown)
    }
}

fn no(check: Check, detail: impl Into<String>) -> RuleOutcome {
    RuleOutcome::NoMatch(Reason {
        check,
        detail: detail.into(),
    })
}

fn list(tokens: &[AuthToken]) -> String {
    let parts: Vec<String> = tokens
        .iter()
        .map(|t| {
            if t.quoted {
                format!("\"{}\"", t.value.replace('"', "\"\""))
            } else {
                t.value.clone()
            }
        })
        .collect();
    parts.join(",")
}

/// How the server reads one database or user token (after `@file`
/// expansion), for a given version and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind<'a> {
    /// Unquoted `all`.
    All,
    /// Unquoted `sameuser` (database column).
    SameUser,
    /// Unquoted `samerole` / `samegroup` (database column).
    SameRole,
    /// Unquoted `replication` (database column).
    Replication,
    /// Unquoted `+role` (user column).
    Member(&'a str),
    /// `/regex` (16+, quoted or not).
    Regex(&'a str),
    /// A name compared byte for byte.
    Name(&'a str),
}

pub(crate) fn database_token(t: &AuthToken, version: PgVersion) -> TokenKind<'_> {
    if !t.quoted {
        match t.value.as_str() {
            "all" => return TokenKind::All,
            "sameuser" => return TokenKind::SameUser,
            "samerole" | "samegroup" => return TokenKind::SameRole,
            "replication" => return TokenKind::Replication,
            _ => {}
        }
    }
    match t.regex() {
        Some(p) if version.has_regex() => TokenKind::Regex(p),
        _ => TokenKind::Name(&t.value),
    }
}

pub(crate) fn user_token(t: &AuthToken, version: PgVersion) -> TokenKind<'_> {
    if let Some(g) = t.member_of() {
        return TokenKind::Member(g);
    }
    if t.is_keyword("all") {
        return TokenKind::All;
    }
    match t.regex() {
        Some(p) if version.has_regex() => TokenKind::Regex(p),
        _ => TokenKind::Name(&t.value),
    }
}

/// `check_db()`.
pub(crate) fn database_matches(
    tokens: &[AuthToken],
    version: PgVersion,
    conn: &Connection,
    ctx: &dyn MatchContext,
) -> Answer {
    let mut acc = Answer::No;
    for t in tokens {
        let kind = database_token(t, version);
        let a = if conn.replication {
            Answer::from_bool(kind == TokenKind::Replication)
        } else {
            match kind {
                TokenKind::All => Answer::Yes,
                TokenKind::SameUser => Answer::from_bool(conn.database == conn.user),
                TokenKind::SameRole => Answer::from_opt(ctx.is_member(&conn.user, &conn.database)),
                TokenKind::Replication | TokenKind::Member(_) => Answer::No,
                TokenKind::Regex(p) => Answer::from_opt(ctx.regex_match(p, &conn.database)),
                TokenKind::Name(n) => Answer::from_bool(n == conn.database),
            }
        };
        acc = acc.or(a);
        if acc == Answer::Yes {
            break;
        }
    }
    acc
}

/// `check_role()`.
pub(crate) fn user_matches(
    tokens: &[AuthToken],
    version: PgVersion,
    user: &str,
    ctx: &dyn MatchContext,
) -> Answer {
    let mut acc = Answer::No;
    for t in tokens {
        let a = match user_token(t, version) {
            TokenKind::Member(g) => Answer::from_opt(ctx.is_member(user, g)),
            TokenKind::All => Answer::Yes,
            TokenKind::Regex(p) => Answer::from_opt(ctx.regex_match(p, user)),
            TokenKind::Name(n) => Answer::from_bool(n == user),
            _ => Answer::No,
        };
        acc = acc.or(a);
        if acc == Answer::Yes {
            break;
        }
    }
    acc
}

/// `check_ip()`: same family, then the masked comparison.
pub fn ip_in(client: IpAddr, addr: IpAddr, mask: IpAddr) -> bool {
    match (client, addr, mask) {
        (IpAddr::V4(c), IpAddr::V4(a), IpAddr::V4(m)) => {
            let m = u32::from(m);
            u32::from(c) & m == u32::from(a) & m
        }
        (IpAddr::V6(c), IpAddr::V6(a), IpAddr::V6(m)) => {
            let m = u128::from(m);
            u128::from(c) & m == u128::from(a) & m
        }
        _ => false,
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// `hostname_match()`: case-insensitive, `.suffix` matches names ending
/// with it.
pub fn hostname_match(pattern: &str, name: &str) -> bool {
    if pattern.starts_with('.') {
        name.len() >= pattern.len()
            && name.as_bytes()[name.len() - pattern.len()..]
                .eq_ignore_ascii_case(pattern.as_bytes())
    } else {
        pattern.eq_ignore_ascii_case(name)
    }
}

fn address_matches(
    address: Option<&HbaAddress>,
    client: IpAddr,
    ctx: &dyn MatchContext,
) -> (Answer, String) {
    match address {
        None | Some(HbaAddress::All) => (Answer::Yes, String::new()),
        Some(HbaAddress::Ip { addr, mask }) => {
            if client.is_ipv4() != addr.is_ipv4() {
                (
                    Answer::No,
                    format!("{} client {client}, {} rule", family(client), family(*addr)),
                )
            } else if ip_in(client, *addr, *mask) {
                (Answer::Yes, String::new())
            } else {
                (
                    Answer::No,
                    format!(
                        "{client} not in {}/{}",
                        crate::address::format_ip(addr),
                        crate::address::format_ip(mask)
                    ),
                )
            }
        }
        Some(a @ (HbaAddress::SameHost | HbaAddress::SameNet)) => {
            let same_host = matches!(a, HbaAddress::SameHost);
            let word = if same_host { "samehost" } else { "samenet" };
            let Some(ifaces) = ctx.interfaces() else {
                return (
                    Answer::Unknown,
                    format!("{word}: the server's interfaces are unknown"),
                );
            };
            let hit = ifaces.iter().any(|(ia, im)| {
                let mask = if same_host {
                    match ia {
                        IpAddr::V4(_) => IpAddr::V4(u32::MAX.into()),
                        IpAddr::V6(_) => IpAddr::V6(u128::MAX.into()),
                    }
                } else {
                    *im
                };
                ip_in(client, *ia, mask)
            });
            if hit {
                (Answer::Yes, String::new())
            } else {
                (
                    Answer::No,
                    format!("{client} is not {word} of the server's interfaces"),
                )
            }
        }
        Some(HbaAddress::Hostname(pattern)) => match ctx.reverse_lookup(client) {
            ReverseLookup::Unknown => (
                Answer::Unknown,
                format!("host name {pattern}: the name of {client} is unknown"),
            ),
            ReverseLookup::NoName => (
                Answer::No,
                format!("{client} has no host name (reverse lookup failed)"),
            ),
            ReverseLookup::Name(name) => {
                if !hostname_match(pattern, &name) {
                    return (
                        Answer::No,
                        format!("{client} is named {name}, not {pattern}"),
                    );
                }
                match ctx.forward_lookup(&name) {
                    None => (
                        Answer::Unknown,
                        format!("host name {name}: its addresses are unknown"),
                    ),
                    Some(addrs) if addrs.contains(&client) => (Answer::Yes, String::new()),
                    Some(_) => (
                        Answer::No,
                        format!("{name} does not resolve back to {client}"),
                    ),
                }
            }
        },
    }
}

/// Whether `subject` contains a match of the PostgreSQL advanced regular
/// expression `pattern`, for the patterns this crate can translate
/// exactly; `None` otherwise.
///
/// The server compiles `/...` tokens as AREs in the C locale and looks for
/// a match anywhere in the name (anchor with `^...$` to match whole
/// names). This translation covers ASCII patterns and names built from
/// literals, `.`, `^`, `$`, groups `(...)` and `(?:...)`, `|`, the
/// quantifiers `* + ? {m} {m,} {m,n}` (greedy or not), bracket
/// expressions with ranges and `[:class:]` names, and the escapes
/// `\d \s \w \D \S \W` and `\` before punctuation. It answers `None` for
/// non-ASCII patterns or names, back references, look-ahead, `\m \M \y \Y`
/// and other ARE escapes, embedded options and `***` directors, collating
/// elements, and anything the translation does not recognise.
pub fn approximate_regex_match(pattern: &str, subject: &str) -> Option<bool> {
    if !subject.is_ascii() {
        return None;
    }
    let translated = translate_are(pattern)?;
    let re = regex::bytes::RegexBuilder::new(&translated)
        .unicode(false)
        .dot_matches_new_line(true)
        .build()
        .ok()?;
    Some(re.is_match(subject.as_bytes()))
}

/// A class of ASCII bytes as a Rust bracket expression.
fn class_of(set: &[bool; 128], negated: bool) -> String {
    let mut out = String::from(if negated { "[^" } else { "[" });
    let mut any = false;
    for (b, &on) in set.iter().enumerate() {
        if on {
            any = true;
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    if !any {
        // an empty class: nothing (or, negated, anything)
        return if negated {
            "(?s:.)".to_string()
        } else {
            "[^\\x00-\\xFF]".to_string()
        };
    }
    out.push(']');
    out
}

fn named_class(name: &str, set: &mut [bool; 128]) -> Option<()> {
    for b in 0u8..128 {
        let c = b as char;
        let on = match name {
            "alpha" => c.is_ascii_alphabetic(),
            "digit" => c.is_ascii_digit(),
            "alnum" => c.is_ascii_alphanumeric(),
            "upper" => c.is_ascii_uppercase(),
            "lower" => c.is_ascii_lowercase(),
            "space" => matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
            "punct" => c.is_ascii_punctuation(),
            "xdigit" => c.is_ascii_hexdigit(),
            "blank" => matches!(b, b' ' | b'\t'),
            "cntrl" => c.is_ascii_control(),
            "print" => (0x20..0x7f).contains(&b),
            "graph" => (0x21..0x7f).contains(&b),
            "word" => c.is_ascii_alphanumeric() || c == '_',
            _ => return None,
        };
        if on {
            set[b as usize] = true;
        }
    }
    Some(())
}

/// The class of `\d \s \w` (and upper-case negations).
fn escape_class(e: u8) -> Option<(String, bool)> {
    let name = match e.to_ascii_lowercase() {
        b'd' => "digit",
        b's' => "space",
        b'w' => "word",
        _ => return None,
    };
    let mut set = [false; 128];
    named_class(name, &mut set)?;
    Some((class_of(&set, false), e.is_ascii_uppercase()))
}

/// Translate an ARE into Rust `regex` syntax, or `None` outside the subset
/// [`approximate_regex_match`] documents.
fn translate_are(pattern: &str) -> Option<String> {
    if !pattern.is_ascii() || pattern.starts_with("***") {
        return None;
    }
    let p = pattern.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        match c {
            b'\\' => {
                let e = *p.get(i + 1)?;
                if e.is_ascii_alphanumeric() {
                    let (class, negated) = escape_class(e)?;
                    if negated {
                        out.push_str(&class.replacen('[', "[^", 1));
                    } else {
                        out.push_str(&class);
                    }
                } else {
                    out.push_str(&regex::escape(&(e as char).to_string()));
                }
                i += 2;
            }
            b'[' => {
                let (class, next) = translate_bracket(p, i)?;
                out.push_str(&class);
                i = next;
            }
            b'(' => {
                if p.get(i + 1) == Some(&b'?') {
                    if p.get(i + 2) == Some(&b':') {
                        out.push_str("(?:");
                        i += 3;
                    } else {
                        return None;
                    }
                } else {
                    out.push_str("(?:");
                    i += 1;
                }
            }
            b')' | b'|' | b'.' | b'^' | b'$' | b'*' | b'+' | b'?' => {
                out.push(c as char);
                i += 1;
            }
            b'{' => {
                if p.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    let close = i + p[i..].iter().position(|&b| b == b'}')?;
                    let inner = &pattern[i + 1..close];
                    let ok = inner.split(',').count() <= 2
                        && inner.split(',').next().is_some_and(|s| !s.is_empty())
                        && inner.bytes().all(|b| b.is_ascii_digit() || b == b',');
                    if !ok {
                        return None;
                    }
                    out.push('{');
                    out.push_str(inner);
                    out.push('}');
                    i = close + 1;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            b'}' => {
                out.push_str("\\}");
                i += 1;
            }
            _ => {
                if c.is_ascii_control() {
                    out.push_str(&format!("\\x{c:02X}"));
                } else {
                    out.push_str(&regex::escape(&(c as char).to_string()));
                }
                i += 1;
            }
        }
    }
    Some(out)
}

/// A bracket expression starting at `p[start] == '['`: its translation and
/// the index after it.
fn translate_bracket(p: &[u8], start: usize) -> Option<(String, usize)> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut set = [false; 128];
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if c == b'[' {
            match p.get(i + 1) {
                Some(b':') => {
                    let rest = &p[i + 2..];
                    let end = rest.windows(2).position(|w| w == b":]")?;
                    let name = std::str::from_utf8(&rest[..end]).ok()?;
                    named_class(name, &mut set)?;
                    i += 2 + end + 2;
                    continue;
                }
                Some(b'.') | Some(b'=') => return None,
                _ => {
                    i += 1;
                    b'['
                }
            }
        } else if c == b'\\' {
            let e = *p.get(i + 1)?;
            if e.is_ascii_alphanumeric() {
                // \d etc. inside brackets, or other ARE escapes: not handled
                return None;
            }
            i += 2;
            e
        } else {
            i += 1;
            c
        };
        // a range?
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&n| n != b']') {
            let hi = *p.get(i + 1)?;
            if hi == b'[' || hi == b'\\' {
                return None;
            }
            if hi < lo {
                return None;
            }
            for b in lo..=hi {
                set[b as usize] = true;
            }
            i += 2;
        } else {
            set[lo as usize] = true;
        }
    }
    Some((class_of(&set, negated), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_subset_matches_like_are() {
        let m = |p: &str, s: &str| approximate_regex_match(p, s);
        assert_eq!(m("^app", "app_remote"), Some(true));
        assert_eq!(m("^app$", "app_remote"), Some(false));
        assert_eq!(m("remote", "app_remote"), Some(true));
        assert_eq!(m("^[a-c]+_[[:alpha:]]+$", "abc_def"), Some(true));
        assert_eq!(m("^[^a]", "abc"), Some(false));
        assert_eq!(m("^[]a]x", "]x"), Some(true));
        assert_eq!(m("a{2,3}", "caab"), Some(true));
        assert_eq!(m("x{", "x{"), Some(true));
        assert_eq!(m("^\\d+$", "123"), Some(true));
        assert_eq!(m("^\\D", "1"), Some(false));
        assert_eq!(m("a.b", "a\nb"), Some(true));
        assert_eq!(m("(a|b)c", "bc"), Some(true));
        assert_eq!(m("\\.", "a.b"), Some(true));
        assert_eq!(m("^a\\.b", "axb"), Some(false));
        // outside the subset
        assert_eq!(m("(a)\\1", "aa"), None);
        assert_eq!(m("(?=a)", "a"), None);
        assert_eq!(m("\\mfoo", "foo"), None);
        assert_eq!(m("***=a", "a"), None);
        assert_eq!(m("é", "é"), None);
        assert_eq!(m("a", "é"), None);
    }

    #[test]
    fn hostname_suffix_is_case_insensitive() {
        assert!(hostname_match(".Example.com", "db.example.COM"));
        assert!(!hostname_match(".example.com", "example.com"));
        assert!(hostname_match("a.example.com", "A.example.com"));
        assert!(!hostname_match("example.com", "db.example.com"));
    }
}
