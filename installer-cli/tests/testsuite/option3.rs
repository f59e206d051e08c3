//! Option 3 (web node joining an existing Knocknoc database), run
//! non-interactively against real throwaway servers.

/// Named so that nextest counts these tests as PostgreSQL-server tests
/// (`.config/nextest.toml`: at most four at once).
mod pg_server {
    use crate::common::*;
    use knocknoc_conf::{DatabaseUrl, Listen, TrustedForwarders};
    use pg_harness::{Cluster, ClusterOptions, DebianCluster};

    pg_harness::pg_test!(
        async fn option3_accepts_existing_database_and_writes_exact_answers(major: u32) {
            let (_pg, _dir, config, url) = app_setup(major).await;
            let out = run_yes(
                &config,
                Some(&url),
                &[
                    "--listen",
                    "0.0.0.0:8080",
                    "--trusted-forwarders",
                    "10.0.0.0/8, 192.168.1.0/24",
                    "--db-option",
                    "3",
                ],
            );
            assert_ok(&out);
            assert!(
                !text(&out).contains(APP_PASSWORD),
                "password printed: {}",
                text(&out)
            );
            let s = written(&config);
            assert_answers(&s, "0.0.0.0:8080", "10.0.0.0/8,192.168.1.0/24");
            assert_eq!(s.database_url, Some(DatabaseUrl::new(url).unwrap()));
        }
    );

    #[tokio::test]
    async fn option3_wrong_password_names_the_password() {
        let pg = app_server(17).await;
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(
            &config,
            Some(&app_url(&pg, "knocknoc", "wrong")),
            &["--db-option", "3"],
        );
        assert_refused(&config, &out, 1, "password authentication failed");
    }

    #[tokio::test]
    async fn option3_missing_database_is_named() {
        let pg = app_server(17).await;
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(
            &config,
            Some(&app_url(&pg, "nosuchdb", APP_PASSWORD)),
            &["--db-option", "3"],
        );
        assert_refused(&config, &out, 1, "\"nosuchdb\" does not exist");
    }

    #[tokio::test]
    async fn option3_database_without_application_schema_is_refused() {
        let pg = server(17).await;
        pg.create_role("app", APP_PASSWORD).await;
        pg.create_database("empty", "app").await;
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(
            &config,
            Some(&app_url(&pg, "empty", APP_PASSWORD)),
            &["--db-option", "3"],
        );
        assert_refused(&config, &out, 1, "holds no tables");
    }

    #[tokio::test]
    async fn option3_server_down_says_connection_refused() {
        let pg = server(17).await;
        let url = app_url(&pg, "knocknoc", APP_PASSWORD);
        pg.stop().await;
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(&config, Some(&url), &["--db-option", "3"]);
        assert_refused(&config, &out, 1, "Connection refused");
    }

    #[tokio::test]
    async fn option3_tls_required_by_server_with_sslmode_disable_gives_no_exposedb_hint() {
        let pg = Cluster::start_with(
        17,
        ClusterOptions {
            ssl: true,
            hba: Some(
                "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
                    .to_owned(),
            ),
            ..Default::default()
        },
    )
    .await;
        pg.create_role("app", APP_PASSWORD).await;
        pg.create_database("knocknoc", "app").await;
        let (_dir, config) = config_in_tempdir();
        let url = format!("{}?sslmode=disable", app_url(&pg, "knocknoc", APP_PASSWORD));
        let out = run_yes(&config, Some(&url), &["--db-option", "3"]);
        assert_refused(&config, &out, 1, "refused the connection without TLS");
        assert!(
            !text(&out).contains("sudo knocker exposedb"),
            "TLS required is not a missing pg_hba entry: {}",
            text(&out)
        );
    }

    #[tokio::test]
    async fn option3_pg_hba_refusal_prints_exact_exposedb_command() {
        let (_pg, _dir, config, url) = app_setup(17).await;
        let out = run_yes(
            &config,
            Some(&url),
            &["--db-option", "3", "--bind-source", "127.0.0.3"],
        );
        assert_refused(
            &config,
            &out,
            1,
            "\nsudo knocker exposedb --add \"127.0.0.3/32\"\n",
        );
    }

