//! Edits: exact output for typical files, hostile values, refused edits.

use knocknoc_conf::{DatabaseUrl, Document, EditError, Listen, TrustedForwarders, Value};

/// `given(input).running(edit).produces(expected)`.
struct Given(Document);

fn given(input: &str) -> Given {
    let doc = Document::parse(input);
    assert_eq!(doc.to_bytes(), input.as_bytes());
    Given(doc)
}

impl Given {
    fn running(mut self, edit: impl FnOnce(&mut Document)) -> Given {
        edit(&mut self.0);
        self
    }

    fn produces(self, expected: &str) {
        assert_eq!(String::from_utf8(self.0.to_bytes()).unwrap(), expected);
    }
}

#[test]
fn set_replaces_only_the_value_text() {
    given("# Knocknoc\n  listen\t=  127.0.0.1:8756   # the web app\nOther=1\n")
        .running(|d| d.set_listen("0.0.0.0:9000".parse().unwrap()).unwrap())
        .produces("# Knocknoc\n  listen\t=  0.0.0.0:9000   # the web app\nOther=1\n");
}

#[test]
fn set_keeps_the_quoting_style_when_it_can() {
    given("A = 'x'\nB = \"y\"\nC = z\n")
        .running(|d| {
            d.set("a", "new").unwrap();
            d.set("b", "new").unwrap();
            d.set("c", "it's # here").unwrap();
        })
        .produces("A = 'new'\nB = \"new\"\nC = \"it's # here\"\n");
}

#[test]
fn new_keys_follow_the_file_style() {
    given("Listen=127.0.0.1:8756\r\n# end")
        .running(|d| d.set("DatabaseURL", "host=db").unwrap())
        .produces("Listen=127.0.0.1:8756\r\n# end\r\nDatabaseURL=host=db");
    given("")
        .running(|d| d.set_listen(Listen::default()).unwrap())
        .produces("Listen = 127.0.0.1:8756\n");
    given("\u{feff}A  =  1\n")
        .running(|d| d.set("B", true).unwrap())
        .produces("\u{feff}A  =  1\nB  =  true\n");
}

#[test]
fn set_repairs_an_invalid_line_of_the_same_key() {
    given("# x\nListen: 127.0.0.1\r\nA = 1\r\n")
        .running(|d| d.set_listen(Listen::default()).unwrap())
        .produces("# x\nListen = 127.0.0.1:8756\r\nA = 1\r\n");
}

#[test]
fn trusted_forwarders_keep_their_form() {
    let tf: TrustedForwarders = "10.0.0.0/8, 2001:db8::/32".parse().unwrap();
    given("TrustedForwarders = [\"127.0.0.1/32\"]\n")
        .running(|d| d.set_trusted_forwarders(&tf).unwrap())
        .produces("TrustedForwarders = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n");
    given("TrustedForwarders = 127.0.0.1/32\n")
        .running(|d| d.set_trusted_forwarders(&tf).unwrap())
        .produces("TrustedForwarders = 10.0.0.0/8, 2001:db8::/32\n");
    given("")
        .running(|d| {
            d.set_trusted_forwarders(&TrustedForwarders::new(vec![]).unwrap())
                .unwrap()
        })
        .produces("TrustedForwarders = \"\"\n");
}

#[test]
fn unset_removes_the_line_and_keeps_a_missing_final_newline() {
    given("A = 1\nListen = x\nlisten = y\nB = 2")
        .running(|d| assert_eq!(d.unset("LISTEN"), 2))
        .produces("A = 1\nB = 2");
    given("A = 1\r\nB = 2")
        .running(|d| assert_eq!(d.unset("b"), 1))
        .produces("A = 1");
    given("A = 1\n")
        .running(|d| assert_eq!(d.unset("b"), 0))
        .produces("A = 1\n");
}

#[test]
fn hostile_values_are_quoted_so_they_read_back_exactly() {
    let megabyte = "p".repeat(1 << 20);
    let hostile = [
        "line1\nline2",
        "cr\r\nlf",
        "quote\" and 'single'",
        "# not a comment",
        "trailing backslash \\",
        "\\u0041 is not an escape here",
        " leading and trailing ",
        "true",
        "8756",
        "[\"not\", \"an array\"]",
        "[]",
        "tab\there",
        "bell\u{7}",
        "\u{85}\u{2028}é😀",
        "postgres://u:p#w\"d@h/db?x=1#frag",
        "",
        &megabyte,
    ];
    for value in hostile {
        let mut doc = Document::parse("# conf\nDatabaseURL = old # keep\nOther = 1\n");
        doc.set("DatabaseURL", value).unwrap();
        let bytes = doc.to_bytes();
        // Still three lines: nothing a value holds can start a new line.
        assert_eq!(
            bytes.iter().filter(|&&b| b == b'\n').count(),
            3,
            "{value:?}"
        );
        let reread = Document::parse(&bytes);
        assert!(reread.parse_errors().is_empty(), "{value:?}");
        assert_eq!(reread.get("databaseurl"), Some(&Value::from(value)));
        assert_eq!(
            reread.entry("databaseurl").unwrap().comment(),
            Some("# keep")
        );
        assert_eq!(reread.get("Other"), Some(&Value::Integer(1)));
    }
}

#[test]
fn nul_is_refused_and_changes_nothing() {
    let mut doc = Document::parse("DatabaseURL = old\n");
    assert_eq!(
        doc.set("DatabaseURL", "a\0b"),
        Err(EditError::Nul {
            key: "DatabaseURL".into()
        })
    );
    assert!(doc
        .set("Arr", vec!["ok".to_owned(), "\0".to_owned()])
        .is_err());
    assert_eq!(doc.to_bytes(), b"DatabaseURL = old\n");
    assert!(DatabaseUrl::new("a\0b").is_err());
    assert!(DatabaseUrl::new("").is_err());
}

#[test]
fn bad_keys_are_refused() {
    let mut doc = Document::new();
    for key in ["", "a b", "a=b", "#a", "1a", "a\n", "é"] {
        assert_eq!(doc.set(key, 1), Err(EditError::InvalidKey(key.into())));
    }
    assert!(doc.to_bytes().is_empty());
}

#[test]
fn duplicate_key_refuses_set_naming_both_lines() {
    let mut doc = Document::parse("Listen = a\n\nLISTEN = b\n");
    let err = doc.set_listen(Listen::default()).unwrap_err();
    assert_eq!(
        err,
        EditError::DuplicateKey {
            key: "Listen".into(),
            first_line: 1,
            second_line: 3
        }
    );
    assert!(err.to_string().contains("lines 1 and 3"));
    assert_eq!(doc.to_bytes(), b"Listen = a\n\nLISTEN = b\n");
}

#[test]
fn one_megabyte_line_parses() {
    let line = format!("Key = \"{}\" # end\n", "x".repeat(1 << 20));
    let doc = Document::parse(&line);
    assert_eq!(doc.to_bytes(), line.as_bytes());
    assert_eq!(
        doc.get("key").and_then(Value::as_str).map(str::len),
        Some(1 << 20)
    );
}
