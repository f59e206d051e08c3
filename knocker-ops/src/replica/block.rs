//! The `# BEGIN knocker replica` block of pg_hba.conf: per standby, one
//! line for the replication role (database keyword `replication`) and one
//! for the rewind role (database `postgres`, where `pg_rewind` connects),
//! one for the promote role (database `postgres`, the switchover's remote
//! `pg_promote`), all from the standby's address only, scram-sha-256, `hostssl` when the
//! server has SSL on. Each line's comment names its standby
//! (`standby=NAME`), which is how `--revoke CIDR` finds the slot to drop.
//!
//! Pure functions on the file's bytes: the caller runs them under
//! pgctl's hba_install lock.

use std::net::IpAddr;

use ipnet::IpNet;
use pghba::{HbaDocument, LineKind, PgVersion};

use crate::Error;

/// The block's first line.
pub const BEGIN: &str = "# BEGIN knocker replica (managed by knocker; edit with knocker replica)";
/// The block's last line.
pub const END: &str = "# END knocker replica";

/// The database `pg_rewind` connects to on its source.
pub const REWIND_DATABASE: &str = "postgres";

/// The roles the block's lines admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRoles {
    /// Streams WAL (`replication` lines).
    pub replication: String,
    /// Reads files for `pg_rewind`.
    pub rewind: String,
    /// May only call `pg_promote` (the switchover's remote promotion).
    pub promote: String,
}

/// A standby the block admits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Allowed {
    /// Its name (`application_name`; slot `knocker_<name>`).
    pub name: String,
    /// Where it connects from.
    #[serde(serialize_with = "as_text")]
    pub cidr: IpNet,
}

fn as_text<S: serde::Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(net)
}

/// What to change in the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockEdit {
    /// Make sure the block exists (empty when new).
    Ensure,
    /// Admit standby `name` from `cidr`.
    Allow {
        /// The standby's name.
        name: String,
        /// Its address.
        cidr: IpNet,
    },
    /// Remove every line for `cidr`.
    Revoke(IpNet),
}

fn block_error(e: pghba::BlockError) -> Error {
    Error::refused_always(format!(
        "pg_hba.conf: the knocker replica block is damaged ({e}); fix its marker lines by hand"
    ))
}

