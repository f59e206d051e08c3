//! pghba: parse -> edit -> print -> parse stays consistent: the edited
//! document reparses to the same lines, and bytes outside the edit are kept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pghba::{HbaDocument, PgVersion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let version = PgVersion::ALL[data[0] as usize % PgVersion::ALL.len()];
    let op = data[1] % 3;
    let split = (data[2] as usize).min(data.len() - 3);
    let (new_line, text) = data[3..].split_at(split);
    let mut doc = HbaDocument::parse_for(text, version);
    let before: Vec<Vec<u8>> = doc.lines().iter().map(|l| l.raw().to_vec()).collect();
    let n = before.len();
    let index = if n == 0 { 0 } else { data[1] as usize % (n + 1) };
    let edited = match op {
        0 => doc.insert_line(index, new_line).map(|()| Some(index)),
        1 if index < n => doc.remove_line(index).map(|_| None),
        2 if index < n => doc.replace_line(index, new_line).map(|()| Some(index)),
        _ => return,
    };
    let Ok(changed) = edited else {
        // a failed edit changes nothing
        let after: Vec<Vec<u8>> = doc.lines().iter().map(|l| l.raw().to_vec()).collect();
        assert_eq!(after, before);
        return;
    };
    let printed = doc.to_bytes();
    let reparsed = HbaDocument::parse_for(&printed, version);
    assert_eq!(reparsed.to_bytes(), printed);
    assert_eq!(
        reparsed.lines().len(),
        doc.lines().len(),
        "an edit must not merge or split lines"
    );
    for (a, b) in reparsed.lines().iter().zip(doc.lines()) {
        assert_eq!(a.kind(), b.kind());
        assert_eq!(a.raw(), b.raw());
    }
    // lines before the edit are untouched (the one just before may only
    // have gained a line terminator)
    let keep = changed.unwrap_or(index).saturating_sub(1);
    for i in 0..keep.min(before.len()) {
        assert_eq!(doc.lines()[i].raw(), &before[i][..]);
    }
});
