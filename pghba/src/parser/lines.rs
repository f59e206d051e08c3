//! Physical lines to logical lines: line terminators, NUL bytes, backslash
//! continuations (14+) and PostgreSQL 13's fixed line buffer.

use std::borrow::Cow;

use super::Dialect;

/// One logical line: what the server hands to its tokenizer, plus where it
/// came from in the input.
#[derive(Debug, Clone)]
pub struct LogicalLine<'a> {
    /// Offset of the line's first byte in the input.
    pub raw_start: usize,
    /// The bytes of the input this line consumed, including continuation
    /// parts and line terminators.
    pub raw: &'a [u8],
    /// Number of the first physical line (1-based), as the server reports it.
    pub line_number: u32,
    /// How many line numbers this line uses up (1 + continuations).
    pub line_count: u32,
    /// The text the tokenizer reads: terminators and continuation
    /// backslashes removed, cut at the first NUL byte.
    pub content: Cow<'a, [u8]>,
    /// For continued lines, where each physical part starts: pairs of
    /// (offset in `content`, offset in `raw`). Empty for simple lines.
    pub segments: Vec<(usize, usize)>,
    /// PostgreSQL 13 only: the line filled the whole line buffer
    /// ("authentication file line too long").
    pub too_long: bool,
}

impl LogicalLine<'_> {
    /// Offset in `raw` of an offset in `content`, and the physical line
    /// (0-based, relative to this line) it is on.
    pub fn raw_position(&self, content_offset: usize) -> (usize, usize) {
        if self.segments.is_empty() {
            return (content_offset, 0);
        }
        let mut found = (content_offset, 0);
        for (i, &(logical, raw)) in self.segments.iter().enumerate() {
            if logical <= content_offset {
                found = (raw + (content_offset - logical), i);
            }
        }
        found
    }

    /// 1-based (line number, column) of an offset in `content`, columns
    /// counted in bytes from the start of the physical line.
    pub fn line_column(&self, content_offset: usize) -> (u32, u32) {
        let (raw_offset, part) = self.raw_position(content_offset);
        let part_start = if self.segments.is_empty() {
            0
        } else {
            self.segments[part].1
        };
        (
            self.line_number + part as u32,
            (raw_offset - part_start) as u32 + 1,
        )
    }
}

/// Iterator over the logical lines of an input, following one version's rules.
#[derive(Debug, Clone)]
pub struct LineSplitter<'a> {
    src: &'a [u8],
    pos: usize,
    line_number: u32,
    dialect: Dialect,
}

impl<'a> LineSplitter<'a> {
    /// Split `src` with the given rules.
    pub fn new(src: &'a [u8], dialect: Dialect) -> Self {
        LineSplitter {
            src,
            pos: 0,
            line_number: 1,
            dialect,
        }
    }

    /// The next physical line from `self.pos`: up to and including `\n`.
    fn physical(&mut self, limit: Option<usize>) -> (usize, &'a [u8]) {
        let start = self.pos;
        let rest = &self.src[start..];
        let mut end = match rest.iter().position(|&c| c == b'\n') {
            Some(i) => i + 1,
            None => rest.len(),
        };
        if let Some(max) = limit {
            // fgets() reads at most max - 1 bytes.
            end = end.min(max - 1);
        }
        self.pos = start + end;
        (start, &rest[..end])
    }
}

/// The bytes before the first NUL (C strings end there).
fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&c| c == 0) {
        Some(i) => &bytes[..i],
        None => bytes,
    }
}

/// `pg_strip_crlf()`: drop every trailing CR and LF.
fn strip_crlf(bytes: &[u8]) -> &[u8] {
    let mut len = bytes.len();
    while len > 0 && (bytes[len - 1] == b'\n' || bytes[len - 1] == b'\r') {
        len -= 1;
    }
    &bytes[..len]
}

impl<'a> Iterator for LineSplitter<'a> {
    type Item = LogicalLine<'a>;

    fn next(&mut self) -> Option<LogicalLine<'a>> {
        if self.pos >= self.src.len() {
            return None;
        }
        let line_number = self.line_number;
        if let Some(max_line) = self.dialect.max_line {
            let (start, phys) = self.physical(Some(max_line));
            let text = until_nul(phys);
            let too_long = text.len() == max_line - 1;
            self.line_number += 1;
            return Some(LogicalLine {
                raw_start: start,
                raw: phys,
                line_number,
                line_count: 1,
                content: Cow::Borrowed(strip_crlf(text)),
                segments: Vec::new(),
                too_long,
            });
        }

