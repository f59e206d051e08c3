//! Linking a remote login role to an application database as its owner
//! role, and dropping it again, on real servers.

use pg_harness::Cluster;
use pgctl::error::Error;
use pgctl::grants::{drop_linked_role, find_owner_role, link_role, unlink_role, LinkChanges};
use pgctl::naming::Naming;
use pgctl::roles::{ensure_login_role, role_info, EnsureRole};
use postgres_protocol::escape::escape_identifier as ident;

/// An application database `db` owned by `app` with data in two schemas.
async fn application(pg: &Cluster, app: &str, db: &str) {
    pg.create_role(app, "app-pw").await;
    pg.create_database(db, app).await;
    let client = pg.connect_as(app, "app-pw", db).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY, name text);
             INSERT INTO users VALUES (1, 'alice');
             CREATE SCHEMA audit;
             CREATE TABLE audit.events (id serial PRIMARY KEY, what text);
             INSERT INTO audit.events (what) VALUES ('created');",
        )
        .await
        .unwrap();
}

/// Links `remote` to `db` and checks everything the link promises.
async fn link_and_check(pg: &Cluster, app: &str, db: &str, remote: &str) {
    let mut admin = pg.connect().await;
    let outcome = ensure_login_role(&admin, remote, &EnsureRole::default())
        .await
        .unwrap();
    let password = outcome.password().unwrap().clone();
    let owner = find_owner_role(&admin, db, None).await.unwrap();
    assert_eq!(owner, app);
    assert_eq!(find_owner_role(&admin, db, Some(app)).await.unwrap(), app);

    let first = link_role(&mut admin, remote, db, &owner).await.unwrap();
    assert_eq!(
        first,
        LinkChanges {
            membership: true,
            role_setting: true,
            connect: true
        }
    );
    // Idempotent.
    let second = link_role(&mut admin, remote, db, &owner).await.unwrap();
    assert!(!second.any(), "{second:?}");

    let remote_client = pg.connect_as(remote, password.expose(), db).await.unwrap();
    let row = remote_client
        .query_one("SELECT current_user::text, session_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), app);
    assert_eq!(row.get::<_, String>(1), remote);
    // Reads and writes every existing table.
    remote_client
        .batch_execute(
            "INSERT INTO users VALUES (2, 'bob');
             UPDATE users SET name = 'alice2' WHERE id = 1;
             DELETE FROM users WHERE id = 2;
             INSERT INTO audit.events (what) VALUES ('remote');
             CREATE TABLE made_remotely (id int);
             INSERT INTO made_remotely VALUES (7);",
        )
        .await
        .unwrap();
    let n: i64 = remote_client
        .query_one("SELECT count(*) FROM audit.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // Tables it creates belong to the owner role, which keeps using them.
    let app_client = pg.connect_as(app, "app-pw", db).await.unwrap();
    let table_owner: String = app_client
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'made_remotely'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(table_owner, app);
    app_client
        .batch_execute("INSERT INTO made_remotely VALUES (8); DROP TABLE made_remotely;")
        .await
        .unwrap();

    // Unlink, then link again: the inverse really removes each part.
    drop(remote_client);
    let removed = unlink_role(&mut admin, remote, db, &owner).await.unwrap();
    assert!(removed.membership && removed.role_setting && removed.connect);
    assert!(!unlink_role(&mut admin, remote, db, &owner)
        .await
        .unwrap()
        .any());
    let c = pg.connect_as(remote, password.expose(), db).await.unwrap();
    let err = c
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    drop(c);
    link_role(&mut admin, remote, db, &owner).await.unwrap();
    let c = pg.connect_as(remote, password.expose(), db).await.unwrap();

    // --deinit: ends the session and drops the role; the data stays.
    let dropped = drop_linked_role(&mut admin, remote, db, &owner, &Naming::default(), false)
        .await
        .unwrap();
    assert!(dropped.dropped);
    // At least the open one (a session closed just before may still be
    // on its way out and be counted too).
    assert!(dropped.terminated_sessions >= 1, "{dropped:?}");
    assert!(c.query_one("SELECT 1", &[]).await.is_err());
    assert!(role_info(&admin, remote).await.unwrap().is_none());
    let again = drop_linked_role(&mut admin, remote, db, &owner, &Naming::default(), false)
        .await
        .unwrap();
    assert!(!again.dropped);
    let n: i64 = app_client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

pg_harness::pg_test!(
    async fn linked_role_acts_as_the_owner_role(major: u32) {
        let pg = Cluster::start(major).await;
        application(&pg, "knocknoc", "knocknoc").await;
        link_and_check(&pg, "knocknoc", "knocknoc", "knocknoc_remote").await;
    }
);

pg_harness::pg_test!(
    async fn names_full_of_quotes_spaces_and_semicolons_work_exactly(major: u32) {
        let pg = Cluster::start(major).await;
        let app = "app \"owner\"; DROP ROLE postgres; --";
        let db = "d'b \"x\"; DROP DATABASE postgres; --";
        let remote = "re'mote \"r\"; SELECT 1; --";
        application(&pg, app, db).await;
        link_and_check(&pg, app, db, remote).await;
        // Nothing was executed from inside the names.
        let admin = pg.connect().await;
        assert!(role_info(&admin, "postgres").await.unwrap().is_some());
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "database {} exists under its exact name", ident(db));
    }
);

pg_harness::pg_test!(
    async fn superuser_owner_and_unmanaged_roles_are_refused(major: u32) {
        let pg = Cluster::start(major).await;
        let mut admin = pg.connect().await;
        let err = find_owner_role(&admin, "postgres", None).await.unwrap_err();
        assert!(
            matches!(err, Error::OwnerIsSuperuser { ref role } if role == "postgres"),
            "{err}"
        );
        let err = find_owner_role(&admin, "no such db", None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DatabaseMissing { .. }), "{err}");

        application(&pg, "app", "appdb").await;
        pg.create_role("hand_made", "pw").await;
        let err = link_role(&mut admin, "hand_made", "appdb", "postgres")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::OwnerIsSuperuser { .. }), "{err}");
        let err = link_role(&mut admin, "app", "appdb", "app")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SelfLink { .. }), "{err}");
        let err = link_role(&mut admin, "ghost", "appdb", "app")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RoleMissing { .. }), "{err}");

        link_role(&mut admin, "hand_made", "appdb", "app")
            .await
            .unwrap();
        let err = drop_linked_role(
            &mut admin,
            "hand_made",
            "appdb",
            "app",
            &Naming::default(),
            false,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::RoleNotManaged { .. }), "{err}");
        // Refused means unchanged: still linked and able to log in.
        let c = pg.connect_as("hand_made", "pw", "appdb").await.unwrap();
        c.query_one("SELECT count(*) FROM users", &[])
            .await
            .unwrap();
        drop(c);
        let forced = drop_linked_role(
            &mut admin,
            "hand_made",
            "appdb",
            "app",
            &Naming::default(),
            true,
        )
        .await
        .unwrap();
        assert!(forced.dropped);
    }
);

pg_harness::pg_test!(
    async fn membership_options_are_inherit_and_set_on_16_and_later(major: u32) {
        let pg = Cluster::start(major).await;
        let mut admin = pg.connect().await;
        application(&pg, "app", "appdb").await;
        ensure_login_role(&admin, "rem", &EnsureRole::default())
            .await
            .unwrap();
        if major >= 16 {
            // A membership without INHERIT is repaired, not duplicated.
            admin
                .batch_execute("GRANT app TO rem WITH INHERIT FALSE, SET TRUE")
                .await
                .unwrap();
        }
        let changes = link_role(&mut admin, "rem", "appdb", "app").await.unwrap();
        assert!(changes.membership);
        let sql = if major >= 16 {
            "SELECT count(*), bool_and(inherit_option AND set_option) FROM pg_auth_members \
             WHERE roleid = 'app'::regrole AND member = 'rem'::regrole"
        } else {
            "SELECT count(*), bool_and(r.rolinherit) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
             WHERE roleid = 'app'::regrole AND member = 'rem'::regrole"
        };
        let row = admin.query_one(sql, &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
        assert!(row.get::<_, bool>(1));
    }
);
