//! `knocker haproxy`: the load balancer in front of the web nodes.
//!
//! knocker owns one managed block of haproxy.cfg ([`block`]); every other
//! byte stays (Knocknoc's agent edits the same file). A change is:
//! input checked (exit 2, nothing touched); the file locked; a file managed
//! by configuration management refused without force; the frontend's bind
//! address and port checked ([`bind_check`], what `haproxy -c` cannot see);
//! the candidate written next to the file and checked by `haproxy -c` with
//! the running master's own arguments; a backup; the checked candidate
//! renamed over the file; a reload (systemd where it runs, else the master
//! CLI); and the reload confirmed on the master CLI (`show proc` shows a new
//! worker), else the backup restored and reloaded again. See
//! docs/ARCHITECTURE.md.

pub mod bind_check;
pub mod block;
pub mod input;
pub mod runtime;
pub mod service;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::file_edit::{Candidate, EditedFile, FileLock};
use crate::plan::shell_words;
use crate::{forwarders, Error, FileChange, Plan};
use block::{Block, Node, Settings, Tls, BACKEND};
use runtime::ServerStat;
use service::{Reload, Service};

/// haproxy.cfg's usual place.
pub const DEFAULT_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
/// The frontend's default address.
pub const DEFAULT_BIND: &str = "0.0.0.0:443";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create (or update the settings of) the frontend and backend.
    Init,
    /// Add a web node (`IP[:PORT]`).
    Add(String),
    /// Remove a web node.
    Remove(String),
    /// Show each node with HAProxy's view of it.
    List,
    /// Take a node out live, keeping pinned clients; recorded in the file.
    Drain(String),
    /// Put a drained node back.
    Undrain(String),
    /// Remove the block.
    Deinit,
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Init => "init",
            Action::Add(_) => "add",
            Action::Remove(_) => "remove",
            Action::List => "list",
            Action::Drain(_) => "drain",
            Action::Undrain(_) => "undrain",
            Action::Deinit => "deinit",
        }
    }
}

/// `knocker haproxy` options (what the operator typed, unchecked).
#[derive(Debug, Clone)]
pub struct Options {
    /// The action.
    pub action: Action,
    /// haproxy.cfg.
    pub haproxy_config: PathBuf,
    /// `--bind ADDR:PORT` (default 0.0.0.0:443, or the block's).
    pub bind: Option<String>,
    /// `--cert PEM`.
    pub cert: Option<PathBuf>,
    /// `--plain-http`.
    pub plain_http: bool,
    /// The running HAProxy's master CLI (default: found from the service).
    pub master_socket: Option<PathBuf>,
    /// `--check-path` (default `/`).
    pub check_path: Option<String>,
    /// `--cookie` (default `KNOCKER_NODE`).
    pub cookie: Option<String>,
    /// This host's knocknoc.conf, whose TrustedForwarders is fixed when a
    /// web node is local.
    pub knocknoc_config: PathBuf,
    /// Pass the configuration-management check.
    pub force: bool,
    /// Write the file but leave the reload to the operator.
    pub no_reload: bool,
    /// How long to wait for another run's lock.
    pub lock_timeout: Duration,
}

impl Options {
    /// Options with the defaults for `action`.
    pub fn new(action: Action) -> Options {
        Options {
            action,
            haproxy_config: PathBuf::from(DEFAULT_CONFIG),
            bind: None,
            cert: None,
            plain_http: false,
            master_socket: None,
            check_path: None,
            cookie: None,
            knocknoc_config: PathBuf::from(forwarders::DEFAULT_CONFIG),
            force: false,
            no_reload: false,
            lock_timeout: Duration::from_secs(30),
        }
    }
}

/// What a web node needs in its TrustedForwarders.
#[derive(Debug, Clone, Serialize)]
pub struct ForwarderHint {
    /// The node.
    pub node: SocketAddr,
    /// The address HAProxy's connections to it come from, as a network.
    pub balancer: String,
    /// Whether the node is this host (its knocknoc.conf is fixed here).
    pub local: bool,
    /// The command to run on the node (remote nodes).
    pub command: Option<String>,
}

