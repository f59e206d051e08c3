//! `--db-hosts` (a web node's DatabaseURL turned into the multi-host form),
//! run against real servers and real closed ports.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use pgctl::conninfo::{ConnInfo, Keyword};

/// Runs `knocknoc-installer --config CONFIG --db-hosts LIST` with nothing
/// else: the flag never prompts, and no connection string is passed.
fn run_db_hosts(config: &Path, list: &str) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("--db-hosts")
        .arg(list)
        .env_remove("KNOCKNOC_DB_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("the installer runs")
}

/// A knocknoc.conf with lines around the DatabaseURL, mode 0640.
fn write_conf(config: &Path, url: &str) -> String {
    let original = format!(
        "# web node, edited by hand\nListen = 0.0.0.0:8756\r\nExtra = 'kept'   # note\n\nDatabaseURL = '{url}'\n# trailing comment\n"
    );
    std::fs::write(config, &original).unwrap();
    std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o640)).unwrap();
    original
}

/// The DatabaseURL `config` now holds, parsed (the file keeps its own
/// mode, so not [`written`]).
fn stored_conninfo(config: &Path) -> ConnInfo {
    let stored = knocknoc_conf::Document::load(config)
        .unwrap()
        .settings()
        .unwrap()
        .database_url
        .unwrap();
    ConnInfo::parse(stored.expose_secret()).unwrap()
}

/// A TCP port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn db_hosts_bad_input_exits_2_and_touches_nothing() {
    let (dir, config) = config_in_tempdir();
    let original = write_conf(
        &config,
        "postgres://app:s3cret%20pass@127.0.0.1:5432/knocknoc",
    );
    for bad in [
        "",
        ":5432",
        "127.0.0.1:5432,",
        "127.0.0.1",
        "127.0.0.1:x",
        "127.0.0.1:70000",
        "127.0.0.1:0",
        "db#1:5432",
        "db1:5432#",
        "'db1':5432",
        "\"db1\":5432",
        "db1:5432\nDatabaseURL = x",
        "db1\r:5432",
        "127.0.0.1:5432,127.0.0.1:5432",
        "::1:5432",
    ] {
        let out = run_db_hosts(&config, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
        assert!(text(&out).contains("--db-hosts"), "{bad:?}: {}", text(&out));
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            original,
            "{bad:?}"
        );
    }
    // Flags of the dialogue do not mix with it.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--db-hosts", "127.0.0.1:5432", "--db-option", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Nothing to convert: no file, or a file without DatabaseURL.
    let missing = dir.path().join("absent.conf");
    let out = run_db_hosts(&missing, "127.0.0.1:5432");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!missing.exists());
    let no_url = dir.path().join("nourl.conf");
    std::fs::write(&no_url, "Listen = 0.0.0.0:8756\n").unwrap();
    let out = run_db_hosts(&no_url, "127.0.0.1:5432");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no DatabaseURL"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&no_url).unwrap(),
        "Listen = 0.0.0.0:8756\n"
    );
}

