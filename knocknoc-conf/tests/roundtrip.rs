//! Property tests: any bytes round-trip exactly; generated valid files parse
//! to what was generated; any value that is set reads back the same; edits
//! change only their line.

use knocknoc_conf::{Document, LineContent, LineEnding, Value};
use proptest::prelude::*;

/// Pieces that exercise the grammar's corners when strung together.
const FRAGMENTS: &[&[u8]] = &[
    b"Listen",
    b"DatabaseURL",
    b"trustedforwarders",
    b"Key",
    b"=",
    b" = ",
    b" ",
    b"\t",
    b"\"",
    b"'",
    b"#",
    b"\\",
    b"\\u00e9",
    b"\\u0000",
    b"\\n",
    b"[",
    b"]",
    b",",
    b"\r\n",
    b"\n",
    b"\r",
    b"true",
    b"-12",
    b"127.0.0.1:8756",
    b"10.0.0.0/8",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    "é".as_bytes(),
    b"\x00",
    b"\x01",
];

fn conf_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_round_trip(input in prop::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(Document::parse(&input).to_bytes(), input);
    }

    #[test]
    fn conf_like_bytes_round_trip_and_reparse_stably(input in conf_like_bytes()) {
        let doc = Document::parse(&input);
        prop_assert_eq!(doc.to_bytes(), input.clone());
        prop_assert_eq!(Document::parse(doc.to_bytes()), doc.clone());
        // Neither view panics, and Debug never fails.
        let _ = doc.settings();
        let _ = format!("{doc:?} {}", doc.redacted());

        // The fuzz target's edit check: the input itself as a hostile value.
        let value = String::from_utf8_lossy(&input).replace('\0', "");
        let mut edited = doc.clone();
        if edited.set("DatabaseURL", value.as_str()).is_ok() {
            let again = Document::parse(edited.to_bytes());
            prop_assert_eq!(again.get("databaseurl"), Some(&Value::from(value.as_str())));
            let existed = doc
                .lines()
                .iter()
                .any(|l| l.key().is_some_and(|k| k.eq_ignore_ascii_case("DatabaseURL")));
            prop_assert_eq!(again.lines().len(), doc.lines().len() + usize::from(!existed));
        }
    }
}

/// One generated line and what it should parse to.
#[derive(Clone, Debug)]
enum Spec {
    Blank(String),
    Comment(String),
    Entry {
        text: String,
        key: String,
        value: Value,
    },
}

fn blanks() -> impl Strategy<Value = String> {
    "[ \t]{0,3}"
}

/// Text that may hold anything but NUL and line breaks.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 #'\"\\\\é=\\[\\],\t\u{1}\u{7f}\u{85}\u{2028}😀]{0,12}"
}

/// A string and a way of writing it, written independently of the crate's
/// own formatter.
fn written_string() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        // Bare text: starts with a letter, cannot spell a boolean or number.
        "x[a-zA-Z0-9_./:, -]{0,10}[a-z0-9]".prop_map(|s| (s.clone(), Value::String(s))),
        "\\[[0-9a-f:]{1,8}\\]:[0-9]{1,5}".prop_map(|s| (s.clone(), Value::String(s))),
        (text(), prop::collection::vec(any::<bool>(), 12)).prop_map(|(s, escape_more)| {
            let mut out = String::from("\"");
            for (i, c) in s.chars().enumerate() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\t' if escape_more[i % 12] => out.push_str("\\t"),
                    c if c.is_control() || (escape_more[i % 12] && (c as u32) < 0x10000) => {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            (out, Value::String(s))
        }),
        "[a-zA-Z0-9 #\"\\\\é=\\[\\],\t😀]{0,12}".prop_map(|s| (format!("'{s}'"), Value::String(s))),
    ]
}

