//! `--init` and `--deinit`: listen on the network, the remote role and its
//! link to the application database, the (empty) managed block; and undoing
//! all of it.

use std::time::Duration;

use pgctl::conninfo::{ConnInfo, UriScheme};
use pgctl::listen::{plan_listen_addresses, ListenPlan};
use pgctl::restart::RestartWith;
use pgctl::roles::{EnsureRole, RoleOutcome};
use serde::Serialize;

use super::{block, pg, rule_comment, DryRun, Exposedb, POOL_PER_NODE};
use crate::{Error, FileChange, Plan};

/// What `--init` works on (its plan and report share them).
#[derive(Debug, Clone, Serialize)]
pub struct InitTarget {
    /// The remote role.
    pub role: String,
    /// The application database.
    pub database: String,
    /// The server's pg_hba.conf.
    pub hba_file: String,
    /// `listen_addresses` after the change.
    pub listen_addresses: String,
    /// Whether the block's rules are `hostssl`.
    pub hostssl: bool,
}

/// What `--init --dry-run` reports: the plan and the facts it rests on.
#[derive(Debug, Clone, Serialize)]
pub struct InitPlan {
    /// The role, database, file and settings.
    #[serde(flatten)]
    pub target: InitTarget,
    /// The diff, SQL and notes.
    #[serde(flatten)]
    pub dry_run: DryRun,
    /// Warnings.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// What happened to the remote role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleOutcomeName {
    /// Created, with a new password.
    Created,
    /// Given a new password.
    Rotated,
    /// An unmarked role taken over (forced), with a new password.
    Adopted,
    /// Left as it was.
    Unchanged,
}

/// The server certificate as `--init` found it.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateFacts {
    /// SHA-256 fingerprint.
    #[serde(rename = "certificate_sha256")]
    pub sha256: String,
    /// Whether it is self-signed.
    #[serde(rename = "certificate_self_signed")]
    pub self_signed: bool,
    /// The PEM text, when self-signed (to give secondaries as sslrootcert).
    #[serde(rename = "certificate_pem", skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
}

/// What `--init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The role, database, file and settings.
    #[serde(flatten)]
    pub target: InitTarget,
    /// The restart, when one was needed.
    #[serde(flatten)]
    pub restart: Option<RestartReport>,
    /// Other addresses of this host (when none was given to advertise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_addresses: Option<Vec<String>>,
    /// The host secondaries are told to connect to.
    pub advertise: String,
    /// What happened to the role.
    pub role_outcome: RoleOutcomeName,
    /// Whether anything changed.
    pub changed: bool,
    /// Whether the connection string asks for `sslmode=verify-full`.
    pub verify_full: bool,
    /// The secondaries' connection string, when a password was set now.
    pub connection_string: Option<String>,
    /// The new password (only from the run that set it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The server's max_connections.
    pub max_connections: u32,
    /// The server certificate, when SSL is on and it could be read.
    #[serde(flatten)]
    pub certificate: Option<CertificateFacts>,
    /// The role whose rights the remote role gets.
    #[serde(skip)]
    pub owner: String,
    /// Whether pg_hba.conf changed.
    #[serde(skip)]
    pub hba_changed: bool,
    /// Whether listen_addresses changed.
    #[serde(skip)]
    pub listen_changed: bool,
    /// The server's port.
    #[serde(skip)]
    pub port: u16,
    /// Warnings.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The copy of the block `knocker replica` keeps in the data
    /// directory, when this run refreshed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_copy: Option<std::path::PathBuf>,
}

/// A restart that was needed: how, and whether it happened.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    /// The command that restarts the server (run, or for the operator).
    pub restart_command: String,
    /// Whether the server was restarted.
    pub restarted: bool,
}

/// What `--deinit --dry-run` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DeinitPlan {
    /// The remote role.
    pub role: String,
    /// The server's pg_hba.conf.
    pub hba_file: String,
    /// The diff, SQL and notes.
    #[serde(flatten)]
    pub dry_run: DryRun,
    /// Warnings.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// What `--deinit` did.
