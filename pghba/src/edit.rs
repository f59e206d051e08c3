//! Editing helpers on top of [`HbaDocument`]: managed blocks between marker
//! comments, quoting of names, and new records laid out like their
//! neighbours.
//!
//! Every edit goes through [`HbaDocument::insert_line`],
//! [`HbaDocument::replace_line`] and [`HbaDocument::remove_line`], so no
//! byte outside the lines an edit names ever changes.

use crate::document::{EditError, HbaDocument, Line, LineKind};

/// Where a managed block is: the line indices of its two marker lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRange {
    /// Index of the begin marker line.
    pub begin: usize,
    /// Index of the end marker line (> `begin`).
    pub end: usize,
}

impl BlockRange {
    /// Indices of the lines strictly between the markers.
    pub fn inner(&self) -> std::ops::Range<usize> {
        self.begin + 1..self.end
    }
}

/// The markers of a managed block are not where they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A begin marker without an end marker after it (or the reverse).
    #[error("unbalanced managed block markers (line {line})")]
    Unbalanced {
        /// Line number of the marker without a partner.
        line: u32,
    },
    /// More than one block with the same markers.
    #[error("managed block appears more than once (second begins at line {line})")]
    Duplicate {
        /// Line number of the second begin marker.
        line: u32,
    },
    /// An edit inside the block failed.
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// A token that needs no quotes to mean itself: no blank, comma, `#` or
/// quote, and not a keyword or `+`/`@`/`/` form the server would
/// interpret.
fn plain_ok(value: &str, keywords: &[&str]) -> bool {
    !value.is_empty()
        && !value
            .bytes()
            .any(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'#' | b'"' | b'\\'))
        && !value.starts_with(['+', '@', '/'])
        && !keywords.contains(&value)
}

/// Write a database or user name so the server reads it back as exactly
/// that literal name (quoted when needed, `"` doubled). Returns `None` for
/// names the file format cannot hold (line breaks, NUL).
pub fn quote_name(value: &str) -> Option<String> {
    if value.contains(['\n', '\r', '\0']) {
        return None;
    }
    const KEYWORDS: [&str; 8] = [
        "all",
        "sameuser",
        "samerole",
        "samegroup",
        "replication",
        "samehost",
        "samenet",
        "include",
    ];
    if plain_ok(value, &KEYWORDS) {
        Some(value.to_string())
    } else {
        Some(format!("\"{}\"", value.replace('"', "\"\"")))
    }
}

/// Column roles of a record's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Role {
    Type,
    Database,
    User,
    Address,
    Mask,
    Method,
    Options,
}

fn roles_of(fields: &[String]) -> Vec<Role> {
    let mut roles = vec![Role::Type, Role::Database, Role::User];
    let local = fields.first().map(String::as_str) == Some("local");
    let mut i = 3;
    if !local && fields.len() > 3 {
        roles.push(Role::Address);
        let addr = &fields[3];
        let numeric = crate::address::parse_numeric_host(addr.as_bytes()).is_some();
        i = 4;
        if numeric && !addr.contains('/') && fields.len() > 5 {
            roles.push(Role::Mask);
            i = 5;
        }
    }
    if fields.len() > i {
        roles.push(Role::Method);
        i += 1;
    }
    while roles.len() < fields.len() {
        roles.push(Role::Options);
    }
    let _ = i;
    roles
}

/// Visual column (tabs to multiples of 8) of each byte offset's start.
fn visual_columns(content: &[u8], offsets: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut col = 0;
    let mut pos = 0;
    for &off in offsets {
        while pos < off && pos < content.len() {
            col = if content[pos] == b'\t' {
                (col / 8 + 1) * 8
            } else {
                col + 1
            };
            pos += 1;
        }
        out.push(col);
    }
    out
}

/// How neighbouring lines lay out their columns.
#[derive(Debug, Default)]
struct Layout {
    columns: Vec<(Role, usize)>,
    tabs: bool,
}

