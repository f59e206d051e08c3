//! The matcher against real servers: for generated pg_hba.conf files and
//! clients at 127.0.0.x, the rule the library predicts is the one the server
//! uses. Password rules are checked through the line the server logs
//! (`connection authenticated: ... (FILE:LINE)`, or `Connection matched ...
//! line N` when the password check fails); `reject` and "no entry" through
//! the server's refusal (SQLSTATE 28000 and its wording).

use std::net::IpAddr;
use std::time::Duration;

use pg_harness::{Cluster, ClusterOptions};
use pghba::matcher::{Connection, RuleSet, StaticContext};
use pghba::rule::AuthMethod;
use pghba::{BuildFeatures, NoFiles, PgVersion, ValidateOptions};
use tokio_postgres::tls::MakeTlsConnect;

const PASSWORD: &str = "pw-matcher";
const SENTINEL: &str = "127.0.0.254";

/// A small deterministic generator (xorshift), seeded per version.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn list(&mut self, items: &[&str]) -> String {
        let n = 1 + self.next() % 2;
        (0..n)
            .map(|_| self.pick(items))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn generate(g: &mut Gen, major: u32, file_no: usize) -> String {
    let mut dbs = vec![
        "all",
        "all",
        "d0",
        "d1",
        "u1",
        "sameuser",
        "samerole",
        "replication",
        "\"d0\"",
    ];
    let mut users = vec!["all", "all", "u0", "u1", "u2", "+g", "\"u2\"", "nobody"];
    if major >= 16 {
        dbs.push("/^d");
        users.push("/^u[01]$");
    }
    let addrs = [
        "127.0.0.0/8",
        "127.0.0.2/32",
        "127.0.0.0/30",
        "127.0.0.2 255.255.255.254",
        "127.0.0.3/32",
        "all",
        "samehost",
        "samenet",
        "::1/128",
        "10.0.0.0/8",
    ];
    let types = ["host", "host", "hostssl", "hostnossl", "hostnogssenc"];
    let methods = ["scram-sha-256", "password", "reject"];
    let mut text = String::from("local all all trust\n");
    // the sentinel tells this file from the previous one after a reload
    let sentinel = if file_no % 2 == 0 {
        "reject"
    } else {
        "password"
    };
    text.push_str(&format!("host all sentinel {SENTINEL}/32 {sentinel}\n"));
    let n = 4 + g.next() % 7;
    for _ in 0..n {
        text.push_str(&format!(
            "{} {} {} {} {}\n",
            g.pick(&types),
            g.list(&dbs),
            g.list(&users),
            g.pick(&addrs),
            g.pick(&methods)
        ));
    }
    text
}

fn context() -> StaticContext {
    let mut c = StaticContext::default()
        .role("u0", &["g"])
        .role("u1", &[])
        .role("u2", &["d1"])
        .role("sentinel", &[])
        .role("postgres", &[]);
    // The loopback interface; the clients are all inside 127.0.0.0/8, which no
    // other interface of a test machine covers.
    c.interfaces = Some(vec![
        ("127.0.0.1".parse().unwrap(), "255.0.0.0".parse().unwrap()),
        (
            "::1".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ),
    ]);
    c
}

