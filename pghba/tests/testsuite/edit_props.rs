//! Property tests: edits change only the lines they name (the line before an
//! insertion may only gain a missing line terminator), and managed blocks
//! can be written, rewritten and removed without touching anything else.

use pghba::{HbaDocument, PgVersion};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("local all all peer".to_string()),
        Just("host all all 127.0.0.1/32 scram-sha-256".to_string()),
        Just("# comment".to_string()),
        Just("".to_string()),
        Just("   \t".to_string()),
        "[a-z \t#\",]{0,30}",
    ]
}

fn document() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((line(), prop::sample::select(vec!["\n", "\r\n"])), 0..12),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline)| {
            let mut s: String = lines.iter().map(|(l, e)| format!("{l}{e}")).collect();
            if !final_newline && s.ends_with('\n') {
                s.pop();
                if s.ends_with('\r') {
                    s.pop();
                }
            }
            s
        })
}

fn raw_lines(doc: &HbaDocument) -> Vec<Vec<u8>> {
    doc.lines().iter().map(|l| l.raw().to_vec()).collect()
}

proptest! {
    #[test]
    fn insert_changes_only_the_new_line(text in document(), new in line(), at in any::<prop::sample::Index>()) {
        let mut doc = HbaDocument::parse_for(text.as_bytes(), PgVersion::V16);
        let before = raw_lines(&doc);
        let index = at.index(before.len() + 1);
        doc.insert_line(index, new.as_bytes()).unwrap();
        let after = raw_lines(&doc);
        prop_assert_eq!(after.len(), before.len() + 1);
        for (i, old) in before.iter().enumerate() {
            let j = if i < index { i } else { i + 1 };
            if i + 1 == index {
                // may only have gained its line terminator
                prop_assert!(after[j].starts_with(old));
            } else {
                prop_assert_eq!(&after[j], old);
            }
        }
        let printed = doc.to_bytes();
        let reparsed = HbaDocument::parse_for(&printed, PgVersion::V16);
        prop_assert_eq!(raw_lines(&reparsed), after);
    }

    #[test]
    fn remove_and_replace_change_only_their_line(text in document(), new in line(), at in any::<prop::sample::Index>()) {
        let mut doc = HbaDocument::parse_for(text.as_bytes(), PgVersion::V16);
        let before = raw_lines(&doc);
        prop_assume!(!before.is_empty());
        let index = at.index(before.len());
        let mut replaced = doc.clone();
        replaced.replace_line(index, new.as_bytes()).unwrap();
        let after = raw_lines(&replaced);
        prop_assert_eq!(after.len(), before.len());
        for i in (0..before.len()).filter(|&i| i != index) {
            prop_assert_eq!(&after[i], &before[i]);
        }
        doc.remove_line(index).unwrap();
        let mut expected = before.clone();
        expected.remove(index);
        prop_assert_eq!(raw_lines(&doc), expected);
    }

    #[test]
    fn managed_block_round_trip(text in document(), rules in prop::collection::vec(line(), 0..4), at in any::<prop::sample::Index>()) {
        const B: &str = "# BEGIN test block";
        const E: &str = "# END test block";
        let mut doc = HbaDocument::parse_for(text.as_bytes(), PgVersion::V16);
        let original = doc.to_bytes();
        let index = at.index(doc.lines().len() + 1);
        let bodies: Vec<Vec<u8>> = rules.iter().map(|r| r.clone().into_bytes()).collect();
        doc.set_block(B, E, &bodies, index).unwrap();
        let range = doc.find_block(B, E).unwrap().unwrap();
        prop_assert_eq!(range.inner().len(), bodies.len());
        let once = doc.to_bytes();
        doc.set_block(B, E, &bodies, 0).unwrap();
        prop_assert_eq!(doc.to_bytes(), once.clone());
        doc.remove_block(B, E).unwrap();
        // removing gives back the original, except a final line that had
        // no terminator and got one when the block went after it
        let back = doc.to_bytes();
        prop_assert!(back == original || (back.starts_with(&original) && back.len() - original.len() <= 2));
    }
}
