//! Replays the fuzz target's checks over the committed fuzz corpus
//! `fuzz/corpus/knocknoc_conf_roundtrip/`: inputs that reached
//! new code while fuzzing `fuzz/fuzz_targets/knocknoc_conf_roundtrip.rs`
//! (libFuzzer with coverage), plus hand-written seeds (`typical`,
//! `crlf_no_final_newline`, `invalid_lines`). `cargo xtask test` also
//! replays it through the fuzz target itself (libFuzzer `-runs=0`).

use std::path::Path;

#[path = "support/roundtrip_invariants.rs"]
mod roundtrip_invariants;

#[test]
fn fuzz_corpus_inputs_keep_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/knocknoc_conf_roundtrip");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| roundtrip_invariants::check(&data));
        assert!(result.is_ok(), "{} fails", path.display());
        count += 1;
    }
    assert!(count >= 3, "corpus missing from {}", dir.display());
}
