//! The primary's `# BEGIN knocker exposedb` block, carried to its standby
//! so that either node admits the web nodes when it is primary.
//!
//! How it travels: the rewind role cannot read pg_hba.conf over the
//! network (`pg_read_binary_file` refuses absolute paths outside the data
//! directory without `pg_read_server_files`, which reads any file, and
//! `pg_hba_file_rules` drops the comments, so the block's markers). So the
//! primary's knocker keeps a byte copy of its block in its data directory
//! ([`COPY_FILE`], 0600, owned by the server's OS user) whenever `replica
//! --init` or `--allow` run; `pg_basebackup` brings it to the standby,
//! whose `--clone-from` puts it in its own pg_hba.conf, and `failover
//! --promote` applies it again. The standby can also read the primary's
//! current copy as the rewind role (`pg_read_binary_file` of a path inside
//! the data directory). Every `knocker exposedb` change (`--add`,
//! `--remove`, `--init`, `--deinit`) on a node with a replica set-up (a
//! copy already there, or a `# BEGIN knocker replica` block) refreshes the
//! copy through [`refresh`], so it is always this node's current block; on
//! a node without one, exposedb writes nothing into the data directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use pghba::{HbaDocument, PgVersion};

use crate::exposedb::block::BLOCK;
use crate::Error;

/// The copy's name inside the data directory.
pub const COPY_FILE: &str = "knocker.exposedb-block";

/// The block's lines (markers included, each with its newline) in
/// pg_hba.conf's bytes, or `None` when it has none.
pub fn block_text(hba: &[u8], version: PgVersion) -> Result<Option<Vec<u8>>, Error> {
    let doc = HbaDocument::parse_for(hba, version);
    let range = BLOCK.find(&doc).map_err(damaged)?;
    Ok(range.map(|r| {
        let mut out = Vec::new();
        for line in &doc.lines()[r.begin..=r.end] {
            out.extend_from_slice(line.content());
            out.push(b'\n');
        }
        out
    }))
}

fn damaged(e: pghba::BlockError) -> Error {
    Error::refused_always(format!(
        "pg_hba.conf: the knocker exposedb block is damaged ({e}); fix its marker lines by hand"
    ))
}

/// The copy to write into the primary's data directory when it differs
/// from the one there (`None` when it is current or the server does not
/// report its data directory).
pub fn pending_copy(admin: &super::target::Admin) -> Result<Option<crate::FileChange>, Error> {
    let Some(data) = admin.facts.data_directory.as_deref() else {
        return Ok(None);
    };
    let (_, hba) = admin.read_hba()?;
    copy_change(data, &hba, admin.version()?)
}

/// The copy of `hba`'s block to write into the data directory `data`, when
/// the one there differs or is missing.
fn copy_change(
    data: &Path,
    hba: &[u8],
    version: PgVersion,
) -> Result<Option<crate::FileChange>, Error> {
    let new = block_text(hba, version)?.unwrap_or_default();
    let path = data.join(COPY_FILE);
    let old = std::fs::read(&path).unwrap_or_default();
    Ok((old != new || !path.exists()).then(|| crate::FileChange::new(&path, &old, &new)))
}

/// The copy a `knocker exposedb` change that leaves pg_hba.conf as `hba`
/// writes on the server `facts` describe (what `--dry-run` shows): `None`
/// without a replica set-up there (neither a copy in its data directory
/// nor a `# BEGIN knocker replica` block) or when the copy is current.
pub fn planned_refresh(
    facts: &pgctl::server::ServerFacts,
    hba: &[u8],
) -> Result<Option<crate::FileChange>, Error> {
    let Some(data) = facts.data_directory.as_deref() else {
        return Ok(None);
    };
    let set_up = data.join(COPY_FILE).exists()
        || hba
            .split(|b| *b == b'\n')
            .any(|l| l.starts_with(super::block::BEGIN.as_bytes()));
    if !set_up {
        return Ok(None);
    }
    let version = PgVersion::new(facts.major())
        .map_err(|e| Error::failed("unsupported server version").with_source(e))?;
    copy_change(data, hba, version)
}

