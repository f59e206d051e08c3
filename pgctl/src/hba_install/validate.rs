//! Offline validation of the new text before anything is written: the one
//! place the installer calls the pghba validator. The server check after
//! the atomic write (`pg_hba_file_rules`) is the authority either way; this
//! step only spares the write, the check and the rollback when the verdict
//! is known in advance.

use super::error::HbaProblem;

/// The problems PostgreSQL `major` would report for `text`, as far as the
/// offline validator knows. An empty list means "no objection".
pub(crate) fn offline_problems(text: &[u8], major: u32) -> Vec<HbaProblem> {
    // The pghba validator is not available yet: no offline objection, the
    // server check decides.
    let _ = (text, major);
    Vec::new()
}
