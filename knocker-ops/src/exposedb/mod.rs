//! `knocker exposedb`: share this host's Knocknoc database with other web
//! nodes (docs/ARCHITECTURE.md). [`Options`] in (no clap); [`Exposedb`]
//! connects once and then plans ([`Exposedb::plan_init`],
//! [`Exposedb::plan_change`], ...: the exact [`Plan`] a dry run prints) or
//! applies (returning [`InitReport`], [`ChangeReport`], [`ListReport`],
//! [`ExplainReport`], [`DeinitReport`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), knocker_ops::Error> {
//! use knocker_ops::exposedb::{Exposedb, Options};
//!
//! let options = Options {
//!     conn: Some("postgres://knocknoc@127.0.0.1:5432/knocknoc".into()),
//!     ..Options::default()
//! };
//! let mut session = Exposedb::connect(options).await?;
//! let plan = session.plan_change(&["203.0.113.7/32".parse().unwrap()], &[])?;
//! print!("{}", plan.dry_run.plan); // the dry run
//! let report = session.change(plan).await?;
//! assert_eq!(report.plan.added.len(), 1);
//! # Ok(()) }
//! ```

pub mod block;
mod change;
pub mod cidr;
mod explain;
mod init;
mod list;
mod target;
pub use target::REMOTE_ROLE_SUFFIX;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use crate::{Error, Plan};
pub use change::{ChangePlan, ChangeReport};
pub use cidr::parse_cidr;
pub use explain::{ExplainReport, ExplainStep, MaybeLine, Verdict};
pub use init::{
    CertificateFacts, DeinitPlan, DeinitReport, InitPlan, InitReport, InitTarget, RestartReport,
    RoleOutcomeName,
};
pub use list::{ListReport, ListedRule};
pub use target::{Admin, AppConn, DEFAULT_SOCKET_DIR};

/// The default knocknoc.conf.
pub const DEFAULT_CONFIG: &str = "/opt/knocknoc/etc/knocknoc.conf";

/// Connections a typical web node's pool opens (for the max_connections
/// warning of `--init`).
pub const POOL_PER_NODE: u32 = 20;

/// Something the operation reports while it runs, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Another process holds pg_hba.conf's lock; the text says which file.
    WaitingForLock(String),
}

/// Where [`Event`]s go.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A caller's answer to "restart PostgreSQL now?": called with the
/// manager's name (e.g. `pg_ctlcluster 15 main`) just before the restart.
pub type ConfirmRestart = Box<dyn FnMut(&str) -> bool + Send>;

