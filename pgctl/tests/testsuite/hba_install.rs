//! The basic installation path of `pgctl::hba_install` on every provisioned
//! PostgreSQL version: a rule added through `edit` lets the new client in as
//! soon as `edit` returns (the reload is confirmed, not hoped for).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use crate::hba_install_support::{add_line, backups, temp_files, with_line};
use pg_harness::Cluster;
use pgctl::hba_install::{
    edit, install, InstallEvent, InstallOptions, InstallStep, ReloadConfirmation,
};

pg_harness::pg_test!(
    async fn added_rule_admits_the_client_when_edit_returns(major: u32) {
        let pg = Cluster::start(major).await;
        pg.create_role("alice", "s3cret-pw").await;
        let client = pg.connect().await;
        let hba = pg.hba_file();
        let remote = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let refused = pg
            .connect_from(remote, "alice", "s3cret-pw", "postgres")
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
        );

        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let options = InstallOptions {
            reconnect: Some(Arc::new(pg.config())),
            events: Some(Arc::new(move |e: InstallEvent| {
                sink.lock().unwrap().push(e)
            })),
            ..InstallOptions::default()
        };
        let old = std::fs::read(&hba).unwrap();
        let line = "host postgres alice 127.0.0.2/32 scram-sha-256";
        let report = add_line(&client, &hba, line, &options).await.unwrap();
        assert!(report.changed);
        assert_eq!(report.server_major, major);
        assert_eq!(report.reload, Some(ReloadConfirmation::NewSession));
        assert_eq!(std::fs::read(&hba).unwrap(), with_line(&old, line));
        assert_eq!(std::fs::read(report.backup.as_ref().unwrap()).unwrap(), old);
        assert!(temp_files(&hba).is_empty());
        let steps: Vec<InstallStep> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                InstallEvent::Step(s) => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(steps, InstallStep::ALL_SUCCESSFUL);

        // No sleep, no harness reload: the rule is live.
        pg.connect_from(remote, "alice", "s3cret-pw", "postgres")
            .await
            .unwrap();

        // Idempotent: the same edit again changes nothing and, right after
        // (file timestamps cannot tell within their coarse resolution; the
        // lock file's record of the loaded file version can), reloads nothing.
        let again = add_line(&client, &hba, line, &options).await.unwrap();
        assert!(!again.changed);
        assert_eq!(again.reload, None);
        assert_eq!(backups(&hba).len(), 1);
    }
);

pg_harness::pg_test!(
    async fn install_without_reconnect_confirms_on_its_own_session(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        let hba = pg.hba_file();
        let new = with_line(
            &std::fs::read(&hba).unwrap(),
            "host knocknoc app_remote 203.0.113.7/32 scram-sha-256",
        );
        let report = install(&client, &hba, &new, &InstallOptions::default())
            .await
            .unwrap();
        assert_eq!(report.reload, Some(ReloadConfirmation::OwnSession));
        assert_eq!(std::fs::read(&hba).unwrap(), new);
    }
);

pg_harness::pg_test!(
    /// Guards against refusing files the server loads: with `ssl = off` a
    /// `hostssl` line gets an error in `pg_hba_file_rules` ("cannot match
    /// because SSL is disabled") but the server still loads the file, so
    /// neither the check of the current file nor that of the new one may
    /// count it.
    async fn a_hostssl_line_with_ssl_off_does_not_block_edits(major: u32) {
        let hostssl = "hostssl all all 127.0.0.9/32 scram-sha-256";
        let pg = Cluster::start_with(
            major,
            pg_harness::ClusterOptions {
                hba: Some(format!("{}{hostssl}\n", pg_harness::DEFAULT_HBA)),
                ..Default::default()
            },
        )
        .await;
        let client = pg.connect().await;
        let row = client
            .query_one(
                "select type, error from pg_hba_file_rules where error is not null",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("hostssl"));
        let hba = pg.hba_file();
        let line = "host knocknoc app_remote 203.0.113.7/32 scram-sha-256";
        let new = with_line(&std::fs::read(&hba).unwrap(), line);
        let report = install(&client, &hba, &new, &InstallOptions::default())
            .await
            .unwrap();
        assert!(report.changed);
        assert_eq!(std::fs::read(&hba).unwrap(), new);
    }
);

/// Guards the shortcut of step 4: the server is asked about the CURRENT file
/// only when the lock file does not record this very version as installed
/// with a confirmed reload; the check of the NEW file always runs. Counted
/// in the server's statement log.
#[test]
fn current_file_check_is_skipped_only_for_the_version_last_installed_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start_with(
            17,
            pg_harness::ClusterOptions {
                settings: vec![("log_statement".into(), "all".into())],
                ..Default::default()
            },
        )
        .await;
        let client = pg.connect().await;
        let hba = pg.hba_file();
        let checks = || {
            pg.log()
                .matches("error is not null and type is null")
                .count()
        };
        let add = |line: &'static str| {
            let options = InstallOptions {
                reconnect: Some(Arc::new(pg.config())),
                ..InstallOptions::default()
            };
            let client = &client;
            let hba = hba.clone();
            async move {
                edit(
                    client,
                    &hba,
                    |old: &[u8]| Ok::<_, std::io::Error>(with_line(old, line)),
                    &options,
                )
                .await
                .unwrap()
            }
        };
        assert!(
            add("host knocknoc a 203.0.113.1/32 scram-sha-256")
                .await
                .changed
        );
        assert_eq!(checks(), 2, "first run: current file and new file");
        assert!(
            add("host knocknoc b 203.0.113.2/32 scram-sha-256")
                .await
                .changed
        );
        assert_eq!(checks(), 3, "the version it installed: new file only");
        // Someone else edits the file: the recorded version no longer
        // matches, so the server is asked about the current file again.
        let mut text = std::fs::read(&hba).unwrap();
        text.extend_from_slice(b"# edited by hand\n");
        std::fs::write(&hba, &text).unwrap();
        assert!(
            add("host knocknoc c 203.0.113.3/32 scram-sha-256")
                .await
                .changed
        );
        assert_eq!(checks(), 5, "edited by someone else: both checks");
    });
}

#[test]
fn a_path_that_is_not_the_servers_hba_file_is_refused_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start(17).await;
        let client = pg.connect().await;
        let elsewhere = tempfile::NamedTempFile::new().unwrap();
        let err = install(
            &client,
            elsewhere.path(),
            b"local all all trust\n",
            &InstallOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                pgctl::hba_install::InstallError::NotTheServersHbaFile { .. }
            ),
            "{err:?}"
        );
        assert!(std::fs::read(elsewhere.path()).unwrap().is_empty());
    });
}
