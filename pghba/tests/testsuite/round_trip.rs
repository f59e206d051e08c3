//! Property tests: parsing then printing gives back the input, for any bytes
//! and for generated, valid-looking files, with every version's grammar.

use pghba::{HbaDocument, PgVersion};
use proptest::prelude::*;

fn version() -> impl Strategy<Value = PgVersion> {
    prop::sample::select(PgVersion::ALL.to_vec())
}

/// Bytes biased towards the characters the tokenizer cares about.
fn hba_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b" \t\r\n,#\"\\@+/=a0.:".to_vec()),
            1 => any::<u8>(),
        ],
        0..400,
    )
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("all".to_string()),
        Just("\"all\"".to_string()),
        Just("sameuser".to_string()),
        Just("+admins".to_string()),
        Just("/^db.*$".to_string()),
        "[a-z]{1,8}",
        "\"[a-z ,#]{0,8}\"",
    ]
}

fn record() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["local", "host", "hostssl", "hostnossl"]),
        prop::collection::vec(word(), 1..3),
        prop::collection::vec(word(), 1..3),
        prop::sample::select(vec![
            "127.0.0.1/32",
            "::1/128",
            "10.0.0.0 255.0.0.0",
            ".example.com",
            "samenet",
            "all",
        ]),
        prop::sample::select(vec!["trust", "md5", "scram-sha-256", "reject", "cert"]),
        prop::sample::select(vec![" ", "\t", "   "]),
        prop::option::of("[ -~]{0,20}"),
        prop::sample::select(vec!["\n", "\r\n", " \\\n"]),
    )
        .prop_map(|(t, db, user, addr, method, sep, comment, eol)| {
            let addr = if t == "local" { "" } else { addr };
            let mut line = [
                t.to_string(),
                db.join(","),
                user.join(", "),
                addr.to_string(),
                method.to_string(),
            ]
            .join(sep);
            if let Some(c) = comment {
                line.push_str(" #");
                line.push_str(&c);
            }
            line.push_str(eol);
            line
        })
}

proptest! {
    #[test]
    fn any_bytes_round_trip(bytes in hba_bytes(), v in version()) {
        let doc = HbaDocument::parse_for(&bytes, v);
        prop_assert_eq!(doc.to_bytes(), bytes);
    }

    #[test]
    fn arbitrary_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..300), v in version()) {
        prop_assert_eq!(HbaDocument::parse_for(&bytes, v).to_bytes(), bytes);
    }

    #[test]
    fn generated_files_round_trip_and_reparse_identically(lines in prop::collection::vec(record(), 0..20), v in version()) {
        let text = lines.concat();
        let doc = HbaDocument::parse_for(text.as_bytes(), v);
        let printed = doc.to_bytes();
        prop_assert_eq!(&printed, text.as_bytes());
        prop_assert_eq!(HbaDocument::parse_for(&printed, v), doc);
    }
}
