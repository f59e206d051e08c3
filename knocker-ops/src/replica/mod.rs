//! `knocker replica`: a streaming standby of the Knocknoc database.
//!
//! On the primary: `--init` (replication and rewind roles, the settings
//! replication and `pg_rewind` need, a bound on the WAL a slot may hold,
//! the managed pg_hba.conf block), `--allow CIDR --name NAME [--sync]`
//! (block lines and the slot `knocker_NAME`), `--revoke CIDR` (lines and
//! slot gone), `--print-url` (the multi-host string for web nodes). On
//! either node: `--status`.
//!
//! Each action reads the server, builds its [`Plan`] (the exact diff, SQL
//! and commands: `--dry-run` prints it and changes nothing) and applies the
//! same statements. Restarts are asked for through the caller's `ask`
//! callback; the library never prints or prompts. See
//! docs/ARCHITECTURE.md.

mod allow;
pub mod block;
pub(crate) mod clone;
pub mod exposedb_copy;
mod init;
pub(crate) mod status;
pub mod target;
mod url;

use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;

pub use clone::CLONE_STEPS;
pub use status::{NodeReport, SlotReport, StandbyReport};

use crate::{Error, Plan};

/// Prefix of the physical slot of a standby: `knocker_<name>`.
pub const SLOT_PREFIX: &str = "knocker_";

/// Suffix of the replication role: `<application role>_replication`.
pub const REPLICATION_ROLE_SUFFIX: &str = "_replication";

/// Suffix of the role `pg_rewind` connects as: `<application role>_rewind`.
pub const REWIND_ROLE_SUFFIX: &str = "_rewind";

/// Suffix of the role allowed only `pg_promote`, which a switchover run on
/// the primary uses to promote its standby over the network:
/// `<application role>_promote`.
pub const PROMOTE_ROLE_SUFFIX: &str = "_promote";

/// The action of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Prepare the primary.
    Init,
    /// Admit a standby from an address.
    Allow {
        /// The standby's address.
        cidr: IpNet,
        /// Make it the synchronous standby.
        sync: bool,
    },
    /// Remove a standby's lines and slot.
    Revoke {
        /// The standby's address.
        cidr: IpNet,
        /// End its walsender if it is streaming.
        terminate: bool,
    },
    /// Replication state of this node.
    Status,
    /// The multi-host connection string for web nodes.
    PrintUrl,
    /// On the standby host: replace the local cluster with a streaming
    /// copy of the primary.
    CloneFrom {
        /// The replication connection string `--init` printed.
        uri: Secret,
    },
}

impl Action {
    /// The flag that names the action, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Init => "init",
            Action::Allow { .. } => "allow",
            Action::Revoke { .. } => "revoke",
            Action::Status => "status",
            Action::PrintUrl => "print-url",
            Action::CloneFrom { .. } => "clone-from",
        }
    }
}

/// What to do and where: plain data, no command-line parser types.
/// `Debug` shows the connection strings without their passwords.
#[derive(Clone)]
pub struct Options {
    /// The action.
    pub action: Action,
    /// knocknoc.conf, for the application's connection string.
    pub config: PathBuf,
    /// The application's connection string instead of knocknoc.conf's.
    pub conn: Option<String>,
    /// A superuser connection string (default: peer login as `postgres`).
    pub admin_conn: Option<String>,
    /// `VERSION/NAME` of the Debian cluster.
    pub cluster: Option<String>,
    /// The standby's name (`--allow`).
    pub name: Option<String>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Pass the overridable safety checks.
    pub force: bool,
    /// Never restart; say what to run instead.
    pub no_restart: bool,
    /// Let long-running children (`pg_basebackup -P`) show progress on
    /// standard error (the caller sets it for a terminal).
    pub progress: bool,
}

