//! Rows of `pg_hba_file_rules` as the server shows them (hbafuncs.c), and
//! human-readable diagnostics.

use serde::Serialize;

use crate::check::{check_bytes, CheckedLine, FileLoader, FileVerdict, LoggedProblem};
use crate::version::ValidateOptions;

/// One row of `pg_hba_file_rules` (the PostgreSQL 16+ columns; for 13-15
/// the server has no `rule_number` and `file_name`, they are filled anyway).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRow {
    /// Number among lines without error; null on error rows.
    pub rule_number: Option<u32>,
    /// File the line is in.
    pub file_name: String,
    /// Line number (first physical line of a continued line).
    pub line_number: u32,
    /// Connection type.
    #[serde(rename = "type")]
    pub conn_type: Option<String>,
    /// Database names (quotes dropped, `@file` expanded).
    pub database: Option<Vec<String>>,
    /// User names (quotes dropped, `@file` expanded).
    pub user_name: Option<Vec<String>>,
    /// Address as the server prints it (`127.1` shows as `127.0.0.1`).
    pub address: Option<String>,
    /// Netmask as the server prints it.
    pub netmask: Option<String>,
    /// Method (`ident` on local records shows as `peer`).
    pub auth_method: Option<String>,
    /// Options as the server re-synthesises them.
    pub options: Option<Vec<String>>,
    /// Error, if any.
    pub error: Option<String>,
}

impl RuleRow {
    /// The row the view shows for a checked line.
    pub fn from_checked(line: &CheckedLine<'_>) -> RuleRow {
        let mut row = RuleRow {
            rule_number: line.rule_number,
            file_name: line.file_name.to_string(),
            line_number: line.line_number,
            conn_type: None,
            database: None,
            user_name: None,
            address: None,
            netmask: None,
            auth_method: None,
            options: None,
            error: line.verdict.error.clone(),
        };
        if let Some(rule) = &line.verdict.rule {
            row.conn_type = Some(rule.connection_type.as_str().to_string());
            row.database = Some(rule.databases.iter().map(|t| t.value.clone()).collect());
            row.user_name = Some(rule.users.iter().map(|t| t.value.clone()).collect());
            let (a, m) = rule.view_address();
            row.address = a;
            row.netmask = m;
            row.auth_method = Some(rule.method.as_str().to_string());
            let opts = rule.view_options();
            row.options = if opts.is_empty() { None } else { Some(opts) };
        }
        row
    }
}

/// A problem to show a person: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name.
    pub file_name: String,
    /// Physical line number.
    pub line: u32,
    /// 1-based byte column.
    pub column: u32,
    /// The server's message.
    pub message: String,
    /// The server keeps the line anyway (a warning such as `hostgssenc`
    /// on a build without GSSAPI).
    pub warning: bool,
}

impl Diagnostic {
    /// The diagnostic of a checked line, if it has a problem.
    pub fn from_checked(line: &CheckedLine<'_>) -> Option<Diagnostic> {
        let (message, _) = line.verdict.message.clone()?;
        Some(Diagnostic {
            file_name: line.file_name.to_string(),
            line: line.position.0,
            column: line.position.1,
            message,
            warning: line.verdict.loads(),
        })
    }
}

impl Diagnostic {
    /// A problem the server only logs (no row, the file still loads), as a
    /// warning.
    pub fn from_logged(problem: &LoggedProblem) -> Diagnostic {
        Diagnostic {
            file_name: problem.file_name.clone(),
            line: problem.line,
            column: problem.column,
            message: problem.message.clone(),
            warning: true,
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file_name, self.line, self.column)?;
        if self.warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Everything lint finds in a file, collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintReport {
    /// One row per reported line.
    pub rows: Vec<RuleRow>,
    /// Every problem.
    pub diagnostics: Vec<Diagnostic>,
    /// The verdict on the file.
    pub verdict: FileVerdict,
}

/// Lint a file's bytes: rows, diagnostics and verdict.
pub fn lint_bytes(
    name: &str,
    bytes: &[u8],
    loader: &mut dyn FileLoader,
    opts: &ValidateOptions,
) -> LintReport {
    let mut rows = Vec::new();
    let mut diagnostics = Vec::new();
    let verdict = check_bytes(name, bytes, loader, opts, &mut |l| {
        rows.push(RuleRow::from_checked(l));
        diagnostics.extend(Diagnostic::from_checked(l));
    });
    diagnostics.extend(verdict.logged.iter().map(Diagnostic::from_logged));
    LintReport {
        rows,
        diagnostics,
        verdict,
    }
}
