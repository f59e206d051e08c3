//! A managed block: the lines between two marker comments that one tool
//! owns in a pg_hba.conf, placed where its rules are reached, and the
//! questions a tool asks about the rules around it.
//!
//! The markers are the caller's ([`ManagedBlock`]). A new block goes just
//! before the first catch-all `reject` line in the server's order
//! (database and user `all`, address `all`, `0.0.0.0/0` or `::/0`; see
//! [`crate::shadow::is_catch_all_reject`]), or at the end of the file.
//! Include directives (16+) and `@file` references are expanded in place
//! through a [`FileLoader`], by the same code as lint ([`crate::check`]):
//! when the catch-all reject is in an included file, the block goes before
//! the top file's include line that brings it in. The block itself lives in
//! the top file only.
//!
//! ```
//! use pghba::managed_block::{HbaFile, ManagedBlock};
//! use pghba::{HbaDocument, NoFiles, PgVersion};
//!
//! const BLOCK: ManagedBlock = ManagedBlock { begin: "# BEGIN myapp", end: "# END myapp" };
//! let text = b"local all all peer\nhost all all 0.0.0.0/0 reject\n";
//! let file = HbaFile { path: "/etc/pg_hba.conf", text, version: PgVersion::V16 };
//! let mut doc = HbaDocument::parse_for(text, PgVersion::V16);
//! let at = BLOCK.position_for_new(&file, &doc, &mut NoFiles, true);
//! let line = doc.format_record(at, &["host", "app", "app", "10.0.0.0/8", "scram-sha-256"], None);
//! let range = doc.set_block(BLOCK.begin, BLOCK.end, &[line], at).unwrap();
//! assert_eq!(
//!     String::from_utf8(doc.to_bytes()).unwrap(),
//!     // the new line is aligned on the columns of its neighbours
//!     "local all all peer\n# BEGIN myapp\nhost  app app 10.0.0.0/8 scram-sha-256\n# END myapp\nhost all all 0.0.0.0/0 reject\n"
//! );
//! assert_eq!(BLOCK.rules_inside(&doc, &range, PgVersion::V16).len(), 1);
//! ```

use std::collections::HashMap;

use crate::check::{FileLoader, NoFiles};
use crate::document::{HbaDocument, Line, LineKind};
use crate::edit::{trim_blanks, BlockError, BlockRange};
use crate::matcher::{LocatedRule, RuleSet};
use crate::parser::{Dialect, LineSplitter, LogicalLine};
use crate::shadow;
use crate::version::{PgVersion, ValidateOptions};

/// The top pg_hba.conf as the server reads it.
#[derive(Clone, Copy, Debug)]
pub struct HbaFile<'a> {
    /// Its path (the server's `hba_file`): relative include and `@file`
    /// names are resolved against its directory, and rules from it carry it
    /// as their [`LocatedRule::file`].
    pub path: &'a str,
    /// Its bytes.
    pub text: &'a [u8],
    /// The server's major version.
    pub version: PgVersion,
}

/// The rules of `file` as the server would keep them, for matching and
/// overlap questions: included files and `@file` references are read
/// through `loader` and expanded in place; `ssl` is the server's `ssl`
/// setting (with it off, `hostssl` lines never match).
pub fn rule_set(file: &HbaFile<'_>, loader: &mut dyn FileLoader, ssl: bool) -> RuleSet {
    let opts = ValidateOptions {
        ssl_enabled: ssl,
        ..ValidateOptions::for_version(file.version)
    };
    RuleSet::load(file.path, file.text, loader, &opts)
}

/// The text of line `line` of `rule_file` (without its terminator): the
/// top file's from `doc`, an included file's read again through `loader`
/// (empty when it cannot be).
pub fn line_text(
    file: &HbaFile<'_>,
    doc: &HbaDocument,
    loader: &mut dyn FileLoader,
    rule_file: &str,
    line: u32,
) -> String {
    let find = |d: &HbaDocument| {
        d.lines()
            .iter()
            .find(|l| l.line_number() == line)
            .map(|l| String::from_utf8_lossy(l.content()).trim_end().to_string())
            .unwrap_or_default()
    };
    if rule_file == file.path {
        return find(doc);
    }
    match loader.read_file(rule_file) {
        Ok(bytes) => find(&HbaDocument::parse_for(&bytes, file.version)),
        Err(_) => String::new(),
    }
}

