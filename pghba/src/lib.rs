#![warn(missing_docs)]
//! Lossless `pg_hba.conf` documents, read exactly as PostgreSQL 13 to 18
//! read them.
//!
//! ```
//! use pghba::HbaDocument;
//!
//! let text = b"# TYPE  DATABASE  USER  ADDRESS       METHOD\r\n\
//!              local   all       all                 peer\r\n\
//!              host    app       \"app\" 10.0.0.0/8    scram-sha-256 # web\r\n";
//! let doc = HbaDocument::parse(text);
//! // Printing gives back every byte, comments, CRLF and spacing included.
//! assert_eq!(doc.to_bytes(), text);
//! let (_, host) = doc.records().nth(1).unwrap();
//! assert_eq!(host.field(2).unwrap()[0].text(), "app");
//! assert!(host.field(2).unwrap()[0].quoted());
//! ```
//!
//! The crate is organised like the server's code:
//!
//! - [`parser`]: logical lines (continuations, NUL bytes, PostgreSQL 13's
//!   fixed buffers) and tokens (quotes, comma lists, comments), as
//!   `tokenize_auth_file()` and `next_token()` do;
//! - [`document`]: the lossless, editable model built on them;
//! - [`rule`]: the typed record ([`HbaRule`]) and the server's checks on
//!   one line (`parse_hba_line()`), with [`address`] reading addresses like
//!   `getaddrinfo(AI_NUMERICHOST)`;
//! - [`check`]: the whole-file verdict, `@file` and include directives
//!   through a [`FileLoader`];
//! - [`lint`]: `pg_hba_file_rules` rows and diagnostics;
//! - [`version`]: the major version and build features the verdict
//!   depends on.
//!
//! Checking a file as PostgreSQL 15 would:
//!
//! ```
//! use pghba::{lint_bytes, NoFiles, PgVersion, ValidateOptions};
//!
//! let text = b"local all all ident\nhost all all 127.1/8 md5\nhost all all ::1\n";
//! let report = lint_bytes("/etc/pg_hba.conf", text, &mut NoFiles, &ValidateOptions::for_version(PgVersion::V15));
//! assert!(!report.verdict.loads);
//! assert_eq!(report.rows[0].auth_method.as_deref(), Some("peer"));
//! assert_eq!(report.rows[1].address.as_deref(), Some("127.0.0.1"));
//! assert_eq!(report.rows[1].netmask.as_deref(), Some("255.0.0.0"));
//! assert_eq!(report.rows[2].error.as_deref(), Some("end-of-line before netmask specification"));
//! assert_eq!(report.diagnostics[0].to_string(), "/etc/pg_hba.conf:3:14: end-of-line before netmask specification");
//! ```

pub mod address;
pub mod check;
pub mod document;
pub mod edit;
pub mod lint;
pub mod managed_block;
pub mod matcher;
pub mod parser;
mod regex_check;
pub mod rule;
pub mod shadow;
pub mod version;

pub use address::InterfaceNames;
pub use check::{
    check_bytes, check_path, check_problems, check_selected, CheckedLine, DirEntry, FileLoader,
    FileVerdict, FsLoader, LoggedProblem, NoFiles, PARALLEL_FROM,
};
pub use document::{EditError, HbaDocument, IncludeKind, Line, LineKind, TokenRef};
pub use edit::{quote_name, BlockError, BlockRange};
pub use lint::{lint_bytes, Diagnostic, LintReport, RuleRow};
pub use rule::{AuthMethod, AuthToken, ConnectionType, HbaAddress, HbaRule, LineVerdict};
pub use version::{BuildFeatures, PgVersion, UnsupportedVersion, ValidateOptions};