/// What `knocker exposedb` works on and how; plain data, no clap.
pub struct Options {
    /// The application's connection string (default: `DatabaseURL` from
    /// [`Options::config`]).
    pub conn: Option<String>,
    /// knocknoc.conf, read when [`Options::conn`] is not given.
    pub config: PathBuf,
    /// A superuser connection string (default: peer login as `postgres`
    /// over the unix socket of the application's port).
    pub admin_conn: Option<String>,
    /// The remote role's name (default: `<application role>_remote`).
    pub user: Option<String>,
    /// `listen_addresses` entries `--init` adds (default: `0.0.0.0`).
    pub listen: Vec<String>,
    /// The host name or address secondaries reach this server at (default:
    /// the address of the default route's interface).
    pub advertise: Option<String>,
    /// Web nodes expected, for the `max_connections` warning.
    pub nodes: u32,
    /// `--init`: give the remote role a new password.
    pub rotate_password: bool,
    /// Leave restarting PostgreSQL to the operator.
    pub no_restart: bool,
    /// Asked before a restart; `None` restarts without asking.
    pub confirm_restart: Option<ConfirmRestart>,
    /// With a removal: end the sessions already open from removed CIDRs.
    pub terminate: bool,
    /// Pass the overridable safety checks
    /// ([`crate::ErrorKind::Refused`] with `overridable`).
    pub force: bool,
    /// Told of [`Event`]s as they happen.
    pub events: Option<EventSink>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            conn: None,
            config: PathBuf::from(DEFAULT_CONFIG),
            admin_conn: None,
            user: None,
            listen: vec!["0.0.0.0".into()],
            advertise: None,
            nodes: 3,
            rotate_password: false,
            no_restart: false,
            confirm_restart: None,
            terminate: false,
            force: false,
            events: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection strings may hold passwords: not shown.
        f.debug_struct("Options")
            .field("config", &self.config)
            .field("user", &self.user)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("nodes", &self.nodes)
            .field("rotate_password", &self.rotate_password)
            .field("no_restart", &self.no_restart)
            .field("terminate", &self.terminate)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Check the names and addresses before anything is touched (exit 2 on
    /// failure): `user` is any role name PostgreSQL keeps as given that
    /// pg_hba.conf can hold (no line break), `advertise` a host name or IP
    /// address, `listen` IP addresses or `*`.
    pub fn check(&self) -> Result<(), Error> {
        if let Some(u) = &self.user {
            // Any name PostgreSQL keeps as given; it is quoted in SQL, in
            // pg_hba.conf and percent-encoded in the printed URI.
            pgctl::roles::validate_name("role", u)
                .map_err(|e| Error::usage("--user").with_source(e))?;
            if u.contains(['\n', '\r']) {
                return Err(Error::usage(format!(
                    "--user: {u:?} contains a line break, which pg_hba.conf cannot hold"
                )));
            }
        }
        if let Some(h) = &self.advertise {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if !ok {
                return Err(Error::usage(format!(
                    "--advertise: {h:?} is not a host name or IP address"
                )));
            }
        }
        for i in &self.listen {
            if i != "*" && i.parse::<IpAddr>().is_err() {
                return Err(Error::usage(format!(
                    "--listen: {i:?} is not an IP address or *"
                )));
            }
        }
        if self.listen.is_empty() {
            return Err(Error::usage("--listen: no address given"));
        }
        Ok(())
    }
}

/// What a caller asks of `exposedb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Listen on the network, create the remote role, add the empty block.
    Init,
    /// Undo [`Action::Init`] completely.
    Deinit,
    /// Add and remove CIDRs, as one change.
    Change {
        /// CIDRs to admit.
        add: Vec<IpNet>,
        /// CIDRs to take out.
        remove: Vec<IpNet>,
    },
    /// The CIDRs admitted.
    List,
    /// Which pg_hba.conf line a connection from this address hits.
    Explain(IpAddr),
}

impl Action {
    /// The name used in JSON output (`"action"`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Init => "init",
            Action::Deinit => "deinit",
            Action::Change { .. } => "change",
            Action::List => "list",
            Action::Explain(_) => "explain",
        }
    }
}

/// The outcome of [`run`]: a plan (dry run) or what was done.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Report {
    /// `--init --dry-run`.
    InitPlan(InitPlan),
    /// `--init`.
    Init(InitReport),
    /// `--deinit --dry-run`.
    DeinitPlan(DeinitPlan),
    /// `--deinit`.
    Deinit(DeinitReport),
    /// `--add/--remove --dry-run`.
    ChangePlan(ChangePlan),
    /// `--add/--remove`.
    Change(ChangeReport),
    /// `--list`.
    List(ListReport),
    /// `--explain`.
    Explain(ExplainReport),
}

impl Report {
    /// The warnings gathered on the way.
    pub fn warnings(&self) -> &[String] {
        match self {
            Report::InitPlan(r) => &r.warnings,
            Report::Init(r) => &r.warnings,
            Report::DeinitPlan(r) => &r.warnings,
            Report::Deinit(r) => &r.warnings,
            Report::ChangePlan(r) => &r.warnings,
            Report::Change(r) => &r.plan.warnings,
            Report::List(_) | Report::Explain(_) => &[],
        }
    }
}

