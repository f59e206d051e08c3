//! A small, self-contained password redactor for connection strings and for
//! any text that may contain one (comments, invalid lines). It does not parse
//! connection strings (pgctl does); it finds what could be a password and
//! masks it, erring on the side of masking too much.

use std::borrow::Cow;

/// What a redacted password is replaced with.
pub const MASK: &str = "********";

/// `text` with every password it may contain replaced by [`MASK`]:
///
/// - in URIs (`scheme://user:password@host...`), the text between the first
///   `:` and the last `@` of the authority (which ends at the first `/`);
/// - in URI query strings, the value of every parameter whose
///   percent-decoded name contains `password` (up to the next `&`);
/// - in `key=value` text, the value after every `password` (any case, so
///   also `PGPASSWORD` and `sslpassword`) followed by `=`: a quoted value to
///   its closing quote, otherwise up to the next blank (or `&` inside a URI
///   query), honouring backslash escapes.
///
/// Returns the text unchanged (borrowed) when nothing needed masking.
///
/// ```
/// use knocknoc_conf::redact_secrets;
/// assert_eq!(
///     redact_secrets("postgres://knocknoc:s3cret@db:5432/knocknoc"),
///     "postgres://knocknoc:********@db:5432/knocknoc"
/// );
/// assert_eq!(
///     redact_secrets("host=db password='a b' dbname=knocknoc"),
///     "host=db password=******** dbname=knocknoc"
/// );
/// ```
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    let mut ranges = Vec::new();
    uri_passwords(text, &mut ranges);
    keyword_passwords(text, &mut ranges);
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in ranges {
        if end <= copied {
            continue;
        }
        let start = start.max(copied);
        out.push_str(&text[copied..start]);
        if !out.ends_with(MASK) || start > copied {
            out.push_str(MASK);
        }
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Userinfo passwords and `password` query parameters of URIs.
fn uri_passwords(text: &str, ranges: &mut Vec<(usize, usize)>) {
    let starts: Vec<usize> = text.match_indices("://").map(|(pos, _)| pos + 3).collect();
    for (n, &start) in starts.iter().enumerate() {
        // Each URI is searched only up to the next one: linear time on any
        // input.
        let text = &text[..starts.get(n + 1).map_or(text.len(), |next| next - 3)];
        let end = text[start..].find('/').map_or(text.len(), |i| start + i);
        let authority = &text[start..end];
        if let Some(at) = authority.rfind('@') {
            if let Some(colon) = authority[..at].find(':') {
                ranges.push((start + colon + 1, start + at));
            }
        }
        let Some(query) = text[start..].find('?').map(|i| start + i + 1) else {
            continue;
        };
        let mut param_start = query;
        while param_start < text.len() {
            let param_end = text[param_start..]
                .find('&')
                .map_or(text.len(), |i| param_start + i);
            let param = &text[param_start..param_end];
            if let Some(eq) = param.find('=') {
                let name = percent_decode_lossy(&param[..eq]).to_ascii_lowercase();
                if name.contains("password") && eq + 1 < param.len() {
                    ranges.push((param_start + eq + 1, param_end));
                }
            }
            param_start = param_end + 1;
        }
    }
}

/// Values of `...password = value` in `key=value` text.
fn keyword_passwords(text: &str, ranges: &mut Vec<(usize, usize)>) {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let skip_blanks = |mut at: usize| {
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
            at += 1;
        }
        at
    };
    let mut masked_until = 0;
    for (pos, word) in lower.match_indices("password") {
        if pos < masked_until {
            // Inside a value already masked (and skipping keeps this linear).
            continue;
        }
        let eq = skip_blanks(pos + word.len());
        if bytes.get(eq) != Some(&b'=') {
            continue;
        }
        let start = skip_blanks(eq + 1);
        // In a URI query string the value ends at the next parameter.
        let in_query = pos > 0 && matches!(bytes[pos - 1], b'?' | b'&');
        let mut at = start;
        match bytes.get(start) {
            Some(&quote @ (b'\'' | b'"')) => {
                at += 1;
                while at < bytes.len() && bytes[at] != quote {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at = (at + 1).min(bytes.len());
            }
            _ => {
                while at < bytes.len()
                    && !matches!(bytes[at], b' ' | b'\t' | b'\n' | b'\r')
                    && !(in_query && bytes[at] == b'&')
                {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at = at.min(bytes.len());
            }
        }
        // Never split a multi-byte character.
        while !text.is_char_boundary(at) {
            at += 1;
        }
        if at > start {
            ranges.push((start, at));
            masked_until = at;
        }
    }
}

/// Percent-decodes `s`, keeping malformed escapes as they are.
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_forms() {
        let cases = [
            ("postgres://u:p@h/db", "postgres://u:********@h/db"),
            (
                "postgresql://u:p@ss@h:5432/db",
                "postgresql://u:********@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u:@h/db", "postgres://u:********@h/db"),
            (
                "postgres://h1:5432,h2:5433/db",
                "postgres://h1:5432,h2:5433/db",
            ),
            (
                "postgres://u@h/db?sslmode=require&password=x&a=b",
                "postgres://u@h/db?sslmode=require&password=********&a=b",
            ),
            (
                "postgres://u@h/db?p%61ssword=x",
                "postgres://u@h/db?p%61ssword=********",
            ),
            ("postgres://u:p@h", "postgres://u:********@h"),
            (
                "# old: postgres://u:p@h/db",
                "# old: postgres://u:********@h/db",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_secrets(input), expected, "{input}");
        }
    }

    #[test]
    fn keyword_forms() {
        let cases = [
            (
                "host=h password=secret dbname=d",
                "host=h password=******** dbname=d",
            ),
            ("password = 'a \\' b' user=u", "password = ******** user=u"),
            ("PASSWORD=x", "PASSWORD=********"),
            ("PGPASSWORD=x psql", "PGPASSWORD=******** psql"),
            ("sslpassword=x", "sslpassword=********"),
            ("password=a\\ b c", "password=******** c"),
            ("password='unterminated", "password=********"),
            ("passwordless=yes", "passwordless=yes"),
            ("password=", "password="),
            ("password=é", "password=********"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_secrets(input), expected, "{input}");
        }
    }

    #[test]
    fn hostile_repetitions_take_linear_time() {
        // Regression guard: these took quadratic time in a first version.
        for unit in ["://", "password=", "a://b?c&", "p://u:x@"] {
            let text = unit.repeat(50_000);
            let started = std::time::Instant::now();
            let _ = redact_secrets(&text);
            assert!(started.elapsed().as_secs() < 20, "{unit}");
        }
    }

    #[test]
    fn both_forms_overlapping_mask_once() {
        let shown = redact_secrets("postgres://u:password=x@h/db");
        assert!(!shown.contains('x'), "{shown}");
        assert_eq!(shown.matches(MASK).count(), 1, "{shown}");
    }
}
