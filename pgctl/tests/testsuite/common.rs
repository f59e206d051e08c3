//! Shared by pgctl's tests: connection parameters as the tests' servers
//! want them, certificates, free ports and standby servers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pg_harness::{Cluster, ClusterOptions};
use pgctl::connect::{connect, ConnectError, ConnectErrorKind, ConnectParams, HostParam, SslMode};

/// The harness's superuser on `hosts`, to database `postgres`, with the
/// given TLS policy and root file, and a 10 s timeout per host.
pub fn postgres_on(
    hosts: Vec<HostParam>,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
) -> ConnectParams {
    let mut p = ConnectParams::new(hosts, "postgres", "postgres");
    p.sslmode = sslmode;
    p.sslrootcert = sslrootcert;
    p.connect_timeout = Some(Duration::from_secs(10));
    p
}

/// [`postgres_on`] one TCP host.
pub fn tls_params(
    host: &str,
    port: u16,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
) -> ConnectParams {
    postgres_on(vec![HostParam::tcp(host, port)], sslmode, sslrootcert)
}

/// Connects with `p`, expecting a failure of `kind` (`what` names the case
/// when it is not); the error, for the case's further checks.
pub async fn refused(p: &ConnectParams, kind: ConnectErrorKind, what: &str) -> ConnectError {
    let e = connect(p)
        .await
        .expect_err(&format!("{what}: the connection must fail"));
    assert_eq!(e.kind(), kind, "{what}: {e}");
    e
}

/// A path that does not exist: keeps a `~/.postgresql/root.crt` of the
/// machine out of tests of the unverified modes.
pub fn no_root_file(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("absent-root.crt"))
}

/// Writes `pem` to `dir/name` and returns the path.
pub fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// A self-signed CA certificate named `cn` with nothing to do with the
/// harness's CA, and its key.
pub fn ca_certificate(cn: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    (params.self_signed(&key).unwrap(), key)
}

/// The PEM of a CA that signed none of the servers' certificates.
pub fn untrusted_ca_pem() -> String {
    ca_certificate("untrusted CA").0.pem()
}

/// A server with ssl on (the harness's CA) and, when given, this
/// pg_hba.conf.
pub async fn ssl_cluster(major: u32, hba: Option<&str>) -> Cluster {
    Cluster::start_with(
        major,
        ClusterOptions {
            ssl: true,
            hba: hba.map(str::to_owned),
            ..Default::default()
        },
    )
    .await
}

/// A server whose sessions are read-only by default
/// (`default_transaction_read_only`), as `target_session_attrs` sees a
/// standby.
pub async fn read_only_cluster(major: u32) -> Cluster {
    Cluster::start_with(
        major,
        ClusterOptions {
            settings: vec![("default_transaction_read_only".into(), "on".into())],
            ..Default::default()
        },
    )
    .await
}

/// Turns a running cluster into a hot standby without a primary: restarted
/// with `standby.signal`, it stays in recovery and accepts read-only
/// sessions.
pub async fn make_standby(pg: &Cluster) {
    pg.stop().await;
    let signal = pg.data_dir().join("standby.signal");
    std::fs::write(&signal, "").unwrap();
    pg.os_user().chown(&signal).unwrap();
    pg.restart().await;
}

/// A TCP port nothing listens on (below the ephemeral range, so no
/// client connection takes it meanwhile).
pub use pg_harness::free_port;

/// pg_hba.conf admitting the superuser over TCP only through TLS.
pub const HOSTSSL_ONLY: &str = "\
local   all   all                       trust
hostssl all   postgres   127.0.0.1/32   trust
";

/// pg_hba.conf admitting the superuser over TCP only without TLS.
pub const HOSTNOSSL_ONLY: &str = "\
local     all   all                     trust
hostnossl all   postgres   127.0.0.1/32 trust
";
