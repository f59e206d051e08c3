//! Offline validation of the new text before anything is written: the one
//! place the installer calls the pghba validator. The server check after
//! the atomic write (`pg_hba_file_rules`) is the authority either way; this
//! step spares the write, the check and the rollback when the verdict is
//! known in advance.
//!
//! A caller that has already validated the exact new text (a planner that
//! walks the file anyway, docs/ARCHITECTURE.md "one whole-file validation
//! per change") hands its [`Validation`] to the installation
//! ([`InstallOptions::validated`](super::InstallOptions::validated)), which
//! then skips its own whole-file pass, but only while the verdict still
//! holds: same bytes, same server version and settings, and every file the
//! validation read (included files, `@file` references, `include_dir`
//! listings) still reads the same under the lock. Otherwise the text is
//! validated again.
//!
//! The validator assumes a full build (LDAP, GSSAPI, PAM, SSL) so that it
//! never rejects what a full build accepts; a build lacking a method is
//! caught by the server check.

use std::io;
use std::path::{Path, PathBuf};

use pghba::ValidateOptions;
use pghba::{check_selected, CheckedLine, DirEntry, FileLoader, FsLoader, PgVersion};

use super::error::HbaProblem;

/// The settings of the server that the validation reads. Only
/// `oauth_validator_libraries` can change the verdict (whether `oauth`
/// lines load); `ssl` only makes `hostssl` lines warn, which callers that
/// look at the rules ([`validate_observed`]) need to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationSettings {
    /// The `ssl` setting.
    pub ssl: bool,
    /// `oauth_validator_libraries` (18+), split on commas.
    pub oauth_validator_libraries: Vec<String>,
}

impl ValidationSettings {
    /// The settings as [`crate::server::read_facts`] read them.
    pub fn from_facts(facts: &crate::server::ServerFacts) -> ValidationSettings {
        ValidationSettings {
            ssl: facts.ssl,
            oauth_validator_libraries: facts.oauth_validator_libraries.clone(),
        }
    }

    /// Splits the setting's text on commas, as the server does.
    pub(crate) fn split_libraries(text: &str) -> Vec<String> {
        text.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    fn options(&self, version: PgVersion) -> ValidateOptions {
        ValidateOptions {
            ssl_enabled: self.ssl,
            oauth_validator_libraries: self.oauth_validator_libraries.clone(),
            ..ValidateOptions::for_version(version)
        }
    }
}

/// What a read of the validation returned: the bytes or listing, or the
/// error's kind and OS code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadResult<T> {
    Ok(T),
    Err(io::ErrorKind, Option<i32>),
}

impl<T> ReadResult<T> {
    fn of(r: &io::Result<T>) -> ReadResult<T>
    where
        T: Clone,
    {
        match r {
            Ok(v) => ReadResult::Ok(v.clone()),
            Err(e) => ReadResult::Err(e.kind(), e.raw_os_error()),
        }
    }
}

/// One read of another file or directory that the verdict depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    File(String, ReadResult<Vec<u8>>),
    /// Listing sorted by name: the order `read_dir` returns is the file
    /// system's, the server sorts anyway.
    Dir(String, ReadResult<Vec<DirEntry>>),
}

/// Reads from the file system and remembers what each read returned.
#[derive(Default)]
struct RecordingLoader {
    reads: Vec<Read>,
}

fn sorted(mut entries: Vec<DirEntry>) -> Vec<DirEntry> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

impl FileLoader for RecordingLoader {
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        let r = FsLoader.read_file(path);
        self.reads
            .push(Read::File(path.to_string(), ReadResult::of(&r)));
        r
    }

    fn read_dir(&mut self, path: &str) -> io::Result<Vec<DirEntry>> {
        let r = FsLoader.read_dir(path).map(sorted);
        self.reads
            .push(Read::Dir(path.to_string(), ReadResult::of(&r)));
        r
    }
}

impl Read {
    /// Whether reading it again now gives the same result.
    fn unchanged(&self) -> bool {
        match self {
            Read::File(path, was) => ReadResult::of(&FsLoader.read_file(path)) == *was,
            Read::Dir(path, was) => ReadResult::of(&FsLoader.read_dir(path).map(sorted)) == *was,
        }
    }
}

/// The offline verdict on one exact text of a server's hba file: the
/// problems PostgreSQL would report (none: it loads), and what it was
/// given and read to say so. Made by [`validate`] or [`validate_observed`];
/// see the module documentation for how an installation reuses it.
#[derive(Debug, Clone)]
pub struct Validation {
    path: PathBuf,
    text: Vec<u8>,
    major: u32,
    settings: ValidationSettings,
    reads: Vec<Read>,
    problems: Vec<HbaProblem>,
}

impl Validation {
    /// The problems found: lines the server would reject, or the file as a
    /// whole ("contains no entries"). Empty: the server would load it.
    pub fn problems(&self) -> &[HbaProblem] {
        &self.problems
    }

    /// The text validated.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Whether the verdict holds for `text` installed at `path` on a server
    /// of `major` with `settings`: the same bytes, version and settings, and
    /// every file it read reads the same now.
    pub fn holds_for(
        &self,
        path: &Path,
        text: &[u8],
        major: u32,
        settings: &ValidationSettings,
    ) -> bool {
        self.path == path
            && self.major == major
            && self.settings == *settings
            && self.text == text
            && self.reads.iter().all(Read::unchanged)
    }
}

/// The problems PostgreSQL `major` would report for `text` installed at
/// `path` (includes are read from disk, relative to it).
pub fn validate(path: &Path, text: &[u8], major: u32, settings: &ValidationSettings) -> Validation {
    validate_observed(path, text, major, settings, &|_| false, &mut |_| {})
}

/// [`validate`] for a caller that also looks at some of the lines: those
/// for which `select` says yes (it may run on a second thread for a large
/// file) are passed to `observe` in the server's order (see
/// [`pghba::check_selected`]), so a planner can validate the new text and
/// find the rules it cares about in one walk.
pub fn validate_observed(
    path: &Path,
    text: &[u8],
    major: u32,
    settings: &ValidationSettings,
    select: &(dyn Fn(&CheckedLine<'_>) -> bool + Sync),
    observe: &mut dyn FnMut(&CheckedLine<'_>),
) -> Validation {
    let mut validation = Validation {
        path: path.to_path_buf(),
        text: text.to_vec(),
        major,
        settings: settings.clone(),
        reads: Vec::new(),
        problems: Vec::new(),
    };
    // A version pghba does not know: no objection (the server check
    // decides).
    let Ok(version) = PgVersion::new(major) else {
        return validation;
    };
    let options = settings.options(version);
    let mut loader = RecordingLoader::default();
    let name = path.to_string_lossy();
    let mut problems = Vec::new();
    let verdict = check_selected(
        &name,
        text,
        &mut loader,
        &options,
        &|l| l.verdict.message.is_some() || select(l),
        &mut |l| {
            if l.verdict.message.is_some() && !l.verdict.loads() {
                problems.push(HbaProblem {
                    file: Some(PathBuf::from(l.file_name)),
                    line: Some(l.position.0),
                    message: l
                        .verdict
                        .message
                        .as_ref()
                        .map(|m| m.0.clone())
                        .unwrap_or_default(),
                });
            }
            if select(l) {
                observe(l);
            }
        },
    );
    validation.reads = loader.reads;
    if verdict.loads {
        return validation;
    }
    if let Some(message) = verdict.file_error {
        problems.push(HbaProblem {
            file: Some(path.to_path_buf()),
            line: None,
            message,
        });
    }
    validation.problems = problems;
    validation
}
