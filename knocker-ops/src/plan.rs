//! A command's plan: the exact file changes, SQL statements and commands
//! that `--dry-run` prints and that apply carries out.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One file's change: its path and its old and new contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The file.
    pub path: PathBuf,
    /// Its contents now.
    pub old: Vec<u8>,
    /// Its contents after the change.
    pub new: Vec<u8>,
}

impl FileChange {
    /// A change of `path` from `old` to `new`.
    pub fn new(path: impl Into<PathBuf>, old: &[u8], new: &[u8]) -> FileChange {
        FileChange {
            path: path.into(),
            old: old.to_vec(),
            new: new.to_vec(),
        }
    }

    /// The unified diff (empty when nothing changes).
    pub fn diff(&self) -> String {
        crate::diff::unified(&self.path.display().to_string(), &self.old, &self.new)
    }

    /// Whether the contents change.
    pub fn changes(&self) -> bool {
        self.old != self.new
    }
}

/// What a command will do, in order: files, then SQL, then commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files replaced (atomically, with a backup).
    pub files: Vec<FileChange>,
    /// SQL statements, exactly as sent (secrets shown as `'<generated>'`).
    pub sql: Vec<String>,
    /// Commands run, as argument lists.
    pub commands: Vec<Vec<String>>,
}

impl Plan {
    /// Whether the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.files.iter().all(|f| !f.changes()) && self.sql.is_empty() && self.commands.is_empty()
    }
}

/// The JSON form: `{"diffs": [...], "sql": [...], "commands": [[...]]}`.
impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            diffs: Vec<String>,
            sql: &'a [String],
            commands: &'a [Vec<String>],
        }
        Json {
            diffs: self
                .files
                .iter()
                .filter(|f| f.changes())
                .map(FileChange::diff)
                .collect(),
            sql: &self.sql,
            commands: &self.commands,
        }
        .serialize(s)
    }
}

/// The text `--dry-run` prints: each diff, then `-- SQL` and `-- commands`
/// sections when there are any.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in self.files.iter().filter(|f| f.changes()) {
            f.write_str(&file.diff())?;
        }
        if !self.sql.is_empty() {
            writeln!(f, "-- SQL")?;
            for s in &self.sql {
                writeln!(f, "{s};")?;
            }
        }
        if !self.commands.is_empty() {
            writeln!(f, "-- commands")?;
            for c in &self.commands {
                writeln!(f, "{}", shell_words(c))?;
            }
        }
        Ok(())
    }
}

/// An argument list as one line a POSIX shell would split back into it.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_quote_what_the_shell_would_split() {
        let args = ["pg_ctlcluster", "15", "main", "restart", "it's here", ""];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            shell_words(&args),
            "pg_ctlcluster 15 main restart 'it'\\''s here' ''"
        );
    }

    #[test]
    fn an_unchanged_file_is_no_change() {
        let mut plan = Plan::default();
        plan.files.push(FileChange::new("f", b"a\n", b"a\n"));
        assert!(plan.is_empty());
        assert_eq!(plan.to_string(), "");
    }
}
