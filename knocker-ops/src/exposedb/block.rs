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
        // A removal with no block finds nothing and must not create an
        // empty block (the file stays byte-identical); an empty request is
        // `--init`'s, which creates it.
        None if adding.is_empty() && !remove.is_empty() => {
            change.new_text = file.text.to_vec();
            return Ok(change);
        }
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

// The planner's cases are directories under tests/block_cases/ (in.conf,
// request.json, out.conf or error.txt, expected.json), checked as
// snapshots by tests/block_cases.rs.
