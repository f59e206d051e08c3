//! `knocker replica` on the primary against real servers: --init (roles,
//! settings, block, restart), --allow (lines, slot, a real base backup
//! through them with the printed password), --status, --print-url,
//! --revoke, --dry-run changing nothing and bad input touching nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use knocker_ops::replica::{self, block, Action, Options};
use knocker_ops::ErrorKind;
use pg_harness::{Cluster, ClusterOptions};
use pgctl::conninfo::{ConnInfo, Keyword};

async fn primary(major: u32) -> Cluster {
    let pg = Cluster::start_with(
        major,
        ClusterOptions {
            settings: vec![("max_slot_wal_keep_size".into(), "-1".into())],
            ..Default::default()
        },
    )
    .await;
    pg.create_role("knocknoc", "app-password").await;
    pg.create_database("knocknoc", "knocknoc").await;
    pg
}

fn options(pg: &Cluster, action: Action) -> Options {
    let mut o = Options::new(action);
    o.conn = Some(format!(
        "postgresql://knocknoc:app-password@127.0.0.1:{}/knocknoc",
        pg.port()
    ));
    o.admin_conn = Some(format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.socket_dir().display(),
        pg.port()
    ));
    o.config = "/nonexistent/knocknoc.conf".into();
    o
}

async fn run(o: &Options) -> Result<replica::Report, knocker_ops::Error> {
    replica::run(o, &mut |_question: &str| true).await
}

/// Every file of the cluster's configuration and the catalog facts that
/// the commands could change, to show a run changed nothing.
async fn snapshot(pg: &Cluster) -> String {
    let c = pg.connect().await;
    let rows = c
        .query(
            "SELECT (SELECT string_agg(rolname || ':' || rolreplication, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'knocknoc%'), \
                    (SELECT string_agg(slot_name, ',') FROM pg_replication_slots)",
            &[],
        )
        .await
        .unwrap();
    let auto = std::fs::read_to_string(pg.data_dir().join("postgresql.auto.conf")).unwrap();
    let hba = std::fs::read_to_string(pg.hba_file()).unwrap();
    format!(
        "{:?} {:?}\n{auto}\n{hba}",
        rows[0].get::<_, Option<String>>(0),
        rows[0].get::<_, Option<String>>(1)
    )
}