#[derive(Debug, Clone, Serialize)]
pub struct DeinitReport {
    /// The remote role.
    pub role: String,
    /// The server's pg_hba.conf.
    pub hba_file: String,
    /// The restart, when one was needed.
    #[serde(flatten)]
    pub restart: Option<RestartReport>,
    /// Whether the block was removed.
    pub hba_changed: bool,
    /// Whether the role was dropped.
    pub role_dropped: bool,
    /// `listen_addresses` as reset.
    pub listen_addresses: String,
    /// Whether anything changed.
    pub changed: bool,
    /// Whether listen_addresses changes at the next restart (or did).
    #[serde(skip)]
    pub listen_changed: bool,
    /// Warnings.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The copy of the block `knocker replica` keeps in the data
    /// directory, when this run refreshed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_copy: Option<std::path::PathBuf>,
}

fn hba_plan(path: &std::path::Path, old: &[u8], new: &[u8]) -> Plan {
    Plan {
        files: vec![FileChange::new(path, old, new)],
        ..Plan::default()
    }
}

impl Exposedb {
    fn listen_plan(&self) -> ListenPlan {
        let adds: Vec<&str> = self.options.listen.iter().map(String::as_str).collect();
        plan_listen_addresses(&self.admin.facts.listen_addresses, &adds)
    }

    /// The block edit of `--init`: the block, created when missing.
    fn init_block(&self, path: &std::path::Path) -> Result<super::BlockEdit, Error> {
        self.block_edit(
            path,
            block::Request {
                comment: rule_comment(),
                force: self.options.force,
                ..block::Request::default()
            },
        )
    }

    fn ensure_role(&self) -> EnsureRole {
        EnsureRole {
            rotate_password: self.options.rotate_password,
            force: self.options.force,
            password: None,
            naming: super::naming(),
        }
    }

    /// `--init --dry-run`: what `--init` would change, from the same
    /// pgctl plans that [`Exposedb::init`] runs.
    pub async fn plan_init(&self) -> Result<InitPlan, Error> {
        self.admin.check_hba_owner(self.options.force)?;
        let scope = self.scope();
        let (path, old) = self.read_hba()?;
        let hba = self
            .init_block(&path)?
            .plan(&old)
            .map_err(super::change::plan_error)?;
        let listen = self.listen_plan();
        let client = self.admin.client();
        let role_plan = pgctl::roles::plan_login_role(client, &scope.user, &self.ensure_role())
            .await
            .map_err(|e| pg("planning the remote role", e))?;
        let owner = pgctl::grants::find_owner_role(client, &scope.database, Some(&self.app.user))
            .await
            .map_err(|e| pg("finding the application's owner role", e))?;
        let link = pgctl::grants::plan_link(client, &scope.user, &scope.database, &owner)
            .await
            .map_err(|e| pg("planning the role's link", e))?;
        let mut plan = hba_plan(&path, &old, &hba.new_text);
        plan.sql = role_plan.statements(None);
        plan.sql.extend(link.statements);
        let mut notes = Vec::new();
        if hba.changed() {
            plan.sql.push(pgctl::hba_install::RELOAD_SQL.into());
        }
        if listen.changes() {
            if pgctl::listen::alter_system_allowed(client)
                .await
                .map_err(|e| pg("asking whether ALTER SYSTEM is allowed", e))?
            {
                plan.sql
                    .push(pgctl::listen::set_listen_addresses_sql(&listen.new));
            } else {
                notes.push(format!(
                    "ALTER SYSTEM is off: listen_addresses = '{}' would be written to {} in the include directory.",
                    listen.new,
                    super::naming().listen_file_name()
                ));
            }
            notes.push("Then PostgreSQL would be restarted for listen_addresses.".into());
        }
        Ok(InitPlan {
            target: InitTarget {
                role: scope.user,
                database: scope.database,
                hba_file: path.display().to_string(),
                listen_addresses: listen.new,
                hostssl: scope.hostssl,
            },
            dry_run: DryRun::new(plan, notes),
            warnings: Vec::new(),
        })
    }

