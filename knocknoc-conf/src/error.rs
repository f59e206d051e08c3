//! Error types. Every error about the file's content carries a 1-based line
//! and a 1-based column counted in characters.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a line does not follow the knocknoc.conf grammar.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The line holds bytes that are not UTF-8.
    #[error("the line is not valid UTF-8")]
    NotUtf8,
    /// The line starts with neither a key nor `#`.
    #[error(
        "expected a key (letters, digits, `_`, `-`, `.`; starting with a letter or `_`) or `#`"
    )]
    ExpectedKey,
    /// The key is not followed by `=`.
    #[error("expected `=` after the key")]
    ExpectedEquals,
    /// Nothing follows `=`.
    #[error("expected a value after `=` (write \"\" for an empty string)")]
    MissingValue,
    /// A quoted string has no closing quote on its line.
    #[error("the quoted string has no closing quote")]
    UnterminatedString,
    /// A backslash escape other than `\"`, `\\`, `\n`, `\t`, `\r`, `\uXXXX`.
    #[error("unknown escape `\\{0}` (known: \\\" \\\\ \\n \\t \\r \\uXXXX)")]
    UnknownEscape(char),
    /// `\u` not followed by four hex digits naming a Unicode scalar value.
    #[error("`\\u` must be followed by four hex digits naming a character (not a surrogate)")]
    BadUnicodeEscape,
    /// A NUL character, raw or escaped.
    #[error("values cannot contain NUL")]
    Nul,
    /// A raw control character (other than tab) in a value.
    #[error(
        "raw control character U+{0:04X} in a value (use an escape in a double-quoted string)"
    )]
    ControlCharacter(u32),
    /// A quote inside an unquoted value.
    #[error("quote inside an unquoted value (quote the whole value instead)")]
    QuoteInBareValue,
    /// `[` without its `]` on the same line.
    #[error("the array has no closing `]`")]
    UnterminatedArray,
    /// An array item that is not a quoted string.
    #[error("array items must be quoted strings")]
    ExpectedArrayItem,
    /// Something other than `,` or `]` after an array item.
    #[error("expected `,` or `]` after an array item")]
    ExpectedCommaOrBracket,
    /// Text after a complete value that is not a `#` comment.
    #[error("unexpected text after the value (a comment starts with `#`)")]
    TrailingText,
}

/// A line that does not follow the grammar, with its position.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// Why a document edit was refused. A refused edit changes nothing.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditError {
    /// The key would not read back as a key.
    #[error("invalid key {0:?}: keys are letters, digits, `_`, `-` and `.`, starting with a letter or `_`")]
    InvalidKey(String),
    /// A string in the value contains NUL.
    #[error("the value for {key} contains NUL, which knocknoc.conf cannot hold")]
    Nul {
        /// The key being set.
        key: String,
    },
    /// The key is set on more than one line, so it is unclear which to change.
    #[error("{key} is set twice, on lines {first_line} and {second_line}; remove one first")]
    DuplicateKey {
        /// The key as spelled on the first line.
        key: String,
        /// 1-based line of the first occurrence.
        first_line: usize,
        /// 1-based line of the second occurrence.
        second_line: usize,
    },
}

/// A file could not be read.
#[derive(Debug, Error)]
#[error("cannot read {}: {kind}", path.display())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub kind: LoadErrorKind,
}

impl LoadError {
    /// Whether the file does not exist (a fresh host).
    pub fn is_not_found(&self) -> bool {
        matches!(&self.kind, LoadErrorKind::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// Why a file could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The operating system refused.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The file is larger than [`crate::MAX_FILE_SIZE`].
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
}

/// The step of an atomic save that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveStep {
    /// Reading the existing file's owner and mode, or resolving a symlink.
    Inspect,
    /// Creating the temporary file next to the target.
    CreateTemp,
    /// Writing the content.
    Write,
    /// Giving the temporary file the existing file's owner (only root can
    /// give a file to another user).
    KeepOwner,
    /// Giving the temporary file the existing (or new-file) mode.
    SetMode,
    /// Flushing the temporary file to disk.
    SyncFile,
    /// Renaming the temporary file over the target.
    Rename,
    /// Flushing the directory entry to disk.
    SyncDir,
}

impl std::fmt::Display for SaveStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SaveStep::Inspect => "cannot inspect the existing file",
            SaveStep::CreateTemp => "cannot create a temporary file in its directory",
            SaveStep::Write => "cannot write the temporary file",
            SaveStep::KeepOwner => "cannot give the new file the old file's owner",
            SaveStep::SetMode => "cannot set the new file's mode",
            SaveStep::SyncFile => "cannot flush the temporary file to disk",
            SaveStep::Rename => "cannot rename the temporary file over it",
            SaveStep::SyncDir => "cannot flush its directory to disk",
        })
    }
}

/// An atomic save failed; the file on disk is unchanged (except after a
/// failure of [`SaveStep::SyncDir`], when the new content is in place but
/// may not survive a power loss).
#[derive(Debug, Error)]
#[error("cannot save {}: {step}: {source}", path.display())]
pub struct SaveError {
    /// The file being saved.
    pub path: PathBuf,
    /// The step that failed.
    pub step: SaveStep,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}
