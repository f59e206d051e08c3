//! Matching and shadowing: the server's check_hba() semantics on
//! hand-written cases, and properties over generated rules.

use std::net::IpAddr;

use pghba::document::CONNECTION_TYPES;
use pghba::matcher::{Check, Connection, RuleOutcome, RuleSet, StaticContext};
use pghba::rule::{AuthMethod, ConnectionType};
use pghba::shadow::{
    candidate_rule, covers, first_catch_all_reject, first_overlapping_reject, is_catch_all_reject,
    overlapping_rules, overlaps, shadowed_rules, Overlap,
};
use pghba::{NoFiles, PgVersion, ValidateOptions};
use proptest::prelude::*;

fn load(version: PgVersion, text: &str) -> RuleSet {
    let rs = RuleSet::load(
        "/etc/pg_hba.conf",
        text.as_bytes(),
        &mut NoFiles,
        &ValidateOptions::for_version(version),
    );
    assert!(rs.verdict.loads, "{text}");
    rs
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ctx() -> StaticContext {
    let mut c = StaticContext::default()
        .role("u0", &["g"])
        .role("u1", &[])
        .role("u2", &["d1"])
        .role("admin", &[]);
    c.interfaces = Some(vec![
        (ip("127.0.0.1"), ip("255.0.0.0")),
        (ip("::1"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
    ]);
    c.reverse.insert(ip("127.0.0.2"), "h.example".into());
    c.forward.insert("h.example".into(), vec![ip("127.0.0.2")]);
    c.reverse.insert(ip("127.0.0.5"), "liar.example".into());
    c.forward
        .insert("liar.example".into(), vec![ip("127.0.0.6")]);
    c.dns_complete = true;
    c
}

fn line_of(rs: &RuleSet, conn: &Connection) -> Option<u32> {
    let m = rs.first_match(conn, &ctx());
    assert!(m.certain);
    m.rule().map(|r| r.line)
}

#[test]
fn replication_connections_match_only_the_replication_keyword() {
    let rs = load(
        PgVersion::V16,
        "host all all all trust\nhost replication all all trust\n",
    );
    let c = Connection::host(ip("127.0.0.1"), "replication", "u1");
    assert_eq!(line_of(&rs, &c), Some(1));
    assert_eq!(line_of(&rs, &c.clone().with_replication(true)), Some(2));
    // and "replication" never matches an ordinary connection, not even to a
    // database of that name
    let rs = load(PgVersion::V16, "host replication all all trust\n");
    assert_eq!(line_of(&rs, &c), None);
    let rs = load(PgVersion::V16, "host \"replication\" all all trust\n");
    assert_eq!(line_of(&rs, &c), Some(1));
    assert_eq!(line_of(&rs, &c.with_replication(true)), None);
}

#[test]
fn quoted_keywords_are_names() {
    let rs = load(
        PgVersion::V15,
        "host \"all\" \"all\" all trust\nhost all all all reject\n",
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("127.0.0.1"), "d0", "u1")),
        Some(2)
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("127.0.0.1"), "all", "all")),
        Some(1)
    );
    let rs = load(PgVersion::V16, "host \"sameuser\" \"+g\" all trust\n");
    assert_eq!(
        line_of(&rs, &Connection::host(ip("127.0.0.1"), "u0", "u0")),
        None
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("127.0.0.1"), "sameuser", "+g")),
        Some(1)
    );
}

#[test]
fn sameuser_samerole_and_group_membership() {
    let rs = load(
        PgVersion::V16,
        "host sameuser all all trust\nhost samerole all all md5\nhost all +g all password\n",
    );
    let at = |db: &str, user: &str| line_of(&rs, &Connection::host(ip("127.0.0.1"), db, user));
    assert_eq!(at("u1", "u1"), Some(1));
    assert_eq!(at("d1", "u2"), Some(2));
    assert_eq!(at("d0", "u0"), Some(3));
    assert_eq!(at("g", "u0"), Some(2));
    // a role is a member of itself
    assert_eq!(at("d0", "g"), Some(3));
    assert_eq!(at("d0", "u1"), None);
    // superusers are not members of every role: the context says so, and
    // without a context the answer is unknown rather than yes
    let m = rs.first_match(
        &Connection::host(ip("127.0.0.1"), "d0", "postgres"),
        &StaticContext::default(),
    );
    assert!(!m.certain);
    assert_eq!(m.maybe, vec![1, 2]);
    assert!(m.matched.is_none());
}

