//! libpq-compatible connection strings: parsing, building, resolution.
//!
//! - [`ConnInfo::parse`] reads both of libpq's forms, `postgresql://` /
//!   `postgres://` URIs and `key=value` strings, accepting and rejecting
//!   exactly what libpq 17's `PQconninfoParse` does and yielding the same
//!   values (checked against libpq 17 itself by `tests/testsuite/conninfo_libpq17.rs`).
//!   Like libpq it checks syntax and keywords only.
//! - [`ConnInfo`] renders either form ([`ConnInfo::to_uri`],
//!   [`ConnInfo::to_keyword_value`]); its `Display`/`Debug` never show a
//!   password.
//! - [`resolve()`] (separately) fills in the `PG*` environment, defaults and
//!   `.pgpass` and checks values the way libpq does before connecting,
//!   producing [`ConnectParams`] (defined here, used by
//!   [`crate::connect`]); [`tokio_config`] turns one
//!   of its hosts into a `tokio_postgres::Config`.
//!
//! Nothing here needs tokio.
//!
//! ```
//! use pgctl::conninfo::{ConnInfo, Keyword};
//!
//! let info = ConnInfo::parse("host=/var/run/postgresql port=5433 user='o\\'brien'").unwrap();
//! assert_eq!(info.get(Keyword::User), Some("o'brien"));
//! assert_eq!(
//!     info.to_uri(),
//!     "postgresql://o%27brien@%2Fvar%2Frun%2Fpostgresql:5433"
//! );
//!
//! let err = ConnInfo::parse("postgresql://h/db?sslmod=require").unwrap_err();
//! assert_eq!(err.to_string(), "invalid URI query parameter: \"sslmod\"");
//! ```

mod info;
mod keyword;
mod params;
mod parse;
mod passfile;
pub mod resolve;
mod tokio_config;

pub use info::{ConnInfo, ConnInfoBuilder, UriScheme};
pub use keyword::{Keyword, UnknownKeyword};
pub use params::{ConnectParams, HostParam, SslMode, TargetSessionAttrs};
pub use parse::{ParseError, ParseErrorKind};
pub use passfile::ResolveWarning;
pub use resolve::{
    resolve, resolve_from_process_env, Environment, MapEnvironment, ProcessEnvironment,
    ResolveError, Resolved,
};
pub use tokio_config::tokio_config;