    /// Restart the server unless the options say not to (or the caller's
    /// confirmation declines).
    async fn restart(
        &mut self,
        plan: Option<&ListenPlan>,
        warnings: &mut Vec<String>,
    ) -> Result<RestartReport, Error> {
        let manager = pgctl::server::detect_manager(&self.admin.facts);
        let command = manager
            .restart_command_line()
            .unwrap_or_else(|| "restart PostgreSQL with your service manager".into());
        let mut report = RestartReport {
            restart_command: command.clone(),
            restarted: false,
        };
        if self.options.no_restart {
            warnings.push(format!(
                "PostgreSQL must be restarted for listen_addresses to take effect; run: {command}"
            ));
            return Ok(report);
        }
        if let Some(confirm) = &mut self.options.confirm_restart {
            if !confirm(&manager.to_string()) {
                warnings.push(format!(
                    "not restarted; listen_addresses takes effect after: {command}"
                ));
                return Ok(report);
            }
        }
        let how = RestartWith::Manager(manager);
        let client = pgctl::restart::restart_and_wait(
            self.admin.client(),
            &how,
            Duration::from_secs(120),
            self.admin.reconnector(),
        )
        .await
        .map_err(|e| pg("restarting PostgreSQL", e))?;
        if let Some(plan) = plan {
            pgctl::listen::verify_listening(&client, self.admin.facts.port, plan)
                .await
                .map_err(|e| pg("checking that PostgreSQL listens", e))?;
        }
        self.admin.replace(client).await?;
        report.restarted = true;
        Ok(report)
    }

    /// `--init` (and `--rotate-password`).
    pub async fn init(&mut self) -> Result<InitReport, Error> {
        self.admin.check_hba_owner(self.options.force)?;
        let scope = self.scope();
        pgctl::roles::validate_name("role", &scope.user)
            .map_err(|e| Error::usage("--user").with_source(e))?;
        let (path, old) = self.read_hba()?;
        let edit = self.init_block(&path)?;
        let hba = edit.plan(&old).map_err(super::change::plan_error)?;
        let listen = self.listen_plan();
        let mut warnings = Vec::new();

        // The role, with a password hashed on this side.
        let outcome =
            pgctl::roles::ensure_login_role(self.admin.client(), &scope.user, &self.ensure_role())
                .await
                .map_err(|e| pg("creating the remote role", e))?;
        // From here a failure would strand the password this run set: it is
        // printed only in the report, so the error says how to get a new one.
        let password_set = outcome.password().is_some();
        let stranded = |e: Error| {
            if password_set {
                e.with_note(
                    "The role's new password from this run was not shown and is not kept; \
                     once this is fixed, run `knocker exposedb --rotate-password` for a connection string",
                )
            } else {
                e
            }
        };
        let owner = pgctl::grants::find_owner_role(
            self.admin.client(),
            &scope.database,
            Some(&self.app.user),
        )
        .await
        .map_err(|e| stranded(pg("finding the application's owner role", e)))?;
        let link = pgctl::grants::link_role(
            self.admin.client_mut(),
            &scope.user,
            &scope.database,
            &owner,
        )
        .await
        .map_err(|e| stranded(pg("linking the remote role", e)))?;
        let hba_changed = if hba.changed() {
            self.admin
                .install_hba(
                    &path,
                    edit.into_edit(old, hba.new_text),
                    self.options.events.clone(),
                )
                .await
                .map_err(stranded)?
        } else {
            false
        };
        let mut listen_changed = false;
        let mut restart = None;
        if listen.changes() {
            let change = pgctl::listen::set_listen_addresses(
                self.admin.client(),
                &listen.new,
                &super::naming(),
            )
            .await
            .map_err(|e| stranded(pg("setting listen_addresses", e)))?;
            listen_changed = true;
            if change.restart_needed {
                restart = Some(
                    self.restart(Some(&listen), &mut warnings)
                        .await
                        .map_err(stranded)?,
                );
            }
        }

        let mut other_addresses = None;
        let host = match &self.options.advertise {
            Some(h) => h.clone(),
            None => {
                let (chosen, others) = crate::network::advertise_candidates();
                let others: Vec<String> = others.iter().map(|a| a.to_string()).collect();
                if !others.is_empty() {
                    warnings.push(format!(
                        "this host has other addresses too ({}); pick one with --advertise HOST if secondaries reach it there",
                        others.join(", ")
                    ));
                }
                other_addresses = Some(others);
                match chosen {
                    Some(a) => a.to_string(),
                    None => {
                        warnings.push("no non-loopback IPv4 address found; using 127.0.0.1 (give --advertise HOST)".into());
                        "127.0.0.1".into()
                    }
                }
            }
        };

        let password = outcome.password().cloned();
        let nothing_changed = matches!(outcome, RoleOutcome::Unchanged)
            && !link.any()
            && !hba_changed
            && !listen_changed;
        let role_outcome = match outcome {
            RoleOutcome::Created(_) => RoleOutcomeName::Created,
            RoleOutcome::Rotated(_) => RoleOutcomeName::Rotated,
            RoleOutcome::Adopted(_) => RoleOutcomeName::Adopted,
            RoleOutcome::Unchanged => RoleOutcomeName::Unchanged,
        };
        let port = self.admin.facts.port;
        // verify-full only when a secondary would pass it with the system's
        // trust store: a CA-signed certificate naming the advertised host.
        let verify_full = scope.hostssl
            && password.is_some()
            && verifies_with_system_roots(&host, port, &scope).await;
        let connection_string = password.as_ref().map(|p| {
            let mut b = ConnInfo::builder()
                .host(host.clone())
                .port(port)
                .user(scope.user.clone())
                .password(p.expose().to_string())
                .dbname(scope.database.clone());
            if verify_full {
                b = b
                    .sslmode(pgctl::connect::SslMode::VerifyFull)
                    .sslrootcert("system");
            } else if scope.hostssl {
                b = b.sslmode(pgctl::connect::SslMode::Require);
            }
            b.build().to_uri_with(UriScheme::Postgres)
        });
        let max_connections = self.admin.facts.max_connections;
        let needed = self.options.nodes.saturating_mul(POOL_PER_NODE);
        if needed + 10 > max_connections {
            warnings.push(format!(
                "{} web nodes with pools of {POOL_PER_NODE} need about {needed} connections; \
                 max_connections is {max_connections} (raise it, or shrink the pools)",
                self.options.nodes
            ));
        }
        let mut certificate = None;
        if scope.hostssl {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            match pgctl::connect::fetch_server_certificate(
                addr,
                "localhost",
                Duration::from_secs(5),
            )
            .await
            {
                Ok(cert) => {
                    certificate = Some(CertificateFacts {
                        sha256: cert.sha256_fingerprint(),
                        self_signed: cert.is_self_signed(),
                        pem: cert.is_self_signed().then(|| cert.to_pem()),
                    })
                }
                Err(e) => warnings.push(format!("could not read the server certificate: {e}")),
            }
        }
        let replica_copy = if hba_changed {
            self.refresh_replica_copy(&mut warnings)
        } else {
            None
        };
        Ok(InitReport {
            target: InitTarget {
                role: scope.user,
                database: scope.database,
                hba_file: path.display().to_string(),
                listen_addresses: listen.new,
                hostssl: scope.hostssl,
            },
            restart,
            other_addresses,
            advertise: host,
            role_outcome,
            changed: !nothing_changed,
            verify_full,
            connection_string,
            password: password.map(|p| p.expose().to_string()),
            max_connections,
            certificate,
            owner,
            hba_changed,
            listen_changed,
            port,
            replica_copy,
            warnings,
        })
    }