impl Layout {
    fn column(&self, role: Role) -> Option<usize> {
        self.columns
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, c)| *c)
    }

    fn learn_record(&mut self, line: &Line) {
        if line.line_count() != 1 {
            return;
        }
        let fields: Vec<String> = (0..line.field_count())
            .filter_map(|i| {
                line.field(i)
                    .map(|t| String::from_utf8_lossy(t[0].raw()).into_owned())
            })
            .collect();
        let roles = roles_of(&fields);
        let starts: Vec<usize> = (0..line.field_count())
            .filter_map(|i| line.field_span(i).map(|s| s.0))
            .collect();
        let cols = visual_columns(line.content(), &starts);
        // separators made of tabs only?
        let content = line.content();
        let mut all_tabs = starts.len() > 1;
        for i in 1..starts.len() {
            let prev_end = line.field_span(i - 1).map_or(0, |s| s.1);
            let gap = &content[prev_end..starts[i]];
            if gap.is_empty() || !gap.iter().all(|&c| c == b'\t') {
                all_tabs = false;
            }
        }
        if self.columns.is_empty() {
            self.tabs = all_tabs;
        }
        for (role, col) in roles.into_iter().zip(cols) {
            if self.column(role).is_none() {
                self.columns.push((role, col));
            }
        }
    }

    /// The sample file's header: `# TYPE  DATABASE  USER  ADDRESS  METHOD`.
    fn learn_header(&mut self, line: &Line) {
        let content = line.content();
        let names = [
            ("TYPE", Role::Type),
            ("DATABASE", Role::Database),
            ("USER", Role::User),
            ("ADDRESS", Role::Address),
            ("METHOD", Role::Method),
        ];
        let text = String::from_utf8_lossy(content);
        for (name, role) in names {
            if self.column(role).is_some() {
                continue;
            }
            if let Some(pos) = find_word(&text, name) {
                let col = visual_columns(content, &[pos])[0];
                self.columns.push((role, col));
            }
        }
    }
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before_ok = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        let after = at + word.len();
        let after_ok = after >= bytes.len() || !bytes[after].is_ascii_alphanumeric();
        if before_ok && after_ok {
            return Some(at);
        }
        from = after;
    }
    None
}

impl HbaDocument {
    /// Find the block between a begin and an end marker comment (compared
    /// with surrounding blanks ignored). `Ok(None)` when there is none.
    pub fn find_block(&self, begin: &str, end: &str) -> Result<Option<BlockRange>, BlockError> {
        let is = |l: &Line, marker: &str| {
            matches!(l.kind(), LineKind::Comment)
                && trim_blanks(l.content()) == marker.trim().as_bytes()
        };
        let mut found: Option<BlockRange> = None;
        let mut open: Option<usize> = None;
        for (i, l) in self.lines().iter().enumerate() {
            if is(l, begin) {
                if open.is_some() {
                    return Err(BlockError::Unbalanced {
                        line: l.line_number(),
                    });
                }
                if found.is_some() {
                    return Err(BlockError::Duplicate {
                        line: l.line_number(),
                    });
                }
                open = Some(i);
            } else if is(l, end) {
                let Some(b) = open.take() else {
                    return Err(BlockError::Unbalanced {
                        line: l.line_number(),
                    });
                };
                found = Some(BlockRange { begin: b, end: i });
            }
        }
        if let Some(b) = open {
            return Err(BlockError::Unbalanced {
                line: self.lines()[b].line_number(),
            });
        }
        Ok(found)
    }

