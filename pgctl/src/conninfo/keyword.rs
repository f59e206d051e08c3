//! The connection keywords libpq 17 knows, in libpq's own order.

use std::fmt;
use std::str::FromStr;

macro_rules! keywords {
    ($( $variant:ident => $name:literal, $env:expr, $secret:literal; )*) => {
        /// A connection keyword known to libpq 17 (`PQconndefaults()` lists
        /// exactly these, in this order). Anything else is rejected by the parser,
        /// as libpq rejects it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Keyword {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Keyword {
            /// Every keyword, in libpq's order (the order of `PQconninfoOptions`).
            pub const ALL: &'static [Keyword] = &[$(Keyword::$variant),*];

            /// The keyword as written in a connection string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Keyword::$variant => $name,)*
                }
            }

            /// The environment variable libpq falls back to when the string does
            /// not set this keyword, if any.
            pub fn env_var(self) -> Option<&'static str> {
                match self {
                    $(Keyword::$variant => $env,)*
                }
            }

            /// Whether the value is a secret (libpq marks these with display
            /// character `*`): `password` and `sslpassword`. Such values are
            /// shown as `********` by every `Display`/`Debug` of this module.
            pub fn is_secret(self) -> bool {
                match self {
                    $(Keyword::$variant => $secret,)*
                }
            }
        }
    };
}

keywords! {
    Service => "service", Some("PGSERVICE"), false;
    User => "user", Some("PGUSER"), false;
    Password => "password", Some("PGPASSWORD"), true;
    Passfile => "passfile", Some("PGPASSFILE"), false;
    ChannelBinding => "channel_binding", Some("PGCHANNELBINDING"), false;
    ConnectTimeout => "connect_timeout", Some("PGCONNECT_TIMEOUT"), false;
    Dbname => "dbname", Some("PGDATABASE"), false;
    Host => "host", Some("PGHOST"), false;
    Hostaddr => "hostaddr", Some("PGHOSTADDR"), false;
    Port => "port", Some("PGPORT"), false;
    ClientEncoding => "client_encoding", Some("PGCLIENTENCODING"), false;
    Options => "options", Some("PGOPTIONS"), false;
    ApplicationName => "application_name", Some("PGAPPNAME"), false;
    FallbackApplicationName => "fallback_application_name", None, false;
    Keepalives => "keepalives", None, false;
    KeepalivesIdle => "keepalives_idle", None, false;
    KeepalivesInterval => "keepalives_interval", None, false;
    KeepalivesCount => "keepalives_count", None, false;
    TcpUserTimeout => "tcp_user_timeout", None, false;
    Sslmode => "sslmode", Some("PGSSLMODE"), false;
    Sslnegotiation => "sslnegotiation", Some("PGSSLNEGOTIATION"), false;
    Sslcompression => "sslcompression", Some("PGSSLCOMPRESSION"), false;
    Sslcert => "sslcert", Some("PGSSLCERT"), false;
    Sslkey => "sslkey", Some("PGSSLKEY"), false;
    Sslcertmode => "sslcertmode", Some("PGSSLCERTMODE"), false;
    Sslpassword => "sslpassword", None, true;
    Sslrootcert => "sslrootcert", Some("PGSSLROOTCERT"), false;
    Sslcrl => "sslcrl", Some("PGSSLCRL"), false;
    Sslcrldir => "sslcrldir", Some("PGSSLCRLDIR"), false;
    Sslsni => "sslsni", Some("PGSSLSNI"), false;
    Requirepeer => "requirepeer", Some("PGREQUIREPEER"), false;
    RequireAuth => "require_auth", Some("PGREQUIREAUTH"), false;
    SslMinProtocolVersion => "ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION"), false;
    SslMaxProtocolVersion => "ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION"), false;
    Gssencmode => "gssencmode", Some("PGGSSENCMODE"), false;
    Krbsrvname => "krbsrvname", Some("PGKRBSRVNAME"), false;
    Gsslib => "gsslib", Some("PGGSSLIB"), false;
    Gssdelegation => "gssdelegation", Some("PGGSSDELEGATION"), false;
    Replication => "replication", None, false;
    TargetSessionAttrs => "target_session_attrs", Some("PGTARGETSESSIONATTRS"), false;
    LoadBalanceHosts => "load_balance_hosts", Some("PGLOADBALANCEHOSTS"), false;
}

/// The number of keywords libpq 17 knows.
pub(crate) const KEYWORD_COUNT: usize = Keyword::ALL.len();

impl Keyword {
    /// Position in [`Keyword::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Looks a keyword up by its exact (case-sensitive) name, as libpq does.
    pub fn lookup(name: &str) -> Option<Keyword> {
        Keyword::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`Keyword::from_str`]: libpq does not know this keyword.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection option \"{0}\"")]
pub struct UnknownKeyword(pub String);

impl FromStr for Keyword {
    type Err = UnknownKeyword;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Keyword::lookup(s).ok_or_else(|| UnknownKeyword(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, k) in Keyword::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(Keyword::lookup(k.as_str()), Some(*k));
        }
        assert_eq!(KEYWORD_COUNT, 41);
    }

    #[test]
    fn lookup_is_case_sensitive_like_libpq() {
        assert_eq!(Keyword::lookup("HOST"), None);
        assert_eq!(Keyword::lookup("requiressl"), None);
    }
}
