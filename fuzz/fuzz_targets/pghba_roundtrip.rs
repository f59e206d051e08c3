//! pghba: parse -> print is the identity for any bytes and every version's
//! grammar, and checking (validation, lint rows) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pghba::{lint_bytes, HbaDocument, NoFiles, PgVersion, ValidateOptions};

fuzz_target!(|data: &[u8]| {
    let (selector, text) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, data),
    };
    let version = PgVersion::ALL[selector as usize % PgVersion::ALL.len()];
    let doc = HbaDocument::parse_for(text, version);
    assert_eq!(doc.to_bytes(), text, "parse -> print must be the identity");
    // printing then parsing again gives the same document
    assert_eq!(HbaDocument::parse_for(&doc.to_bytes(), version), doc);
    let mut opts = ValidateOptions::for_version(version);
    opts.build.ldap = selector & 0x40 == 0;
    opts.build.gssapi = selector & 0x80 == 0;
    let report = lint_bytes("/fuzz/pg_hba.conf", text, &mut NoFiles, &opts);
    // every error row is a problem, and a loadable file has no error rows
    if report.verdict.loads {
        assert!(report.rows.iter().all(|r| r.error.is_none() || r.conn_type.is_some()));
    }
    for row in &report.rows {
        assert_eq!(row.rule_number.is_none(), row.error.is_some());
    }
});
