//! pghba's corpus of pg_hba.conf files (`pghba/corpus/`), as the
//! differential tests of pghba and knocker-cli both read it.

use std::path::{Path, PathBuf};

/// The corpus directory.
pub fn pghba_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pghba/corpus")
}

/// A disagreement with the server that is a known bug of the lint:
/// `known-lint-bugs.txt` lines `case<TAB>versions<TAB>what is wrong`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownLintBug {
    /// The corpus case.
    pub case: String,
    /// The major versions it concerns.
    pub versions: Vec<u32>,
    /// What is wrong.
    pub what: String,
}

/// The known lint bugs (comments and blank lines skipped).
pub fn known_lint_bugs() -> Vec<KnownLintBug> {
    let path = pghba_corpus_dir().join("known-lint-bugs.txt");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let case = parts.next().unwrap_or_default().to_string();
            let versions = parts
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|v| v.trim().parse().expect("known-lint-bugs.txt: versions"))
                .collect();
            let what = parts.next().unwrap_or_default().to_string();
            KnownLintBug {
                case,
                versions,
                what,
            }
        })
        .collect()
}
