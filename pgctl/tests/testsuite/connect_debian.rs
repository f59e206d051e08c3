//! `pgctl::connect` on a stock Debian cluster (pg_createcluster 15): what
//! knocker does out of the box as root: peer authentication as `postgres`
//! over `/var/run/postgresql`, and the "snakeoil" certificate that Debian's
//! `ssl = on` uses, fetched, found self-signed, and pinned for verify-full.

use std::net::SocketAddr;
use std::time::Duration;

use pg_harness::DebianCluster;
use pgctl::connect::{
    connect_as_os_user, fetch_server_certificate, ConnectErrorKind, ConnectParams, SslMode,
};

use crate::common::{refused, tls_params};

/// The superuser on `host`, to `postgres`, with this TLS policy.
fn params(host: &str, port: u16, sslmode: SslMode) -> ConnectParams {
    tls_params(host, port, sslmode, None)
}

#[test]
fn peer_as_postgres_and_snakeoil_certificate_debian_cluster() {
    pg_harness::block_on(async {
        let cluster = DebianCluster::create(15).await;
        let socket = params("/var/run/postgresql", cluster.port(), SslMode::Prefer);

        // root is not `postgres`: Debian's "local all postgres peer" refuses.
        refused(
            &socket,
            ConnectErrorKind::AuthenticationFailed,
            "peer as root",
        )
        .await;

        let c = connect_as_os_user(&socket, "postgres")
            .await
            .expect("peer authentication as postgres");
        assert!(!c.is_tls(), "no TLS on unix sockets");
        let ssl: String = c.client().query_one("SHOW ssl", &[]).await.unwrap().get(0);
        assert_eq!(
            ssl, "on",
            "a stock Debian cluster has ssl = on with the snakeoil certificate (package ssl-cert)"
        );

        let addr = SocketAddr::from(([127, 0, 0, 1], cluster.port()));
        let cert = fetch_server_certificate(addr, "localhost", Duration::from_secs(10))
            .await
            .expect("snakeoil certificate");
        assert!(cert.is_self_signed(), "snakeoil is self-signed");

        // Pinned, it verifies for the name it carries (the host's name as it
        // was when ssl-cert was installed); the TCP login itself needs a
        // password, so the expected failure comes after the handshake.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("snakeoil.crt");
        std::fs::write(&root, cert.to_pem()).unwrap();
        let mut tcp = params("127.0.0.1", cluster.port(), SslMode::VerifyCa);
        tcp.sslrootcert = Some(root);
        let e = refused(
            &tcp,
            ConnectErrorKind::PasswordMissing,
            "scram needs a password",
        )
        .await;
        assert!(e.main_attempt().unwrap().tls);
    });
}
