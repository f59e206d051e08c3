//! Rules that can never match because an earlier rule catches every
//! connection they would (shadowing), and rules that may catch some of the
//! connections of another (overlap).
//!
//! Both answers are conservative in the direction that is safe for their
//! use: [`shadowed_rules`] reports a rule only when one earlier rule surely
//! covers it (group membership, regular expressions, `samehost`/`samenet`
//! and host names count only in the obvious cases, such as the same token
//! on both rules), while [`overlapping_rules`] reports every earlier rule
//! it cannot prove disjoint.
//!
//! ```
//! use pghba::matcher::RuleSet;
//! use pghba::shadow::shadowed_rules;
//! use pghba::{NoFiles, ValidateOptions};
//!
//! let text = b"host all all 10.0.0.0/8 reject\nhost app app 10.1.0.0/16 scram-sha-256\n";
//! let rules = RuleSet::load("/etc/pg_hba.conf", text, &mut NoFiles, &ValidateOptions::default());
//! let found = shadowed_rules(&rules);
//! assert_eq!((found[0].rule, found[0].by), (1, 0));
//! ```

use std::net::IpAddr;

use ipnet::IpNet;

use crate::matcher::{
    approximate_regex_match, database_token, hostname_match, user_token, LocatedRule, RuleSet,
    TokenKind,
};
use crate::rule::{AuthMethod, AuthOptions, AuthToken, ConnectionType, HbaAddress, HbaRule};
use crate::version::PgVersion;

/// Rule `rule` (index into [`RuleSet::rules`]) can never match: rule `by`,
/// earlier, catches every connection it would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shadowing {
    /// The unreachable rule.
    pub rule: usize,
    /// The first earlier rule that covers it.
    pub by: usize,
}

/// How an earlier rule relates to a candidate rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overlap {
    /// It surely catches every connection the candidate would match (the
    /// candidate would be shadowed).
    Covers,
    /// It may catch some of them (it could not be proven disjoint).
    Partial,
}

/// Transport states a rule type admits: bit 0 Unix socket, 1 plain TCP,
/// 2 SSL, 3 GSSAPI encryption (the server never combines SSL and GSSAPI
/// encryption on one connection).
fn transports(t: ConnectionType) -> u8 {
    const LOCAL: u8 = 1;
    const PLAIN: u8 = 2;
    const SSL: u8 = 4;
    const GSS: u8 = 8;
    match t {
        ConnectionType::Local => LOCAL,
        ConnectionType::Host => PLAIN | SSL | GSS,
        ConnectionType::HostSsl => SSL,
        ConnectionType::HostNoSsl => PLAIN | GSS,
        ConnectionType::HostGssEnc => GSS,
        ConnectionType::HostNoGssEnc => PLAIN | SSL,
    }
}

fn mask_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

/// Does address field `a` surely cover `b`?
fn address_covers(a: Option<&HbaAddress>, b: Option<&HbaAddress>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(HbaAddress::All), Some(_)) => true,
        (
            Some(HbaAddress::Ip { addr: aa, mask: am }),
            Some(HbaAddress::Ip { addr: ba, mask: bm }),
        ) => {
            if aa.is_ipv4() != ba.is_ipv4() {
                return false;
            }
            let (am, bm) = (mask_bits(*am), mask_bits(*bm));
            // every bit A fixes is fixed by B, to the same value
            am & !bm == 0 && mask_bits(*aa) & am == mask_bits(*ba) & am
        }
        (Some(HbaAddress::SameHost), Some(HbaAddress::SameHost)) => true,
        // an interface's own address lies in its network
        (Some(HbaAddress::SameNet), Some(HbaAddress::SameHost | HbaAddress::SameNet)) => true,
        (Some(HbaAddress::Hostname(ap)), Some(HbaAddress::Hostname(bp))) => {
            if ap.starts_with('.') {
                // every name B accepts ends with A's suffix
                hostname_match(ap, bp) || ap.eq_ignore_ascii_case(bp)
            } else {
                !bp.starts_with('.') && ap.eq_ignore_ascii_case(bp)
            }
        }
        _ => false,
    }
}