#[test]
fn ssl_and_gss_states_pick_their_rule_types() {
    let rs = load(
        PgVersion::V17,
        "hostgssenc all all all trust\nhostssl all all all trust\nhostnossl all all all trust\n",
    );
    let c = Connection::host(ip("10.0.0.1"), "d", "u");
    assert_eq!(line_of(&rs, &c), Some(3));
    assert_eq!(line_of(&rs, &c.clone().with_ssl(true)), Some(2));
    assert_eq!(line_of(&rs, &c.clone().with_gss(true)), Some(1));
    let rs = load(PgVersion::V17, "hostnogssenc all all all trust\n");
    assert_eq!(line_of(&rs, &c.clone().with_ssl(true)), Some(1));
    assert_eq!(line_of(&rs, &c.clone().with_gss(true)), None);
    assert_eq!(line_of(&rs, &Connection::local("d", "u")), None);
}

#[test]
fn ipv4_clients_never_match_ipv6_rules_and_the_reverse() {
    let rs = load(
        PgVersion::V16,
        "host all all ::/0 trust\nhost all all 0.0.0.0/0 reject\n",
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("127.0.0.1"), "d", "u")),
        Some(2)
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("::1"), "d", "u")),
        Some(1)
    );
    // a v4-mapped client is an IPv6 client
    assert_eq!(
        line_of(&rs, &Connection::host(ip("::ffff:127.0.0.1"), "d", "u")),
        Some(1)
    );
    let rs = load(PgVersion::V16, "host all all 127.0.0.0/8 trust\n");
    assert_eq!(
        line_of(&rs, &Connection::host(ip("::ffff:127.0.0.1"), "d", "u")),
        None
    );
}

#[test]
fn netmask_column_and_non_contiguous_masks() {
    let rs = load(
        PgVersion::V13,
        "host all all 10.0.0.5 255.0.0.255 trust\nhost all all 127.1/8 reject\n",
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("10.9.9.5"), "d", "u")),
        Some(1)
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("10.9.9.6"), "d", "u")),
        None
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("127.8.0.1"), "d", "u")),
        Some(2)
    );
}

#[test]
fn samehost_samenet_and_host_names_use_the_context() {
    let rs = load(
        PgVersion::V16,
        "host all all samehost trust\nhost all all samenet md5\nhost all all .example password\nhost all all all reject\n",
    );
    let at = |a: &str| line_of(&rs, &Connection::host(ip(a), "d", "u"));
    assert_eq!(at("127.0.0.1"), Some(1));
    assert_eq!(at("::1"), Some(1));
    assert_eq!(at("127.0.0.2"), Some(2));
    assert_eq!(at("10.0.0.1"), Some(4));
    let rs = load(
        PgVersion::V16,
        "host all all .EXAMPLE password\nhost all all all reject\n",
    );
    let at = |a: &str| line_of(&rs, &Connection::host(ip(a), "d", "u"));
    assert_eq!(at("127.0.0.2"), Some(1));
    // its name does not resolve back to it
    assert_eq!(at("127.0.0.5"), Some(2));
    // no name at all
    assert_eq!(at("127.0.0.9"), Some(2));
    // unknown without DNS
    let m = rs.first_match(
        &Connection::host(ip("127.0.0.2"), "d", "u"),
        &StaticContext::default(),
    );
    assert_eq!(
        (m.maybe.clone(), m.rule().map(|r| r.line)),
        (vec![0], Some(2))
    );
}

