//! The grammar, line by line: what each kind of line reads as, and the error
//! and column of each kind of invalid line.

use knocknoc_conf::{Document, LineContent, ParseErrorKind as E, Value, ValueStyle};

fn value_of(line: &str) -> (Value, ValueStyle) {
    let doc = Document::parse(line);
    match doc.lines()[0].content() {
        LineContent::Entry(e) => (e.value().clone(), e.style()),
        other => panic!("{line:?} read as {other:?}"),
    }
}

#[test]
fn valid_values() {
    let s = |x: &str| Value::String(x.into());
    let cases = [
        ("A = plain text  # c", s("plain text"), ValueStyle::Bare),
        ("A=x#c", s("x"), ValueStyle::Bare),
        ("A = true", Value::Boolean(true), ValueStyle::Bare),
        ("A = True", s("True"), ValueStyle::Bare),
        ("A = -42", Value::Integer(-42), ValueStyle::Bare),
        ("A = 0x10", s("0x10"), ValueStyle::Bare),
        ("A = [::1]:8756", s("[::1]:8756"), ValueStyle::Bare),
        ("A = \"a # b\" # c", s("a # b"), ValueStyle::DoubleQuoted),
        (
            r#"A = "\"\\\n\t\r\u00e9""#,
            s("\"\\\n\t\ré"),
            ValueStyle::DoubleQuoted,
        ),
        (
            r#"A = 'C:\path "x" # y'"#,
            s(r#"C:\path "x" # y"#),
            ValueStyle::SingleQuoted,
        ),
        ("A = \"\"", s(""), ValueStyle::DoubleQuoted),
        (
            "A = \"tab\there\"",
            s("tab\there"),
            ValueStyle::DoubleQuoted,
        ),
        (
            "A = [ \"a\" ,'b', ] # c",
            Value::Array(vec!["a".into(), "b".into()]),
            ValueStyle::Array,
        ),
        ("A = []", Value::Array(vec![]), ValueStyle::Array),
        ("  a.b-c_d\t=\tv", s("v"), ValueStyle::Bare),
    ];
    for (line, value, style) in cases {
        assert_eq!(value_of(line), (value, style), "{line}");
    }
}

#[test]
fn other_lines() {
    let doc = Document::parse("\n  \t\n  # comment \"x\n# another\r\n");
    let kinds: Vec<_> = doc
        .lines()
        .iter()
        .map(|l| match l.content() {
            LineContent::Blank(_) => "blank",
            LineContent::Comment(_) => "comment",
            LineContent::Entry(_) => "entry",
            LineContent::Invalid(_) => "invalid",
        })
        .collect();
    assert_eq!(kinds, ["blank", "blank", "comment", "comment"]);
}

#[test]
fn invalid_lines_with_their_error_and_column() {
    let cases: &[(&[u8], E, usize)] = &[
        (b"= value", E::ExpectedKey, 1),
        (b"  1A = x", E::ExpectedKey, 3),
        (b"Key value", E::ExpectedEquals, 5),
        (b"Key: value", E::ExpectedEquals, 4),
        (b"Key =", E::MissingValue, 6),
        (b"Key =  # only a comment", E::MissingValue, 8),
        (b"Key = \"open", E::UnterminatedString, 7),
        (b"Key = 'open", E::UnterminatedString, 7),
        (b"Key = \"a\\qb\"", E::UnknownEscape('q'), 9),
        (b"Key = \"\\u12\"", E::BadUnicodeEscape, 8),
        (b"Key = \"\\ud800\"", E::BadUnicodeEscape, 8),
        (b"Key = \"\\u0000\"", E::Nul, 8),
        (b"Key = a\x00b", E::Nul, 8),
        (b"Key = \"a\x01\"", E::ControlCharacter(1), 9),
        (b"Key = '\x7f'", E::ControlCharacter(0x7f), 8),
        ("Key = \"\u{85}\"".as_bytes(), E::ControlCharacter(0x85), 8),
        (b"Key = it's", E::QuoteInBareValue, 9),
        (b"Key = [\"a\"", E::UnterminatedArray, 7),
        (b"Key = [\"a\" # x]", E::UnterminatedArray, 7),
        // Neither an array nor a bare word: the array's error is the useful one.
        (b"Key = [a]x\"", E::ExpectedArrayItem, 8),
        (b"Key = [\"a\" \"b\"]", E::ExpectedCommaOrBracket, 12),
        (b"Key = [1, \"b\"", E::ExpectedArrayItem, 8),
        (b"Key = \"a\" b", E::TrailingText, 11),
        (b"Key = []x", E::TrailingText, 9),
        ("Ké = 1".as_bytes(), E::ExpectedEquals, 2),
        (b"Key = caf\xc3", E::NotUtf8, 10),
        (b"Key = \"\xc3\xa9\xff\"", E::NotUtf8, 9),
    ];
    for (line, kind, column) in cases {
        let doc = Document::parse(line);
        let errors = doc.parse_errors();
        assert_eq!(errors.len(), 1, "{line:?}");
        assert_eq!(
            (&errors[0].kind, errors[0].line, errors[0].column),
            (kind, 1, *column),
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(doc.to_bytes(), *line);
    }
}

#[test]
fn error_messages_carry_line_and_column() {
    let doc = Document::parse("ok = 1\r\nbad = \"x\r\n");
    assert_eq!(
        doc.parse_errors()[0].to_string(),
        "line 2, column 7: the quoted string has no closing quote"
    );
}
