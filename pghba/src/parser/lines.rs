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
///
/// From 14 on, the server reads lines with `pg_get_line_append()`: `fgets()`
/// into a growing buffer, advancing by `strlen()`. A NUL byte therefore
/// drops the rest of what that `fgets()` call read, and when the dropped
/// part held the newline, the next physical line is appended. This reader
/// simulates the buffer (its capacity included) to get that right.
#[derive(Debug, Clone)]
pub struct LineSplitter<'a> {
    src: &'a [u8],
    pos: usize,
    line_number: u32,
    dialect: Dialect,
    /// Simulated capacity of the server's line buffer (`StringInfo.maxlen`).
    cap: usize,
    /// Pieces of the input that make up the current buffer.
    segs: Vec<(usize, usize)>,
    /// Take the common line at once ([`LineSplitter::next_simple`]); off
    /// only in tests, to check it against the simulation.
    simple: bool,
}

impl<'a> LineSplitter<'a> {
    /// Split `src` with the given rules.
    pub fn new(src: &'a [u8], dialect: Dialect) -> Self {
        Self::starting_at(src, dialect, 1)
    }

    /// [`LineSplitter::new`] for the part of a file starting at line
    /// `line_number` (just after a line end).
    pub fn starting_at(src: &'a [u8], dialect: Dialect, line_number: u32) -> Self {
        LineSplitter {
            src,
            pos: 0,
            line_number,
            dialect,
            cap: 1024,
            segs: Vec::new(),
            simple: true,
        }
    }

    /// The number of the next line (one past the last line once all are
    /// read).
    pub fn line_number(&self) -> u32 {
        self.line_number
    }

    /// The common line (14+): read by a single `fgets()` (it ends in the
    /// buffer's room, at a newline or the end of the input), without NUL
    /// byte, not continued by a backslash. `None` for anything else, with
    /// nothing consumed: the simulation in `next` decides.
    fn next_simple(&mut self) -> Option<LogicalLine<'a>> {
        let start = self.pos;
        let rest = &self.src[start..];
        let window = &rest[..rest.len().min(self.cap - 1)];
        let (len, kept) = line_and_text_len(window);
        let whole = len == rest.len() || rest[len - 1] == b'\n';
        if kept != len || !whole {
            return None;
        }
        let content = strip_crlf(&rest[..len]);
        if self.dialect.continuations && content.last() == Some(&b'\\') {
            return None;
        }
        self.pos += len;
        let line_number = self.line_number;
        self.line_number += 1;
        Some(LogicalLine {
            raw_start: start,
            raw: &rest[..len],
            line_number,
            line_count: 1,
            content: Cow::Borrowed(content),
            segments: Vec::new(),
            too_long: false,
        })
    }

    /// PostgreSQL 13: one `fgets()` into a fixed buffer.
    fn next_pg13(&mut self, max_line: usize) -> LogicalLine<'a> {
        let start = self.pos;
        let rest = &self.src[start..];
        let limit = rest.len().min(max_line - 1);
        let (end, kept) = line_and_text_len(&rest[..limit]);
        self.pos = start + end;
        let phys = &rest[..end];
        let text = &phys[..kept];
        let too_long = text.len() == max_line - 1;
        let line_number = self.line_number;
        self.line_number += 1;
        LogicalLine {
            raw_start: start,
            raw: phys,
            line_number,
            line_count: 1,
            content: Cow::Borrowed(strip_crlf(text)),
            segments: Vec::new(),
            too_long,
        }
    }

    fn buf_last(&self) -> Option<u8> {
        self.segs.last().map(|&(_, e)| self.src[e - 1])
    }

    fn buf_pop(&mut self) {
        if let Some(last) = self.segs.last_mut() {
            last.1 -= 1;
            if last.0 == last.1 {
                self.segs.pop();
            }
        }
    }

    /// `pg_get_line_append()`: returns whether anything was appended.
    fn get_line_append(&mut self, buf_len: &mut usize) -> bool {
        let orig = *buf_len;
        loop {
            if self.pos >= self.src.len() {
                return *buf_len > orig;
            }
            // fgets(ptr, cap - len, f) reads at most cap - len - 1 bytes
            let max_read = self.cap - *buf_len - 1;
            let rest = &self.src[self.pos..];
            let window = &rest[..rest.len().min(max_read)];
            let (chunk_len, kept) = line_and_text_len(window);
            let chunk_start = self.pos;
            self.pos += chunk_len;
            if kept > 0 {
                match self.segs.last_mut() {
                    Some(last) if last.1 == chunk_start => last.1 += kept,
                    _ => self.segs.push((chunk_start, chunk_start + kept)),
                }
                *buf_len += kept;
                if self.src[chunk_start + kept - 1] == b'\n' {
                    return true;
                }
            }
            // enlargeStringInfo(buf, 128)
            let needed = 128 + *buf_len + 1;
            if needed > self.cap {
                let mut cap = 2 * self.cap;
                while needed > cap {
                    cap *= 2;
                }
                self.cap = cap;
            }
        }
    }
}

/// The bytes before the first NUL (C strings end there).
/// The length of the first line of `window` (through its `\n`, or all of
/// `window`) and how much of it a C string keeps (up to a NUL byte): one
/// search for both bytes, since NULs are rare.
fn line_and_text_len(window: &[u8]) -> (usize, usize) {
    match newline_or_nul(window) {
        Some(i) if window[i] == b'\n' => (i + 1, i + 1),
        Some(nul) => {
            let end = memchr::memchr(b'\n', &window[nul..]).map_or(window.len(), |j| nul + j + 1);
            (end, nul)
        }
        None => (window.len(), window.len()),
    }
}

