//! Who owns a pg_hba.conf: configuration management (Ansible, Puppet,
//! Chef, Salt) or an HA manager (Patroni, pg_auto_failover) rewrites the
//! file, so edits made by anyone else would be undone. The installation's
//! callers refuse such a file unless forced.

use std::fmt;
use std::fs;
use std::path::Path;

use crate::naming::Naming;
use crate::server::ServerFacts;

/// A tool that owns pg_hba.conf: edits made by anyone else are overwritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HbaOwnerKind {
    /// Patroni (writes pg_hba.conf from its YAML / DCS configuration).
    Patroni,
    /// pg_auto_failover (`pg_autoctl` edits pg_hba.conf itself).
    PgAutoFailover,
    /// An Ansible template.
    Ansible,
    /// A Puppet resource.
    Puppet,
    /// A Chef template.
    Chef,
    /// A Salt state.
    Salt,
}

impl fmt::Display for HbaOwnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HbaOwnerKind::Patroni => "Patroni",
            HbaOwnerKind::PgAutoFailover => "pg_auto_failover",
            HbaOwnerKind::Ansible => "Ansible",
            HbaOwnerKind::Puppet => "Puppet",
            HbaOwnerKind::Chef => "Chef",
            HbaOwnerKind::Salt => "Salt",
        })
    }
}

/// Who owns pg_hba.conf and the evidence for it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HbaOwner {
    /// The owning tool.
    pub kind: HbaOwnerKind,
    /// What gave it away: a header line (with its number) or a file.
    pub evidence: String,
}

impl fmt::Display for HbaOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pg_hba.conf is managed by {} ({}); change the rules in {} instead",
            self.kind,
            self.evidence,
            match self.kind {
                HbaOwnerKind::Patroni => "Patroni's configuration (patronictl edit-config)",
                HbaOwnerKind::PgAutoFailover => "pg_autoctl",
                _ => "its source",
            }
        )
    }
}

/// Words that, together with a tool's name in a comment, mark a generated file.
const GENERATED_WORDS: &[&str] = &[
    "managed",
    "generated",
    "overwritten",
    "do not edit",
    "don't edit",
];

/// Looks for signs that a tool owns pg_hba.conf: marker files of HA managers
/// in the data directory, or a comment in the file such as `# Ansible managed`
/// or `# It will be overwritten by Patroni!`. Comments that mention the
/// caller's own tool ([`Naming::tool`]: its managed block) never count.
pub fn hba_owner(
    hba_text: &str,
    data_directory: Option<&Path>,
    naming: &Naming,
) -> Option<HbaOwner> {
    let own = naming.tool().to_ascii_lowercase();
    if let Some(dir) = data_directory {
        let markers = [
            ("patroni.dynamic.json", HbaOwnerKind::Patroni),
            (
                "postgresql-auto-failover.conf",
                HbaOwnerKind::PgAutoFailover,
            ),
        ];
        for (file, kind) in markers {
            let path = dir.join(file);
            if path.exists() {
                return Some(HbaOwner {
                    kind,
                    evidence: format!("{} exists", path.display()),
                });
            }
        }
    }
    let tools = [
        ("patroni", HbaOwnerKind::Patroni),
        ("pg_auto_failover", HbaOwnerKind::PgAutoFailover),
        ("pg_autoctl", HbaOwnerKind::PgAutoFailover),
        ("ansible", HbaOwnerKind::Ansible),
        ("puppet", HbaOwnerKind::Puppet),
        ("chef", HbaOwnerKind::Chef),
        ("salt", HbaOwnerKind::Salt),
    ];
    for (index, line) in hba_text.lines().enumerate() {
        let Some(comment) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let lower = comment.to_ascii_lowercase();
        if lower.contains(&own) || !GENERATED_WORDS.iter().any(|w| lower.contains(w)) {
            continue;
        }
        for (name, kind) in tools {
            if contains_word(&lower, name) {
                return Some(HbaOwner {
                    kind,
                    evidence: format!("line {}: {}", index + 1, line.trim()),
                });
            }
        }
    }
    None
}

/// Whether `word` occurs in `text` not as part of a longer word.
fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !is_word(before) && !is_word(after)
    })
}

/// Why [`check_hba_owner`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerCheckError {
    /// Something else owns pg_hba.conf; editing it would be undone.
    #[error("{owner}; edits made here would be overwritten, so the edit was refused")]
    ForeignManaged {
        /// Who owns the file and how that was recognised.
        owner: HbaOwner,
    },
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The hba file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Reads the server's pg_hba.conf and refuses with
/// [`OwnerCheckError::ForeignManaged`] when another tool owns it, unless
/// `force`. Returns the owner found (so a forced run can warn about it).
pub fn check_hba_owner(
    facts: &ServerFacts,
    naming: &Naming,
    force: bool,
) -> Result<Option<HbaOwner>, OwnerCheckError> {
    let Some(hba_file) = &facts.hba_file else {
        return Ok(None);
    };
    let text = fs::read_to_string(hba_file).map_err(|source| OwnerCheckError::Read {
        path: hba_file.clone(),
        source,
    })?;
    match hba_owner(&text, facts.data_directory.as_deref(), naming) {
        Some(owner) if !force => Err(OwnerCheckError::ForeignManaged { owner }),
        found => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> Naming {
        Naming::new("shopctl")
    }

    #[test]
    fn headers_of_configuration_managers_are_recognised() {
        let cases = [
            (
                "# Ansible managed\nlocal all all peer\n",
                HbaOwnerKind::Ansible,
            ),
            (
                "# This file is managed by Puppet. DO NOT EDIT.\n",
                HbaOwnerKind::Puppet,
            ),
            ("# Generated by Chef for db1\n", HbaOwnerKind::Chef),
            ("# This file is managed by Salt\n", HbaOwnerKind::Salt),
            (
                "# Do not edit this file manually!\n# It will be overwritten by Patroni!\n",
                HbaOwnerKind::Patroni,
            ),
            (
                "host replication r 10.0.0.1/32 trust # Auto-generated by pg_auto_failover\n",
                HbaOwnerKind::PgAutoFailover,
            ),
        ];
        for (text, kind) in cases {
            // The trailing comment case is not a comment line; only whole
            // comment lines count, so that one needs its own line.
            let text = text.replace("trust # Auto", "trust\n# Auto");
            let owner = hba_owner(&text, None, &tool()).unwrap_or_else(|| panic!("{text:?}"));
            assert_eq!(owner.kind, kind, "{text:?}");
        }
    }

    #[test]
    fn ordinary_comments_and_the_callers_own_block_are_not_ownership() {
        let text = "# TYPE DATABASE USER ADDRESS METHOD\n\
                    # replication for the patroni standby\n\
                    # BEGIN shopctl rules (managed by shopctl; edit with shopctl)\n\
                    # salty managed block\n\
                    # END shopctl rules\n";
        assert_eq!(hba_owner(text, None, &tool()), None);
    }

    #[test]
    fn patroni_marker_file_in_data_directory_is_ownership() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("patroni.dynamic.json"), "{}").unwrap();
        let owner = hba_owner("", Some(dir.path()), &tool()).unwrap();
        assert_eq!(owner.kind, HbaOwnerKind::Patroni);
    }
}
