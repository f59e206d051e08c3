//! Shared by the installer's tests: running the binary, preparing an
//! application database on a throwaway server, reading the written file.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use knocknoc_conf::{Document, Settings};
use pg_harness::{Cluster, ClusterOptions};

/// The installer binary built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_knocknoc-installer");

/// pg_hba.conf for the tests: the harness's superuser trust, every other
/// role by SCRAM over TCP from 127.0.0.1 only.
pub const HBA: &str = "local all all trust\n\
host all postgres 127.0.0.1/32 trust\n\
host all all 127.0.0.1/32 scram-sha-256\n";

/// The application role's password in the prepared databases.
pub const APP_PASSWORD: &str = "s3cret pass";

/// A server with the default test pg_hba.
pub async fn server(major: u32) -> Cluster {
    Cluster::start_with(major, ClusterOptions::with_hba(HBA)).await
}

/// A server (`server`) with the application database (`prepare_app_db`).
pub async fn app_server(major: u32) -> Cluster {
    let pg = server(major).await;
    prepare_app_db(&pg).await;
    pg
}

/// A temporary directory and the path of a knocknoc.conf in it (not
/// written); the file goes away with the directory.
pub fn config_in_tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("knocknoc.conf");
    (dir, config)
}

/// [`app_server`], [`config_in_tempdir`] and `app`'s connection string
/// to `knocknoc` on it ([`app_url`]): what most tests start from.
pub async fn app_setup(major: u32) -> (Cluster, tempfile::TempDir, PathBuf, String) {
    let pg = app_server(major).await;
    let (dir, config) = config_in_tempdir();
    let url = app_url(&pg, "knocknoc", APP_PASSWORD);
    (pg, dir, config, url)
}

/// Creates role `app` and database `knocknoc` holding one application
/// table owned by `app`.
pub async fn prepare_app_db(pg: &Cluster) {
    pg.create_role("app", APP_PASSWORD).await;
    pg.create_database("knocknoc", "app").await;
    let app = pg
        .connect_as("app", APP_PASSWORD, "knocknoc")
        .await
        .expect("app logs in");
    app.batch_execute("CREATE TABLE users (id serial PRIMARY KEY, name text)")
        .await
        .unwrap();
}

/// The connection string of `app` on `pg`.
pub fn app_url(pg: &Cluster, db: &str, password: &str) -> String {
    format!(
        "postgres://app:{}@127.0.0.1:{}/{db}",
        password.replace(' ', "%20"),
        pg.port()
    )
}

/// Runs the installer non-interactively (`--yes`) with the connection string
/// in `KNOCKNOC_DB_URL` (not on the command line) and `args`.
pub fn run_yes(config: &Path, url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).arg("--yes").args(args);
    cmd.env_remove("KNOCKNOC_DB_URL").env("NO_COLOR", "1");
    if let Some(url) = url {
        cmd.env("KNOCKNOC_DB_URL", url);
    }
    cmd.output().expect("the installer runs")
}

/// stdout and stderr together, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Reads the written file: checks mode 0600 and returns its settings.
pub fn written(config: &Path) -> Settings {
    let mode = std::fs::metadata(config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "knocknoc.conf must be 0600");
    Document::load(config).unwrap().settings().unwrap()
}

/// The installer succeeded (its output shown otherwise).
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
}

/// The installer exited with `code`, said `needle`, and wrote no
/// knocknoc.conf.
pub fn assert_refused(config: &Path, out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    assert!(
        text(out).contains(needle),
        "expected {needle:?} in:\n{}",
        text(out)
    );
    assert!(!config.exists(), "nothing may be written on failure");
}

/// The written settings hold these answers to the first two questions.
pub fn assert_answers(settings: &Settings, listen: &str, forwarders: &str) {
    assert_eq!(settings.listen, Some(listen.parse().unwrap()), "Listen");
    assert_eq!(
        settings.trusted_forwarders,
        Some(forwarders.parse().unwrap()),
        "TrustedForwarders"
    );
}