        let (start, phys) = self.physical(None);
        let first = strip_crlf(until_nul(phys));
        let continued =
            self.dialect.continuations && !first.is_empty() && first[first.len() - 1] == b'\\';
        if !continued {
            self.line_number += 1;
            return Some(LogicalLine {
                raw_start: start,
                raw: phys,
                line_number,
                line_count: 1,
                content: Cow::Borrowed(first),
                segments: Vec::new(),
                too_long: false,
            });
        }

        // Slow path: a continuation. Rebuild the server's buffer exactly,
        // including its habit of stripping CR/LF from the whole buffer.
        let mut buf = first[..first.len() - 1].to_vec();
        let mut last_backslash_len = buf.len();
        let mut line_count = 1;
        let mut segments = vec![(0, 0)];
        while self.pos < self.src.len() {
            let (part_start, phys) = self.physical(None);
            segments.push((buf.len(), part_start - start));
            buf.extend_from_slice(until_nul(phys));
            let stripped = strip_crlf(&buf).len();
            buf.truncate(stripped);
            line_count += 1;
            if buf.len() > last_backslash_len && buf[buf.len() - 1] == b'\\' {
                buf.pop();
                last_backslash_len = buf.len();
                continue;
            }
            break;
        }
        self.line_number += line_count;
        Some(LogicalLine {
            raw_start: start,
            raw: &self.src[start..self.pos],
            line_number,
            line_count,
            content: Cow::Owned(buf),
            segments,
            too_long: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::PgVersion;

    fn contents(src: &[u8], v: u32) -> Vec<(u32, Vec<u8>)> {
        LineSplitter::new(src, Dialect::for_version(PgVersion::new(v).unwrap()))
            .map(|l| (l.line_number, l.content.into_owned()))
            .collect()
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        assert_eq!(
            contents(b"a\r\nb\r\r\nc", 16),
            vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec())]
        );
    }

    #[test]
    fn continuation_joins_lines_from_14_keeps_first_line_number() {
        assert_eq!(
            contents(b"a \\\n b\nc\n", 14),
            vec![(1, b"a  b".to_vec()), (3, b"c".to_vec())]
        );
        assert_eq!(
            contents(b"a \\\n b\nc\n", 13),
            vec![
                (1, b"a \\".to_vec()),
                (2, b" b".to_vec()),
                (3, b"c".to_vec())
            ]
        );
    }

    #[test]
    fn continuation_at_end_of_file_drops_backslash() {
        assert_eq!(contents(b"a\\", 16), vec![(1, b"a".to_vec())]);
    }

    #[test]
    fn double_backslash_newline_newline_is_two_lines() {
        // "a\\" continues; the empty next line ends it.
        assert_eq!(
            contents(b"a\\\n\nb\n", 16),
            vec![(1, b"a".to_vec()), (3, b"b".to_vec())]
        );
    }

    #[test]
    fn nul_byte_cuts_the_line() {
        assert_eq!(
            contents(b"ab\0cd\nx\n", 16),
            vec![(1, b"ab".to_vec()), (2, b"x".to_vec())]
        );
    }

    #[test]
    fn pg13_long_line_is_split_and_flagged() {
        let mut src = vec![b'a'; PG13_LINE_TEST];
        src.push(b'\n');
        let lines: Vec<_> = LineSplitter::new(&src, Dialect::for_version(PgVersion::V13)).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].too_long);
        assert_eq!(lines[1].line_number, 2);
        assert!(!lines[1].too_long);
    }
    const PG13_LINE_TEST: usize = super::super::PG13_MAX_LINE;

    #[test]
    fn line_column_maps_through_continuations() {
        let src = b"host \\\n  all";
        let line = LineSplitter::new(src, Dialect::default()).next().unwrap();
        assert_eq!(&*line.content, b"host   all");
        assert_eq!(line.line_column(0), (1, 1));
        assert_eq!(line.line_column(7), (2, 3));
    }
}