#[test]
fn regular_expressions_are_16_and_later() {
    let text = "host all /^app_ all trust\nhost all all all reject\n";
    let c = Connection::host(ip("10.0.0.1"), "d", "app_remote");
    assert_eq!(line_of(&load(PgVersion::V16, text), &c), Some(1));
    assert_eq!(line_of(&load(PgVersion::V15, text), &c), Some(2));
    let c15 = Connection::host(ip("10.0.0.1"), "d", "/^app_");
    assert_eq!(line_of(&load(PgVersion::V15, text), &c15), Some(1));
    // quoted regexes are still regexes on the server
    let rs = load(PgVersion::V16, "host \"/^d[0-9]$\" all all trust\n");
    assert_eq!(
        line_of(&rs, &Connection::host(ip("10.0.0.1"), "d7", "u")),
        Some(1)
    );
    // a pattern the approximation cannot read is unknown, not a guess
    let rs = load(PgVersion::V16, "host all \"/^(a)\\1\" all trust\n");
    let m = rs.first_match(&Connection::host(ip("10.0.0.1"), "d", "aa"), &ctx());
    assert!(!m.certain);
}

#[test]
fn explanation_names_the_failing_check() {
    let rs = load(
        PgVersion::V16,
        "local all all peer\nhostssl all all all trust\nhost app all 10.0.0.0/8 trust\nhost all bob 0.0.0.0/0 trust\nhost all all 0.0.0.0/0 scram-sha-256\n",
    );
    let m = rs.first_match(&Connection::host(ip("192.0.2.1"), "app", "alice"), &ctx());
    let checks: Vec<Option<Check>> = m
        .steps
        .iter()
        .map(|s| match &s.outcome {
            RuleOutcome::NoMatch(r) => Some(r.check),
            _ => None,
        })
        .collect();
    assert_eq!(
        checks,
        vec![
            Some(Check::ConnectionType),
            Some(Check::Ssl),
            Some(Check::Address),
            Some(Check::User),
            None
        ]
    );
    assert_eq!(m.rule().unwrap().line, 5);
    let RuleOutcome::NoMatch(r) = &m.steps[2].outcome else {
        panic!()
    };
    assert_eq!(
        r.to_string(),
        "address: 192.0.2.1 not in 10.0.0.0/255.0.0.0"
    );
}

#[test]
fn shadowing_found_only_when_certain() {
    let rs = load(
        PgVersion::V16,
        "\
host all all 10.0.0.0/8 reject
host app app 10.1.0.0/16 scram-sha-256
host all all 192.168.0.0/16 trust
hostssl app,other +g 192.168.1.0/24 md5
host all +g 172.16.0.0/12 trust
host all u0 172.16.0.0/12 trust
hostnossl all all samenet trust
hostgssenc all all samehost trust
host replication all all trust
host all all all trust
host replication all 10.0.0.0/8 trust
host all all .example trust
host all all db.example trust
",
    );
    let found: Vec<(usize, usize)> = shadowed_rules(&rs).iter().map(|s| (s.rule, s.by)).collect();
    // +g does not certainly include u0 in the file alone; replication lines are
    // only covered by replication lines
    assert_eq!(
        found,
        vec![(1, 0), (3, 2), (7, 6), (10, 8), (11, 9), (12, 9)]
    );
}

#[test]
fn overlap_queries_for_a_new_rule() {
    let rs = load(
        PgVersion::V16,
        "\
host all all 203.0.113.0/28 reject
host other all 198.51.100.0/24 reject
host all all 198.51.100.0/24 scram-sha-256
host all all 0.0.0.0/0 reject
",
    );
    let before_catch_all = &rs.rules[..3];
    let new = candidate_rule(
        ConnectionType::HostSsl,
        "198.51.100.7/32".parse().unwrap(),
        "knocknoc",
        "knocknoc_remote",
        AuthMethod::ScramSha256,
    );
    assert!(first_overlapping_reject(before_catch_all, &new, rs.version).is_none());
    assert_eq!(
        overlapping_rules(before_catch_all, &new, rs.version),
        vec![(2, Overlap::Covers)]
    );
    let wide = candidate_rule(
        ConnectionType::Host,
        "203.0.113.0/24".parse().unwrap(),
        "knocknoc",
        "knocknoc_remote",
        AuthMethod::ScramSha256,
    );
    let (i, r) = first_overlapping_reject(before_catch_all, &wide, rs.version).unwrap();
    assert_eq!((i, r.line), (0, 1));
    assert_eq!(
        overlapping_rules(before_catch_all, &wide, rs.version),
        vec![(0, Overlap::Partial)]
    );
}

