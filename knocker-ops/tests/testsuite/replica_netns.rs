//! The replica block's lines admit a standby only from its own address.
//!
//! A walreceiver or pg_basebackup cannot choose its source address, so the
//! "standby host" is a network namespace joined to this one by a veth pair
//! (10.213.N.1 here, 10.213.N.2 there); the test makes both and removes
//! them when it ends, also when it fails.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::netns::Netns;
use knocker_ops::replica::{self, Action, Options};
use pg_harness::{Cluster, ClusterOptions};
use pgctl::conninfo::{ConnInfo, Keyword};

fn options(pg: &Cluster, action: Action) -> Options {
    let mut o = Options::new(action);
    o.conn = Some(format!(
        "postgresql://knocknoc:pw@127.0.0.1:{}/knocknoc",
        pg.port()
    ));
    o.admin_conn = Some(format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.socket_dir().display(),
        pg.port()
    ));
    o.config = "/nonexistent".into();
    o
}

async fn run(o: &Options) -> replica::Report {
    replica::run(o, &mut |_: &str| true)
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e} {:?}", o.action, e.causes()))
}

/// A base backup from inside the namespace through `slot`.
fn backup_from_ns(ns: &Netns, pg: &Cluster, dir: &Path, user: &str, slot: &str) -> Output {
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let source = ConnInfo::builder()
        .host(ns.host_ip.clone())
        .port(pg.port())
        .user(user)
        .set(
            Keyword::Passfile,
            dir.join("pass").to_string_lossy().into_owned(),
        )
        .connect_timeout(5)
        .build();
    let argv = pgctl::replication::Basebackup {
        bin_dir: pg.bin_dir(),
        data_directory: data,
        source,
        slot: Some(slot.into()),
        wal_directory: None,
        progress: false,
    }
    .argv();
    ns.run_as(&pg.os_user().name, &argv)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn block_lines_admit_a_standby_only_from_its_address_pg15() {
    let ns = Netns::create("kn13", 213);
    pg_harness::block_on(async {
        let pg = Cluster::start_with(
            15,
            ClusterOptions {
                settings: vec![("listen_addresses".into(), "*".into())],
                ..Default::default()
            },
        )
        .await;
        pg.create_role("knocknoc", "pw").await;
        pg.create_database("knocknoc", "knocknoc").await;
        let r = run(&options(&pg, Action::Init)).await;
        let url = r.replication_url.unwrap().0;
        let password = ConnInfo::parse(&url)
            .unwrap()
            .get(Keyword::Password)
            .unwrap()
            .to_string();

        let dir: PathBuf = tempfile::Builder::new()
            .prefix("knocker-netns-")
            .tempdir()
            .unwrap()
            .keep();
        struct RemoveDir(PathBuf);
        impl Drop for RemoveDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = RemoveDir(dir.clone());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        pg.os_user().chown(&dir).unwrap();
        let mut pass = String::new();
        for (db, user) in [
            ("replication", "knocknoc_replication"),
            ("postgres", "knocknoc_rewind"),
        ] {
            pass += &pgctl::replication::passfile_line(&ns.host_ip, pg.port(), db, user, &password);
        }
        std::fs::write(dir.join("pass"), pass).unwrap();
        std::fs::set_permissions(dir.join("pass"), std::fs::Permissions::from_mode(0o600)).unwrap();
        pg.os_user().chown(&dir.join("pass")).unwrap();

        // Another standby's address is allowed: this one is not.
        let allow = |cidr: &str, name: &str| {
            let mut o = options(
                &pg,
                Action::Allow {
                    cidr: cidr.parse().unwrap(),
                    sync: false,
                },
            );
            o.name = Some(name.into());
            o
        };
        let other = format!("{}/32", ns.other_ip);
        run(&allow(&other, "other")).await;
        let out = backup_from_ns(&ns, &pg, &dir, "knocknoc_replication", "knocker_other");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(&format!(
                "no pg_hba.conf entry for replication connection from host \"{}\"",
                ns.ns_ip
            )),
            "{}",
            stderr(&out)
        );

        // Its own line: the base backup and the rewind role's reads work.
        let own = format!("{}/32", ns.ns_ip);
        run(&allow(&own, "node_b")).await;
        let out = backup_from_ns(&ns, &pg, &dir, "knocknoc_replication", "knocker_node_b");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(dir.join("data/PG_VERSION").exists());
        let psql = vec![
            pg.bin_dir().join("psql").to_string_lossy().into_owned(),
            format!(
                "host={} port={} user=knocknoc_rewind dbname=postgres passfile={}",
                ns.host_ip,
                pg.port(),
                dir.join("pass").display()
            ),
            "-Atc".into(),
            "SELECT (SELECT count(*) FROM pg_catalog.pg_ls_dir('.', false, false)) > 0, \
                    length(pg_catalog.pg_read_binary_file('global/pg_control')) > 0, \
                    (pg_catalog.pg_stat_file('PG_VERSION', false)).size > 0"
                .into(),
        ];
        let out = ns.run_as(&pg.os_user().name, &psql);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "t|t|t",
            "{}",
            stderr(&out)
        );
        // The rewind role reads files only: no replication, no other database.
        let mut no_repl = psql.clone();
        no_repl[1] = no_repl[1].replace("dbname=postgres", "dbname=knocknoc");
        let out = ns.run_as(&pg.os_user().name, &no_repl);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("no pg_hba.conf entry"),
            "{}",
            stderr(&out)
        );

        // Revoked: refused again, slot gone.
        run(&options(
            &pg,
            Action::Revoke {
                cidr: own.parse().unwrap(),
                terminate: true,
            },
        ))
        .await;
        let out = backup_from_ns(&ns, &pg, &dir, "knocknoc_replication", "knocker_other");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("no pg_hba.conf entry"),
            "{}",
            stderr(&out)
        );
        let admin = pg.connect().await;
        assert!(pgctl::replication::slot(&admin, "knocker_node_b")
            .await
            .unwrap()
            .is_none());
    });
    drop(ns);
}
