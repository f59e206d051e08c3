//! listen_addresses: setting it (ALTER SYSTEM or the include directory),
//! restarting through the detected manager, waiting and verifying, and
//! undoing it; on throwaway clusters (pg_ctl) and a Debian cluster
//! (pg_ctlcluster).
//!
//! Binding 0.0.0.0 here is safe: every cluster's pg_hba.conf admits only
//! loopback clients.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pg_harness::{Cluster, DebianCluster};
use pgctl::error::Error;
use pgctl::listen::{
    plan_listen_addresses, reset_listen_addresses, restart_and_wait, set_listen_addresses,
    verify_listening, RestartWith, WrittenTo,
};
use pgctl::server::{detect_manager, read_facts, ServerManager};
use tokio_postgres::{Client, NoTls};

/// The names the tests give their files (as a caller would its own).
fn naming() -> pgctl::naming::Naming {
    pgctl::naming::Naming::new("listentest")
}

async fn connect(pg: &Cluster) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = pg.config().connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn accepts_tcp(ip: &str, port: u16) -> bool {
    let addr = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

async fn restart(pg: &Cluster, client: &Client, how: &RestartWith) -> Client {
    restart_and_wait(client, how, Duration::from_secs(60), || connect(pg))
        .await
        .unwrap()
}

pg_harness::pg_test!(
    async fn pg_ctl_restart_makes_the_server_listen_on_all_ipv4_and_deinit_restores(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        let facts = read_facts(&client).await.unwrap();
        assert!(!accepts_tcp("127.0.0.2", pg.port()).await);

        let plan = plan_listen_addresses(&facts.listen_addresses, &["0.0.0.0"]);
        assert_eq!(plan.new, "0.0.0.0");
        let change = set_listen_addresses(&client, &plan.new, &naming())
            .await
            .unwrap();
        assert_eq!(change.written_to, WrittenTo::AlterSystem);
        assert!(change.restart_needed);
        let (winner, _) = change.winner.clone().unwrap();
        assert_eq!(winner, pg.data_dir().join("postgresql.auto.conf"));

        let manager = detect_manager(&facts);
        assert!(
            matches!(manager, ServerManager::PgCtl { .. }),
            "{manager:?}"
        );
        let how = RestartWith::Manager(manager);
        let client = restart(&pg, &client, &how).await;
        verify_listening(&client, facts.port, &plan).await.unwrap();
        // 0.0.0.0 serves every IPv4 address of the host, e.g. 127.0.0.2.
        assert!(accepts_tcp("127.0.0.2", pg.port()).await);
        let log = pg.log();
        assert!(!log.contains("could not bind"), "{log}");
        // The log keeps going to the same file after the restart.
        assert!(
            log.matches("database system is ready").count() >= 2,
            "{log}"
        );

        // A second run plans no change.
        let facts = read_facts(&client).await.unwrap();
        assert!(!plan_listen_addresses(&facts.listen_addresses, &["0.0.0.0"]).changes());

        // --deinit: back to the operator's value.
        let reset = reset_listen_addresses(&client, &naming()).await.unwrap();
        assert_eq!(reset.new, "127.0.0.1");
        assert!(reset.restart_needed);
        let client = restart(&pg, &client, &how).await;
        let facts = read_facts(&client).await.unwrap();
        assert_eq!(facts.listen_addresses, "127.0.0.1");
        assert!(!accepts_tcp("127.0.0.2", pg.port()).await);
    }
);

/// Puts an include directory `conf.d` after the harness's settings and
/// disables ALTER SYSTEM (17+).
async fn disable_alter_system(pg: &Cluster, client: &Client, extra: &str) {
    let dir = pg.data_dir().join("conf.d");
    std::fs::create_dir(&dir).unwrap();
    pg.os_user().chown(&dir).unwrap();
    let mut conf = std::fs::read_to_string(pg.conf_file()).unwrap();
    conf.push_str("include_dir = 'conf.d'\nallow_alter_system = off\n");
    conf.push_str(extra);
    std::fs::write(pg.conf_file(), conf).unwrap();
    client
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .unwrap();
    for _ in 0..100 {
        let off: bool = client
            .query_one("SELECT current_setting('allow_alter_system') = 'off'", &[])
            .await
            .unwrap()
            .get(0);
        if off {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("allow_alter_system did not become off");
}

pg_harness::pg_test!(
    async fn without_alter_system_the_include_directory_gets_a_file_that_wins(major: u32) {
        if major < 17 {
            return; // allow_alter_system exists from 17 on.
        }
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        disable_alter_system(&pg, &client, "").await;
        let facts = read_facts(&client).await.unwrap();
        let plan = plan_listen_addresses(&facts.listen_addresses, &["0.0.0.0"]);
        let change = set_listen_addresses(&client, &plan.new, &naming())
            .await
            .unwrap();
        let file = pg
            .data_dir()
            .join("conf.d")
            .join(naming().listen_file_name());
        assert_eq!(change.written_to, WrittenTo::IncludeFile(file.clone()));
        assert_eq!(
            change.winner.as_ref().map(|w| w.0.as_path()),
            Some(file.as_path())
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().uid(),
            std::fs::metadata(pg.data_dir()).unwrap().uid(),
            "the file belongs to the server's user"
        );
        let how = RestartWith::Manager(detect_manager(&facts));
        let client = restart(&pg, &client, &how).await;
        verify_listening(&client, facts.port, &plan).await.unwrap();

        let reset = reset_listen_addresses(&client, &naming()).await.unwrap();
        assert_eq!(reset.written_to, WrittenTo::IncludeFile(file.clone()));
        assert!(!file.exists());
        assert_eq!(reset.new, "127.0.0.1");
        let client = restart(&pg, &client, &how).await;
        assert_eq!(
            read_facts(&client).await.unwrap().listen_addresses,
            "127.0.0.1"
        );
    }
);

pg_harness::pg_test!(
    async fn overriding_later_setting_is_reported_and_file_removed(major: u32) {
        if major < 17 {
            return;
        }
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        disable_alter_system(&pg, &client, "listen_addresses = '127.0.0.1'\n").await;
        let err = set_listen_addresses(&client, "0.0.0.0", &naming())
            .await
            .unwrap_err();
        match &err {
            Error::Overridden { winner, .. } => assert_eq!(winner, &pg.conf_file()),
            other => panic!("{other:?}"),
        }
        assert!(!pg
            .data_dir()
            .join("conf.d")
            .join(naming().listen_file_name())
            .exists());
    }
);

#[test]
fn debian_cluster_restarts_through_pg_ctlcluster_keeping_its_loopback_addresses() {
    pg_harness::block_on(async {
        let dc = DebianCluster::create(15).await;
        let client = dc.connect().await.unwrap();
        let facts = read_facts(&client).await.unwrap();
        assert_eq!(facts.listen_addresses, "localhost");
        let plan = plan_listen_addresses(&facts.listen_addresses, &["0.0.0.0"]);
        assert!(plan.new.starts_with("0.0.0.0"), "{plan:?}");
        assert!(!plan.new.contains("localhost"), "{plan:?}");
        assert!(plan.loopback_before.contains(&"127.0.0.1".parse().unwrap()));
        set_listen_addresses(&client, &plan.new, &naming())
            .await
            .unwrap();
        let manager = detect_manager(&facts);
        assert!(
            matches!(manager, ServerManager::PgCtlCluster { .. }),
            "{manager:?}"
        );
        let how = RestartWith::Manager(manager);
        let log_before = dc.log().len();
        let client = restart_and_wait(&client, &how, Duration::from_secs(60), || dc.connect())
            .await
            .unwrap();
        verify_listening(&client, facts.port, &plan).await.unwrap();
        assert!(accepts_tcp("127.0.0.3", dc.port()).await);
        let log = dc.log();
        let new_log = &log[log_before.min(log.len())..];
        assert!(!new_log.contains("could not bind"), "{new_log}");

        reset_listen_addresses(&client, &naming()).await.unwrap();
        let client = restart_and_wait(&client, &how, Duration::from_secs(60), || dc.connect())
            .await
            .unwrap();
        assert_eq!(
            read_facts(&client).await.unwrap().listen_addresses,
            "localhost"
        );
        assert!(!accepts_tcp("127.0.0.3", dc.port()).await);
    });
}

pg_harness::pg_test!(
    async fn a_restart_that_does_not_happen_times_out_with_a_clear_error(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        // Exit status 0 is not trusted: the server never restarted.
        let how = RestartWith::Command(vec!["sh".into(), "-c".into(), "echo pretending".into()]);
        let err = restart_and_wait(&client, &how, Duration::from_secs(2), || connect(&pg))
            .await
            .unwrap_err();
        match &err {
            Error::RestartTimeout { status, output, .. } => {
                assert_eq!(*status, Some(0));
                assert!(output.contains("pretending"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .contains("did not accept connections again within 2s"),
            "{err}"
        );

        let unknown = RestartWith::Manager(ServerManager::Unknown {
            reason: "test".into(),
        });
        let err = restart_and_wait(&client, &unknown, Duration::from_secs(2), || connect(&pg))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoManager { .. }), "{err}");
        let missing = RestartWith::Command(vec!["/nonexistent/restart-pg".into()]);
        let err = restart_and_wait(&client, &missing, Duration::from_secs(2), || connect(&pg))
            .await
            .unwrap_err();
        assert_eq!(err.os_error(), Some(libc::ENOENT), "{err}");
        // A connection attempt that hangs does not outlast the deadline.
        let how = RestartWith::Command(vec!["true".into()]);
        let started = std::time::Instant::now();
        let err = restart_and_wait(&client, &how, Duration::from_secs(2), || {
            std::future::pending::<Result<Client, tokio_postgres::Error>>()
        })
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, Error::RestartTimeout { .. }), "{err}");
        // The server was never touched.
        client.query_one("SELECT 1", &[]).await.unwrap();
    }
);

pg_harness::pg_test!(
    async fn hostile_listen_values_are_refused_and_change_nothing(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        for bad in ["0.0.0.0\nssl = off", "0.0.0.0'; x", "10.0.0.0/8", "a#b"] {
            let err = set_listen_addresses(&client, bad, &naming())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidListenAddresses { .. }), "{err}");
        }
        let auto = std::fs::read_to_string(pg.data_dir().join("postgresql.auto.conf")).unwrap();
        assert!(!auto.contains("listen_addresses"), "{auto}");
        let plain = {
            pg.create_role("plain", "pw").await;
            pg.connect_as("plain", "pw", "postgres").await.unwrap()
        };
        let err = set_listen_addresses(&plain, "0.0.0.0", &naming())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotSuperuser { .. }), "{err}");
    }
);