/// Regression: `sameuser` was taken to overlap any database name, so a
/// `sameuser` reject stopped rules for a database named unlike their user.
#[test]
fn sameuser_overlaps_only_a_database_named_like_a_user() {
    let rs = load(PgVersion::V16, "host sameuser all 10.0.0.0/8 reject\n");
    let net = "10.1.0.0/16".parse().unwrap();
    let rule = |db: &str, user: &str| {
        candidate_rule(ConnectionType::Host, net, db, user, AuthMethod::ScramSha256)
    };
    let v = rs.version;
    assert!(!overlaps(
        &rs.rules[0].rule,
        &rule("knocknoc", "knocknoc_remote"),
        v
    ));
    assert!(first_overlapping_reject(&rs.rules, &rule("knocknoc", "knocknoc_remote"), v).is_none());
    assert!(overlaps(&rs.rules[0].rule, &rule("app", "app"), v));
    let only_u0 = load(PgVersion::V16, "host sameuser u0 10.0.0.0/8 reject\n");
    assert!(!overlaps(&only_u0.rules[0].rule, &rule("u1", "+g"), v));
}

#[test]
fn catch_all_rejects() {
    let rs = load(
        PgVersion::V16,
        "\
local all all reject
host all all 10.0.0.0/8 reject
host \"all\" all 0.0.0.0/0 reject
hostssl all all 0.0.0.0/0 trust
hostnossl all,x all ::/0 reject
host all all all reject
",
    );
    let found: Vec<bool> = rs
        .rules
        .iter()
        .map(|r| is_catch_all_reject(&r.rule))
        .collect();
    assert_eq!(found, [false, false, false, false, true, true]);
    assert_eq!(first_catch_all_reject(&rs.rules), Some(4));
    assert_eq!(first_catch_all_reject(&rs.rules[..4]), None);
}

// ---- properties over generated rules ----

const DBS: &[&str] = &[
    "all",
    "sameuser",
    "samerole",
    "samegroup",
    "replication",
    "d0",
    "d1",
    "u0",
    "\"all\"",
    "/^d",
    "\"/1$\"",
    "g",
];
const USERS: &[&str] = &[
    "all", "u0", "u1", "+g", "+d1", "\"+g\"", "/^u", "\"all\"", "g",
];
const ADDRS: &[&str] = &[
    "all",
    "samehost",
    "samenet",
    "127.0.0.0/8",
    "127.0.0.2/32",
    "127.0.0.0/30",
    "127.0.0.0 255.0.0.254",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::1/128",
    "::/0",
    ".example",
    "h.example",
];

fn rule_line() -> impl Strategy<Value = String> {
    (
        0..CONNECTION_TYPES.len(),
        proptest::collection::vec(0..DBS.len(), 1..3),
        proptest::collection::vec(0..USERS.len(), 1..3),
        0..ADDRS.len(),
        any::<bool>(),
    )
        .prop_map(|(t, d, u, a, rej)| {
            let dbs: Vec<&str> = d.iter().map(|&i| DBS[i]).collect();
            let users: Vec<&str> = u.iter().map(|&i| USERS[i]).collect();
            let addr = if CONNECTION_TYPES[t] == "local" {
                ""
            } else {
                ADDRS[a]
            };
            format!(
                "{} {} {} {} {}",
                CONNECTION_TYPES[t],
                dbs.join(","),
                users.join(","),
                addr,
                if rej { "reject" } else { "trust" }
            )
        })
}

