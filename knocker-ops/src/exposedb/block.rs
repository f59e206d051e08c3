//! The block of rules `knocker exposedb` keeps in a pg_hba.conf: where it
//! goes, what it holds, and which of the operator's lines come first.
//!
//! The block sits between [`BEGIN_MARKER`] and [`END_MARKER`]. When it does
//! not exist yet it is created just before the first catch-all `reject`
//! line (database and user `all`, address `all`, `0.0.0.0/0` or `::/0`), so
//! that its rules are reached, or at the end of the file. Each rule in it
//! admits one CIDR to one database as one role with `scram-sha-256`.
//!
//! Where the block goes and which rules the server reads before it is
//! pghba's generic [`ManagedBlock`] (includes expanded); which of the
//! operator's lines may decide the block's connections is asked of
//! [`pghba::shadow`] (the overlap analysis behind `knocker hba lint
//! --shadowing`), and which line a connection hits of [`pghba::matcher`].
//! This module is knocker's policy: the markers, the [`Scope`] of the
//! rules (one database, one role, `scram-sha-256`), and "the operator's
//! reject wins unless forced".
//!
//! ```
//! use knocker_ops::exposedb::block::{plan, HbaFile, Request, Scope, BEGIN_MARKER};
//! use pghba::{NoFiles, PgVersion};
//!
//! let old = b"local all all peer\nhost all all 0.0.0.0/0 reject\n";
//! let file = HbaFile { path: "/etc/pg_hba.conf", text: old, version: PgVersion::V15 };
//! let scope = Scope { database: "knocknoc".into(), user: "knocknoc_remote".into(), hostssl: true };
//! let add = ["203.0.113.7/32".parse().unwrap()];
//! // `NoFiles`: the file has no includes; a real caller passes `FsLoader`.
//! let request = Request { add: add.to_vec(), comment: "added by test".into(), ..Request::default() };
//! let change = plan(&file, &mut NoFiles, &scope, &request).unwrap();
//! let text = String::from_utf8(change.new_text).unwrap();
//! assert!(text.starts_with(&format!("local all all peer\n{BEGIN_MARKER}\nhostssl knocknoc knocknoc_remote 203.0.113.7/32 scram-sha-256 # added by test\n")));
//! assert!(text.ends_with("# END knocker exposedb\nhost all all 0.0.0.0/0 reject\n"));
//! ```

use std::net::IpAddr;

use ipnet::IpNet;
use pghba::managed_block::{line_text, ManagedBlock};
pub use pghba::managed_block::{rule_set, rule_text, HbaFile};
use pghba::matcher::{Connection, LocatedRule};
use pghba::shadow::{self, candidate_rule, Overlap};
use pghba::{
    quote_name, AuthMethod, BlockError, CheckedLine, ConnectionType, FileLoader, HbaAddress,
    HbaDocument, HbaRule, PgVersion,
};

/// The comment line that opens the managed block.
pub const BEGIN_MARKER: &str =
    "# BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)";
/// The comment line that closes the managed block.
pub const END_MARKER: &str = "# END knocker exposedb";

/// The block, as pghba's generic managed block.
pub const BLOCK: ManagedBlock<'static> = ManagedBlock {
    begin: BEGIN_MARKER,
    end: END_MARKER,
};

/// Which database and role the block's rules admit, and over which
/// connection type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The application database.
    pub database: String,
    /// The remote login role.
    pub user: String,
    /// The server has SSL on: write `hostssl` rather than `host` (and the
    /// operator's `hostssl` lines can match; with SSL off they never do).
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
    /// The file the line is in: the top file's [`HbaFile::path`], or an
    /// included file's absolute path.
    pub file: String,
    /// Whether `file` is an included file (not the top file).
    pub included: bool,
    /// Line number in `file` (1-based).
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
    #[error("{}:{} rejects connections from part of {net}: {}", .line.file, .line.line_number, .line.text)]
    RejectedBy {
        /// The CIDR being added.
        net: IpNet,
        /// The operator's line.
        line: EarlierLine,
    },
}

/// What [`plan`] is asked to do: the CIDRs to add and remove (as one
/// change), the comment after each new rule, and whether the operator's
/// earlier rejects are overridden.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// CIDRs to admit (those present are left alone).
    pub add: Vec<IpNet>,
    /// CIDRs to take out.
    pub remove: Vec<IpNet>,
    /// The comment after each new rule (without `#`).
    pub comment: String,
    /// Go on past an earlier reject of the operator's.
    pub force: bool,
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

