//! Replays the fuzz target's checks over the committed fuzz corpus
//! `fuzz/corpus/knocknoc_conf_roundtrip/`: inputs that reached
//! new code while fuzzing `fuzz/fuzz_targets/knocknoc_conf_roundtrip.rs`
//! (libFuzzer with coverage), plus hand-written seeds (`typical`,
//! `crlf_no_final_newline`, `invalid_lines`). `cargo xtask test` also
//! replays it through the fuzz target itself (libFuzzer `-runs=0`).

use std::path::Path;

use knocknoc_conf::{Document, Value};

/// The fuzz target's assertions for one input.
fn check(data: &[u8]) {
    let doc = Document::parse(data);
    assert_eq!(doc.to_bytes(), data);
    assert_eq!(Document::parse(doc.to_bytes()), doc);
    let _ = doc.settings();
    let _ = format!("{doc:?}{}", doc.redacted());

    let value = String::from_utf8_lossy(data).replace('\0', "");
    let mut edited = doc.clone();
    if edited.set("DatabaseURL", value.as_str()).is_ok() {
        let again = Document::parse(edited.to_bytes());
        assert_eq!(again.get("databaseurl"), Some(&Value::from(value.as_str())));
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

#[test]
fn fuzz_corpus_inputs_keep_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/knocknoc_conf_roundtrip");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} fails", path.display());
        count += 1;
    }
    assert!(count >= 3, "corpus missing from {}", dir.display());
}
