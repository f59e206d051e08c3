//! The caller's names: pgctl names the files, locks and marks it creates
//! after the tool that calls it, and never after itself or anyone else.
//!
//! ```
//! use pgctl::naming::Naming;
//!
//! let naming = Naming::new("shopctl").written_by("shopctl expose");
//! assert_eq!(naming.role_comment(), "managed by shopctl");
//! assert_eq!(naming.listen_file_name(), "zz-shopctl-listen.conf");
//! assert_eq!(naming.probe_table(), "shopctl_probe");
//! ```

/// Who is acting: a short name that goes into file names, the comment
/// that marks roles as the caller's, and the header of files it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    tool: String,
    written_by: String,
}

impl Naming {
    /// Names after `tool`: ASCII letters, digits, `-` and `_` only (it goes
    /// into file names and SQL identifiers).
    ///
    /// # Panics
    ///
    /// When `tool` is empty, longer than 40 bytes or has other characters:
    /// it is the caller's constant, not input.
    pub fn new(tool: &str) -> Naming {
        assert!(
            !tool.is_empty()
                && tool.len() <= 40
                && tool
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "tool name {tool:?}: use ASCII letters, digits, - and _"
        );
        Naming {
            tool: tool.to_owned(),
            written_by: tool.to_owned(),
        }
    }

    /// Who the header of a written configuration file names (default: the
    /// tool), e.g. the tool and its command.
    pub fn written_by(mut self, who: &str) -> Naming {
        self.written_by = who.replace(['\n', '\r'], " ");
        self
    }

    /// The tool's name.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// What the header of a written configuration file names.
    pub fn writer(&self) -> &str {
        &self.written_by
    }

    /// `COMMENT ON ROLE` text that marks a role as the caller's:
    /// `managed by TOOL`.
    pub fn role_comment(&self) -> String {
        format!("managed by {}", self.tool)
    }

    /// `COMMENT ON DATABASE` text for a database the caller created:
    /// `created by TOOL`.
    pub fn database_comment(&self) -> String {
        format!("created by {}", self.tool)
    }

    /// The file in the server's include directory that holds
    /// `listen_addresses` where ALTER SYSTEM is disabled:
    /// `zz-TOOL-listen.conf` (`zz-` sorts it after the usual numbered
    /// files, so it wins among them).
    pub fn listen_file_name(&self) -> String {
        format!("zz-{}-listen.conf", self.tool)
    }

    /// Prefix of the temporary files renamed into [`Naming::listen_file_name`]:
    /// a dot name, which `include_dir` ignores.
    pub fn listen_temp_prefix(&self) -> String {
        format!(".zz-{}-listen.", self.tool)
    }

    /// Prefix of the temporary files next to `file_name`:
    /// `.FILE.TOOL-` (a dot name not ending in `.conf`).
    pub fn temp_prefix(&self, file_name: &str) -> String {
        format!(".{file_name}.{}-", self.tool)
    }

    /// Prefix of the backups of `file_name`: `FILE.TOOL-backup-`.
    pub fn backup_prefix(&self, file_name: &str) -> String {
        format!("{file_name}.{}-backup-", self.tool)
    }

    /// The lock file next to `file_name`: `.FILE.TOOL.lock`.
    pub fn lock_name(&self, file_name: &str) -> String {
        format!(".{file_name}.{}.lock", self.tool)
    }

    /// A scratch table's name for write probes: `TOOL_probe` (`-` as `_`).
    pub fn probe_table(&self) -> String {
        format!("{}_probe", self.tool.replace('-', "_"))
    }
}

/// Named after pgctl itself: for callers that do not care.
impl Default for Naming {
    fn default() -> Naming {
        Naming::new("pgctl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_dot_names_not_ending_in_conf() {
        let n = Naming::new("tool");
        assert_eq!(n.temp_prefix("pg_hba.conf"), ".pg_hba.conf.tool-");
        assert_eq!(n.backup_prefix("pg_hba.conf"), "pg_hba.conf.tool-backup-");
        assert_eq!(n.lock_name("pg_hba.conf"), ".pg_hba.conf.tool.lock");
        assert!(n.listen_temp_prefix().starts_with('.'));
    }

    #[test]
    #[should_panic(expected = "tool name")]
    fn a_name_with_a_slash_is_refused() {
        let _ = Naming::new("a/b");
    }
}
