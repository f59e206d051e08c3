//! The whole-file verdict: tokenize a file the way the server does
//! (`tokenize_auth_file()`), expanding `@file` tokens and, from 16, include
//! directives through a [`FileLoader`], check every record
//! ([`crate::rule::parse_hba_line`]), and decide whether the server would
//! load the file (`load_hba()`).
//!
//! Work is streamed line by line to a callback, so checking a large file
//! needs memory for the file and one line, not for every token.

use std::io;
use std::path::Path;

use crate::parser::{self, lossy, Dialect, LineSplitter, LogicalLine};
use crate::rule::{parse_fields_into, FlatFields, InputToken, LineVerdict};
use crate::version::ValidateOptions;

/// Deepest include nesting the server accepts (`CONF_FILE_MAX_DEPTH`).
pub const MAX_INCLUDE_DEPTH: u32 = 10;

/// An entry of a directory read for `include_dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// File name (no directory part).
    pub name: String,
    /// Whether it is a directory (after following symlinks).
    pub is_dir: bool,
}

/// How included files are read. Paths are absolute, as the server builds them.
pub trait FileLoader {
    /// Read a whole file.
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>>;
    /// List a directory.
    fn read_dir(&mut self, path: &str) -> io::Result<Vec<DirEntry>>;
}

/// Reads from the file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsLoader;

impl FileLoader for FsLoader {
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_dir(&mut self, path: &str) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let is_dir = std::fs::metadata(e.path()).map(|m| m.is_dir())?;
            out.push(DirEntry { name, is_dir });
        }
        Ok(out)
    }
}

/// A loader for text that has no includes: every read fails with
/// "No such file or directory".
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFiles;

impl FileLoader for NoFiles {
    fn read_file(&mut self, _: &str) -> io::Result<Vec<u8>> {
        Err(io::Error::from_raw_os_error(2))
    }
    fn read_dir(&mut self, _: &str) -> io::Result<Vec<DirEntry>> {
        Err(io::Error::from_raw_os_error(2))
    }
}

/// One line the server reports on: a record, or an include directive or
/// line that failed.
#[derive(Clone, Debug)]
pub struct CheckedLine<'a> {
    /// File the line is in (the top file's name as given, included files
    /// as the server names them).
    pub file_name: &'a str,
    /// Line number in that file (first physical line).
    pub line_number: u32,
    /// The line of the top file being read when this line was reached: its
    /// own number for a line of the top file, the include directive's for
    /// a line of an included file (so a caller can tell which lines come
    /// before a place in the top file, includes expanded).
    pub top_line: u32,
    /// Where the message points: physical line number and 1-based byte
    /// column.
    pub position: (u32, u32),
    /// `rule_number` of the view (16+): counts lines without error.
    pub rule_number: Option<u32>,
    /// The verdict.
    pub verdict: &'a LineVerdict,
}

/// The verdict on a whole file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FileVerdict {
    /// Whether the server would load the file.
    pub loads: bool,
    /// Number of rules the server would keep.
    pub entries: usize,
    /// A problem with the file as a whole ("contains no entries").
    pub file_error: Option<String>,
    /// Problems the server only logs: no row in `pg_hba_file_rules`, no
    /// effect on loading (an included file that is a directory).
    pub logged: Vec<LoggedProblem>,
}

/// A message the server logs about a file without making it an error row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedProblem {
    /// The file the message is about, as the server's context names it.
    pub file_name: String,
    /// Physical line number in it.
    pub line: u32,
    /// 1-based byte column.
    pub column: u32,
    /// The server's message.
    pub message: String,
}

/// `strerror()` text of an I/O error.
fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// `canonicalize_path()`, lexically: no `.`, no empty components, `..`
/// folded where possible, no trailing slash.
pub fn canonicalize_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), Some(p) if *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// `AbsoluteConfigLocation()`: absolute paths as they are, relative ones
/// against the directory of the including file.
pub fn absolute_config_location(location: &str, calling_file: &str) -> String {
    if location.starts_with('/') {
        return location.to_string();
    }
    let parent = match calling_file.trim_end_matches('/').rfind('/') {
        Some(0) => "/",
        Some(i) => &calling_file[..i],
        None => "",
    };
    let joined = if parent.is_empty() {
        location.to_string()
    } else {
        format!("{parent}/{location}")
    };
    canonicalize_path(&joined)
}

