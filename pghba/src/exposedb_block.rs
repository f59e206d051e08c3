//! The block of rules `knocker exposedb` keeps in a pg_hba.conf: where it
//! goes, what it holds, and which of the operator's lines come first.
//!
//! The block sits between [`BEGIN_MARKER`] and [`END_MARKER`]. When it does
//! not exist yet it is created just before the first catch-all `reject`
//! line (database and user `all`, address `all`, `0.0.0.0/0` or `::/0`), so
//! that its rules are reached, or at the end of the file. Each rule in it
//! admits one CIDR to one database as one role with `scram-sha-256`.
//!
//! Matching here ([`first_match`]) is the server's first-match walk for TCP
//! connections, exact for the lines knocker writes and for lines with
//! literal names, `all`, `sameuser` and numeric addresses; where the answer
//! depends on something not known offline (`+group`, `samerole`, regular
//! expressions, host names, `samehost`/`samenet`) the line is reported as a
//! possible match instead of guessed.
//!
//! ```
//! use pghba::exposedb_block::{plan, Scope, BEGIN_MARKER};
//! use pghba::PgVersion;
//!
//! let old = b"local all all peer\nhost all all 0.0.0.0/0 reject\n";
//! let scope = Scope { database: "knocknoc".into(), user: "knocknoc_remote".into(), hostssl: true };
//! let add = ["203.0.113.7/32".parse().unwrap()];
//! let change = plan(old, PgVersion::V15, &scope, &add, &[], "added by test", false).unwrap();
//! let text = String::from_utf8(change.new_text).unwrap();
//! assert!(text.starts_with(&format!("local all all peer\n{BEGIN_MARKER}\nhostssl knocknoc knocknoc_remote 203.0.113.7/32 scram-sha-256 # added by test\n")));
//! assert!(text.ends_with("# END knocker exposedb\nhost all all 0.0.0.0/0 reject\n"));
//! ```

use std::net::IpAddr;

use ipnet::IpNet;

use crate::check::{check_bytes, NoFiles};
use crate::document::HbaDocument;
use crate::edit::{quote_name, BlockError};
use crate::rule::{AuthMethod, AuthToken, ConnectionType, HbaAddress, HbaRule};
use crate::version::{PgVersion, ValidateOptions};

/// The comment line that opens the managed block.
pub const BEGIN_MARKER: &str =
    "# BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)";
/// The comment line that closes the managed block.
pub const END_MARKER: &str = "# END knocker exposedb";

/// Which database and role the block's rules admit, and over which
/// connection type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The application database.
    pub database: String,
    /// The remote login role.
    pub user: String,
    /// Write `hostssl` (the server has SSL on) rather than `host`.
    pub hostssl: bool,
}

/// One rule found inside the managed block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRule {
    /// Line number in the file (1-based).
    pub line_number: u32,
    /// The CIDR it admits.
    pub net: IpNet,
    /// `host` or `hostssl`.
    pub connection_type: ConnectionType,
    /// Database names of the rule.
    pub databases: Vec<String>,
    /// User names of the rule.
    pub users: Vec<String>,
    /// The trailing comment, without `#`.
    pub comment: Option<String>,
}

/// An operator's line that comes before the block and decides some
/// connections the block should admit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlierLine {
    /// Line number in the file (1-based).
    pub line_number: u32,
    /// The line's text (without its terminator).
    pub text: String,
    /// Whether the line rejects (otherwise it admits with another method).
    pub rejects: bool,
    /// Whether it catches every connection of the new rule (else some).
    pub covers_all: bool,
}

/// Why the block could not be changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The markers are broken (unbalanced or repeated).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The database or role name cannot be written into pg_hba.conf.
    #[error("the name {0:?} cannot be written into pg_hba.conf")]
    BadName(String),
    /// An earlier reject line of the operator's overlaps a CIDR being added.
    #[error("line {} rejects connections from part of {net}: {}", .line.line_number, .line.text)]
    RejectedBy {
        /// The CIDR being added.
        net: IpNet,
        /// The operator's line.
        line: EarlierLine,
    },
}

