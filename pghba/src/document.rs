//! The lossless document model: a file is a list of lines, each keeping its
//! exact bytes, and what the server's tokenizer sees in them.
//!
//! Printing a document writes every line's bytes back, so an unedited
//! document prints byte for byte what was parsed, whatever the input was.

use std::borrow::Cow;
use std::fmt;
use std::io;

use crate::parser::{self, Dialect, LineSplitter, LogicalLine};
use crate::version::PgVersion;

/// The connection types a record can start with.
pub const CONNECTION_TYPES: [&str; 6] = [
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];

/// Which include directive a line is (16+).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IncludeKind {
    /// `include FILE`: the file must exist.
    Include,
    /// `include_if_exists FILE`: a missing file is skipped.
    IncludeIfExists,
    /// `include_dir DIR`: every `*.conf` file of DIR not starting with `.`,
    /// in byte order of their names.
    IncludeDir,
}

impl IncludeKind {
    /// The directive's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            IncludeKind::Include => "include",
            IncludeKind::IncludeIfExists => "include_if_exists",
            IncludeKind::IncludeDir => "include_dir",
        }
    }

    /// The directive for a first token, if it is one.
    pub fn from_keyword(word: &[u8]) -> Option<Self> {
        match word {
            b"include" => Some(IncludeKind::Include),
            b"include_if_exists" => Some(IncludeKind::IncludeIfExists),
            b"include_dir" => Some(IncludeKind::IncludeDir),
            _ => None,
        }
    }
}

/// What a line is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Nothing but blanks (and stray commas).
    Blank,
    /// Only a comment (and blanks).
    Comment,
    /// A rule: its first field is a connection type (or an `@file`).
    Record,
    /// An include directive (16+).
    Include(IncludeKind),
    /// A line the server cannot take as a record or directive; the message
    /// says why (the server's own words).
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Content {
    /// The content is the first `n` bytes of the raw line.
    Prefix(usize),
    /// A continued line: rebuilt content.
    Owned(Vec<u8>),
}

/// Span of one token in a line's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TokenSpan {
    start: u32,
    end: u32,
    quoted: bool,
}

/// One line of a document (a logical line: with continuations it covers
/// several physical lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    raw: Vec<u8>,
    line_number: u32,
    line_count: u32,
    content: Content,
    segments: Vec<(usize, usize)>,
    /// The tokens of all fields, one after the other.
    spans: Vec<TokenSpan>,
    /// Index in `spans` just past each field's last token.
    field_ends: Vec<u32>,
    comment_start: Option<usize>,
    kind: LineKind,
}

/// A token of a [`Line`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRef<'a> {
    raw: &'a [u8],
    start: usize,
    quoted: bool,
}

impl<'a> TokenRef<'a> {
    /// The token as written, quotes included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The value with quotes removed.
    pub fn value(&self) -> Cow<'a, [u8]> {
        if self.raw.contains(&b'"') {
            Cow::Owned(parser::dequote(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// The value as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value()).into_owned()
    }

    /// Whether a quote preceded the first character (keywords lose meaning).
    pub fn quoted(&self) -> bool {
        self.quoted
    }

    /// Offset in the line's content.
    pub fn start(&self) -> usize {
        self.start
    }
}

impl Line {
    fn from_logical(l: &LogicalLine<'_>, version: PgVersion, dialect: &Dialect) -> Line {
        Line::from_logical_with(l, version, dialect, &mut Vec::new(), &mut Vec::new())
    }

    /// [`Line::from_logical`] with the tokenizer's buffers, reused from
    /// line to line by the caller (a document is parsed with one
    /// allocation per line's tokens instead of one per field).
    fn from_logical_with<'l>(
        l: &'l LogicalLine<'_>,
        version: PgVersion,
        dialect: &Dialect,
        tokens: &mut Vec<parser::Token<'l>>,
        ends: &mut Vec<usize>,
    ) -> Line {
        let (comment_start, token_too_long) =
            parser::tokenize_into(&l.content, dialect, tokens, ends);
        let kind = classify(l, tokens, ends, comment_start, token_too_long, version);
        let spans = tokens
            .iter()
            .map(|t| TokenSpan {
                start: t.start as u32,
                end: t.end() as u32,
                quoted: t.quoted,
            })
            .collect();
        let content = match &l.content {
            Cow::Borrowed(b) => Content::Prefix(b.len()),
            Cow::Owned(v) => Content::Owned(v.clone()),
        };
        Line {
            raw: l.raw.to_vec(),
            line_number: l.line_number,
            line_count: l.line_count,
            content,
            segments: l.segments.clone(),
            spans,
            field_ends: ends.iter().map(|&e| e as u32).collect(),
            comment_start,
            kind,
        }
    }

    /// The token spans of field `i`.
    fn field_spans(&self, i: usize) -> Option<&[TokenSpan]> {
        let end = *self.field_ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.field_ends[i - 1] as usize,
        };
        Some(&self.spans[start..end])
    }