/// A connection from `addr` to the scope's database as its role, encrypted
/// with SSL when the block's rules are `hostssl`: what `--explain` asks
/// [`pghba::matcher::RuleSet::first_match`] about.
pub fn connection(scope: &Scope, addr: IpAddr) -> Connection {
    Connection::host(addr, scope.database.as_str(), scope.user.as_str()).with_ssl(scope.hostssl)
}

/// The rule the block holds for `net`, as [`crate::shadow`] compares it.
fn candidate(scope: &Scope, net: IpNet) -> HbaRule {
    let kind = if scope.hostssl {
        ConnectionType::HostSsl
    } else {
        ConnectionType::Host
    };
    candidate_rule(
        kind,
        net,
        &scope.database,
        &scope.user,
        AuthMethod::ScramSha256,
    )
}

/// The block's rules, as [`BlockRule`]s (index into `doc.lines()` with
/// each): those of `found` (from [`ManagedBlock::rules_inside`]) that admit
/// an address range.
fn block_rules(doc: &HbaDocument, found: &[(usize, LocatedRule)]) -> Vec<(usize, BlockRule)> {
    found
        .iter()
        .filter_map(|(i, r)| {
            let i = *i;
            let rule = &r.rule;
            let net = match rule.address {
                Some(HbaAddress::Ip { addr, mask }) => {
                    IpNet::new(addr, ipnet::ip_mask_to_prefix(mask).ok()?).ok()?
                }
                _ => return None,
            };
            let line = &doc.lines()[i];
            Some((
                i,
                BlockRule {
                    line_number: line.line_number(),
                    net,
                    connection_type: rule.connection_type,
                    databases: rule.databases.iter().map(|t| t.value.clone()).collect(),
                    users: rule.users.iter().map(|t| t.value.clone()).collect(),
                    comment: line.comment().map(|c| {
                        String::from_utf8_lossy(c)
                            .trim_start_matches('#')
                            .trim()
                            .to_string()
                    }),
                },
            ))
        })
        .collect()
}

