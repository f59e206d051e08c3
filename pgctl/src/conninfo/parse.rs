//! The two parsers, mirroring libpq 17's `PQconninfoParse`: `conninfo_parse`
//! for `key=value` strings and `conninfo_uri_parse_options` for URIs.
//!
//! Both work on bytes, as libpq does, and only ever split at ASCII bytes, so
//! the values they cut out of a `&str` stay valid UTF-8; only percent-decoding
//! can produce other bytes, which is the one place a value can be rejected for
//! not being UTF-8 (libpq would keep the raw bytes).

use super::keyword::Keyword;
use super::ConnInfo;

/// What went wrong while parsing a connection string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// `key=value` form: a keyword without a following `=`.
    MissingEquals,
    /// `key=value` form: a quoted value that never ends.
    UnterminatedQuote,
    /// `key=value` form: a keyword libpq does not know.
    InvalidOption,
    /// URI form: a query parameter whose keyword libpq does not know.
    InvalidUriParameter,
    /// URI form: a query parameter without `=`.
    MissingUriSeparator,
    /// URI form: a query parameter with a second `=`.
    ExtraUriSeparator,
    /// URI form: `%` not followed by two hexadecimal digits.
    InvalidPercentEncoding,
    /// URI form: `%00`, which libpq forbids.
    PercentEncodedNul,
    /// URI form: `[` without a matching `]`.
    UnterminatedIpv6,
    /// URI form: `[]`.
    EmptyIpv6,
    /// URI form: something other than `:`, `/`, `?` or `,` after `]`.
    UnexpectedCharacter,
    /// A percent-decoded value is not UTF-8 (libpq would accept the bytes;
    /// this crate keeps values as Rust strings).
    NotUtf8,
    /// The string contains a NUL character, which a C string cannot hold
    /// (libpq would silently stop reading there).
    NulCharacter,
    /// URI form, refused only by [`ConnInfo::parse_checked`]: an `@` that
    /// libpq would not read as the end of the credentials (a second `@`
    /// before the host, or one after the path's `/`), which is what a
    /// password holding an unencoded `@` or `/` looks like. libpq would read
    /// part of that password as a host, port or database name and could
    /// print it in a later error.
    ///
    /// [`ConnInfo::parse_checked`]: super::ConnInfo::parse_checked
    AmbiguousUriCredentials,
}

/// A connection string libpq would reject. `Display` is libpq's own message
/// (without the trailing newline), except that a password never appears in it:
/// where libpq would quote a URI or a value holding the password, the password
/// is replaced by `********`, and so is the word libpq would quote right after
/// an unquoted password (`password=correct horse` makes `horse` look like a
/// keyword).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    kind: ParseErrorKind,
    message: String,
    offset: usize,
}

impl std::fmt::Debug for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParseError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("offset", &self.offset)
            .finish()
    }
}

impl ParseError {
    fn new(kind: ParseErrorKind, offset: usize, message: String) -> Self {
        ParseError {
            kind,
            message,
            offset,
        }
    }

