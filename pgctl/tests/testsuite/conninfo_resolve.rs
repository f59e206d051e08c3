//! Resolution of connection strings: environment, defaults and `.pgpass`
//! applied as libpq applies them, with a hermetic environment.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pgctl::connect::{SslMode, TargetSessionAttrs};
use pgctl::conninfo::{
    resolve, tokio_config, ConnInfo, MapEnvironment, ResolveError, ResolveWarning, Resolved,
};

fn env() -> MapEnvironment {
    MapEnvironment::new()
        .with_os_user("alice")
        .with_var("HOME", "/nonexistent-home")
}

fn run(s: &str, env: &MapEnvironment) -> Result<Resolved, ResolveError> {
    resolve(&ConnInfo::parse(s).unwrap(), env)
}

fn ok(s: &str, env: &MapEnvironment) -> Resolved {
    run(s, env).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn err(s: &str, env: &MapEnvironment) -> String {
    run(s, env).expect_err(s).to_string()
}

fn passfile(dir: &Path, content: &str, mode: u32) -> String {
    let path = dir.join("pgpass");
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[test]
fn empty_string_gets_debian_defaults() {
    let r = ok("", &env());
    let p = &r.params;
    assert_eq!(p.hosts.len(), 1);
    assert_eq!(p.hosts[0].host, "/var/run/postgresql");
    assert!(p.hosts[0].is_unix_socket());
    assert_eq!(p.hosts[0].port, 5432);
    assert_eq!(p.user, "alice");
    assert_eq!(p.dbname, "alice");
    assert_eq!(p.password, None);
    assert_eq!(p.sslmode, SslMode::Prefer);
    assert_eq!(p.target_session_attrs, TargetSessionAttrs::Any);
    assert_eq!(p.connect_timeout, None);
    assert_eq!(
        p.passfile.as_deref(),
        Some(Path::new("/nonexistent-home/.pgpass"))
    );
    assert!(r.warnings.is_empty());
}

#[test]
fn pg_environment_variables_fill_what_the_string_left_out() {
    let e = env()
        .with_var("PGHOST", "db1,db2")
        .with_var("PGHOSTADDR", "127.0.0.2,127.0.0.3")
        .with_var("PGPORT", "5433")
        .with_var("PGUSER", "bob")
        .with_var("PGDATABASE", "knocknoc")
        .with_var("PGPASSWORD", "envpw")
        .with_var("PGSSLMODE", "verify-full")
        .with_var("PGSSLROOTCERT", "/etc/ssl/ca.pem")
        .with_var("PGCONNECT_TIMEOUT", "7")
        .with_var("PGTARGETSESSIONATTRS", "read-write")
        .with_var("PGAPPNAME", "knocker");
    let p = ok("", &e).params;
    assert_eq!(p.hosts.len(), 2);
    assert_eq!(p.hosts[1].host, "db2");
    assert_eq!(
        p.hosts[1].hostaddr,
        Some("127.0.0.3".parse::<IpAddr>().unwrap())
    );
    assert!(p.hosts.iter().all(|h| h.port == 5433));
    assert_eq!((p.user.as_str(), p.dbname.as_str()), ("bob", "knocknoc"));
    assert_eq!(p.password.as_deref(), Some("envpw"));
    assert_eq!(
        p.passfile, None,
        "no password file when a password is given"
    );
    assert_eq!(p.sslmode, SslMode::VerifyFull);
    assert_eq!(p.sslrootcert.as_deref(), Some(Path::new("/etc/ssl/ca.pem")));
    assert_eq!(p.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(p.target_session_attrs, TargetSessionAttrs::ReadWrite);
    assert_eq!(p.application_name.as_deref(), Some("knocker"));

    // The string wins over the environment.
    // PGHOSTADDR still applies when the string sets only host, as in libpq.
    assert_eq!(
        err("postgresql://carol:pw@h:1/db?sslmode=disable", &e),
        "could not match 1 host names to 2 hostaddr values"
    );
    let p = ok(
        "host=h port=1 user=carol dbname=db sslmode=disable hostaddr=",
        &e,
    )
    .params;
    assert_eq!((p.hosts[0].host.as_str(), p.hosts[0].port), ("h", 1));
    assert_eq!(p.hosts[0].hostaddr, None);
    assert_eq!((p.user.as_str(), p.sslmode), ("carol", SslMode::Disable));
}

#[test]
fn empty_host_in_the_string_masks_pghost_like_libpq() {
    let e = env().with_var("PGHOST", "elsewhere");
    assert_eq!(
        ok("host=''", &e).params.hosts[0].host,
        "/var/run/postgresql"
    );
    assert_eq!(ok("", &e).params.hosts[0].host, "elsewhere");
}

#[test]
fn hosts_and_ports_pair_up_like_libpq() {
    let p = ok("host=a,b,/tmp port=1,,3", &env()).params;
    let got: Vec<(&str, u16)> = p.hosts.iter().map(|h| (h.host.as_str(), h.port)).collect();
    assert_eq!(got, [("a", 1), ("b", 5432), ("/tmp", 3)]);
    assert!(p.hosts[2].is_unix_socket());

    let p = ok("postgresql://a,b:5433", &env()).params;
    let got: Vec<u16> = p.hosts.iter().map(|h| h.port).collect();
    assert_eq!(got, [5432, 5433]);

    let p = ok("host=a,b port=6000", &env()).params;
    assert!(p.hosts.iter().all(|h| h.port == 6000));

    assert_eq!(
        err("host=a,b,c port=1,2", &env()),
        "could not match 2 port numbers to 3 hosts"
    );
    assert_eq!(
        err("host=a,b hostaddr=127.0.0.1", &env()),
        "could not match 2 host names to 1 hostaddr values"
    );
    let p = ok("hostaddr=127.0.0.1,::1", &env()).params;
    assert_eq!(p.hosts[0].host, "");
    assert_eq!(p.hosts[1].hostaddr, Some("::1".parse().unwrap()));
}

#[test]
fn bad_values_are_rejected_with_libpq_messages() {
    let e = env();
    assert_eq!(err("sslmode=bogus", &e), "invalid sslmode value: \"bogus\"");
    assert_eq!(
        err("port=abc", &e),
        "invalid integer value \"abc\" for connection option \"port\""
    );
    assert_eq!(err("port=70000", &e), "invalid port number: \"70000\"");
    assert_eq!(err("port=0", &e), "invalid port number: \"0\"");
    assert_eq!(
        err("target_session_attrs=master", &e),
        "invalid target_session_attrs value: \"master\""
    );
    assert_eq!(
        err("connect_timeout=soon", &e),
        "invalid integer value \"soon\" for connection option \"connect_timeout\""
    );
    assert_eq!(
        err("hostaddr=db.example.com", &e),
        "could not parse network address \"db.example.com\": Name or service not known"
    );
    assert_eq!(
        err("", &e.clone().with_var("PGSSLMODE", "on")),
        "invalid sslmode value: \"on\""
    );
    assert_eq!(
        err("sslrootcert=system sslmode=require", &e),
        "weak sslmode \"require\" may not be used with sslrootcert=system (use \"verify-full\")"
    );
    assert_eq!(
        err(
            "ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2",
            &e
        ),
        "invalid SSL protocol version range"
    );
    assert_eq!(
        err("channel_binding=yes", &e),
        "invalid channel_binding value: \"yes\""
    );
}

#[test]
fn integer_values_follow_libpq_rules() {
    let e = env();
    assert_eq!(ok(" port=' 5433 '", &e).params.hosts[0].port, 5433);
    assert_eq!(
        ok("connect_timeout=1", &e).params.connect_timeout,
        Some(Duration::from_secs(2))
    );
    assert_eq!(ok("connect_timeout=0", &e).params.connect_timeout, None);
    assert_eq!(ok("connect_timeout=-3", &e).params.connect_timeout, None);
    assert_eq!(
        ok("connect_timeout=+4", &e).params.connect_timeout,
        Some(Duration::from_secs(4))
    );
}

#[test]
fn sslrootcert_system_strengthens_the_default_sslmode() {
    assert_eq!(
        ok("sslrootcert=system", &env()).params.sslmode,
        SslMode::VerifyFull
    );
    assert_eq!(
        ok("", &env().with_var("PGREQUIRESSL", "1")).params.sslmode,
        SslMode::Require
    );
    assert_eq!(
        ok(
            "",
            &env()
                .with_var("PGREQUIRESSL", "1")
                .with_var("PGSSLMODE", "disable")
        )
        .params
        .sslmode,
        SslMode::Disable
    );
}

#[test]
fn pgpass_is_searched_per_host_with_localhost_for_the_default_socket() {
    let dir = tempfile::tempdir().unwrap();
    let pf = passfile(
        dir.path(),
        "# comment\n\
         localhost:5432:app:alice:sockpw\n\
         db1:5433:app:alice:db1pw\r\n\
         db2:*:app:alice:db2\\:pw\\\\x:ignored\n\
         *:*:*:alice:fallback\n",
        0o600,
    );
    let e = env().with_var("PGPASSFILE", &pf);
    let p = ok("dbname=app", &e).params;
    assert_eq!(p.hosts[0].password.as_deref(), Some("sockpw"));
    assert_eq!(p.passfile.as_deref(), Some(Path::new(&pf)));

    let p = ok("host=db1,db2,db3,/tmp port=5433,1,2,5432 dbname=app", &e).params;
    let got: Vec<Option<&str>> = p.hosts.iter().map(|h| h.password.as_deref()).collect();
    assert_eq!(
        got,
        [
            Some("db1pw"),
            Some("db2:pw\\x"),
            Some("fallback"),
            Some("fallback")
        ]
    );
    assert_eq!(p.hosts[1].effective_password(&p), Some("db2:pw\\x"));

    // A password in the string means no lookup at all.
    let p = ok("dbname=app password=given", &e).params;
    assert!(p.hosts[0].password.is_none());
    assert_eq!(p.hosts[0].effective_password(&p), Some("given"));

    // hostaddr is the key when host is empty; the passfile keyword beats PGPASSFILE.
    let pf2 = dir.path().join("other");
    fs::write(&pf2, "127.0.0.2:5432:app:alice:byaddr\n").unwrap();
    fs::set_permissions(&pf2, fs::Permissions::from_mode(0o400)).unwrap();
    let s = format!("hostaddr=127.0.0.2 dbname=app passfile={}", pf2.display());
    assert_eq!(
        ok(&s, &e).params.hosts[0].password.as_deref(),
        Some("byaddr")
    );
}

#[test]
fn pgpass_with_group_or_world_access_is_ignored_with_libpq_warning() {
    let dir = tempfile::tempdir().unwrap();
    let pf = passfile(dir.path(), "*:*:*:*:leaked\n", 0o640);
    let r = ok("", &env().with_var("PGPASSFILE", &pf));
    assert_eq!(r.params.hosts[0].password, None);
    assert_eq!(
        r.warnings,
        [ResolveWarning::PassfileInsecure(pf.clone().into())]
    );
    assert_eq!(
        r.warnings[0].to_string(),
        format!("password file \"{pf}\" has group or world access; permissions should be u=rw (0600) or less")
    );

    let r = ok(
        "",
        &env().with_var("PGPASSFILE", dir.path().display().to_string()),
    );
    assert_eq!(
        r.warnings,
        [ResolveWarning::PassfileNotPlainFile(dir.path().to_owned())]
    );
}

#[test]
fn pgpass_defaults_to_home_then_passwd_home() {
    let dir = tempfile::tempdir().unwrap();
    passfile(dir.path(), "*:*:*:*:homepw\n", 0o600);
    fs::rename(dir.path().join("pgpass"), dir.path().join(".pgpass")).unwrap();
    let home = dir.path().display().to_string();
    let e = MapEnvironment::new()
        .with_os_user("alice")
        .with_var("HOME", &home);
    assert_eq!(
        ok("", &e).params.hosts[0].password.as_deref(),
        Some("homepw")
    );
    let e = MapEnvironment::new()
        .with_os_user("alice")
        .with_var("HOME", "")
        .with_passwd_home(dir.path());
    assert_eq!(
        ok("", &e).params.hosts[0].password.as_deref(),
        Some("homepw")
    );
}

#[test]
fn options_this_client_cannot_honour_are_refused_not_ignored() {
    for (s, keyword) in [
        ("require_auth=scram-sha-256", "require_auth"),
        ("channel_binding=require", "channel_binding"),
        ("sslcertmode=require", "sslcertmode"),
        ("sslcrl=/crl.pem", "sslcrl"),
        ("requirepeer=postgres", "requirepeer"),
        ("replication=database", "replication"),
        (
            "ssl_min_protocol_version=tlsv1.3",
            "ssl_min_protocol_version",
        ),
    ] {
        match run(s, &env()) {
            Err(ResolveError::Unsupported { keyword: k, .. }) => assert_eq!(k, keyword, "{s}"),
            other => panic!("{s}: {other:?}"),
        }
    }
    assert!(matches!(
        run("gssencmode=require", &env()),
        Err(ResolveError::GssNotSupported(_))
    ));
    // Harmless ones are accepted.
    ok(
        "keepalives=0 client_encoding=UTF8 channel_binding=disable sslsni=0",
        &env(),
    );
}

#[test]
fn missing_user_is_an_error_and_service_files_are_refused() {
    assert_eq!(
        run("", &MapEnvironment::new()).unwrap_err(),
        ResolveError::NoUser
    );
    assert!(matches!(
        run("service=prod", &env()).unwrap_err(),
        ResolveError::ServiceNotSupported(_)
    ));
}

#[test]
fn debug_never_shows_passwords_from_the_string_or_pgpass() {
    let dir = tempfile::tempdir().unwrap();
    let pf = passfile(dir.path(), "*:*:*:*:filesecret\n", 0o600);
    let r = ok("host=a,b", &env().with_var("PGPASSFILE", &pf));
    assert_eq!(r.params.hosts[1].password.as_deref(), Some("filesecret"));
    let shown = format!("{r:?} {:?}", tokio_config(&r.params, 0));
    assert!(!shown.contains("filesecret"), "{shown}");
    let r = ok("password=strsecret", &env());
    assert!(!format!("{r:?}").contains("strsecret"));
}

#[test]
fn tokio_config_for_one_host() {
    let r = ok(
        "host=/var/run/postgresql,db.example.com hostaddr=,127.0.0.2 port=5433 user=u dbname=d \
         password=pw sslmode=verify-full connect_timeout=9 application_name=knocker",
        &env(),
    );
    let c = tokio_config(&r.params, 0);
    assert_eq!(
        c.get_hosts(),
        [tokio_postgres::config::Host::Unix(
            "/var/run/postgresql".into()
        )]
    );
    assert_eq!(c.get_ports(), [5433]);
    let c = tokio_config(&r.params, 1);
    assert_eq!(
        c.get_hosts(),
        [tokio_postgres::config::Host::Tcp("db.example.com".into())]
    );
    assert_eq!(c.get_hostaddrs(), ["127.0.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(c.get_user(), Some("u"));
    assert_eq!(c.get_dbname(), Some("d"));
    assert_eq!(c.get_password(), Some(&b"pw"[..]));
    assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(9)));
    assert_eq!(c.get_application_name(), Some("knocker"));
}
