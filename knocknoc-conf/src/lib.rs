//! Lossless reading and editing of Knocknoc's `knocknoc.conf`.
//!
//! ```
//! use knocknoc_conf::{DatabaseUrl, Document, Listen};
//!
//! let text = "# Knocknoc\r\nlisten=127.0.0.1:8756   # web app\r\nCustomScripts = true\r\n";
//! let mut doc = Document::parse(text);
//! assert_eq!(doc.to_bytes(), text.as_bytes()); // byte for byte
//!
//! let settings = doc.settings()?;
//! assert_eq!(settings.listen, Some("127.0.0.1:8756".parse()?));
//!
//! doc.set_listen("[::1]:8756".parse::<Listen>()?)?;
//! doc.set_database_url(&DatabaseUrl::new("postgres://knocknoc:pa#ss@db/knocknoc")?)?;
//! assert_eq!(
//!     String::from_utf8(doc.to_bytes())?,
//!     "# Knocknoc\r\n\
//!      listen=[::1]:8756   # web app\r\n\
//!      CustomScripts = true\r\n\
//!      DatabaseURL=\"postgres://knocknoc:pa#ss@db/knocknoc\"\r\n"
//! );
//!
//! // The password never shows in Debug or Display.
//! let url = doc.settings()?.database_url.unwrap();
//! assert_eq!(url.to_string(), "postgres://knocknoc:********@db/knocknoc");
//! assert!(!format!("{doc:?}").contains("pa#ss"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The format
//!
//! One `Key = value` per line, `#` comments (a `#` inside quotes is not a
//! comment). Values are bare words (`true`/`false` are booleans, decimal
//! numbers are integers, anything else is text running to the comment or the
//! end of the line), double-quoted strings with the escapes `\"`, `\\`, `\n`,
//! `\t`, `\r` and `\uXXXX`, single-quoted literal strings, or arrays of quoted
//! strings (`["a", 'b']`). The full grammar is in the `parser` module's
//! source.
//!
//! # The model
//!
//! [`Document::parse`] accepts any bytes and never fails: a line that does
//! not follow the grammar (including one that is not UTF-8) is kept as an
//! invalid line with its error, and [`Document::to_bytes`] returns the input
//! exactly. Edits ([`Document::set`], [`Document::unset`] and the typed
//! setters) change only the line they concern; a set replaces only the
//! value's text. [`Document::settings`] is the typed view of the known keys
//! ([`Listen`], [`TrustedForwarders`], [`DatabaseUrl`]); [`Document::save`]
//! replaces the file atomically, keeping owner and mode.
//!
//! Because the file holds a password, [`Document`] has no `Display`
//! (`to_string()` would print it); its `Debug`, [`Document::redacted`] and
//! the `Debug`/`Display` of [`DatabaseUrl`] and [`Settings`] mask passwords
//! with [`redact_secrets`].

#![warn(missing_docs)]

mod document;
mod error;
pub mod file;
mod parser;
mod redact;
mod settings;
mod value;

pub use document::{
    Comment, Document, Entry, InvalidLine, Line, LineContent, LineEnding, Redacted,
};
pub use error::{
    EditError, LoadError, LoadErrorKind, ParseError, ParseErrorKind, SaveError, SaveStep,
};
pub use file::{write_atomic, MAX_FILE_SIZE, NEW_FILE_MODE, STALE_TEMP_AGE};
pub use redact::{redact_secrets, MASK};
pub use settings::{
    keys, CidrError, CidrErrorKind, DatabaseUrl, DatabaseUrlError, Listen, ListenError, Settings,
    SettingsError, SettingsErrorKind, SettingsErrors, TrustedForwarders,
};
pub use value::{Value, ValueStyle};
