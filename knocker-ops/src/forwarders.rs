//! `knocker forwarders`: the web node's `TrustedForwarders` in knocknoc.conf,
//! the balancers whose `X-Forwarded-For` Knocknoc believes. Knocknoc grants
//! network access by client address, so this list is security-relevant: it
//! should hold the balancers' addresses and nothing else.
//!
//! The file is edited through knocknoc-conf (every other byte kept), under a
//! lock, with a backup, atomically.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use knocknoc_conf::{Document, TrustedForwarders};
use serde::Serialize;

use crate::file_edit::{EditedFile, FileLock};
use crate::{Error, FileChange, Plan};

/// knocknoc.conf's usual place.
pub const DEFAULT_CONFIG: &str = "/opt/knocknoc/etc/knocknoc.conf";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Trust this network (CIDR or address).
    Add(String),
    /// Stop trusting it.
    Remove(String),
    /// Show the list.
    List,
}

/// `knocker forwarders` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The action.
    pub action: Action,
    /// knocknoc.conf.
    pub config: PathBuf,
    /// How long to wait for another run's lock.
    pub lock_timeout: Duration,
}

/// What was done (or found, for `--list`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always 1.
    pub version: u32,
    /// `add`, `remove` or `list`.
    pub action: &'static str,
    /// knocknoc.conf.
    pub file: PathBuf,
    /// Whether the file changed.
    pub changed: bool,
    /// One line for people.
    pub message: String,
    /// The trusted networks afterwards.
    pub forwarders: Vec<String>,
    /// The backup of the previous file.
    pub backup: Option<PathBuf>,
    /// Networks so wide that many hosts could claim to be a balancer.
    pub warnings: Vec<String>,
}

/// A checked change, holding the lock until applied or dropped.
#[derive(Debug)]
pub struct Prepared {
    plan: Plan,
    report: Report,
    file: EditedFile,
    old: Vec<u8>,
    new: Vec<u8>,
    _lock: Option<FileLock>,
}

/// Parses a `--add`/`--remove` argument.
pub fn parse_net(text: &str) -> Result<IpNet, Error> {
    crate::haproxy::input::check_token("the network", text)?;
    TrustedForwarders::parse_entry(text).map_err(|e| Error::usage(format!("{e}")))
}

/// The trusted networks of a knocknoc.conf text.
pub fn current(doc: &Document) -> Result<Vec<IpNet>, Error> {
    let settings = doc
        .settings()
        .map_err(|e| Error::refused_always(format!("knocknoc.conf has errors:\n{e}")))?;
    Ok(settings
        .trusted_forwarders
        .map(|t| t.nets().to_vec())
        .unwrap_or_default())
}

/// The document's bytes with `nets` as TrustedForwarders.
fn with_nets(doc: &Document, nets: Vec<IpNet>) -> Result<Vec<u8>, Error> {
    let mut doc = doc.clone();
    let forwarders = TrustedForwarders::new(nets)
        .map_err(|e| Error::usage(format!("TrustedForwarders: {e}")))?;
    doc.set_trusted_forwarders(&forwarders)
        .map_err(|e| Error::refused_always(format!("cannot set TrustedForwarders: {e}")))?;
    Ok(doc.to_bytes())
}

