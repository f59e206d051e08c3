//! `pgctl::appdb` against a real server: which tables count as a usable
//! application schema, the rolled-back creation probe, database creation.

/// Named so that nextest counts these tests as PostgreSQL-server tests
/// (`.config/nextest.toml`: at most four at once).
mod pg_server {
    use pg_harness::Cluster;
    use pgctl::appdb;
    use pgctl::naming::Naming;

    #[tokio::test]
    async fn application_schema_needs_a_table_the_role_can_select_and_insert() {
        let pg = Cluster::start(17).await;
        let su = pg.connect().await;
        su.batch_execute(
            "CREATE ROLE app LOGIN PASSWORD 'pw';
         CREATE TABLE public.readonly (id int);
         GRANT SELECT ON public.readonly TO app;
         CREATE SCHEMA hidden;
         CREATE TABLE hidden.t (id int);
         GRANT SELECT, INSERT ON hidden.t TO app;",
        )
        .await
        .unwrap();
        let app = pg.connect_as("app", "pw", "postgres").await.unwrap();
        let check = appdb::check_application_schema(&app).await.unwrap();
        // hidden.t is granted but its schema is not usable: not usable.
        assert_eq!(check.tables.len(), 2, "{check:?}");
        assert!(!check.is_usable(), "{check:?}");

        su.batch_execute("GRANT USAGE ON SCHEMA hidden TO app")
            .await
            .unwrap();
        let check = appdb::check_application_schema(&app).await.unwrap();
        let usable: Vec<_> = check.usable().map(|t| t.qualified_name()).collect();
        assert_eq!(usable, ["hidden.t"]);
    }

    #[tokio::test]
    async fn create_probe_leaves_nothing_and_database_creation_is_idempotent() {
        let pg = Cluster::start(17).await;
        let mut su = pg.connect().await;
        appdb::check_can_create(&mut su, &Naming::default())
            .await
            .unwrap();
        assert!(appdb::tables(&su).await.unwrap().is_empty());
        su.batch_execute("CREATE ROLE owner_role LOGIN")
            .await
            .unwrap();
        assert!(
            appdb::ensure_database(&su, "app db", "owner_role", &Naming::default())
                .await
                .unwrap()
        );
        assert!(
            !appdb::ensure_database(&su, "app db", "owner_role", &Naming::default())
                .await
                .unwrap()
        );
        assert!(appdb::database_exists(&su, "app db").await.unwrap());
        // Too long: PostgreSQL would truncate it silently, so it is refused.
        let long = "d".repeat(64);
        assert!(
            appdb::ensure_database(&su, &long, "owner_role", &Naming::default())
                .await
                .is_err()
        );
    }
}
