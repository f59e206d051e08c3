//! Differential test: `pgctl::connect` against libpq 17 itself (the
//! `libpq.so.5` shipped with the PostgreSQL 17 binaries, called through
//! Python's ctypes) on the same connection strings and servers: every
//! sslmode, with no / a trusted / an untrusted root certificate, a host name
//! the certificate lacks, against servers with ssl off, ssl on, hostssl-only
//! and hostnossl-only rules. Both must agree on whether the connection
//! succeeds and whether it is encrypted.

use std::path::{Path, PathBuf};
use std::process::Command;

use pg_harness::Cluster;
use pgctl::connect::connect;
use pgctl::conninfo::{resolve, ConnInfo, MapEnvironment};

use crate::common::{
    make_standby, read_only_cluster, ssl_cluster, untrusted_ca_pem, HOSTNOSSL_ONLY, HOSTSSL_ONLY,
};

/// Reads connection strings, one a line, from stdin; prints one line each:
/// `ok|failed ssl|plain PORT|- <error text on one line>`.
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
lib.PQport.argtypes = [ctypes.c_void_p]
lib.PQport.restype = ctypes.c_char_p
for line in sys.stdin:
    conn = lib.PQconnectdb(line.rstrip("\n").encode())
    ok = lib.PQstatus(conn) == 0
    err = lib.PQerrorMessage(conn).decode(errors="replace").replace("\n", " ")
    port = lib.PQport(conn).decode() if ok else "-"
    print("ok" if ok else "failed", "ssl" if lib.PQsslInUse(conn) else "plain", port, err, flush=True)
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

/// What one connection attempt gave.
struct Outcome {
    connected: bool,
    encrypted: bool,
    /// The port of the host that answered.
    port: Option<u16>,
    message: String,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.connected {
            "connected"
        } else {
            "failed"
        };
        let tls = if self.encrypted { "TLS" } else { "plain" };
        write!(f, "{state} {tls} port {:?}: {}", self.port, self.message)
    }
}

/// libpq 17's outcome for each connection string.
fn libpq17(libpq: &Path, conninfos: &[String]) -> Vec<Outcome> {
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
            let mut words = line.splitn(4, ' ');
            Outcome {
                connected: words.next() == Some("ok"),
                encrypted: words.next() == Some("ssl"),
                port: words.next().and_then(|p| p.parse().ok()),
                message: words.next().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    assert_eq!(
        results.len(),
        conninfos.len(),
        "python probe output:\n{text}"
    );
    results
}

async fn ours(conninfo: &str) -> Outcome {
    let info = ConnInfo::parse(conninfo).unwrap();
    let env = MapEnvironment::new()
        .with_os_user("root")
        .with_passwd_home("/nonexistent");
    let failed = |message: String| Outcome {
        connected: false,
        encrypted: false,
        port: None,
        message,
    };
    let resolved = match resolve(&info, &env) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    match connect(&resolved.params).await {
        Ok(c) => Outcome {
            connected: true,
            encrypted: c.is_tls(),
            port: Some(c.host().port),
            message: String::new(),
        },
        Err(e) => failed(e.to_string()),
    }
}

#[test]
fn sslmode_behaviour_matches_libpq17_pg17() {
    let libpq = libpq17_path();
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let servers = [
            ("ssl off", Cluster::start(17).await),
            ("ssl on", ssl_cluster(17, None).await),
            ("hostssl only", ssl_cluster(17, Some(HOSTSSL_ONLY)).await),
            (
                "hostnossl only",
                ssl_cluster(17, Some(HOSTNOSSL_ONLY)).await,
            ),
        ];
        let trusted = dir.path().join("trusted.crt");
        std::fs::write(&trusted, servers[1].1.ca_cert_pem()).unwrap();
        let untrusted = dir.path().join("untrusted.crt");
        std::fs::write(&untrusted, untrusted_ca_pem()).unwrap();
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
            let theirs_key = (theirs.connected, theirs.connected && theirs.encrypted);
            if theirs_key != (mine.connected, mine.encrypted) {
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

#[test]
fn host_lists_and_target_session_attrs_match_libpq17_pg17() {
    let libpq = libpq17_path();
    pg_harness::block_on(async {
        let primary = Cluster::start(17).await;
        let read_only = read_only_cluster(17).await;
        let standby = Cluster::start(17).await;
        make_standby(&standby).await;
        let stopped = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (p, r, s) = (primary.port(), read_only.port(), standby.port());
        let lists: [&[u16]; 11] = [
            &[stopped, p],
            &[r, p],
            &[p, r],
            &[s, p],
            &[p, s],
            &[r, s],
            &[s],
            &[r],
            &[p],
            &[stopped],
            &[s, r, p],
        ];
        let mut cases = Vec::new();
        for list in lists {
            for tsa in [
                "any",
                "read-write",
                "read-only",
                "primary",
                "standby",
                "prefer-standby",
            ] {
                let hosts = vec!["127.0.0.1"; list.len()].join(",");
                let ports: Vec<String> = list.iter().map(u16::to_string).collect();
                let conninfo = format!(
                    "host={hosts} port={} user=postgres dbname=postgres sslmode=disable \
                     target_session_attrs={tsa} connect_timeout=10",
                    ports.join(",")
                );
                cases.push((format!("{list:?} {tsa}"), conninfo));
            }
        }
        let conninfos: Vec<String> = cases.iter().map(|c| c.1.clone()).collect();
        let theirs = libpq17(&libpq, &conninfos);
        let mut mismatches = Vec::new();
        for ((label, conninfo), theirs) in cases.iter().zip(theirs) {
            let mine = ours(conninfo).await;
            if (theirs.connected, theirs.port) != (mine.connected, mine.port) {
                mismatches.push(format!("{label}: libpq 17 {theirs:?} / ours {mine:?}"));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} cases differ from libpq 17 (primary {p}, read-only {r}, standby {s}, stopped {stopped}):\n{}",
            mismatches.len(),
            cases.len(),
            mismatches.join("\n")
        );
    });
}