/// An empty vector with the allocation of `v`, for values of another
/// lifetime (the standard library collects in place when the layouts agree).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// A tokenized line, tokens owned (used for `@file` contents).
struct OwnedLine {
    tokens: Vec<InputToken<'static>>,
    error: Option<String>,
}

struct Walker<'s> {
    opts: &'s ValidateOptions,
    dialect: Dialect,
    loader: &'s mut dyn FileLoader,
    sink: &'s mut dyn FnMut(&CheckedLine<'_>),
    rule_number: u32,
    ok: bool,
    entries: usize,
    logged: Vec<LoggedProblem>,
    /// The verdict on the current line, its rule's storage reused from
    /// line to line.
    verdict: LineVerdict,
    /// Whether the options of `verdict`'s rule may not be the defaults.
    options_dirty: bool,
    /// The top file's line being read ([`CheckedLine::top_line`]).
    top_line: u32,
}

/// Where the lines of a tokenized file go.
enum Out<'o> {
    /// Checked and reported.
    Emit,
    /// Collected for an `@file` expansion.
    Collect(&'o mut Vec<OwnedLine>),
}

impl Walker<'_> {
    fn nesting_error(&self, full: &str) -> String {
        format!("could not open file \"{full}\": maximum nesting depth exceeded")
    }

    /// Read an included file; `Err` carries the server's message, with
    /// `missing` telling whether the file did not exist.
    fn open(&mut self, full: &str, depth: u32) -> Result<Vec<u8>, (String, bool)> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err((self.nesting_error(full), false));
        }
        self.read_included(full).map_err(|e| {
            (
                format!("could not open file \"{full}\": {}", strerror(&e)),
                e.kind() == io::ErrorKind::NotFound,
            )
        })
    }

    /// Read a file named by `@file` or an include directive. A directory
    /// opens fine on Linux (`fopen(dir, "r")` succeeds) and then fails to
    /// read: from 14, `tokenize_auth_file()` logs "could not read file" and
    /// stops without producing a line, so the directory reads as an empty
    /// file and the server still loads (13 instead reports the error on the
    /// line, see [`Walker::expand_file`]).
    fn read_included(&mut self, full: &str) -> io::Result<Vec<u8>> {
        match self.loader.read_file(full) {
            Err(e)
                if e.kind() == io::ErrorKind::IsADirectory && self.opts.version.major() >= 14 =>
            {
                // logged with the context "line 1 of configuration file"
                self.logged.push(LoggedProblem {
                    file_name: full.to_string(),
                    line: 1,
                    column: 1,
                    message: format!("could not read file \"{full}\": {}", strerror(&e)),
                });
                Ok(Vec::new())
            }
            r => r,
        }
    }

    /// `tokenize_expand_file()`: the tokens of an `@file`.
    fn expand_file(
        &mut self,
        outer: &str,
        inc: &[u8],
        depth: u32,
        offset: usize,
        into: &mut Vec<InputToken<'static>>,
    ) -> Option<String> {
        let inc = lossy(inc).into_owned();
        let full = absolute_config_location(&inc, outer);
        let bytes = if self.opts.version.has_include_directives() {
            match self.open(&full, depth) {
                Ok(b) => b,
                Err((msg, _)) => return Some(msg),
            }
        } else {
            // 13-15 have no nesting limit (they recurse until the stack
            // ends); stop somewhere sane with the 16+ message.
            if depth > 64 {
                return Some(self.nesting_error(&full));
            }
            match self.read_included(&full) {
                Ok(b) => b,
                // 13 reads with fgets(): the failed read becomes an error
                // line of the @file, which the including line inherits
                Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
                    return Some(format!("could not read file \"{full}\": {}", strerror(&e)))
                }
                Err(e) => {
                    return Some(format!(
                        "could not open secondary authentication file \"@{inc}\" as \"{full}\": {}",
                        strerror(&e)
                    ))
                }
            }
        };
        let mut lines = Vec::new();
        self.tokenize_file(&full, &bytes, depth, &mut Out::Collect(&mut lines));
        for l in lines {
            if let Some(e) = l.error {
                return Some(e);
            }
            into.extend(l.tokens.into_iter().map(|mut t| {
                t.offset = offset;
                t
            }));
        }
        None
    }

    /// `tokenize_include_file()`: process an included file in place.
    fn include_file(
        &mut self,
        outer: &str,
        inc: &str,
        depth: u32,
        missing_ok: bool,
        out: &mut Out<'_>,
    ) -> Option<String> {
        let full = absolute_config_location(inc, outer);
        match self.open(&full, depth) {
            Ok(bytes) => {
                self.tokenize_file(&full, &bytes, depth, out);
                None
            }
            Err((_, true)) if missing_ok => None,
            Err((msg, _)) => Some(msg),
        }
    }

    /// The `include_dir` case of `tokenize_auth_file()`.
    fn include_dir(
        &mut self,
        outer: &str,
        dir: &str,
        depth: u32,
        out: &mut Out<'_>,
    ) -> Option<String> {
        if dir
            .bytes()
            .all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Some("empty configuration directory name".into());
        }
        let directory = absolute_config_location(dir, outer);
        let entries = match self.loader.read_dir(&directory) {
            Ok(e) => e,
            Err(_) => return Some(format!("could not open directory \"{directory}\"")),
        };
        let mut files: Vec<String> = entries
            .into_iter()
            .filter(|e| {
                e.name.len() >= 6
                    && !e.name.starts_with('.')
                    && e.name.ends_with(".conf")
                    && !e.is_dir
            })
            .map(|e| canonicalize_path(&format!("{directory}/{}", e.name)))
            .collect();
        files.sort();
        let mut errors: Vec<String> = Vec::new();
        for f in files {
            if let Some(e) = self.include_file(outer, &f, depth, false, out) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            None
        } else {
            Some(errors.join("\n"))
        }
    }

    fn tokenize_file(&mut self, name: &str, bytes: &[u8], depth: u32, out: &mut Out<'_>) {
        self.tokenize_lines(name, bytes, 1, depth, out);
    }

    /// [`Walker::tokenize_file`] of `bytes` whose first line is line
    /// `first_line` of the file; returns the number of the line after them.
    fn tokenize_lines(
        &mut self,
        name: &str,
        bytes: &[u8],
        first_line: u32,
        depth: u32,
        out: &mut Out<'_>,
    ) -> u32 {
        // Buffers reused from line to line: a line's tokens borrow its
        // content, so they are handed back empty after each line.
        let mut spare_tokens: Vec<InputToken<'static>> = Vec::new();
        let mut spare_input: Vec<InputToken<'static>> = Vec::new();
        let mut ends = Vec::new();
        let mut field_ends = Vec::new();
        let mut lines = LineSplitter::starting_at(bytes, self.dialect, first_line);
        for ll in lines.by_ref() {
            if depth == 0 {
                self.top_line = ll.line_number;
            }
            let mut tokens = recycle(std::mem::take(&mut spare_tokens));
            let mut input = recycle(std::mem::take(&mut spare_input));
            self.tokenize_line(
                name,
                &ll,
                depth,
                out,
                &mut tokens,
                &mut ends,
                &mut input,
                &mut field_ends,
            );
            spare_tokens = recycle(tokens);
            spare_input = recycle(input);
        }
        lines.line_number()
    }

    /// One logical line of [`Walker::tokenize_file`]: `tokens` and `ends`
    /// receive the tokenizer's output, `input` and `field_ends` the fields
    /// after `@file` expansion (all four are scratch space; on a line
    /// without `@file` the two pairs are swapped instead of copied).
    #[allow(clippy::too_many_arguments)]
    fn tokenize_line<'l>(
        &mut self,
        name: &str,
        ll: &'l LogicalLine<'_>,
        depth: u32,
        out: &mut Out<'_>,
        tokens: &mut Vec<InputToken<'l>>,
        ends: &mut Vec<usize>,
        input: &mut Vec<InputToken<'l>>,
        field_ends: &mut Vec<usize>,
    ) {
        let dialect = self.dialect;
        let mut error: Option<(String, usize)> = None;
        input.clear();
        field_ends.clear();
        if ll.too_long {
            error = Some(("authentication file line too long".into(), 0));
        } else {
            let (_, token_too_long) = parser::tokenize_into(&ll.content, &dialect, tokens, ends);
            if !tokens.iter().any(InputToken::is_file_reference) {
                std::mem::swap(tokens, input);
                std::mem::swap(ends, field_ends);
            }
            let mut drained = tokens.drain(..);
            let mut field_start = 0;
            'fields: for &end in ends.iter() {
                let first = input.len();
                for tok in drained.by_ref().take(end - field_start) {
                    if tok.is_file_reference() {
                        let mut expanded = Vec::new();
                        let e = self.expand_file(
                            name,
                            &tok.value[1..],
                            depth + 1,
                            tok.offset,
                            &mut expanded,
                        );
                        input.extend(expanded);
                        if let Some(e) = e {
                            error = Some((e, tok.offset));
                            if input.len() > first {
                                field_ends.push(input.len());
                            }
                            break 'fields;
                        }
                    } else {
                        input.push(tok);
                    }
                }
                field_start = end;
                if input.len() > first {
                    field_ends.push(input.len());
                }
            }
            if error.is_none() {
                if let Some(at) = token_too_long {
                    error = Some(("authentication file token too long".into(), at));
                }
            }
        }
        if field_ends.is_empty() && error.is_none() {
            return;
        }
        if error.is_none() && field_ends.len() == 2 && self.opts.version.has_include_directives() {
            let first: &[u8] = &input[0].value;
            let second = lossy(&input[field_ends[0]].value).into_owned();
            let at = input[0].offset;
            let result = match first {
                b"include" => Some(self.include_file(name, &second, depth + 1, false, out)),
                b"include_if_exists" => {
                    Some(self.include_file(name, &second, depth + 1, true, out))
                }
                b"include_dir" => Some(self.include_dir(name, &second, depth + 1, out)),
                _ => None,
            };
            match result {
                Some(None) => return,
                Some(Some(e)) => error = Some((e, at)),
                None => {}
            }
        }
        match out {
            Out::Collect(lines) => lines.push(OwnedLine {
                tokens: input
                    .drain(..)
                    .map(|t| InputToken {
                        value: std::borrow::Cow::Owned(t.value.into_owned()),
                        quoted: t.quoted,
                        offset: t.offset,
                    })
                    .collect(),
                error: error.map(|e| e.0),
            }),
            Out::Emit => {
                match error {
                    Some((msg, at)) => {
                        self.verdict = LineVerdict {
                            rule: None,
                            error: Some(msg.clone()),
                            message: Some((msg, at)),
                        }
                    }
                    None => parse_fields_into(
                        &FlatFields {
                            tokens: input,
                            ends: field_ends,
                        },
                        self.opts,
                        &mut self.verdict,
                        &mut self.options_dirty,
                    ),
                }
                self.emit(name, ll);
            }
        }
    }

    /// Report the current line (its verdict is in `self.verdict`).
    fn emit(&mut self, name: &str, ll: &LogicalLine<'_>) {
        let verdict = &self.verdict;
        let rule_number = if verdict.error.is_none() {
            self.rule_number += 1;
            Some(self.rule_number)
        } else {
            None
        };
        if verdict.loads() {
            self.entries += 1;
        } else {
            self.ok = false;
        }
        let at = verdict.message.as_ref().map_or(0, |m| m.1);
        let position = ll.line_column(at.min(ll.content.len()));
        (self.sink)(&CheckedLine {
            file_name: name,
            line_number: ll.line_number,
            top_line: self.top_line,
            position,
            rule_number,
            verdict,
        });
    }
}