/// Could address fields `a` and `b` both match one client?
fn address_overlaps(a: Option<&HbaAddress>, b: Option<&HbaAddress>) -> bool {
    match (a, b) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (
            Some(HbaAddress::Ip { addr: aa, mask: am }),
            Some(HbaAddress::Ip { addr: ba, mask: bm }),
        ) => {
            if aa.is_ipv4() != ba.is_ipv4() {
                return false;
            }
            let common = mask_bits(*am) & mask_bits(*bm);
            mask_bits(*aa) & common == mask_bits(*ba) & common
        }
        _ => true,
    }
}

/// Does database list `a` surely match every connection list `b` matches?
fn databases_cover(a: &[AuthToken], b: &[AuthToken], v: PgVersion) -> bool {
    let ak: Vec<TokenKind<'_>> = a.iter().map(|t| database_token(t, v)).collect();
    let a_all = ak.contains(&TokenKind::All);
    let a_repl = ak.contains(&TokenKind::Replication);
    b.iter().all(|t| match database_token(t, v) {
        // physical replication connections match only this keyword
        TokenKind::Replication => a_repl,
        _ if a_all => true,
        TokenKind::All => false,
        TokenKind::SameUser => ak.contains(&TokenKind::SameUser),
        TokenKind::SameRole => ak.contains(&TokenKind::SameRole),
        TokenKind::Regex(p) => ak.contains(&TokenKind::Regex(p)),
        TokenKind::Name(n) => ak.iter().any(|k| match k {
            TokenKind::Name(m) => *m == n,
            TokenKind::Regex(p) => approximate_regex_match(p, n) == Some(true),
            _ => false,
        }),
        TokenKind::Member(_) => false,
    })
}

/// Does user list `a` surely match every user list `b` matches?
fn users_cover(a: &[AuthToken], b: &[AuthToken], v: PgVersion) -> bool {
    let ak: Vec<TokenKind<'_>> = a.iter().map(|t| user_token(t, v)).collect();
    if ak.contains(&TokenKind::All) {
        return true;
    }
    b.iter().all(|t| match user_token(t, v) {
        TokenKind::All => false,
        TokenKind::Member(g) => ak.contains(&TokenKind::Member(g)),
        TokenKind::Regex(p) => ak.contains(&TokenKind::Regex(p)),
        TokenKind::Name(n) => ak.iter().any(|k| match k {
            TokenKind::Name(m) => *m == n,
            TokenKind::Regex(p) => approximate_regex_match(p, n) == Some(true),
            _ => false,
        }),
        _ => false,
    })
}

/// Could a name matched by token `x` also be matched by token `y`? (Only
/// literal names against literal names or regexes are told apart.)
fn names_overlap(x: TokenKind<'_>, y: TokenKind<'_>) -> bool {
    match (x, y) {
        (TokenKind::Name(a), TokenKind::Name(b)) => a == b,
        (TokenKind::Name(n), TokenKind::Regex(p)) | (TokenKind::Regex(p), TokenKind::Name(n)) => {
            approximate_regex_match(p, n) != Some(false)
        }
        _ => true,
    }
}

/// Could some user matched by `users` be named `name`?
fn could_be_user(users: &[AuthToken], name: &str, v: PgVersion) -> bool {
    users
        .iter()
        .any(|t| names_overlap(user_token(t, v), TokenKind::Name(name)))
}

/// Could one connection match the database columns of both `a` and `b`
/// (with their user columns, which `sameuser` ties the database to)?
fn databases_overlap(a: &HbaRule, b: &HbaRule, v: PgVersion) -> bool {
    let ak: Vec<TokenKind<'_>> = a.databases.iter().map(|t| database_token(t, v)).collect();
    let bk: Vec<TokenKind<'_>> = b.databases.iter().map(|t| database_token(t, v)).collect();
    if ak.contains(&TokenKind::Replication) && bk.contains(&TokenKind::Replication) {
        return true;
    }
    let ordinary = |k: &TokenKind<'_>| *k != TokenKind::Replication;
    ak.iter().filter(|k| ordinary(k)).any(|x| {
        bk.iter().filter(|k| ordinary(k)).any(|y| match (*x, *y) {
            // `sameuser` meets database `n` only for user `n`: both user
            // columns must admit that name.
            (TokenKind::SameUser, TokenKind::Name(n))
            | (TokenKind::Name(n), TokenKind::SameUser) => {
                could_be_user(&a.users, n, v) && could_be_user(&b.users, n, v)
            }
            (x, y) => names_overlap(x, y),
        })
    })
}

