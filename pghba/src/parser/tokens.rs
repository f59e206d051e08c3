//! Fields and tokens of one logical line (`next_field_expand()` and
//! `next_token()` of the server).

use std::borrow::Cow;

use super::{is_blank, Dialect};

/// One token: a name, keyword, address, option... with its quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// Offset of the token's first byte in the line content.
    pub start: usize,
    /// The token as written, quotes included.
    pub raw: &'a [u8],
    /// The token's value: quotes removed, `""` inside quotes turned into `"`.
    pub value: Cow<'a, [u8]>,
    /// A quote preceded the first character of the value: keywords, `+group`
    /// and `@file` lose their meaning.
    pub quoted: bool,
}

impl Token<'_> {
    /// `@file`: an unquoted value starting with `@` followed by something.
    pub fn is_file_reference(&self) -> bool {
        !self.quoted && self.value.len() > 1 && self.value[0] == b'@'
    }

    /// End offset of the token in the line content.
    pub fn end(&self) -> usize {
        self.start + self.raw.len()
    }
}

/// A field: one token or a comma-separated list of tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The tokens, in order (never empty).
    pub tokens: Vec<Token<'a>>,
}

impl Field<'_> {
    /// Offset of the field's first byte in the line content.
    pub fn start(&self) -> usize {
        self.tokens[0].start
    }

    /// Offset just past the field's last token.
    pub fn end(&self) -> usize {
        self.tokens[self.tokens.len() - 1].end()
    }
}

/// The result of tokenizing one logical line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedLine<'a> {
    /// The fields, in order.
    pub fields: Vec<Field<'a>>,
    /// Where an unquoted `#` started a comment, if one did.
    pub comment_start: Option<usize>,
    /// PostgreSQL 13 only: a token overflowed the token buffer; the offset
    /// of that token ("authentication file token too long").
    pub token_too_long: Option<usize>,
}

/// What `next_token()` found.
struct Next<'a> {
    token: Option<Token<'a>>,
    terminating_comma: bool,
}

/// Remove the quoting from a raw token, as `next_token()` does.
pub fn dequote(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_quote = false;
    let mut was_quote = false;
    for &c in raw {
        if c != b'"' || was_quote {
            out.push(c);
        }
        if in_quote && c == b'"' {
            was_quote = !was_quote;
        } else {
            was_quote = false;
        }
        if c == b'"' {
            in_quote = !in_quote;
        }
    }
    out
}

/// Outside quotes, the bytes [`next_token`] must look at one by one: blanks,
/// comma, `#` and the quote.
fn ends_plain_run(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b',' | b'#' | b'"')
}

fn next_token<'a>(
    s: &'a [u8],
    pos: &mut usize,
    max_token: Option<usize>,
    comment_start: &mut Option<usize>,
) -> Result<Next<'a>, usize> {
    let len = s.len();
    let mut p = *pos;
    while p < len && (is_blank(s[p]) || s[p] == b',') {
        p += 1;
    }
    let start = p;
    let mut in_quote = false;
    let mut was_quote = false;
    let mut saw_quote = false;
    let mut initial_quote = false;
    let mut out_len = 0usize;
    let mut terminating_comma = false;
    while p < len && (!is_blank(s[p]) || in_quote) {
        let c = s[p];
        if c != b'"' && (in_quote || !ends_plain_run(c)) {
            // Fast path: a run of bytes that are copied as they are, up to
            // the next byte that matters.
            let run_start = p;
            p += 1;
            if in_quote {
                while p < len && s[p] != b'"' {
                    p += 1;
                }
            } else {
                while p < len && !ends_plain_run(s[p]) {
                    p += 1;
                }
            }
            // The byte by byte loop checks the limit before each byte of
            // the run: it fails if the run's last byte finds it reached.
            if let Some(max) = max_token {
                if out_len + (p - run_start) >= max {
                    *pos = len;
                    return Err(start);
                }
            }
            out_len += p - run_start;
            was_quote = false;
            continue;
        }
        if c == b'#' && !in_quote {
            *comment_start = Some(p);
            break;
        }
        if let Some(max) = max_token {
            if out_len >= max - 1 {
                *pos = len;
                return Err(start);
            }
        }
        if c == b',' && !in_quote {
            terminating_comma = true;
            break;
        }
        if c != b'"' || was_quote {
            out_len += 1;
        }
        if in_quote && c == b'"' {
            was_quote = !was_quote;
        } else {
            was_quote = false;
        }
        if c == b'"' {
            in_quote = !in_quote;
            saw_quote = true;
            if out_len == 0 {
                initial_quote = true;
            }
        }
        p += 1;
    }
    *pos = if comment_start.is_some() { len } else { p };
    if !(saw_quote || out_len > 0) {
        return Ok(Next {
            token: None,
            terminating_comma,
        });
    }
    let raw = &s[start..p];
    let value = if saw_quote {
        Cow::Owned(dequote(raw))
    } else {
        Cow::Borrowed(raw)
    };
    Ok(Next {
        token: Some(Token {
            start,
            raw,
            value,
            quoted: initial_quote,
        }),
        terminating_comma,
    })
}

