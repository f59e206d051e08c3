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
/// tokens of all fields one after the other in `tokens`, and in `ends` the
/// index in `tokens` just past each field's last token (every field has at
/// least one token). Both are cleared first. Returns where a comment
/// started and, PostgreSQL 13 only, where a token overflowed (see
/// [`TokenizedLine`]).
pub fn tokenize_into<'a>(
    content: &'a [u8],
    dialect: &Dialect,
    tokens: &mut Vec<Token<'a>>,
    ends: &mut Vec<usize>,
) -> (Option<usize>, Option<usize>) {
    tokens.clear();
    ends.clear();
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
                    tokens.push(token);
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
