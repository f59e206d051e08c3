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
//! - [`version`]: the major version and build features the verdict
//!   depends on.

pub mod document;
pub mod parser;
pub mod version;

pub use document::{EditError, HbaDocument, IncludeKind, Line, LineKind, TokenRef};
pub use version::{BuildFeatures, PgVersion, UnsupportedVersion, ValidateOptions};