    /// Parse text that must form exactly one logical line (a trailing line
    /// terminator is optional). Returns `None` when it would form more.
    pub fn parse_single(text: &[u8], version: PgVersion) -> Option<Line> {
        let dialect = Dialect::for_version(version);
        let mut it = LineSplitter::new(text, dialect);
        let first = it.next()?;
        if it.next().is_some() {
            return None;
        }
        Some(Line::from_logical(&first, version, &dialect))
    }

    /// The exact bytes of the line, terminator(s) included.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The text the server tokenizes (terminators and continuation
    /// backslashes removed).
    pub fn content(&self) -> &[u8] {
        match &self.content {
            Content::Prefix(n) => &self.raw[..*n],
            Content::Owned(v) => v,
        }
    }

    /// Line number of the (first) physical line, 1-based, as parsed.
    pub fn line_number(&self) -> u32 {
        self.line_number
    }

    /// How many physical lines this line covers.
    pub fn line_count(&self) -> u32 {
        self.line_count
    }

    /// What the line is.
    pub fn kind(&self) -> &LineKind {
        &self.kind
    }

    /// Whether the raw bytes end with a line terminator.
    pub fn has_terminator(&self) -> bool {
        self.raw.last() == Some(&b'\n')
    }

    /// Number of fields.
    pub fn field_count(&self) -> usize {
        self.field_ends.len()
    }

    /// The tokens of field `i` (a comma list has several).
    pub fn field(&self, i: usize) -> Option<Vec<TokenRef<'_>>> {
        let content = self.content();
        self.field_spans(i).map(|f| {
            f.iter()
                .map(|t| TokenRef {
                    raw: &content[t.start as usize..t.end as usize],
                    start: t.start as usize,
                    quoted: t.quoted,
                })
                .collect()
        })
    }

    /// Every field's tokens.
    pub fn fields(&self) -> Vec<Vec<TokenRef<'_>>> {
        (0..self.field_count())
            .filter_map(|i| self.field(i))
            .collect()
    }

    /// Byte span (in [`Line::content`]) of field `i`, from its first
    /// token's start to its last token's end.
    pub fn field_span(&self, i: usize) -> Option<(usize, usize)> {
        self.field_spans(i)
            .map(|f| (f[0].start as usize, f[f.len() - 1].end as usize))
    }

    /// The comment (from its `#`), if the line has one.
    pub fn comment(&self) -> Option<&[u8]> {
        self.comment_start.map(|s| &self.content()[s..])
    }

    /// Physical line number and 1-based byte column of a content offset.
    pub fn line_column(&self, content_offset: usize) -> (u32, u32) {
        let ll = LogicalLine {
            raw_start: 0,
            raw: &self.raw,
            line_number: self.line_number,
            line_count: self.line_count,
            content: Cow::Borrowed(&[]),
            segments: self.segments.clone(),
            too_long: false,
        };
        ll.line_column(content_offset)
    }
}