    /// `--deinit --dry-run`.
    pub async fn plan_deinit(&mut self) -> Result<DeinitPlan, Error> {
        let d = self.deinit_steps().await?;
        let mut plan = hba_plan(&d.path, &d.old, &d.new);
        if d.had_block {
            plan.sql.push(pgctl::hba_install::RELOAD_SQL.into());
        }
        plan.sql
            .extend(d.drop_plan.map(|p| p.statements()).unwrap_or_default());
        if pgctl::listen::alter_system_allowed(self.admin.client())
            .await
            .map_err(|e| pg("asking whether ALTER SYSTEM is allowed", e))?
        {
            plan.sql
                .push(pgctl::listen::RESET_LISTEN_ADDRESSES_SQL.into());
        }
        let notes = vec![format!(
            "knocker's {} in the include directory would be removed if present; \
             PostgreSQL would be restarted if listen_addresses changes.",
            super::naming().listen_file_name()
        )];
        Ok(DeinitPlan {
            role: self.scope().user,
            hba_file: d.path.display().to_string(),
            dry_run: DryRun::new(plan, notes),
            warnings: Vec::new(),
        })
    }

    /// What `--deinit` checks and plans before changing anything.
    async fn deinit_steps(&self) -> Result<DeinitSteps, Error> {
        self.admin.check_hba_owner(self.options.force)?;
        let scope = self.scope();
        let version = self.version()?;
        let (path, old) = self.read_hba()?;
        let (new, had_block) = block::remove(&old, version).map_err(super::change::plan_error)?;
        // REASSIGN OWNED works on the current database: drop the role from a
        // session in the application's database.
        let in_app_db = self.admin.connect_to_database(&scope.database).await?;
        let owner = match pgctl::roles::role_info(&in_app_db, &scope.user)
            .await
            .map_err(|e| pg("reading the remote role", e))?
        {
            Some(_) => Some(
                pgctl::grants::find_owner_role(&in_app_db, &scope.database, Some(&self.app.user))
                    .await
                    .map_err(|e| pg("finding the application's owner role", e))?,
            ),
            None => None,
        };
        // Checked before anything changes: a role that owns objects elsewhere
        // stops --deinit here, with the block still in place.
        let drop_plan = match &owner {
            Some(owner) => pgctl::grants::plan_drop_linked_role(
                &in_app_db,
                &scope.user,
                &scope.database,
                owner,
                &super::naming(),
                self.options.force,
            )
            .await
            .map_err(|e| pg("planning to drop the remote role", e))?,
            None => None,
        };
        Ok(DeinitSteps {
            path,
            old,
            new,
            had_block,
            in_app_db,
            owner,
            drop_plan,
        })
    }

