//! How PostgreSQL cuts `pg_hba.conf` into logical lines, fields and tokens.
//!
//! This module follows `tokenize_auth_file()`, `next_field_expand()` and
//! `next_token()` of the server's `src/backend/libpq/hba.c`, version by
//! version. Everything here works on spans into the input: a token is copied
//! only when quotes have to be removed from it.

use std::borrow::Cow;

use crate::version::PgVersion;

mod lines;
mod tokens;

pub use lines::{LineSplitter, LogicalLine};
pub use tokens::{dequote, tokenize, tokenize_into, Field, Token, TokenizedLine};

/// PostgreSQL 13 reads lines with `fgets()` into a buffer of this size.
pub const PG13_MAX_LINE: usize = 20480;
/// PostgreSQL 13, 14 and 15 collect tokens into a buffer of this size.
pub const PG13_MAX_TOKEN: usize = 10240;

/// The server's idea of a blank: space, tab and carriage return (`pg_isblank`).
pub(crate) fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == b'\r'
}

/// The tokenizer rules of one major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    /// A line ending in a backslash continues on the next one (14+).
    pub continuations: bool,
    /// Lines are read in chunks of at most this many bytes minus one (13).
    pub max_line: Option<usize>,
    /// Tokens longer than this minus one are an error (13, 14, 15).
    pub max_token: Option<usize>,
}

impl Dialect {
    /// The rules of the given version.
    pub fn for_version(version: PgVersion) -> Self {
        Dialect {
            continuations: version.has_continuations(),
            max_line: version.has_length_limits().then_some(PG13_MAX_LINE),
            max_token: version.has_token_length_limit().then_some(PG13_MAX_TOKEN),
        }
    }
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect::for_version(PgVersion::LATEST)
    }
}

/// Lossy text of bytes, for messages (the server prints raw bytes).
pub(crate) fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}
