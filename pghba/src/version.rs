//! PostgreSQL major versions and server build features that change how
//! `pg_hba.conf` is read.

use std::fmt;

use crate::address::InterfaceNames;

/// A PostgreSQL major version this crate knows the `pg_hba.conf` grammar of
/// (13 to 18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgVersion(u32);

/// The requested major version is outside 13..=18.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported PostgreSQL major version {0} (supported: 13 to 18)")]
pub struct UnsupportedVersion(pub u32);

impl PgVersion {
    /// PostgreSQL 13.
    pub const V13: PgVersion = PgVersion(13);
    /// PostgreSQL 14.
    pub const V14: PgVersion = PgVersion(14);
    /// PostgreSQL 15.
    pub const V15: PgVersion = PgVersion(15);
    /// PostgreSQL 16.
    pub const V16: PgVersion = PgVersion(16);
    /// PostgreSQL 17.
    pub const V17: PgVersion = PgVersion(17);
    /// PostgreSQL 18.
    pub const V18: PgVersion = PgVersion(18);
    /// The newest version this crate knows.
    pub const LATEST: PgVersion = PgVersion(18);

    /// Every supported version, oldest first.
    pub const ALL: [PgVersion; 6] = [
        Self::V13,
        Self::V14,
        Self::V15,
        Self::V16,
        Self::V17,
        Self::V18,
    ];

    /// The version for a major number such as `15`.
    pub fn new(major: u32) -> Result<Self, UnsupportedVersion> {
        if (13..=18).contains(&major) {
            Ok(PgVersion(major))
        } else {
            Err(UnsupportedVersion(major))
        }
    }

    /// The major number, e.g. `16`.
    pub fn major(self) -> u32 {
        self.0
    }

    /// Backslash continuation lines (14+).
    pub fn has_continuations(self) -> bool {
        self.0 >= 14
    }

    /// A fixed line buffer (13 only: 20480-byte lines; 14 reads lines of any
    /// length into a growable buffer).
    pub fn has_length_limits(self) -> bool {
        self.0 <= 13
    }

    /// A fixed token buffer in `next_token()` (13, 14 and 15: 10240 bytes,
    /// so a token of 10240 bytes or more is "authentication file token too
    /// long"; 16 collects tokens into a growable buffer).
    pub fn has_token_length_limit(self) -> bool {
        self.0 <= 15
    }

    /// `include`, `include_if_exists`, `include_dir` records (16+).
    pub fn has_include_directives(self) -> bool {
        self.0 >= 16
    }

    /// Regular expressions (`/...`) in the database and user fields (16+).
    pub fn has_regex(self) -> bool {
        self.0 >= 16
    }

    /// The `clientname` option (14+).
    pub fn has_clientname(self) -> bool {
        self.0 >= 14
    }

    /// The `oauth` method (18+).
    pub fn has_oauth(self) -> bool {
        self.0 >= 18
    }
}

impl Default for PgVersion {
    fn default() -> Self {
        Self::LATEST
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Optional features a PostgreSQL server may have been built without.
///
/// The default is a full build like Debian's (all `true`). The npm
/// `@embedded-postgres` builds lack LDAP, GSSAPI and PAM. SSPI and BSD
/// authentication never exist on Linux and are always reported as not
/// supported by the build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BuildFeatures {
    /// Built with SSL (OpenSSL).
    pub ssl: bool,
    /// Built with GSSAPI.
    pub gssapi: bool,
    /// Built with LDAP.
    pub ldap: bool,
    /// Built with PAM.
    pub pam: bool,
}

impl Default for BuildFeatures {
    fn default() -> Self {
        BuildFeatures {
            ssl: true,
            gssapi: true,
            ldap: true,
            pam: true,
        }
    }
}

/// Everything the server's verdict on a `pg_hba.conf` depends on besides the
/// file itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidateOptions {
    /// The server's major version.
    pub version: PgVersion,
    /// The server's build features.
    pub build: BuildFeatures,
    /// The `ssl` setting (`hostssl` lines warn when it is off).
    pub ssl_enabled: bool,
    /// The `oauth_validator_libraries` setting (18+; empty by default, which
    /// makes every `oauth` line an error).
    pub oauth_validator_libraries: Vec<String>,
    /// The network interfaces of the server's machine, for IPv6 scope names
    /// such as `fe80::1%eth0` (default: this machine's).
    pub interfaces: InterfaceNames,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            version: PgVersion::LATEST,
            build: BuildFeatures::default(),
            ssl_enabled: true,
            oauth_validator_libraries: Vec::new(),
            interfaces: InterfaceNames::System,
        }
    }
}

impl ValidateOptions {
    /// Defaults (full build, `ssl = on`) for the given version.
    pub fn for_version(version: PgVersion) -> Self {
        ValidateOptions {
            version,
            ..Default::default()
        }
    }
}