/// What a line is, from its tokens (`tokens` and `ends` as
/// [`parser::tokenize_into`] gives them).
fn classify(
    l: &LogicalLine<'_>,
    tokens: &[parser::Token<'_>],
    ends: &[usize],
    comment_start: Option<usize>,
    token_too_long: Option<usize>,
    version: PgVersion,
) -> LineKind {
    if l.too_long {
        return LineKind::Invalid("authentication file line too long".into());
    }
    if token_too_long.is_some() {
        return LineKind::Invalid("authentication file token too long".into());
    }
    if ends.is_empty() {
        return if comment_start.is_some() {
            LineKind::Comment
        } else {
            LineKind::Blank
        };
    }
    let first = &tokens[0];
    if version.has_include_directives() && ends.len() == 2 {
        if let Some(kind) = IncludeKind::from_keyword(&first.value) {
            return LineKind::Include(kind);
        }
    }
    if ends[0] > 1 {
        return LineKind::Invalid("multiple values specified for connection type".into());
    }
    if first.is_file_reference()
        || CONNECTION_TYPES
            .iter()
            .any(|c| c.as_bytes() == &*first.value)
    {
        LineKind::Record
    } else {
        LineKind::Invalid(format!(
            "invalid connection type \"{}\"",
            parser::lossy(&first.value)
        ))
    }
}

/// An empty vector with the allocation of `v`, for values of another
/// lifetime (the standard library collects in place when the layouts agree).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// The lines of `bytes` (physical line numbers from `first_line`), and the
/// number of the line after them.
fn parse_lines(bytes: &[u8], version: PgVersion, first_line: u32) -> (Vec<Line>, u32) {
    let dialect = Dialect::for_version(version);
    let mut spare: Vec<parser::Token<'static>> = Vec::new();
    let mut ends = Vec::new();
    let mut splitter = LineSplitter::starting_at(bytes, dialect, first_line);
    let mut lines = Vec::new();
    for l in splitter.by_ref() {
        let mut tokens = recycle(std::mem::take(&mut spare));
        lines.push(Line::from_logical_with(
            &l,
            version,
            &dialect,
            &mut tokens,
            &mut ends,
        ));
        spare = recycle(tokens);
    }
    (lines, splitter.line_number())
}

/// [`parse_lines`] of a whole file; with `split` (a place where the file
/// can be cut in two halves the server reads the same way on their own,
/// see [`crate::check::parallel_split`]) the second half is parsed on a
/// second thread and its line numbers moved on by the first half's.
fn parse_lines_split(bytes: &[u8], version: PgVersion, split: Option<usize>) -> Vec<Line> {
    let Some(split) = split else {
        return parse_lines(bytes, version, 1).0;
    };
    let (first, second) = bytes.split_at(split);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| parse_lines(second, version, 1).0);
        let (mut lines, next_line) = parse_lines(first, version, 1);
        let offset = next_line - 1;
        match worker.join() {
            Ok(mut rest) => {
                for l in &mut rest {
                    l.line_number += offset;
                }
                lines.append(&mut rest);
            }
            Err(_) => lines.extend(parse_lines(second, version, next_line).0),
        }
        lines
    })
}

/// A parsed `pg_hba.conf`: every line, in order, losslessly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HbaDocument {
    version: PgVersion,
    lines: Vec<Line>,
}

/// An edit could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The index is past the end of the document.
    #[error("line index {index} out of range (document has {len} lines)")]
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of lines.
        len: usize,
    },
    /// The text given for one line would form several lines (or none), or
    /// would run into the next line (a trailing backslash, a NUL byte).
    #[error("text must form exactly one line")]
    NotOneLine,
}

impl HbaDocument {
    /// Parse with the newest grammar (PostgreSQL 18).
    pub fn parse(bytes: &[u8]) -> HbaDocument {
        Self::parse_for(bytes, PgVersion::LATEST)
    }

    /// Parse with the grammar of a given version (continuation lines only
    /// from 14, include directives only from 16, PostgreSQL 13's fixed
    /// buffers).
    pub fn parse_for(bytes: &[u8], version: PgVersion) -> HbaDocument {
        let dialect = Dialect::for_version(version);
        let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        let split = if two_cores && bytes.len() >= crate::check::PARALLEL_FROM {
            crate::check::parallel_split(bytes, dialect)
        } else {
            None
        };
        let lines = parse_lines_split(bytes, version, split);
        HbaDocument { version, lines }
    }

    /// [`HbaDocument::parse_for`] of a part of a file that starts at the
    /// beginning of its line `first_line` (line numbers are the file's).
    pub(crate) fn parse_part(bytes: &[u8], version: PgVersion, first_line: u32) -> HbaDocument {
        HbaDocument {
            version,
            lines: parse_lines(bytes, version, first_line).0,
        }
    }

    /// The version whose grammar the document was parsed with.
    pub fn version(&self) -> PgVersion {
        self.version
    }

