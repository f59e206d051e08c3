//! The typed view: values, errors with line and column, redaction.

use knocknoc_conf::{
    CidrErrorKind, DatabaseUrl, Document, Listen, ListenError, SettingsError, SettingsErrorKind,
    TrustedForwarders,
};

fn errors(text: &str) -> Vec<SettingsError> {
    Document::parse(text).settings().unwrap_err().0
}

fn at(line: usize, column: usize, kind: SettingsErrorKind) -> SettingsError {
    SettingsError { line, column, kind }
}

#[test]
fn reads_known_keys_ignoring_case_and_skips_unknown_ones() {
    let doc = Document::parse(
        "# comment\n\
         LISTEN = [::1]:8756\n\
         trustedforwarders = [\"10.0.0.0/8\", '192.168.1.0/24', \"127.0.0.1\"]\n\
         CustomScripts = true\n\
         Weird = 'x' # not ours\n\
         databaseurl = \"postgres://knocknoc:secret@db/knocknoc\"\n",
    );
    let settings = doc.settings().unwrap();
    assert_eq!(settings.listen.unwrap().to_string(), "[::1]:8756");
    assert_eq!(
        settings.trusted_forwarders.unwrap().to_string(),
        "10.0.0.0/8, 192.168.1.0/24, 127.0.0.1/32"
    );
    assert_eq!(
        settings.database_url.unwrap().expose_secret(),
        "postgres://knocknoc:secret@db/knocknoc"
    );
}

#[test]
fn absent_keys_are_none() {
    let settings = Document::parse("Other = 1\n").settings().unwrap();
    assert_eq!(settings, Default::default());
}

#[test]
fn trusted_forwarders_comma_separated_forms() {
    for (text, expected) in [
        (
            "TrustedForwarders = 10.0.0.0/8, 10.1.0.0/16",
            "10.0.0.0/8, 10.1.0.0/16",
        ),
        (
            "TrustedForwarders = \"10.0.0.0/8,2001:db8::/32\"",
            "10.0.0.0/8, 2001:db8::/32",
        ),
        ("TrustedForwarders = ''", ""),
        ("TrustedForwarders = []", ""),
        ("TrustedForwarders = ::1", "::1/128"),
    ] {
        let settings = Document::parse(text).settings().unwrap();
        assert_eq!(
            settings.trusted_forwarders.unwrap().to_string(),
            expected,
            "{text}"
        );
    }
}

#[test]
fn duplicate_known_key_names_both_lines() {
    let errs = errors("Listen = 127.0.0.1:1\n# x\n  listen = 127.0.0.1:2\n");
    assert_eq!(
        errs,
        [at(
            3,
            3,
            SettingsErrorKind::Duplicate {
                key: "listen".into(),
                first_line: 1
            }
        )]
    );
    let message = errs[0].to_string();
    assert!(
        message.contains("line 3") && message.contains("line 1"),
        "{message}"
    );
}

#[test]
fn duplicate_unknown_keys_are_not_errors() {
    assert!(Document::parse("A = 1\na = 2\n").settings().is_ok());
}

#[test]
fn every_error_is_reported_with_line_and_column() {
    let errs = errors(
        "Listen = localhost:8756\n\
         TrustedForwarders = 10.0.0.0/8, 10.0.0.1/8\n\
         DatabaseURL = 5432\n\
         Unrelated = \"bad\n",
    );
    assert_eq!(
        errs,
        [
            at(
                1,
                10,
                SettingsErrorKind::Listen(ListenError::BadAddress("localhost".into()))
            ),
            at(
                2,
                33,
                SettingsErrorKind::TrustedForwarders(knocknoc_conf::CidrError {
                    entry: " 10.0.0.1/8".into(),
                    kind: CidrErrorKind::HostBitsSet {
                        network: "10.0.0.0/8".parse().unwrap()
                    },
                })
            ),
            at(
                3,
                15,
                SettingsErrorKind::WrongType {
                    key: "DatabaseURL".into(),
                    expected: "a connection string",
                    found: "an integer"
                }
            ),
        ]
    );
}

#[test]
fn array_item_errors_point_at_the_item() {
    let errs = errors("TrustedForwarders = [\"10.0.0.0/8\",  'nope']");
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (1, 37));
}

#[test]
fn quoted_list_errors_point_inside_the_quotes() {
    let errs = errors("TrustedForwarders = '10.0.0.0/8,x'");
    assert_eq!((errs[0].line, errs[0].column), (1, 33));
}

#[test]
fn invalid_line_of_a_known_key_is_an_error_others_are_not() {
    let doc = Document::parse("Junk line\nDatabaseURL = \"postgres://u:p@h\n");
    let errs = doc.settings().unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (2, 15));
    assert!(matches!(errs[0].kind, SettingsErrorKind::Syntax { .. }));
    // The document still lists both grammar errors.
    assert_eq!(doc.parse_errors().len(), 2);
    assert_eq!(doc.parse_errors()[0].line, 1);
}

