//! knocknoc.conf: any bytes print back exactly, print -> parse -> print is
//! stable, the views never panic, and any string set reads back exactly
//! (`knocknoc-conf/tests/support/roundtrip_invariants.rs`).
//!
//! Seeds: `../knocknoc-conf/tests/corpus` (replayed by that crate's
//! `corpus` test in the ordinary test run, so no cargo-fuzz is needed there).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../knocknoc-conf/tests/support/roundtrip_invariants.rs"]
mod roundtrip_invariants;

fuzz_target!(|data: &[u8]| roundtrip_invariants::check(data));