/// Run one action: connect, then plan (`dry_run`) or apply.
pub async fn run(options: Options, action: Action, dry_run: bool) -> Result<Report, Error> {
    options.check()?;
    let mut session = Exposedb::connect(options).await?;
    Ok(match action {
        Action::Init if dry_run => Report::InitPlan(session.plan_init().await?),
        Action::Init => Report::Init(session.init().await?),
        Action::Deinit if dry_run => Report::DeinitPlan(session.plan_deinit().await?),
        Action::Deinit => Report::Deinit(session.deinit().await?),
        Action::Change { add, remove } => {
            let plan = session.plan_change_diffed(&add, &remove, dry_run)?;
            if dry_run {
                Report::ChangePlan(plan)
            } else {
                Report::Change(session.change(plan).await?)
            }
        }
        Action::List => Report::List(session.list()?),
        Action::Explain(addr) => Report::Explain(session.explain(addr).await?),
    })
}

/// A connected `exposedb`: the application's connection string and a
/// superuser session on its server.
#[derive(Debug)]
pub struct Exposedb {
    options: Options,
    app: AppConn,
    admin: Admin,
}

impl Exposedb {
    /// Read the application's connection string and connect as the local
    /// superuser.
    pub async fn connect(options: Options) -> Result<Exposedb, Error> {
        let app = AppConn::load(options.conn.as_deref(), &options.config)?;
        let admin = Admin::connect(options.admin_conn.as_deref(), &app).await?;
        Ok(Exposedb {
            options,
            app,
            admin,
        })
    }

    /// The application's connection, as read.
    pub fn app(&self) -> &AppConn {
        &self.app
    }

    /// The superuser session.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// Refreshes the copy of the block that `knocker replica` keeps in the
    /// data directory ([`crate::replica::exposedb_copy::refresh`]: only on
    /// a node with a replica set-up) after pg_hba.conf changed. Its
    /// failure is a warning: the change itself is done.
    fn refresh_replica_copy(&self, warnings: &mut Vec<String>) -> Option<std::path::PathBuf> {
        match crate::replica::exposedb_copy::refresh(&self.admin.facts) {
            Ok(path) => path,
            Err(e) => {
                warnings.push(format!(
                    "the standby's copy of this block (knocker replica) was not refreshed: {e}; \
                     knocker replica --allow refreshes it"
                ));
                None
            }
        }
    }

    /// The scope of the block's rules on this server.
    fn scope(&self) -> block::Scope {
        block::Scope {
            database: self.app.database.clone(),
            user: self.app.remote_role(self.options.user.as_deref()),
            hostssl: self.admin.facts.ssl,
        }
    }

    fn version(&self) -> Result<pghba::PgVersion, Error> {
        pghba::PgVersion::new(self.admin.facts.major())
            .map_err(|e| Error::failed("unsupported server version").with_source(e))
    }

    /// The block change `request` asks for, on this server's pg_hba.conf.
    fn block_edit(
        &self,
        path: &std::path::Path,
        request: block::Request,
    ) -> Result<BlockEdit, Error> {
        Ok(BlockEdit {
            path: path.to_string_lossy().into_owned(),
            version: self.version()?,
            scope: self.scope(),
            request,
        })
    }

    fn read_hba(&self) -> Result<(PathBuf, Vec<u8>), Error> {
        let path = self.admin.hba_path()?;
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::failed(format!("cannot read {}", path.display())).with_source(e))?;
        Ok((path, bytes))
    }
}

/// One change of the block, planned on the file as read and planned again
/// on the file found under the installation's lock (the same request).
#[derive(Debug, Clone)]
struct BlockEdit {
    path: String,
    version: pghba::PgVersion,
    scope: block::Scope,
    request: block::Request,
}

impl BlockEdit {
    /// The block's change of `text` (included files read from disk).
    fn plan(&self, text: &[u8]) -> Result<block::Change, block::PlanError> {
        let file = block::HbaFile {
            path: &self.path,
            text,
            version: self.version,
        };
        block::plan(&file, &mut pghba::FsLoader, &self.scope, &self.request)
    }

