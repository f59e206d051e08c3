//! A unified diff for `--dry-run`. Edits change one contiguous region (the
//! managed block), so one hunk from the first to the last differing line,
//! with three lines of context, is exact.

/// Unified diff of `old` and `new` for the file `path` (empty when equal).
pub fn unified(path: &str, old: &[u8], new: &[u8]) -> String {
    if old == new {
        return String::new();
    }
    let old_text = String::from_utf8_lossy(old);
    let new_text = String::from_utf8_lossy(new);
    let a: Vec<&str> = old_text.split_inclusive('\n').collect();
    let b: Vec<&str> = new_text.split_inclusive('\n').collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let start = prefix.saturating_sub(3);
    let a_end = (a.len() - suffix + 3).min(a.len());
    let b_end = (b.len() - suffix + 3).min(b.len());
    let mut out = format!("--- {path}\n+++ {path} (new)\n");
    let range = |s: usize, e: usize| {
        if e == s {
            format!("{},0", s)
        } else {
            format!("{},{}", s + 1, e - s)
        }
    };
    out.push_str(&format!(
        "@@ -{} +{} @@\n",
        range(start, a_end),
        range(start, b_end)
    ));
    let line = |out: &mut String, mark: char, l: &str| {
        out.push(mark);
        out.push_str(l);
        if !l.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    };
    for l in &a[start..prefix] {
        line(&mut out, ' ', l);
    }
    for l in &a[prefix..a.len() - suffix] {
        line(&mut out, '-', l);
    }
    for l in &b[prefix..b.len() - suffix] {
        line(&mut out, '+', l);
    }
    for l in &a[a.len() - suffix..a_end] {
        line(&mut out, ' ', l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn one_hunk_with_context() {
        let d = unified("f", b"a\nb\nc\nd\ne\n", b"a\nb\nc\nX\nd\ne\n");
        assert_eq!(
            d,
            "--- f\n+++ f (new)\n@@ -1,5 +1,6 @@\n a\n b\n c\n+X\n d\n e\n"
        );
        assert_eq!(unified("f", b"a\n", b"a\n"), "");
    }
}