    /// Set the content of a managed block to `lines`. An existing block
    /// keeps its markers and only the lines between them change; otherwise
    /// the block (markers included) is inserted before line `insert_at`.
    /// Returns the block's new range.
    pub fn set_block(
        &mut self,
        begin: &str,
        end: &str,
        lines: &[Vec<u8>],
        insert_at: usize,
    ) -> Result<BlockRange, BlockError> {
        let range = match self.find_block(begin, end)? {
            Some(r) => r,
            None => {
                let at = insert_at.min(self.lines().len());
                self.insert_line(at, begin.as_bytes())?;
                self.insert_line(at + 1, end.as_bytes())?;
                BlockRange {
                    begin: at,
                    end: at + 1,
                }
            }
        };
        let backup = self.clone();
        let result = (|| {
            let inner = range.inner();
            let old = inner.len();
            let mut i = 0;
            // replace line by line where lines exist, then insert or remove
            while i < old.min(lines.len()) {
                if self.lines()[range.begin + 1 + i].raw()
                    != lines_with_term(self, &lines[i]).as_slice()
                {
                    self.replace_line(range.begin + 1 + i, &lines[i])?;
                }
                i += 1;
            }
            for (k, l) in lines.iter().enumerate().skip(old) {
                self.insert_line(range.begin + 1 + k, l)?;
            }
            for _ in lines.len()..old {
                self.remove_line(range.begin + 1 + lines.len())?;
            }
            Ok::<_, EditError>(BlockRange {
                begin: range.begin,
                end: range.begin + 1 + lines.len(),
            })
        })();
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                *self = backup;
                Err(e.into())
            }
        }
    }

    /// Remove a managed block, markers included. Returns whether there was one.
    pub fn remove_block(&mut self, begin: &str, end: &str) -> Result<bool, BlockError> {
        let Some(r) = self.find_block(begin, end)? else {
            return Ok(false);
        };
        for _ in r.begin..=r.end {
            self.remove_line(r.begin)?;
        }
        Ok(true)
    }

    /// Lay out a new record (fields already written as tokens, see
    /// [`quote_name`]) like the records around line `near`: fields start at
    /// the same columns when the neighbours align them (the sample file's
    /// `# TYPE DATABASE ...` header counts), tab-separated when they use
    /// tabs, else separated by single spaces. `comment` goes after a space.
    pub fn format_record(&self, near: usize, fields: &[&str], comment: Option<&str>) -> Vec<u8> {
        let lines = self.lines();
        let mut layout = Layout::default();
        // nearest records first: up to 3 above, then up to 3 below
        let mut seen = 0;
        for l in lines[..near.min(lines.len())].iter().rev() {
            if *l.kind() == LineKind::Record {
                layout.learn_record(l);
                seen += 1;
                if seen == 3 {
                    break;
                }
            }
        }
        seen = 0;
        for l in lines.iter().skip(near) {
            if *l.kind() == LineKind::Record {
                layout.learn_record(l);
                seen += 1;
                if seen == 3 {
                    break;
                }
            }
        }
        if let Some(h) = lines.iter().find(|l| {
            *l.kind() == LineKind::Comment
                && find_word(&String::from_utf8_lossy(l.content()), "METHOD").is_some()
        }) {
            if layout.columns.is_empty() {
                layout.learn_header(h);
            }
        }
        let owned: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        let roles = roles_of(&owned);
        let mut out = String::new();
        let mut options_started = false;
        for (i, (f, role)) in fields.iter().zip(&roles).enumerate() {
            if i > 0 {
                let target = if *role == Role::Options && options_started {
                    None
                } else {
                    layout.column(*role)
                };
                if layout.tabs && target.is_some() {
                    out.push('\t');
                } else {
                    let col = out.chars().count();
                    match target {
                        Some(t) if t > col => out.push_str(&" ".repeat(t - col)),
                        _ => out.push(' '),
                    }
                }
            }
            if *role == Role::Options {
                options_started = true;
            }
            out.push_str(f);
        }
        if let Some(c) = comment {
            out.push_str(" # ");
            out.push_str(c.trim_start_matches('#').trim_start());
        }
        out.into_bytes()
    }
}

