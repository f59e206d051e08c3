//! A throwaway Debian-managed cluster, reached by peer authentication as the
//! OS user `postgres` from this (root) process.

use pg_harness::DebianCluster;

#[test]
fn debian_cluster_peer_auth_as_postgres_from_root() {
    pg_harness::block_on(async {
        let cluster = DebianCluster::create(15).await;
        assert!(cluster.name().starts_with("knocker_"));
        assert!(cluster.conf_dir().starts_with("/etc/postgresql/15/"));
        assert!(cluster.hba_file().is_file());
        assert!(cluster.data_dir().join("PG_VERSION").is_file());

        // Peer authentication: the socket was connected with euid postgres.
        let client = cluster.connect().await.expect("peer auth as postgres");
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int / 10000, current_user::text, \
                 current_setting('port')::int, current_setting('ssl')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 15);
        assert_eq!(row.get::<_, String>(1), "postgres");
        assert_eq!(i64::from(row.get::<_, i32>(2)), i64::from(cluster.port()));
        assert_eq!(
            row.get::<_, String>(3),
            "on",
            "Debian clusters use the snakeoil cert"
        );

        // pg_hba_file_rules is readable and shows Debian's peer rule for
        // postgres on line 1 of the rules.
        let rows = client
            .query(
                "SELECT type, user_name::text[], auth_method, error FROM pg_hba_file_rules \
                 ORDER BY line_number",
                &[],
            )
            .await
            .unwrap();
        assert!(!rows.is_empty());
        assert_eq!(
            rows[0].get::<_, Option<String>>(0).as_deref(),
            Some("local")
        );
        assert_eq!(
            rows[0].get::<_, Option<Vec<String>>>(1),
            Some(vec!["postgres".to_owned()])
        );
        assert_eq!(rows[0].get::<_, Option<String>>(2).as_deref(), Some("peer"));
        assert!(rows.iter().all(|r| r.get::<_, Option<String>>(3).is_none()));

        // The same socket connected as root (no OS user "root" role) is refused:
        // it really is the uid that the server checks.
        let root = pg_harness::OsUser::lookup("root").unwrap();
        let stream = pg_harness::unix_stream_as(&root, &cluster.socket_path()).unwrap();
        let err = cluster
            .unix_config()
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .err()
            .expect("root is not postgres");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
            "{err}"
        );

        // TCP from another loopback address, with a password (Debian's rule
        // for 127.0.0.1/32 is scram-sha-256; 127.0.0.2 matches no line).
        client
            .batch_execute("ALTER ROLE postgres PASSWORD 'pw'")
            .await
            .unwrap();
        let local = std::net::IpAddr::from([127, 0, 0, 1]);
        let tcp = cluster
            .connect_from(local, "postgres", "pw", "postgres")
            .await
            .expect("127.0.0.1 with password");
        drop(tcp);
        let other = std::net::IpAddr::from([127, 0, 0, 2]);
        let err = cluster
            .connect_from(other, "postgres", "pw", "postgres")
            .await
            .expect_err("127.0.0.2 matches no Debian rule");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
            "{err}"
        );

        cluster.reload().await;
        let name = cluster.name().to_owned();
        drop(client);
        drop(cluster);
        assert!(!std::path::Path::new(&format!("/etc/postgresql/15/{name}")).exists());
    });
}