/// The rules inside the managed block (none when there is no block).
pub fn list(doc: &HbaDocument, version: PgVersion) -> Result<Vec<BlockRule>, BlockError> {
    let Some(range) = BLOCK.find(doc)? else {
        return Ok(Vec::new());
    };
    let found = BLOCK.rules_inside(doc, &range, version);
    Ok(block_rules(doc, &found)
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// A walk of the new text for [`plan_walking`]: check `text` as the
/// server would (included files through the loader given, or the walker's
/// own), pass the lines `select` says yes to, in the server's order, to
/// `observe`. A caller that validates the new text anyway walks it once
/// for both (`pgctl::hba_install::validate_observed`).
pub type Walk<'w> = dyn FnMut(
        &[u8],
        &mut dyn FileLoader,
        &(dyn Fn(&CheckedLine<'_>) -> bool + Sync),
        &mut dyn FnMut(&CheckedLine<'_>),
    ) + 'w;

/// Compute the new file: the block created when missing, `add` CIDRs added
/// (those present are left alone) and `remove` CIDRs taken out, with
/// `comment` after each new rule. The operator's lines the server reads
/// before the block (included files expanded in place through `loader`)
/// that may catch connections of an added CIDR are found by
/// [`shadow::overlapping_rules`]; the first reject among them
/// ([`shadow::first_overlapping_reject`]) stops the plan unless `force`.
/// `+group` and `@file` user names are not resolved here: a reject that
/// may catch the role stops the plan (the operator's reject wins).
pub fn plan(
    file: &HbaFile<'_>,
    loader: &mut dyn FileLoader,
    scope: &Scope,
    request: &Request,
) -> Result<Change, PlanError> {
    let opts = pghba::ValidateOptions {
        ssl_enabled: scope.hostssl,
        ..pghba::ValidateOptions::for_version(file.version)
    };
    let path = file.path;
    plan_walking(
        file,
        loader,
        scope,
        request,
        &mut |text, loader, select, observe| {
            pghba::check_selected(path, text, loader, &opts, select, observe);
        },
    )
}

/// [`plan`], the rules before the block found by one `walk` of the new
/// text (the lines before the block are the old file's): the walk a
/// validation of the new text makes anyway. Its options must be the
/// server's version with `ssl` = [`Scope::hostssl`] (with SSL off, the
/// operator's `hostssl` lines never match).
pub fn plan_walking(
    file: &HbaFile<'_>,
    loader: &mut dyn FileLoader,
    scope: &Scope,
    request: &Request,
    walk: &mut Walk<'_>,
) -> Result<Change, PlanError> {
    let Request {
        add,
        remove,
        comment,
        force,
    } = request;
    let force = *force;
    let version = file.version;
    let mut doc = HbaDocument::parse_for(file.text, version);
    let database =
        quote_name(&scope.database).ok_or_else(|| PlanError::BadName(scope.database.clone()))?;
    let user = quote_name(&scope.user).ok_or_else(|| PlanError::BadName(scope.user.clone()))?;
    let mut change = Change::default();
    // Loads of the file before any edit: the block's rules and the lines
    // before it keep their indices unless the block is created, and then
    // it is empty and only lines after it move.
    let existing = BLOCK.find(&doc)?;
    let (begin, present) = match &existing {
        // Only the block's own lines are read for its rules.
        Some(r) => (
            r.begin,
            block_rules(&doc, &BLOCK.rules_inside(&doc, r, version)),
        ),
        None => (
            BLOCK.position_for_new(file, &doc, loader, scope.hostssl),
            Vec::new(),
        ),
    };
    // The first physical line of the block (or of where it goes): the top
    // file's lines before it are the same in the old and the new text.
    let lines = doc.lines();
    let block_line = match lines.get(begin) {
        Some(l) => l.line_number(),
        None => lines.last().map_or(1, |l| l.line_number() + l.line_count()),
    };
    let mut to_remove: Vec<usize> = Vec::new();
    for net in remove {
        let hits: Vec<usize> = present
            .iter()
            .filter(|(_, r)| r.net == *net)
            .map(|&(i, _)| i)
            .collect();
        if hits.is_empty() {
            change.absent.push(*net);
        } else {
            change.removed.push(*net);
            to_remove.extend(hits);
        }
    }
    let mut adding: Vec<IpNet> = Vec::new();
    for net in add {
        if present.iter().any(|(_, r)| r.net == *net) || adding.contains(net) {
            if !change.already_present.contains(net) {
                change.already_present.push(*net);
            }
            continue;
        }
        adding.push(*net);
    }
    let range = match existing {
        Some(r) => r,
        None => {
            change.created_block = true;
            doc.set_block(BLOCK.begin, BLOCK.end, &[], begin)?
        }
    };
    let kind = if scope.hostssl { "hostssl" } else { "host" };
    let new_lines: Vec<Vec<u8>> = adding
        .iter()
        .map(|net| {
            let addr = net.to_string();
            let fields = [kind, &database, &user, &addr, "scram-sha-256"];
            doc.format_record(range.end, &fields, Some(&format!("# {comment}")))
        })
        .collect();
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

    // The operator's rules the server reads before the block that may catch
    // a connection of an added CIDR, in order: the only ones the reject and
    // overlap questions below can answer with (rules with a warning never
    // match, so they decide nothing).
    let candidates: Vec<HbaRule> = adding.iter().map(|net| candidate(scope, *net)).collect();
    let relevant = |l: &CheckedLine<'_>| {
        l.top_line < block_line
            && l.verdict.error.is_none()
            && l.verdict.rule.as_ref().is_some_and(|rule| {
                candidates
                    .iter()
                    .any(|c| shadow::covers(rule, c, version) || shadow::overlaps(rule, c, version))
            })
    };
    let mut earlier: Vec<LocatedRule> = Vec::new();
    // Walked whenever the text changes: a caller validating the new text
    // does it here (for a removal too), once.
    if change.new_text != file.text {
        walk(&change.new_text, loader, &relevant, &mut |l| {
            if let Some(rule) = &l.verdict.rule {
                earlier.push(LocatedRule {
                    file: l.file_name.to_string(),
                    line: l.line_number,
                    rule: rule.clone(),
                    warning: None,
                });
            }
        });
    }
    let mut earlier_line = |k: usize, rejects: bool, covers_all: bool| {
        let r = &earlier[k];
        EarlierLine {
            file: r.file.clone(),
            included: r.file != file.path,
            line_number: r.line,
            text: line_text(file, &doc, loader, &r.file, r.line),
            rejects,
            covers_all,
        }
    };
    for (net, new_rule) in adding.iter().zip(&candidates) {
        if let Some((k, _)) = shadow::first_overlapping_reject(&earlier, new_rule, version) {
            if !force {
                let covers_all = shadow::covers(&earlier[k].rule, new_rule, version);
                return Err(PlanError::RejectedBy {
                    net: *net,
                    line: earlier_line(k, true, covers_all),
                });
            }
        }
        for (k, how) in shadow::overlapping_rules(&earlier, new_rule, version) {
            let rejects = earlier[k].rule.method == AuthMethod::Reject;
            change
                .shadowed_by
                .push((*net, earlier_line(k, rejects, how == Overlap::Covers)));
        }
    }
    change.added = adding;
    Ok(change)
}

/// Remove the managed block, markers and rules. Returns the new text and
/// whether there was a block.
pub fn remove(old: &[u8], version: PgVersion) -> Result<(Vec<u8>, bool), PlanError> {
    Ok(BLOCK.remove(old, version)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pghba::matcher::{RuleSet, StaticContext};
    use pghba::NoFiles;
    use std::collections::HashMap;

    fn scope() -> Scope {
        Scope {
            database: "knocknoc".into(),
            user: "knocknoc_remote".into(),
            hostssl: false,
        }
    }

    const PATH: &str = "/etc/postgresql/16/main/pg_hba.conf";

    fn top(text: &[u8], version: PgVersion) -> HbaFile<'_> {
        HbaFile {
            path: PATH,
            text,
            version,
        }
    }

    /// [`plan`] on a file without includes.
    fn plan_nf(
        old: &[u8],
        version: PgVersion,
        scope: &Scope,
        add: &[IpNet],
        remove: &[IpNet],
        comment: &str,
        force: bool,
    ) -> Result<Change, PlanError> {
        let request = Request {
            add: add.to_vec(),
            remove: remove.to_vec(),
            comment: comment.to_string(),
            force,
        };
        plan(&top(old, version), &mut NoFiles, scope, &request)
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// Add one CIDR for [`scope`], unforced.
    fn add(old: &[u8], version: PgVersion, cidr: &str) -> Result<Change, PlanError> {
        plan_nf(old, version, &scope(), &[net(cidr)], &[], "c", false)
    }

    fn take_out(old: &[u8], cidr: &str) -> Change {
        plan_nf(old, PgVersion::V16, &scope(), &[], &[net(cidr)], "c", false).unwrap()
    }

    #[test]
    fn block_goes_before_first_catch_all_reject() {
        let old = b"local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all all reject\nhost all all ::/0 reject\n";
        let c = add(old, PgVersion::V16, "10.0.0.0/8").unwrap();
        let t = String::from_utf8(c.new_text.clone()).unwrap();
        let b = t.find(BEGIN_MARKER).unwrap();
        assert!(b < t.find("host all all all reject").unwrap());
        assert!(t.find("127.0.0.1/32").unwrap() < b);
        assert!(c.created_block);
        // the block's rules are found again mid-file (its lines read apart
        // from the rest, their numbers shifted back)
        let again = add(&c.new_text, PgVersion::V16, "10.0.0.0/8").unwrap();
        assert_eq!(again.already_present, vec![net("10.0.0.0/8")]);
        let r = take_out(&c.new_text, "10.0.0.0/8");
        assert_eq!(r.removed, vec![net("10.0.0.0/8")]);
        assert_eq!(
            r.new_text,
            t.replace(
                "host knocknoc knocknoc_remote 10.0.0.0/8 scram-sha-256 # c\n",
                ""
            )
            .into_bytes()
        );
    }

    #[test]
    fn block_at_end_without_catch_all() {
        let old = b"local all all trust";
        let c = plan_nf(old, PgVersion::V16, &scope(), &[], &[], "c", false).unwrap();
        let t = String::from_utf8(c.new_text).unwrap();
        assert_eq!(
            t,
            format!("local all all trust\n{BEGIN_MARKER}\n{END_MARKER}\n")
        );
    }

    #[test]
    fn add_is_idempotent_and_remove_takes_it_out() {
        let old = b"local all all trust\n";
        let c = add(old, PgVersion::V16, "10.1.0.0/16").unwrap();
        let again = add(&c.new_text, PgVersion::V16, "10.1.0.0/16").unwrap();
        assert!(!again.changed());
        assert_eq!(again.already_present, vec![net("10.1.0.0/16")]);
        assert_eq!(again.new_text, c.new_text);
        let doc = HbaDocument::parse(&c.new_text);
        assert_eq!(
            list(&doc, PgVersion::V16).unwrap()[0].net,
            net("10.1.0.0/16")
        );
        let r = take_out(&c.new_text, "10.1.0.0/16");
        assert_eq!(r.removed, vec![net("10.1.0.0/16")]);
        assert!(list(&HbaDocument::parse(&r.new_text), PgVersion::V16)
            .unwrap()
            .is_empty());
        let (gone, had) = remove(&r.new_text, PgVersion::V16).unwrap();
        assert!(had);
        assert_eq!(gone, old);
    }

    /// Guards `list` reading only the block's lines: rules mid-file keep
    /// the file's line numbers (also after a continued line before the
    /// block), an operator's edit inside the block is reported as it is,
    /// and a line the version rejects inside it is skipped.
    #[test]
    fn list_reads_the_block_alone_with_the_files_line_numbers() {
        let text = format!(
            "local all all trust\nhost all \\\n all 10.9.0.0/16 md5\n{BEGIN_MARKER}\n\
             host knocknoc knocknoc_remote 10.1.0.0/16 scram-sha-256 # a\n\
             hostssl all knocknoc_remote 10.2.0.0/16 md5\n\
             host knocknoc knocknoc_remote 10.3.0.0/33 scram-sha-256\n\
             host knocknoc knocknoc_remote fe80::/64 scram-sha-256 # b\n\
             {END_MARKER}\nhost all all all reject\n"
        );
        let doc = HbaDocument::parse_for(text.as_bytes(), PgVersion::V16);
        let got = list(&doc, PgVersion::V16).unwrap();
        let lines: Vec<(u32, String, Option<String>)> = got
            .iter()
            .map(|r| (r.line_number, r.net.to_string(), r.comment.clone()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (5, "10.1.0.0/16".to_string(), Some("a".to_string())),
                (6, "10.2.0.0/16".to_string(), None),
                (8, "fe80::/64".to_string(), Some("b".to_string())),
            ]
        );
        assert_eq!(got[1].connection_type, ConnectionType::HostSsl);
        assert_eq!(got[1].databases, vec!["all".to_string()]);
    }

    #[test]
    fn narrower_operator_reject_stops_the_add_unless_forced() {
        let old = b"host all all 203.0.113.0/28 reject\nhost all all 0.0.0.0/0 reject\n";
        let e = add(old, PgVersion::V15, "203.0.113.0/24").unwrap_err();
        match e {
            PlanError::RejectedBy { line, .. } => assert_eq!(line.line_number, 1),
            other => panic!("{other:?}"),
        }
        let c = plan_nf(
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
        assert!(add(other, PgVersion::V15, "203.0.113.0/24").is_ok());
    }

    #[test]
    fn explain_finds_the_block_rule() {
        let old = b"local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 reject\n";
        let c = add(old, PgVersion::V15, "127.0.0.2/32").unwrap();
        let rules = rule_set(&top(&c.new_text, PgVersion::V15), &mut NoFiles, false);
        let ctx = StaticContext::default();
        let hit = |text: &RuleSet, a: &str| {
            let m = text.first_match(&connection(&scope(), a.parse().unwrap()), &ctx);
            assert!(m.certain);
            m.rule().map(|r| (r.line, r.rule.method))
        };
        assert_eq!(hit(&rules, "127.0.0.2"), Some((4, AuthMethod::ScramSha256)));
        assert_eq!(hit(&rules, "127.0.0.3"), Some((6, AuthMethod::Reject)));
        let none = rule_set(
            &top(b"local all all trust\n", PgVersion::V15),
            &mut NoFiles,
            false,
        );
        assert_eq!(hit(&none, "10.0.0.1"), None);
    }

    fn stopped_by(old: &[u8], version: PgVersion, scope: &Scope, cidr: &str) -> Option<u32> {
        match plan_nf(old, version, scope, &[net(cidr)], &[], "c", false) {
            Ok(_) => None,
            Err(PlanError::RejectedBy { line, .. }) => Some(line.line_number),
            Err(other) => panic!("{other:?}"),
        }
    }

    /// Regression: the block's own matcher read `/...` as a regular
    /// expression only when unquoted and on every version; the server
    /// (hba.c `regcomp_auth_token`) compiles any token starting with `/`,
    /// quoted or not, and only from 16 on.
    #[test]
    fn regex_rejects_follow_the_server() {
        let quoted = "host \"/^knock\" all 10.0.0.0/8 reject";
        let bare = "host /^knock all 10.0.0.0/8 reject";
        for (line, version, stops) in [
            (quoted, PgVersion::V16, true),
            // before 16 it is the literal database name "/^knock"
            (quoted, PgVersion::V15, false),
            (bare, PgVersion::V15, false),
            (bare, PgVersion::V16, true),
            // a regex that surely misses the role does not stop the add
            ("host all /^admin 10.0.0.0/8 reject", PgVersion::V16, false),
            // one the matcher cannot decide does (the operator's reject wins)
            ("host all /(a)\\1 10.0.0.0/8 reject", PgVersion::V16, true),
        ] {
            let old = format!("{line}\n");
            let got = stopped_by(old.as_bytes(), version, &scope(), "10.1.0.0/16");
            assert_eq!(got, stops.then_some(1), "{line} on {}", version.major());
        }
    }

    /// Regression: `sameuser` rejects only connections whose database is
    /// named like the user, so it stops the add only for such a scope.
    #[test]
    fn sameuser_reject_stops_only_a_same_named_scope() {
        let old = b"host sameuser all 10.0.0.0/8 reject\n";
        assert_eq!(
            stopped_by(old, PgVersion::V16, &scope(), "10.1.0.0/16"),
            None
        );
        let same = Scope {
            database: "knocknoc".into(),
            user: "knocknoc".into(),
            hostssl: false,
        };
        assert_eq!(
            stopped_by(old, PgVersion::V16, &same, "10.1.0.0/16"),
            Some(1)
        );
    }

    /// The connection types the block's rule admits decide which rejects
    /// overlap it: `hostssl` rules never meet `hostnossl` or `hostgssenc`
    /// lines; a `host` rule (the server has SSL off) also admits
    /// GSSAPI-encrypted connections, which a `hostgssenc` reject takes
    /// (the block's old matcher assumed no GSSAPI encryption); `hostssl`
    /// lines never match with SSL off.
    #[test]
    fn connection_types_decide_which_rejects_overlap() {
        let ssl = Scope {
            hostssl: true,
            ..scope()
        };
        for (line, with_ssl, without) in [
            ("hostnossl all all 10.0.0.0/8 reject", None, Some(1)),
            ("hostgssenc all all 10.0.0.0/8 reject", None, Some(1)),
            ("hostssl all all 10.0.0.0/8 reject", Some(1), None),
            ("host all all 10.0.0.0/8 reject", Some(1), Some(1)),
        ] {
            let old = format!("{line}\n");
            let got = (
                stopped_by(old.as_bytes(), PgVersion::V16, &ssl, "10.1.0.0/16"),
                stopped_by(old.as_bytes(), PgVersion::V16, &scope(), "10.1.0.0/16"),
            );
            assert_eq!(got, (with_ssl, without), "{line}");
        }
    }

    #[test]
    fn shadowing_allow_lines_are_reported_with_how_much() {
        let old = b"host all all 10.0.0.0/8 md5\nhost knocknoc all 10.1.2.0/24 trust\nhost all all 192.168.0.0/16 trust\n";
        let c = add(old, PgVersion::V16, "10.1.0.0/16").unwrap();
        let got: Vec<(u32, bool, bool)> = c
            .shadowed_by
            .iter()
            .map(|(_, l)| (l.line_number, l.rejects, l.covers_all))
            .collect();
        assert_eq!(got, vec![(1, false, true), (2, false, false)]);
        assert_eq!(
            c.shadowed_by[1].1.text,
            "host knocknoc all 10.1.2.0/24 trust"
        );
        assert!(c.new_text.ends_with(b"# c\n# END knocker exposedb\n"));
    }

    #[test]
    fn only_lines_before_the_block_count() {
        let old = format!(
            "host all all 0.0.0.0/0 reject\n{BEGIN_MARKER}\n{END_MARKER}\nhost all all 10.0.0.0/8 reject\n"
        );
        // the operator's catch-all before an existing block wins
        assert_eq!(
            stopped_by(old.as_bytes(), PgVersion::V16, &scope(), "10.1.0.0/16"),
            Some(1)
        );
        let after = format!("{BEGIN_MARKER}\n{END_MARKER}\nhost all all 10.0.0.0/8 reject\n");
        assert_eq!(
            stopped_by(after.as_bytes(), PgVersion::V16, &scope(), "10.1.0.0/16"),
            None
        );
    }

    /// Files in memory, by absolute path; directories are the paths with
    /// a `/` after them.
    #[derive(Default)]
    struct MemFiles(HashMap<String, Vec<u8>>);

    impl MemFiles {
        fn with(mut self, path: &str, text: &str) -> Self {
            self.0.insert(path.to_string(), text.as_bytes().to_vec());
            self
        }
    }

    impl FileLoader for MemFiles {
        fn read_file(&mut self, path: &str) -> std::io::Result<Vec<u8>> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from_raw_os_error(2))
        }
        fn read_dir(&mut self, path: &str) -> std::io::Result<Vec<pghba::check::DirEntry>> {
            let dir = format!("{path}/");
            let names: Vec<_> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&dir))
                .filter(|rest| !rest.contains('/'))
                .map(|name| pghba::check::DirEntry {
                    name: name.to_string(),
                    is_dir: false,
                })
                .collect();
            if names.is_empty() {
                return Err(std::io::Error::from_raw_os_error(2));
            }
            Ok(names)
        }
    }

    const DIR: &str = "/etc/postgresql/16/main";

    fn plan_with(
        old: &str,
        files: &mut MemFiles,
        version: PgVersion,
        cidr: &str,
        force: bool,
    ) -> Result<Change, PlanError> {
        let file = top(old.as_bytes(), version);
        let request = Request {
            add: vec![net(cidr)],
            comment: "c".into(),
            force,
            ..Request::default()
        };
        plan(&file, files, &scope(), &request)
    }

    /// Rules of an included file sit at the include line's place: a
    /// narrower reject there stops the add and is named by its file and
    /// line, for each kind of include.
    #[test]
    fn reject_in_an_included_file_stops_the_add() {
        let inc = "# operator\nhost all all 10.1.2.0/24 reject\n";
        for (directive, path) in [
            ("include extra.conf", format!("{DIR}/extra.conf")),
            (
                "include_if_exists /etc/hba/extra.conf",
                "/etc/hba/extra.conf".to_string(),
            ),
            ("include_dir conf.d", format!("{DIR}/conf.d/10-ops.conf")),
        ] {
            let old = format!("local all all peer\n{directive}\nhost all all 0.0.0.0/0 reject\n");
            let mut files = MemFiles::default().with(&path, inc);
            match plan_with(&old, &mut files, PgVersion::V16, "10.1.0.0/16", false) {
                Err(PlanError::RejectedBy { line, .. }) => {
                    assert_eq!(
                        (line.file.as_str(), line.line_number, line.included),
                        (path.as_str(), 2, true),
                        "{directive}"
                    );
                    assert_eq!(line.text, "host all all 10.1.2.0/24 reject");
                    assert!(!line.covers_all);
                }
                other => panic!("{directive}: {other:?}"),
            }
            // forced, it is reported as shadowing, still by file and line
            let c = plan_with(&old, &mut files, PgVersion::V16, "10.1.0.0/16", true).unwrap();
            assert_eq!(c.shadowed_by.len(), 1);
            assert_eq!(c.shadowed_by[0].1.file, path);
        }
    }

    /// The new text is walked once, whole, and only when it changes (the
    /// walk a caller's validation makes); the rules the walk selects are
    /// the operator's before the block that touch an added CIDR: a reject
    /// after the block (in the top file or an included one) is not asked
    /// about.
    #[test]
    fn the_new_text_is_walked_once_for_a_change() {
        let mut files = MemFiles::default().with(
            &format!("{DIR}/late.conf"),
            "host all all 10.0.0.0/8 reject\n",
        );
        let old = format!(
            "host all all 10.9.0.0/16 md5\nhost all all 192.0.2.0/24 reject\n\
             {BEGIN_MARKER}\n{END_MARKER}\ninclude late.conf\nhost all all 0.0.0.0/0 reject\n"
        );
        let file = HbaFile {
            path: &format!("{DIR}/pg_hba.conf"),
            text: old.as_bytes(),
            version: PgVersion::V16,
        };
        let request = Request {
            add: vec![net("10.9.1.0/24")],
            comment: "c".into(),
            ..Request::default()
        };
        let mut walks = Vec::new();
        let change = plan_walking(
            &file,
            &mut files,
            &scope(),
            &request,
            &mut |text, loader, select, observe| {
                let mut selected = Vec::new();
                let opts = pghba::ValidateOptions::for_version(PgVersion::V16);
                pghba::check_bytes(file.path, text, loader, &opts, &mut |l| {
                    if select(l) {
                        selected.push((l.file_name.to_string(), l.line_number));
                        observe(l);
                    }
                });
                walks.push((text.to_vec(), selected));
            },
        )
        .unwrap();
        assert_eq!(walks.len(), 1);
        assert_eq!(walks[0].0, change.new_text);
        assert_eq!(walks[0].1, vec![(file.path.to_string(), 1)]);
        assert_eq!(change.shadowed_by.len(), 1);
        // nothing to change: no walk
        let mut walked = 0;
        let again = Request {
            add: vec![],
            ..request
        };
        plan_walking(
            &HbaFile {
                text: &change.new_text,
                ..file
            },
            &mut files,
            &scope(),
            &again,
            &mut |_, _, _, _| walked += 1,
        )
        .unwrap();
        assert_eq!(walked, 0);
    }

    /// An include after the block, or one whose rules miss the scope, does
    /// not stop the add; a missing `include_if_exists` is nothing.
    #[test]
    fn includes_after_the_block_or_missing_do_not_count() {
        let inc = "host all all 10.1.2.0/24 reject\n";
        let mut files = MemFiles::default().with(&format!("{DIR}/late.conf"), inc);
        let old = format!("local all all peer\n{BEGIN_MARKER}\n{END_MARKER}\ninclude late.conf\n");
        assert!(plan_with(&old, &mut files, PgVersion::V16, "10.1.0.0/16", false).is_ok());
        let old = "include_if_exists nothere.conf\nhost all all 0.0.0.0/0 reject\n";
        let c = plan_with(old, &mut files, PgVersion::V16, "10.1.0.0/16", false).unwrap();
        assert!(c.created_block);
    }

    /// The first catch-all reject may be in an included file: the block
    /// goes before the include line that brings it in, so it is reached.
    #[test]
    fn block_goes_before_an_include_holding_the_catch_all() {
        let mut files = MemFiles::default()
            .with(
                &format!("{DIR}/a.conf"),
                "host all all 192.168.0.0/16 trust\n",
            )
            .with(
                &format!("{DIR}/b.conf"),
                "# deny the rest\nhost all all 0.0.0.0/0 reject\n",
            );
        let old = "local all all peer\ninclude a.conf\ninclude b.conf\nhost all all ::/0 reject\n";
        let c = plan_with(old, &mut files, PgVersion::V16, "10.1.0.0/16", false).unwrap();
        let t = String::from_utf8(c.new_text.clone()).unwrap();
        let b = t.find(BEGIN_MARKER).unwrap();
        assert!(t.find("include a.conf").unwrap() < b, "{t}");
        assert!(b < t.find("include b.conf").unwrap(), "{t}");
        // and explain sees the new rule first, then the included reject
        let file = top(&c.new_text, PgVersion::V16);
        let rules = rule_set(&file, &mut files, false);
        let ctx = StaticContext::default();
        let m = rules.first_match(&connection(&scope(), "10.1.0.1".parse().unwrap()), &ctx);
        assert_eq!(
            m.rule().map(|r| r.rule.method),
            Some(AuthMethod::ScramSha256)
        );
        let m = rules.first_match(&connection(&scope(), "10.2.0.1".parse().unwrap()), &ctx);
        let hit = m.rule().unwrap();
        assert_eq!(
            (hit.file.as_str(), hit.line),
            (format!("{DIR}/b.conf").as_str(), 2)
        );
        assert_eq!(
            rule_text(&file, &mut files, hit),
            "host all all 0.0.0.0/0 reject"
        );
    }

    /// `@file` user lists in the top file are expanded: a reject for a list
    /// naming the role stops the add, one naming others does not.
    #[test]
    fn at_file_user_lists_are_expanded() {
        let old = "host all @ops.txt 10.0.0.0/8 reject\n";
        let mut files = MemFiles::default().with(&format!("{DIR}/ops.txt"), "alice, bob\n");
        assert!(plan_with(old, &mut files, PgVersion::V15, "10.1.0.0/16", false).is_ok());
        let mut files =
            MemFiles::default().with(&format!("{DIR}/ops.txt"), "alice knocknoc_remote\n");
        assert!(matches!(
            plan_with(old, &mut files, PgVersion::V15, "10.1.0.0/16", false),
            Err(PlanError::RejectedBy { .. })
        ));
    }
}
