//! A conservative syntax check of PostgreSQL's advanced regular expressions
//! (the `/...` tokens of 16+). It reports only errors it is sure the
//! server's `pg_regcomp()` reports too, with `pg_regerror()`'s wording;
//! anything subtler is accepted.

/// The server's message for a pattern it cannot compile, if this check
/// finds one.
pub fn regex_error(pattern: &[u8]) -> Option<&'static str> {
    let mut depth: usize = 0;
    let mut i = 0;
    // Can the next quantifier apply to something?
    let mut operand = false;
    // Was the previous item a quantifier (a second one is an error unless
    // it is the non-greedy `?`)?
    let mut after_quantifier = false;
    // ***= : the rest is a literal string
    if pattern.starts_with(b"***=") {
        return None;
    }
    while i < pattern.len() {
        let c = pattern[i];
        match c {
            b'\\' => {
                if i + 1 >= pattern.len() {
                    return Some("invalid escape \\ sequence");
                }
                i += 2;
                operand = true;
                after_quantifier = false;
                continue;
            }
            b'[' => {
                // find the closing bracket: a ']' right after '[' or '[^' is literal
                let mut j = i + 1;
                if j < pattern.len() && pattern[j] == b'^' {
                    j += 1;
                }
                if j < pattern.len() && pattern[j] == b']' {
                    j += 1;
                }
                let mut closed = false;
                while j < pattern.len() {
                    if pattern[j] == b'['
                        && j + 1 < pattern.len()
                        && matches!(pattern[j + 1], b':' | b'.' | b'=')
                    {
                        let kind = pattern[j + 1];
                        let mut k = j + 2;
                        let mut found = false;
                        while k + 1 < pattern.len() {
                            if pattern[k] == kind && pattern[k + 1] == b']' {
                                found = true;
                                break;
                            }
                            k += 1;
                        }
                        if !found {
                            return Some("brackets [] not balanced");
                        }
                        j = k + 2;
                        continue;
                    }
                    if pattern[j] == b']' {
                        closed = true;
                        break;
                    }
                    j += 1;
                }
                if !closed {
                    return Some("brackets [] not balanced");
                }
                i = j + 1;
                operand = true;
                after_quantifier = false;
                continue;
            }
            b'(' => {
                depth += 1;
                // (?: (?= (?! and friends
                if i + 1 < pattern.len() && pattern[i + 1] == b'?' {
                    i += 1;
                }
                operand = false;
                after_quantifier = false;
            }
            b')' => {
                if depth == 0 {
                    return Some("parentheses () not balanced");
                }
                depth -= 1;
                operand = true;
                after_quantifier = false;
            }
            b'|' => {
                operand = false;
                after_quantifier = false;
            }
            b'*' | b'+' | b'?' => {
                if after_quantifier {
                    if c != b'?' {
                        return Some("quantifier operand invalid");
                    }
                    after_quantifier = false;
                    operand = false;
                } else {
                    if !operand {
                        return Some("quantifier operand invalid");
                    }
                    after_quantifier = true;
                    operand = false;
                }
            }
            b'^' | b'$' => {
                operand = false;
                after_quantifier = false;
            }
            _ => {
                operand = true;
                after_quantifier = false;
            }
        }
        i += 1;
    }
    if depth != 0 {
        return Some("parentheses () not balanced");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_patterns() {
        for p in [
            "^db[0-9]+$",
            "a|b",
            "(?:x)*",
            "[]a]",
            "[[:alpha:]]+",
            "a*?",
            "\\d+",
            ".*",
        ] {
            assert_eq!(regex_error(p.as_bytes()), None, "{p}");
        }
    }

    #[test]
    fn rejects_what_the_server_rejects() {
        assert_eq!(regex_error(b"(a"), Some("parentheses () not balanced"));
        assert_eq!(regex_error(b"a)"), Some("parentheses () not balanced"));
        assert_eq!(regex_error(b"[a"), Some("brackets [] not balanced"));
        assert_eq!(regex_error(b"*a"), Some("quantifier operand invalid"));
        assert_eq!(regex_error(b"a**"), Some("quantifier operand invalid"));
        assert_eq!(regex_error(b"a\\"), Some("invalid escape \\ sequence"));
    }
}
