//! Crash consistency, concurrency and bad states of the pg_hba installer,
//! against a real PostgreSQL 17 (one version for the heavy tests; the basic
//! path runs on every version in `hba_install.rs`).
//!
//! Installers run in child processes (this test binary re-executed, see
//! `hba_install_support`), so they can be SIGKILLed, resource-limited and
//! run twenty at a time.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use crate::hba_install_support::*;
use fs4::fs_std::FileExt;
use pg_harness::{Cluster, ClusterOptions};
use pgctl::hba_install::{
    edit, install, validate, InstallError, InstallOptions, InstallStep, OfflineValidation,
    Validation, ValidationSettings,
};

const MAJOR: u32 = 17;

fn rule(n: u32) -> String {
    format!("host knocknoc r{n} 127.0.1.{n}/32 scram-sha-256")
}

/// A PostgreSQL 17 server, its hba file and a superuser session.
async fn server() -> (Cluster, std::path::PathBuf, tokio_postgres::Client) {
    let pg = Cluster::start(MAJOR).await;
    let hba = pg.hba_file();
    let client = pg.connect().await;
    (pg, hba, client)
}

/// [`options_for`] reusing `validation` (made by the test) instead of
/// validating again.
async fn validated_options(pg: &Cluster, validation: Validation) -> InstallOptions {
    InstallOptions {
        validated: Some(Arc::new(validation)),
        ..options_for(pg).await
    }
}

/// Installs `text` through `edit`, whatever the file holds then.
async fn replace_text(
    client: &tokio_postgres::Client,
    hba: &std::path::Path,
    text: &[u8],
    options: &InstallOptions,
) -> Result<pgctl::hba_install::InstallReport, InstallError> {
    let replace = |_old: &[u8]| Ok::<_, std::io::Error>(text.to_vec());
    edit(client, hba, replace, options).await
}

async fn options_for(pg: &Cluster) -> InstallOptions {
    InstallOptions {
        reconnect: Some(Arc::new(pg.config())),
        ..InstallOptions::default()
    }
}

#[test]
fn sigkill_at_every_step_leaves_old_or_new_file_and_next_run_converges_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start(MAJOR).await;
        let hba = pg.hba_file();
        for (round, step) in InstallStep::ALL_SUCCESSFUL.iter().enumerate() {
            let line = rule(round as u32 + 1);
            let old = std::fs::read(&hba).unwrap();
            let new = with_line(&old, &line);
            let spec = ChildSpec {
                add: line.clone(),
                kill_at: Some(step.name()),
                ..ChildSpec::default()
            };
            let outcome = run_child(&pg, &spec).await;
            assert!(
                outcome.killed(),
                "child not killed at {step:?}: {outcome:?}"
            );

            let now = std::fs::read(&hba).unwrap();
            let renamed = InstallStep::ALL_SUCCESSFUL
                .iter()
                .position(|s| *s == InstallStep::Renamed)
                .unwrap();
            if round < renamed {
                assert_eq!(
                    now, old,
                    "killed at {step:?}: the file must still be the old one"
                );
            } else {
                assert_eq!(now, new, "killed at {step:?}: the file must be the new one");
            }

            // The next run cleans up after the killed one and succeeds.
            let had_temps = !temp_files(&hba).is_empty();
            let outcome = run_child(
                &pg,
                &ChildSpec {
                    add: line.clone(),
                    ..ChildSpec::default()
                },
            )
            .await;
            let ok = outcome.ok_line();
            if had_temps {
                assert!(
                    !ok.contains("stale_removed=0"),
                    "stale temps not removed after {step:?}: {ok}"
                );
            }
            assert!(
                temp_files(&hba).is_empty(),
                "temp files left after {step:?}"
            );
            assert_eq!(
                std::fs::read(&hba).unwrap(),
                new,
                "after the rerun following {step:?}"
            );
            if matches!(step, InstallStep::Renamed | InstallStep::ServerChecked) {
                // Killed after the rename but before the reload was sent: the
                // unchanged file is newer than the server's last reload, so
                // the rerun reloads (regression guard for a run that dies
                // between rename and reload leaving the rule unapplied).
                assert!(
                    ok.contains("reload=Some"),
                    "rerun after {step:?} did not reload: {ok}"
                );
            }
            assert!(server_errors(&pg.connect().await).await.is_empty());
        }
        assert!(backups(&hba).len() <= 10);
        pg.restart().await;
        let client = pg.connect().await;
        assert!(server_errors(&client).await.is_empty());
        let rules: i64 = client
            .query_one(
                "select count(*) from pg_hba_file_rules where user_name = array[$1::text]",
                &[&"r1"],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rules, 1);
    });
}