/// The line number the server logged for a connection, from the log text
/// written since it started: `connection authenticated: ... (FILE:LINE)` or
/// `Connection matched ... line LINE: "..."`.
fn parse_logged_line(new: &str) -> Option<u32> {
    let digits = |s: &str| -> Option<u32> {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    if let Some(i) = new.find("connection authenticated:") {
        let line = new[i..].lines().next()?;
        let colon = line.rfind(':')?;
        return digits(&line[colon + 1..]);
    }
    let i = new.find("Connection matched")?;
    let rest = &new[i..];
    let at = rest.find(" line ")? + " line ".len();
    digits(&rest[at..])
}

/// Line the server named for the connection that just authenticated or
/// failed its password check, from the log written after `from`.
async fn logged_line(pg: &Cluster, from: usize) -> Option<u32> {
    for _ in 0..200 {
        let log = pg.log();
        if let Some(n) = parse_logged_line(&log[from.min(log.len())..]) {
            return Some(n);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// A TLS client configuration trusting the cluster's CA.
fn tls_config(pg: &Cluster) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pg.ca_cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// Like `Cluster::connect_from`, over TLS (`sslmode=require`).
async fn connect_from_tls(
    pg: &Cluster,
    tls: &rustls::ClientConfig,
    source: IpAddr,
    user: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let stream = pg.tcp_stream_from(source).await.unwrap();
    let mut config = pg.config();
    config
        .user(user)
        .dbname(db)
        .password(PASSWORD)
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let mut make = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
    let connect =
        MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut make, pg.host()).unwrap();
    let (client, connection) = config.connect_raw(stream, connect).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn wait_for_sentinel(pg: &Cluster, file_no: usize) {
    let source: IpAddr = SENTINEL.parse().unwrap();
    for _ in 0..100 {
        let ok = pg
            .connect_from(source, "sentinel", PASSWORD, "d0")
            .await
            .is_ok();
        if ok == (file_no % 2 == 1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not load file {file_no}");
}

pg_harness::pg_test!(
    async fn predicted_rule_is_the_servers(major: u32) {
        let pg = Cluster::start_with(
            major,
            ClusterOptions {
                ssl: true,
                settings: vec![("log_connections".into(), "on".into())],
                hba: Some("local all all trust\n".into()),
                ..Default::default()
            },
        )
        .await;
        for u in ["u0", "u1", "u2", "sentinel"] {
            pg.create_role(u, PASSWORD).await;
        }
        let admin = pg.connect_unix().await;
        admin
            .batch_execute(
                "CREATE ROLE g NOLOGIN; GRANT g TO u0; CREATE ROLE d1 NOLOGIN; GRANT d1 TO u2",
            )
            .await
            .unwrap();
        for d in ["d0", "d1", "u1"] {
            pg.create_database(d, "postgres").await;
        }
        let hba_path = pg.hba_file().to_string_lossy().into_owned();
        let version = PgVersion::new(major).unwrap();
        // 15 comes from Debian (full build), 16+ from npm (no GSSAPI, LDAP, PAM)
        let build = if major == 15 {
            BuildFeatures::default()
        } else {
            BuildFeatures {
                ssl: true,
                gssapi: false,
                ldap: false,
                pam: false,
            }
        };
        let opts = ValidateOptions {
            build,
            ..ValidateOptions::for_version(version)
        };
        let cx = context();
        let tls = tls_config(&pg);
        let mut attempt = 0u32;
        let mut ssl_rule_hits = 0;
        let mut g = Gen(0x9e37_79b9_7f4a_7c15 ^ u64::from(major));
        let mut checked = (0, 0, 0);
        for file_no in 0..4 {
            let text = generate(&mut g, major, file_no);
            let rules = RuleSet::load(&hba_path, text.as_bytes(), &mut NoFiles, &opts);
            assert!(rules.verdict.loads, "{text}");
            std::fs::write(pg.hba_file(), &text).unwrap();
            pg.reload().await;
            wait_for_sentinel(&pg, file_no).await;
            for host in ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.9"] {
                let source: IpAddr = host.parse().unwrap();
                for user in ["u0", "u1", "u2", "nobody"] {
                    for db in ["d0", "d1", "u1"] {
                        // every other attempt over TLS
                        attempt += 1;
                        let ssl = attempt % 2 == 0;
                        let conn = Connection::host(source, db, user).with_ssl(ssl);
                        let m = rules.first_match(&conn, &cx);
                        assert!(m.certain, "{conn:?}: {m:?}");
                        let before = pg.log().len();
                        let result = if ssl {
                            connect_from_tls(&pg, &tls, source, user, db).await
                        } else {
                            pg.connect_from(source, user, PASSWORD, db).await
                        };
                        let what = format!("PostgreSQL {major}, {conn:?}, file:\n{text}");
                        match m.rule() {
                            None => {
                                let e = result.err().unwrap_or_else(|| panic!("accepted: {what}"));
                                let db_err =
                                    e.as_db_error().unwrap_or_else(|| panic!("{e}: {what}"));
                                assert_eq!(db_err.code().code(), "28000", "{e}: {what}");
                                assert!(
                                    db_err.message().contains("no pg_hba.conf entry"),
                                    "{e}: {what}"
                                );
                                checked.0 += 1;
                            }
                            Some(r) if r.rule.method == AuthMethod::Reject => {
                                let e = result.err().unwrap_or_else(|| panic!("accepted: {what}"));
                                let db_err =
                                    e.as_db_error().unwrap_or_else(|| panic!("{e}: {what}"));
                                assert_eq!(db_err.code().code(), "28000", "{e}: {what}");
                                assert!(
                                    db_err.message().contains("rejects connection"),
                                    "{e}: {what}"
                                );
                                checked.1 += 1;
                            }
                            Some(r) => {
                                if user != "nobody" {
                                    if let Err(e) = &result {
                                        panic!("refused ({e}), expected line {}: {what}", r.line);
                                    }
                                } else {
                                    assert!(result.is_err(), "{what}");
                                }
                                let line = logged_line(&pg, before).await;
                                assert_eq!(line, Some(r.line), "{what}");
                                checked.2 += 1;
                                if r.rule.connection_type == pghba::ConnectionType::HostSsl {
                                    ssl_rule_hits += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        // every kind of outcome was exercised
        assert!(
            checked.0 > 0 && checked.1 > 0 && checked.2 > 0,
            "{checked:?}"
        );
        assert!(
            ssl_rule_hits > 0,
            "no TLS connection reached a hostssl rule"
        );
    }
);
