//! The lossless document model: a [`Document`] is a list of [`Line`]s, each
//! keeping every byte it was read from, so that [`Document::to_bytes`] gives
//! back the input exactly, whatever it held.
//!
//! An [`Entry`] keeps its parts apart like toml_edit does: the key as spelled,
//! the blanks around `=`, the logical [`Value`] with its original text (the
//! "repr"), and what follows the value (blanks and a comment). Setting a value
//! replaces only the repr; nothing else on the line moves.

use std::fmt;
use std::io;

use crate::error::{EditError, ParseError, ParseErrorKind};
use crate::parser;
use crate::redact::{redact_secrets, MASK};
use crate::value::{format_value, Value, ValueStyle};

const BOM: &str = "\u{FEFF}";

/// How a line ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineEnding {
    /// `\n`.
    Lf,
    /// `\r\n`.
    CrLf,
    /// Nothing: the last line of a file without a final newline.
    None,
}

impl LineEnding {
    /// The bytes of this ending.
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
            LineEnding::None => "",
        }
    }
}

/// One line of the file: its content and its ending.
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    pub(crate) content: LineContent,
    pub(crate) ending: LineEnding,
}

impl Line {
    /// What the line holds.
    pub fn content(&self) -> &LineContent {
        &self.content
    }

    /// How the line ends.
    pub fn ending(&self) -> LineEnding {
        self.ending
    }

    /// The entry on this line, if it is one.
    pub fn as_entry(&self) -> Option<&Entry> {
        match &self.content {
            LineContent::Entry(e) => Some(e),
            _ => None,
        }
    }

    /// The key this line sets: an entry's key, or the key an invalid line
    /// starts with.
    pub fn key(&self) -> Option<&str> {
        match &self.content {
            LineContent::Entry(e) => Some(&e.key),
            LineContent::Invalid(inv) => inv.key.as_deref(),
            _ => None,
        }
    }

    /// The line's bytes without its ending.
    fn raw_bytes(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        self.write_raw(&mut raw);
        raw.truncate(raw.len() - self.ending.as_str().len());
        raw
    }

    /// Whether the line has no content at all (not even blanks).
    fn is_empty(&self) -> bool {
        matches!(&self.content, LineContent::Blank(b) if b.is_empty())
    }

    fn write_raw(&self, out: &mut Vec<u8>) {
        match &self.content {
            LineContent::Blank(blank) => out.extend_from_slice(blank.as_bytes()),
            LineContent::Comment(c) => {
                out.extend_from_slice(c.indent.as_bytes());
                out.extend_from_slice(c.text.as_bytes());
            }
            LineContent::Entry(e) => e.write_raw(out),
            LineContent::Invalid(inv) => out.extend_from_slice(&inv.raw),
        }
        out.extend_from_slice(self.ending.as_str().as_bytes());
    }

    /// The line's text (lossy for non-UTF-8) with secrets redacted.
    fn redacted_text(&self) -> String {
        let mut raw = Vec::new();
        match &self.content {
            LineContent::Entry(e) => {
                let redacted = Entry {
                    trailing: redact_secrets(&e.trailing).into_owned(),
                    ..e.with_value_redacted()
                };
                redacted.write_raw(&mut raw);
                raw.extend_from_slice(self.ending.as_str().as_bytes());
                return String::from_utf8_lossy(&raw).into_owned();
            }
            LineContent::Invalid(InvalidLine { key: Some(key), .. }) if is_secret_key(key) => {
                // A mangled secret line: the redactor may not recognise its
                // shape, so show none of its value.
                let text = String::from_utf8_lossy(&self.raw_bytes()).into_owned();
                let key_end = text.find(key.as_str()).map_or(0, |i| i + key.len());
                return format!("{} {MASK}{}", &text[..key_end], self.ending.as_str());
            }
            _ => self.write_raw(&mut raw),
        }
        redact_secrets(&String::from_utf8_lossy(&raw)).into_owned()
    }
}