/// Lines up to this long may go through [`tokenize_plain`] (real lines are
/// far shorter; longer ones take [`next_token`]).
const PLAIN_MAX: usize = 256;
const MASK_WORDS: usize = PLAIN_MAX / 64;
// no token of such a line can reach a version's token length limit
const _: () = assert!(PLAIN_MAX < super::PG13_MAX_TOKEN - 1);

/// Which of 16 bytes are separators (blank or comma; bit i for byte i) and
/// which are a quote or `#`.
#[cfg(target_arch = "x86_64")]
fn block_classes(block: &[u8; 16]) -> (u64, u64) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so the intrinsics are
    // available; the unaligned load reads exactly the 16 bytes of `block`.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
        let sep = _mm_or_si128(
            _mm_or_si128(eq(b' '), eq(b'\t')),
            _mm_or_si128(eq(b'\r'), eq(b',')),
        );
        let special = _mm_or_si128(eq(b'"'), eq(b'#'));
        (
            u64::from(_mm_movemask_epi8(sep) as u16),
            u64::from(_mm_movemask_epi8(special) as u16),
        )
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn block_classes(block: &[u8; 16]) -> (u64, u64) {
    let (mut sep, mut special) = (0, 0);
    for (i, &c) in block.iter().enumerate() {
        if matches!(c, b' ' | b'\t' | b'\r' | b',') {
            sep |= 1 << i;
        } else if matches!(c, b'"' | b'#') {
            special |= 1 << i;
        }
    }
    (sep, special)
}

/// Bit i set when byte i of `s` (at most [`PLAIN_MAX`] bytes) is a blank or
/// a comma, and every bit past its end; `None` when `s` has a quote or `#`.
fn separator_mask(s: &[u8]) -> Option<[u64; MASK_WORDS]> {
    let mut words = [u64::MAX; MASK_WORDS];
    for (k, chunk) in s.chunks(16).enumerate() {
        let block: [u8; 16] = match chunk.try_into() {
            Ok(b) => b,
            Err(_) => {
                // the tail, padded with blanks (past the end: separators)
                let mut b = [b' '; 16];
                b[..chunk.len()].copy_from_slice(chunk);
                b
            }
        };
        let (sep, special) = block_classes(&block);
        if special != 0 {
            return None;
        }
        let shift = 16 * (k % 4);
        let word = &mut words[k / 4];
        *word = (*word & !(0xffff << shift)) | (sep << shift);
    }
    Some(words)
}

/// The first bit at or after `from` that is `set` (or not), else [`PLAIN_MAX`].
fn next_bit(words: &[u64; MASK_WORDS], from: usize, set: bool) -> usize {
    let word = |w: usize| if set { words[w] } else { !words[w] };
    let mut w = from / 64;
    if w >= MASK_WORDS {
        return PLAIN_MAX;
    }
    let mut bits = word(w) & (u64::MAX << (from % 64));
    loop {
        if bits != 0 {
            return w * 64 + bits.trailing_zeros() as usize;
        }
        w += 1;
        if w == MASK_WORDS {
            return PLAIN_MAX;
        }
        bits = word(w);
    }
}