    /// `--deinit`: undo `--init` completely.
    pub async fn deinit(&mut self) -> Result<DeinitReport, Error> {
        let scope = self.scope();
        let version = self.version()?;
        let DeinitSteps {
            path,
            had_block,
            mut in_app_db,
            owner,
            ..
        } = self.deinit_steps().await?;
        let hba_changed = if had_block {
            self.admin
                .install_hba(
                    &path,
                    move |cur: &[u8]| block::remove(cur, version).map(|(t, _)| t),
                    self.options.events.clone(),
                )
                .await?
        } else {
            false
        };
        let dropped = match &owner {
            Some(owner) => {
                pgctl::grants::drop_linked_role(
                    &mut in_app_db,
                    &scope.user,
                    &scope.database,
                    owner,
                    &super::naming(),
                    self.options.force,
                )
                .await
                .map_err(|e| pg("dropping the remote role", e))?
                .dropped
            }
            None => false,
        };
        drop(in_app_db);
        let change = pgctl::listen::reset_listen_addresses(self.admin.client(), &super::naming())
            .await
            .map_err(|e| pg("resetting listen_addresses", e))?;
        let mut warnings = Vec::new();
        let mut restart = None;
        if change.restart_needed {
            restart = Some(self.restart(None, &mut warnings).await?);
        }
        let replica_copy = if hba_changed {
            self.refresh_replica_copy(&mut warnings)
        } else {
            None
        };
        Ok(DeinitReport {
            role: scope.user,
            hba_file: path.display().to_string(),
            restart,
            hba_changed,
            role_dropped: dropped,
            listen_addresses: change.new,
            changed: hba_changed || dropped || change.restart_needed,
            listen_changed: change.restart_needed,
            replica_copy,
            warnings,
        })
    }
}

/// What [`Exposedb::deinit_steps`] found.
struct DeinitSteps {
    path: std::path::PathBuf,
    old: Vec<u8>,
    new: Vec<u8>,
    had_block: bool,
    in_app_db: tokio_postgres::Client,
    owner: Option<String>,
    drop_plan: Option<pgctl::grants::DropPlan>,
}

/// Whether a client reaching this server as `host` with
/// `sslmode=verify-full sslrootcert=system` gets through the TLS handshake
/// (the chain checks out against the system's roots and the certificate
/// names `host`). Probed over loopback (`hostaddr=127.0.0.1`) with the
/// advertised name; the login itself may fail, only TLS matters.
async fn verifies_with_system_roots(host: &str, port: u16, scope: &block::Scope) -> bool {
    use pgctl::connect::ConnectErrorKind as K;
    let info = ConnInfo::builder()
        .host(host)
        .set(pgctl::conninfo::Keyword::Hostaddr, "127.0.0.1")
        .port(port)
        .user(scope.user.clone())
        .dbname(scope.database.clone())
        .sslmode(pgctl::connect::SslMode::VerifyFull)
        .sslrootcert("system")
        .connect_timeout(5)
        .build();
    let env = pgctl::conninfo::MapEnvironment::new();
    let Ok(resolved) = pgctl::conninfo::resolve(&info, &env) else {
        return false;
    };
    match pgctl::connect::connect(&resolved.params).await {
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            K::NoHbaEntry
                | K::BadPassword
                | K::PasswordMissing
                | K::AuthenticationFailed
                | K::RoleDoesNotExist
                | K::DatabaseDoesNotExist
                | K::TooManyConnections
                | K::ServerNotAccepting
        ),
    }
}