/// Check a file's bytes as the server would load it. `name` is the file's
/// path (relative includes are resolved against its directory; make it
/// absolute to get the server's file names). Every reported line is passed
/// to `sink` in the server's order.
pub fn check_bytes(
    name: &str,
    bytes: &[u8],
    loader: &mut dyn FileLoader,
    opts: &ValidateOptions,
    sink: &mut dyn FnMut(&CheckedLine<'_>),
) -> FileVerdict {
    let mut w = Walker::new(opts, loader, sink);
    w.tokenize_file(name, bytes, 0, &mut Out::Emit);
    w.finish(name)
}

impl<'s> Walker<'s> {
    fn new(
        opts: &'s ValidateOptions,
        loader: &'s mut dyn FileLoader,
        sink: &'s mut dyn FnMut(&CheckedLine<'_>),
    ) -> Self {
        Walker {
            opts,
            dialect: Dialect::for_version(opts.version),
            loader,
            sink,
            rule_number: 0,
            ok: true,
            entries: 0,
            logged: Vec::new(),
            verdict: LineVerdict::default(),
            options_dirty: false,
            top_line: 0,
        }
    }

    /// `load_hba()`'s conclusion on the lines walked.
    fn finish(mut self, name: &str) -> FileVerdict {
        let mut verdict = FileVerdict {
            loads: self.ok,
            entries: self.entries,
            file_error: None,
            logged: std::mem::take(&mut self.logged),
        };
        if self.ok && self.entries == 0 {
            verdict.loads = false;
            verdict.file_error = Some(format!("configuration file \"{name}\" contains no entries"));
        }
        verdict
    }
}

