//! Hermetic examples of the connection-string parser and builder (the full
//! comparison with libpq 17 is `conninfo_libpq17.rs`).

use pgctl::conninfo::{ConnInfo, Keyword, ParseErrorKind};

fn parse(s: &str) -> ConnInfo {
    ConnInfo::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn err(s: &str) -> (ParseErrorKind, String) {
    let e = ConnInfo::parse(s).expect_err(s);
    (e.kind(), e.to_string())
}

#[test]
fn uri_multi_host_keeps_empty_port_entries() {
    let info = parse("postgresql://h1,h2:5433,[::1]/db");
    assert_eq!(info.get(Keyword::Host), Some("h1,h2,::1"));
    assert_eq!(info.get(Keyword::Port), Some(",5433,"));
    assert_eq!(info.get(Keyword::Dbname), Some("db"));
}

#[test]
fn uri_unix_socket_forms() {
    let a = parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db");
    let b = parse("postgresql:///db?host=/var/run/postgresql");
    assert_eq!(a, b);
    assert_eq!(a.get(Keyword::Host), Some("/var/run/postgresql"));
}

#[test]
fn uri_ssl_true_means_sslmode_require_but_ssl_false_is_rejected() {
    assert_eq!(
        parse("postgres://h?ssl=true").get(Keyword::Sslmode),
        Some("require")
    );
    assert_eq!(
        err("postgres://h?ssl=false"),
        (
            ParseErrorKind::InvalidUriParameter,
            "invalid URI query parameter: \"ssl\"".to_owned()
        )
    );
}

#[test]
fn bad_percent_escapes_are_rejected() {
    assert_eq!(
        err("postgresql://h/%zz").0,
        ParseErrorKind::InvalidPercentEncoding
    );
    assert_eq!(
        err("postgresql://h/a%00b"),
        (
            ParseErrorKind::PercentEncodedNul,
            "forbidden value %00 in percent-encoded value: \"a%00b\"".to_owned()
        )
    );
}

#[test]
fn percent_decoded_non_utf8_is_rejected_unlike_libpq() {
    // libpq keeps raw bytes; our values are strings. Documented divergence.
    assert_eq!(err("postgresql://h/%ff").0, ParseErrorKind::NotUtf8);
}

#[test]
fn keyword_value_quotes_and_escapes() {
    let info = parse(r"password='it\'s \\ fine' dbname=a\ b user=''");
    assert_eq!(info.get(Keyword::Password), Some(r"it's \ fine"));
    assert_eq!(info.get(Keyword::Dbname), Some("a b"));
    assert_eq!(info.get(Keyword::User), Some(""));
    assert_eq!(ConnInfo::parse(&info.to_keyword_value()).unwrap(), info);
}

#[test]
fn values_are_verbatim_bad_sslmode_is_not_a_parse_error() {
    let info = parse("sslmode=bogus port=notaport connect_timeout=x");
    assert_eq!(info.get(Keyword::Sslmode), Some("bogus"));
    assert_eq!(info.get(Keyword::Port), Some("notaport"));
}

#[test]
fn unknown_keywords_are_rejected_with_libpq_text() {
    assert_eq!(
        err("host=a bogus=1"),
        (
            ParseErrorKind::InvalidOption,
            "invalid connection option \"bogus\"".to_owned()
        )
    );
    assert_eq!(
        err("host"),
        (
            ParseErrorKind::MissingEquals,
            "missing \"=\" after \"host\" in connection info string".to_owned()
        )
    );
}

#[test]
fn error_offsets_point_into_the_input() {
    let e = ConnInfo::parse("host=a  bogus=1").unwrap_err();
    assert_eq!(e.offset(), 8);
    let e = ConnInfo::parse("postgresql://[::1]x").unwrap_err();
    assert_eq!(e.offset(), 18);
    assert!(e.to_string().contains("at position 19"));
}

#[test]
fn nul_character_is_rejected() {
    assert_eq!(err("host=a\0b").0, ParseErrorKind::NulCharacter);
}

#[test]
fn uri_rendering_puts_uneven_host_port_lists_in_the_query() {
    let info = parse("host=a,b port=5432 dbname=x");
    assert_eq!(info.to_uri(), "postgresql:///x?host=a%2Cb&port=5432");
    let info = parse("host=a,b port=1,2");
    assert_eq!(info.to_uri(), "postgresql://a:1,b:2");
    let info = parse("host=::1 port=5432");
    assert_eq!(info.to_uri(), "postgresql://[::1]:5432");
}

#[test]
fn display_redacts_both_secrets() {
    let info = parse("password=hunter2 sslpassword=keypass host=h");
    let shown = format!("{info} {info:?} {}", info.redacted_uri());
    assert!(
        !shown.contains("hunter2") && !shown.contains("keypass"),
        "{shown}"
    );
    assert_eq!(
        info.to_string(),
        "password=******** host=h sslpassword=********"
    );
}

/// Regression guard: an unquoted password with a space in it
/// (`password=correct horse`) made libpq's wording quote the rest of the
/// password (`missing "=" after "horse"`); that word is now shown as
/// `********`, while ordinary keyword errors keep libpq's text.
#[test]
fn error_after_an_unquoted_password_does_not_quote_the_rest_of_it() {
    for (s, kind) in [
        (
            "host=h password=correct horse battery",
            ParseErrorKind::MissingEquals,
        ),
        (
            "password=correct horse=battery",
            ParseErrorKind::InvalidOption,
        ),
        ("sslpassword=correct\thorse", ParseErrorKind::MissingEquals),
    ] {
        let (k, message) = err(s);
        assert_eq!(k, kind, "{s}");
        assert!(!message.contains("horse"), "{s}: {message}");
        assert!(message.contains("\"********\""), "{s}: {message}");
    }
    let (_, message) = err("password='correct' horse");
    assert_eq!(
        message,
        "missing \"=\" after \"horse\" in connection info string"
    );
    let (_, message) = err("user=correct horse");
    assert_eq!(
        message,
        "missing \"=\" after \"horse\" in connection info string"
    );
}

/// Guards the leak noted for issue 4: libpq reads `app:pa/ss@db/app` as host
/// `app`, port `pa`, database `ss@db/app`, and its "invalid port" error then
/// quotes part of the password. `parse` stays libpq-exact; `parse_checked`
/// (what the binaries use) refuses such strings without quoting them.
#[test]
fn parse_checked_refuses_ambiguous_credentials_without_quoting_them() {
    for (uri, at) in [
        ("postgresql://app:Zq/x9@db.example/app", 22),
        ("postgres://app:Zq@x9@db.example:5432/app", 20),
        ("postgresql://app:Zq@x9/Yk@db.example/app", 25),
        ("postgresql://db.example:5432/my@db", 31),
        ("postgresql://app:Zq@db.example/my@db", 33),
    ] {
        assert!(ConnInfo::parse(uri).is_ok(), "{uri}: libpq accepts it");
        let e = ConnInfo::parse_checked(uri).expect_err(uri);
        assert_eq!(e.kind(), ParseErrorKind::AmbiguousUriCredentials, "{uri}");
        assert_eq!(e.offset(), at, "{uri}");
        let message = e.to_string();
        for secret in ["Zq", "x9", "Yk"] {
            assert!(!message.contains(secret), "{uri}: {message}");
        }
        assert!(
            message.contains("%40") && message.contains("%2F"),
            "{message}"
        );
    }
    for uri in [
        "postgresql://app:pa%2Fss@db.example/app",
        "postgresql://app:p%40ss@db.example:5432/app",
        "postgresql://db.example:5432/my%40db",
        "postgresql://app@db.example/app?options=-c%20x@y",
        "postgresql://app:secret@db.example/app?host=h@x",
        "postgresql:///app",
        "host=db.example password=p@ss/word",
    ] {
        assert_eq!(
            ConnInfo::parse_checked(uri).ok(),
            ConnInfo::parse(uri).ok(),
            "{uri}"
        );
        assert!(ConnInfo::parse_checked(uri).is_ok(), "{uri}");
    }
}
