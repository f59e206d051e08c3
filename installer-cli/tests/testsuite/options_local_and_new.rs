//! Option 1 (local PostgreSQL: role and database created) and option 2 (new
//! external database: reachable, writable, empty) against real servers.

/// Named so that nextest counts these tests as PostgreSQL-server tests
/// (`.config/nextest.toml`: at most four at once).
mod pg_server {
    use crate::common::*;
    use knocknoc_conf::Listen;
    use pgctl::connect;
    use pgctl::conninfo::{resolve_from_process_env, ConnInfo};

    fn admin_conn(pg: &pg_harness::Cluster) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            pg.socket_dir().display(),
            pg.port()
        )
    }

    async fn login(url: &str) -> connect::Connected {
        let info = ConnInfo::parse(url).unwrap();
        let params = resolve_from_process_env(&info).unwrap().params;
        connect::connect(&params)
            .await
            .expect("the stored string works")
    }

    pg_harness::pg_test!(
        async fn option1_creates_role_and_database_and_stores_a_working_string(major: u32) {
            let pg = server(major).await;
            let (_dir, config) = config_in_tempdir();
            let admin = admin_conn(&pg);
            let out = run_yes(&config, None, &["--db-option", "1", "--admin-conn", &admin]);
            assert_ok(&out);
            let settings = written(&config);
            assert_eq!(settings.listen, Some(Listen::DEFAULT));
            let url = settings.database_url.expect("a DatabaseURL").into_secret();
            assert!(url.starts_with("postgresql://knocknoc:"), "{url}");
            let password = url.split(['@', ':']).nth(2).unwrap().to_owned();
            assert!(
                !text(&out).contains(&password),
                "the password must not be printed"
            );
            let app = login(&url).await;
            let row = app
                .client()
                .query_one("SELECT current_user::text, current_database()::text", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<_, String>(0), "knocknoc");
            assert_eq!(row.get::<_, String>(1), "knocknoc");
            app.client()
                .batch_execute("CREATE TABLE t (id int)")
                .await
                .unwrap();
            // The verifier stored on the server is SCRAM: the password never went there.
            let su = pg.connect().await;
            let hash: String = su
                .query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = 'knocknoc'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(hash.starts_with("SCRAM-SHA-256$"), "{hash}");

            // Taking every default again: option 1, the working string is re-checked
            // and kept, nothing re-created (the password stays).
            let again = run_yes(&config, None, &["--admin-conn", &admin]);
            assert!(again.status.success(), "{}", text(&again));
            assert!(
                text(&again).contains("nothing re-created"),
                "{}",
                text(&again)
            );
            assert_eq!(written(&config).database_url.unwrap().into_secret(), url);
        }
    );

    #[tokio::test]
    async fn option1_without_a_reachable_local_server_fails_and_writes_nothing() {
        let pg = server(17).await;
        let admin = admin_conn(&pg);
        pg.stop().await;
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(&config, None, &["--db-option", "1", "--admin-conn", &admin]);
        assert_refused(&config, &out, 1, "Cannot connect as administrator");
    }

    #[tokio::test]
    async fn option2_accepts_an_empty_writable_database() {
        let pg = server(17).await;
        pg.create_role("app", APP_PASSWORD).await;
        pg.create_database("fresh", "app").await;
        let (_dir, config) = config_in_tempdir();
        let url = app_url(&pg, "fresh", APP_PASSWORD);
        let out = run_yes(&config, Some(&url), &["--db-option", "2"]);
        assert_ok(&out);
        assert_eq!(written(&config).database_url.unwrap().into_secret(), url);
        // The probe table was rolled back.
        let app = pg.connect_as("app", APP_PASSWORD, "fresh").await.unwrap();
        let n: i64 = app
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = 'knocknoc_installer_probe'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn option2_refuses_a_database_where_the_role_cannot_create() {
        let pg = server(17).await;
        pg.create_role("owner", None).await;
        pg.create_role("app", APP_PASSWORD).await;
        pg.create_database("locked", "owner").await;
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(
            &config,
            Some(&app_url(&pg, "locked", APP_PASSWORD)),
            &["--db-option", "2"],
        );
        assert_refused(&config, &out, 1, "cannot create objects");
    }

    #[tokio::test]
    async fn option2_nonempty_database_needs_allow_nonempty_under_yes() {
        let (_pg, _dir, config, url) = app_setup(17).await;
        let out = run_yes(&config, Some(&url), &["--db-option", "2"]);
        assert_refused(&config, &out, 2, "public.users");
        let out = run_yes(
            &config,
            Some(&url),
            &["--db-option", "2", "--allow-nonempty"],
        );
        assert_ok(&out);
        assert_eq!(written(&config).database_url.unwrap().into_secret(), url);
    }

    #[test]
    fn yes_without_a_connection_string_for_option3_exits_2() {
        let (_dir, config) = config_in_tempdir();
        let out = run_yes(&config, None, &["--db-option", "3"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(!config.exists());
    }

    #[test]
    fn bad_flag_answers_exit_2_naming_the_flag() {
        let (_dir, config) = config_in_tempdir();
        for (args, needle) in [
            (&["--listen", "1.2.3.4"][..], "--listen"),
            (
                &["--trusted-forwarders", "10.0.0.1/8"][..],
                "--trusted-forwarders",
            ),
            (&["--db-option", "4"][..], "--db-option"),
        ] {
            let out = run_yes(&config, None, args);
            assert_refused(&config, &out, 2, needle);
        }
    }

    #[test]
    fn db_url_file_is_read_and_a_bad_string_exits_2() {
        let (dir, config) = config_in_tempdir();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://x@h/db?sslmod=require\n").unwrap();
        let out = run_yes(
            &config,
            None,
            &["--db-option", "3", "--db-url-file", file.to_str().unwrap()],
        );
        assert_refused(&config, &out, 2, "sslmod");
    }

    #[tokio::test]
    async fn option1_on_debian_cluster_uses_peer_authentication_as_postgres() {
        // The out-of-the-box path: no --admin-conn, peer as OS user postgres over
        // /var/run/postgresql, the port taken from PGPORT.
        let deb = pg_harness::DebianCluster::create(15).await;
        let (_dir, config) = config_in_tempdir();
        let out = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["--yes", "--db-option", "1"])
            .env("PGPORT", deb.port().to_string())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_ok(&out);
        let url = written(&config).database_url.unwrap().into_secret();
        assert!(
            url.contains(&format!("@127.0.0.1:{}/knocknoc", deb.port())),
            "{url}"
        );
        let app = login(&url).await;
        app.client()
            .batch_execute("CREATE TABLE t (id int)")
            .await
            .unwrap();
    }
}