/// The result of [`plan`]: the new file and what changed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Change {
    /// The whole new file.
    pub new_text: Vec<u8>,
    /// CIDRs added.
    pub added: Vec<IpNet>,
    /// CIDRs asked for that were already present.
    pub already_present: Vec<IpNet>,
    /// CIDRs removed.
    pub removed: Vec<IpNet>,
    /// CIDRs asked to be removed that were not there.
    pub absent: Vec<IpNet>,
    /// Whether the block itself was created.
    pub created_block: bool,
    /// Earlier lines that decide some connections of an added CIDR (rejects
    /// only appear here when forced).
    pub shadowed_by: Vec<(IpNet, EarlierLine)>,
}

impl Change {
    /// Whether the file changes.
    pub fn changed(&self) -> bool {
        self.created_block || !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// Turn a netmask into its prefix length, when contiguous.
fn prefix_of(mask: IpAddr) -> Option<u8> {
    let (bits, width) = match mask {
        IpAddr::V4(m) => (u128::from(u32::from(m)) << 96, 32u32),
        IpAddr::V6(m) => (u128::from(m), 128u32),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0 && ones <= width).then_some(ones as u8)
}

fn mask_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn net_bits(net: &IpNet) -> (u128, u128) {
    (mask_bits(net.network()), mask_bits(net.netmask()))
}

/// Records of the top file with the rule the server would keep, by index
/// into `doc.lines()`.
fn rules(doc: &HbaDocument, bytes: &[u8], version: PgVersion) -> Vec<(usize, HbaRule)> {
    let mut by_number = std::collections::HashMap::new();
    let name = "pg_hba.conf";
    check_bytes(
        name,
        bytes,
        &mut NoFiles,
        &ValidateOptions::for_version(version),
        &mut |l| {
            if l.file_name == name {
                if let Some(rule) = &l.verdict.rule {
                    by_number.insert(l.line_number, rule.clone());
                }
            }
        },
    );
    doc.lines()
        .iter()
        .enumerate()
        .filter_map(|(i, l)| by_number.remove(&l.line_number()).map(|r| (i, r)))
        .collect()
}

fn is_catch_all_reject(rule: &HbaRule) -> bool {
    let all = |t: &[AuthToken]| t.iter().any(|t| t.is_keyword("all"));
    rule.method == AuthMethod::Reject
        && rule.connection_type != ConnectionType::Local
        && all(&rule.databases)
        && all(&rule.users)
        && match &rule.address {
            Some(HbaAddress::All) => true,
            Some(HbaAddress::Ip { mask, .. }) => mask_bits(*mask) == 0,
            _ => false,
        }
}

/// The index (into `doc.lines()`) of the first catch-all reject line.
pub fn first_catch_all_reject(doc: &HbaDocument, version: PgVersion) -> Option<usize> {
    rules(doc, &doc.to_bytes(), version)
        .into_iter()
        .find(|(_, r)| is_catch_all_reject(r))
        .map(|(i, _)| i)
}

/// The rules inside the managed block (none when there is no block).
pub fn list(doc: &HbaDocument, version: PgVersion) -> Result<Vec<BlockRule>, BlockError> {
    let Some(range) = doc.find_block(BEGIN_MARKER, END_MARKER)? else {
        return Ok(Vec::new());
    };
    let inner = range.inner();
    Ok(rules(doc, &doc.to_bytes(), version)
        .into_iter()
        .filter(|(i, _)| inner.contains(i))
        .filter_map(|(i, r)| {
            let net = match r.address? {
                HbaAddress::Ip { addr, mask } => IpNet::new(addr, prefix_of(mask)?).ok()?,
                _ => return None,
            };
            let line = &doc.lines()[i];
            Some(BlockRule {
                line_number: line.line_number(),
                net,
                connection_type: r.connection_type,
                databases: r.databases.iter().map(|t| t.value.clone()).collect(),
                users: r.users.iter().map(|t| t.value.clone()).collect(),
                comment: line.comment().map(|c| {
                    String::from_utf8_lossy(c)
                        .trim_start_matches('#')
                        .trim()
                        .to_string()
                }),
            })
        })
        .collect())
}

/// A TCP connection to match against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Client address.
    pub addr: IpAddr,
    /// Database asked for.
    pub database: String,
    /// Role logging in.
    pub user: String,
    /// Whether the session is encrypted with SSL.
    pub ssl: bool,
}

/// How sure a line's match is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The line matches.
    Yes,
    /// The line matches or not depending on facts not known offline
    /// (group membership, regular expressions, host names).
    Maybe,
    /// The line does not match.
    No,
}