    /// The lines, in order.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Lines that are records, with their index.
    pub fn records(&self) -> impl Iterator<Item = (usize, &Line)> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| *l.kind() == LineKind::Record)
    }

    /// The document's bytes: for an unedited document, exactly the input.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.raw.len()).sum());
        for l in &self.lines {
            out.extend_from_slice(&l.raw);
        }
        out
    }

    /// Write the document's bytes.
    pub fn write_to(&self, w: &mut impl io::Write) -> io::Result<()> {
        for l in &self.lines {
            w.write_all(&l.raw)?;
        }
        Ok(())
    }

    /// The line terminator the document mostly uses (`\r\n` or `\n`).
    pub fn line_terminator(&self) -> &'static [u8] {
        let crlf = self
            .lines
            .iter()
            .filter(|l| l.raw.ends_with(b"\r\n"))
            .count();
        if crlf * 2 > self.lines.len() {
            b"\r\n"
        } else {
            b"\n"
        }
    }

    fn make_line(&self, text: &[u8]) -> Result<Line, EditError> {
        let mut bytes = text.to_vec();
        if !bytes.ends_with(b"\n") {
            bytes.extend_from_slice(self.line_terminator());
        }
        self.exact_line(&bytes)
    }

    /// Parse `bytes` as one line that also ends there when more lines
    /// follow (no continuation or NUL byte reaching into the next line).
    fn exact_line(&self, bytes: &[u8]) -> Result<Line, EditError> {
        let dialect = Dialect::for_version(self.version);
        let mut probe = bytes.to_vec();
        probe.extend_from_slice(b"#\n");
        let first = LineSplitter::new(&probe, dialect)
            .next()
            .ok_or(EditError::NotOneLine)?;
        if first.raw.len() != bytes.len() {
            return Err(EditError::NotOneLine);
        }
        Line::parse_single(bytes, self.version).ok_or(EditError::NotOneLine)
    }

    /// Renumber lines after an edit.
    fn renumber(&mut self) {
        let mut n = 1;
        for l in &mut self.lines {
            l.line_number = n;
            n += l.line_count;
        }
    }

    /// Insert one line before line `index` (`index == len` appends). A line
    /// terminator is added to `text` when missing, and to the previous line
    /// when it had none (the only byte outside `text` an edit may add).
    pub fn insert_line(&mut self, index: usize, text: &[u8]) -> Result<(), EditError> {
        if index > self.lines.len() {
            return Err(EditError::OutOfRange {
                index,
                len: self.lines.len(),
            });
        }
        let line = self.make_line(text)?;
        // The previous line must end where it ends now even with a line
        // after it: a missing terminator is added; a newline a NUL byte
        // swallowed is given back.
        if index > 0 && self.exact_line(&self.lines[index - 1].raw).is_err() {
            let term = self.line_terminator();
            let prev = &self.lines[index - 1];
            let mut bytes = prev.raw.clone();
            bytes.extend_from_slice(if prev.has_terminator() { b"\n" } else { term });
            let mut fixed = self.exact_line(&bytes)?;
            fixed.line_number = prev.line_number;
            self.lines[index - 1] = fixed;
        }
        self.lines.insert(index, line);
        self.renumber();
        Ok(())
    }

    /// Replace line `index` with one new line.
    pub fn replace_line(&mut self, index: usize, text: &[u8]) -> Result<(), EditError> {
        if index >= self.lines.len() {
            return Err(EditError::OutOfRange {
                index,
                len: self.lines.len(),
            });
        }
        let mut line = self.make_line(text)?;
        if !self.lines[index].has_terminator() && index + 1 == self.lines.len() {
            // keep "no final newline" files that way
            let mut raw = line.raw.clone();
            while raw.last() == Some(&b'\n') || raw.last() == Some(&b'\r') {
                raw.pop();
            }
            // an empty last line cannot exist without its terminator
            if let Some(unterminated) = Line::parse_single(&raw, self.version) {
                line = unterminated;
            }
        }
        self.lines[index] = line;
        self.renumber();
        Ok(())
    }

    /// Remove line `index`, returning it.
    pub fn remove_line(&mut self, index: usize) -> Result<Line, EditError> {
        if index >= self.lines.len() {
            return Err(EditError::OutOfRange {
                index,
                len: self.lines.len(),
            });
        }
        let line = self.lines.remove(index);
        self.renumber();
        Ok(line)
    }
}

impl fmt::Display for HbaDocument {
    /// The document's text; bytes that are not UTF-8 are replaced (use
    /// [`HbaDocument::to_bytes`] for the exact bytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            f.write_str(&String::from_utf8_lossy(&l.raw))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines of every kind around a cut: records, comments, blanks, CRLF,
    /// continuations, quotes, includes, a line without terminator last.
    const LINES: &[&str] = &[
        "host all all 10.0.0.0/8 md5\n",
        "hostssl \"quoted db\" u 127.1/32 scram-sha-256 # c\n",
        "# comment\n",
        "\n",
        "local all all peer map=m\r\n",
        "local all \\\n",
        "all trust\n",
        "   \t\n",
        "include extra.conf\n",
        "bogus line\n",
        "local all,\"b c\"  @users trust\n",
    ];

