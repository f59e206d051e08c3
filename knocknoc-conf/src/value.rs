//! Values and how they are written: the logical [`Value`], its [`ValueStyle`],
//! and the quoting rules that make any value written by this crate parse back
//! to exactly the same value.

use std::fmt;

use crate::redact::redact_secrets;

/// The logical content of a value, independent of how it is written.
///
/// A bare word is a [`Value::Boolean`] when it is exactly `true` or `false`, an
/// [`Value::Integer`] when it is an optionally signed decimal number that fits
/// an `i64`, and a [`Value::String`] otherwise. Quoted values are always
/// strings; `[...]` is an array of quoted strings.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Text: a bare word, `"double-quoted"` or `'single-quoted'`.
    String(String),
    /// A bare decimal integer such as `8756` or `-1`.
    Integer(i64),
    /// A bare `true` or `false`.
    Boolean(bool),
    /// An array of quoted strings: `["a", 'b']`.
    Array(Vec<String>),
}

impl Value {
    /// The text of a [`Value::String`], `None` for other kinds.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the kind of value, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) => "an array",
        }
    }

    /// Whether any string in the value contains a NUL character, which no
    /// value of a knocknoc.conf may hold.
    pub(crate) fn contains_nul(&self) -> bool {
        match self {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(|s| s.contains('\0')),
            Value::Integer(_) | Value::Boolean(_) => false,
        }
    }
}

/// Strings are shown through the secret redactor: a value may be a
/// connection string with a password.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.debug_tuple("String").field(&redact_secrets(s)).finish(),
            Value::Integer(i) => f.debug_tuple("Integer").field(i).finish(),
            Value::Boolean(b) => f.debug_tuple("Boolean").field(b).finish(),
            Value::Array(items) => {
                let shown: Vec<_> = items.iter().map(|s| redact_secrets(s)).collect();
                f.debug_tuple("Array").field(&shown).finish()
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<Vec<String>> for Value {
    fn from(items: Vec<String>) -> Self {
        Value::Array(items)
    }
}

/// How a value is written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueStyle {
    /// Unquoted: `127.0.0.1:8756`, `true`, `42`, `10.0.0.0/8, 10.1.0.0/16`.
    Bare,
    /// `"..."` with the escapes `\"`, `\\`, `\n`, `\t`, `\r` and `\uXXXX`.
    DoubleQuoted,
    /// `'...'`: literal text, no escapes, cannot contain `'`.
    SingleQuoted,
    /// `[...]`: an array of quoted strings.
    Array,
}

/// Characters that separate tokens: space, tab and a stray carriage return.
pub(crate) fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// The meaning of a bare word (see [`Value`]).
pub(crate) fn classify_bare(word: &str) -> Value {
    match word {
        "true" => return Value::Boolean(true),
        "false" => return Value::Boolean(false),
        _ => {}
    }
    let digits = word.strip_prefix(['+', '-']).unwrap_or(word);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = word.parse::<i64>() {
            return Value::Integer(i);
        }
    }
    Value::String(word.to_owned())
}

/// Whether `s` can be written without quotes and still read back as the
/// string `s`: the parser is asked.
fn bare_writable(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().next_back()) else {
        return false;
    };
    if is_blank(first) || is_blank(last) || s.contains('#') {
        return false;
    }
    matches!(
        crate::parser::parse_value(s),
        Ok(parsed) if parsed.style == ValueStyle::Bare
            && parsed.len == s.len()
            && parsed.value.as_str() == Some(s)
    )
}

/// Whether `s` can be written as a single-quoted literal.
fn single_quotable(s: &str) -> bool {
    !s.chars()
        .any(|c| c == '\'' || (c.is_control() && c != '\t'))
}

/// Writes `s` as a double-quoted string with the documented escapes.
pub(crate) fn double_quote(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                use std::fmt::Write as _;
                // Control characters are all in the Basic Multilingual Plane.
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The text of `value` written in `preferred` style when that style can hold
/// it, otherwise in the simplest style that can. The result always parses back
/// to `value` (strings must not contain NUL: callers check first).
pub(crate) fn format_value(value: &Value, preferred: ValueStyle) -> (String, ValueStyle) {
    match value {
        Value::Integer(i) => (i.to_string(), ValueStyle::Bare),
        Value::Boolean(b) => (b.to_string(), ValueStyle::Bare),
        Value::Array(items) => {
            let mut out = String::from("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                double_quote(item, &mut out);
            }
            out.push(']');
            (out, ValueStyle::Array)
        }
        Value::String(s) => {
            let style = match preferred {
                ValueStyle::Bare if bare_writable(s) => ValueStyle::Bare,
                ValueStyle::SingleQuoted if single_quotable(s) => ValueStyle::SingleQuoted,
                _ => ValueStyle::DoubleQuoted,
            };
            let text = match style {
                ValueStyle::Bare => s.clone(),
                ValueStyle::SingleQuoted => format!("'{s}'"),
                _ => {
                    let mut out = String::new();
                    double_quote(s, &mut out);
                    out
                }
            };
            (text, style)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_words_that_look_like_other_kinds_are_quoted() {
        for s in [
            "true", "false", "42", "-7", "+3", "", " a", "a ", "[]", "[ ]", "a#b", "a\"b", "it's",
        ] {
            let (text, style) = format_value(&Value::from(s), ValueStyle::Bare);
            assert_ne!(style, ValueStyle::Bare, "{s:?} written as {text}");
        }
        for s in ["127.0.0.1:8756", "[::1]:8756", "[x", "a b"] {
            let (text, style) = format_value(&Value::from(s), ValueStyle::Bare);
            assert_eq!((text.as_str(), style), (s, ValueStyle::Bare));
        }
    }

    #[test]
    fn integers_too_large_for_i64_are_strings() {
        assert_eq!(
            classify_bare("99999999999999999999"),
            Value::String("99999999999999999999".into())
        );
        assert_eq!(classify_bare("-12"), Value::Integer(-12));
        assert_eq!(classify_bare("True"), Value::String("True".into()));
    }

    #[test]
    fn double_quoting_escapes_controls() {
        let mut out = String::new();
        double_quote("a\"b\\c\nd\te\rf\u{1}g\u{85}", &mut out);
        assert_eq!(out, r#""a\"b\\c\nd\te\rf\u0001g\u0085""#);
    }
}