fn users_overlap(a: &[AuthToken], b: &[AuthToken], v: PgVersion) -> bool {
    a.iter().map(|t| user_token(t, v)).any(|x| {
        b.iter()
            .map(|t| user_token(t, v))
            .any(|y| names_overlap(x, y))
    })
}

/// Does rule `a` surely catch every connection rule `b` matches?
pub fn covers(a: &HbaRule, b: &HbaRule, version: PgVersion) -> bool {
    let (ta, tb) = (transports(a.connection_type), transports(b.connection_type));
    tb & !ta == 0
        && address_covers(a.address.as_ref(), b.address.as_ref())
        && databases_cover(&a.databases, &b.databases, version)
        && users_cover(&a.users, &b.users, version)
}

/// Could rules `a` and `b` both match some connection?
pub fn overlaps(a: &HbaRule, b: &HbaRule, version: PgVersion) -> bool {
    transports(a.connection_type) & transports(b.connection_type) != 0
        && address_overlaps(a.address.as_ref(), b.address.as_ref())
        && databases_overlap(a, b, version)
        && users_overlap(&a.users, &b.users, version)
}

/// Rules that can never match because one earlier rule catches all their
/// connections, each with the first such earlier rule. Rules the server
/// kept with a warning (they never match) shadow nothing. Quadratic in the
/// number of rules.
pub fn shadowed_rules(rules: &RuleSet) -> Vec<Shadowing> {
    let list = &rules.rules;
    let mut out = Vec::new();
    for (j, b) in list.iter().enumerate() {
        if let Some(i) = list[..j]
            .iter()
            .position(|a| a.warning.is_none() && covers(&a.rule, &b.rule, rules.version))
        {
            out.push(Shadowing { rule: j, by: i });
        }
    }
    out
}

/// The rules among `earlier` that could catch some connection `candidate`
/// matches, in order, each with how much of it. Linear.
pub fn overlapping_rules(
    earlier: &[LocatedRule],
    candidate: &HbaRule,
    version: PgVersion,
) -> Vec<(usize, Overlap)> {
    earlier
        .iter()
        .enumerate()
        .filter(|(_, r)| r.warning.is_none())
        .filter_map(|(i, r)| {
            if covers(&r.rule, candidate, version) {
                Some((i, Overlap::Covers))
            } else if overlaps(&r.rule, candidate, version) {
                Some((i, Overlap::Partial))
            } else {
                None
            }
        })
        .collect()
}

/// A `host`-family rule for one network, database and user (names taken
/// literally, as if quoted), to ask [`overlapping_rules`] or
/// [`first_overlapping_reject`] about a rule before writing it.
pub fn candidate_rule(
    connection_type: ConnectionType,
    net: IpNet,
    database: &str,
    user: &str,
    method: AuthMethod,
) -> HbaRule {
    HbaRule {
        connection_type,
        databases: vec![AuthToken {
            value: database.to_string(),
            quoted: true,
        }],
        users: vec![AuthToken {
            value: user.to_string(),
            quoted: true,
        }],
        address: Some(HbaAddress::Ip {
            addr: net.network(),
            mask: net.netmask(),
        }),
        method,
        options: AuthOptions::default(),
    }
}

/// Is `rule` a catch-all reject: method `reject` on a TCP rule type, `all`
/// among its databases and its users, and address `all`, `0.0.0.0/0` or
/// `::/0` (any zero netmask)?
pub fn is_catch_all_reject(rule: &HbaRule) -> bool {
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

/// The index of the first catch-all reject (see [`is_catch_all_reject`])
/// among `rules`: where a block of new allow rules must go to be reached.
pub fn first_catch_all_reject(rules: &[LocatedRule]) -> Option<usize> {
    rules.iter().position(|r| is_catch_all_reject(&r.rule))
}

/// The first rule among `earlier` with method `reject` that could catch
/// some connection `candidate` matches: an operator's reject that wins over
/// the candidate for (part of) its connections.
pub fn first_overlapping_reject<'r>(
    earlier: &'r [LocatedRule],
    candidate: &HbaRule,
    version: PgVersion,
) -> Option<(usize, &'r LocatedRule)> {
    earlier.iter().enumerate().find(|(_, r)| {
        r.warning.is_none()
            && r.rule.method == AuthMethod::Reject
            && overlaps(&r.rule, candidate, version)
    })
}
