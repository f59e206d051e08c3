//! `--explain ADDR`: which pg_hba.conf line a connection from ADDR to the
//! application database as the remote role hits, and why.

use std::collections::HashMap;
use std::net::IpAddr;

use pghba::matcher::RuleOutcome;
use pghba::HbaDocument;
use serde::Serialize;

use super::{block, pg, Exposedb};
use crate::Error;

/// A line that may match first but cannot be decided offline.
#[derive(Debug, Clone, Serialize)]
pub struct MaybeLine {
    /// Its file.
    pub file: String,
    /// Its line number.
    pub line: u32,
    /// Its text.
    pub text: String,
}

/// One line the server reads before the verdict, and what it made of it.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainStep {
    /// Its file.
    pub file: String,
    /// Its line number.
    pub line: u32,
    /// `matches`, `no match` or `may match`.
    pub outcome: &'static str,
    /// Why (empty for a match).
    pub why: String,
    /// The line's text.
    #[serde(skip)]
    pub text: String,
}

/// The line that decides the connection.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Its file.
    pub file: String,
    /// Its line number.
    pub line: u32,
    /// Its text.
    pub text: String,
    /// Its method.
    pub method: String,
    /// Whether the method lets the connection in (anything but reject).
    pub allowed: bool,
}

/// What `--explain` found. JSON: the fields, the hit's fields flattened,
/// or `line: null, allowed: false` when no line matches.
#[derive(Debug, Clone)]
pub struct ExplainReport {
    /// The server's pg_hba.conf.
    pub hba_file: String,
    /// The client address.
    pub address: String,
    /// The application database.
    pub database: String,
    /// The remote role.
    pub user: String,
    /// Whether the connection is over SSL.
    pub ssl: bool,
    /// Whether the answer is certain.
    pub certain: bool,
    /// Lines that may match first.
    pub maybe: Vec<MaybeLine>,
    /// The lines read, in order.
    pub steps: Vec<ExplainStep>,
    /// The deciding line (none: the server refuses the connection with
    /// "no pg_hba.conf entry").
    pub hit: Option<Verdict>,
}

impl Serialize for ExplainReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("hba_file", &self.hba_file)?;
        m.serialize_entry("address", &self.address)?;
        m.serialize_entry("database", &self.database)?;
        m.serialize_entry("user", &self.user)?;
        m.serialize_entry("ssl", &self.ssl)?;
        m.serialize_entry("certain", &self.certain)?;
        m.serialize_entry("maybe", &self.maybe)?;
        m.serialize_entry("steps", &self.steps)?;
        match &self.hit {
            Some(v) => {
                m.serialize_entry("file", &v.file)?;
                m.serialize_entry("line", &v.line)?;
                m.serialize_entry("text", &v.text)?;
                m.serialize_entry("method", &v.method)?;
                m.serialize_entry("allowed", &v.allowed)?;
            }
            None => {
                m.serialize_entry("line", &None::<u32>)?;
                m.serialize_entry("allowed", &false)?;
            }
        }
        m.end()
    }
}

/// Membership answers: whether the remote role belongs to each role the
/// file names (`+group`, and the database for `samerole`), as the server's
/// hba.c `is_member()` decides it.
struct Membership {
    user: String,
    member_of: HashMap<String, bool>,
}

impl pghba::matcher::MatchContext for Membership {
    fn is_member(&self, user: &str, role: &str) -> Option<bool> {
        if user != self.user {
            return None;
        }
        self.member_of.get(role).copied()
    }
}

/// The roles `rules` asks membership of for a connection to `database`:
/// `+group` user names, and the database name when a rule says
/// `samerole`/`samegroup`.
fn roles_asked(rules: &pghba::matcher::RuleSet, database: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &rules.rules {
        for t in &r.rule.users {
            if let Some(g) = t.member_of() {
                out.push(g.to_string());
            }
        }
        if r.rule
            .databases
            .iter()
            .any(|t| t.is_keyword("samerole") || t.is_keyword("samegroup"))
        {
            out.push(database.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

impl Exposedb {
    /// `--explain ADDR`.
    pub async fn explain(&self, addr: IpAddr) -> Result<ExplainReport, Error> {
        let version = self.version()?;
        let (path, bytes) = self.read_hba()?;
        let scope = self.scope();
        let path_str = path.to_string_lossy().into_owned();
        let rules = block::rule_set(
            &block::HbaFile {
                path: &path_str,
                text: &bytes,
                version,
            },
            &mut pghba::FsLoader,
            scope.hostssl,
        );
        let asked = roles_asked(&rules, &scope.database);
        let member_of = pgctl::roles::memberships(self.admin.client(), &scope.user, &asked)
            .await
            .map_err(|e| pg("reading role memberships", e))?;
        let ctx = Membership {
            user: scope.user.clone(),
            member_of,
        };
        let m = rules.first_match(&block::connection(&scope, addr), &ctx);
        // Line texts, each file parsed once (included files read again).
        let mut docs: HashMap<String, HbaDocument> = HashMap::new();
        docs.insert(path_str.clone(), HbaDocument::parse_for(&bytes, version));
        let mut text_of = |file: &str, line: u32| {
            docs.entry(file.to_string())
                .or_insert_with(|| {
                    HbaDocument::parse_for(&std::fs::read(file).unwrap_or_default(), version)
                })
                .lines()
                .iter()
                .find(|l| l.line_number() == line)
                .map(|l| String::from_utf8_lossy(l.content()).trim_end().to_string())
                .unwrap_or_default()
        };
        let maybe = m
            .maybe
            .iter()
            .map(|&i| {
                let r = &rules.rules[i];
                MaybeLine {
                    file: r.file.clone(),
                    line: r.line,
                    text: text_of(&r.file, r.line),
                }
            })
            .collect();
        let steps = m
            .steps
            .iter()
            .map(|step| {
                let r = &rules.rules[step.index];
                let (outcome, why) = match &step.outcome {
                    RuleOutcome::Matches => ("matches", String::new()),
                    RuleOutcome::NoMatch(r) => ("no match", r.to_string()),
                    RuleOutcome::Unknown(rs) => (
                        "may match",
                        rs.iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                };
                ExplainStep {
                    file: r.file.clone(),
                    line: r.line,
                    outcome,
                    why,
                    text: text_of(&r.file, r.line),
                }
            })
            .collect();
        let hit = m.rule().map(|hit| Verdict {
            file: hit.file.clone(),
            line: hit.line,
            text: text_of(&hit.file, hit.line),
            method: hit.rule.method.as_str().to_string(),
            allowed: hit.rule.method != pghba::AuthMethod::Reject,
        });
        Ok(ExplainReport {
            hba_file: path.display().to_string(),
            address: addr.to_string(),
            database: scope.database,
            user: scope.user,
            ssl: scope.hostssl,
            certain: m.certain,
            maybe,
            steps,
            hit,
        })
    }
}
