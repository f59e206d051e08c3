//! The operations' error: a kind that decides the exit code at the edge, a
//! message that says what failed or what was refused, and the cause.

use std::fmt;

/// What kind of failure an operation met; the binary maps it to an exit
/// code (`Usage` is 2, the others 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad usage or input; nothing was touched.
    Usage,
    /// A safety check refused the change; nothing changed (or it was rolled
    /// back). `overridable` is true when the caller's force option passes
    /// this check.
    Refused {
        /// Whether the force option passes this check.
        overridable: bool,
    },
    /// The operation failed.
    Failed,
}

/// An operation's error, with its cause chain.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    note: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// Bad usage or input.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }

    /// A safety check that the caller's force option passes.
    pub fn refused(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Refused { overridable: true }, message)
    }

    /// A safety check that nothing passes.
    pub fn refused_always(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Refused { overridable: false }, message)
    }

    /// The operation failed.
    pub fn failed(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Failed, message)
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            note: None,
            source: None,
        }
    }

    /// Attach the cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// Adds what the operator should know about the state the failure
    /// leaves (said after the cause chain, not inside the message).
    pub(crate) fn with_note(mut self, note: &str) -> Error {
        match &mut self.note {
            Some(n) => {
                n.push(' ');
                n.push_str(note);
            }
            None => self.note = Some(note.to_string()),
        }
        self
    }

    /// What the operator should know about the state the failure leaves.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The kind, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The messages of the causes, outermost first (not this error's own).
    pub fn causes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_listed_outermost_first() {
        let io = std::io::Error::other("disk full");
        let e = Error::failed("cannot write pg_hba.conf").with_source(io);
        assert_eq!(e.to_string(), "cannot write pg_hba.conf");
        assert_eq!(e.causes(), vec!["disk full".to_string()]);
        assert_eq!(e.kind(), ErrorKind::Failed);
    }
}
