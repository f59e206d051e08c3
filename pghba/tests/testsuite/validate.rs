//! The server's verdict on single lines, one test per grammar rule. The
//! expected values were read from `pg_hba_file_rules` of real PostgreSQL
//! 15-18 servers (ssl = on).

use pghba::{lint_bytes, BuildFeatures, NoFiles, PgVersion, RuleRow, ValidateOptions};

fn rows(text: &str, v: PgVersion) -> Vec<RuleRow> {
    lint_bytes(
        "/d/pg_hba.conf",
        text.as_bytes(),
        &mut NoFiles,
        &ValidateOptions::for_version(v),
    )
    .rows
}

fn one(text: &str) -> RuleRow {
    let r = rows(text, PgVersion::V16);
    assert_eq!(r.len(), 1, "{text}");
    r.into_iter().next().unwrap()
}

fn error(text: &str) -> Option<String> {
    one(text).error
}

fn addr(text: &str) -> (Option<String>, Option<String>) {
    let r = one(text);
    assert_eq!(r.error, None, "{text}");
    (r.address, r.netmask)
}

fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

#[test]
fn addresses_are_read_like_getaddrinfo_numerichost() {
    assert_eq!(
        addr("host all all 127.1/8 md5"),
        (s("127.0.0.1"), s("255.0.0.0"))
    );
    assert_eq!(
        addr("host all all 0x7f.1/32 trust"),
        (s("127.0.0.1"), s("255.255.255.255"))
    );
    assert_eq!(
        addr("host all all 127.0.0.1/+24 trust"),
        (s("127.0.0.1"), s("255.255.255.0"))
    );
    // strtol base 10: "033" is 33, too long for IPv4
    assert_eq!(
        error("host all all 127.0.0.1/033 trust"),
        s("invalid CIDR mask in address \"127.0.0.1/033\"")
    );
    assert_eq!(
        addr("host all all 10.0.0.1 255.255.0.0 trust"),
        (s("10.0.0.1"), s("255.255.0.0"))
    );
    assert_eq!(
        addr("host all all 1.2.3.4 255.0.255.0 trust").1,
        s("255.0.255.0")
    );
    assert_eq!(
        addr("host all all fe80::1%2/64 trust"),
        (s("fe80::1"), s("ffff:ffff:ffff:ffff::"))
    );
    assert_eq!(
        addr("host all all ::ffff:1.2.3.4/128 trust").0,
        s("::ffff:1.2.3.4")
    );
    assert_eq!(
        addr("host all all ::1 ffff:: trust"),
        (s("::1"), s("ffff::"))
    );
}

#[test]
fn non_numeric_addresses_are_host_names() {
    assert_eq!(addr("host all all 300.1.1.1 trust"), (s("300.1.1.1"), None));
    assert_eq!(
        addr("host all all .example.com trust"),
        (s(".example.com"), None)
    );
    assert_eq!(addr("host all all \"\" trust"), (s(""), None));
    assert_eq!(addr("host all all \"all\" trust"), (s("all"), None));
    assert_eq!(addr("host all all samenet trust"), (s("samenet"), None));
}

#[test]
fn address_errors() {
    assert_eq!(
        error("host all all 300.1.1.1/8 trust"),
        s("specifying both host name and CIDR mask is invalid: \"300.1.1.1/8\"")
    );
    assert_eq!(
        error("host all all \"\"/8 trust"),
        s("specifying both host name and CIDR mask is invalid: \"/8\"")
    );
    assert_eq!(
        error("host all all 1.2.3.4/33 trust"),
        s("invalid CIDR mask in address \"1.2.3.4/33\"")
    );
    assert_eq!(
        error("host all all 1.2.3.4/ trust"),
        s("invalid CIDR mask in address \"1.2.3.4/\"")
    );
    assert_eq!(
        error("host all all ::1/129 trust"),
        s("invalid CIDR mask in address \"::1/129\"")
    );
    assert_eq!(
        error("host all all 1.2.3.4 ::1 trust"),
        s("IP address and mask do not match")
    );
    assert_eq!(
        error("host all all 1.2.3.4 foo trust"),
        s("invalid IP mask \"foo\": Name or service not known")
    );
    assert_eq!(
        error("host all all 127.0.0.1 \"\" trust"),
        s("invalid IP mask \"\": Name or service not known")
    );
    assert_eq!(
        error("host all all ::1"),
        s("end-of-line before netmask specification")
    );
    assert_eq!(
        error("host all all ::1 trust"),
        s("invalid IP mask \"trust\": Name or service not known")
    );
    assert_eq!(
        error("host a,b c"),
        s("end-of-line before IP address specification")
    );
    assert_eq!(
        error("host all all 1.2.3.4/32,::1/128 trust"),
        s("multiple values specified for host address")
    );
}

