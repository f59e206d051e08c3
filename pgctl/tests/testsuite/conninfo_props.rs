//! Property tests of the connection-string module: whatever the values,
//! rendering then parsing gives back the same set, and no `Display`/`Debug`
//! shows a password.

use pgctl::conninfo::{ConnInfo, Keyword, UriScheme};
use proptest::prelude::*;

fn keyword() -> impl Strategy<Value = Keyword> {
    prop::sample::select(Keyword::ALL.to_vec())
}

/// Values full of the characters both syntaxes care about.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        "[a-z:/@?&=,%'\\\\ \t\n\\[\\]#]{0,12}",
        any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
}

fn conninfo() -> impl Strategy<Value = ConnInfo> {
    prop::collection::vec((keyword(), value()), 0..8).prop_map(|pairs| {
        let mut info = ConnInfo::new();
        for (k, v) in pairs {
            info.set(k, v);
        }
        info
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn keyword_value_form_round_trips(info in conninfo()) {
        let rendered = info.to_keyword_value();
        prop_assert_eq!(ConnInfo::parse(&rendered).unwrap(), info);
    }

    #[test]
    fn uri_form_round_trips(info in conninfo()) {
        for scheme in [UriScheme::Postgresql, UriScheme::Postgres] {
            let rendered = info.to_uri_with(scheme);
            prop_assert_eq!(&ConnInfo::parse(&rendered).unwrap(), &info, "{}", rendered);
        }
    }

    #[test]
    fn multi_host_lists_round_trip(
        hosts in prop::collection::vec("[a-z0-9.:/]{0,6}", 1..4),
        ports in prop::option::of(prop::collection::vec("[0-9]{0,5}", 1..4)),
    ) {
        let mut info = ConnInfo::new();
        info.set(Keyword::Host, hosts.join(","));
        if let Some(ports) = ports {
            info.set(Keyword::Port, ports.join(","));
        }
        for rendered in [info.to_uri(), info.to_keyword_value()] {
            prop_assert_eq!(&ConnInfo::parse(&rendered).unwrap(), &info, "{}", rendered);
        }
    }

    #[test]
    fn display_and_debug_never_show_secrets(
        info in conninfo(),
        password in "[A-Za-z0-9]{6,16}",
        sslpassword in "[A-Za-z0-9]{6,16}",
    ) {
        let mut info = info;
        info.set(Keyword::Password, password.clone());
        info.set(Keyword::Sslpassword, sslpassword.clone());
        let builder = ConnInfo::builder().password(password.clone());
        let shown = format!(
            "{info} {info:?} {:?} {} {builder:?}",
            info.redacted(),
            info.redacted_uri()
        );
        // Another value may happen to contain the password text: only count
        // it as a leak when the redacted set would not show it anyway.
        let mut others = info.clone();
        others.remove(Keyword::Password);
        others.remove(Keyword::Sslpassword);
        let innocent = format!("{} {:?} {}", others.to_keyword_value(), others, others.to_uri());
        for secret in [&password, &sslpassword] {
            prop_assert!(!shown.contains(secret.as_str()) || innocent.contains(secret.as_str()));
        }
        prop_assert!(shown.contains("********"));
    }

    #[test]
    fn parse_errors_never_show_the_uri_password(
        password in "[A-Za-z0-9]{8,16}",
        tail in prop::sample::select(vec!["[::1", "[]", "[::1]x", "h?x", "h?sslmode", "h/%zz", "h?password=%zz"]),
    ) {
        let uri = format!("postgresql://user:{password}@{tail}");
        let err = ConnInfo::parse(&uri).unwrap_err();
        prop_assert!(!err.to_string().contains(&password), "{}", err);
        let debug = format!("{err:?}");
        prop_assert!(!debug.contains(&password));
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(s in any::<String>()) {
        let _ = ConnInfo::parse(&s);
        let _ = ConnInfo::parse(&format!("postgresql://{s}"));
    }
}