#[test]
fn twenty_concurrent_editors_lose_no_rule_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start(MAJOR).await;
        let hba = pg.hba_file();
        let children: Vec<_> = (1..=20)
            .map(|n| {
                spawn_child(
                    &pg,
                    &ChildSpec {
                        add: rule(n),
                        ..ChildSpec::default()
                    },
                )
            })
            .collect();
        let mut waited = 0;
        for child in children {
            let outcome = wait_child(child).await;
            outcome.ok_line();
            if outcome
                .events()
                .iter()
                .any(|e| e.starts_with("waiting for lock held by pid "))
            {
                waited += 1;
            }
        }
        assert!(
            waited > 0,
            "twenty simultaneous installers never waited for each other"
        );
        let text = std::fs::read_to_string(&hba).unwrap();
        for n in 1..=20 {
            assert_eq!(
                text.lines().filter(|l| *l == rule(n)).count(),
                1,
                "rule {n} in:\n{text}"
            );
        }
        let client = pg.connect().await;
        assert!(server_errors(&client).await.is_empty());
        let rules: i64 = client
            .query_one(
                "select count(*) from pg_hba_file_rules where database = array['knocknoc']",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rules, 20);
        assert!(temp_files(&hba).is_empty());
        assert_eq!(backups(&hba).len(), 10);
    });
}

#[test]
fn second_installer_waits_for_the_lock_names_the_holder_and_times_out_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start(MAJOR).await;
        let hba = pg.hba_file();
        let lock_path =
            hba.with_file_name(pgctl::naming::Naming::default().lock_name("pg_hba.conf"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap();
        assert!(lock.try_lock_exclusive().unwrap());
        std::fs::write(&lock_path, format!("{}\n", std::process::id())).unwrap();
        let before = std::fs::read(&hba).unwrap();

        let spec = ChildSpec {
            add: rule(1),
            lock_timeout_ms: Some(500),
            ..ChildSpec::default()
        };
        let outcome = run_child(&pg, &spec).await;
        let expected = format!("waiting for lock held by pid {}", std::process::id());
        assert!(
            outcome.events().iter().any(|e| e.starts_with(&expected)),
            "{outcome:?}"
        );
        assert!(
            outcome.err_line().starts_with("CHILD-ERR LockTimeout"),
            "{outcome:?}"
        );
        assert!(outcome
            .err_line()
            .contains(&format!("(pid {})", std::process::id())));
        assert_eq!(std::fs::read(&hba).unwrap(), before);

        // Released while the child waits: it goes on and succeeds.
        let child = spawn_child(
            &pg,
            &ChildSpec {
                add: rule(1),
                ..ChildSpec::default()
            },
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        FileExt::unlock(&lock).unwrap();
        let outcome = wait_child(child).await;
        assert!(
            outcome.events().iter().any(|e| e.starts_with(&expected)),
            "{outcome:?}"
        );
        outcome.ok_line();
        assert_eq!(std::fs::read(&hba).unwrap(), with_line(&before, &rule(1)));
    });
}

#[test]
fn server_down_gives_server_unreachable_and_changes_nothing_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        let options = options_for(&pg).await;
        pg.stop().await;
        let before = std::fs::read(&hba).unwrap();
        let err = add_line(&client, &hba, &rule(1), &options)
            .await
            .unwrap_err();
        assert!(
            matches!(err, InstallError::ServerUnreachable { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("cannot reach the PostgreSQL server"),
            "{err}"
        );
        assert_eq!(std::fs::read(&hba).unwrap(), before);
        assert!(temp_files(&hba).is_empty() && backups(&hba).is_empty());
        pg.restart().await;
    });
}