    /// The kind of problem.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// The message, worded as libpq words it (password redacted).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Byte offset in the input where the offending part starts (for values
    /// that failed to decode, the start of that component). Column = offset + 1
    /// for single-line input.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

const REDACTED: &str = "********";

/// libpq's `isspace` in the C locale.
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The length of the URI prefix, 0 when the string is not a URI
/// (libpq's `uri_prefix_length`).
pub(crate) fn uri_prefix_length(s: &str) -> usize {
    if s.starts_with("postgresql://") {
        "postgresql://".len()
    } else if s.starts_with("postgres://") {
        "postgres://".len()
    } else {
        0
    }
}

/// Parses either form, as `PQconninfoParse` does.
pub(crate) fn parse(s: &str) -> Result<ConnInfo, ParseError> {
    if let Some(pos) = s.find('\0') {
        return Err(ParseError::new(
            ParseErrorKind::NulCharacter,
            pos,
            "connection string contains a NUL character".to_owned(),
        ));
    }
    if uri_prefix_length(s) != 0 {
        parse_uri(s)
    } else {
        parse_keyword_value(s)
    }
}

/// [`parse`], then refuses a URI whose `@` signs do not split it the way
/// the person who wrote it most likely meant (see
/// [`ParseErrorKind::AmbiguousUriCredentials`]). The message never quotes
/// the string.
pub(crate) fn parse_checked(s: &str) -> Result<ConnInfo, ParseError> {
    let info = parse(s)?;
    if let Some(offset) = ambiguous_credentials(s) {
        return Err(ParseError::new(
            ParseErrorKind::AmbiguousUriCredentials,
            offset,
            format!(
                "the URI has an \"@\" at position {} that does not end its user name and \
                 password; if the password (or the database name) contains \"@\", \"/\", \
                 \":\" or \"?\", percent-encode them (@ %40, / %2F, : %3A, ? %3F)",
                offset + 1
            ),
        ));
    }
    Ok(info)
}

/// The offset of the first `@` of a URI that libpq would not take as the end
/// of the credentials, looking only at the part before the query (`?`): any
/// `@` but the first, and the first too when a `/` comes before it.
fn ambiguous_credentials(s: &str) -> Option<usize> {
    let start = uri_prefix_length(s);
    if start == 0 {
        return None;
    }
    let b = s.as_bytes();
    let end = start
        + b[start..]
            .iter()
            .position(|&c| c == b'?')
            .unwrap_or(b.len() - start);
    let region = &b[start..end];
    let first_at = region.iter().position(|&c| c == b'@')?;
    let first_slash = region.iter().position(|&c| c == b'/');
    if first_slash.is_some_and(|slash| slash < first_at) {
        // libpq reads no credentials: everything up to the `/` is host and
        // port, and the `@` lands in the database name.
        return Some(start + first_at);
    }
    // Credentials end at the first `@`; another one would land in the host
    // or the database name.
    region[first_at + 1..]
        .iter()
        .position(|&c| c == b'@')
        .map(|i| start + first_at + 1 + i)
}

fn bytes_to_string(bytes: Vec<u8>, offset: usize, what: &str) -> Result<String, ParseError> {
    String::from_utf8(bytes).map_err(|_| {
        ParseError::new(
            ParseErrorKind::NotUtf8,
            offset,
            format!("percent-decoded value is not valid UTF-8: \"{what}\""),
        )
    })
}

/// Stores a value the way libpq's `conninfo_storeval` does, including the
/// historical `requiressl` translation. Returns false for an unknown keyword.
fn store(info: &mut ConnInfo, keyword: &str, value: String) -> bool {
    let (keyword, value) = if keyword == "requiressl" {
        let mode = if value.starts_with('1') {
            "require"
        } else {
            "prefer"
        };
        ("sslmode", mode.to_owned())
    } else {
        (keyword, value)
    };
    match Keyword::lookup(keyword) {
        Some(k) => {
            info.set(k, value);
            true
        }
        None => false,
    }
}

fn parse_keyword_value(s: &str) -> Result<ConnInfo, ParseError> {
    let b = s.as_bytes();
    let n = b.len();
    let mut info = ConnInfo::new();
    let mut i = 0;
    // Whether the previous value was an unquoted secret ended by a blank:
    // then the next "keyword" may well be the rest of a password with a
    // space in it, and libpq would quote it in its error message.
    let mut after_bare_secret = false;
    while i < n {
        if is_c_space(b[i]) {
            i += 1;
            continue;
        }
        let name_start = i;
        while i < n && b[i] != b'=' && !is_c_space(b[i]) {
            i += 1;
        }
        let raw_name = &s[name_start..i];
        let name = if after_bare_secret {
            REDACTED
        } else {
            raw_name
        };
        while i < n && is_c_space(b[i]) {
            i += 1;
        }
        if i >= n || b[i] != b'=' {
            return Err(ParseError::new(
                ParseErrorKind::MissingEquals,
                name_start,
                format!("missing \"=\" after \"{name}\" in connection info string"),
            ));
        }
        i += 1;
        while i < n && is_c_space(b[i]) {
            i += 1;
        }
        let mut value = Vec::new();
        let quoted = i < n && b[i] == b'\'';
        if quoted {
            let quote_at = i;
            i += 1;
            loop {
                if i >= n {
                    return Err(ParseError::new(
                        ParseErrorKind::UnterminatedQuote,
                        quote_at,
                        "unterminated quoted string in connection info string".to_owned(),
                    ));
                }
                match b[i] {
                    b'\\' => {
                        i += 1;
                        if i < n {
                            value.push(b[i]);
                            i += 1;
                        }
                    }
                    b'\'' => {
                        i += 1;
                        break;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < n {
                match b[i] {
                    c if is_c_space(c) => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        i += 1;
                        if i < n {
                            value.push(b[i]);
                            i += 1;
                        }
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        }
        // Only ASCII bytes were dropped, so this cannot fail; map it anyway
        // rather than panic.
        let value = bytes_to_string(value, name_start, name)?;
        after_bare_secret =
            !quoted && i < n && Keyword::lookup(raw_name).is_some_and(Keyword::is_secret);
        if !store(&mut info, raw_name, value) {
            return Err(ParseError::new(
                ParseErrorKind::InvalidOption,
                name_start,
                format!("invalid connection option \"{name}\""),
            ));
        }
    }
    Ok(info)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// libpq's `conninfo_uri_decode`. `shown` is what the error message quotes
/// (the raw text, or `********` for a password).
fn uri_decode(raw: &str, offset: usize, shown: &str) -> Result<String, ParseError> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let hi = b.get(i + 1).copied().and_then(hex);
        let lo = if hi.is_some() {
            b.get(i + 2).copied().and_then(hex)
        } else {
            None
        };
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(ParseError::new(
                ParseErrorKind::InvalidPercentEncoding,
                offset + i,
                format!("invalid percent-encoded token: \"{shown}\""),
            ));
        };
        let c = (hi << 4) | lo;
        if c == 0 {
            return Err(ParseError::new(
                ParseErrorKind::PercentEncodedNul,
                offset + i,
                format!("forbidden value %00 in percent-encoded value: \"{shown}\""),
            ));
        }
        out.push(c);
        i += 3;
    }
    bytes_to_string(out, offset, shown)
}

/// Where the password sits in a URI, by libpq's own reading of the
/// credentials part: `(start, end)` byte offsets, when there is one.
pub(crate) fn uri_password_span(uri: &str) -> Option<(usize, usize)> {
    let start = uri_prefix_length(uri);
    if start == 0 {
        return None;
    }
    let b = uri.as_bytes();
    let at = start + b[start..].iter().position(|&c| c == b'@' || c == b'/')?;
    if b[at] != b'@' {
        return None;
    }
    let colon = start + b[start..at].iter().position(|&c| c == b':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

/// The URI with its password (if any) replaced by `********`.
pub(crate) fn redact_uri(uri: &str) -> String {
    match uri_password_span(uri) {
        Some((s, e)) => format!("{}{REDACTED}{}", &uri[..s], &uri[e..]),
        None => uri.to_owned(),
    }
}

fn parse_uri(uri: &str) -> Result<ConnInfo, ParseError> {
    let b = uri.as_bytes();
    let n = b.len();
    let at = |i: usize| -> u8 { b.get(i).copied().unwrap_or(0) };
    let mut info = ConnInfo::new();
    let start = uri_prefix_length(uri);
    let mut p = start;

    // Credentials: only when an '@' comes before any '/'.
    while p < n && b[p] != b'@' && b[p] != b'/' {
        p += 1;
    }
    if at(p) == b'@' {
        let at_pos = p;
        let mut q = start;
        while b[q] != b':' && b[q] != b'@' {
            q += 1;
        }
        let user = &uri[start..q];
        if !user.is_empty() {
            let v = uri_decode(user, start, user)?;
            info.set(Keyword::User, v);
        }
        if b[q] == b':' {
            let password = &uri[q + 1..at_pos];
            if !password.is_empty() {
                let v = uri_decode(password, q + 1, REDACTED)?;
                info.set(Keyword::Password, v);
            }
        }
        p = at_pos + 1;
    } else {
        p = start;
    }

    let mut hostbuf = String::new();
    let mut portbuf = String::new();
    let hosts_start = p;
    let mut prevchar;
    loop {
        let host;
        if at(p) == b'[' {
            p += 1;
            let host_start = p;
            while p < n && b[p] != b']' {
                p += 1;
            }
            if p >= n {
                return Err(ParseError::new(
                    ParseErrorKind::UnterminatedIpv6,
                    host_start - 1,
                    format!(
                        "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"{}\"",
                        redact_uri(uri)
                    ),
                ));
            }
            if p == host_start {
                return Err(ParseError::new(
                    ParseErrorKind::EmptyIpv6,
                    host_start - 1,
                    format!(
                        "IPv6 host address may not be empty in URI: \"{}\"",
                        redact_uri(uri)
                    ),
                ));
            }
            host = &uri[host_start..p];
            p += 1;
            let c = at(p);
            if c != 0 && c != b':' && c != b'/' && c != b'?' && c != b',' {
                // libpq prints the byte as %c; a multi-byte character shows
                // as its first byte there, we show the whole character.
                let shown = uri[p..].chars().next().unwrap_or('?');
                return Err(ParseError::new(
                    ParseErrorKind::UnexpectedCharacter,
                    p,
                    format!(
                        "unexpected character \"{shown}\" at position {} in URI (expected \":\" or \"/\"): \"{}\"",
                        p + 1,
                        redact_uri(uri)
                    ),
                ));
            }
        } else {
            let host_start = p;
            while p < n && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                p += 1;
            }
            host = &uri[host_start..p];
        }
        prevchar = at(p);
        hostbuf.push_str(host);
        if prevchar == b':' {
            p += 1;
            let port_start = p;
            while p < n && !matches!(b[p], b'/' | b'?' | b',') {
                p += 1;
            }
            portbuf.push_str(&uri[port_start..p]);
            prevchar = at(p);
        }
        if prevchar != b',' {
            break;
        }
        p += 1;
        hostbuf.push(',');
        portbuf.push(',');
    }
    if !hostbuf.is_empty() {
        let v = uri_decode(&hostbuf, hosts_start, &hostbuf)?;
        info.set(Keyword::Host, v);
    }
    if !portbuf.is_empty() {
        let v = uri_decode(&portbuf, hosts_start, &portbuf)?;
        info.set(Keyword::Port, v);
    }

    if prevchar != 0 && prevchar != b'?' {
        p += 1;
        let db_start = p;
        while p < n && b[p] != b'?' {
            p += 1;
        }
        prevchar = at(p);
        let dbname = &uri[db_start..p];
        if !dbname.is_empty() {
            let v = uri_decode(dbname, db_start, dbname)?;
            info.set(Keyword::Dbname, v);
        }
    }

    if prevchar != 0 {
        p += 1;
        parse_uri_params(uri, p, &mut info)?;
    }
    Ok(info)
}

/// libpq's `conninfo_uri_parse_params`, over `uri[from..]`.
fn parse_uri_params(uri: &str, from: usize, info: &mut ConnInfo) -> Result<(), ParseError> {
    let b = uri.as_bytes();
    let n = b.len();
    let mut p = from;
    while p < n {
        let kw_start = p;
        let mut eq: Option<usize> = None;
        let end;
        loop {
            if p >= n || b[p] == b'&' {
                end = p;
                if p < n {
                    p += 1;
                }
                if eq.is_none() {
                    return Err(ParseError::new(
                        ParseErrorKind::MissingUriSeparator,
                        kw_start,
                        format!(
                            "missing key/value separator \"=\" in URI query parameter: \"{}\"",
                            &uri[kw_start..end]
                        ),
                    ));
                }
                break;
            }
            if b[p] == b'=' {
                if let Some(first) = eq {
                    return Err(ParseError::new(
                        ParseErrorKind::ExtraUriSeparator,
                        p,
                        format!(
                            "extra key/value separator \"=\" in URI query parameter: \"{}\"",
                            &uri[kw_start..first]
                        ),
                    ));
                }
                eq = Some(p);
            }
            p += 1;
        }
        let eq = eq.unwrap_or(end);
        let raw_kw = &uri[kw_start..eq];
        let raw_value = &uri[eq + 1..end];
        let keyword = uri_decode(raw_kw, kw_start, raw_kw)?;
        let secret = Keyword::lookup(&keyword).is_some_and(Keyword::is_secret);
        let value = uri_decode(raw_value, eq + 1, if secret { REDACTED } else { raw_value })?;
        let (keyword, value) = if keyword == "ssl" && value == "true" {
            ("sslmode".to_owned(), "require".to_owned())
        } else {
            (keyword, value)
        };
        if !store(info, &keyword, value) {
            return Err(ParseError::new(
                ParseErrorKind::InvalidUriParameter,
                kw_start,
                format!("invalid URI query parameter: \"{keyword}\""),
            ));
        }
    }
    Ok(())
}
