//! What `exposedb` works on: the application's connection string and an
//! administrator's session on the same server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgctl::connect::LocalSuperuser;
use pgctl::hba_install::owner::OwnerCheckError;
use pgctl::server::ServerFacts;
use tokio_postgres::Client;

use super::Event;
use crate::Error;

pub use pgctl::connect::DEFAULT_SOCKET_DIR;

pub use crate::app::AppConn;

impl AppConn {
    /// The remote role's name: `user` or `<application role>_remote`.
    pub fn remote_role(&self, user: Option<&str>) -> String {
        user.map(str::to_string)
            .unwrap_or_else(|| self.derived_role(REMOTE_ROLE_SUFFIX))
    }
}

/// What the remote role's name adds to the application role's.
pub const REMOTE_ROLE_SUFFIX: &str = "_remote";

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
    /// else peer login as `postgres` over the unix socket of the
    /// application's port (as that OS user when running as root).
    pub async fn connect(admin_conn: Option<&str>, app: &AppConn) -> Result<Admin, Error> {
        let (client, who, facts) = crate::app::superuser_session(admin_conn, app.port).await?;
        Ok(Admin { client, who, facts })
    }

    /// The session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The session, mutable (transactions).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Replace the session and reread the facts (after a restart).
    pub async fn replace(&mut self, client: Client) -> Result<(), Error> {
        self.facts = pgctl::server::read_facts(&client)
            .await
            .map_err(|e| super::pg("reading the server's settings", e))?;
        self.client = client;
        Ok(())
    }

    /// Another superuser session, the same way, to `database`.
    pub async fn connect_to_database(&self, database: &str) -> Result<Client, Error> {
        crate::app::open_superuser(&self.who.to_database(database)).await
    }

    /// A closure that reconnects, for `restart_and_wait` (which reports
    /// the last connection error when the server does not come back).
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

    /// The server's pg_hba.conf.
    pub fn hba_path(&self) -> Result<PathBuf, Error> {
        self.facts
            .hba_file
            .clone()
            .ok_or_else(|| Error::failed("the server did not report its hba_file"))
    }

    /// Refuse a pg_hba.conf that another tool manages, unless forced.
    pub fn check_hba_owner(&self, force: bool) -> Result<(), Error> {
        pgctl::hba_install::owner::check_hba_owner(&self.facts, &super::naming(), force)
            .map(|_| ())
            .map_err(|e| match e {
                OwnerCheckError::ForeignManaged { .. } => {
                    Error::refused("pg_hba.conf is left alone").with_source(e)
                }
                _ => Error::failed("pg_hba.conf is left alone").with_source(e),
            })
    }

    /// Whether `listen_addresses` includes an IPv6 address or `*`.
    pub fn listens_on_ipv6(&self) -> bool {
        pgctl::listen::split_listen_addresses(&self.facts.listen_addresses)
            .iter()
            .any(|a| a == "*" || a.contains(':') || a == "localhost")
    }

    /// Edit pg_hba.conf safely (lock, backup, validate, atomic write,
    /// reload). Returns whether the file changed.
    pub async fn install_hba<F, E>(
        &self,
        path: &Path,
        edit: F,
        events: Option<super::EventSink>,
    ) -> Result<bool, Error>
    where
        F: FnOnce(&[u8]) -> Result<Vec<u8>, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.install_hba_validated(path, edit, events, None).await
    }

    /// [`Admin::install_hba`] with the caller's validation of the text it
    /// expects `edit` to produce
    /// ([`pgctl::hba_install::InstallOptions::validated`]): used instead of
    /// a second whole-file validation while it holds.
    pub async fn install_hba_validated<F, E>(
        &self,
        path: &Path,
        edit: F,
        events: Option<super::EventSink>,
        validated: Option<Arc<pgctl::hba_install::Validation>>,
    ) -> Result<bool, Error>
    where
        F: FnOnce(&[u8]) -> Result<Vec<u8>, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let options = pgctl::hba_install::InstallOptions {
            validated,
            events: events.map(|sink| {
                Arc::new(move |e: pgctl::hba_install::InstallEvent| {
                    if matches!(e, pgctl::hba_install::InstallEvent::WaitingForLock { .. }) {
                        sink(&Event::WaitingForLock(e.to_string()));
                    }
                }) as pgctl::hba_install::EventSink
            }),
            naming: super::naming(),
            ..Default::default()
        };
        pgctl::hba_install::edit(&self.client, path, edit, &options)
            .await
            .map(|r| r.changed)
            .map_err(|e| {
                let refused = e.is_refusal();
                let base = if refused {
                    Error::refused(path.display().to_string())
                } else {
                    Error::failed(path.display().to_string())
                };
                base.with_source(e)
            })
    }
}