    proptest! {
        /// Parsing the second half on its own thread gives the same
        /// document as one pass, wherever the file may be cut.
        #[test]
        fn two_halves_parse_like_one_pass(
            picks in proptest::collection::vec(0..LINES.len(), 1..40),
            cut in 0.0f64..1.0,
            major in 13u32..=18,
            tail in proptest::option::of("[a-z ]{0,8}"),
        ) {
            let version = PgVersion::new(major).unwrap();
            let mut text: Vec<u8> = picks.iter().flat_map(|&i| LINES[i].bytes()).collect();
            text.extend(tail.unwrap_or_default().bytes());
            let from = ((text.len() as f64) * cut) as usize;
            let split = crate::check::split_from(&text, from, Dialect::for_version(version));
            prop_assume!(split.is_some());
            let one = parse_lines(&text, version, 1).0;
            let two = parse_lines_split(&text, version, split);
            prop_assert_eq!(one, two);
        }
    }

    #[test]
    fn round_trip_keeps_every_byte() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"local all all trust",
            b"# c\xe9\r\n\r\nhost all all 0/0 md5 \\\n  # x\n",
            b"\0\0\n\xff",
            b"a\\\n\\\n\n",
            b"   \t,,,\n",
        ];
        for input in inputs {
            for v in PgVersion::ALL {
                assert_eq!(HbaDocument::parse_for(input, v).to_bytes(), input);
            }
        }
    }

    #[test]
    fn kinds() {
        let doc = HbaDocument::parse(
            b"# c\n\nlocal all all trust\ninclude x.conf\nfoo bar\nhost,local a b\n",
        );
        let kinds: Vec<_> = doc.lines().iter().map(|l| l.kind().clone()).collect();
        assert_eq!(
            kinds,
            vec![
                LineKind::Comment,
                LineKind::Blank,
                LineKind::Record,
                LineKind::Include(IncludeKind::Include),
                LineKind::Invalid("invalid connection type \"foo\"".into()),
                LineKind::Invalid("multiple values specified for connection type".into()),
            ]
        );
        let doc15 = HbaDocument::parse_for(b"include x.conf\n", PgVersion::V15);
        assert!(matches!(doc15.lines()[0].kind(), LineKind::Invalid(_)));
    }

    #[test]
    fn continuation_line_numbers() {
        let doc = HbaDocument::parse(b"host all \\\n all 0/0 trust\nlocal all all trust\n");
        assert_eq!(doc.lines().len(), 2);
        assert_eq!(doc.lines()[1].line_number(), 3);
        assert_eq!(doc.lines()[0].field_count(), 5);
    }

    #[test]
    fn regression_inserted_text_may_not_continue_into_the_next_line() {
        let mut doc = HbaDocument::parse(b"local all all trust\n");
        assert_eq!(
            doc.insert_line(0, b"host all all all md5 \\"),
            Err(EditError::NotOneLine)
        );
        assert_eq!(doc.insert_line(0, b"a\0b"), Err(EditError::NotOneLine));
        assert_eq!(doc.to_bytes(), b"local all all trust\n");
        // a last line ending in a backslash cannot get a line after it
        let mut doc = HbaDocument::parse(b"local all all trust \\");
        assert_eq!(doc.insert_line(1, b"# x"), Err(EditError::NotOneLine));
    }

    #[test]
    fn regression_insert_after_a_line_whose_newline_a_nul_swallowed() {
        // found by fuzz target pghba_edit
        let mut doc = HbaDocument::parse(b"local all\0x\n");
        doc.insert_line(1, b"# new").unwrap();
        let printed = doc.to_bytes();
        assert_eq!(HbaDocument::parse(&printed).lines().len(), 2);
    }

    #[test]
    fn edits_touch_only_their_line() {
        let mut doc = HbaDocument::parse(b"# a\r\nlocal all all trust\r\n# b");
        doc.insert_line(2, b"host all all ::1/128 md5").unwrap();
        assert_eq!(
            doc.to_bytes(),
            b"# a\r\nlocal all all trust\r\nhost all all ::1/128 md5\r\n# b"
        );
        doc.remove_line(1).unwrap();
        assert_eq!(doc.to_bytes(), b"# a\r\nhost all all ::1/128 md5\r\n# b");
        doc.insert_line(3, b"# end").unwrap();
        assert_eq!(
            doc.to_bytes(),
            b"# a\r\nhost all all ::1/128 md5\r\n# b\r\n# end\r\n"
        );
        assert_eq!(doc.lines()[3].line_number(), 4);
    }
}