#[test]
fn not_a_superuser_gives_not_superuser_and_changes_nothing_pg17() {
    pg_harness::block_on(async {
        let hba_text = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
        let options = ClusterOptions {
            hba: Some(hba_text.into()),
            ..ClusterOptions::default()
        };
        let pg = Cluster::start_with(MAJOR, options).await;
        pg.create_role("plain", "secret").await;
        let client = pg.connect_as("plain", "secret", "postgres").await.unwrap();
        let hba = pg.hba_file();
        let err = install(
            &client,
            &hba,
            b"host all all 0.0.0.0/0 trust\n",
            &options_for(&pg).await,
        )
        .await
        .unwrap_err();
        match &err {
            InstallError::NotSuperuser { user } => assert_eq!(user, "plain"),
            other => panic!("expected NotSuperuser, got {other:?}"),
        }
        assert!(err.to_string().contains("not a superuser"), "{err}");
        assert_eq!(std::fs::read_to_string(&hba).unwrap(), hba_text);
    });
}

/// `chattr +i` is caught before anything is written; `chattr +a` (which
/// `faccessat` lets through) at the rename, before anything changed.
#[test]
fn immutable_or_append_only_hba_file_gives_not_writable_and_changes_nothing_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        let before = std::fs::read(&hba).unwrap();
        for attribute in ['i', 'a'] {
            let guard = Attribute::set(&hba, attribute);
            let err = add_line(&client, &hba, &rule(1), &options_for(&pg).await)
                .await
                .unwrap_err();
            drop(guard);
            match &err {
                InstallError::NotWritable { path, source } => {
                    assert_eq!(path, &hba, "+{attribute}");
                    assert_eq!(source.raw_os_error(), Some(libc::EPERM), "+{attribute}");
                }
                other => panic!("+{attribute}: expected NotWritable, got {other:?}"),
            }
            assert!(
                err.to_string().contains("immutable or append-only"),
                "{err}"
            );
            assert_eq!(std::fs::read(&hba).unwrap(), before, "+{attribute}");
            assert!(temp_files(&hba).is_empty(), "+{attribute}");
            assert!(backups(&hba).is_empty(), "+{attribute}");
        }
    });
}

#[test]
fn file_size_limit_gives_disk_full_and_changes_nothing_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start(MAJOR).await;
        let hba = pg.hba_file();
        let before = std::fs::read(&hba).unwrap();
        // The backup of the small file fits under the limit; the new text,
        // with a long comment, does not.
        let line = format!("# {}", "x".repeat(64 * 1024));
        let limit = before.len() as u64 + 4096;
        let spec = ChildSpec {
            add: line,
            fsize_limit: Some(limit),
            ..ChildSpec::default()
        };
        let outcome = run_child(&pg, &spec).await;
        let err = outcome.err_line();
        assert!(err.starts_with("CHILD-ERR DiskFull"), "{outcome:?}");
        assert!(err.contains("File too large"), "{err}");
        assert_eq!(std::fs::read(&hba).unwrap(), before);
        assert!(temp_files(&hba).is_empty(), "{:?}", temp_files(&hba));
        assert!(backups(&hba).is_empty(), "{:?}", backups(&hba));
    });
}

#[test]
fn server_rejected_file_is_rolled_back_at_once_and_not_reloaded_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        let before = std::fs::read(&hba).unwrap();
        let reloads_before = pg.log().matches("received SIGHUP").count();
        // The server check must catch this even without the offline
        // validator.
        let options = InstallOptions {
            offline_validation: false,
            ..options_for(&pg).await
        };
        let bad = "host all all 999.0.0.1/32 trust";
        let err = add_line(&client, &hba, bad, &options).await.unwrap_err();
        let bad_line = with_line(&before, bad).split(|b| *b == b'\n').count() as u32 - 1;
        match &err {
            InstallError::ServerRejected { problems } => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert_eq!(problems[0].line, Some(bad_line));
                assert!(problems[0].message.contains("999.0.0.1"), "{problems:?}");
            }
            other => panic!("expected ServerRejected, got {other:?}"),
        }
        assert!(err.to_string().contains(&format!(":{bad_line}: ")), "{err}");
        assert_eq!(std::fs::read(&hba).unwrap(), before);
        assert!(temp_files(&hba).is_empty());
        assert!(server_errors(&client).await.is_empty());
        assert_eq!(
            pg.log().matches("received SIGHUP").count(),
            reloads_before,
            "a rejected file was reloaded"
        );
    });
}