/// After a `knocker exposedb` change on the server `facts` describe:
/// writes the copy [`planned_refresh`] finds for its pg_hba.conf as it now
/// is ([`write_copy`]) and returns the copy's path; `None` when there is
/// nothing to write.
pub fn refresh(facts: &pgctl::server::ServerFacts) -> Result<Option<std::path::PathBuf>, Error> {
    let Some(hba_file) = facts.hba_file.as_deref() else {
        return Ok(None);
    };
    let hba = std::fs::read(hba_file).map_err(|e| {
        Error::failed(format!("cannot read {}: {e}", hba_file.display())).with_source(e)
    })?;
    match planned_refresh(facts, &hba)? {
        Some(change) => {
            write_copy(&change)?;
            Ok(Some(change.path))
        }
        None => Ok(None),
    }
}

/// Writes a copy [`pending_copy`] planned, owned like the data directory.
pub fn write_copy(change: &crate::FileChange) -> Result<(), Error> {
    let dir = change.path.parent().unwrap_or(Path::new("/"));
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::failed(format!("{}: {e}", dir.display())).with_source(e))?;
    super::clone::write_owned(&change.path, &change.new, 0o600, meta.uid(), meta.gid())
}

/// `hba` with its exposedb block replaced by the one in `copy` (a block
/// [`save`] wrote): the same lines, byte for byte; a new block goes before
/// the first catch-all reject. `None` when `copy` holds no block (the
/// primary had none: this node's own block, if any, stays).
pub fn apply(hba: &[u8], copy: &[u8], version: PgVersion) -> Result<Option<Vec<u8>>, Error> {
    let source = HbaDocument::parse_for(copy, version);
    let Some(range) = BLOCK.find(&source).map_err(damaged)? else {
        return Ok(None);
    };
    let lines: Vec<Vec<u8>> = source.lines()[range.inner()]
        .iter()
        .map(|l| l.content().to_vec())
        .collect();
    let mut doc = HbaDocument::parse_for(hba, version);
    let insert_at = match BLOCK.find(&doc).map_err(damaged)? {
        Some(r) => r.begin,
        None => {
            pghba::managed_block::first_catch_all_reject(&doc, version).unwrap_or(doc.lines().len())
        }
    };
    doc.set_block(BLOCK.begin, BLOCK.end, &lines, insert_at)
        .map_err(damaged)?;
    Ok(Some(doc.to_bytes()))
}

/// Whether `a` and `b` (two pg_hba.conf files) hold the same exposedb
/// block (both none counts as the same).
pub fn same_block(a: &[u8], b: &[u8], version: PgVersion) -> Result<bool, Error> {
    Ok(block_text(a, version)? == block_text(b, version)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &[u8] = b"local all postgres peer\n\
# BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)\n\
hostssl knocknoc knocknoc_remote 10.0.0.7/32 scram-sha-256 # added by x\n\
# END knocker exposedb\n\
host all all 0.0.0.0/0 reject\n";

    const STANDBY: &[u8] = b"local all postgres peer\n\
host all all 127.0.0.1/32 scram-sha-256\n\
host all all 0.0.0.0/0 reject\n";

    #[test]
    fn the_block_lands_before_the_catch_all_reject_byte_for_byte() {
        let v = PgVersion::V15;
        let copy = block_text(PRIMARY, v).unwrap().unwrap();
        assert!(copy.starts_with(b"# BEGIN knocker exposedb"));
        let out = apply(STANDBY, &copy, v).unwrap().unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.find("10.0.0.7/32").unwrap() < text.find("reject").unwrap(),
            "{text}"
        );
        assert!(same_block(PRIMARY, &out, v).unwrap());
        assert!(!same_block(PRIMARY, STANDBY, v).unwrap());
        // Applying again changes nothing.
        assert_eq!(apply(&out, &copy, v).unwrap().unwrap(), out);
        // No block on the primary: nothing to apply.
        assert_eq!(apply(STANDBY, b"", v).unwrap(), None);
    }
}