pg_harness::pg_test!(
    async fn printed_restart_command_works_as_a_caller_supplied_command(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        let facts = read_facts(&client).await.unwrap();
        let manager = detect_manager(&facts);
        // What `--no-restart` tells the operator to run, run by a shell.
        let line = manager.restart_command_line().unwrap();
        assert!(line.starts_with("runuser -u "), "{line}");
        let how = RestartWith::Command(vec!["sh".into(), "-c".into(), line]);
        let client = restart(&pg, &client, &how).await;
        client.query_one("SELECT 1", &[]).await.unwrap();
        assert!(pg.log().matches("database system is ready").count() >= 2);
    }
);

pg_harness::pg_test!(
    async fn restart_timeout_carries_the_real_last_connection_error(major: u32) {
        let pg = Cluster::start(major).await;
        let client = pg.connect().await;
        // The "restart" stops the server (fast shutdown) and never starts it.
        let pid = pg.pid().expect("the server runs");
        let how = RestartWith::Command(vec!["kill".into(), "-INT".into(), pid.to_string()]);
        let err = restart_and_wait(&client, &how, Duration::from_secs(3), || connect(&pg))
            .await
            .unwrap_err();
        let Error::RestartTimeout { last_error, .. } = &err else {
            panic!("{err:?}");
        };
        let last = last_error.clone().unwrap_or_default();
        // The driver's own words for the refused TCP connection, not a
        // stand-in error.
        assert!(last.to_lowercase().contains("refused"), "{last}");
        assert!(
            err.to_string()
                .contains(&format!("last connection attempt: {last}")),
            "{err}"
        );
    }
);