    #[tokio::test]
    async fn option3_two_hosts_first_down_reports_each_and_succeeds() {
        let down = server(17).await;
        let down_port = down.port();
        down.stop().await;
        let pg = app_server(17).await;
        let (_dir, config) = config_in_tempdir();
        let url = format!(
        "postgres://app:s3cret%20pass@127.0.0.1:{down_port},127.0.0.1:{}/knocknoc?target_session_attrs=read-write",
        pg.port()
    );
        let out = run_yes(&config, Some(&url), &["--db-option", "3"]);
        assert_ok(&out);
        let t = text(&out);
        assert!(
            t.contains(&format!("127.0.0.1:{down_port}: unavailable")),
            "{t}"
        );
        assert!(
            t.contains(&format!("127.0.0.1:{}: primary", pg.port())),
            "{t}"
        );
        assert_eq!(
            written(&config).database_url,
            Some(DatabaseUrl::new(url).unwrap())
        );
    }

    #[tokio::test]
    async fn option3_on_debian_cluster() {
        let deb = DebianCluster::create(15).await;
        let admin = deb.connect().await.expect("peer as postgres");
        admin
            .batch_execute(&format!("CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'"))
            .await
            .unwrap();
        admin
            .batch_execute("CREATE DATABASE knocknoc OWNER app")
            .await
            .unwrap();
        let url = format!(
            "postgres://app:s3cret%20pass@127.0.0.1:{}/knocknoc?sslmode=require",
            deb.port()
        );
        {
            let info = pgctl::conninfo::ConnInfo::parse(&url).unwrap();
            let params = pgctl::conninfo::resolve_from_process_env(&info)
                .unwrap()
                .params;
            let c = pgctl::connect::connect(&params).await.expect("app logs in");
            c.client()
                .batch_execute("CREATE TABLE users (id int)")
                .await
                .unwrap();
        }
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(&config, Some(&url), &["--db-option", "3"]);
        assert_ok(&out);
        assert!(text(&out).contains("over TLS"), "{}", text(&out));
        assert_eq!(
            written(&config).database_url,
            Some(DatabaseUrl::new(url).unwrap())
        );
    }

    #[tokio::test]
    async fn yes_on_existing_config_rechecks_current_string_and_failed_check_changes_nothing() {
        let pg = app_server(17).await;
        let (_dir, config) = config_in_tempdir();
        let url = format!(
            "postgres://app:s3cret%20pass@primary.example:{}/knocknoc?hostaddr=127.0.0.1",
            pg.port()
        );
        let original = format!(
            "# managed by hand\nListen = 0.0.0.0:9000\nExtra = 'kept'\nDatabaseURL = '{url}'\n"
        );
        std::fs::write(&config, &original).unwrap();
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();

        // A failing check (wrong password given) leaves the file byte for byte.
        let bad = app_url(&pg, "knocknoc", "wrong");
        let out = run_yes(&config, Some(&bad), &["--db-option", "3"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

        // Every default: option 3 (a non-local host), the current string re-checked.
        let out = run_yes(&config, None, &[]);
        assert_ok(&out);
        let after = std::fs::read_to_string(&config).unwrap();
        assert!(
            after.starts_with("# managed by hand\nListen = 0.0.0.0:9000\nExtra = 'kept'\n"),
            "{after}"
        );
        let s = written(&config);
        assert_eq!(s.listen, Some("0.0.0.0:9000".parse::<Listen>().unwrap()));
        assert_eq!(s.trusted_forwarders, Some(TrustedForwarders::default()));
        assert_eq!(s.database_url, Some(DatabaseUrl::new(url).unwrap()));
    }

    #[tokio::test]
    async fn option3_pg_hba_refusal_over_ipv6_gives_a_128_prefix() {
        let pg = Cluster::start_with(
            17,
            ClusterOptions {
                hba: Some(HBA.to_owned()),
                settings: vec![("listen_addresses".into(), "127.0.0.1,::1".into())],
                ..Default::default()
            },
        )
        .await;
        prepare_app_db(&pg).await;
        let (_dir, config) = config_in_tempdir();
        let url = format!("postgres://app:s3cret%20pass@[::1]:{}/knocknoc", pg.port());
        let out = run_yes(&config, Some(&url), &["--db-option", "3"]);
        assert_refused(
            &config,
            &out,
            1,
            "\nsudo knocker exposedb --add \"::1/128\"\n",
        );
    }
}