/// The text of the line a rule of [`rule_set`] comes from (included files
/// read again through `loader`), for messages.
pub fn rule_text(file: &HbaFile<'_>, loader: &mut dyn FileLoader, rule: &LocatedRule) -> String {
    let doc = HbaDocument::parse_for(file.text, file.version);
    line_text(file, &doc, loader, &rule.file, rule.line)
}

/// Each rule of `rules` (loaded from `doc`) that is in the top file `top`,
/// with its index into `doc.lines()`, in order.
fn located<'r>(doc: &HbaDocument, rules: &'r RuleSet, top: &str) -> Vec<(usize, &'r LocatedRule)> {
    let index: HashMap<u32, usize> = doc
        .lines()
        .iter()
        .enumerate()
        .map(|(i, l)| (l.line_number(), i))
        .collect();
    rules
        .rules
        .iter()
        .filter(|r| r.file == top)
        .filter_map(|r| index.get(&r.line).map(|&i| (i, r)))
        .collect()
}

/// The name the top file carries where no path is known (a block's rules
/// are read without includes).
const FILE_NAME: &str = "pg_hba.conf";

/// The rules of some of a document's lines (numbered from 1), includes not
/// followed.
fn top_rules_of(lines: &[Line], version: PgVersion) -> RuleSet {
    let text: Vec<u8> = lines.iter().flat_map(|l| l.raw().iter().copied()).collect();
    let file = HbaFile {
        path: FILE_NAME,
        text: &text,
        version,
    };
    rule_set(&file, &mut NoFiles, true)
}

/// The index (into `doc.lines()`) of the first catch-all reject line of
/// the top file (see [`shadow::is_catch_all_reject`]); included files are
/// not read.
pub fn first_catch_all_reject(doc: &HbaDocument, version: PgVersion) -> Option<usize> {
    let rules = top_rules_of(doc.lines(), version);
    located(doc, &rules, FILE_NAME)
        .iter()
        .find(|(_, r)| shadow::is_catch_all_reject(&r.rule))
        .map(|&(i, _)| i)
}

/// The rules the server reads before line `end` of the top file (index
/// into `doc.lines()`, `doc` parsed from `file`), included files expanded:
/// those of the lines before it.
pub fn rules_before(
    file: &HbaFile<'_>,
    doc: &HbaDocument,
    loader: &mut dyn FileLoader,
    ssl: bool,
    end: usize,
) -> RuleSet {
    let prefix: Vec<u8> = doc.lines()[..end]
        .iter()
        .flat_map(|l| l.raw().iter().copied())
        .collect();
    let head = HbaFile {
        text: &prefix,
        ..*file
    };
    rule_set(&head, loader, ssl)
}

/// A region of pg_hba.conf between two marker comment lines, owned by the
/// caller: its markers, and where a new one goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedBlock<'m> {
    /// The comment line that opens the block.
    pub begin: &'m str,
    /// The comment line that closes it.
    pub end: &'m str,
}

