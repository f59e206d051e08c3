//! Replication primitives against real PostgreSQL 15 servers (Debian's
//! build has `pg_basebackup`): a standby cloned with the exact argument
//! lists `pgctl::replication` builds, streaming through a slot, and a
//! stopped standby's slot lost once more WAL than `max_slot_wal_keep_size`
//! is written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pg_harness::{Cluster, ClusterOptions, OsUser, DEFAULT_HBA};
use pgctl::conninfo::ConnInfo;
use pgctl::replication::{self, Basebackup, DropSlot, PgCtl, PgCtlAction, PrimaryConninfo};
use tokio_postgres::{Client, NoTls};

use crate::common::free_port;

/// The replication lines a primary needs for the tests' superuser.
fn primary_options() -> ClusterOptions {
    ClusterOptions {
        hba: Some(format!(
            "{DEFAULT_HBA}local replication all trust\nhost replication postgres 127.0.0.1/32 trust\n"
        )),
        ..Default::default()
    }
}

/// A standby made by the test from a base backup: its own directory under
/// /tmp, started and stopped with pg_ctl as the server user. Dropping it
/// stops it (immediate) and removes the directory, also during a panic.
struct Standby {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    user: OsUser,
}

impl Standby {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, action: PgCtlAction) -> std::process::Output {
        let argv = PgCtl {
            bin_dir: self.bin.clone(),
            data_directory: self.data(),
            action,
            timeout_s: 60,
        }
        .argv();
        self.user
            .command(&argv[0])
            .args(&argv[1..])
            .output()
            .expect("run pg_ctl")
    }

    fn start(&self) {
        let out = self.pg_ctl(PgCtlAction::Start {
            log_file: Some(self.dir.join("server.log")),
            options: Some(format!("-p {} -k {}", self.port, self.dir.display())),
        });
        assert!(
            out.status.success(),
            "standby did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    async fn connect(&self) -> Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        let (client, connection) = config.connect(NoTls).await.expect("connect to standby");
        tokio::spawn(connection);
        client
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self.pg_ctl(PgCtlAction::StopImmediate);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Clones `primary` through `slot` with the builders under test.
fn clone_standby(primary: &Cluster, slot: &str, name: &str) -> Standby {
    let user = primary.os_user().clone();
    let dir = tempfile::Builder::new()
        .prefix("pgctl-standby-")
        .tempdir()
        .expect("temp dir")
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    user.chown(&dir).unwrap();
    let standby = Standby {
        dir,
        bin: primary.bin_dir(),
        port: free_port(),
        user,
    };
    let source = ConnInfo::parse(&format!(
        "host=127.0.0.1 port={} user=postgres",
        primary.port()
    ))
    .unwrap();
    let argv = Basebackup {
        bin_dir: primary.bin_dir(),
        data_directory: standby.data(),
        source,
        slot: Some(slot.into()),
        wal_directory: None,
        progress: false,
    }
    .argv();
    let out = standby
        .user
        .command(&argv[0])
        .args(&argv[1..])
        .output()
        .expect("run pg_basebackup");
    assert!(
        out.status.success(),
        "pg_basebackup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conninfo = PrimaryConninfo {
        host: "127.0.0.1".into(),
        port: primary.port(),
        user: "postgres".into(),
        application_name: name.into(),
        sslmode: None,
        passfile: None,
        connect_timeout: Some(5),
    };
    let auto = standby.data().join("postgresql.auto.conf");
    let old = std::fs::read_to_string(&auto).unwrap_or_default();
    let new = replication::set_conf_values(
        &old,
        &[
            ("primary_conninfo", &conninfo.to_keyword_value()),
            ("primary_slot_name", slot),
        ],
    );
    std::fs::write(&auto, new).unwrap();
    std::fs::write(standby.data().join("standby.signal"), "").unwrap();
    for f in ["postgresql.auto.conf", "standby.signal"] {
        standby.user.chown(&standby.data().join(f)).unwrap();
    }
    standby
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wal_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("pg_wal"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().len() == 24)
        .count()
}

#[test]
fn clone_streams_through_slot_and_stopped_standby_slot_is_lost_pg15() {
    pg_harness::block_on(async {
        let primary = Cluster::start_with(15, primary_options()).await;
        let admin = primary.connect().await;

        assert!(replication::create_physical_slot(&admin, "standby_b")
            .await
            .unwrap());
        assert!(!replication::create_physical_slot(&admin, "standby_b")
            .await
            .unwrap());
        let slot = replication::slot(&admin, "standby_b")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(slot.slot_type, "physical");
        assert_eq!(slot.wal_status.as_deref(), Some("reserved"));
        assert!(!slot.active);
        assert!(replication::create_physical_slot(&admin, "Bad-Name")
            .await
            .is_err());

        let node = replication::node_status(&admin).await.unwrap();
        assert!(!node.in_recovery);
        assert_eq!(node.timeline, 1);
        assert!(node.current_lsn.is_some());

        let standby = clone_standby(&primary, "standby_b", "node b");
        standby.start();
        let replica = standby.connect().await;

        wait_until("the standby to stream", Duration::from_secs(30), || async {
            replication::standbys(&admin)
                .await
                .unwrap()
                .iter()
                .any(|s| {
                    s.application_name == "node b"
                        && s.state == "streaming"
                        && s.replay_lsn.is_some()
                })
        })
        .await;
        let rows = replication::standbys(&admin).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].sync_state, "async");
        assert!(rows[0].lag_bytes.is_some());
        let slot = replication::slot(&admin, "standby_b")
            .await
            .unwrap()
            .unwrap();
        assert!(slot.active && slot.active_pid == Some(rows[0].pid));

        let status = replication::node_status(&replica).await.unwrap();
        assert!(status.in_recovery);
        assert!(status.receive_lsn.is_some() && status.replay_lsn.is_some());
        let receiver = replication::wal_receiver(&replica).await.unwrap().unwrap();
        assert_eq!(receiver.status, "streaming");
        assert_eq!(receiver.slot_name.as_deref(), Some("standby_b"));
        assert!(replication::wal_receiver(&admin).await.unwrap().is_none());

        // Data written on the primary appears on the standby.
        admin
            .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
            .await
            .unwrap();
        wait_until(
            "the row on the standby",
            Duration::from_secs(30),
            || async {
                replica
                    .query_opt("SELECT v FROM t", &[])
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.get::<_, i32>(0) == 42)
            },
        )
        .await;

        // A walsender holds the slot: no drop without terminate.
        assert!(matches!(
            replication::drop_slot(&admin, "standby_b", false)
                .await
                .unwrap(),
            DropSlot::Active { .. }
        ));

        // Its walsender can be ended (the standby reconnects by itself).
        let ended: i64 = admin
            .query_one(&replication::terminate_slot_user_sql("standby_b"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(ended, 1);

        // The bound: a stopped standby's slot may hold at most 4 MB (the
        // harness's clusters have 1 MB WAL segments).
        admin
            .batch_execute(&replication::alter_system_sql("max_slot_wal_keep_size", "4MB").unwrap())
            .await
            .unwrap();
        replication::reload(&admin).await.unwrap();
        wait_until("the bound to apply", Duration::from_secs(10), || async {
            replication::read_settings(&admin)
                .await
                .unwrap()
                .max_slot_wal_keep_size_mb
                == 4
        })
        .await;
        drop(replica);
        let out = standby.pg_ctl(PgCtlAction::StopFast);
        assert!(out.status.success());
        let settings = replication::read_settings(&admin).await.unwrap();
        assert_eq!(settings.wal_segment_size, 1024 * 1024);
        assert!(!settings.data_checksums);
        let mut statuses = Vec::new();
        for _ in 0..12 {
            admin
                .batch_execute(
                    "INSERT INTO t VALUES (1); SELECT pg_catalog.pg_switch_wal(); CHECKPOINT",
                )
                .await
                .unwrap();
            let slot = replication::slot(&admin, "standby_b")
                .await
                .unwrap()
                .unwrap();
            statuses.push(slot.wal_status.clone().unwrap_or_default());
            if slot.wal_status.as_deref() == Some("lost") {
                break;
            }
        }
        eprintln!(
            "slot states while WAL was written: {statuses:?}; WAL files: {}",
            wal_files(primary.data_dir())
        );
        assert_eq!(
            statuses.last().map(String::as_str),
            Some("lost"),
            "{statuses:?}"
        );
        // The primary kept no more than the bound plus the usual recycling.
        assert!(
            wal_files(primary.data_dir()) <= 12,
            "{}",
            wal_files(primary.data_dir())
        );

        assert_eq!(
            replication::drop_slot(&admin, "standby_b", true)
                .await
                .unwrap(),
            DropSlot::Dropped
        );
        assert_eq!(
            replication::drop_slot(&admin, "standby_b", true)
                .await
                .unwrap(),
            DropSlot::Absent
        );
        assert!(replication::list_slots(&admin).await.unwrap().is_empty());
    });
}

#[test]
fn sync_standby_names_set_through_alter_system_reach_the_server_pg15() {
    pg_harness::block_on(async {
        let primary = Cluster::start(15).await;
        let admin = primary.connect().await;
        let value = replication::first_one_synchronous("Node B");
        admin
            .batch_execute(
                &replication::alter_system_sql("synchronous_standby_names", &value).unwrap(),
            )
            .await
            .unwrap();
        replication::reload(&admin).await.unwrap();
        wait_until("the reload", Duration::from_secs(10), || async {
            replication::read_settings(&admin)
                .await
                .unwrap()
                .synchronous_standby_names
                == "FIRST 1 (\"Node B\")"
        })
        .await;
        admin
            .batch_execute(
                &replication::alter_system_reset_sql("synchronous_standby_names").unwrap(),
            )
            .await
            .unwrap();
        replication::reload(&admin).await.unwrap();
        wait_until("the reset", Duration::from_secs(10), || async {
            replication::read_settings(&admin)
                .await
                .unwrap()
                .synchronous_standby_names
                .is_empty()
        })
        .await;
    });
}

/// Regression: hba_install's lock file next to a pg_hba.conf inside the
/// data directory was root's, so every later base backup failed with
/// "could not open file ./<the lock file>: Permission denied".
#[test]
fn base_backup_after_an_hba_install_reads_every_file_pg15() {
    pg_harness::block_on(async {
        let primary = Cluster::start_with(15, primary_options()).await;
        let admin = primary.connect().await;
        replication::create_physical_slot(&admin, "after_edit")
            .await
            .unwrap();
        let report = pgctl::hba_install::edit(
            &admin,
            &primary.hba_file(),
            |old: &[u8]| {
                let mut new = old.to_vec();
                new.extend_from_slice(b"# edited\n");
                Ok::<_, std::convert::Infallible>(new)
            },
            &pgctl::hba_install::InstallOptions::default(),
        )
        .await
        .unwrap();
        assert!(report.changed);
        let standby = clone_standby(&primary, "after_edit", "after_edit");
        assert!(standby.data().join("PG_VERSION").exists());
    });
}