fn written_value() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        written_string(),
        (any::<i64>(), any::<bool>()).prop_map(|(i, plus)| {
            let text = if plus && i >= 0 {
                format!("+{i}")
            } else {
                i.to_string()
            };
            (text, Value::Integer(i))
        }),
        any::<bool>().prop_map(|b| (b.to_string(), Value::Boolean(b))),
        (
            prop::collection::vec((written_string(), blanks(), blanks()), 0..4),
            blanks(),
            any::<bool>(),
        )
            .prop_map(|(items, inner, trailing_comma)| {
                let quoted: Vec<_> = items
                    .iter()
                    .filter(|((text, _), _, _)| text.starts_with(['"', '\'']))
                    .collect();
                let mut out = format!("[{inner}");
                for (i, ((text, _), before, after)) in quoted.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&format!("{before},{after}"));
                    }
                    out.push_str(text);
                }
                if trailing_comma && !quoted.is_empty() {
                    out.push(',');
                }
                out.push_str(&format!("{inner}]"));
                let values = quoted
                    .iter()
                    .map(|((_, v), _, _)| v.as_str().unwrap_or_default().to_owned())
                    .collect();
                (out, Value::Array(values))
            }),
    ]
}

fn line_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        blanks().prop_map(Spec::Blank),
        (blanks(), text()).prop_map(|(indent, t)| Spec::Comment(format!("{indent}#{t}"))),
        (
            blanks(),
            "[A-Za-z_][A-Za-z0-9_.-]{0,8}",
            blanks(),
            blanks(),
            written_value(),
            blanks(),
            prop::option::of(text()),
        )
            .prop_map(
                |(indent, key, before, after, (repr, value), gap, comment)| {
                    // A bare value swallows blanks up to the comment or line end.
                    let comment = comment.map(|c| format!("{gap}#{c}")).unwrap_or_default();
                    let text = format!("{indent}{key}{before}={after}{repr}{comment}");
                    Spec::Entry { text, key, value }
                }
            ),
    ]
}

