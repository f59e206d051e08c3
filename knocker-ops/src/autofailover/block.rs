//! The `# BEGIN knocker autofailover` block of pg_hba.conf: exactly the
//! lines pg_auto_failover needs on a node once it runs with
//! `--skip-pg-hba` (docs/pg_auto_failover.md section 3): pg_autoctl's
//! local superuser over the socket (peer), and for every node of the
//! group, its own address included, the replicator for streaming and
//! `pg_basebackup` (`replication`) and for `pg_rewind` (database
//! `postgres`, where it connects). The text depends only on the set of
//! addresses, so every node that knows the same nodes gets the same block:
//! pg_rewind copies the source's pg_hba.conf over the rewound node's.
//!
//! No line for the monitor's health checks: they count an authentication
//! failure as alive, so `pgautofailover_monitor` stays NOLOGIN.

use std::collections::BTreeSet;

use ipnet::IpNet;
use pghba::{HbaDocument, PgVersion};

use super::REPLICATOR_ROLE;
use crate::Error;

/// The block's first line.
pub const BEGIN: &str =
    "# BEGIN knocker autofailover (managed by knocker; edit with knocker autofailover)";
/// The block's last line.
pub const END: &str = "# END knocker autofailover";

/// The block's lines for local superuser `superuser` and the nodes at
/// `nodes`, `hostssl` when the server has SSL on.
pub fn lines(
    doc: &HbaDocument,
    near: usize,
    superuser: &str,
    nodes: &BTreeSet<IpNet>,
    hostssl: bool,
) -> Result<Vec<Vec<u8>>, Error> {
    let user = pghba::quote_name(superuser)
        .ok_or_else(|| Error::usage("the superuser's name cannot go in pg_hba.conf"))?;
    let kind = if hostssl { "hostssl" } else { "host" };
    let mut out = vec![doc.format_record(
        near,
        &["local", "all", &user, "peer"],
        Some("pg_autoctl's own connections"),
    )];
    for node in nodes {
        let addr = node.to_string();
        for (db, why) in [
            ("replication", "streaming and pg_basebackup"),
            ("postgres", "pg_rewind"),
        ] {
            out.push(doc.format_record(
                near,
                &[kind, db, REPLICATOR_ROLE, &addr, "scram-sha-256"],
                Some(why),
            ));
        }
    }
    Ok(out)
}

/// `old` with the block set to the lines for `nodes` (created before the
/// first catch-all reject, or at the end).
pub fn edit(
    old: &[u8],
    version: PgVersion,
    superuser: &str,
    nodes: &BTreeSet<IpNet>,
    hostssl: bool,
) -> Result<Vec<u8>, Error> {
    let mut doc = HbaDocument::parse_for(old, version);
    let range = doc.find_block(BEGIN, END).map_err(block_error)?;
    let near = range.map_or(doc.lines().len(), |r| r.end);
    let new_lines = lines(&doc, near, superuser, nodes, hostssl)?;
    let insert_at = match range {
        Some(r) => r.begin,
        None => {
            pghba::managed_block::first_catch_all_reject(&doc, version).unwrap_or(doc.lines().len())
        }
    };
    doc.set_block(BEGIN, END, &new_lines, insert_at)
        .map_err(block_error)?;
    Ok(doc.to_bytes())
}

/// The node addresses the block already admits (so a later enrolment
/// keeps the nodes an earlier one listed).
pub fn nodes(text: &[u8], version: PgVersion) -> Result<BTreeSet<IpNet>, Error> {
    let doc = HbaDocument::parse_for(text, version);
    let Some(range) = doc.find_block(BEGIN, END).map_err(block_error)? else {
        return Ok(BTreeSet::new());
    };
    Ok(doc.lines()[range.inner()]
        .iter()
        .filter(|l| *l.kind() == pghba::LineKind::Record)
        .filter_map(|l| l.field(3)?.first()?.text().parse::<IpNet>().ok())
        .collect())
}

fn block_error(e: pghba::BlockError) -> Error {
    Error::refused_always(format!(
        "pg_hba.conf: the knocker autofailover block is damaged ({e}); fix its marker lines by hand"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &[u8] = b"# TYPE  DATABASE        USER            ADDRESS                 METHOD\n\
local   all             all                                     peer\n\
host    all             all             0.0.0.0/0               reject\n";

    #[test]
    fn block_is_the_same_whatever_order_the_nodes_came_in_and_loads() {
        let v = PgVersion::V15;
        let a: BTreeSet<IpNet> = ["10.0.0.2/32", "10.0.0.1/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let once = edit(FILE, v, "postgres", &a, true).unwrap();
        let text = String::from_utf8(once.clone()).unwrap();
        assert!(
            text.find(BEGIN).unwrap() < text.find("reject").unwrap(),
            "{text}"
        );
        assert!(
            text.contains("hostssl replication     pgautofailover_replicator 10.0.0.1/32"),
            "{text}"
        );
        assert_eq!(
            text.matches("pgautofailover_replicator").count(),
            4,
            "{text}"
        );
        // Idempotent, and the addresses read back.
        assert_eq!(edit(&once, v, "postgres", &a, true).unwrap(), once);
        assert_eq!(nodes(&once, v).unwrap(), a);
        let report = pghba::lint_bytes(
            "/pg_hba.conf",
            &once,
            &mut pghba::NoFiles,
            &pghba::ValidateOptions::for_version(v),
        );
        assert!(report.verdict.loads);
    }
}