#[test]
fn non_utf8_line_of_a_known_key_is_an_error() {
    let doc = Document::parse(b"Listen = 127.0.0.1:87\xff56\n");
    let errs = doc.settings().unwrap_err().0;
    assert_eq!((errs[0].line, errs[0].column), (1, 22));
}

#[test]
fn listen_accepts_ip_and_port_only() {
    for ok in [
        "127.0.0.1:8756",
        "0.0.0.0:1",
        "[::]:65535",
        "[2001:db8::1]:443",
    ] {
        let listen: Listen = ok.parse().unwrap();
        assert_eq!(listen.to_string(), ok);
    }
    for (bad, error) in [
        ("127.0.0.1", ListenError::MissingPort),
        ("127.0.0.1:0", ListenError::BadPort("0".into())),
        ("127.0.0.1:65536", ListenError::BadPort("65536".into())),
        ("127.0.0.1:+80", ListenError::BadPort("+80".into())),
        ("127.0.0.1:", ListenError::BadPort("".into())),
        ("::1:8756", ListenError::Ipv6WithoutBrackets),
        (
            "[fe80::1%eth0]:80",
            ListenError::BadAddress("fe80::1%eth0".into()),
        ),
        ("[::1]8756", ListenError::MissingPort),
        (
            "[127.0.0.1]:80",
            ListenError::BadAddress("127.0.0.1".into()),
        ),
        (
            "example.com:80",
            ListenError::BadAddress("example.com".into()),
        ),
        (
            " 127.0.0.1:80",
            ListenError::BadAddress(" 127.0.0.1".into()),
        ),
    ] {
        assert_eq!(bad.parse::<Listen>(), Err(error), "{bad}");
    }
    assert_eq!(Listen::default().to_string(), "127.0.0.1:8756");
}

#[test]
fn trusted_forwarders_rejects_host_bits_and_garbage() {
    let err = "10.0.0.0/8, 192.168.1.1/24"
        .parse::<TrustedForwarders>()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "\" 192.168.1.1/24\": host bits are set; the network is 192.168.1.0/24"
    );
    for bad in [
        "10.0.0.0/33",
        "10.0.0/8",
        "a",
        "10.0.0.0/8,",
        ",",
        "10.0.0.0/8 10.1.0.0/16",
    ] {
        assert!(bad.parse::<TrustedForwarders>().is_err(), "{bad}");
    }
    assert!(TrustedForwarders::new(vec!["10.0.0.1/8".parse().unwrap()]).is_err());
    assert_eq!(TrustedForwarders::default().to_string(), "127.0.0.1/32");
}

#[test]
fn debug_and_display_never_show_the_password() {
    for url in [
        "postgres://knocknoc:hunter2@db:5432/knocknoc?sslmode=require",
        "host=db user=knocknoc password=hunter2 dbname=knocknoc",
        "host=db password='hunter2 with spaces' dbname=knocknoc",
        "postgres://knocknoc@db/knocknoc?password=hunter2",
    ] {
        let mut doc =
            Document::parse("# conf\n# old: postgres://u:hunter2@old/db\nAdminPassword 'hunter2\n");
        doc.set_database_url(&DatabaseUrl::new(url).unwrap())
            .unwrap();
        let settings = doc.settings().unwrap();
        let shown = [
            format!("{doc:?}"),
            format!("{doc:#?}"),
            doc.redacted().to_string(),
            format!("{settings:?}"),
            format!("{settings}"),
            format!("{:?}", settings.database_url),
            format!("{:?}", doc.lines()),
            format!("{:?}", doc.entry("databaseurl")),
            format!("{:?}", doc.get("databaseurl")),
        ];
        for text in shown {
            assert!(!text.contains("hunter2"), "{url} shown as {text}");
            assert!(
                text.contains("********") || text.contains("InvalidLine"),
                "{text}"
            );
        }
        // The real value is still there for whoever asks for it.
        assert_eq!(settings.database_url.unwrap().expose_secret(), url);
    }
}

#[test]
fn redacted_view_keeps_lines_well_formed() {
    let doc = Document::parse("DatabaseURL = \"host=db password=x\" # prod\r\n");
    assert_eq!(
        doc.redacted().to_string(),
        "DatabaseURL = \"host=db password=********\" # prod\r\n"
    );
}

#[test]
fn mangled_database_url_line_is_not_shown() {
    let doc = Document::parse("  databaseurl: host=db password hunter2\r\n");
    assert!(doc.settings().is_err());
    let shown = doc.redacted().to_string();
    assert_eq!(shown, "  databaseurl ********\r\n");
    assert!(!format!("{doc:?}").contains("hunter2"));
}

#[test]
fn settings_and_errors_keeps_the_good_keys() {
    let doc = Document::parse(
        "Listen = 127.0.0.1:1\nTrustedForwarders = 10.0.0.1/8\nDatabaseURL = host=a\nlisten = 127.0.0.1:2\n",
    );
    let (settings, errors) = doc.settings_and_errors();
    assert_eq!(settings.listen, None, "given twice: neither is trusted");
    assert_eq!(settings.trusted_forwarders, None);
    assert_eq!(settings.database_url.unwrap().expose_secret(), "host=a");
    assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(doc.settings().unwrap_err().0, errors);
}