/// The common line, without quotes or comment, token by token: runs of
/// bytes between separators, a comma right after one continuing the field.
/// What [`next_token`] does on such a line, found sixteen bytes at a time
/// instead of byte by byte. Returns false, with `tokens` and `ends`
/// untouched, when the line has a quote or `#` or is longer than
/// [`PLAIN_MAX`]: then [`next_token`] must do it.
fn tokenize_plain<'a, T: From<Token<'a>>>(
    s: &'a [u8],
    tokens: &mut Vec<T>,
    ends: &mut Vec<usize>,
) -> bool {
    if s.len() > PLAIN_MAX {
        return false;
    }
    let Some(sep) = separator_mask(s) else {
        return false;
    };
    let len = s.len();
    let mut p = 0;
    loop {
        p = next_bit(&sep, p, false);
        if p >= len {
            break;
        }
        // bits past the end are set: the token ends by `len`
        let end = next_bit(&sep, p, true);
        let raw = &s[p..end];
        tokens.push(
            Token {
                start: p,
                raw,
                value: Cow::Borrowed(raw),
                quoted: false,
            }
            .into(),
        );
        if end == len || s[end] != b',' {
            ends.push(tokens.len());
        }
        p = end;
    }
    if ends.last().copied().unwrap_or(0) < tokens.len() {
        ends.push(tokens.len());
    }
    true
}

/// Tokenize one logical line's content.
pub fn tokenize<'a>(content: &'a [u8], dialect: &Dialect) -> TokenizedLine<'a> {
    let mut tokens = Vec::new();
    let mut ends = Vec::new();
    let (comment_start, token_too_long) = tokenize_into(content, dialect, &mut tokens, &mut ends);
    let mut fields = Vec::with_capacity(ends.len());
    let mut it = tokens.into_iter();
    let mut start = 0;
    for end in ends {
        fields.push(Field {
            tokens: it.by_ref().take(end - start).collect(),
        });
        start = end;
    }
    TokenizedLine {
        fields,
        comment_start,
        token_too_long,
    }
}

/// [`tokenize`] into buffers the caller reuses from line to line: the
/// tokens of all fields one after the other in `tokens` (as [`Token`]s or
/// anything made from one, such as the checker's
/// [`crate::rule::InputToken`]), and in `ends` the
/// index in `tokens` just past each field's last token (every field has at
/// least one token). Both are cleared first. Returns where a comment
/// started and, PostgreSQL 13 to 15, where a token overflowed (see
/// [`TokenizedLine`]).
pub fn tokenize_into<'a, T: From<Token<'a>>>(
    content: &'a [u8],
    dialect: &Dialect,
    tokens: &mut Vec<T>,
    ends: &mut Vec<usize>,
) -> (Option<usize>, Option<usize>) {
    tokens.clear();
    ends.clear();
    if tokenize_plain(content, tokens, ends) {
        return (None, None);
    }
    tokenize_general(content, dialect, tokens, ends)
}