#[test]
fn quotes_are_dropped_in_rows_and_comma_lists_keep_their_quirks() {
    let r = one("host all,\"a b\" x, y, \"z\"\"q\" samenet md5");
    assert_eq!(r.database, Some(vec!["all".into(), "a b".into()]));
    assert_eq!(
        r.user_name,
        Some(vec!["x".into(), "y".into(), "z\"q".into()])
    );
    // "a ,b": two fields, so b is the user and c the address
    // "a ,b": two fields, so c is the address (a host name) and samehost the method
    assert_eq!(
        error("host a ,b c samehost reject"),
        s("invalid authentication method \"samehost\"")
    );
}

#[test]
fn hash_mid_token_starts_a_comment() {
    assert_eq!(
        error("local all all#c trust"),
        s("end-of-line before authentication method")
    );
    assert_eq!(one("local all all trust#x").auth_method, s("trust"));
}

#[test]
fn unterminated_quote_runs_to_end_of_line() {
    assert_eq!(
        error("local \"all#\" all \"trust # x"),
        s("invalid authentication method \"trust # x\"")
    );
}

#[test]
fn ident_on_local_is_shown_as_peer() {
    assert_eq!(one("local all all ident map=m").auth_method, s("peer"));
    assert_eq!(
        one("local all all ident map=m").options,
        Some(vec!["map=m".into()])
    );
}

#[test]
fn method_and_option_errors() {
    assert_eq!(
        error("host all all all peer"),
        s("peer authentication is only supported on local sockets")
    );
    assert_eq!(
        error("local all all gss"),
        s("gssapi authentication is not supported on local sockets")
    );
    assert_eq!(
        error("host all all all cert"),
        s("cert authentication is only supported on hostssl connections")
    );
    assert_eq!(
        error("host all all all bsd"),
        s("invalid authentication method \"bsd\": not supported by this build")
    );
    assert_eq!(
        error("host all all all sspi"),
        s("invalid authentication method \"sspi\": not supported by this build")
    );
    assert_eq!(
        error("host all all all trust foo"),
        s("authentication option not in name=value format: foo")
    );
    assert_eq!(error("host all all all trust map=x"), s("authentication option \"map\" is only valid for authentication methods ident, peer, gssapi, sspi, and cert"));
    assert_eq!(
        error("local all all md5 clientcert=verify-full"),
        s("clientcert can only be configured for \"hostssl\" rows")
    );
    assert_eq!(
        error("local all all trust =x"),
        s("unrecognized authentication option name: \"\"")
    );
    assert_eq!(
        error("host all all all radius radiussecrets=x"),
        s("authentication method \"radius\" requires argument \"radiusservers\" to be set")
    );
    assert_eq!(
        error("host all all all radius radiusservers=127.0.0.1 \"radiussecrets=a,b\""),
        s("the number of RADIUS secrets (2) must be 1 or the same as the number of RADIUS servers (1)")
    );
    assert_eq!(
        error("hostssl all all all cert clientcert=verify-ca"),
        s("clientcert can only be set to \"verify-full\" when using \"cert\" authentication")
    );
}

#[test]
fn bad_option_values_give_a_numbered_row_without_error_and_the_file_does_not_load() {
    let report = lint_bytes(
        "/d/pg_hba.conf",
        b"hostssl all all all md5 clientcert=bogus\nlocal all all trust\n",
        &mut NoFiles,
        &ValidateOptions::default(),
    );
    let r = &report.rows[0];
    assert_eq!(
        (r.rule_number, r.conn_type.as_deref(), r.error.as_deref()),
        (Some(1), None, None)
    );
    assert_eq!(
        report.diagnostics[0].message,
        "invalid value for clientcert: \"bogus\""
    );
    assert!(!report.verdict.loads);
}

#[test]
fn options_are_resynthesised() {
    assert_eq!(
        one("hostssl all all all cert").options,
        Some(vec!["clientcert=verify-full".into()])
    );
    assert_eq!(
        one("hostssl all all all md5 clientcert=verify-ca").options,
        Some(vec!["clientcert=verify-ca".into()])
    );
    assert_eq!(
        one("host all all all gss").options,
        Some(vec!["include_realm=true".into()])
    );
    assert_eq!(
        one("host all all all gss include_realm=0 krb_realm=R").options,
        Some(vec!["krb_realm=R".into()])
    );
}

