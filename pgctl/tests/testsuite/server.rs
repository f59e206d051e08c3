//! Server facts, manager detection and the pg_hba.conf ownership check,
//! against real throwaway servers.

use std::path::PathBuf;

use pg_harness::{Cluster, DebianCluster};
use pgctl::error::Error;
use pgctl::hba_install::owner::{check_hba_owner, HbaOwnerKind, OwnerCheckError};
use pgctl::naming::Naming;
use pgctl::server::{
    detect_manager_with, is_in_recovery, read_facts, require_superuser, HostProbe, ServerManager,
};

fn no_systemd() -> HostProbe {
    HostProbe {
        systemd_running: false,
        proc_root: PathBuf::from("/proc"),
    }
}

pg_harness::pg_test!(
    async fn facts_match_the_running_server(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        let facts = read_facts(&client).await.unwrap();
        assert_eq!(facts.major(), major);
        assert_eq!(facts.port, pg.port());
        assert_eq!(facts.listen_addresses, "127.0.0.1");
        assert_eq!(facts.hba_file.as_deref(), Some(pg.hba_file().as_path()));
        assert_eq!(facts.data_directory.as_deref(), Some(pg.data_dir()));
        assert_eq!(facts.config_file.as_deref(), Some(pg.conf_file().as_path()));
        assert!(!facts.ssl);
        assert_eq!(facts.password_encryption, "scram-sha-256");
        assert!(facts.max_connections > 0);
        assert!(facts.is_superuser);
        assert_eq!(facts.user, "postgres");
    }
);

pg_harness::pg_test!(
    async fn non_superuser_sees_no_paths_and_is_refused_superuser_work(major: u32) {
        let pg = Cluster::start(major).await;
        pg.create_role("plain", "plain-pw").await;
        let client = pg
            .connect_as("plain", "plain-pw", "postgres")
            .await
            .unwrap();
        let facts = read_facts(&client).await.unwrap();
        assert!(!facts.is_superuser);
        assert_eq!(facts.hba_file, None);
        assert_eq!(facts.port, pg.port());
        let err = require_superuser(&client, "changing listen_addresses")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotSuperuser { ref user, .. } if user == "plain"),
            "{err}"
        );
    }
);

pg_harness::pg_test!(
    async fn plain_cluster_is_managed_by_pg_ctl_as_the_data_directory_owner(major: u32) {
        let pg = Cluster::start(major).await;
        let facts = read_facts(&pg.connect().await).await.unwrap();
        for systemd_running in [false, true] {
            // Under systemd a server outside system.slice is still pg_ctl's.
            let probe = HostProbe {
                systemd_running,
                ..no_systemd()
            };
            match detect_manager_with(&facts, &probe) {
                ServerManager::PgCtl {
                    pg_ctl,
                    data_directory,
                    uid,
                    log_file,
                    ..
                } => {
                    assert_eq!(pg_ctl, pg.bin_dir().join("pg_ctl"));
                    assert_eq!(data_directory, pg.data_dir());
                    use std::os::unix::fs::MetadataExt;
                    assert_eq!(uid, std::fs::metadata(pg.data_dir()).unwrap().uid());
                    assert_eq!(log_file.as_deref(), Some(pg.log_file()));
                }
                other => panic!("expected pg_ctl, got {other:?}"),
            }
        }
    }
);

#[test]
fn debian_cluster_is_managed_by_pg_ctlcluster_or_its_systemd_unit() {
    pg_harness::block_on(async {
        let dc = DebianCluster::create(15).await;
        let client = dc.connect().await.unwrap();
        let facts = read_facts(&client).await.unwrap();
        assert_eq!(
            detect_manager_with(&facts, &no_systemd()),
            ServerManager::PgCtlCluster {
                version: "15".into(),
                cluster: dc.name().into()
            }
        );
        let probe = HostProbe {
            systemd_running: true,
            ..no_systemd()
        };
        assert_eq!(
            detect_manager_with(&facts, &probe),
            ServerManager::Systemd {
                unit: format!("postgresql@15-{}", dc.name())
            }
        );
        assert_eq!(
            ServerManager::PgCtlCluster {
                version: "15".into(),
                cluster: dc.name().into()
            }
            .restart_command_line()
            .unwrap(),
            format!("pg_ctlcluster 15 {} restart", dc.name())
        );
    });
}

pg_harness::pg_test!(
    async fn hba_file_with_a_configuration_management_header_is_refused_unless_forced(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        // A throwaway cluster is a primary, not in recovery.
        assert!(!is_in_recovery(&client).await.unwrap());
        let facts = read_facts(&client).await.unwrap();
        assert_eq!(
            check_hba_owner(&facts, &Naming::default(), false).unwrap(),
            None
        );

        let original = std::fs::read_to_string(pg.hba_file()).unwrap();
        std::fs::write(pg.hba_file(), format!("# Ansible managed\n{original}")).unwrap();
        let err = check_hba_owner(&facts, &Naming::default(), false).unwrap_err();
        match &err {
            OwnerCheckError::ForeignManaged { owner } => {
                assert_eq!(owner.kind, HbaOwnerKind::Ansible)
            }
            other => panic!("{other:?}"),
        }
        // It says what was refused; the caller adds its own flag's name.
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(!err.to_string().contains("--force"), "{err}");
        let forced = check_hba_owner(&facts, &Naming::default(), true)
            .unwrap()
            .unwrap();
        assert_eq!(forced.kind, HbaOwnerKind::Ansible);

        std::fs::write(pg.hba_file(), &original).unwrap();
        std::fs::write(pg.data_dir().join("patroni.dynamic.json"), "{}").unwrap();
        match check_hba_owner(&facts, &Naming::default(), false) {
            Err(OwnerCheckError::ForeignManaged { owner }) => {
                assert_eq!(owner.kind, HbaOwnerKind::Patroni)
            }
            other => panic!("{other:?}"),
        }
    }
);