#[test]
fn offline_validation_refuses_a_bad_line_before_writing_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        let before = std::fs::read(&hba).unwrap();
        let bad = "host all all 127.0.0.1/33 trust";
        let err = add_line(&client, &hba, bad, &options_for(&pg).await)
            .await
            .unwrap_err();
        let bad_line = with_line(&before, bad).split(|b| *b == b'\n').count() as u32 - 1;
        match &err {
            InstallError::ValidationFailed { major, problems } => {
                assert_eq!(*major, MAJOR);
                assert_eq!(
                    problems.iter().map(|p| p.line).collect::<Vec<_>>(),
                    vec![Some(bad_line)]
                );
                assert!(problems[0].message.contains("127.0.0.1/33"), "{problems:?}");
            }
            other => panic!("expected ValidationFailed, got {other:?}"),
        }
        assert_eq!(std::fs::read(&hba).unwrap(), before);
        assert!(temp_files(&hba).is_empty() && backups(&hba).is_empty());
    });
}

#[test]
fn existing_errors_are_named_and_refused_unless_forced_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        let bad = "host all all 127.0.0.1/33 trust";
        let broken = with_line(&std::fs::read(&hba).unwrap(), bad);
        std::fs::write(&hba, &broken).unwrap();
        let bad_line = broken.split(|b| *b == b'\n').count() as u32 - 1;

        let options = options_for(&pg).await;
        let err = add_line(&client, &hba, &rule(1), &options)
            .await
            .unwrap_err();
        match &err {
            InstallError::ExistingErrors { problems, .. } => {
                assert_eq!(
                    problems.iter().map(|p| p.line).collect::<Vec<_>>(),
                    vec![Some(bad_line)]
                );
            }
            other => panic!("expected ExistingErrors, got {other:?}"),
        }
        assert_eq!(std::fs::read(&hba).unwrap(), broken);

        // Forced, an edit that repairs the line goes through.
        let forced = InstallOptions {
            force: true,
            ..options
        };
        let fix = |old: &[u8]| {
            let text = String::from_utf8(old.to_vec()).unwrap();
            Ok::<_, std::io::Error>(with_line(
                text.replace(bad, "").trim_end().as_bytes(),
                &rule(1),
            ))
        };
        let report = edit(&client, &hba, fix, &forced).await.unwrap();
        assert!(report.changed);
        assert_eq!(report.forced_over.len(), 1);
        assert!(server_errors(&client).await.is_empty());
    });
}

#[test]
fn owner_and_mode_of_the_original_are_kept_by_file_and_backup_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        std::os::unix::fs::chown(&hba, Some(4242), Some(4343)).unwrap();
        std::fs::set_permissions(&hba, std::fs::Permissions::from_mode(0o644)).unwrap();
        let report = add_line(&client, &hba, &rule(1), &options_for(&pg).await)
            .await
            .unwrap();
        for path in [hba.clone(), report.backup.clone().unwrap()] {
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (4242, 4343, 0o644),
                "{}",
                path.display()
            );
        }
    });
}

#[test]
fn backups_are_pruned_to_the_newest_ten_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        let options = options_for(&pg).await;
        let mut previous = Vec::new();
        for n in 1..=12 {
            previous = std::fs::read(&hba).unwrap();
            add_line(&client, &hba, &rule(n), &options).await.unwrap();
        }
        let kept = backups(&hba);
        assert_eq!(kept.len(), 10, "{kept:?}");
        assert_eq!(std::fs::read(kept.last().unwrap()).unwrap(), previous);
        // The oldest two (the original file and the one with rule 1) are gone.
        assert!(String::from_utf8(std::fs::read(&kept[0]).unwrap())
            .unwrap()
            .contains(&rule(2)));
    });
}

/// The settings the installer reads of a harness cluster (`ssl` off, no
/// OAuth validators), for a caller's own [`validate`].
fn harness_settings() -> ValidationSettings {
    ValidationSettings::default()
}

