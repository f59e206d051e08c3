//! The knocknoc.conf grammar. All knowledge of how a line is read lives here;
//! the document model only stores what this module found.
//!
//! ```text
//! line     = blank* ( comment | entry )? ending
//! entry    = key blank* "=" blank* value blank* comment?
//! key      = [A-Za-z_] [A-Za-z0-9_.-]*
//! value    = double | single | array | bare
//! double   = '"' ( char | escape )* '"'        escape = \" \\ \n \t \r \uXXXX
//! single   = "'" char* "'"                     (no escapes, no ')
//! array    = "[" blank* ( item ( blank* "," blank* item )* ( blank* "," )? )? blank* "]"
//! item     = double | single
//! bare     = everything up to "#" or the end of the line, minus trailing blanks;
//!            no quotes, no control characters except tab; it may start with
//!            "[" when that does not start a well-formed array ([::1]:8756)
//! comment  = "#" anything
//! blank    = space | tab | carriage return
//! ```
//!
//! No value may contain NUL (not even as `\u0000`), and quoted text may hold
//! no raw control character other than tab. Parsing never fails: a line that
//! does not follow the grammar becomes an invalid line with its error.

use std::str::Utf8Error;

use crate::document::{Comment, Entry, InvalidLine, LineContent};
use crate::error::ParseErrorKind;
use crate::value::{classify_bare, is_blank, Value, ValueStyle};

/// A value read from the start of a text.
#[derive(Debug)]
pub(crate) struct ParsedValue {
    pub(crate) value: Value,
    pub(crate) style: ValueStyle,
    /// Byte length of the value's text.
    pub(crate) len: usize,
    /// For arrays: byte offset of each item's opening quote.
    pub(crate) item_offsets: Vec<usize>,
}

/// An error at a byte offset of the text being parsed.
type Failure = (usize, ParseErrorKind);

/// 1-based column, counted in characters, of byte `offset` of `text`.
pub(crate) fn column_of(text: &str, offset: usize) -> usize {
    text[..offset].chars().count() + 1
}

fn skip_blanks(text: &str, mut at: usize) -> usize {
    while let Some(c) = text[at..].chars().next() {
        if !is_blank(c) {
            break;
        }
        at += c.len_utf8();
    }
    at
}

fn is_key_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Whether `key` is a key this grammar can read back.
pub(crate) fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(is_key_start) && chars.all(is_key_char)
}

/// The key a line starts with, if it starts with one (used to tell which key
/// an invalid line was meant to set).
fn leading_key(text: &str) -> Option<(usize, usize)> {
    let start = skip_blanks(text, 0);
    let rest = &text[start..];
    if !rest.chars().next().is_some_and(is_key_start) {
        return None;
    }
    let len = rest.find(|c| !is_key_char(c)).unwrap_or(rest.len());
    Some((start, start + len))
}

/// Reads one line's content (without its line ending).
pub(crate) fn parse_line(text: &str) -> LineContent {
    match parse_line_inner(text) {
        Ok(content) => content,
        Err((offset, kind)) => LineContent::Invalid(InvalidLine {
            raw: text.as_bytes().to_vec(),
            column: column_of(text, offset),
            kind,
            key: leading_key(text).map(|(s, e)| text[s..e].to_owned()),
        }),
    }
}

/// A line that is not valid UTF-8: kept as bytes, with the key it starts with
/// when the valid prefix shows one.
pub(crate) fn parse_non_utf8_line(bytes: &[u8], error: Utf8Error) -> LineContent {
    let valid = std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default();
    let key = leading_key(valid).map(|(s, e)| valid[s..e].to_owned());
    LineContent::Invalid(InvalidLine {
        raw: bytes.to_vec(),
        column: column_of(valid, valid.len()),
        kind: ParseErrorKind::NotUtf8,
        key,
    })
}

fn parse_line_inner(text: &str) -> Result<LineContent, Failure> {
    let key_start = skip_blanks(text, 0);
    let indent = &text[..key_start];
    let rest = &text[key_start..];
    if rest.is_empty() {
        return Ok(LineContent::Blank(text.to_owned()));
    }
    if rest.starts_with('#') {
        return Ok(LineContent::Comment(Comment {
            indent: indent.to_owned(),
            text: rest.to_owned(),
        }));
    }
    let Some((_, key_end)) = leading_key(text) else {
        return Err((key_start, ParseErrorKind::ExpectedKey));
    };
    let eq = skip_blanks(text, key_end);
    if !text[eq..].starts_with('=') {
        return Err((eq, ParseErrorKind::ExpectedEquals));
    }
    let value_start = skip_blanks(text, eq + 1);
    let parsed = parse_value(&text[value_start..]).map_err(|(o, k)| (value_start + o, k))?;
    let value_end = value_start + parsed.len;
    let comment_start = skip_blanks(text, value_end);
    if comment_start < text.len() && !text[comment_start..].starts_with('#') {
        return Err((comment_start, ParseErrorKind::TrailingText));
    }
    Ok(LineContent::Entry(Entry {
        indent: indent.to_owned(),
        key: text[key_start..key_end].to_owned(),
        before_eq: text[key_end..eq].to_owned(),
        after_eq: text[eq + 1..value_start].to_owned(),
        value: parsed.value,
        repr: text[value_start..value_end].to_owned(),
        style: parsed.style,
        trailing: text[value_end..].to_owned(),
    }))
}