fn and(a: Match, b: Match) -> Match {
    match (a, b) {
        (Match::No, _) | (_, Match::No) => Match::No,
        (Match::Yes, Match::Yes) => Match::Yes,
        _ => Match::Maybe,
    }
}

fn any_token(tokens: &[AuthToken], f: impl Fn(&AuthToken) -> Match) -> Match {
    let mut best = Match::No;
    for t in tokens {
        match f(t) {
            Match::Yes => return Match::Yes,
            Match::Maybe => best = Match::Maybe,
            Match::No => {}
        }
    }
    best
}

fn type_matches(t: ConnectionType, ssl: bool) -> Match {
    match t {
        ConnectionType::Local | ConnectionType::HostGssEnc => Match::No,
        ConnectionType::Host | ConnectionType::HostNoGssEnc => Match::Yes,
        ConnectionType::HostSsl if ssl => Match::Yes,
        ConnectionType::HostNoSsl if !ssl => Match::Yes,
        _ => Match::No,
    }
}

fn names_match(rule: &HbaRule, database: &str, user: &str) -> Match {
    let db = any_token(&rule.databases, |t| {
        if t.is_keyword("all") {
            Match::Yes
        } else if t.is_keyword("sameuser") {
            if database == user {
                Match::Yes
            } else {
                Match::No
            }
        } else if t.is_keyword("samerole") || t.is_keyword("samegroup") {
            Match::Maybe
        } else if t.is_keyword("replication") {
            Match::No
        } else if t.regex().is_some() && !t.quoted {
            Match::Maybe
        } else if t.value == database {
            Match::Yes
        } else {
            Match::No
        }
    });
    let us = any_token(&rule.users, |t| {
        if t.is_keyword("all") {
            Match::Yes
        } else if t.member_of().is_some() || (t.regex().is_some() && !t.quoted) {
            Match::Maybe
        } else if t.value == user {
            Match::Yes
        } else {
            Match::No
        }
    });
    and(db, us)
}

/// How a rule's address relates to a CIDR: (overlaps, covers all of it).
fn address_vs_net(address: &Option<HbaAddress>, net: &IpNet) -> (Match, bool) {
    match address {
        Some(HbaAddress::All) => (Match::Yes, true),
        Some(HbaAddress::Ip { addr, mask }) => {
            if addr.is_ipv4() != net.addr().is_ipv4() {
                return (Match::No, false);
            }
            let (a, m) = (mask_bits(*addr), mask_bits(*mask));
            let (n, nm) = net_bits(net);
            let overlaps = (a ^ n) & m & nm == 0;
            let covers = overlaps && m & !nm == 0;
            (if overlaps { Match::Yes } else { Match::No }, covers)
        }
        Some(_) => (Match::Maybe, false),
        None => (Match::No, false),
    }
}

/// Walk the records before line index `before` and return those that would
/// decide some connection from `net` to the scope's database as its user.
fn earlier_lines(
    doc: &HbaDocument,
    rules: &[(usize, HbaRule)],
    before: usize,
    scope: &Scope,
    net: &IpNet,
) -> Vec<EarlierLine> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().filter(|(i, _)| *i < before) {
        let ty = type_matches(r.connection_type, scope.hostssl);
        let names = names_match(r, &scope.database, &scope.user);
        let (addr, covers) = address_vs_net(&r.address, net);
        if and(and(ty, names), addr) == Match::No {
            continue;
        }
        let line = &doc.lines()[*i];
        out.push(EarlierLine {
            line_number: line.line_number(),
            text: String::from_utf8_lossy(line.content())
                .trim_end()
                .to_string(),
            rejects: r.method == AuthMethod::Reject,
            covers_all: covers && ty == Match::Yes && names == Match::Yes,
        });
    }
    out
}

/// The first line a connection would hit, and lines before it that might
/// be hit instead (their match depends on facts not known offline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// Line number and text of the first certain match; `None` means the
    /// server would find no line and refuse the connection.
    pub hit: Option<(u32, String, AuthMethod)>,
    /// Earlier lines that may match instead.
    pub maybe: Vec<(u32, String)>,
}

