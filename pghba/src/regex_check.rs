//! A conservative syntax check of PostgreSQL's advanced regular expressions
//! (the `/...` tokens of 16+, compiled with `REG_ADVANCED`). It reports only
//! errors it is sure the server's `pg_regcomp()` reports too, with
//! `pg_regerror()`'s wording, in the order the compiler meets them; anything
//! subtler is accepted.
//!
//! Back references follow `regc_lex.c` and `regcomp.c`: `\1`..`\9` is always
//! a back reference, a longer digit run only when its value does not exceed
//! the number of capturing groups opened so far (else it is an octal escape,
//! and `\8`/`\9` cannot start one: "invalid escape \ sequence"). A back
//! reference is valid only when its group has already been closed (so `\1(a)`
//! and `(a\1)` are errors, `(a)\1` is not; a `{0}` bound on the group
//! does not change that), and when it is not inside a lookahead or
//! lookbehind constraint;
//! groups inside constraints and `(?:...)` do not capture. Inside a bracket
//! expression a back reference is an invalid escape.

const BACKREF: &str = "invalid backreference number";
const ESCAPE: &str = "invalid escape \\ sequence";
const PARENS: &str = "parentheses () not balanced";
const BRACKETS: &str = "brackets [] not balanced";
const QUANTIFIER: &str = "quantifier operand invalid";

/// An open parenthesis.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// A capturing group and its number.
    Capture(usize),
    /// `(?:...)`, or any group inside a constraint.
    Plain,
    /// A lookahead or lookbehind constraint.
    Constraint,
}

/// What a backslash followed by a digit `1`-`9` is (`lexescape()`).
enum DigitEscape {
    /// A back reference to this group; the escape is this many bytes long.
    Backref(usize, usize),
    /// An octal character escape this many bytes long.
    Octal(usize),
}

/// Reads the escape at `s` (just after the backslash, `s[0]` in `1..=9`)
/// given the number of capturing groups opened so far.
fn digit_escape(s: &[u8], groups_opened: usize) -> Result<DigitEscape, &'static str> {
    // lexdigits(v, 10, 1, 255) on the server's unsigned 32-bit chr
    let mut value: u32 = 0;
    let mut len = 0;
    while len < 255 && len < s.len() && s[len].is_ascii_digit() {
        value = value
            .wrapping_mul(10)
            .wrapping_add(u32::from(s[len] - b'0'));
        len += 1;
    }
    let as_int = value as i32;
    if len == 1 || (as_int > 0 && (as_int as i64) <= groups_opened as i64) {
        return Ok(DigitEscape::Backref(value as usize, len));
    }
    // not a back reference after all: an octal escape of 1 to 3 digits
    let mut value: u32 = 0;
    let mut len = 0;
    while len < 3 && len < s.len() && (b'0'..=b'7').contains(&s[len]) {
        value = value * 8 + u32::from(s[len] - b'0');
        len += 1;
    }
    if len == 0 {
        return Err(ESCAPE);
    }
    if value > 0xff {
        len -= 1;
    }
    Ok(DigitEscape::Octal(len))
}

/// The flavour an embedded-options prefix `(?...)` leaves the pattern in:
/// `Some(bytes used)` for a plain ARE prefix, `None` when the options switch
/// to another flavour or syntax (basic, extended, literal, expanded) or are
/// not valid options at all: this check then claims nothing.
fn are_prefix(s: &[u8]) -> Option<usize> {
    if !(s.len() >= 3 && s[0] == b'(' && s[1] == b'?' && s[2].is_ascii_alphabetic()) {
        return Some(0);
    }
    let mut j = 2;
    while j < s.len() && s[j].is_ascii_alphabetic() {
        match s[j] {
            b'c' | b'i' | b'm' | b'n' | b'p' | b's' | b't' | b'w' => {}
            _ => return None,
        }
        j += 1;
    }
    if j < s.len() && s[j] == b')' {
        Some(j + 1)
    } else {
        None
    }
}