/// A generated valid file: its lines, their endings and its text.
fn valid_file() -> impl Strategy<Value = (Vec<Spec>, Vec<LineEnding>, String)> {
    prop::collection::vec((line_spec(), any::<bool>()), 0..12)
        .prop_flat_map(|lines| (Just(lines), any::<bool>()))
        .prop_map(|(lines, final_newline)| {
            let count = lines.len();
            let mut text = String::new();
            let mut endings = Vec::new();
            let mut specs = Vec::new();
            for (i, (spec, crlf)) in lines.into_iter().enumerate() {
                let body = match &spec {
                    Spec::Blank(t) | Spec::Comment(t) | Spec::Entry { text: t, .. } => t.clone(),
                };
                let ending = if i + 1 == count && !final_newline && !body.is_empty() {
                    LineEnding::None
                } else if crlf {
                    LineEnding::CrLf
                } else {
                    LineEnding::Lf
                };
                text.push_str(&body);
                text.push_str(ending.as_str());
                endings.push(ending);
                specs.push(spec);
            }
            (specs, endings, text)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn generated_valid_files_parse_to_what_was_written((specs, endings, text) in valid_file()) {
        let doc = Document::parse(&text);
        prop_assert_eq!(doc.to_bytes(), text.as_bytes());
        prop_assert_eq!(doc.lines().len(), specs.len());
        for ((line, spec), ending) in doc.lines().iter().zip(&specs).zip(&endings) {
            prop_assert_eq!(line.ending(), *ending);
            match (line.content(), spec) {
                (LineContent::Blank(_), Spec::Blank(_)) | (LineContent::Comment(_), Spec::Comment(_)) => {}
                (LineContent::Entry(entry), Spec::Entry { key, value, .. }) => {
                    prop_assert_eq!(entry.key(), key);
                    prop_assert_eq!(entry.value(), value);
                }
                (other, spec) => prop_assert!(false, "{:?} parsed as {:?}", spec, other),
            }
        }
    }

    #[test]
    fn any_value_set_reads_back_and_changes_only_its_line(
        (specs, _, text) in valid_file(),
        target in any::<prop::sample::Index>(),
        key in prop_oneof!["[A-Za-z_][A-Za-z0-9_.-]{0,8}", Just("DatabaseURL".to_owned())],
        value in prop_oneof![
            any::<String>().prop_map(|s| Value::String(s.replace('\0', ""))),
            any::<i64>().prop_map(Value::Integer),
            any::<bool>().prop_map(Value::Boolean),
            prop::collection::vec(any::<String>().prop_map(|s| s.replace('\0', "")), 0..3).prop_map(Value::Array),
        ],
    ) {
        let mut doc = Document::parse(&text);
        let keys: Vec<_> = specs.iter().filter_map(|s| match s {
            Spec::Entry { key, .. } => Some(key.clone()),
            _ => None,
        }).collect();
        // Set an existing key (if its spelling is unique) or a new one.
        let key = if keys.is_empty() { key } else { keys[target.index(keys.len())].clone() };
        let setting: Vec<usize> = doc.lines().iter().enumerate()
            .filter(|(_, l)| l.key().is_some_and(|k| k.eq_ignore_ascii_case(&key)))
            .map(|(i, _)| i)
            .collect();
        let before = doc.to_bytes();
        let result = doc.set(&key, value.clone());
        if setting.len() > 1 {
            prop_assert!(result.is_err());
            prop_assert_eq!(doc.to_bytes(), before);
            return Ok(());
        }
        prop_assert!(result.is_ok());
        let after = doc.to_bytes();
        let reread = Document::parse(&after);
        prop_assert_eq!(reread.get(&key), Some(&value));
        prop_assert!(reread.parse_errors().is_empty());

        let old_lines: Vec<&[u8]> = before.split_inclusive(|&b| b == b'\n').collect();
        let new_lines: Vec<&[u8]> = after.split_inclusive(|&b| b == b'\n').collect();
        match setting.first() {
            Some(&i) => {
                prop_assert_eq!(old_lines.len(), new_lines.len());
                for (j, (old, new)) in old_lines.iter().zip(&new_lines).enumerate() {
                    if j != i {
                        prop_assert_eq!(old, new, "line {} changed", j + 1);
                    }
                }
                // The edited line keeps its key, spacing, comment and ending.
                let old_entry = Document::parse(old_lines[i]).lines()[0].as_entry().cloned().unwrap();
                let new_entry = reread.lines()[i].as_entry().unwrap();
                prop_assert_eq!(old_entry.key(), new_entry.key());
                prop_assert_eq!(old_entry.value_column(), new_entry.value_column());
                prop_assert_eq!(old_entry.comment(), new_entry.comment());
                prop_assert_eq!(doc.lines()[i].ending(), reread.lines()[i].ending());
            }
            None => {
                prop_assert_eq!(new_lines.len(), old_lines.len() + 1);
                let n = old_lines.len();
                if n > 0 {
                    prop_assert_eq!(
                        old_lines[n - 1].strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(old_lines[n - 1]),
                        new_lines[n - 1].strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap()
                    );
                    prop_assert_eq!(&old_lines[..n - 1], &new_lines[..n - 1]);
                    // A file without a final newline still has none.
                    prop_assert_eq!(before.ends_with(b"\n"), after.ends_with(b"\n"));
                }
            }
        }
    }

    #[test]
    fn unset_removes_only_its_lines((specs, _, text) in valid_file(), target in any::<prop::sample::Index>()) {
        let keys: Vec<_> = specs.iter().filter_map(|s| match s {
            Spec::Entry { key, .. } => Some(key.clone()),
            _ => None,
        }).collect();
        prop_assume!(!keys.is_empty());
        let key = &keys[target.index(keys.len())];
        let mut doc = Document::parse(&text);
        let kept: Vec<LineContent> = doc.lines().iter()
            .filter(|l| !l.key().is_some_and(|k| k.eq_ignore_ascii_case(key)))
            .map(|l| l.content().clone())
            .collect();
        let removed = doc.unset(key);
        prop_assert!(removed >= 1);
        prop_assert!(doc.get(key).is_none());
        let reread = Document::parse(doc.to_bytes());
        let left: Vec<LineContent> = reread.lines().iter().map(|l| l.content().clone()).collect();
        prop_assert_eq!(left, kept);
        if reread.lines().last().is_some_and(|l| !matches!(l.content(), LineContent::Blank(b) if b.is_empty())) {
            prop_assert_eq!(text.ends_with('\n'), doc.to_bytes().ends_with(b"\n"));
        }
    }
}
