//! What `replica` works on: the application's connection string (for the
//! role names and the port), the Debian cluster of this host, and a
//! superuser session on that server.
//!
//! This mirrors what `exposedb` does today in the binary; when exposedb's
//! move into this crate lands, both should share one copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgctl::connect::LocalSuperuser;
use pgctl::server::ServerFacts;
use tokio_postgres::Client;

use crate::Error;

pub use crate::app::AppConn;
pub use pgctl::connect::DEFAULT_SOCKET_DIR;

/// A cluster as Debian's `pg_lsclusters` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DebianCluster {
    /// Major version directory, e.g. `15`.
    pub version: String,
    /// Cluster name, e.g. `main`.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// `online`, `down`, `online,recovery` ...
    pub status: String,
    /// The data directory.
    pub data_directory: PathBuf,
}

impl DebianCluster {
    /// `VERSION/NAME`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.version, self.name)
    }
}

/// Parses `pg_lsclusters --no-header` output.
pub fn parse_lsclusters(text: &str) -> Vec<DebianCluster> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6).then(|| DebianCluster {
                version: f[0].to_string(),
                name: f[1].to_string(),
                port: f[2].parse().unwrap_or(0),
                status: f[3].to_string(),
                data_directory: PathBuf::from(f[5]),
            })
        })
        .collect()
}