fn all_connections() -> Vec<Connection> {
    let addrs = [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.5",
        "10.1.2.3",
        "192.0.2.1",
        "::1",
        "::ffff:127.0.0.1",
    ];
    let mut kinds = vec![Connection::local("", "")];
    for a in addrs {
        let c = Connection::host(ip(a), "", "");
        kinds.push(c.clone());
        kinds.push(c.clone().with_ssl(true));
        kinds.push(c.with_gss(true));
    }
    let mut out = Vec::new();
    for k in &kinds {
        for db in ["d0", "d1", "u0", "g", "all", "x1"] {
            for user in ["u0", "u1", "u2", "g", "all", "nobody"] {
                for repl in [false, true] {
                    let mut c = k.clone();
                    c.database = db.into();
                    c.user = user.into();
                    c.replication = repl;
                    out.push(c);
                }
            }
        }
    }
    out
}

fn matches(rs: &RuleSet, i: usize, c: &Connection, cx: &StaticContext) -> bool {
    match pghba::matcher::rule_outcome(&rs.rules[i].rule, rs.version, c, cx) {
        RuleOutcome::Matches => true,
        RuleOutcome::NoMatch(_) => false,
        RuleOutcome::Unknown(r) => panic!("complete context left {r:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A rule reported as covering another matches every sampled connection
    /// the other does; rules said to be disjoint never share one; and a
    /// shadowed rule is never the first match.
    #[test]
    fn coverage_and_overlap_agree_with_sampled_connections(
        lines in proptest::collection::vec(rule_line(), 2..8),
        v16 in any::<bool>(),
    ) {
        let version = if v16 { PgVersion::V16 } else { PgVersion::V15 };
        let text = lines.join("\n") + "\n";
        let rs = RuleSet::load("/x/pg_hba.conf", text.as_bytes(), &mut NoFiles, &ValidateOptions::for_version(version));
        let cx = ctx();
        let conns = all_connections();
        for i in 0..rs.rules.len() {
            for j in 0..rs.rules.len() {
                if i == j { continue; }
                let (a, b) = (&rs.rules[i].rule, &rs.rules[j].rule);
                let cov = covers(a, b, version);
                let ovl = overlaps(a, b, version);
                for c in &conns {
                    let (ma, mb) = (matches(&rs, i, c, &cx), matches(&rs, j, c, &cx));
                    if cov && mb {
                        prop_assert!(ma, "{:?} said to cover {:?} but misses {:?}", a, b, c);
                    }
                    if ma && mb {
                        prop_assert!(ovl, "{:?} and {:?} both match {:?}", a, b, c);
                    }
                }
            }
        }
        let shadowed: Vec<usize> = shadowed_rules(&rs).iter().map(|s| s.rule).collect();
        for c in &conns {
            let m = rs.first_match(c, &cx);
            prop_assert!(m.certain);
            if let Some((i, _)) = m.matched {
                prop_assert!(!shadowed.contains(&i), "shadowed rule {} matched {:?}", i, c);
            }
        }
    }
}

/// Regression (known-lint-bugs `addr-ipv6-scope.conf`): a rule address with
/// an interface name as IPv6 scope loads when the server's machine has that
/// interface, and matches on the address alone (the server compares address
/// bytes under the mask, never the scope).
#[test]
fn scoped_ipv6_rule_matches_by_address() {
    let opts = ValidateOptions {
        interfaces: pghba::InterfaceNames::Known(vec!["wg7".into()]),
        ..ValidateOptions::for_version(PgVersion::V17)
    };
    let text = "host all all fe80::1%wg7/128 trust\nhost all all ::/0 reject\n";
    let rs = RuleSet::load("/etc/pg_hba.conf", text.as_bytes(), &mut NoFiles, &opts);
    assert!(rs.verdict.loads);
    assert_eq!(
        line_of(&rs, &Connection::host(ip("fe80::1"), "d", "u1")),
        Some(1)
    );
    assert_eq!(
        line_of(&rs, &Connection::host(ip("fe80::2"), "d", "u1")),
        Some(2)
    );
    // without that interface the same file does not load
    let elsewhere = ValidateOptions {
        interfaces: pghba::InterfaceNames::Known(vec![]),
        ..opts
    };
    let rs = RuleSet::load(
        "/etc/pg_hba.conf",
        text.as_bytes(),
        &mut NoFiles,
        &elsewhere,
    );
    assert!(!rs.verdict.loads);
}