/// Which line of the file a TCP connection would hit.
pub fn first_match(doc: &HbaDocument, version: PgVersion, conn: &Connection) -> Explanation {
    let mut maybe = Vec::new();
    let host = IpNet::from(conn.addr);
    for (i, r) in rules(doc, &doc.to_bytes(), version) {
        let ty = type_matches(r.connection_type, conn.ssl);
        let names = names_match(&r, &conn.database, &conn.user);
        let (addr, _) = address_vs_net(&r.address, &host);
        let line = &doc.lines()[i];
        let text = String::from_utf8_lossy(line.content())
            .trim_end()
            .to_string();
        match and(and(ty, names), addr) {
            Match::Yes => {
                return Explanation {
                    hit: Some((line.line_number(), text, r.method)),
                    maybe,
                }
            }
            Match::Maybe => maybe.push((line.line_number(), text)),
            Match::No => {}
        }
    }
    Explanation { hit: None, maybe }
}

/// Compute the new file: the block created when missing, `add` CIDRs added
/// (those present are left alone) and `remove` CIDRs taken out, with
/// `comment` after each new rule. An earlier reject overlapping an added
/// CIDR stops the plan unless `force`.
pub fn plan(
    old: &[u8],
    version: PgVersion,
    scope: &Scope,
    add: &[IpNet],
    remove: &[IpNet],
    comment: &str,
    force: bool,
) -> Result<Change, PlanError> {
    let mut doc = HbaDocument::parse_for(old, version);
    let database =
        quote_name(&scope.database).ok_or_else(|| PlanError::BadName(scope.database.clone()))?;
    let user = quote_name(&scope.user).ok_or_else(|| PlanError::BadName(scope.user.clone()))?;
    let mut change = Change::default();
    let range = match doc.find_block(BEGIN_MARKER, END_MARKER)? {
        Some(r) => r,
        None => {
            let at = first_catch_all_reject(&doc, version).unwrap_or(doc.lines().len());
            change.created_block = true;
            doc.set_block(BEGIN_MARKER, END_MARKER, &[], at)?
        }
    };
    let present = list(&doc, version)?;
    let bytes = doc.to_bytes();
    let all_rules = rules(&doc, &bytes, version);
    // Removals first (by line, from the bottom so indices stay valid).
    let mut to_remove: Vec<usize> = Vec::new();
    for net in remove {
        let hits: Vec<usize> = present
            .iter()
            .filter(|r| r.net == *net)
            .filter_map(|r| {
                doc.lines()
                    .iter()
                    .position(|l| l.line_number() == r.line_number)
            })
            .collect();
        if hits.is_empty() {
            change.absent.push(*net);
        } else {
            change.removed.push(*net);
            to_remove.extend(hits);
        }
    }
    let mut new_lines: Vec<Vec<u8>> = Vec::new();
    for net in add {
        if present.iter().any(|r| r.net == *net) || change.added.contains(net) {
            if !change.already_present.contains(net) {
                change.already_present.push(*net);
            }
            continue;
        }
        for line in earlier_lines(&doc, &all_rules, range.begin, scope, net) {
            if line.rejects && !force {
                return Err(PlanError::RejectedBy { net: *net, line });
            }
            change.shadowed_by.push((*net, line));
        }
        let kind = if scope.hostssl { "hostssl" } else { "host" };
        let addr = net.to_string();
        let fields = [kind, &database, &user, &addr, "scram-sha-256"];
        new_lines.push(doc.format_record(range.end, &fields, Some(&format!("# {comment}"))));
        change.added.push(*net);
    }
    to_remove.sort_unstable();
    to_remove.dedup();
    let mut end = range.end;
    for i in to_remove.into_iter().rev() {
        doc.remove_line(i).map_err(BlockError::from)?;
        end -= 1;
    }
    for (k, l) in new_lines.iter().enumerate() {
        doc.insert_line(end + k, l).map_err(BlockError::from)?;
    }
    change.new_text = doc.to_bytes();
    Ok(change)
}