/// Shows the line with secrets redacted.
impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted_text(), f)
    }
}

/// What a line holds.
#[derive(Clone, PartialEq, Eq)]
pub enum LineContent {
    /// Nothing but blanks (possibly none).
    Blank(String),
    /// A comment line.
    Comment(Comment),
    /// A `Key = value` line.
    Entry(Entry),
    /// A line that does not follow the grammar, kept byte for byte.
    Invalid(InvalidLine),
}

/// Shows the content with secrets redacted.
impl fmt::Debug for LineContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = Line {
            content: self.clone(),
            ending: LineEnding::None,
        };
        fmt::Debug::fmt(&line, f)
    }
}

/// A comment line: blanks, then `#` and the rest of the line.
#[derive(Clone, PartialEq, Eq)]
pub struct Comment {
    pub(crate) indent: String,
    pub(crate) text: String,
}

/// Shows the comment with secrets redacted.
impl fmt::Debug for Comment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&LineContent::Comment(self.clone()), f)
    }
}

impl Comment {
    /// The comment's text, starting with `#`.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A `Key = value` line, every part kept as written.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub(crate) indent: String,
    pub(crate) key: String,
    pub(crate) before_eq: String,
    pub(crate) after_eq: String,
    pub(crate) value: Value,
    pub(crate) repr: String,
    pub(crate) style: ValueStyle,
    /// Blanks after the value and the comment, if any.
    pub(crate) trailing: String,
}

impl Entry {
    /// The key as spelled in the file.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value's meaning.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The value's text as written (with its quotes).
    pub fn raw_value(&self) -> &str {
        &self.repr
    }

    /// How the value is written.
    pub fn style(&self) -> ValueStyle {
        self.style
    }

    /// The trailing comment, starting with `#`, if there is one.
    pub fn comment(&self) -> Option<&str> {
        self.trailing.find('#').map(|i| &self.trailing[i..])
    }

    /// 1-based column (in characters) where the value's text starts.
    pub fn value_column(&self) -> usize {
        [
            &self.indent,
            &self.key,
            &self.before_eq,
            "=",
            &self.after_eq,
        ]
        .iter()
        .map(|part| part.chars().count())
        .sum::<usize>()
            + 1
    }

    /// A copy whose value has its passwords redacted, re-quoted in the same
    /// style so that the shown line still reads as a well-formed entry.
    fn with_value_redacted(&self) -> Entry {
        let redacted = match &self.value {
            Value::String(s) => Value::String(redact_secrets(s).into_owned()),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|s| redact_secrets(s).into_owned())
                    .collect(),
            ),
            other => other.clone(),
        };
        let mut copy = self.clone();
        if redacted != self.value {
            (copy.repr, copy.style) = format_value(&redacted, self.style);
            copy.value = redacted;
        }
        copy
    }

    fn write_raw(&self, out: &mut Vec<u8>) {
        for part in [
            &self.indent,
            &self.key,
            &self.before_eq,
            "=",
            &self.after_eq,
            &self.repr,
            &self.trailing,
        ] {
            out.extend_from_slice(part.as_bytes());
        }
    }
}

/// Shows the entry with secrets redacted.
impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&LineContent::Entry(self.clone()), f)
    }
}

/// A line that does not follow the grammar, kept byte for byte with its
/// error.
#[derive(Clone, PartialEq, Eq)]
pub struct InvalidLine {
    pub(crate) raw: Vec<u8>,
    pub(crate) column: usize,
    pub(crate) kind: ParseErrorKind,
    pub(crate) key: Option<String>,
}

impl InvalidLine {
    /// The line's bytes, without its ending.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// 1-based column (in characters) of the problem.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// The key the line starts with, if any: the key it presumably meant to
    /// set.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// Shows the error, never the raw text (which may hold a password).
impl fmt::Debug for InvalidLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidLine")
            .field("key", &self.key)
            .field("column", &self.column)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Keys whose invalid lines are never shown: the connection string and
/// anything named like a password.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "databaseurl" || key.contains("password") || key.contains("secret")
}

