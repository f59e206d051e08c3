//! `--list`: the CIDRs the block admits.

use serde::Serialize;

use super::{block, Exposedb};
use crate::Error;

/// One rule of the block.
#[derive(Debug, Clone, Serialize)]
pub struct ListedRule {
    /// The CIDR, as `addr/prefix`.
    pub cidr: String,
    /// Its line in pg_hba.conf.
    pub line: u32,
    /// `host` or `hostssl`.
    #[serde(rename = "type")]
    pub connection_type: String,
    /// The rule's databases.
    pub databases: Vec<String>,
    /// The rule's users.
    pub users: Vec<String>,
    /// Its trailing comment (who added it, when).
    pub comment: Option<String>,
}

/// What `--list` found.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// The server's pg_hba.conf.
    pub hba_file: String,
    /// The CIDRs, in file order.
    pub cidrs: Vec<String>,
    /// The rules, in file order.
    pub rules: Vec<ListedRule>,
    /// Whether the file has the block at all (no block: `--init` was not
    /// run).
    #[serde(skip)]
    pub has_block: bool,
}

impl Exposedb {
    /// `--list`.
    pub fn list(&self) -> Result<ListReport, Error> {
        let version = self.version()?;
        let (path, bytes) = self.read_hba()?;
        let failed = |e| Error::failed(path.display().to_string()).with_source(e);
        // Only the block's lines are parsed (the rest is split into lines):
        // a listing of a 100k-rule file costs little more than a
        // connection (cargo xtask bench exposedb).
        let found = block::BLOCK.find_in_text(&bytes, version).map_err(failed)?;
        let has_block = found.is_some();
        let rules = match &found {
            Some((doc, _)) => block::list(doc, version).map_err(failed)?,
            None => Vec::new(),
        };
        Ok(ListReport {
            hba_file: path.display().to_string(),
            cidrs: rules.iter().map(|r| r.net.to_string()).collect(),
            rules: rules
                .iter()
                .map(|r| ListedRule {
                    cidr: r.net.to_string(),
                    line: r.line_number,
                    connection_type: r.connection_type.as_str().to_string(),
                    databases: r.databases.clone(),
                    users: r.users.clone(),
                    comment: r.comment.clone(),
                })
                .collect(),
            has_block,
        })
    }
}
