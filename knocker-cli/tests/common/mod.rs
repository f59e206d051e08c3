//! The knocker tests' one setup: a primary with a Knocknoc database and a
//! knocknoc.conf pointing at it, and `knocker exposedb` run against it.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pg_harness::{Cluster, ClusterOptions};

/// Writes `dir/knocknoc.conf` with the application's connection string
/// (role and database `knocknoc`, password `app-secret`, port `port`).
pub fn knocknoc_conf(dir: &Path, port: u16) -> PathBuf {
    let conf = dir.join("knocknoc.conf");
    std::fs::write(
        &conf,
        format!(
            "Listen = 127.0.0.1:8756\nDatabaseURL = \"postgres://knocknoc:app-secret@127.0.0.1:{port}/knocknoc\"\n"
        ),
    )
    .unwrap();
    conf
}

/// A primary with a Knocknoc database and a knocknoc.conf pointing at it.
pub struct Primary {
    /// The server.
    pub pg: Cluster,
    _dir: tempfile::TempDir,
    /// Its knocknoc.conf.
    pub conf: PathBuf,
}

impl Primary {
    /// Started with `options` (connections and statements logged on top),
    /// role and database `knocknoc` created.
    pub async fn start_with_options(major: u32, mut options: ClusterOptions) -> Primary {
        let mut settings = vec![
            ("log_connections".to_string(), "on".to_string()),
            ("log_statement".to_string(), "all".to_string()),
        ];
        settings.append(&mut options.settings);
        options.settings = settings;
        let pg = Cluster::start_with(major, options).await;
        pg.create_role("knocknoc", "app-secret").await;
        pg.create_database("knocknoc", "knocknoc").await;
        let dir = tempfile::tempdir().unwrap();
        let conf = knocknoc_conf(dir.path(), pg.port());
        Primary {
            pg,
            _dir: dir,
            conf,
        }
    }

    /// With the harness's pg_hba.conf or `hba`.
    pub async fn start(major: u32, hba: Option<&str>) -> Primary {
        Primary::start_opts(major, hba, &[], false).await
    }

    /// With extra server settings.
    pub async fn start_with(major: u32, hba: Option<&str>, settings: &[(&str, &str)]) -> Primary {
        Primary::start_opts(major, hba, settings, false).await
    }

    /// With extra server settings, and SSL on when `ssl` (a certificate
    /// signed by the harness's throwaway CA, naming localhost).
    pub async fn start_opts(
        major: u32,
        hba: Option<&str>,
        settings: &[(&str, &str)],
        ssl: bool,
    ) -> Primary {
        Primary::start_with_options(
            major,
            ClusterOptions {
                hba: hba.map(str::to_string),
                settings: settings
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ssl,
                ..Default::default()
            },
        )
        .await
    }

    /// The superuser connection string `--admin-conn` gets.
    pub fn admin_conn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.pg.port()
        )
    }

    /// The command `knocker exposedb --config CONF --admin-conn .. ARGS`,
    /// standard input closed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_knocker"));
        cmd.arg("exposedb")
            .arg("--config")
            .arg(&self.conf)
            .arg("--admin-conn")
            .arg(self.admin_conn())
            .args(args)
            .stdin(Stdio::null())
            .env_remove("SSL_CERT_FILE");
        cmd
    }
}