fn line_cidr(line: &pghba::Line) -> Option<IpNet> {
    let text = line.field(3)?.first()?.text();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn line_standby(line: &pghba::Line) -> Option<String> {
    let comment = String::from_utf8_lossy(line.comment()?).into_owned();
    let at = comment.find("standby=")? + "standby=".len();
    Some(
        comment[at..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    )
}

/// The standbys the block admits, in file order (one entry per name and
/// address).
pub fn allowed(text: &[u8], version: PgVersion) -> Result<Vec<Allowed>, Error> {
    let doc = HbaDocument::parse_for(text, version);
    let Some(range) = doc.find_block(BEGIN, END).map_err(block_error)? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Allowed> = Vec::new();
    for line in &doc.lines()[range.inner()] {
        if *line.kind() != LineKind::Record {
            continue;
        }
        if let (Some(cidr), Some(name)) = (line_cidr(line), line_standby(line)) {
            let a = Allowed { name, cidr };
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// Whether the block exists.
pub fn exists(text: &[u8], version: PgVersion) -> Result<bool, Error> {
    HbaDocument::parse_for(text, version)
        .find_block(BEGIN, END)
        .map(|r| r.is_some())
        .map_err(block_error)
}

/// Applies `edit` to pg_hba.conf's bytes and returns the new bytes
/// (identical when nothing changes). A new block goes before the first
/// catch-all reject line, else at the end.
pub fn edit(
    old: &[u8],
    version: PgVersion,
    roles: &BlockRoles,
    hostssl: bool,
    edit: &BlockEdit,
    comment: &str,
) -> Result<Vec<u8>, Error> {
    let mut doc = HbaDocument::parse_for(old, version);
    let range = doc.find_block(BEGIN, END).map_err(block_error)?;
    let current: Vec<&pghba::Line> = match range {
        Some(r) => doc.lines()[r.inner()].iter().collect(),
        None => Vec::new(),
    };
    let mut lines: Vec<Vec<u8>> = current.iter().map(|l| l.content().to_vec()).collect();
    match edit {
        BlockEdit::Ensure => {}
        BlockEdit::Revoke(cidr) => {
            lines = current
                .iter()
                .filter(|l| !(*l.kind() == LineKind::Record && line_cidr(l) == Some(*cidr)))
                .map(|l| l.content().to_vec())
                .collect();
        }
        BlockEdit::Allow { name, cidr } => {
            for l in current.iter().filter(|l| *l.kind() == LineKind::Record) {
                let (c, n) = (line_cidr(l), line_standby(l));
                if n.as_deref() == Some(name.as_str()) && c != Some(*cidr) {
                    return Err(Error::refused_always(format!(
                        "standby {name:?} is already allowed from {}; run --revoke {} first",
                        c.map_or_else(|| "another address".into(), |c| c.to_string()),
                        c.map_or_else(|| "CIDR".into(), |c| c.to_string()),
                    )));
                }
                if c == Some(*cidr) && n.as_deref() != Some(name.as_str()) {
                    return Err(Error::refused_always(format!(
                        "{cidr} is already allowed for standby {:?}; run --revoke {cidr} first",
                        n.unwrap_or_default()
                    )));
                }
            }
            let kind = if hostssl { "hostssl" } else { "host" };
            let near = range.map_or(doc.lines().len(), |r| r.end);
            let rep = pghba::quote_name(&roles.replication).ok_or_else(|| {
                Error::usage("the replication role's name cannot go in pg_hba.conf")
            })?;
            let rew = pghba::quote_name(&roles.rewind)
                .ok_or_else(|| Error::usage("the rewind role's name cannot go in pg_hba.conf"))?;
            let pro = pghba::quote_name(&roles.promote)
                .ok_or_else(|| Error::usage("the promote role's name cannot go in pg_hba.conf"))?;
            let addr = cidr.to_string();
            let note = format!("standby={name} {comment}");
            for (db, user) in [
                ("replication".to_string(), rep),
                (REWIND_DATABASE.to_string(), rew),
                (REWIND_DATABASE.to_string(), pro),
            ] {
                let present = current.iter().any(|l| {
                    *l.kind() == LineKind::Record
                        && line_cidr(l) == Some(*cidr)
                        && l.field(1).and_then(|f| f.first().map(|t| t.raw().to_vec()))
                            == Some(db.as_bytes().to_vec())
                        && l.field(2).and_then(|f| f.first().map(|t| t.raw().to_vec()))
                            == Some(user.as_bytes().to_vec())
                });
                if !present {
                    lines.push(doc.format_record(
                        near,
                        &[kind, &db, &user, &addr, "scram-sha-256"],
                        Some(&note),
                    ));
                }
            }
        }
    }
    let unchanged_block = range.is_some()
        && lines.len() == current.len()
        && lines.iter().zip(&current).all(|(a, b)| a == b.content());
    if unchanged_block {
        return Ok(old.to_vec());
    }
    let insert_at = match range {
        Some(r) => r.begin,
        None => {
            pghba::managed_block::first_catch_all_reject(&doc, version).unwrap_or(doc.lines().len())
        }
    };
    doc.set_block(BEGIN, END, &lines, insert_at)
        .map_err(block_error)?;
    Ok(doc.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> BlockRoles {
        BlockRoles {
            replication: "knocknoc_replication".into(),
            rewind: "knocknoc_rewind".into(),
            promote: "knocknoc_promote".into(),
        }
    }

    const FILE: &[u8] = b"# TYPE  DATABASE        USER            ADDRESS                 METHOD\n\
local   all             postgres                                peer\n\
host    all             all             127.0.0.1/32            scram-sha-256\n\
host    all             all             0.0.0.0/0               reject\n";

    #[test]
    fn allow_then_revoke_gives_back_the_ensured_file() {
        let v = PgVersion::V15;
        let ensured = edit(FILE, v, &roles(), true, &BlockEdit::Ensure, "x").unwrap();
        let text = String::from_utf8(ensured.clone()).unwrap();
        // The block sits before the catch-all reject.
        assert!(text.find(BEGIN).unwrap() < text.find("reject").unwrap());
        let net: IpNet = "10.0.0.2/32".parse().unwrap();
        let allow = BlockEdit::Allow {
            name: "node_b".into(),
            cidr: net,
        };
        let allowed_text = edit(&ensured, v, &roles(), true, &allow, "added now by root").unwrap();
        let t = String::from_utf8(allowed_text.clone()).unwrap();
        assert!(t.contains(
            "hostssl replication     knocknoc_replication 10.0.0.2/32        scram-sha-256 # standby=node_b added now by root\n"
        ), "{t}");
        assert!(t.contains("hostssl postgres        knocknoc_rewind"), "{t}");
        assert!(
            t.contains("hostssl postgres        knocknoc_promote"),
            "{t}"
        );
        assert_eq!(
            allowed(&allowed_text, v).unwrap(),
            vec![Allowed {
                name: "node_b".into(),
                cidr: net
            }]
        );
        // Idempotent.
        assert_eq!(
            edit(&allowed_text, v, &roles(), true, &allow, "later").unwrap(),
            allowed_text
        );
        // Another name from the same address, or the same name elsewhere: refused.
        let other = BlockEdit::Allow {
            name: "node_c".into(),
            cidr: net,
        };
        assert!(edit(&allowed_text, v, &roles(), true, &other, "x").is_err());
        let moved = BlockEdit::Allow {
            name: "node_b".into(),
            cidr: "10.0.0.3/32".parse().unwrap(),
        };
        assert!(edit(&allowed_text, v, &roles(), true, &moved, "x").is_err());
        let revoked = edit(
            &allowed_text,
            v,
            &roles(),
            true,
            &BlockEdit::Revoke(net),
            "x",
        )
        .unwrap();
        assert_eq!(revoked, ensured);
        // The validator agrees the result loads.
        let report = pghba::lint_bytes(
            "/pg_hba.conf",
            &allowed_text,
            &mut pghba::NoFiles,
            &pghba::ValidateOptions::for_version(v),
        );
        assert!(report.verdict.loads);
    }

    #[test]
    fn a_damaged_block_is_refused() {
        let mut text = FILE.to_vec();
        text.extend_from_slice(BEGIN.as_bytes());
        text.push(b'\n');
        let e = edit(
            &text,
            PgVersion::V15,
            &roles(),
            false,
            &BlockEdit::Ensure,
            "x",
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Refused { overridable: false });
    }
}
