//! Login roles with client-side SCRAM verifiers, against real servers that
//! log every statement.

use pg_harness::{Cluster, ClusterOptions};
use pgctl::error::Error;
use pgctl::naming::Naming;
use pgctl::roles::{
    ensure_login_role, role_info, terminate_sessions_from, EnsureRole, Password, RoleOutcome,
};

fn logging_everything() -> ClusterOptions {
    ClusterOptions {
        settings: vec![
            ("log_statement".into(), "all".into()),
            ("log_min_duration_statement".into(), "0".into()),
        ],
        ..Default::default()
    }
}

/// Every query text pg_stat_activity holds right now.
async fn activity_texts(client: &tokio_postgres::Client) -> String {
    client
        .query("SELECT coalesce(query, '') FROM pg_stat_activity", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

pg_harness::pg_test!(
    async fn plaintext_password_never_reaches_log_or_pg_stat_activity(major: u32) {
        let pg = Cluster::start_with(major, logging_everything()).await;
        let admin = pg.connect().await;
        let watcher = pg.connect().await;

        let created = ensure_login_role(&admin, "app_remote", &EnsureRole::default())
            .await
            .unwrap();
        let RoleOutcome::Created(password) = created else {
            panic!("expected Created, got {created:?}");
        };
        let activity = activity_texts(&watcher).await;
        let rotated = ensure_login_role(
            &admin,
            "app_remote",
            &EnsureRole {
                rotate_password: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let RoleOutcome::Rotated(new_password) = rotated else {
            panic!("expected Rotated, got {rotated:?}");
        };
        let activity = activity + &activity_texts(&watcher).await;

        // The role really logs in with the passwords, over SCRAM.
        assert!(pg
            .connect_as("app_remote", new_password.expose(), "postgres")
            .await
            .is_ok());
        assert!(pg
            .connect_as("app_remote", password.expose(), "postgres")
            .await
            .is_err());
        let stored: String = admin
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'app_remote'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");

        let log = pg.log();
        assert!(
            log.contains("statement: "),
            "log_statement=all is on: {log}"
        );
        for p in [&password, &new_password] {
            assert!(!log.contains(p.expose()), "plaintext in the server log");
            assert!(
                !activity.contains(p.expose()),
                "plaintext in pg_stat_activity"
            );
        }
        // As superuser, logging is suppressed: not even the verifier is logged.
        assert!(
            !log.contains("SCRAM-SHA-256$"),
            "verifier in the log: {log}"
        );
    }
);

pg_harness::pg_test!(
    async fn non_superuser_creator_logs_only_the_verifier_never_the_plaintext(major: u32) {
        let pg = Cluster::start_with(major, logging_everything()).await;
        pg.connect()
            .await
            .batch_execute("CREATE ROLE creator LOGIN CREATEROLE PASSWORD 'creator-pw'")
            .await
            .unwrap();
        let creator = pg
            .connect_as("creator", "creator-pw", "postgres")
            .await
            .unwrap();
        let outcome = ensure_login_role(&creator, "made_by_creator", &EnsureRole::default())
            .await
            .unwrap();
        let password = outcome.password().unwrap().clone();
        assert!(pg
            .connect_as("made_by_creator", password.expose(), "postgres")
            .await
            .is_ok());
        let log = pg.log();
        assert!(
            log.contains("SCRAM-SHA-256$"),
            "logging could not be suppressed here"
        );
        assert!(!log.contains(password.expose()));
    }
);

pg_harness::pg_test!(
    async fn existing_roles_are_left_alone_and_unmarked_ones_need_force(major: u32) {
        let pg = Cluster::start(major).await;
        let admin = pg.connect().await;
        let given = Password::new("first-password-0123456789");
        let first = ensure_login_role(
            &admin,
            "r1",
            &EnsureRole {
                password: Some(given.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(first, RoleOutcome::Created(given.clone()));
        // Idempotent: a second run changes nothing, the password still works.
        let again = ensure_login_role(&admin, "r1", &EnsureRole::default())
            .await
            .unwrap();
        assert_eq!(again, RoleOutcome::Unchanged);
        assert!(pg
            .connect_as("r1", given.expose(), "postgres")
            .await
            .is_ok());
        let info = role_info(&admin, "r1").await.unwrap().unwrap();
        assert!(info.is_marked_by(&Naming::default()) && info.can_login && !info.superuser);

        pg.create_role("operators_own", "theirs").await;
        let err = ensure_login_role(&admin, "operators_own", &EnsureRole::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RoleNotManaged { .. }), "{err}");
        assert!(pg
            .connect_as("operators_own", "theirs", "postgres")
            .await
            .is_ok());
        let forced = ensure_login_role(
            &admin,
            "operators_own",
            &EnsureRole {
                force: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let RoleOutcome::Adopted(p) = forced else {
            panic!("{forced:?}")
        };
        assert!(pg
            .connect_as("operators_own", p.expose(), "postgres")
            .await
            .is_ok());
        assert!(role_info(&admin, "operators_own")
            .await
            .unwrap()
            .unwrap()
            .is_marked_by(&Naming::default()));

        // Superusers are never taken over, even forced.
        let err = ensure_login_role(
            &admin,
            "postgres",
            &EnsureRole {
                force: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::RoleNotManaged { .. }));
    }
);

pg_harness::pg_test!(
    async fn hostile_role_names_work_exactly_and_reserved_ones_fail_with_sqlstate(major: u32) {
        let pg = Cluster::start(major).await;
        let admin = pg.connect().await;
        let name = "we\"ird'; DROP ROLE postgres; -- x";
        let outcome = ensure_login_role(&admin, name, &EnsureRole::default())
            .await
            .unwrap();
        let p = outcome.password().unwrap();
        assert!(pg.connect_as(name, p.expose(), "postgres").await.is_ok());
        assert!(role_info(&admin, name)
            .await
            .unwrap()
            .unwrap()
            .is_marked_by(&Naming::default()));

        let err = ensure_login_role(&admin, "pg_mine", &EnsureRole::default())
            .await
            .unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("42939"), "{err}");
        assert!(err.to_string().contains("SQLSTATE 42939"), "{err}");
        let err = ensure_login_role(&admin, &"x".repeat(64), &EnsureRole::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }));
    }
);

pg_harness::pg_test!(
    async fn sessions_from_a_removed_network_can_be_ended(major: u32) {
        let pg = Cluster::start_with(
            major,
            ClusterOptions::with_hba("local all all trust\nhost all all 127.0.0.0/8 trust\n"),
        )
        .await;
        let admin = pg.connect().await;
        pg.create_role("web", None).await;
        let from_2 = pg
            .connect_from("127.0.0.2".parse().unwrap(), "web", None, "postgres")
            .await
            .unwrap();
        let from_3 = pg
            .connect_from("127.0.0.3".parse().unwrap(), "web", None, "postgres")
            .await
            .unwrap();
        let other_role = pg
            .connect_from("127.0.0.2".parse().unwrap(), "postgres", None, "postgres")
            .await
            .unwrap();
        let net: ipnet::IpNet = "127.0.0.2/32".parse().unwrap();
        let ended = terminate_sessions_from(&admin, &net, Some("web"))
            .await
            .unwrap();
        assert_eq!(ended, 1);
        assert!(from_2.query_one("SELECT 1", &[]).await.is_err());
        from_3.query_one("SELECT 1", &[]).await.unwrap();
        other_role.query_one("SELECT 1", &[]).await.unwrap();
        // The admin's own session is never ended.
        let all: ipnet::IpNet = "127.0.0.0/8".parse().unwrap();
        let ended = terminate_sessions_from(&admin, &all, None).await.unwrap();
        assert_eq!(ended, 2);
        admin.query_one("SELECT 1", &[]).await.unwrap();
    }
);