/// A node as HAProxy sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeState {
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`, ... (`null` when HAProxy is not
    /// running or does not know the node yet).
    pub state: Option<String>,
    /// Current sessions.
    pub sessions: Option<u64>,
}

/// What was done.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always 1.
    pub version: u32,
    /// The action's name.
    pub action: &'static str,
    /// haproxy.cfg.
    pub file: PathBuf,
    /// Whether haproxy.cfg changed.
    pub changed: bool,
    /// One line for people.
    pub message: String,
    /// The backup of the previous haproxy.cfg.
    pub backup: Option<PathBuf>,
    /// The confirmed reload.
    pub reload: Option<Reload>,
    /// Why there was no reload although the file changed.
    pub reload_skipped: Option<String>,
    /// Runtime API commands sent.
    pub runtime: Vec<String>,
    /// The settings afterwards (`null` after `--deinit`).
    pub settings: Option<Settings>,
    /// The nodes afterwards, with HAProxy's view for `--list`.
    pub nodes: Vec<NodeState>,
    /// TrustedForwarders each added node needs.
    pub forwarders: Vec<ForwarderHint>,
    /// The local knocknoc.conf's backup, when it was fixed.
    pub knocknoc_conf_backup: Option<PathBuf>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
}

/// A checked change, holding the lock until applied or dropped.
#[derive(Debug)]
pub struct Prepared {
    plan: Plan,
    report: Report,
    file: EditedFile,
    old: Vec<u8>,
    candidate: Option<Candidate>,
    service: Service,
    reload: bool,
    runtime: Vec<String>,
    block: Option<Block>,
    knocknoc_fix: Option<FileChange>,
    lock_timeout: Duration,
    _lock: Option<FileLock>,
}

fn read_config(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; is HAProxy installed? (sudo apt-get install haproxy)"
        } else {
            ""
        };
        Error::failed(format!("cannot read {}{hint}", path.display())).with_source(e)
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Error::refused_always(format!(
            "{} is not UTF-8 text; knocker edits only text files",
            path.display()
        ))
        .with_source(e)
    })
}

/// Signs that configuration management writes the whole file (its next run
/// would overwrite the block).
fn managed_by(text: &str) -> Option<String> {
    const TOOLS: [&str; 4] = ["ansible", "puppet", "chef", "salt"];
    const WORDS: [&str; 5] = [
        "managed",
        "generated",
        "overwritten",
        "do not edit",
        "don't edit",
    ];
    text.lines().enumerate().find_map(|(i, line)| {
        let comment = line.trim_start().strip_prefix('#')?.to_ascii_lowercase();
        if comment.contains("knocker") || !WORDS.iter().any(|w| comment.contains(w)) {
            return None;
        }
        let words: Vec<&str> = comment
            .split(|c: char| !c.is_ascii_alphanumeric())
            .collect();
        TOOLS
            .iter()
            .find(|t| words.contains(t))
            .map(|t| format!("line {}: {:?} ({t})", i + 1, line.trim()))
    })
}

/// The local address HAProxy's connections to `node` come from.
fn source_address(node: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match node {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().ok()?,
        SocketAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(node).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Whether `ip` is an address of this host.
fn is_local(ip: IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The shell command that sends `command` to the master CLI at `socket`
/// (what knocker does itself, for `--dry-run` and the operator).
pub fn master_cli_command(socket: &Path, command: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo {} | socat stdio UNIX-CONNECT:{}",
            shell_words(&[command.to_string()]),
            socket.display()
        ),
    ]
}

/// Checks the input, reads the file under its lock, builds the new block,
/// runs the checks and `haproxy -c`: everything but the change itself.
pub fn prepare(options: &Options) -> Result<Prepared, Error> {
    // Input first: bad input touches nothing, not even the lock file.
    let node_arg = match &options.action {
        Action::Add(t) | Action::Remove(t) | Action::Drain(t) | Action::Undrain(t) => {
            Some(input::parse_node(t)?)
        }
        _ => None,
    };
    let bind = options.bind.as_deref().map(input::parse_bind).transpose()?;
    if let Some(path) = &options.check_path {
        input::check_path(path)?;
    }
    if let Some(name) = &options.cookie {
        input::check_cookie(name)?;
    }
    input::check_file_path("--haproxy-config", &options.haproxy_config)?;
    if let Some(cert) = &options.cert {
        input::check_file_path("--cert", cert)?;
        if options.plain_http {
            return Err(Error::usage("--cert and --plain-http exclude each other"));
        }
    }
    let tls = match (&options.cert, options.plain_http) {
        (Some(cert), _) => Some(Tls::Cert(
            std::path::absolute(cert).unwrap_or_else(|_| cert.clone()),
        )),
        (None, true) => Some(Tls::PlainHttp),
        (None, false) => None,
    };

    let file = EditedFile::new(&options.haproxy_config)
        .map_err(|e| Error::failed("cannot use the HAProxy configuration").with_source(e))?;
    let lock =
        match options.action {
            Action::List => None,
            _ => Some(file.lock(options.lock_timeout).map_err(|e| {
                Error::failed("cannot lock the HAProxy configuration").with_source(e)
            })?),
        };
    let text = read_config(file.path())?;
    let span = block::find(&text)?;
    let current = span
        .map(|s| block::parse(&text[s.start..s.end]))
        .transpose()?;
    let service = Service::discover(file.path(), options.master_socket.as_deref())?;

    let mut warnings = Vec::new();
    let mut runtime = Vec::new();
    let node_name = node_arg.map(block::server_name);
    let runtime_target = |name: &str| format!("{BACKEND}/{name}");
    let (message, next): (String, Option<Block>) = match (&options.action, &current) {
        (Action::Init, _) => {
            let stored = current.as_ref().map(|b| &b.settings);
            let tls = tls
                .or_else(|| stored.map(|s| s.tls.clone()))
                .ok_or_else(|| Error::usage("--init needs --cert PEM (TLS) or --plain-http"))?;
            let settings = Settings {
                bind: bind
                    .or(stored.map(|s| s.bind))
                    .unwrap_or_else(|| DEFAULT_BIND.parse().expect("valid default")),
                tls,
                check_path: options
                    .check_path
                    .clone()
                    .or_else(|| stored.map(|s| s.check_path.clone()))
                    .unwrap_or_else(|| "/".into()),
                cookie: options
                    .cookie
                    .clone()
                    .or_else(|| stored.map(|s| s.cookie.clone()))
                    .unwrap_or_else(|| block::DEFAULT_COOKIE.into()),
            };
            let nodes = current
                .as_ref()
                .map(|b| b.nodes.clone())
                .unwrap_or_default();
            (
                format!(
                    "frontend {} on {} and backend {} with {} node(s)",
                    block::FRONTEND,
                    settings.bind,
                    BACKEND,
                    nodes.len()
                ),
                Some(Block { settings, nodes }),
            )
        }
        (Action::List, _) => (String::new(), current.clone()),
        (Action::Deinit, None) => ("no knocker haproxy block: nothing to do".into(), None),
        (Action::Deinit, Some(_)) => ("removed the knocker haproxy block".into(), None),
        (_, None) => {
            return Err(Error::refused_always(format!(
                "{} has no knocker haproxy block; run knocker haproxy --init first",
                file.path().display()
            )))
        }
        (action, Some(current)) => {
            let addr = node_arg.expect("node actions have an address");
            let mut next = current.clone();
            if bind.is_some()
                || tls.is_some()
                || options.check_path.is_some()
                || options.cookie.is_some()
            {
                return Err(Error::usage(
                    "--bind, --cert, --plain-http, --check-path and --cookie change the \
                     settings: use them with --init",
                ));
            }
            let message = match action {
                Action::Add(_) => {
                    if current.node(addr).is_some() {
                        format!("web node {addr} is already in the backend: nothing to do")
                    } else {
                        next.nodes.push(Node::new(addr));
                        format!("added web node {addr}")
                    }
                }
                Action::Remove(_) => {
                    if current.node(addr).is_none() {
                        format!("web node {addr} is not in the backend: nothing to do")
                    } else {
                        next.nodes.retain(|n| n.addr != addr);
                        format!("removed web node {addr}")
                    }
                }
                Action::Drain(_) | Action::Undrain(_) => {
                    let drain = matches!(action, Action::Drain(_));
                    let Some(node) = next.nodes.iter_mut().find(|n| n.addr == addr) else {
                        return Err(Error::refused_always(format!(
                            "web node {addr} is not in the backend (see knocker haproxy --list)"
                        )));
                    };
                    node.drained = drain;
                    let name = node_name.clone().unwrap_or_default();
                    if drain {
                        runtime.push(format!("set server {} state drain", runtime_target(&name)));
                    } else {
                        runtime.push(format!("set server {} state ready", runtime_target(&name)));
                        runtime.push(format!("set weight {} 1", runtime_target(&name)));
                    }
                    format!(
                        "{} web node {addr}",
                        if drain { "drained" } else { "undrained" }
                    )
                }
                _ => unreachable!("handled above"),
            };
            (message, Some(next))
        }
    };

    let new_text = match (&options.action, &next) {
        (Action::List, _) => text.clone(),
        (_, Some(b)) => block::splice(&text, span, Some(&b.render())),
        (_, None) => block::splice(&text, span, None),
    };
    let changed = new_text != text;
    let drains_live = matches!(options.action, Action::Drain(_) | Action::Undrain(_));
    // Nothing to write, but the running HAProxy may not have loaded the
    // file yet (a run killed between rename and reload, or --no-reload):
    // its backend's servers tell.
    let unloaded = !changed
        && !drains_live
        && !options.no_reload
        && !matches!(options.action, Action::List)
        && service.running()
        && running_differs(&service, next.as_ref());
    let mut plan = Plan::default();
    plan.files.push(FileChange::new(
        file.path(),
        text.as_bytes(),
        new_text.as_bytes(),
    ));

    if changed {
        if let Some(evidence) = managed_by(&text) {
            if !options.force {
                return Err(Error::refused(format!(
                    "{} is managed by configuration management ({evidence}); its next run \
                     would overwrite knocker's block: put the block in its template instead",
                    file.path().display()
                )));
            }
            warnings.push(format!(
                "{} is managed by configuration management ({evidence}); its next run may \
                 overwrite this change",
                file.path().display()
            ));
        }
    }

    // What haproxy -c cannot see: only for binds the running HAProxy does
    // not already have from the current block.
    if changed {
        if let Some(next) = &next {
            let had = current
                .as_ref()
                .map(|c| c.settings.binds())
                .unwrap_or_default();
            let block_range = span.map_or(0..0, |s| s.start..s.end);
            for bind in next.settings.binds() {
                bind_check::check_file(bind, &text, block_range.clone())?;
                if !had.contains(&bind) || !service.running() {
                    bind_check::check(bind, &service.pids(), &had)?;
                }
            }
        }
    }

    let mut candidate = None;
    if changed || unloaded {
        let written = file.candidate(new_text.as_bytes(), 0o644).map_err(|e| {
            Error::failed("cannot write the candidate configuration").with_source(e)
        })?;
        let check = service.check_command(file.path(), written.path());
        plan.commands.push(check.clone());
        service.check(&check)?;
        candidate = Some(written);
    }

    let reload = (changed || unloaded) && !drains_live && !options.no_reload && service.running();
    let reload_skipped = if changed && !drains_live && !reload {
        Some(if options.no_reload {
            "--no-reload: reload HAProxy yourself (systemctl reload haproxy)".to_string()
        } else {
            "HAProxy is not running: the configuration takes effect when it starts".to_string()
        })
    } else {
        None
    };
    if reload {
        if let Some(command) = service.reload_command() {
            plan.commands.push(command);
        }
    }
    if let (Some(master), true) = (&service.master, !options.no_reload) {
        if reload {
            // After a reload the new worker starts drained nodes at weight 0;
            // this also shows them as DRAIN.
            for node in next.iter().flat_map(|b| &b.nodes).filter(|n| n.drained) {
                if !runtime
                    .iter()
                    .any(|c| c.contains(&runtime_target(&node.name)))
                {
                    runtime.push(format!(
                        "set server {} state drain",
                        runtime_target(&node.name)
                    ));
                }
            }
        }
        for command in &runtime {
            plan.commands.push(master_cli_command(
                master.socket(),
                &format!("@1 {command}"),
            ));
        }
    } else if drains_live && !runtime.is_empty() {
        warnings.push(if options.no_reload {
            "--no-reload: HAProxy's running state was left alone; the file is updated".into()
        } else {
            "HAProxy is not running: the file is updated, the change takes effect when it starts"
                .into()
        });
        runtime.clear();
    }

    // TrustedForwarders for the nodes added (all nodes for --init).
    let mut hints = Vec::new();
    let mut knocknoc_fix = None;
    let hint_nodes: Vec<SocketAddr> = match (&options.action, &next) {
        (Action::Init, Some(b)) => b.nodes.iter().map(|n| n.addr).collect(),
        (Action::Add(_), _) => node_arg.into_iter().collect(),
        _ => Vec::new(),
    };
    for node in hint_nodes {
        let Some(source) = source_address(node) else {
            warnings.push(format!("no route to web node {node} from this host"));
            continue;
        };
        let balancer = IpNet::from(source);
        let local = is_local(node.ip());
        let command = (!local).then(|| format!("sudo knocker forwarders --add {balancer}"));
        if local && knocknoc_fix.is_none() {
            match forwarders::local_fix(&options.knocknoc_config, balancer, &[balancer])? {
                Some((change, extra)) => {
                    if !extra.is_empty() {
                        warnings.push(format!(
                            "{} trusts more than its balancer {balancer}: {}; remove what is \
                             not a balancer (knocker forwarders --remove CIDR)",
                            options.knocknoc_config.display(),
                            extra
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if change.changes() {
                        plan.files.push(change.clone());
                        knocknoc_fix = Some(change);
                    }
                }
                None => warnings.push(format!(
                    "web node {node} is this host but {} does not exist; its TrustedForwarders \
                     must hold {balancer}",
                    options.knocknoc_config.display()
                )),
            }
        }
        hints.push(ForwarderHint {
            node,
            balancer: balancer.to_string(),
            local,
            command,
        });
    }

    let nodes = next
        .iter()
        .flat_map(|b| b.nodes.iter().cloned())
        .map(|node| NodeState {
            node,
            state: None,
            sessions: None,
        })
        .collect();
    let report = Report {
        version: 1,
        action: options.action.name(),
        file: file.path().to_path_buf(),
        changed,
        message: if unloaded {
            format!("{message} (the running HAProxy had not loaded the file: reloading it)")
        } else if changed
            || drains_live
            || matches!(options.action, Action::List)
            || message.contains("nothing to do")
        {
            message
        } else {
            format!("{message}: already so, nothing to do")
        },
        backup: None,
        reload: None,
        reload_skipped,
        runtime: Vec::new(),
        settings: next.as_ref().map(|b| b.settings.clone()),
        nodes,
        forwarders: hints,
        knocknoc_conf_backup: None,
        warnings,
    };
    Ok(Prepared {
        plan,
        report,
        file,
        old: text.into_bytes(),
        candidate,
        service,
        reload,
        runtime,
        block: next,
        knocknoc_fix,
        lock_timeout: options.lock_timeout,
        _lock: lock,
    })
}

impl Prepared {
    /// What `--dry-run` prints: the diffs and the commands, exactly.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Carries the change out: backup, atomic replace, reload, confirm,
    /// Runtime API commands; rolls back on failure.
    pub fn apply(mut self) -> Result<Report, Error> {
        if let Some(candidate) = self.candidate.take() {
            let backup = self.file.backup(&self.old).map_err(|e| {
                Error::failed(format!("cannot back up {}", self.file.path().display()))
                    .with_source(e)
            })?;
            candidate.install(&self.file).map_err(|e| {
                Error::failed(format!("cannot replace {}", self.file.path().display()))
                    .with_source(e)
            })?;
            self.report.backup = Some(backup);
            if self.reload {
                match self.service.reload() {
                    Ok(reload) => self.report.reload = Some(reload),
                    Err(e) => return Err(self.roll_back(e)),
                }
            }
        }
        if let Some(master) = self.service.master.clone() {
            for command in &self.runtime {
                let answer = master.worker_command(command).map_err(|e| {
                    Error::failed(format!("cannot send {command:?} to HAProxy")).with_source(e)
                });
                let answer = match answer {
                    Ok(a) => a,
                    Err(e) => return Err(self.roll_back(e)),
                };
                if !answer.trim().is_empty() {
                    let e =
                        Error::failed(format!("HAProxy refused {command:?}: {}", answer.trim()));
                    return Err(self.roll_back(e));
                }
                self.report.runtime.push(command.clone());
            }
        }
        if let Some(change) = &self.knocknoc_fix {
            self.report.knocknoc_conf_backup =
                Some(forwarders::apply_change(change, self.lock_timeout)?);
        }
        Ok(self.report)
    }

    /// Puts the old file back (and reloads it when a reload was part of the
    /// change); returns the error to report.
    fn roll_back(&mut self, cause: Error) -> Error {
        if self.report.backup.is_none() {
            return cause;
        }
        let restored = self.file.replace(&self.old, 0o644);
        let reloaded = match (&restored, self.reload) {
            (Ok(()), true) => Some(self.service.reload()),
            _ => None,
        };
        let what = match (&restored, &reloaded) {
            (Err(e), _) => format!(
                "and restoring the previous file failed too ({e}); the backup is {}",
                self.report
                    .backup
                    .as_ref()
                    .map(|b| b.display().to_string())
                    .unwrap_or_default()
            ),
            (Ok(()), Some(Err(e))) => {
                format!("restored the previous file, but its reload was not confirmed either ({e})")
            }
            (Ok(()), Some(Ok(_))) => "restored the previous file and reloaded it".into(),
            (Ok(()), None) => "restored the previous file".into(),
        };
        let kind_msg = format!("{cause}; {what}");
        let mut error = Error::failed(kind_msg);
        if let Some(source) = std::error::Error::source(&cause) {
            error = error.with_source(std::io::Error::other(source.to_string()));
        }
        error
    }

    /// The report as it stands before apply (the TrustedForwarders hints and
    /// warnings that `--dry-run` shows too).
    pub fn preview(&self) -> &Report {
        &self.report
    }

    /// The block after the change.
    pub fn block(&self) -> Option<&Block> {
        self.block.as_ref()
    }
}

/// Whether the running worker's backend servers differ from the block's
/// nodes (no block: whether it still runs knocker's backend).
fn running_differs(service: &Service, block: Option<&Block>) -> bool {
    let Some(master) = &service.master else {
        return false;
    };
    let Ok(stats) = master.server_stats(BACKEND) else {
        return false;
    };
    let mut running: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
    let mut wanted: Vec<&str> = block
        .map(|b| b.nodes.iter().map(|n| n.name.as_str()).collect())
        .unwrap_or_default();
    running.sort_unstable();
    wanted.sort_unstable();
    // A block without nodes still has a backend, which `show stat` lists
    // only as BACKEND: compare servers only.
    running != wanted
}

/// `--list`: the block's nodes with HAProxy's view of each.
pub fn list(options: &Options) -> Result<Report, Error> {
    let mut options = options.clone();
    options.action = Action::List;
    let prepared = prepare(&options)?;
    let mut report = prepared.report;
    match &prepared.service.master {
        Some(master) => {
            let stats = master.server_stats(BACKEND).map_err(|e| {
                Error::failed(format!(
                    "cannot read the servers' state from {}",
                    master.socket().display()
                ))
                .with_source(e)
            })?;
            for node in &mut report.nodes {
                if let Some(stat) = stats.iter().find(|s| s.name == node.node.name) {
                    node.state = Some(state_name(stat));
                    node.sessions = Some(stat.sessions);
                }
            }
            for stat in stats
                .iter()
                .filter(|s| !report.nodes.iter().any(|n| n.node.name == s.name))
            {
                report.warnings.push(format!(
                    "HAProxy runs server {} which is not in the file (reload pending?)",
                    stat.name
                ));
            }
        }
        None => report
            .warnings
            .push("HAProxy is not running (no master CLI found): states unknown".into()),
    }
    Ok(report)
}

/// HAProxy's status, with a server at weight 0 (a drain recorded in the
/// file and loaded by a reload) shown as `DRAIN` like a runtime drain.
fn state_name(stat: &ServerStat) -> String {
    if stat.weight == 0 && stat.status.starts_with("UP") {
        "DRAIN".into()
    } else {
        stat.status.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_management_headers_are_recognised() {
        assert!(managed_by("# Ansible managed\nglobal\n").is_some());
        assert!(managed_by("# This file is managed by Puppet\n").is_some());
        assert!(managed_by("# Managed by knocker, mentions puppet\n").is_none());
        assert!(managed_by("# the salt of the earth\n").is_none());
    }
}