/// The first `\n` or NUL: `memchr2` sixteen bytes at a time without its
/// set-up, which costs more than the search on lines of a few dozen bytes.
#[cfg(target_arch = "x86_64")]
fn newline_or_nul(window: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    let mut blocks = window.chunks_exact(16);
    for (k, block) in blocks.by_ref().enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline, so the intrinsics are
        // available; the unaligned load reads exactly the 16 bytes of
        // `block`.
        let hits = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            let found = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
                _mm_cmpeq_epi8(v, _mm_setzero_si128()),
            );
            _mm_movemask_epi8(found)
        };
        if hits != 0 {
            return Some(16 * k + hits.trailing_zeros() as usize);
        }
    }
    let rest = blocks.remainder();
    let done = window.len() - rest.len();
    rest.iter()
        .position(|&c| c == b'\n' || c == 0)
        .map(|i| done + i)
}

#[cfg(not(target_arch = "x86_64"))]
fn newline_or_nul(window: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', 0, window)
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
        if let Some(max_line) = self.dialect.max_line {
            return Some(self.next_pg13(max_line));
        }
        if self.simple {
            if let Some(line) = self.next_simple() {
                return Some(line);
            }
        }
        let start = self.pos;
        let line_number = self.line_number;
        self.segs.clear();
        let mut buf_len = 0usize;
        let mut last_backslash_len = 0usize;
        let mut continuations = 0u32;
        while self.get_line_append(&mut buf_len) {
            while buf_len > 0 && matches!(self.buf_last(), Some(b'\n' | b'\r')) {
                self.buf_pop();
                buf_len -= 1;
            }
            if self.dialect.continuations
                && buf_len > last_backslash_len
                && self.buf_last() == Some(b'\\')
            {
                self.buf_pop();
                buf_len -= 1;
                last_backslash_len = buf_len;
                continuations += 1;
                continue;
            }
            break;
        }
        self.line_number += continuations + 1;
        let raw = &self.src[start..self.pos];
        let (content, segments) = match self.segs.as_slice() {
            [] => (Cow::Borrowed(&raw[..0]), Vec::new()),
            [(s, e)] if *s == start => (Cow::Borrowed(&self.src[*s..*e]), Vec::new()),
            segs => {
                let mut buf = Vec::with_capacity(buf_len);
                let mut map = Vec::with_capacity(segs.len());
                for &(s, e) in segs {
                    map.push((buf.len(), s - start));
                    buf.extend_from_slice(&self.src[s..e]);
                }
                (Cow::Owned(buf), map)
            }
        };
        Some(LogicalLine {
            raw_start: start,
            raw,
            line_number,
            line_count: continuations + 1,
            content,
            segments,
            too_long: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::PgVersion;

    type Seen = (usize, Vec<u8>, u32, u32, Vec<u8>, Vec<(usize, usize)>, bool);

    fn split(src: &[u8], v: u32, simple: bool) -> Vec<Seen> {
        let mut lines = LineSplitter::new(src, Dialect::for_version(PgVersion::new(v).unwrap()));
        lines.simple = simple;
        lines
            .map(|l| {
                let LogicalLine {
                    raw_start,
                    raw,
                    line_number,
                    line_count,
                    content,
                    segments,
                    too_long,
                } = l;
                (
                    raw_start,
                    raw.to_vec(),
                    line_number,
                    line_count,
                    content.into_owned(),
                    segments,
                    too_long,
                )
            })
            .collect()
    }

    proptest::proptest! {
        /// The shortcut for the common line changes nothing: NULs, CRs,
        /// backslashes before line ends, lines longer than the buffer.
        #[test]
        fn simple_lines_are_read_as_the_simulation_reads_them(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b"a".to_vec()),
                    proptest::strategy::Just(b"\n".to_vec()),
                    proptest::strategy::Just(b"\r".to_vec()),
                    proptest::strategy::Just(b"\\".to_vec()),
                    proptest::strategy::Just(b"\0".to_vec()),
                    proptest::strategy::Just(b" ".to_vec()),
                    proptest::strategy::Just(vec![b'x'; 700]),
                ],
                0..40,
            ),
            v in 14u32..=18,
        ) {
            let src = parts.concat();
            proptest::prop_assert_eq!(split(&src, v, true), split(&src, v, false));
        }
    }

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
    fn nul_byte_drops_rest_of_chunk_and_swallows_next_line_from_14() {
        // fgets() read "ab\0cd\n"; strlen() keeps "ab" and loses the
        // newline, so the next physical line is appended (verified on 15-18)
        assert_eq!(
            contents(b"ab\0cd\nx\ny\n", 16),
            vec![(1, b"abx".to_vec()), (2, b"y".to_vec())]
        );
        // 13: one fgets() per line, cut at the NUL
        assert_eq!(
            contents(b"ab\0cd\nx\n", 13),
            vec![(1, b"ab".to_vec()), (2, b"x".to_vec())]
        );
    }

    #[test]
    fn long_lines_read_in_growing_chunks_keep_their_text() {
        let mut src = vec![b'x'; 5000];
        src.push(b'\n');
        src.extend_from_slice(b"y\n");
        let got = contents(&src, 16);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.len(), 5000);
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