/// `impl Debug` for a command's options whose connection strings may
/// carry passwords: `Type { fields...; redacted: conn fields... }` shows
/// the first as they are and the connection strings through
/// [`crate::app::redacted_conn`]. The struct is destructured whole, so a
/// field added to it and not here fails to compile rather than going
/// missing from the output (or showing a password).
macro_rules! debug_redacting_conns {
    ($ty:ident { $($field:ident),* ; redacted: $($conn:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let $ty { $($field,)* $($conn,)* } = self;
                let mut s = f.debug_struct(stringify!($ty));
                $(s.field(stringify!($field), $field);)*
                $(s.field(stringify!($conn), &crate::app::redacted_conn($conn));)*
                s.finish()
            }
        }
    };
}
pub(crate) use debug_redacting_conns;

debug_redacting_conns!(Options {
    action, config, cluster, name, dry_run, force, no_restart, progress;
    redacted: conn, admin_conn
});

impl Options {
    /// Options for `action` with every other field at its default.
    pub fn new(action: Action) -> Options {
        Options {
            action,
            config: PathBuf::from("/opt/knocknoc/etc/knocknoc.conf"),
            conn: None,
            admin_conn: None,
            cluster: None,
            name: None,
            dry_run: false,
            force: false,
            no_restart: false,
            progress: false,
        }
    }
}

/// A secret shown once: serialised as is, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

/// The restart a change needed and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartReport {
    /// The settings waiting for it.
    pub settings: Vec<String>,
    /// Whether the server was restarted.
    pub restarted: bool,
    /// The command that restarts it (to run by hand when not restarted).
    pub command: Option<String>,
}

/// What a call did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The action's flag name.
    pub action: &'static str,
    /// The replication connection string with its new password (`--init`
    /// that created or rotated the roles): shown once, first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_url: Option<Secret>,
    /// Whether anything changed.
    pub changed: bool,
    /// `--dry-run`: the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// What was done, one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// Things the operator should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// A restart that was needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartReport>,
    /// The replication role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_role: Option<String>,
    /// The rewind role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewind_role: Option<String>,
    /// The standbys' slots (`--allow`, `--revoke`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<String>,
    /// `--status`: this node's state.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeReport>,
    /// `--print-url`: the string web nodes use (password as `PASSWORD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `--print-url`: what a web node runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installer_command: Option<String>,
}

/// Checks a standby name: it becomes `application_name`, a slot name
/// (`knocker_<name>`: lower-case letters, digits, `_`) and a pg_hba.conf
/// comment, so only those characters, at most 55 bytes.
pub fn validate_standby_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::usage("--name: the standby's name is empty"));
    }
    let slot = slot_name(name);
    pgctl::replication::validate_slot_name(&slot)
        .map_err(|e| Error::usage(format!("--name {name:?}: {e}")))
}

/// The slot of standby `name`.
pub fn slot_name(name: &str) -> String {
    format!("{SLOT_PREFIX}{name}")
}

/// This host's short name, lower-cased, with characters a slot name
/// cannot hold turned into `_` (the default `--name`).
pub fn default_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; gethostname NUL-terminates
    // within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    host.split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks a CIDR argument: an address or `address/prefix` without host bits.