/// A knocknoc.conf file, held losslessly.
///
/// [`Document::parse`] accepts any bytes and never fails;
/// [`Document::to_bytes`] gives them back exactly. There is deliberately no
/// `Display`: the file holds a password, so `to_string()` must not be an easy
/// way to print it. [`Document::redacted`] is the printable form; `Debug` is
/// redacted too.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Document {
    bom: bool,
    lines: Vec<Line>,
}

impl Document {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a document from any bytes. Lines that do not follow the grammar
    /// (including lines that are not UTF-8) are kept as
    /// [`LineContent::Invalid`] with their error.
    pub fn parse(input: impl AsRef<[u8]>) -> Self {
        let mut input = input.as_ref();
        let bom = input.starts_with(BOM.as_bytes());
        if bom {
            input = &input[BOM.len()..];
        }
        let mut lines = Vec::new();
        let mut start = 0;
        while start < input.len() {
            let (end, ending, next) = match input[start..].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let nl = start + i;
                    if nl > start && input[nl - 1] == b'\r' {
                        (nl - 1, LineEnding::CrLf, nl + 1)
                    } else {
                        (nl, LineEnding::Lf, nl + 1)
                    }
                }
                None => (input.len(), LineEnding::None, input.len()),
            };
            let bytes = &input[start..end];
            let content = match std::str::from_utf8(bytes) {
                Ok(text) => parser::parse_line(text),
                Err(e) => parser::parse_non_utf8_line(bytes, e),
            };
            lines.push(Line { content, ending });
            start = next;
        }
        Document { bom, lines }
    }

    /// The document's exact bytes: for a parsed document that was not
    /// edited, the input.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.bom {
            out.extend_from_slice(BOM.as_bytes());
        }
        for line in &self.lines {
            line.write_raw(&mut out);
        }
        out
    }

    /// Writes [`Document::to_bytes`] to `w`.
    pub fn write_to(&self, w: &mut impl io::Write) -> io::Result<()> {
        w.write_all(&self.to_bytes())
    }

    /// A printable form with every password redacted (see
    /// [`crate::redact_secrets`]); non-UTF-8 bytes are shown as U+FFFD.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }

    /// The lines, in order. Line `i` of this slice is line `i + 1` of the file.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Every line that does not follow the grammar, with line and column.
    pub fn parse_errors(&self) -> Vec<ParseError> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| match &line.content {
                LineContent::Invalid(inv) => Some(ParseError {
                    line: i + 1,
                    column: inv.column,
                    kind: inv.kind.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The entries with their 1-based line numbers.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| line.as_entry().map(|e| (i + 1, e)))
    }

    /// The first entry whose key matches `key`, ignoring ASCII case.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries()
            .map(|(_, e)| e)
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// The value of the first entry whose key matches `key`, ignoring ASCII
    /// case.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entry(key).map(Entry::value)
    }

    /// Indices of the lines (entries and invalid lines) that set `key`.
    fn lines_setting(&self, key: &str) -> Vec<usize> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.key().is_some_and(|k| k.eq_ignore_ascii_case(key)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Sets `key` to `value`, changing nothing else.
    ///
    /// - When one entry sets the key (ignoring ASCII case), only its value
    ///   text is replaced: the key's spelling, the blanks around `=` and a
    ///   trailing comment stay. The value keeps its quoting style when that
    ///   style can hold the new value.
    /// - When an invalid line starts with the key, that line is replaced by a
    ///   well-formed entry (same key spelling, same line ending).
    /// - Otherwise a line is appended in the file's style: the blanks around
    ///   `=` of its first entry (default ` = `), its most common line ending
    ///   (default `\n`), and no final newline if the file had none.
    ///
    /// Values are written so that the file reads back as exactly `value`
    /// (quoted and escaped as needed). Refused, changing nothing: a key that
    /// would not read back, a NUL in the value, and a key set on two lines.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> Result<(), EditError> {
        let value = value.into();
        if !parser::is_valid_key(key) {
            return Err(EditError::InvalidKey(key.to_owned()));
        }
        if value.contains_nul() {
            return Err(EditError::Nul {
                key: key.to_owned(),
            });
        }
        let found = self.lines_setting(key);
        if let [first, second, ..] = found[..] {
            return Err(EditError::DuplicateKey {
                key: self.lines[first].key().unwrap_or(key).to_owned(),
                first_line: first + 1,
                second_line: second + 1,
            });
        }
        match found.first() {
            Some(&i) => {
                if let LineContent::Entry(entry) = &mut self.lines[i].content {
                    let (repr, style) = format_value(&value, entry.style);
                    entry.repr = repr;
                    entry.style = style;
                    entry.value = value;
                } else {
                    let spelled = self.lines[i].key().unwrap_or(key).to_owned();
                    let entry = self.new_entry(&spelled, value);
                    self.lines[i].content = LineContent::Entry(entry);
                }
            }
            None => {
                let entry = self.new_entry(key, value);
                let ending = self.common_ending();
                let last_ending = match self.lines.last_mut() {
                    Some(last) if last.ending == LineEnding::None => {
                        last.ending = ending;
                        LineEnding::None
                    }
                    _ => ending,
                };
                self.lines.push(Line {
                    content: LineContent::Entry(entry),
                    ending: last_ending,
                });
            }
        }
        Ok(())
    }

    /// Removes every line that sets `key` (ignoring ASCII case), including
    /// invalid lines that start with it. Returns how many lines were removed.
    /// A file without a final newline still has none afterwards (unless its
    /// new last line is empty, which needs its newline to exist).
    pub fn unset(&mut self, key: &str) -> usize {
        let found = self.lines_setting(key);
        for &i in found.iter().rev() {
            let removed = self.lines.remove(i);
            if removed.ending == LineEnding::None {
                // An empty last line keeps its ending: without it the line
                // would vanish.
                if let Some(last) = self.lines.last_mut().filter(|l| !l.is_empty()) {
                    last.ending = LineEnding::None;
                }
            }
        }
        found.len()
    }

    /// A new entry spaced like the file's first entry.
    fn new_entry(&self, key: &str, value: Value) -> Entry {
        let (before_eq, after_eq) = self
            .entries()
            .next()
            .map(|(_, e)| (e.before_eq.clone(), e.after_eq.clone()))
            .unwrap_or_else(|| (" ".to_owned(), " ".to_owned()));
        let (repr, style) = format_value(&value, ValueStyle::Bare);
        Entry {
            indent: String::new(),
            key: key.to_owned(),
            before_eq,
            after_eq,
            value,
            repr,
            style,
            trailing: String::new(),
        }
    }

    /// The file's most common line ending (`\n` when tied or empty).
    fn common_ending(&self) -> LineEnding {
        let crlf = self
            .lines
            .iter()
            .filter(|l| l.ending == LineEnding::CrLf)
            .count();
        let lf = self
            .lines
            .iter()
            .filter(|l| l.ending == LineEnding::Lf)
            .count();
        if crlf > lf {
            LineEnding::CrLf
        } else {
            LineEnding::Lf
        }
    }
}

/// Shows the document's lines with secrets redacted.
impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("bom", &self.bom)
            .field("lines", &self.lines)
            .finish()
    }
}

/// The document as text with every password redacted; see
/// [`Document::redacted`].
#[derive(Clone, Copy, Debug)]
pub struct Redacted<'a>(&'a Document);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.0.lines {
            f.write_str(&line.redacted_text())?;
        }
        Ok(())
    }
}