#[test]
fn db_hosts_all_unreachable_exits_1_and_touches_nothing() {
    let (_dir, config) = config_in_tempdir();
    let original = write_conf(
        &config,
        "postgres://app:s3cret%20pass@127.0.0.1:5432/knocknoc",
    );
    let (a, b) = (closed_port(), closed_port());
    let out = run_db_hosts(&config, &format!("127.0.0.1:{a},127.0.0.1:{b}"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("127.0.0.1:{a}: unreachable")), "{t}");
    assert!(t.contains(&format!("127.0.0.1:{b}: unreachable")), "{t}");
    assert!(t.contains("None of the hosts is a primary"), "{t}");
    assert!(
        !t.contains(APP_PASSWORD) && !t.contains("s3cret%20pass"),
        "{t}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
}

/// Named so that nextest counts these tests as PostgreSQL-server tests
/// (`.config/nextest.toml`: at most four at once).
mod pg_server {
    use super::*;

    #[tokio::test]
    async fn db_hosts_writes_multi_host_string_and_keeps_every_other_byte() {
        let down = server(17).await;
        let down_port = down.port();
        down.stop().await;
        let pg = app_server(17).await;
        let (_dir, config) = config_in_tempdir();
        let original = write_conf(
            &config,
            "postgres://app:s3cret%20pass@primary.example:6543/knocknoc?hostaddr=127.0.0.1&connect_timeout=5&application_name=knocknoc",
        );

        let out = run_db_hosts(
            &config,
            &format!("127.0.0.1:{down_port},127.0.0.1:{}", pg.port()),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains(&format!("127.0.0.1:{down_port}: unreachable")),
            "{t}"
        );
        assert!(
            t.contains(&format!("127.0.0.1:{}: primary", pg.port())),
            "{t}"
        );
        assert!(
            !t.contains(APP_PASSWORD) && !t.contains("s3cret%20pass"),
            "{t}"
        );

        let after = std::fs::read_to_string(&config).unwrap();
        let (before_lines, after_lines): (Vec<&str>, Vec<&str>) = (
            original.split_inclusive('\n').collect(),
            after.split_inclusive('\n').collect(),
        );
        assert_eq!(before_lines.len(), after_lines.len(), "{after}");
        for (b, a) in before_lines.iter().zip(&after_lines) {
            if !b.starts_with("DatabaseURL") {
                assert_eq!(b, a, "a line other than DatabaseURL changed");
            }
        }
        let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640, "the mode is kept");

        let info = stored_conninfo(&config);
        assert_eq!(info.get(Keyword::Host), Some("127.0.0.1,127.0.0.1"));
        assert_eq!(
            info.get(Keyword::Port).map(str::to_owned),
            Some(format!("{down_port},{}", pg.port()))
        );
        assert_eq!(info.get(Keyword::User), Some("app"));
        assert_eq!(info.get(Keyword::Password), Some(APP_PASSWORD));
        assert_eq!(info.get(Keyword::Dbname), Some("knocknoc"));
        assert_eq!(info.get(Keyword::ConnectTimeout), Some("5"));
        assert_eq!(info.get(Keyword::ApplicationName), Some("knocknoc"));
        assert_eq!(info.get(Keyword::Hostaddr), None);
        assert_eq!(info.get(Keyword::TargetSessionAttrs), Some("read-write"));

        // The stored string itself reaches the primary past the dead host.
        let params = pgctl::conninfo::resolve_from_process_env(&info)
            .unwrap()
            .params;
        let c = pgctl::connect::connect(&params)
            .await
            .expect("the string connects");
        assert_eq!(c.host().port, pg.port(), "landed on the primary");

        // Run again with the primary down too: refused, the file unchanged.
        pg.stop().await;
        let out = run_db_hosts(
            &config,
            &format!("127.0.0.1:{down_port},127.0.0.1:{}", pg.port()),
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_eq!(std::fs::read_to_string(&config).unwrap(), after);
    }

    /// Turns a running cluster into a hot standby without a primary:
    /// restarted with `standby.signal`, it stays in recovery and accepts
    /// read-only sessions.
    async fn make_standby(pg: &pg_harness::Cluster) {
        pg.stop().await;
        let signal = pg.data_dir().join("standby.signal");
        std::fs::write(&signal, "").unwrap();
        pg.os_user().chown(&signal).unwrap();
        pg.restart().await;
    }

    #[tokio::test]
    async fn db_hosts_reports_a_standby_and_refuses_one_without_a_primary() {
        let standby = server(17).await;
        prepare_app_db(&standby).await;
        make_standby(&standby).await;
        let (_dir, config) = config_in_tempdir();
        let original = write_conf(
            &config,
            "postgres://app:s3cret%20pass@127.0.0.1:5432/knocknoc",
        );
        let gone = closed_port();

        let out = run_db_hosts(
            &config,
            &format!("127.0.0.1:{},127.0.0.1:{gone}", standby.port()),
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            t.contains(&format!(
                "127.0.0.1:{}: standby (read-only)",
                standby.port()
            )),
            "{t}"
        );
        assert!(t.contains(&format!("127.0.0.1:{gone}: unreachable")), "{t}");
        assert!(t.contains("None of the hosts is a primary"), "{t}");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

        // The standby first and the primary second: accepted, both reported.
        let primary = server(17).await;
        prepare_app_db(&primary).await;
        let out = run_db_hosts(
            &config,
            &format!("127.0.0.1:{},127.0.0.1:{}", standby.port(), primary.port()),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains(&format!(
                "127.0.0.1:{}: standby (read-only)",
                standby.port()
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!("127.0.0.1:{}: primary", primary.port())),
            "{t}"
        );
        let info = stored_conninfo(&config);
        assert_eq!(
            info.get(Keyword::Port).map(str::to_owned),
            Some(format!("{},{}", standby.port(), primary.port()))
        );
    }
}