/// A caller's validation of exactly the text its edit produces stands for
/// the installer's own whole-file pass; the same validation is not used
/// when the edit produces other bytes (the file changed under the lock
/// and was edited again): that text is validated afresh and its bad line
/// refused before anything is written (were the stale verdict trusted, the
/// server would have rejected the written file instead).
#[test]
fn shared_validation_is_reused_only_for_the_exact_text_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;

        let planned = with_line(&std::fs::read(&hba).unwrap(), &rule(1));
        let validation = validate(&hba, &planned, MAJOR, &harness_settings());
        assert!(
            validation.problems().is_empty(),
            "{:?}",
            validation.problems()
        );
        let options = validated_options(&pg, validation).await;
        let report = replace_text(&client, &hba, &planned, &options)
            .await
            .unwrap();
        assert_eq!(report.offline_validation, OfflineValidation::Reused);
        assert_eq!(std::fs::read(&hba).unwrap(), planned);

        // Planned on one text, the file changed in between: the edit under
        // the lock gives other bytes, with a bad line.
        let planned = with_line(&planned, &rule(2));
        let validation = validate(&hba, &planned, MAJOR, &harness_settings());
        let options = validated_options(&pg, validation).await;
        let before = std::fs::read(&hba).unwrap();
        let bad = "host all all 127.0.0.1/33 trust";
        let err = edit(
            &client,
            &hba,
            |old: &[u8]| Ok::<_, std::io::Error>(with_line(&with_line(old, bad), &rule(2))),
            &options,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, InstallError::ValidationFailed { problems, .. }
                if problems.len() == 1 && problems[0].message.contains("127.0.0.1/33")),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&hba).unwrap(), before);
        assert!(temp_files(&hba).is_empty() && backups(&hba).len() == 1);

        // Another version or other settings than the server's: not used.
        let other_ssl = ValidationSettings {
            ssl: true,
            ..harness_settings()
        };
        for (n, major, settings) in [(3, 16, harness_settings()), (4, MAJOR, other_ssl)] {
            let good = with_line(&std::fs::read(&hba).unwrap(), &rule(n));
            let options = validated_options(&pg, validate(&hba, &good, major, &settings)).await;
            let report = replace_text(&client, &hba, &good, &options).await.unwrap();
            assert_eq!(
                report.offline_validation,
                OfflineValidation::Run,
                "{major} {settings:?}"
            );
            assert_eq!(std::fs::read(&hba).unwrap(), good);
        }
    });
}

/// A validation read an included file; that file changed before the
/// installation: the verdict no longer holds, the text is validated again
/// and the included file's bad line refused before anything is written.
/// The same file unchanged: the verdict is reused.
#[test]
fn shared_validation_notices_an_included_file_changed_in_between_pg17() {
    pg_harness::block_on(async {
        let (pg, hba, client) = server().await;
        let extra = hba.parent().unwrap().join("extra_rules.conf");
        std::fs::write(&extra, format!("{}\n", rule(7))).unwrap();

        let before = std::fs::read(&hba).unwrap();
        let planned = with_line(&before, "include extra_rules.conf");
        let validation = Arc::new(validate(&hba, &planned, MAJOR, &harness_settings()));
        assert!(
            validation.problems().is_empty(),
            "{:?}",
            validation.problems()
        );

        std::fs::write(&extra, "host all all 127.0.0.1/33 trust\n").unwrap();
        let options = InstallOptions {
            validated: Some(validation.clone()),
            ..options_for(&pg).await
        };
        let err = replace_text(&client, &hba, &planned, &options)
            .await
            .unwrap_err();
        match &err {
            InstallError::ValidationFailed { problems, .. } => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert_eq!(problems[0].file.as_deref(), Some(extra.as_path()));
            }
            other => panic!("expected ValidationFailed, got {other:?}"),
        }
        assert_eq!(std::fs::read(&hba).unwrap(), before);
        assert!(temp_files(&hba).is_empty() && backups(&hba).is_empty());

        // Put back as validated: the verdict holds again.
        std::fs::write(&extra, format!("{}\n", rule(7))).unwrap();
        let report = replace_text(&client, &hba, &planned, &options)
            .await
            .unwrap();
        assert_eq!(report.offline_validation, OfflineValidation::Reused);
        assert!(server_errors(&client).await.is_empty());
    });
}