pub(crate) fn trim_blanks(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\r'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r'))
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn lines_with_term(doc: &HbaDocument, text: &[u8]) -> Vec<u8> {
    let mut v = text.to_vec();
    if !v.ends_with(b"\n") {
        v.extend_from_slice(doc.line_terminator());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "# BEGIN shopctl rules (managed by shopctl)";
    const END: &str = "# END shopctl rules";

    fn diff_lines(a: &[u8], b: &[u8]) -> (Vec<String>, Vec<String>) {
        let a: Vec<String> = String::from_utf8_lossy(a)
            .lines()
            .map(String::from)
            .collect();
        let b: Vec<String> = String::from_utf8_lossy(b)
            .lines()
            .map(String::from)
            .collect();
        let removed = a.iter().filter(|l| !b.contains(l)).cloned().collect();
        let added = b.iter().filter(|l| !a.contains(l)).cloned().collect();
        (removed, added)
    }

    #[test]
    fn quoting_names() {
        assert_eq!(quote_name("app").as_deref(), Some("app"));
        assert_eq!(quote_name("all").as_deref(), Some("\"all\""));
        assert_eq!(quote_name("a b").as_deref(), Some("\"a b\""));
        assert_eq!(quote_name("a\"b").as_deref(), Some("\"a\"\"b\""));
        assert_eq!(quote_name("+x").as_deref(), Some("\"+x\""));
        assert_eq!(quote_name("x\ny"), None);
        // the server reads them back as the literal names
        for name in ["all", "a b", "a\"b", "+x", "@f", "/re", "#x", "a,b", ""] {
            let q = quote_name(name).unwrap();
            let line = format!("local {q} u trust\n");
            let report = crate::lint_bytes(
                "/p",
                line.as_bytes(),
                &mut crate::NoFiles,
                &Default::default(),
            );
            let row = &report.rows[0];
            assert_eq!(
                row.database.as_deref(),
                Some(&[name.to_string()][..]),
                "{q}"
            );
        }
    }

    #[test]
    fn block_is_created_then_rewritten_touching_only_its_lines() {
        let text = b"# TYPE  DATABASE        USER            ADDRESS                 METHOD\nlocal   all             all                                     peer\nhost    all             all             127.0.0.1/32            scram-sha-256\nhost    all             all             0.0.0.0/0               reject\n";
        let mut doc = HbaDocument::parse(text);
        let rec = doc.format_record(
            3,
            &[
                "hostssl",
                "shopdata",
                "shopdata_remote",
                "203.0.113.7/32",
                "scram-sha-256",
            ],
            Some("added by test"),
        );
        assert_eq!(
            String::from_utf8(rec.clone()).unwrap(),
            "hostssl shopdata        shopdata_remote 203.0.113.7/32          scram-sha-256 # added by test"
        );
        let r = doc
            .set_block(BEGIN, END, std::slice::from_ref(&rec), 3)
            .unwrap();
        assert_eq!(r, BlockRange { begin: 3, end: 5 });
        let once = doc.to_bytes();
        let (removed, added) = diff_lines(text, &once);
        assert!(removed.is_empty());
        assert_eq!(added.len(), 3);
        let last_line_start = text[..text.len() - 1]
            .iter()
            .rposition(|&c| c == b'\n')
            .unwrap()
            + 1;
        assert!(once.starts_with(&text[..last_line_start]));
        assert!(once.ends_with(
            b"host    all             all             0.0.0.0/0               reject\n"
        ));

        // rewriting with one more line touches only the block's inside
        let rec2 = doc.format_record(
            4,
            &[
                "hostssl",
                "shopdata",
                "shopdata_remote",
                "198.51.100.0/24",
                "scram-sha-256",
            ],
            None,
        );
        doc.set_block(BEGIN, END, &[rec.clone(), rec2], 0).unwrap();
        let (removed, added) = diff_lines(&once, &doc.to_bytes());
        assert!(removed.is_empty());
        assert_eq!(added.len(), 1);
        // idempotent
        let before = doc.to_bytes();
        let inner: Vec<Vec<u8>> = doc
            .find_block(BEGIN, END)
            .unwrap()
            .unwrap()
            .inner()
            .map(|i| doc.lines()[i].raw().to_vec())
            .collect();
        doc.set_block(BEGIN, END, &inner, 0).unwrap();
        assert_eq!(doc.to_bytes(), before);
        // and removing it gives back the original
        assert!(doc.remove_block(BEGIN, END).unwrap());
        assert_eq!(doc.to_bytes(), text);
    }

    #[test]
    fn unbalanced_markers_are_refused() {
        let doc = HbaDocument::parse(format!("{BEGIN}\nlocal all all trust\n").as_bytes());
        assert_eq!(
            doc.find_block(BEGIN, END),
            Err(BlockError::Unbalanced { line: 1 })
        );
        let doc = HbaDocument::parse(format!("{END}\n").as_bytes());
        assert!(doc.find_block(BEGIN, END).is_err());
        let doc = HbaDocument::parse(format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n").as_bytes());
        assert_eq!(
            doc.find_block(BEGIN, END),
            Err(BlockError::Duplicate { line: 3 })
        );
    }

    #[test]
    fn tab_separated_neighbours_get_tabs_and_unaligned_get_spaces() {
        let doc = HbaDocument::parse(b"host\tall\tall\t10.0.0.0/8\tmd5\n");
        assert_eq!(
            doc.format_record(1, &["host", "db", "u", "1.2.3.4/32", "md5"], None),
            b"host\tdb\tu\t1.2.3.4/32\tmd5"
        );
        let doc = HbaDocument::parse(b"");
        assert_eq!(
            doc.format_record(0, &["host", "db", "u", "1.2.3.4/32", "md5"], None),
            b"host db u 1.2.3.4/32 md5"
        );
    }

    #[test]
    fn local_records_keep_the_address_column_empty() {
        let doc = HbaDocument::parse(b"host    all     all     ::1/128     trust\n");
        assert_eq!(
            String::from_utf8(doc.format_record(1, &["local", "all", "all", "peer"], None))
                .unwrap(),
            "local   all     all                 peer"
        );
    }
}