#[test]
fn regexes_from_16_only() {
    assert_eq!(
        error("host all /(a all trust"),
        s("invalid regular expression \"(a\": parentheses () not balanced")
    );
    assert_eq!(
        error("local all \"/x[\" trust"),
        s("invalid regular expression \"x[\": brackets [] not balanced")
    );
    let r = rows("local all /(a trust\n", PgVersion::V15);
    assert_eq!(r[0].error, None);
}

#[test]
fn build_features() {
    let mut opts = ValidateOptions::for_version(PgVersion::V17);
    opts.build = BuildFeatures {
        ldap: false,
        gssapi: false,
        pam: false,
        ssl: true,
    };
    let report = lint_bytes(
        "/d/pg_hba.conf",
        b"host all all all ldap ldapserver=x\nhostgssenc all all all md5\nhost all all all pam\n",
        &mut NoFiles,
        &opts,
    );
    assert_eq!(
        report.rows[0].error.as_deref(),
        Some("invalid authentication method \"ldap\": not supported by this build")
    );
    // hostgssenc only warns: the row has its fields, the line loads
    assert_eq!(report.rows[1].conn_type.as_deref(), Some("hostgssenc"));
    assert_eq!(report.rows[1].rule_number, None);
    assert_eq!(
        report.rows[1].error.as_deref(),
        Some("hostgssenc record cannot match because GSSAPI is not supported by this build")
    );
    assert_eq!(
        report.rows[2].error.as_deref(),
        Some("invalid authentication method \"pam\": not supported by this build")
    );
}

#[test]
fn include_directives_are_records_before_16() {
    assert_eq!(
        rows("include x.conf\n", PgVersion::V15)[0].error.as_deref(),
        Some("invalid connection type \"include\"")
    );
    assert_eq!(
        rows("include x.conf\n", PgVersion::V16)[0].error.as_deref(),
        Some("could not open file \"/d/x.conf\": No such file or directory")
    );
    assert!(rows("include_if_exists x.conf\n", PgVersion::V16).is_empty());
    assert_eq!(
        rows("include_dir \"\"\n", PgVersion::V16)[0]
            .error
            .as_deref(),
        Some("empty configuration directory name")
    );
}

#[test]
fn comment_only_file_does_not_load() {
    let report = lint_bytes(
        "/d/pg_hba.conf",
        b"# nothing\n\n",
        &mut NoFiles,
        &ValidateOptions::default(),
    );
    assert!(report.rows.is_empty());
    assert!(!report.verdict.loads);
    assert_eq!(
        report.verdict.file_error.as_deref(),
        Some("configuration file \"/d/pg_hba.conf\" contains no entries")
    );
}

#[test]
fn oauth_needs_validator_libraries() {
    let r = rows("host all all all oauth issuer=x scope=y\n", PgVersion::V18);
    assert_eq!(
        r[0].error.as_deref(),
        Some("oauth_validator_libraries must be set for authentication method oauth")
    );
    let r = rows("host all all all oauth issuer=x scope=y\n", PgVersion::V17);
    assert_eq!(
        r[0].error.as_deref(),
        Some("invalid authentication method \"oauth\"")
    );
}

#[test]
fn pg13_limits() {
    let long = format!("local {} all trust\n", "x".repeat(10240));
    assert_eq!(
        rows(&long, PgVersion::V13)[0].error.as_deref(),
        Some("authentication file token too long")
    );
    // 14 and 15 kept the token buffer (PostgreSQL 15.18 rejects a token of
    // 10240 bytes); 16 removed it
    for v in [PgVersion::V14, PgVersion::V15] {
        assert_eq!(
            rows(&long, v)[0].error.as_deref(),
            Some("authentication file token too long"),
            "{v}"
        );
    }
    assert_eq!(rows(&long, PgVersion::V16)[0].error, None);
    // lines have no length limit since 14
    let long_line = format!("local {} all trust\n", vec!["db"; 8000].join(","));
    assert_eq!(rows(&long_line, PgVersion::V14)[0].error, None);
    assert_eq!(
        rows(&long_line, PgVersion::V13)[0].error.as_deref(),
        Some("authentication file line too long")
    );
}
