//! Differential test: `pgctl::connect` against libpq 17 itself (the
//! `libpq.so.5` shipped with the PostgreSQL 17 binaries, called through
//! Python's ctypes) on the same connection strings and servers: every
//! sslmode, with no / a trusted / an untrusted root certificate, a host name
//! the certificate lacks, against servers with ssl off, ssl on, hostssl-only
//! and hostnossl-only rules. Both must agree on whether the connection
//! succeeds and whether it is encrypted.

use std::path::{Path, PathBuf};
use std::process::Command;

use pg_harness::{Cluster, ClusterOptions};
use pgctl::connect::connect;
use pgctl::conninfo::{resolve, ConnInfo, MapEnvironment};

/// Reads connection strings, one a line, from stdin; prints one line each:
/// `ok|failed ssl|plain <error text on one line>`.
const LIBPQ_PROBE: &str = r#"
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.PQconnectdb.restype = ctypes.c_void_p
lib.PQconnectdb.argtypes = [ctypes.c_char_p]
lib.PQstatus.argtypes = [ctypes.c_void_p]
lib.PQsslInUse.argtypes = [ctypes.c_void_p]
lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
lib.PQerrorMessage.restype = ctypes.c_char_p
lib.PQfinish.argtypes = [ctypes.c_void_p]
for line in sys.stdin:
    conn = lib.PQconnectdb(line.rstrip("\n").encode())
    ok = lib.PQstatus(conn) == 0
    err = lib.PQerrorMessage(conn).decode(errors="replace").replace("\n", " ")
    print("ok" if ok else "failed", "ssl" if lib.PQsslInUse(conn) else "plain", err, flush=True)
    lib.PQfinish(conn)
"#;

fn libpq17_path() -> PathBuf {
    pg_harness::require_binaries(17);
    let path = pg_harness::bin_dir(17)
        .parent()
        .expect("bin dir has a parent")
        .join("lib/libpq.so.5");
    assert!(path.exists(), "libpq 17 missing at {}", path.display());
    path
}

/// (connected, encrypted, libpq's error text) for each connection string.
fn libpq17(libpq: &Path, conninfos: &[String]) -> Vec<(bool, bool, String)> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(LIBPQ_PROBE)
        .arg(libpq)
        .env("HOME", "/nonexistent")
        .env("PGSYSCONFDIR", "/nonexistent")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    for c in conninfos {
        writeln!(stdin, "{c}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let results: Vec<_> = text
        .lines()
        .map(|line| {
            let mut words = line.splitn(3, ' ');
            let ok = words.next() == Some("ok");
            let ssl = words.next() == Some("ssl");
            (ok, ssl, words.next().unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(
        results.len(),
        conninfos.len(),
        "python probe output:\n{text}"
    );
    results
}

async fn ours(conninfo: &str) -> (bool, bool, String) {
    let info = ConnInfo::parse(conninfo).unwrap();
    let env = MapEnvironment::new()
        .with_os_user("root")
        .with_passwd_home("/nonexistent");
    let resolved = match resolve(&info, &env) {
        Ok(r) => r,
        Err(e) => return (false, false, e.to_string()),
    };
    match connect(&resolved.params).await {
        Ok(c) => (true, c.is_tls(), String::new()),
        Err(e) => (false, false, e.to_string()),
    }
}

fn other_ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "untrusted CA");
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn sslmode_behaviour_matches_libpq17_pg17() {
    let libpq = libpq17_path();
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ssl = |hba: Option<&str>| ClusterOptions {
            ssl: true,
            hba: hba.map(str::to_owned),
            ..Default::default()
        };
        let servers = [
            ("ssl off", Cluster::start(17).await),
            ("ssl on", Cluster::start_with(17, ssl(None)).await),
            (
                "hostssl only",
                Cluster::start_with(
                    17,
                    ssl(Some(
                        "local all all trust\nhostssl all postgres 127.0.0.1/32 trust\n",
                    )),
                )
                .await,
            ),
            (
                "hostnossl only",
                Cluster::start_with(
                    17,
                    ssl(Some(
                        "local all all trust\nhostnossl all postgres 127.0.0.1/32 trust\n",
                    )),
                )
                .await,
            ),
        ];
        let trusted = dir.path().join("trusted.crt");
        std::fs::write(&trusted, servers[1].1.ca_cert_pem()).unwrap();
        let untrusted = dir.path().join("untrusted.crt");
        std::fs::write(&untrusted, other_ca_pem()).unwrap();
        let absent = dir.path().join("absent.crt");

        let mut cases = Vec::new();
        for (label, server) in &servers {
            // Each ssl server has its own CA.
            let own_ca = dir.path().join(format!("ca-{}.crt", server.port()));
            if *label != "ssl off" {
                std::fs::write(&own_ca, server.ca_cert_pem()).unwrap();
            }
            for mode in [
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ] {
                for (root_label, root) in [
                    ("no root", &absent),
                    (
                        "trusted root",
                        if *label == "ssl on" {
                            &trusted
                        } else {
                            &own_ca
                        },
                    ),
                    ("untrusted root", &untrusted),
                ] {
                    for host in ["host=127.0.0.1", "host=db.example.test hostaddr=127.0.0.1"] {
                        let conninfo = format!(
                            "{host} port={} user=postgres dbname=postgres sslmode={mode} \
                             sslrootcert={} sslcert=/nonexistent/c.crt sslkey=/nonexistent/c.key \
                             gssencmode=disable connect_timeout=10",
                            server.port(),
                            root.display()
                        );
                        cases.push((format!("{label}, {mode}, {root_label}, {host}"), conninfo));
                    }
                }
            }
        }
        let conninfos: Vec<String> = cases.iter().map(|c| c.1.clone()).collect();
        let theirs = libpq17(&libpq, &conninfos);
        let compared = cases.len();
        let mut mismatches = Vec::new();
        for ((label, conninfo), theirs) in cases.iter().zip(theirs) {
            let mine = ours(conninfo).await;
            // libpq reports SSL in use on failed connections too: compare
            // encryption only for connections that were made.
            if (theirs.0, theirs.0 && theirs.1) != (mine.0, mine.0 && mine.1) {
                mismatches.push(format!("{label}: libpq 17 {theirs:?} / ours {mine:?}"));
            }
        }
        assert_eq!(compared, 4 * 6 * 3 * 2);
        assert!(
            mismatches.is_empty(),
            "{} of {compared} cases differ from libpq 17:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
    });
}
