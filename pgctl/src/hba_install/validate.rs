//! Offline validation of the new text before anything is written: the one
//! place the installer calls the pghba validator. The server check after
//! the atomic write (`pg_hba_file_rules`) is the authority either way; this
//! step spares the write, the check and the rollback when the verdict is
//! known in advance.
//!
//! The validator assumes a full build (LDAP, GSSAPI, PAM, SSL) so that it
//! never rejects what a full build accepts; a build lacking a method is
//! caught by the server check.

use std::path::{Path, PathBuf};

use pghba::{lint_bytes, FsLoader, PgVersion, ValidateOptions};

use super::error::HbaProblem;

/// The settings of the server that the verdict depends on.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerSettings {
    /// `oauth_validator_libraries` (18+), split on commas.
    pub(crate) oauth_validator_libraries: Vec<String>,
}

/// The problems PostgreSQL `major` would report for `text` installed at
/// `path` (includes are read from disk, relative to it). An empty list
/// means "no objection"; so does a version pghba does not know.
pub(crate) fn offline_problems(
    path: &Path,
    text: &[u8],
    major: u32,
    settings: &ServerSettings,
) -> Vec<HbaProblem> {
    let Ok(version) = PgVersion::new(major) else {
        return Vec::new();
    };
    let options = ValidateOptions {
        oauth_validator_libraries: settings.oauth_validator_libraries.clone(),
        ..ValidateOptions::for_version(version)
    };
    let report = lint_bytes(&path.to_string_lossy(), text, &mut FsLoader, &options);
    if report.verdict.loads {
        return Vec::new();
    }
    let mut problems: Vec<HbaProblem> = report
        .diagnostics
        .iter()
        .filter(|d| !d.warning)
        .map(|d| HbaProblem {
            file: Some(PathBuf::from(&d.file_name)),
            line: Some(d.line),
            message: d.message.clone(),
        })
        .collect();
    if let Some(message) = report.verdict.file_error {
        problems.push(HbaProblem {
            file: Some(path.to_path_buf()),
            line: None,
            message,
        });
    }
    problems
}