/// Files from this size on are checked in two halves on two threads by
/// [`check_problems`] (when the machine has two cores).
pub const PARALLEL_FROM: usize = 2 << 20;

/// [`check_bytes`] for a caller that wants only the lines the server has
/// something to say about (`verdict.message` set: errors and warnings),
/// not every rule: the same calls of `sink` for those lines, in the same
/// order, and the same verdict. A large file (from [`PARALLEL_FROM`] bytes,
/// without NUL byte) has its second half checked on a second thread while
/// this one checks the first; its messages are passed on once the first
/// half is done. If the second half includes other files (`include*`,
/// `@file`), its check is thrown away and done again here in order.
pub fn check_problems(
    name: &str,
    bytes: &[u8],
    loader: &mut dyn FileLoader,
    opts: &ValidateOptions,
    sink: &mut dyn FnMut(&CheckedLine<'_>),
) -> FileVerdict {
    check_selected(
        name,
        bytes,
        loader,
        opts,
        &|line| line.verdict.message.is_some(),
        sink,
    )
}

/// [`check_bytes`] for a caller that wants only the lines `select` says
/// yes to: the same calls of `sink` for those lines, in the same order,
/// and the same verdict. A large file (from [`PARALLEL_FROM`] bytes,
/// without NUL byte) has its second half checked on a second thread while
/// this one checks the first (`select` runs on both; on the second thread
/// line and rule numbers count from the half's start, `sink` always gets
/// the file's). If the second half includes other files (`include*`,
/// `@file`), its check is thrown away and done again here in order.
/// [`check_problems`] selects the lines with a message.
pub fn check_selected(
    name: &str,
    bytes: &[u8],
    loader: &mut dyn FileLoader,
    opts: &ValidateOptions,
    select: &(dyn Fn(&CheckedLine<'_>) -> bool + Sync),
    sink: &mut dyn FnMut(&CheckedLine<'_>),
) -> FileVerdict {
    let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let split = if two_cores && bytes.len() >= PARALLEL_FROM {
        parallel_split(bytes, Dialect::for_version(opts.version))
    } else {
        None
    };
    check_problems_split(name, bytes, split, loader, opts, select, sink)
}

/// [`check_problems`] with the second half from `split` on (if any) on a
/// second thread.
fn check_problems_split(
    name: &str,
    bytes: &[u8],
    split: Option<usize>,
    loader: &mut dyn FileLoader,
    opts: &ValidateOptions,
    select: &(dyn Fn(&CheckedLine<'_>) -> bool + Sync),
    sink: &mut dyn FnMut(&CheckedLine<'_>),
) -> FileVerdict {
    let mut problems_only = |line: &CheckedLine<'_>| {
        if select(line) {
            sink(line);
        }
    };
    let Some(split) = split else {
        return check_bytes(name, bytes, loader, opts, &mut problems_only);
    };
    let (first, second) = bytes.split_at(split);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| SecondHalf::check(name, second, opts, select));
        let mut w = Walker::new(opts, loader, &mut problems_only);
        let next_line = w.tokenize_lines(name, first, 1, 0, &mut Out::Emit);
        match worker.join() {
            Ok(Some(half)) => {
                let offset = next_line - 1;
                for l in &half.lines {
                    (w.sink)(&CheckedLine {
                        file_name: name,
                        line_number: l.line_number + offset,
                        top_line: l.top_line + offset,
                        position: (l.position.0 + offset, l.position.1),
                        rule_number: l.rule_number.map(|n| n + w.rule_number),
                        verdict: &l.verdict,
                    });
                }
                w.rule_number += half.rules;
                w.entries += half.entries;
                w.ok &= half.ok;
            }
            // it read other files (or failed): check it here, in order
            _ => {
                w.tokenize_lines(name, second, next_line, 0, &mut Out::Emit);
            }
        }
        w.finish(name)
    })
}

/// Where a file can be cut in two halves that the server reads the same
/// way on their own: just after a newline near the middle that ends a
/// logical line (the physical line before it does not continue with a
/// backslash). Only for a file without NUL byte: a NUL can make the server
/// append the next physical line, depending on its read buffer's state.
pub(crate) fn parallel_split(bytes: &[u8], dialect: Dialect) -> Option<usize> {
    if memchr::memchr(0, bytes).is_some() {
        return None;
    }
    split_from(bytes, bytes.len() / 2, dialect)
}

/// The first place at or after `from` where [`parallel_split`] may cut
/// (looking at no more than a thousand lines).
pub(crate) fn split_from(bytes: &[u8], mut from: usize, dialect: Dialect) -> Option<usize> {
    for _ in 0..1000 {
        let nl = from + memchr::memchr(b'\n', &bytes[from..])?;
        let line_start = memchr::memrchr(b'\n', &bytes[..nl]).map_or(0, |i| i + 1);
        let mut line = &bytes[line_start..nl];
        while let [rest @ .., b'\r' | b'\n'] = line {
            line = rest;
        }
        if !(dialect.continuations && line.ends_with(b"\\")) {
            return Some(nl + 1).filter(|&at| at < bytes.len());
        }
        from = nl + 1;
    }
    None
}

/// What the second thread found in its half: the lines with a message
/// (line and rule numbers counted from the half's start) and the counts.
struct SecondHalf {
    lines: Vec<OwnedCheckedLine>,
    rules: u32,
    entries: usize,
    ok: bool,
}

struct OwnedCheckedLine {
    line_number: u32,
    top_line: u32,
    position: (u32, u32),
    rule_number: Option<u32>,
    verdict: LineVerdict,
}

impl SecondHalf {
    /// `None` when the half reads other files: then only the first thread
    /// may check it, in order, with the caller's loader.
    fn check(
        name: &str,
        bytes: &[u8],
        opts: &ValidateOptions,
        select: &(dyn Fn(&CheckedLine<'_>) -> bool + Sync),
    ) -> Option<SecondHalf> {
        let mut lines = Vec::new();
        let mut keep = |line: &CheckedLine<'_>| {
            if select(line) {
                lines.push(OwnedCheckedLine {
                    line_number: line.line_number,
                    top_line: line.top_line,
                    position: line.position,
                    rule_number: line.rule_number,
                    verdict: line.verdict.clone(),
                });
            }
        };
        let mut loader = Refuse { asked: false };
        let mut w = Walker::new(opts, &mut loader, &mut keep);
        w.tokenize_file(name, bytes, 0, &mut Out::Emit);
        let (rules, entries, ok) = (w.rule_number, w.entries, w.ok);
        drop(w);
        (!loader.asked).then_some(SecondHalf {
            lines,
            rules,
            entries,
            ok,
        })
    }
}

/// A loader that notes it was asked for a file.
struct Refuse {
    asked: bool,
}

impl FileLoader for Refuse {
    fn read_file(&mut self, _: &str) -> io::Result<Vec<u8>> {
        self.asked = true;
        Err(io::Error::from_raw_os_error(2))
    }
    fn read_dir(&mut self, _: &str) -> io::Result<Vec<DirEntry>> {
        self.asked = true;
        Err(io::Error::from_raw_os_error(2))
    }
}

/// Read and check a file from disk (includes read from disk too).
pub fn check_path(
    path: &Path,
    opts: &ValidateOptions,
    sink: &mut dyn FnMut(&CheckedLine<'_>),
) -> io::Result<FileVerdict> {
    let bytes = std::fs::read(path)?;
    let name = path.to_string_lossy();
    Ok(check_bytes(&name, &bytes, &mut FsLoader, opts, sink))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::lint_bytes;
    use crate::PgVersion;
    use proptest::prelude::*;

    /// `/d/extra.conf` (rules, one bad) and `/d/users` (names).
    struct TwoFiles;

    impl FileLoader for TwoFiles {
        fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
            match path {
                "/d/extra.conf" => Ok(b"local all all trust\nlocal all all bogus\n".to_vec()),
                "/d/users" => Ok(b"alice, bob\n".to_vec()),
                _ => Err(io::Error::from_raw_os_error(2)),
            }
        }
        fn read_dir(&mut self, _: &str) -> io::Result<Vec<DirEntry>> {
            Err(io::Error::from_raw_os_error(2))
        }
    }

    type Seen = (String, u32, u32, (u32, u32), Option<u32>, LineVerdict);

    fn seen(line: &CheckedLine<'_>) -> Seen {
        let l = line;
        (
            l.file_name.to_string(),
            l.line_number,
            l.top_line,
            l.position,
            l.rule_number,
            l.verdict.clone(),
        )
    }

    /// The lines with a message and the verdict, as `check_bytes` gives
    /// them, and as `check_problems_split` gives them cut at `split`.
    fn both(text: &[u8], split: usize, opts: &ValidateOptions) -> [(Vec<Seen>, FileVerdict); 2] {
        let mut all = Vec::new();
        let v = check_bytes("/d/pg_hba.conf", text, &mut TwoFiles, opts, &mut |l| {
            if l.verdict.message.is_some() {
                all.push(seen(l));
            }
        });
        let mut halves = Vec::new();
        let h = check_problems_split(
            "/d/pg_hba.conf",
            text,
            Some(split),
            &mut TwoFiles,
            opts,
            &|l| l.verdict.message.is_some(),
            &mut |l| halves.push(seen(l)),
        );
        [(all, v), (halves, h)]
    }

    /// Lines of every kind around the cut: rules good and bad, warnings,
    /// a message without error (a numbered row that does not load),
    /// comments, CRLF, continuations, quotes, `@file` and `include` (which
    /// send the second half back to the first thread).
    const LINES: &[&str] = &[
        "host all all 10.0.0.0/8 md5\n",
        "hostssl db u 127.1/32 scram-sha-256\n",
        "host all all 10.0.0.0/33 md5\n",
        "local all all bogus\n",
        "local all\n",
        "host \"quoted db\" all .example.com trust\n",
        "# comment\n",
        "\n",
        "local all all peer map=m\r\n",
        "local all \\\n",
        "all trust\n",
        "local all +grp reject\n",
        "local all @users trust\n",
        "include extra.conf\n",
        "hostgssenc all all all trust\n",
        "host all all fe80::1%nosuchif/64 md5\n",
        "hostssl all all all md5 clientcert=bogus\n",
    ];

    proptest! {
        /// Checking the second half on its own thread changes nothing:
        /// same messages (line and rule numbers included), same verdict,
        /// wherever the file is cut at a line end that ends a logical line.
        #[test]
        fn two_halves_say_what_one_pass_says(
            picks in proptest::collection::vec(0..LINES.len(), 1..40),
            cut in 0.0f64..1.0,
            major in 13u32..=18,
            ssl in any::<bool>(),
        ) {
            let text: Vec<u8> = picks.iter().flat_map(|&i| LINES[i].bytes()).collect();
            let mut opts = ValidateOptions::for_version(PgVersion::new(major).unwrap());
            opts.build.ssl = ssl;
            opts.build.gssapi = false;
            // the cut: the first place from there where a big file may be cut
            let from = ((text.len() as f64) * cut) as usize;
            let split = split_from(&text, from, Dialect::for_version(opts.version));
            prop_assume!(split.is_some());
            let [one, two] = both(&text, split.unwrap(), &opts);
            prop_assert_eq!(one, two);
        }
    }

    #[test]
    fn split_is_after_a_line_end_near_the_middle_that_ends_a_logical_line() {
        let d16 = Dialect::for_version(PgVersion::V16);
        let d13 = Dialect::for_version(PgVersion::V13);
        // the middle falls in "local all \\": 14+ cut after the next line
        let text = b"local all all trust\nlocal all \\\nall trust\nlocal all all peer\n";
        let cut = parallel_split(text, d16).unwrap();
        assert_eq!(&text[cut..], b"local all all peer\n");
        let cut = parallel_split(text, d13).unwrap();
        assert_eq!(&text[cut..], b"all trust\nlocal all all peer\n");
        // a NUL anywhere: no cut; nothing after the last line end: no cut
        assert_eq!(
            parallel_split(b"local all all trust\nlocal\0 all all peer\n", d16),
            None
        );
        assert_eq!(parallel_split(b"local all all trust\n", d16), None);
    }

    /// A file with `include` in its second half: the thread's check is
    /// thrown away, and the first thread's gives the included file's lines
    /// in order.
    #[test]
    fn second_half_with_include_is_checked_in_order() {
        let text = b"local all all trust\nlocal all all bogus1\ninclude extra.conf\nlocal all all bogus2\n";
        let opts = ValidateOptions::for_version(PgVersion::V16);
        let [one, two] = both(text, 41, &opts);
        assert_eq!(one, two);
        let places: Vec<(String, u32)> = two.0.iter().map(|s| (s.0.clone(), s.1)).collect();
        let main = "/d/pg_hba.conf".to_string();
        assert_eq!(
            places,
            vec![(main.clone(), 2), ("/d/extra.conf".into(), 2), (main, 4)]
        );
        // an included line's top line is the include directive's
        let tops: Vec<u32> = two.0.iter().map(|s| s.2).collect();
        assert_eq!(tops, vec![2, 3, 4]);
    }

    /// `/d/sub` is a directory, `/d/users` a file naming `bob`.
    struct SubIsDir;

    impl FileLoader for SubIsDir {
        fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
            match path {
                "/d/sub" => Err(io::Error::from_raw_os_error(21)),
                "/d/users" => Ok(b"bob\n".to_vec()),
                _ => Err(io::Error::from_raw_os_error(2)),
            }
        }
        fn read_dir(&mut self, _: &str) -> io::Result<Vec<DirEntry>> {
            Err(io::Error::from_raw_os_error(2))
        }
    }

    /// Lints `/d/pg_hba.conf` holding `text` for version `v`, with
    /// [`SubIsDir`]'s files around it.
    fn lint_in_d(text: &[u8], v: PgVersion) -> crate::LintReport {
        lint_bytes(
            "/d/pg_hba.conf",
            text,
            &mut SubIsDir,
            &ValidateOptions::for_version(v),
        )
    }

    /// Regression (known-lint-bugs `inc-file-is-dir`,
    /// `inc-if-exists-dir-as-file`): including a directory only logs "could
    /// not read file" on 16+; no row, and the file loads.
    #[test]
    fn include_of_a_directory_is_logged_not_an_error() {
        let text = "local all all trust\ninclude sub\ninclude_if_exists sub\n";
        for v in [PgVersion::V16, PgVersion::V17, PgVersion::V18] {
            let report = lint_in_d(text.as_bytes(), v);
            assert_eq!(report.rows.len(), 1, "{v}");
            assert!(report.verdict.loads, "{v}");
            // the server's context: "line 1 of configuration file" sub
            let logged: Vec<(&str, u32, u32, &str)> = report
                .verdict
                .logged
                .iter()
                .map(|p| (p.file_name.as_str(), p.line, p.column, p.message.as_str()))
                .collect();
            let msg = "could not read file \"/d/sub\": Is a directory";
            assert_eq!(logged, vec![("/d/sub", 1, 1, msg); 2], "{v}");
            assert!(report.diagnostics.iter().all(|d| d.warning), "{v}");
            assert_eq!(report.diagnostics.len(), 2, "{v}");
        }
    }

    /// An `@file` that is a directory: 14+ read it as empty (the failed read
    /// ends the file without a line), 13 makes the failed read the line's
    /// error.
    #[test]
    fn at_file_that_is_a_directory() {
        let text = "local all @sub,@users trust\n";
        for v in [
            PgVersion::V14,
            PgVersion::V15,
            PgVersion::V16,
            PgVersion::V18,
        ] {
            let report = lint_in_d(text.as_bytes(), v);
            assert_eq!(report.rows.len(), 1, "{v}");
            assert_eq!(report.rows[0].error, None, "{v}");
            assert_eq!(
                report.rows[0].user_name,
                Some(vec!["bob".to_string()]),
                "{v}"
            );
            assert_eq!(report.verdict.logged.len(), 1, "{v}");
            assert_eq!(report.verdict.logged[0].file_name, "/d/sub", "{v}");
            // a field of just the directory vanishes (checked on 15-18:
            // pg_hba_file_rules says the same)
            let short = lint_in_d(b"local @sub all trust\n", v);
            assert_eq!(
                short.rows[0].error.as_deref(),
                Some("end-of-line before authentication method"),
                "{v}"
            );
        }
        let report = lint_in_d(text.as_bytes(), PgVersion::V13);
        assert_eq!(
            report.rows[0].error.as_deref(),
            Some("could not read file \"/d/sub\": Is a directory")
        );
        assert!(!report.verdict.loads);
    }

    #[test]
    fn paths_like_the_server() {
        assert_eq!(canonicalize_path("/a//b/./c/../d/"), "/a/b/d");
        assert_eq!(canonicalize_path("/../a"), "/a");
        assert_eq!(
            absolute_config_location("x.conf", "/etc/pg/pg_hba.conf"),
            "/etc/pg/x.conf"
        );
        assert_eq!(
            absolute_config_location("../x", "/etc/pg/pg_hba.conf"),
            "/etc/x"
        );
        assert_eq!(
            absolute_config_location("/abs//x", "/etc/pg/pg_hba.conf"),
            "/abs//x"
        );
    }
}