/// Remove the managed block, markers and rules. Returns the new text and
/// whether there was a block.
pub fn remove(old: &[u8], version: PgVersion) -> Result<(Vec<u8>, bool), PlanError> {
    let mut doc = HbaDocument::parse_for(old, version);
    let had = doc.remove_block(BEGIN_MARKER, END_MARKER)?;
    Ok((doc.to_bytes(), had))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            database: "knocknoc".into(),
            user: "knocknoc_remote".into(),
            hostssl: false,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn block_goes_before_first_catch_all_reject() {
        let old = b"local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all all reject\nhost all all ::/0 reject\n";
        let c = plan(
            old,
            PgVersion::V16,
            &scope(),
            &[net("10.0.0.0/8")],
            &[],
            "c",
            false,
        )
        .unwrap();
        let t = String::from_utf8(c.new_text).unwrap();
        let b = t.find(BEGIN_MARKER).unwrap();
        assert!(b < t.find("host all all all reject").unwrap());
        assert!(t.find("127.0.0.1/32").unwrap() < b);
        assert!(c.created_block);
    }

    #[test]
    fn block_at_end_without_catch_all() {
        let old = b"local all all trust";
        let c = plan(old, PgVersion::V16, &scope(), &[], &[], "c", false).unwrap();
        let t = String::from_utf8(c.new_text).unwrap();
        assert_eq!(
            t,
            format!("local all all trust\n{BEGIN_MARKER}\n{END_MARKER}\n")
        );
    }

    #[test]
    fn add_is_idempotent_and_remove_takes_it_out() {
        let old = b"local all all trust\n";
        let c = plan(
            old,
            PgVersion::V16,
            &scope(),
            &[net("10.1.0.0/16")],
            &[],
            "c",
            false,
        )
        .unwrap();
        let again = plan(
            &c.new_text,
            PgVersion::V16,
            &scope(),
            &[net("10.1.0.0/16")],
            &[],
            "c",
            false,
        )
        .unwrap();
        assert!(!again.changed());
        assert_eq!(again.already_present, vec![net("10.1.0.0/16")]);
        assert_eq!(again.new_text, c.new_text);
        let doc = HbaDocument::parse(&c.new_text);
        assert_eq!(
            list(&doc, PgVersion::V16).unwrap()[0].net,
            net("10.1.0.0/16")
        );
        let r = plan(
            &c.new_text,
            PgVersion::V16,
            &scope(),
            &[],
            &[net("10.1.0.0/16")],
            "c",
            false,
        )
        .unwrap();
        assert_eq!(r.removed, vec![net("10.1.0.0/16")]);
        assert!(list(&HbaDocument::parse(&r.new_text), PgVersion::V16)
            .unwrap()
            .is_empty());
        let (gone, had) = remove(&r.new_text, PgVersion::V16).unwrap();
        assert!(had);
        assert_eq!(gone, old);
    }

    #[test]
    fn narrower_operator_reject_stops_the_add_unless_forced() {
        let old = b"host all all 203.0.113.0/28 reject\nhost all all 0.0.0.0/0 reject\n";
        let e = plan(
            old,
            PgVersion::V15,
            &scope(),
            &[net("203.0.113.0/24")],
            &[],
            "c",
            false,
        )
        .unwrap_err();
        match e {
            PlanError::RejectedBy { line, .. } => assert_eq!(line.line_number, 1),
            other => panic!("{other:?}"),
        }
        let c = plan(
            old,
            PgVersion::V15,
            &scope(),
            &[net("203.0.113.0/24")],
            &[],
            "c",
            true,
        )
        .unwrap();
        assert_eq!(c.shadowed_by.len(), 1);
        // a reject for another database does not stop it
        let other = b"host otherdb all 203.0.113.0/28 reject\n";
        assert!(plan(
            other,
            PgVersion::V15,
            &scope(),
            &[net("203.0.113.0/24")],
            &[],
            "c",
            false
        )
        .is_ok());
    }

    #[test]
    fn explain_finds_the_block_rule() {
        let old = b"local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 reject\n";
        let c = plan(
            old,
            PgVersion::V15,
            &scope(),
            &[net("127.0.0.2/32")],
            &[],
            "c",
            false,
        )
        .unwrap();
        let doc = HbaDocument::parse(&c.new_text);
        let conn = |a: &str| Connection {
            addr: a.parse().unwrap(),
            database: "knocknoc".into(),
            user: "knocknoc_remote".into(),
            ssl: false,
        };
        let e = first_match(&doc, PgVersion::V15, &conn("127.0.0.2"));
        assert_eq!(e.hit.unwrap().2, AuthMethod::ScramSha256);
        let e = first_match(&doc, PgVersion::V15, &conn("127.0.0.3"));
        assert_eq!(e.hit.unwrap().2, AuthMethod::Reject);
        let e = first_match(
            &HbaDocument::parse(b"local all all trust\n"),
            PgVersion::V15,
            &conn("10.0.0.1"),
        );
        assert!(e.hit.is_none());
    }
}