/// The server's message for a pattern it cannot compile, if this check
/// finds one.
pub fn regex_error(pattern: &[u8]) -> Option<&'static str> {
    // ***= : the rest is a literal string
    if pattern.starts_with(b"***=") {
        return None;
    }
    let mut i = if pattern.starts_with(b"***:") { 4 } else { 0 };
    i += are_prefix(&pattern[i..])?;
    let mut groups: Vec<Group> = Vec::new();
    let mut constraints = 0usize;
    let mut groups_opened = 0usize;
    // closed[n]: capturing group n has been closed
    let mut closed: Vec<bool> = vec![false];
    // Can the next quantifier apply to something?
    let mut operand = false;
    // Was the previous item a quantifier (a second one is an error unless
    // it is the non-greedy `?`)?
    let mut after_quantifier = false;
    while i < pattern.len() {
        let c = pattern[i];
        match c {
            b'\\' => {
                if i + 1 >= pattern.len() {
                    return Some(ESCAPE);
                }
                if (b'1'..=b'9').contains(&pattern[i + 1]) {
                    match digit_escape(&pattern[i + 1..], groups_opened) {
                        Err(e) => return Some(e),
                        Ok(DigitEscape::Backref(n, len)) => {
                            if constraints > 0 || !closed.get(n).copied().unwrap_or(false) {
                                return Some(BACKREF);
                            }
                            i += 1 + len;
                        }
                        Ok(DigitEscape::Octal(len)) => i += 1 + len,
                    }
                } else {
                    i += 2;
                }
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
                let mut closed_bracket = false;
                while j < pattern.len() {
                    if pattern[j] == b'\\' {
                        // escapes work inside brackets in AREs
                        if j + 1 >= pattern.len() {
                            return Some(ESCAPE);
                        }
                        if (b'1'..=b'9').contains(&pattern[j + 1]) {
                            match digit_escape(&pattern[j + 1..], groups_opened) {
                                Err(e) => return Some(e),
                                Ok(DigitEscape::Backref(..)) => return Some(ESCAPE),
                                Ok(DigitEscape::Octal(len)) => j += 1 + len,
                            }
                        } else {
                            j += 2;
                        }
                        continue;
                    }
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
                            return Some(BRACKETS);
                        }
                        j = k + 2;
                        continue;
                    }
                    if pattern[j] == b']' {
                        closed_bracket = true;
                        break;
                    }
                    j += 1;
                }
                if !closed_bracket {
                    return Some(BRACKETS);
                }
                i = j + 1;
                operand = true;
                after_quantifier = false;
                continue;
            }
            b'(' => {
                if i + 1 < pattern.len() && pattern[i + 1] == b'?' {
                    match pattern.get(i + 2) {
                        Some(b':') => groups.push(Group::Plain),
                        Some(b'=' | b'!') => {
                            groups.push(Group::Constraint);
                            constraints += 1;
                        }
                        Some(b'<') if matches!(pattern.get(i + 3), Some(b'=' | b'!')) => {
                            groups.push(Group::Constraint);
                            constraints += 1;
                            i += 1;
                        }
                        Some(b'#') => {
                            // a comment, up to the next ')': invisible
                            let end = pattern[i..].iter().position(|&b| b == b')');
                            i = end.map_or(pattern.len(), |e| i + e + 1);
                            continue;
                        }
                        _ => return Some(QUANTIFIER),
                    }
                    i += 3;
                    operand = false;
                    after_quantifier = false;
                    continue;
                }
                if constraints > 0 {
                    groups.push(Group::Plain);
                } else {
                    groups_opened += 1;
                    groups.push(Group::Capture(groups_opened));
                }
                operand = false;
                after_quantifier = false;
            }
            b')' => {
                match groups.pop() {
                    None => return Some(PARENS),
                    Some(Group::Capture(n)) => {
                        if closed.len() <= n {
                            closed.resize(n + 1, false);
                        }
                        closed[n] = true;
                    }
                    Some(Group::Constraint) => constraints -= 1,
                    Some(Group::Plain) => {}
                }
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
                        return Some(QUANTIFIER);
                    }
                    after_quantifier = false;
                    operand = false;
                } else {
                    if !operand {
                        return Some(QUANTIFIER);
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
    if !groups.is_empty() {
        return Some(PARENS);
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
            "***:^a$",
            "(?i)^App_",
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

    /// Regression (known-lint-bugs `regex-backref-bad.conf`): a back
    /// reference to a group that does not exist (yet) is "invalid
    /// backreference number", as `pg_regcomp()` says.
    #[test]
    fn backrefs_need_a_closed_group() {
        for bad in [
            "\\2",
            "\\1",
            "\\1(a)",
            "(a\\1)",
            "(a)\\2",
            "(?:a)\\1",
            "(a)(?=\\1)",
            "(a)(?!x\\1)",
            "(a)(?<=\\1)",
            "(?=(a))\\1",
            "\\9",
            "(a)\\1\\2(b)",
        ] {
            assert_eq!(regex_error(bad.as_bytes()), Some(BACKREF), "{bad}");
        }
        for good in [
            "(a)\\1",
            "((a)\\2)",
            "(a)|\\1",
            "(a)(b)\\2\\1",
            "(a){1}\\1",
            "(a){0}\\1",
            "(a){0,0}\\1",
            "(a){0,1}\\1",
            "(a)*\\1",
            "(a)\\1+",
            "(?:(a))\\1",
            "(a)(?#c(x)\\1",
            "***=\\2",
            "(?e)\\2",
            "(?b)\\(a\\)\\1",
        ] {
            assert_eq!(regex_error(good.as_bytes()), None, "{good}");
        }
    }

    /// Regression (known-lint-bugs `regex-backref-bad.conf`): longer digit
    /// runs are back references only up to the number of groups opened, else
    /// octal escapes; in brackets a back reference is an invalid escape.
    #[test]
    fn backref_digits_and_brackets() {
        // two or more digits, fewer groups: octal \10 = backspace, fine
        assert_eq!(regex_error(b"\\10"), None);
        assert_eq!(regex_error(b"(a)\\12"), None);
        // 8 and 9 cannot start an octal escape
        assert_eq!(regex_error(b"\\99"), Some(ESCAPE));
        assert_eq!(regex_error(b"\\81"), Some(ESCAPE));
        // ten groups opened: \10 is a back reference
        let ten = "(a)".repeat(10);
        assert_eq!(regex_error(format!("{ten}\\10").as_bytes()), None);
        let nine_and_open = format!("{}(a\\10)", "(a)".repeat(9));
        assert_eq!(regex_error(nine_and_open.as_bytes()), Some(BACKREF));
        // brackets
        assert_eq!(regex_error(b"(a)[\\1]"), Some(ESCAPE));
        assert_eq!(regex_error(b"[\\10]"), None);
        assert_eq!(regex_error(b"[\\]]"), None);
        assert_eq!(regex_error(b"[a\\"), Some(ESCAPE));
        // the first error in the pattern wins
        assert_eq!(regex_error(b"\\2(a"), Some(BACKREF));
        assert_eq!(regex_error(b")\\2"), Some(PARENS));
        // embedded options only at the start; other flavours are not checked
        assert_eq!(regex_error(b"a(?i)b"), Some(QUANTIFIER));
        assert_eq!(regex_error(b"(?x) a \\2"), None);
        assert_eq!(regex_error(b"(a)(?<!\\1)"), Some(BACKREF));
    }
}