/// Checks the input, reads the file under its lock and computes the change.
pub fn prepare(options: &Options) -> Result<Prepared, Error> {
    let net = match &options.action {
        Action::Add(t) | Action::Remove(t) => Some(parse_net(t)?),
        Action::List => None,
    };
    let file = EditedFile::new(&options.config)
        .map_err(|e| Error::failed("cannot use knocknoc.conf").with_source(e))?;
    let lock = match options.action {
        Action::List => None,
        _ => Some(
            file.lock(options.lock_timeout)
                .map_err(|e| Error::failed("cannot lock knocknoc.conf").with_source(e))?,
        ),
    };
    let old = std::fs::read(file.path()).map_err(|e| {
        Error::failed(format!("cannot read {}", file.path().display())).with_source(e)
    })?;
    let doc = Document::parse(&old);
    let mut nets = current(&doc)?;
    let (action, message, new) = match (&options.action, net) {
        (Action::Add(_), Some(net)) => {
            if nets.contains(&net) {
                (
                    "add",
                    format!("{net} is already trusted: nothing to do"),
                    old.clone(),
                )
            } else {
                nets.push(net);
                let new = with_nets(&doc, nets.clone())?;
                ("add", format!("trusting forwarder {net}"), new)
            }
        }
        (Action::Remove(_), Some(net)) => {
            if !nets.contains(&net) {
                (
                    "remove",
                    format!("{net} is not trusted: nothing to do"),
                    old.clone(),
                )
            } else {
                nets.retain(|n| *n != net);
                let new = with_nets(&doc, nets.clone())?;
                ("remove", format!("no longer trusting forwarder {net}"), new)
            }
        }
        _ => ("list", String::new(), old.clone()),
    };
    if let (Action::Add(_), Some(net)) = (&options.action, net) {
        if net.prefix_len() == 0 {
            return Err(Error::refused_always(format!(
                "{net} would trust every client's X-Forwarded-For: anyone could claim any \
                 address, and Knocknoc grants access by address; give the balancers' addresses"
            )));
        }
    }
    let warnings = nets
        .iter()
        .filter(|n| n.prefix_len() < if n.addr().is_ipv4() { 24 } else { 64 })
        .map(|n| {
            format!(
                "{n} trusts {} addresses to set X-Forwarded-For; a balancer needs only its own \
                 (/32 or /128)",
                if n.addr().is_ipv4() {
                    format!("{}", 1u64 << (32 - n.prefix_len()))
                } else {
                    format!("2^{}", 128 - n.prefix_len())
                }
            )
        })
        .collect();
    let mut plan = Plan::default();
    plan.files.push(FileChange::new(file.path(), &old, &new));
    let report = Report {
        version: 1,
        action,
        file: file.path().to_path_buf(),
        changed: old != new,
        message,
        forwarders: nets.iter().map(ToString::to_string).collect(),
        backup: None,
        warnings,
    };
    Ok(Prepared {
        plan,
        report,
        file,
        old,
        new,
        _lock: lock,
    })
}

impl Prepared {
    /// What `--dry-run` prints.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The report as it stands before apply (warnings included).
    pub fn preview(&self) -> &Report {
        &self.report
    }

    /// Backs up and replaces the file (when it changes).
    pub fn apply(mut self) -> Result<Report, Error> {
        if self.old != self.new {
            self.report.backup = Some(write_with_backup(&self.file, &self.old, &self.new)?);
        }
        Ok(self.report)
    }
}

/// Backup then atomic replace; returns the backup.
fn write_with_backup(file: &EditedFile, old: &[u8], new: &[u8]) -> Result<PathBuf, Error> {
    let backup = file.backup(old).map_err(|e| {
        Error::failed(format!("cannot back up {}", file.path().display())).with_source(e)
    })?;
    file.replace(new, knocknoc_conf::NEW_FILE_MODE)
        .map_err(|e| {
            Error::failed(format!("cannot write {}", file.path().display())).with_source(e)
        })?;
    Ok(backup)
}

/// For `knocker haproxy` on a host that is itself a web node: the change
/// that makes `balancer` trusted in knocknoc.conf at `config`, if any, and
/// the networks trusted beyond `balancers`.
pub fn local_fix(
    config: &Path,
    balancer: IpNet,
    balancers: &[IpNet],
) -> Result<Option<(FileChange, Vec<IpNet>)>, Error> {
    let old = match std::fs::read(config) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::failed(format!("cannot read {}", config.display())).with_source(e))
        }
    };
    let doc = Document::parse(&old);
    let mut nets = current(&doc)?;
    let new = if nets.contains(&balancer) {
        old.clone()
    } else {
        nets.push(balancer);
        with_nets(&doc, nets.clone())?
    };
    let extra = nets
        .into_iter()
        .filter(|n| !balancers.contains(n) && *n != balancer)
        .collect();
    Ok(Some((FileChange::new(config, &old, &new), extra)))
}

/// Writes a change computed by [`local_fix`] under the file's lock.
pub fn apply_change(change: &FileChange, lock_timeout: Duration) -> Result<PathBuf, Error> {
    let file = EditedFile::new(&change.path)
        .map_err(|e| Error::failed("cannot use knocknoc.conf").with_source(e))?;
    let _lock = file
        .lock(lock_timeout)
        .map_err(|e| Error::failed("cannot lock knocknoc.conf").with_source(e))?;
    let now = std::fs::read(file.path()).map_err(|e| {
        Error::failed(format!("cannot read {}", file.path().display())).with_source(e)
    })?;
    if now != change.old {
        return Err(Error::failed(format!(
            "{} changed while knocker was working; run it again",
            file.path().display()
        )));
    }
    write_with_backup(&file, &change.old, &change.new)
}
