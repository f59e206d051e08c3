//! Throwaway clusters of every version: start, connect (TCP, unix socket,
//! from another loopback address), settings, log, restart, ssl.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use pg_harness::{Cluster, ClusterOptions};
use tokio_postgres::error::SqlState;

async fn server_major(client: &tokio_postgres::Client) -> u32 {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap();
    u32::try_from(row.get::<_, i32>(0) / 10000).unwrap()
}

pg_harness::pg_test!(
    async fn starts_and_connects_over_tcp_and_unix_socket(major: u32) {
        let pg = Cluster::start(major).await;
        assert_eq!(pg.major(), major);
        assert_eq!(pg.host(), "127.0.0.1");
        assert!(pg.socket_path().exists(), "{}", pg.socket_path().display());

        let tcp = pg.connect().await;
        assert_eq!(server_major(&tcp).await, major);
        let row = tcp
            .query_one("SELECT inet_client_addr()::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "127.0.0.1/32");

        let unix = pg.connect_unix().await;
        assert_eq!(server_major(&unix).await, major);
        let row = unix
            .query_one("SELECT inet_client_addr() IS NULL", &[])
            .await
            .unwrap();
        assert!(
            row.get::<_, bool>(0),
            "unix socket connections have no client address"
        );

        // pg_hba_file_rules shows the harness's default file, without errors.
        let rows = tcp
            .query(
                "SELECT line_number, type, error FROM pg_hba_file_rules ORDER BY line_number",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 5, "the default pg_hba.conf has five rules");
        assert_eq!(
            rows[0].get::<_, Option<String>>(1).as_deref(),
            Some("local")
        );
        assert!(rows.iter().all(|r| r.get::<_, Option<String>>(2).is_none()));

        // The server runs as the unprivileged user, not root.
        let os_user = pg.os_user();
        assert_ne!(os_user.uid, 0);
        let meta = std::fs::metadata(pg.data_dir().join("PG_VERSION")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), os_user.uid);
    }
);

pg_harness::pg_test!(
    async fn remote_host_seen_by_source_address(major: u32) {
        // 127.0.0.2 is an allowed "remote host", 127.0.0.3 is not.
        let hba = "\
local all all trust
host  all postgres 127.0.0.1/32 trust
host  all all      127.0.0.2/32 scram-sha-256
";
        let pg = Cluster::start_with(major, ClusterOptions::with_hba(hba)).await;
        pg.create_role("web", "s3cret 'quoted'").await;
        pg.create_database("knocknoc", "web").await;

        let allowed = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let client = pg
            .connect_from(allowed, "web", "s3cret 'quoted'", "knocknoc")
            .await
            .expect("127.0.0.2 is allowed");
        let row = client
            .query_one(
                "SELECT inet_client_addr()::text, current_user::text, current_database()::text",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "127.0.0.2/32");
        assert_eq!(row.get::<_, String>(1), "web");
        assert_eq!(row.get::<_, String>(2), "knocknoc");

        let refused = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let err = pg
            .connect_from(refused, "web", "s3cret 'quoted'", "knocknoc")
            .await
            .expect_err("127.0.0.3 matches no pg_hba.conf line");
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
            "{err}"
        );

        // A wrong password from the allowed host is a different error (28P01).
        let err = pg
            .connect_from(allowed, "web", "wrong", "knocknoc")
            .await
            .expect_err("wrong password");
        assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    }
);

pg_harness::pg_test!(
    async fn settings_log_reload_and_restart(major: u32) {
        let pg = Cluster::start_with(
            major,
            ClusterOptions {
                settings: vec![
                    ("log_connections".to_owned(), "on".to_owned()),
                    ("application_name".to_owned(), "it's quoted".to_owned()),
                ],
                ..Default::default()
            },
        )
        .await;
        let client = pg.connect().await;
        let row = client
            .query_one("SHOW application_name", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "it's quoted");
        assert!(
            pg.wait_for_log("connection authorized", 1, Duration::from_secs(10))
                .await,
            "{}",
            pg.log()
        );

        // A new pg_hba.conf takes effect after reload(): 127.0.0.1 is turned away.
        std::fs::write(pg.hba_file(), "local all all trust\n").unwrap();
        pg.reload().await;
        let err = pg
            .connect_as("postgres", None, "postgres")
            .await
            .expect_err("no host rule");
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
            "{err}"
        );

        // ALTER SYSTEM survives restart() on the same port.
        std::fs::write(pg.hba_file(), pg_harness::DEFAULT_HBA).unwrap();
        pg.reload().await;
        let port = pg.port();
        pg.connect()
            .await
            .batch_execute("ALTER SYSTEM SET work_mem = '7MB'")
            .await
            .unwrap();
        pg.restart().await;
        assert_eq!(pg.port(), port);
        let row = pg
            .connect()
            .await
            .query_one("SHOW work_mem", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "7MB");

        pg.stop().await;
        assert!(!pg.is_running());
        assert!(pg.config().connect(tokio_postgres::NoTls).await.is_err());
    }
);

pg_harness::pg_test!(
    async fn ssl_on_with_generated_certificate(major: u32) {
        let pg = Cluster::start_with(major, ClusterOptions::with_ssl()).await;
        assert!(pg.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let client = pg.connect().await;
        let row = client.query_one("SHOW ssl", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "on");

        // A verifying TLS client that trusts only ca_cert_pem() gets in over
        // 127.0.0.1 (the certificate names that IP address).
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pg.ca_cert_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut config = pg.config();
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        let (tls_client, connection) = config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await
            .expect("TLS with the harness CA");
        tokio::spawn(connection);
        let pid: i32 = tls_client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let row = client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the connection uses TLS");
        assert!(
            pg.log().contains("ready to accept connections"),
            "{}",
            pg.log()
        );
    }
);

/// Parallel starts in one process get distinct ports and dirs, and the
/// directories disappear on drop.
#[test]
fn parallel_clusters_are_independent_and_removed_on_drop() {
    pg_harness::block_on(async {
        let majors = pg_harness::versions();
        let clusters = futures_join(majors.iter().map(|&m| Cluster::start(m)).collect()).await;
        let mut ports: Vec<u16> = clusters.iter().map(Cluster::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), clusters.len());
        let dirs: Vec<_> = clusters.iter().map(|c| c.data_dir().to_owned()).collect();
        for cluster in &clusters {
            assert_eq!(
                server_major(&cluster.connect().await).await,
                cluster.major()
            );
        }
        drop(clusters);
        for dir in dirs {
            assert!(!dir.exists(), "{} should be removed", dir.display());
        }
    });
}

/// A panicking test still stops its server and removes its directory.
#[test]
fn cluster_is_removed_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        pg_harness::block_on(async move {
            let pg = Cluster::start(15).await;
            tx.send((pg.data_dir().to_owned(), pg.pid().unwrap()))
                .unwrap();
            panic!("test failure");
        })
    });
    assert!(result.is_err());
    let (dir, pid) = rx.recv().unwrap();
    assert!(!dir.exists(), "{} should be removed", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "postmaster {pid} still running"
    );
}

async fn futures_join<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

pg_harness::pg_test!(
    /// The body may return a `Result`; `?` works inside it.
    async fn body_may_return_result(major: u32) -> Result<(), tokio_postgres::Error> {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        let row = client.query_one("SELECT $1::int + 1", &[&41i32]).await?;
        assert_eq!(row.get::<_, i32>(0), 42);
        Ok(())
    }
);