/// Reads the value at the start of `text` (which starts at the value's first
/// character).
pub(crate) fn parse_value(text: &str) -> Result<ParsedValue, Failure> {
    match text.chars().next() {
        None | Some('#') => Err((0, ParseErrorKind::MissingValue)),
        Some('"') => {
            let (s, len) = double_quoted(text)?;
            Ok(ParsedValue {
                value: Value::String(s),
                style: ValueStyle::DoubleQuoted,
                len,
                item_offsets: Vec::new(),
            })
        }
        Some('\'') => {
            let (s, len) = single_quoted(text)?;
            Ok(ParsedValue {
                value: Value::String(s),
                style: ValueStyle::SingleQuoted,
                len,
                item_offsets: Vec::new(),
            })
        }
        Some('[') => {
            // `[::1]:8756` is not an array: a `[` that does not start a
            // well-formed array starts a bare word, if it is one.
            let parsed = array(text);
            match parsed {
                Err(_) => bare(text).or(parsed),
                ok => ok,
            }
        }
        Some(_) => bare(text),
    }
}

fn bare(text: &str) -> Result<ParsedValue, Failure> {
    let region = &text[..text.find('#').unwrap_or(text.len())];
    let word = region.trim_end_matches(is_blank);
    let bytes = word.as_bytes();
    for i in 0..bytes.len() {
        if matches!(bytes[i], b'"' | b'\'') {
            return Err((i, ParseErrorKind::QuoteInBareValue));
        }
        if let Some(kind) = raw_char_problem(bytes, i) {
            return Err((i, kind));
        }
    }
    Ok(ParsedValue {
        value: classify_bare(word),
        style: ValueStyle::Bare,
        len: word.len(),
        item_offsets: Vec::new(),
    })
}

/// Whether the character starting at byte `i` may not appear raw in a value:
/// NUL, or a control character other than tab (C0, DEL, and C1, which UTF-8
/// encodes as 0xC2 0x80-0x9F). Works on bytes so that scanning long values
/// is fast.
fn raw_char_problem(bytes: &[u8], i: usize) -> Option<ParseErrorKind> {
    match bytes[i] {
        0 => Some(ParseErrorKind::Nul),
        b'\t' => None,
        b if b < 0x20 || b == 0x7f => Some(ParseErrorKind::ControlCharacter(u32::from(b))),
        0xc2 => match bytes.get(i + 1) {
            Some(&next @ 0x80..=0x9f) => Some(ParseErrorKind::ControlCharacter(u32::from(next))),
            _ => None,
        },
        _ => None,
    }
}

/// `text` starts with `'`; returns the string and the byte length read.
fn single_quoted(text: &str) -> Result<(String, usize), Failure> {
    let bytes = text.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'\'' {
            return Ok((text[1..i].to_owned(), i + 1));
        }
        if let Some(kind) = raw_char_problem(bytes, i) {
            return Err((i, kind));
        }
    }
    Err((0, ParseErrorKind::UnterminatedString))
}

/// `text` starts with `"`; returns the string and the byte length read.
fn double_quoted(text: &str) -> Result<(String, usize), Failure> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    // Start of the run of plain text not yet copied to `out`.
    let mut run = 1;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                out.push_str(&text[run..i]);
                return Ok((out, i + 1));
            }
            b'\\' => {
                out.push_str(&text[run..i]);
                let Some(escaped) = text[i + 1..].chars().next() else {
                    break;
                };
                let mut len = 1 + escaped.len_utf8();
                match escaped {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let decoded = text
                            .get(i + 2..i + 6)
                            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32);
                        match decoded {
                            Some('\0') => return Err((i, ParseErrorKind::Nul)),
                            Some(ch) => out.push(ch),
                            None => return Err((i, ParseErrorKind::BadUnicodeEscape)),
                        }
                        len += 4;
                    }
                    other => return Err((i, ParseErrorKind::UnknownEscape(other))),
                }
                i += len;
                run = i;
            }
            _ => {
                if let Some(kind) = raw_char_problem(bytes, i) {
                    return Err((i, kind));
                }
                i += 1;
            }
        }
    }
    Err((0, ParseErrorKind::UnterminatedString))
}

/// `text` starts with `[`.
fn array(text: &str) -> Result<ParsedValue, Failure> {
    let mut items = Vec::new();
    let mut item_offsets = Vec::new();
    let mut at = skip_blanks(text, 1);
    loop {
        let (item, len) = match text[at..].chars().next() {
            Some(']') => break,
            Some('"') => double_quoted(&text[at..]),
            Some('\'') => single_quoted(&text[at..]),
            None | Some('#') => return Err((0, ParseErrorKind::UnterminatedArray)),
            Some(_) => return Err((at, ParseErrorKind::ExpectedArrayItem)),
        }
        .map_err(|(o, k)| (at + o, k))?;
        items.push(item);
        item_offsets.push(at);
        at = skip_blanks(text, at + len);
        match text[at..].chars().next() {
            Some(',') => at = skip_blanks(text, at + 1),
            Some(']') => break,
            None | Some('#') => return Err((0, ParseErrorKind::UnterminatedArray)),
            Some(_) => return Err((at, ParseErrorKind::ExpectedCommaOrBracket)),
        }
    }
    Ok(ParsedValue {
        value: Value::Array(items),
        style: ValueStyle::Array,
        len: at + 1,
        item_offsets,
    })
}