impl ManagedBlock<'_> {
    /// Where the block is in `doc` (none when absent; an error when the
    /// markers are unbalanced or repeated).
    pub fn find(&self, doc: &HbaDocument) -> Result<Option<BlockRange>, BlockError> {
        doc.find_block(self.begin, self.end)
    }

    /// The block of `text`: a document of its own lines only (markers
    /// included, line numbers as in the file) and its range in it; none
    /// when absent, and the errors [`ManagedBlock::find`] gives on the whole
    /// document. Only the logical lines of the rest are split, not parsed
    /// (a reader of the block, such as a listing, skips the document model
    /// of a 100k-line file). A file with a NUL byte is parsed whole (the
    /// server's line buffer, which decides what a NUL drops, depends on the
    /// lines before).
    pub fn find_in_text(
        &self,
        text: &[u8],
        version: PgVersion,
    ) -> Result<Option<(HbaDocument, BlockRange)>, BlockError> {
        if memchr::memchr(0, text).is_some() {
            let doc = HbaDocument::parse_for(text, version);
            return Ok(self.find(&doc)?.map(|range| (doc, range)));
        }
        let is = |l: &LogicalLine<'_>, marker: &str| {
            // a line whose first non-blank is `#` is a comment: the marker
            !l.too_long && trim_blanks(&l.content) == marker.trim().as_bytes()
        };
        // (byte offset, line number) of the open block's begin marker
        let mut open: Option<(usize, u32)> = None;
        let mut found: Option<(usize, usize, u32)> = None;
        for l in LineSplitter::new(text, Dialect::for_version(version)) {
            if is(&l, self.begin) {
                if open.is_some() {
                    return Err(BlockError::Unbalanced {
                        line: l.line_number,
                    });
                }
                if found.is_some() {
                    return Err(BlockError::Duplicate {
                        line: l.line_number,
                    });
                }
                open = Some((l.raw_start, l.line_number));
            } else if is(&l, self.end) {
                let Some((start, line)) = open.take() else {
                    return Err(BlockError::Unbalanced {
                        line: l.line_number,
                    });
                };
                found = Some((start, l.raw_start + l.raw.len(), line));
            }
        }
        if let Some((_, line)) = open {
            return Err(BlockError::Unbalanced { line });
        }
        let Some((start, end, line)) = found else {
            return Ok(None);
        };
        let doc = HbaDocument::parse_part(&text[start..end], version, line);
        match self.find(&doc)? {
            Some(range) => Ok(Some((doc, range))),
            None => Ok(None),
        }
    }

    /// `text` without the block, markers and lines, and whether there was
    /// one.
    pub fn remove(&self, text: &[u8], version: PgVersion) -> Result<(Vec<u8>, bool), BlockError> {
        let mut doc = HbaDocument::parse_for(text, version);
        let had = doc.remove_block(self.begin, self.end)?;
        Ok((doc.to_bytes(), had))
    }

    /// Where a new block goes (index into `doc.lines()`, `doc` parsed from
    /// `file`): just before the first catch-all reject in the server's
    /// order (includes expanded through `loader`). When that rule is in an
    /// included file, before the top file's include line that brings it
    /// in; with no catch-all reject, at the end.
    pub fn position_for_new(
        &self,
        file: &HbaFile<'_>,
        doc: &HbaDocument,
        loader: &mut dyn FileLoader,
        ssl: bool,
    ) -> usize {
        let rules = rule_set(file, loader, ssl);
        let end = doc.lines().len();
        let Some(k) = shadow::first_catch_all_reject(&rules.rules) else {
            return end;
        };
        let found = located(doc, &rules, file.path);
        if rules.rules[k].file == file.path {
            return found
                .iter()
                .find(|(_, r)| std::ptr::eq(*r, &rules.rules[k]))
                .map_or(end, |&(i, _)| i);
        }
        // Between the top file's rules around it, the include line whose
        // expansion reaches rule k.
        let from = rules.rules[..k]
            .iter()
            .rev()
            .find(|r| r.file == file.path)
            .and_then(|r| found.iter().find(|(_, f)| std::ptr::eq(*f, r)))
            .map_or(0, |&(i, _)| i);
        for j in from..end {
            if matches!(doc.lines()[j].kind(), LineKind::Include(_))
                && rules_before(file, doc, loader, ssl, j + 1).rules.len() > k
            {
                return j;
            }
        }
        end
    }

    /// The rules inside the block at `range` (index into `doc.lines()`
    /// with each), read from the block's own lines only: a block holds its
    /// owner's lines, whose meaning does not depend on the rest of the file
    /// (an include directive or a line the version rejects inside it is
    /// read and skipped as in the whole file). Line numbers are the file's;
    /// [`LocatedRule::file`] is `pg_hba.conf`.
    pub fn rules_inside(
        &self,
        doc: &HbaDocument,
        range: &BlockRange,
        version: PgVersion,
    ) -> Vec<(usize, LocatedRule)> {
        let lines = &doc.lines()[range.begin..range.end];
        let mut inner = top_rules_of(lines, version);
        let shift = lines[0].line_number() - 1;
        for rule in &mut inner.rules {
            rule.line += shift;
        }
        let index: HashMap<u32, usize> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (l.line_number(), range.begin + i))
            .collect();
        let inside = range.inner();
        inner
            .rules
            .into_iter()
            .filter(|r| r.file == FILE_NAME)
            .filter_map(|r| index.get(&r.line).map(|&i| (i, r)))
            .filter(|(i, _)| inside.contains(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: ManagedBlock<'static> = ManagedBlock {
        begin: "# BEGIN tool",
        end: "# END tool",
    };

    fn position(text: &str) -> usize {
        let file = HbaFile {
            path: "/etc/pg_hba.conf",
            text: text.as_bytes(),
            version: PgVersion::V16,
        };
        let doc = HbaDocument::parse_for(text.as_bytes(), PgVersion::V16);
        BLOCK.position_for_new(&file, &doc, &mut NoFiles, true)
    }

    #[test]
    fn a_new_block_goes_before_the_first_catch_all_reject_or_at_the_end() {
        assert_eq!(
            position("local all all trust\nhost all all all reject\n"),
            1
        );
        assert_eq!(
            position("host all all 10.0.0.0/8 reject\nhost all all ::/0 reject\n"),
            1
        );
        assert_eq!(position("local all all trust\n"), 1);
        assert_eq!(position(""), 0);
    }

    /// Finding the block in the text gives the whole document's answer:
    /// the same rules at the same line numbers, the same errors.
    #[test]
    fn find_in_text_agrees_with_the_whole_document() {
        let texts = [
            "local all all trust\nhost all \\\n all 10.9.0.0/16 md5\n  # BEGIN tool \r\n\
             host a b 10.1.0.0/16 md5 # c\n\n# END tool\nhost all all all reject\n",
            "local all all trust\n# BEGIN tool\n# END tool",
            "local all all trust\n",
            "# BEGIN tool\n# END tool\n# BEGIN tool\n# END tool\n",
            "# END tool\n",
            "# BEGIN tool\nhost a b 10.1.0.0/16 md5\n",
            "local all \\\n# BEGIN tool\n# END tool\n",
            "local all all trust\0\n# BEGIN tool\nhost a b 10.1.0.0/16 md5\n# END tool\n",
        ];
        for text in texts {
            for v in [PgVersion::V13, PgVersion::V16] {
                let whole = HbaDocument::parse_for(text.as_bytes(), v);
                let expected = BLOCK.find(&whole).map(|r| {
                    r.map(|r| {
                        let rules = BLOCK.rules_inside(&whole, &r, v);
                        rules.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
                    })
                });
                let got = BLOCK.find_in_text(text.as_bytes(), v).map(|found| {
                    found.map(|(doc, r)| {
                        let rules = BLOCK.rules_inside(&doc, &r, v);
                        rules.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
                    })
                });
                assert_eq!(got, expected, "{text:?} {v}");
            }
        }
    }

    #[test]
    fn rules_inside_keep_the_files_line_numbers() {
        let text = "local all all trust\nhost all \\\n all 10.9.0.0/16 md5\n# BEGIN tool\n\
                    host a b 10.1.0.0/16 md5\n# END tool\n";
        let doc = HbaDocument::parse_for(text.as_bytes(), PgVersion::V16);
        let range = BLOCK.find(&doc).unwrap().unwrap();
        let got = BLOCK.rules_inside(&doc, &range, PgVersion::V16);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.line, 5);
        let (removed, had) = BLOCK.remove(text.as_bytes(), PgVersion::V16).unwrap();
        assert!(had);
        assert_eq!(
            removed,
            b"local all all trust\nhost all \\\n all 10.9.0.0/16 md5\n"
        );
    }
}