fn run_basebackup(pg: &Cluster, user: &str, password: &str, slot: &str) -> std::process::Output {
    let os = pg.os_user();
    let dir = tempfile::Builder::new()
        .prefix("knocker-replica-bb-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    os.chown(dir.path()).unwrap();
    let passfile = dir.path().join("passfile");
    std::fs::write(
        &passfile,
        pgctl::replication::passfile_line("127.0.0.1", pg.port(), "replication", user, password),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    os.chown(&passfile).unwrap();
    let source = ConnInfo::builder()
        .host("127.0.0.1")
        .port(pg.port())
        .user(user)
        .set(Keyword::Passfile, passfile.to_string_lossy().into_owned())
        .build();
    let argv = pgctl::replication::Basebackup {
        bin_dir: pg.bin_dir(),
        data_directory: dir.path().join("data"),
        source,
        slot: Some(slot.into()),
        wal_directory: None,
        progress: false,
    }
    .argv();
    os.command(&argv[0]).args(&argv[1..]).output().unwrap()
}

fn hba(pg: &Cluster) -> String {
    std::fs::read_to_string(pg.hba_file()).unwrap()
}

fn has_block(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .unwrap()
        .contains(block::BEGIN)
}

pg_harness::pg_test!(
    async fn init_allow_status_url_revoke(major: u32) {
        let pg = primary(major).await;

        // Before --init, --allow is refused and nothing changes.
        let before = snapshot(&pg).await;
        let mut allow = options(
            &pg,
            Action::Allow {
                cidr: "127.0.0.1/32".parse().unwrap(),
                sync: false,
            },
        );
        allow.name = Some("node_b".into());
        let e = run(&allow).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused { overridable: false }, "{e}");

        // PostgreSQL 18's initdb turns data checksums on: then pg_rewind
        // needs no wal_log_hints, and nothing needs a restart.
        let checksums = {
            let c = pg.connect().await;
            pgctl::replication::read_settings(&c)
                .await
                .unwrap()
                .data_checksums
        };
        assert_eq!(checksums, major >= 18);

        // --dry-run prints the exact plan and changes nothing.
        let mut dry = options(&pg, Action::Init);
        dry.dry_run = true;
        let r = run(&dry).await.unwrap();
        let plan = r.plan.expect("a plan").to_string();
        assert!(plan.contains("CREATE ROLE \"knocknoc_replication\" LOGIN NOSUPERUSER INHERIT PASSWORD '<generated>';"), "{plan}");
        assert!(
            plan.contains("ALTER ROLE \"knocknoc_replication\" REPLICATION;"),
            "{plan}"
        );
        assert!(plan.contains("GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO \"knocknoc_rewind\";"), "{plan}");
        assert_eq!(
            plan.contains("ALTER SYSTEM SET wal_log_hints = 'on';"),
            !checksums,
            "{plan}"
        );
        // The bound: the smaller of 10% of the WAL file system and 8 GB.
        let wal_fs = pgctl::replication::filesystem_space(&pg.data_dir().join("pg_wal"))
            .unwrap()
            .total;
        let bound_mb = (wal_fs / 10).min(8 << 30) >> 20;
        assert!(
            plan.contains(&format!(
                "ALTER SYSTEM SET max_slot_wal_keep_size = '{bound_mb}MB';"
            )),
            "{plan}"
        );
        // Unbounded only with --force, and then said.
        let mut forced = dry.clone();
        forced.force = true;
        let r = run(&forced).await.unwrap();
        assert!(!r
            .plan
            .unwrap()
            .to_string()
            .contains("max_slot_wal_keep_size"));
        assert!(
            r.warnings.iter().any(|w| w.contains("unbounded")),
            "{:?}",
            r.warnings
        );
        assert!(plan.contains(&format!("+{}", block::BEGIN)), "{plan}");
        assert_eq!(plan.contains("-- commands\n"), !checksums, "{plan}");
        assert!(r.replication_url.is_none());
        assert_eq!(snapshot(&pg).await, before);

        // --init: roles, settings, block, restart; the URL once.
        let r = run(&options(&pg, Action::Init)).await.unwrap();
        assert!(r.changed);
        let url = r.replication_url.clone().expect("the replication URL").0;
        let info = ConnInfo::parse(&url).unwrap();
        assert_eq!(info.get(Keyword::User), Some("knocknoc_replication"));
        let password = info.get(Keyword::Password).unwrap().to_string();
        assert_eq!(
            r.restart.as_ref().is_some_and(|x| x.restarted),
            !checksums,
            "{r:?}"
        );
        assert!(
            !format!("{r:?}").contains(&password),
            "Debug shows no secret"
        );
        let admin = pg.connect().await;
        let s = pgctl::replication::read_settings(&admin).await.unwrap();
        assert!(s.wal_log_hints != checksums, "{s:?}");
        assert!(s.max_slot_wal_keep_size_mb > 0);
        assert!(
            pgctl::replication::has_replication_attribute(&admin, "knocknoc_replication")
                .await
                .unwrap()
        );
        assert!(
            pgctl::replication::missing_rewind_grants(&admin, "knocknoc_rewind")
                .await
                .unwrap()
                .is_empty()
        );
        let managed: bool = admin
            .query_one("SELECT shobj_description(oid, 'pg_authid') = 'managed by knocker' FROM pg_roles WHERE rolname = 'knocknoc_rewind'", &[])
            .await
            .unwrap()
            .get(0);
        assert!(managed);
        assert!(has_block(&pg.hba_file()));

        // A second --init has nothing to do and prints no password.
        let r = run(&options(&pg, Action::Init)).await.unwrap();
        assert!(!r.changed, "{r:?}");
        assert!(r.replication_url.is_none());

        // Bad input: nothing touched.
        let before = snapshot(&pg).await;
        let mut bad = allow.clone();
        bad.name = Some("Node-B".into());
        assert_eq!(run(&bad).await.unwrap_err().kind(), ErrorKind::Usage);
        let mut bad = allow.clone();
        bad.name = None;
        assert_eq!(run(&bad).await.unwrap_err().kind(), ErrorKind::Usage);
        let mut bad = allow.clone();
        bad.conn = Some("postgresql://knocknoc@127.0.0.1:notaport/knocknoc".into());
        assert_eq!(run(&bad).await.unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(snapshot(&pg).await, before);

        // --allow --sync --dry-run: the exact statements, nothing changed.
        let mut sync = allow.clone();
        sync.action = Action::Allow {
            cidr: "127.0.0.1/32".parse().unwrap(),
            sync: true,
        };
        sync.dry_run = true;
        let plan = run(&sync).await.unwrap().plan.unwrap().to_string();
        assert!(
            plan.contains(
                "SELECT pg_catalog.pg_create_physical_replication_slot('knocker_node_b', true);"
            ),
            "{plan}"
        );
        assert!(
            plan.contains("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (\"node_b\")';"),
            "{plan}"
        );
        assert_eq!(snapshot(&pg).await, before);

        // --allow: lines and slot; the standby's base backup works with
        // the printed password through them.
        let r = run(&allow).await.unwrap();
        assert!(r.changed);
        assert_eq!(r.slots, vec!["knocker_node_b".to_string()]);
        let text = hba(&pg);
        assert!(text.contains("host    replication knocknoc_replication 127.0.0.1/32 scram-sha-256 # standby=node_b added "), "{text}");
        let slot = pgctl::replication::slot(&admin, "knocker_node_b")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(slot.wal_status.as_deref(), Some("reserved"));
        let r = run(&allow).await.unwrap();
        assert!(!r.changed, "--allow twice changes nothing");
        // Only Debian's 15 ships pg_basebackup here (a 15 client refuses
        // newer servers).
        if major == 15 {
            let out = run_basebackup(&pg, "knocknoc_replication", &password, "knocker_node_b");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = run_basebackup(&pg, "knocknoc_replication", "wrong", "knocker_node_b");
            assert!(!out.status.success());
        }
        // The rewind role, with the same password, reads what pg_rewind
        // reads, without being a superuser.
        let rewind = pg
            .connect_as("knocknoc_rewind", password.as_str(), "postgres")
            .await
            .unwrap();
        let row = rewind
            .query_one(
                "SELECT length(pg_catalog.pg_read_binary_file('global/pg_control')) > 0, \
                        (pg_catalog.pg_stat_file('PG_VERSION', false)).size > 0, \
                        (SELECT count(*) FROM pg_catalog.pg_ls_dir('.', false, false)) > 0, \
                        (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, bool>(0),
                row.get::<_, bool>(1),
                row.get::<_, bool>(2),
                row.get::<_, bool>(3)
            ),
            (true, true, true, false)
        );

        // --status (JSON keys of the issue) and --print-url.
        let r = run(&options(&pg, Action::Status)).await.unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["role"], "primary");
        assert_eq!(json["timeline"], 1);
        assert!(json["standbys"].is_array());
        assert!(json["upstream"].is_null());
        assert_eq!(json["streaming"], false);
        assert_eq!(json["replication_slots"][0]["name"], "knocker_node_b");
        assert_eq!(json["allowed"][0]["cidr"], "127.0.0.1/32");
        assert_eq!(json["rewind_ready"], true);
        assert_eq!(json["fenced"], false);
        let r = run(&options(&pg, Action::PrintUrl)).await.unwrap();
        let url = r.url.unwrap();
        assert!(url.contains(&format!("127.0.0.1:{}", pg.port())), "{url}");
        assert!(
            url.starts_with("postgresql://knocknoc_remote:PASSWORD@"),
            "{url}"
        );
        assert!(url.contains("target_session_attrs=read-write"), "{url}");
        assert!(r
            .installer_command
            .unwrap()
            .starts_with("knocknoc-installer --db-hosts "));

        // --revoke: lines and slot gone.
        let r = run(&options(
            &pg,
            Action::Revoke {
                cidr: "127.0.0.1/32".parse().unwrap(),
                terminate: false,
            },
        ))
        .await
        .unwrap();
        assert!(r.changed);
        assert!(!hba(&pg).contains("knocknoc_replication"));
        assert!(pgctl::replication::slot(&admin, "knocker_node_b")
            .await
            .unwrap()
            .is_none());
        let r = run(&options(
            &pg,
            Action::Revoke {
                cidr: "127.0.0.1/32".parse().unwrap(),
                terminate: false,
            },
        ))
        .await
        .unwrap();
        assert!(!r.changed);
    }
);