    /// [`BlockEdit::plan`] that also validates the new text for the
    /// server (`major`, `settings`) in the same walk, for the installation
    /// to reuse (docs/ARCHITECTURE.md: one whole-file validation per
    /// change). No validation when the text does not change.
    fn plan_validated(
        &self,
        text: &[u8],
        major: u32,
        settings: &pgctl::hba_install::ValidationSettings,
    ) -> Result<(block::Change, Option<pgctl::hba_install::Validation>), block::PlanError> {
        let file = block::HbaFile {
            path: &self.path,
            text,
            version: self.version,
        };
        debug_assert_eq!(settings.ssl, self.scope.hostssl);
        let path = std::path::Path::new(&self.path);
        let mut validation = None;
        let change = block::plan_walking(
            &file,
            &mut pghba::FsLoader,
            &self.scope,
            &self.request,
            &mut |new, _loader, select, observe| {
                validation = Some(pgctl::hba_install::validate_observed(
                    path, new, major, settings, select, observe,
                ));
            },
        )?;
        Ok((change, validation))
    }

    /// The edit for pghba's installation: the new text of the file as found
    /// under the lock. When it is still `planned_from`, the plan's text
    /// holds and the whole-file parse is skipped (cargo xtask bench
    /// exposedb).
    fn into_edit(
        self,
        planned_from: Vec<u8>,
        planned: Vec<u8>,
    ) -> impl FnOnce(&[u8]) -> Result<Vec<u8>, block::PlanError> {
        move |current: &[u8]| {
            if current == planned_from.as_slice() {
                return Ok(planned);
            }
            self.plan(current).map(|c| c.new_text)
        }
    }
}

/// The dry-run part of a plan report: the diff and SQL as JSON shows them
/// (`dry_run`, `diff`, `sql`), the [`Plan`] itself, and notes.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// Always true (a field of the JSON output).
    pub dry_run: bool,
    /// The unified diff of pg_hba.conf (empty when it does not change).
    pub diff: String,
    /// The SQL statements, exactly as they would be sent.
    pub sql: Vec<String>,
    /// What else would happen that is neither a diff nor SQL.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// The plan.
    #[serde(skip)]
    pub plan: Plan,
}

impl DryRun {
    /// The dry run of `plan`, its diff left empty (for a plan that is
    /// applied, not shown).
    fn without_diff(plan: Plan, notes: Vec<String>) -> DryRun {
        DryRun {
            dry_run: true,
            diff: String::new(),
            sql: plan.sql.clone(),
            notes,
            plan,
        }
    }

    fn new(plan: Plan, notes: Vec<String>) -> DryRun {
        DryRun {
            dry_run: true,
            diff: plan
                .files
                .iter()
                .filter(|f| f.changes())
                .map(crate::FileChange::diff)
                .collect(),
            sql: plan.sql.clone(),
            notes,
            plan,
        }
    }
}

/// knocker's names for what pgctl creates: `.pg_hba.conf.knocker-*` temp
/// files and lock, `managed by knocker` roles, `zz-knocker-listen.conf`
/// "Written by knocker exposedb".
pub fn naming() -> pgctl::naming::Naming {
    crate::naming().written_by("knocker exposedb")
}

/// Who is making the change, for the rule's comment: `SUDO_USER`, else
/// `USER`, else the effective user's name from the password database.
pub fn rule_comment() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .or_else(pgctl::os::effective_user_name)
        .unwrap_or_else(|| "unknown".into());
    let who: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        .take(64)
        .collect();
    format!("added {} by {who}", pgctl::os::utc_timestamp())
}

/// An error of pgctl's, with its kind: the checks `force` passes are
/// overridable refusals, bad names are usage errors.
pub(crate) fn pg(context: impl Into<String>, e: pgctl::error::Error) -> Error {
    use pgctl::error::Error as E;
    let base = match &e {
        E::RoleNotManaged { .. } => Error::refused(context),
        E::InvalidName { .. } => Error::usage(context),
        _ => Error::failed(context),
    };
    base.with_source(e)
}