pub fn parse_cidr(flag: &str, text: &str) -> Result<IpNet, Error> {
    let t = text.trim();
    let net = t
        .parse::<IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| Error::usage(format!("{flag} {text:?}: not an address or CIDR")))?;
    if net.trunc() != net {
        return Err(Error::usage(format!(
            "{flag} {text:?}: host bits are set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Runs one call. `ask` is asked before a restart (a terminal prompt, or
/// `--yes`); nothing here prints.
pub async fn run(options: &Options, ask: &mut dyn FnMut(&str) -> bool) -> Result<Report, Error> {
    if let Some(name) = &options.name {
        validate_standby_name(name)?;
    }
    if let Some(c) = &options.cluster {
        target::parse_cluster_arg(c)?;
    }
    if let Action::CloneFrom { uri } = &options.action {
        // The local cluster may be down: no session before the checks.
        let mut report = Report {
            action: options.action.name(),
            ..Report::default()
        };
        clone::clone_from(options, &uri.0, &mut report).await?;
        return Ok(report);
    }
    let needs_app = !matches!(options.action, Action::Status);
    let app = match target::AppConn::load(options.conn.as_deref(), &options.config) {
        Ok(app) => Some(app),
        Err(e) if needs_app => return Err(e),
        Err(_) => None,
    };
    let port = if options.admin_conn.is_some() {
        app.as_ref().map_or(5432, |a| a.port)
    } else {
        target::choose_port(options.cluster.as_deref(), app.as_ref())?
    };
    if let Action::Allow { .. } = options.action {
        if options.name.is_none() {
            return Err(Error::usage(
                "--allow needs --name NAME (the standby's name)",
            ));
        }
    }
    let mut admin = target::Admin::connect(options.admin_conn.as_deref(), port).await?;
    let mut report = Report {
        action: options.action.name(),
        ..Report::default()
    };
    match (&options.action, app) {
        (Action::Init, Some(app)) => {
            init::init(options, &app, &mut admin, ask, &mut report).await?
        }
        (Action::Allow { cidr, sync }, Some(app)) => {
            let name = options.name.clone().unwrap_or_default();
            allow::allow(options, &app, &admin, &name, *cidr, *sync, &mut report).await?
        }
        (Action::Revoke { cidr, terminate }, Some(app)) => {
            allow::revoke(options, &app, &admin, *cidr, *terminate, &mut report).await?
        }
        (Action::Status, _) => status::status(&admin, &mut report).await?,
        (Action::PrintUrl, Some(app)) => url::print_url(&app, &admin, &mut report)?,
        (Action::CloneFrom { .. }, _) => unreachable!("handled above"),
        (_, None) => unreachable!("the application's connection is loaded for every other action"),
    }
    Ok(report)
}

/// Who is making the change, for the block's comments.
pub(crate) fn rule_comment() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let who: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        .take(64)
        .collect();
    format!("added {} by {who}", pgctl::os::utc_timestamp())
}

/// A pgctl error as an operation failure, keeping it as the cause.
pub(crate) fn pg(e: pgctl::error::Error) -> Error {
    Error::failed(e.to_string()).with_source(e)
}

/// Fails unless the server is a primary.
pub(crate) async fn require_primary(admin: &target::Admin, what: &str) -> Result<(), Error> {
    if pgctl::replication::is_in_recovery(admin.client())
        .await
        .map_err(pg)?
    {
        return Err(Error::refused_always(format!(
            "this server is a standby (in recovery); run {what} on the primary"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_names_must_make_slot_names() {
        assert!(validate_standby_name("node_b2").is_ok());
        for bad in ["Node", "node-b", "", "a b", "x';--", &"a".repeat(56)] {
            assert_eq!(
                validate_standby_name(bad).unwrap_err().kind(),
                crate::ErrorKind::Usage,
                "{bad}"
            );
        }
    }

    #[test]
    fn options_debug_shows_no_password() {
        let mut o = Options::new(Action::CloneFrom {
            uri: Secret("postgresql://r:s3cret@h/".into()),
        });
        o.conn = Some("postgresql://app:s3cret@h/db".into());
        o.admin_conn = Some("host=/x user=postgres password=s3cret".into());
        let text = format!("{o:?}");
        assert!(!text.contains("s3cret"), "{text}");
        // Every other field is still shown, the connection strings
        // without their passwords.
        for shown in ["admin_conn: Some(", "user=postgres", "progress: false"] {
            assert!(text.contains(shown), "{shown}: {text}");
        }
    }

    #[test]
    fn cidrs_with_host_bits_are_bad_input() {
        assert_eq!(
            parse_cidr("--allow", "10.0.0.2").unwrap().to_string(),
            "10.0.0.2/32"
        );
        assert_eq!(
            parse_cidr("--allow", "10.0.0.0/24").unwrap().to_string(),
            "10.0.0.0/24"
        );
        let e = parse_cidr("--allow", "10.0.0.1/24").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        assert!(e.to_string().contains("10.0.0.0/24"));
        assert!(parse_cidr("--allow", "10.0.0.300").is_err());
        assert!(parse_cidr("--allow", "10.0.0.1\nhost all all 0.0.0.0/0 trust").is_err());
    }

    #[test]
    fn default_name_is_a_valid_standby_name_or_empty() {
        let n = default_name();
        assert!(
            n.is_empty() || n.len() > 55 || validate_standby_name(&n).is_ok(),
            "{n}"
        );
    }
}