/// The clusters `pg_lsclusters` lists; `None` without Debian's tools.
pub fn debian_clusters() -> Option<Vec<DebianCluster>> {
    // pg_lsclusters fails while any cluster on the host is half-made or
    // half-dropped (pg_createcluster / pg_dropcluster running): look again
    // for a moment before concluding that there are no Debian tools.
    for attempt in 0..10 {
        let out = std::process::Command::new("pg_lsclusters")
            .arg("--no-header")
            .output()
            .ok()?;
        if out.status.success() {
            return Some(parse_lsclusters(&String::from_utf8_lossy(&out.stdout)));
        }
        if attempt < 9 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    None
}

/// Checks the text of `--cluster`: `VERSION/NAME`.
pub fn parse_cluster_arg(text: &str) -> Result<(String, String), Error> {
    let bad = || {
        Error::usage(format!(
            "--cluster {text:?}: expected VERSION/NAME, e.g. 15/main"
        ))
    };
    let (v, n) = text.split_once('/').ok_or_else(bad)?;
    if v.is_empty()
        || !v.bytes().all(|b| b.is_ascii_digit())
        || n.is_empty()
        || n.contains(['/', '\0', '\n'])
    {
        return Err(bad());
    }
    Ok((v.to_string(), n.to_string()))
}

/// The port of the server to administer: `--cluster`'s, else the
/// application's, else the only cluster's (several: exit 2 naming them).
pub fn choose_port(cluster: Option<&str>, app: Option<&AppConn>) -> Result<u16, Error> {
    if let Some(text) = cluster {
        let (v, n) = parse_cluster_arg(text)?;
        let clusters = debian_clusters().ok_or_else(|| {
            Error::usage("--cluster needs Debian's pg_lsclusters; give --admin-conn instead")
        })?;
        return clusters
            .iter()
            .find(|c| c.version == v && c.name == n)
            .map(|c| c.port)
            .ok_or_else(|| {
                Error::usage(format!(
                    "--cluster {text}: no such cluster (pg_lsclusters lists: {})",
                    names(&clusters)
                ))
            });
    }
    if let Some(app) = app {
        return Ok(app.port);
    }
    match debian_clusters().as_deref() {
        Some([only]) => Ok(only.port),
        Some([]) | None => Err(Error::usage(
            "no cluster found: give --cluster VERSION/NAME, --conn URI or --admin-conn URI",
        )),
        Some(several) => Err(Error::usage(format!(
            "several clusters on this host ({}); pick one with --cluster VERSION/NAME",
            names(several)
        ))),
    }
}

fn names(clusters: &[DebianCluster]) -> String {
    clusters
        .iter()
        .map(DebianCluster::id)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A superuser session on the server, with what it told about itself.
pub struct Admin {
    client: Client,
    who: LocalSuperuser,
    /// Server settings and version.
    pub facts: ServerFacts,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("who", &self.who).finish()
    }
}

impl Admin {
    /// Connect as the local superuser ([`LocalSuperuser`]): `admin_conn`,
    /// else peer login as `postgres` over the unix socket of `port` (as
    /// that OS user when running as root).
    pub async fn connect(admin_conn: Option<&str>, port: u16) -> Result<Admin, Error> {
        let (client, who, facts) = crate::app::superuser_session(admin_conn, port).await?;
        Ok(Admin { client, who, facts })
    }

    /// The session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Replace the session and reread the facts (after a restart).
    pub async fn replace(&mut self, client: Client) -> Result<(), Error> {
        self.facts = pgctl::server::read_facts(&client)
            .await
            .map_err(|e| Error::failed(e.to_string()).with_source(e))?;
        self.client = client;
        Ok(())
    }

    /// A closure that reconnects, for `restart_and_wait`.
    pub fn reconnector(
        &self,
    ) -> impl FnMut() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Client, pgctl::connect::ConnectError>> + Send>,
    > {
        let who = Arc::new(self.who.clone());
        move || {
            let who = who.clone();
            Box::pin(async move { who.connect().await.map(|c| c.into_client()) })
        }
    }

    /// The server's pg_hba.conf and its bytes.
    pub fn read_hba(&self) -> Result<(PathBuf, Vec<u8>), Error> {
        let path = self
            .facts
            .hba_file
            .clone()
            .ok_or_else(|| Error::failed("the server did not report its hba_file"))?;
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::failed(format!("cannot read {}: {e}", path.display())))?;
        Ok((path, bytes))
    }

    /// The server's major version as pghba knows it.
    pub fn version(&self) -> Result<pghba::PgVersion, Error> {
        pghba::PgVersion::new(self.facts.major())
            .map_err(|e| Error::failed(format!("unsupported server version: {e}")))
    }

    /// Refuse a pg_hba.conf that another tool manages, unless forced.
    pub fn check_hba_owner(&self, force: bool) -> Result<(), Error> {
        pgctl::hba_install::owner::check_hba_owner(&self.facts, &crate::naming(), force)
            .map(|_| ())
            .map_err(|e| match e {
                pgctl::hba_install::owner::OwnerCheckError::ForeignManaged { .. } => {
                    Error::refused("pg_hba.conf is left alone").with_source(e)
                }
                _ => Error::failed("pg_hba.conf is left alone").with_source(e),
            })
    }

    /// Edit pg_hba.conf safely (lock, backup, validate, atomic write,
    /// server check, reload, roll back). Returns whether the file changed.
    pub async fn install_hba<F, E>(&self, path: &Path, edit: F) -> Result<bool, Error>
    where
        F: FnOnce(&[u8]) -> Result<Vec<u8>, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        // knocker's naming, so that replica and exposedb share one lock on
        // the file (docs/ARCHITECTURE.md).
        let options = pgctl::hba_install::InstallOptions {
            naming: crate::naming(),
            ..Default::default()
        };
        pgctl::hba_install::edit(&self.client, path, edit, &options)
            .await
            .map(|r| r.changed)
            .map_err(|e| Error::failed(format!("{}: {e}", path.display())).with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsclusters_lines_are_read() {
        let text = "15  main    5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log\n\
                    16  other   5433 down,recovery postgres /srv/pg16 /var/log/x.log\n";
        let c = parse_lsclusters(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].id(), "16/other");
        assert_eq!(c[1].port, 5433);
        assert_eq!(c[1].status, "down,recovery");
        assert_eq!(
            c[0].data_directory,
            PathBuf::from("/var/lib/postgresql/15/main")
        );
    }

    #[test]
    fn cluster_argument_is_version_slash_name() {
        assert_eq!(
            parse_cluster_arg("15/main").unwrap(),
            ("15".to_string(), "main".to_string())
        );
        for bad in ["15", "main/15", "/main", "15/", "15/a/b"] {
            assert_eq!(
                parse_cluster_arg(bad).unwrap_err().kind(),
                crate::ErrorKind::Usage,
                "{bad}"
            );
        }
    }
}
