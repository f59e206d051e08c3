//! The invariants of knocknoc.conf documents on any input, shared by the
//! fuzz target `fuzz/fuzz_targets/knocknoc_conf_roundtrip.rs` and the
//! `corpus` test that replays its corpus (both include this file by path).

use knocknoc_conf::{Document, Value};

/// Any bytes print back exactly, print -> parse -> print is stable, the
/// views never panic, and any string set as `DatabaseURL` reads back
/// exactly, changing that line only (or appending one).
pub fn check(data: &[u8]) {
    let doc = Document::parse(data);
    assert_eq!(doc.to_bytes(), data);
    assert_eq!(Document::parse(doc.to_bytes()), doc);
    let _ = doc.settings();
    let _ = doc.parse_errors();
    let _ = format!("{doc:?}{}", doc.redacted());

    // Use the input as a hostile value too: set it, read it back.
    let value = String::from_utf8_lossy(data).replace('\0', "");
    let mut edited = doc.clone();
    if edited.set("DatabaseURL", value.as_str()).is_ok() {
        let again = Document::parse(edited.to_bytes());
        assert_eq!(again.get("databaseurl"), Some(&Value::from(value.as_str())));
        // Only the DatabaseURL line changed, or one line was appended.
        let existed = doc.lines().iter().any(|l| {
            l.key()
                .is_some_and(|k| k.eq_ignore_ascii_case("DatabaseURL"))
        });
        assert_eq!(
            again.lines().len(),
            doc.lines().len() + usize::from(!existed)
        );
    }
}