/// [`tokenize_into`] for any line: [`next_token`] after [`next_token`], as
/// the server does (`tokens` and `ends` start empty).
fn tokenize_general<'a, T: From<Token<'a>>>(
    content: &'a [u8],
    dialect: &Dialect,
    tokens: &mut Vec<T>,
    ends: &mut Vec<usize>,
) -> (Option<usize>, Option<usize>) {
    let mut comment_start = None;
    let mut pos = 0;
    while pos < content.len() {
        loop {
            match next_token(content, &mut pos, dialect.max_token, &mut comment_start) {
                Err(at) => {
                    if ends.last().copied().unwrap_or(0) < tokens.len() {
                        ends.push(tokens.len());
                    }
                    return (comment_start, Some(at));
                }
                Ok(Next { token: None, .. }) => break,
                Ok(Next {
                    token: Some(token),
                    terminating_comma,
                }) => {
                    tokens.push(token.into());
                    if !terminating_comma {
                        break;
                    }
                }
            }
        }
        if ends.last().copied().unwrap_or(0) < tokens.len() {
            ends.push(tokens.len());
        }
    }
    (comment_start, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Tokenized<'a> = (Vec<Token<'a>>, Vec<usize>, (Option<usize>, Option<usize>));

    /// The line tokenized by [`tokenize_into`] (plain tokens first), and by
    /// the general tokenizer alone.
    fn both(line: &[u8]) -> (Tokenized<'_>, Tokenized<'_>) {
        let d = Dialect::for_version(crate::PgVersion::V15);
        let (mut tokens, mut ends) = (Vec::new(), Vec::new());
        let r = tokenize_into(line, &d, &mut tokens, &mut ends);
        let (mut general, mut general_ends) = (Vec::new(), Vec::new());
        let g = tokenize_general(line, &d, &mut general, &mut general_ends);
        ((tokens, ends, r), (general, general_ends, g))
    }

    /// Every line of up to six bytes from blanks, commas, a plain byte, a
    /// quote and `#`: the plain tokenizer (or the general one where it
    /// declines) finds what the general one alone finds.
    #[test]
    fn plain_tokenizer_is_the_general_one_on_all_short_lines() {
        let alphabet = b"a \t\r,\"#";
        let mut lines = 0;
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let mut line = Vec::new();
                for _ in 0..len {
                    line.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let (fast, general) = both(&line);
                assert_eq!(fast, general, "{line:?}");
                let special = line.iter().any(|c| matches!(c, b'"' | b'#'));
                let taken = tokenize_plain::<Token<'_>>(&line, &mut Vec::new(), &mut Vec::new());
                assert_eq!(taken, !special, "{line:?}");
                lines += 1;
            }
        }
        assert_eq!(lines, (0..=6).map(|l| 7usize.pow(l)).sum::<usize>());
    }

    proptest! {
        /// Long lines, around the plain tokenizer's 256-byte limit and its
        /// 16-byte blocks, quotes and comments anywhere.
        #[test]
        fn plain_tokenizer_is_the_general_one_on_long_lines(
            line in proptest::collection::vec(
                prop_oneof![
                    8 => Just(b' '), 2 => Just(b'\t'), 3 => Just(b','), 1 => Just(b'\r'),
                    12 => Just(b'x'), 1 => Just(b'+'), 1 => Just(b'\xe9'), 1 => Just(b'"'),
                    1 => Just(b'#'), 1 => Just(b'@'),
                ],
                0..300,
            )
        ) {
            let (fast, general) = both(&line);
            prop_assert_eq!(fast, general);
        }
    }

    fn fields(s: &str) -> Vec<Vec<(String, bool)>> {
        tokenize(s.as_bytes(), &Dialect::default())
            .fields
            .iter()
            .map(|f| {
                f.tokens
                    .iter()
                    .map(|t| (String::from_utf8(t.value.to_vec()).unwrap(), t.quoted))
                    .collect()
            })
            .collect()
    }

    fn plain(s: &str) -> Vec<Vec<String>> {
        fields(s)
            .into_iter()
            .map(|f| f.into_iter().map(|t| t.0).collect())
            .collect()
    }

    #[test]
    fn blanks_are_space_tab_cr_only() {
        assert_eq!(
            plain("a\tb\rc d"),
            vec![vec!["a"], vec!["b"], vec!["c"], vec!["d"]]
        );
        assert_eq!(plain("a\x0bb"), vec![vec!["a\x0bb"]]);
    }

    #[test]
    fn comma_then_space_continues_the_list() {
        assert_eq!(plain("a, b c"), vec![vec!["a", "b"], vec!["c"]]);
    }

    #[test]
    fn space_then_comma_starts_a_new_field() {
        assert_eq!(plain("a ,b"), vec![vec!["a"], vec!["b"]]);
    }

    #[test]
    fn repeated_and_leading_commas_are_skipped() {
        assert_eq!(plain(",a,,b,"), vec![vec!["a", "b"]]);
    }

    #[test]
    fn hash_mid_token_starts_a_comment() {
        let t = tokenize(b"ab#cd ef", &Dialect::default());
        assert_eq!(t.fields.len(), 1);
        assert_eq!(&*t.fields[0].tokens[0].value, b"ab");
        assert_eq!(t.comment_start, Some(2));
    }

    #[test]
    fn quotes_protect_blanks_commas_and_hash() {
        assert_eq!(plain("\"a b,#c\" d"), vec![vec!["a b,#c"], vec!["d"]]);
    }

    #[test]
    fn doubled_quote_inside_quotes_is_a_quote() {
        assert_eq!(plain("\"a\"\"b\""), vec![vec!["a\"b"]]);
        assert_eq!(plain("a\"\"b"), vec![vec!["ab"]]);
        assert_eq!(plain("\"\"\"\""), vec![vec!["\""]]);
    }

    #[test]
    fn empty_quoted_token_exists() {
        assert_eq!(
            fields("\"\" x"),
            vec![vec![("".into(), true)], vec![("x".into(), false)]]
        );
    }

    #[test]
    fn quoted_only_when_quote_precedes_first_character() {
        assert_eq!(fields("\"all\""), vec![vec![("all".into(), true)]]);
        assert_eq!(fields("a\"ll\""), vec![vec![("all".into(), false)]]);
        assert_eq!(fields("\"\"all"), vec![vec![("all".into(), true)]]);
    }

    #[test]
    fn unterminated_quote_runs_to_end_of_line() {
        assert_eq!(plain("a \"b c # d"), vec![vec!["a"], vec!["b c # d"]]);
    }

    #[test]
    fn file_reference_needs_unquoted_at_and_a_name() {
        let t = tokenize(b"@f \"@f\" @ @\"x y\"", &Dialect::default());
        let refs: Vec<bool> = t
            .fields
            .iter()
            .map(|f| f.tokens[0].is_file_reference())
            .collect();
        assert_eq!(refs, vec![true, false, false, true]);
    }

    #[test]
    fn pg13_token_limit() {
        let d = Dialect::for_version(crate::PgVersion::V13);
        let long = "x".repeat(10239);
        assert!(tokenize(long.as_bytes(), &d).token_too_long.is_none());
        let longer = "x".repeat(10240);
        assert_eq!(tokenize(longer.as_bytes(), &d).token_too_long, Some(0));
        // the terminating comma is checked after the length
        let comma = format!("{long},y");
        assert!(tokenize(comma.as_bytes(), &d).token_too_long.is_some());
    }

    #[test]
    fn token_limit_counts_runs_inside_and_around_quotes_like_byte_by_byte() {
        // regression guard for the fast path over runs of plain bytes: the
        // limit is checked before each byte, quotes included, `#` and
        // blanks excluded
        let d = Dialect::for_version(crate::PgVersion::V13);
        let too_long = |s: String| tokenize(s.as_bytes(), &d).token_too_long;
        let x = |n: usize| "x".repeat(n);
        assert_eq!(too_long(format!("\"{}\"", x(10238))), None);
        assert_eq!(too_long(format!("\"{}\"", x(10239))), Some(0));
        assert_eq!(
            too_long(format!("a \"{}\"\"{}\" b", x(5000), x(5237))),
            None
        );
        assert_eq!(
            too_long(format!("a \"{}\"\"{}\" b", x(5000), x(5238))),
            Some(2)
        );
        assert_eq!(too_long(format!("{}#{}", x(10239), x(20000))), None);
        assert_eq!(too_long(format!("{} {}", x(10239), x(10239))), None);
        assert_eq!(too_long(format!("{}\"", x(10239))), Some(0));
    }

    /// Regression (known-lint-bugs `long-token-*` on 15): 14 and 15 still have
    /// the 10240-byte token buffer of 13; only 16 lifted it.
    #[test]
    fn token_limit_until_pg15() {
        let ok = "x".repeat(10239);
        let too_long = "x".repeat(10240);
        let quoted = format!("\"{}\"", "q".repeat(10240));
        for v in [crate::PgVersion::V14, crate::PgVersion::V15] {
            let d = Dialect::for_version(v);
            assert!(tokenize(ok.as_bytes(), &d).token_too_long.is_none(), "{v}");
            let line = format!("local all {too_long} md5");
            assert_eq!(
                tokenize(line.as_bytes(), &d).token_too_long,
                Some(10),
                "{v}"
            );
            assert!(
                tokenize(quoted.as_bytes(), &d).token_too_long.is_some(),
                "{v}"
            );
            assert!(d.max_line.is_none(), "{v}: lines have no limit since 14");
        }
        for v in [crate::PgVersion::V16, crate::PgVersion::V18] {
            let d = Dialect::for_version(v);
            assert!(
                tokenize(too_long.as_bytes(), &d).token_too_long.is_none(),
                "{v}"
            );
        }
    }
}
