//! `knocker haproxy` and `knocker forwarders`: arguments to
//! `knocker_ops::haproxy` / `knocker_ops::forwarders` options, reports to
//! text or JSON, errors to exit codes. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use knocker_ops::haproxy::{self, Action, Options};
use knocker_ops::{forwarders, Error, Plan};

use crate::flags::{self, ConsentFlags, ReportFlags};
use crate::output;

const HAPROXY_EXAMPLES: &str = "\
Examples:
  sudo knocker haproxy --init --cert /etc/haproxy/knocknoc.pem
  sudo knocker haproxy --add 10.0.0.5
  sudo knocker haproxy --add 10.0.0.6:8756 --dry-run
  sudo knocker haproxy --drain 10.0.0.5
  sudo knocker haproxy --list --json

Exit status: 0 done (or nothing to do), 1 failed or refused (nothing changed, or
rolled back), 2 bad usage or input (nothing touched).";

/// What `knocker haproxy`'s shared flags (flags.rs) say in its help.
pub(crate) const HAPROXY_OWN_HELP: flags::OwnHelp = &[
    (
        "dry_run",
        "Print the exact diff and commands; change nothing",
    ),
    ("yes", "Do not ask before --deinit"),
    ("force", "Edit a file managed by configuration management"),
];

/// Arguments of `knocker haproxy`.
#[derive(Debug, Args)]
#[command(
    about = "The HAProxy load balancer in front of the Knocknoc web nodes: one frontend and \
             one backend in a managed block of haproxy.cfg",
    override_usage = "knocker haproxy [--init | --add <IP[:PORT]> | --remove <IP[:PORT]> | --list | --drain <IP[:PORT]> | --undrain <IP[:PORT]> | --deinit]",
    after_help = HAPROXY_EXAMPLES,
    group(ArgGroup::new("action").required(true).args(["init", "add", "remove", "list", "drain", "undrain", "deinit"])),
    mut_args(flags::own_help(HAPROXY_OWN_HELP)),
)]
pub struct HaproxyArgs {
    /// Create the frontend and backend (or change their settings)
    #[arg(long)]
    init: bool,
    /// Add a web node (port 8756 unless given)
    #[arg(long, value_name = "IP[:PORT]")]
    add: Option<String>,
    /// Remove a web node
    #[arg(long, value_name = "IP[:PORT]")]
    remove: Option<String>,
    /// Show each node with its state as HAProxy sees it and its sessions
    #[arg(long)]
    list: bool,
    /// Take a node out live (pinned clients stay); kept across reloads
    #[arg(long, value_name = "IP[:PORT]")]
    drain: Option<String>,
    /// Put a drained node back
    #[arg(long, value_name = "IP[:PORT]")]
    undrain: Option<String>,
    /// Remove knocker's frontend and backend
    #[arg(long)]
    deinit: bool,
    /// The HAProxy configuration file
    #[arg(long, value_name = "PATH", default_value = haproxy::DEFAULT_CONFIG)]
    haproxy_config: PathBuf,
    /// Where clients connect [default: 0.0.0.0:443]
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
    /// Terminate TLS with this PEM (certificate and key); HTTP on port 80 is redirected
    #[arg(long, value_name = "PEM", conflicts_with = "plain_http")]
    cert: Option<PathBuf>,
    /// Serve plain HTTP (no TLS)
    #[arg(long)]
    plain_http: bool,
    /// The running HAProxy's master CLI socket [default: found from the service]
    #[arg(long, value_name = "PATH")]
    master_socket: Option<PathBuf>,
    /// Health check request path, expecting 200-399 [default: /]
    #[arg(long, value_name = "PATH")]
    check_path: Option<String>,
    /// Name of the persistence cookie [default: KNOCKER_NODE]
    #[arg(long, value_name = "NAME")]
    cookie: Option<String>,
    /// This host's knocknoc.conf (its TrustedForwarders is fixed when a node is local)
    #[arg(long, value_name = "PATH", default_value = forwarders::DEFAULT_CONFIG)]
    knocknoc_config: PathBuf,
    #[command(flatten)]
    report: ReportFlags,
    #[command(flatten)]
    consent: ConsentFlags,
    /// Write the file but do not reload HAProxy
    #[arg(long)]
    no_reload: bool,
}

/// What `knocker forwarders`' shared flags (flags.rs) say in its help.
pub(crate) const FORWARDERS_OWN_HELP: flags::OwnHelp =
    &[("dry_run", "Print the exact diff; change nothing")];

/// Arguments of `knocker forwarders`.
#[derive(Debug, Args)]
#[command(
    about = "The reverse proxies this web node trusts for X-Forwarded-For (TrustedForwarders \
             in knocknoc.conf)",
    override_usage = "knocker forwarders [--add <CIDR> | --remove <CIDR> | --list] [--config PATH]",
    group(ArgGroup::new("action").required(true).args(["add", "remove", "list"])),
    mut_args(flags::own_help(FORWARDERS_OWN_HELP)),
)]
pub struct ForwardersArgs {
    /// Trust a balancer (CIDR or address)
    #[arg(long, value_name = "CIDR")]
    add: Option<String>,
    /// Stop trusting it
    #[arg(long, value_name = "CIDR")]
    remove: Option<String>,
    /// List the trusted networks
    #[arg(long)]
    list: bool,
    /// knocknoc.conf
    #[arg(long, value_name = "PATH", default_value = forwarders::DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(flatten)]
    report: ReportFlags,
}

const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `knocker haproxy`.
pub fn run(args: &HaproxyArgs) -> ExitCode {
    let action = if args.init {
        Action::Init
    } else if let Some(a) = &args.add {
        Action::Add(a.clone())
    } else if let Some(a) = &args.remove {
        Action::Remove(a.clone())
    } else if let Some(a) = &args.drain {
        Action::Drain(a.clone())
    } else if let Some(a) = &args.undrain {
        Action::Undrain(a.clone())
    } else if args.deinit {
        Action::Deinit
    } else {
        Action::List
    };
    let options = Options {
        action: action.clone(),
        haproxy_config: args.haproxy_config.clone(),
        bind: args.bind.clone(),
        cert: args.cert.clone(),
        plain_http: args.plain_http,
        master_socket: args.master_socket.clone(),
        check_path: args.check_path.clone(),
        cookie: args.cookie.clone(),
        knocknoc_config: args.knocknoc_config.clone(),
        force: args.consent.force,
        no_reload: args.no_reload,
        lock_timeout: LOCK_TIMEOUT,
    };
    let result = if action == Action::List {
        haproxy::list(&options).map(Some)
    } else {
        haproxy::prepare(&options).and_then(|prepared| {
            if args.report.dry_run {
                let preview = prepared.preview();
                if args.report.json {
                    output::print_json(
                        &serde_json::json!({
                            "dry_run": true,
                            "plan": prepared.plan(),
                            "forwarders": preview.forwarders,
                            "warnings": preview.warnings,
                        }),
                        &[],
                    );
                } else {
                    print_plan(prepared.plan(), false);
                    print_hints(preview);
                    for w in &preview.warnings {
                        eprintln!("knocker haproxy: warning: {w}");
                    }
                }
                return Ok(None);
            }
            if action == Action::Deinit
                && !args.consent.yes
                && !output::confirm(
                    "Remove knocker's HAProxy frontend and backend (clients lose the service)?",
                    true,
                )
            {
                return Err(Error::usage("not confirmed; nothing changed"));
            }
            prepared.apply().map(Some)
        })
    };
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(report)) => output::print_report(&report, args.report.json, &[], print_haproxy),
        Err(e) => output::fail("haproxy", &e, args.report.json),
    }
}

/// Runs `knocker forwarders`.
pub fn run_forwarders(args: &ForwardersArgs) -> ExitCode {
    let action = match (&args.add, &args.remove) {
        (Some(a), _) => forwarders::Action::Add(a.clone()),
        (_, Some(r)) => forwarders::Action::Remove(r.clone()),
        _ => forwarders::Action::List,
    };
    let options = forwarders::Options {
        action,
        config: args.config.clone(),
        lock_timeout: LOCK_TIMEOUT,
    };
    let result = forwarders::prepare(&options).and_then(|prepared| {
        if args.report.dry_run {
            print_plan(prepared.plan(), args.report.json);
            if !args.report.json {
                for w in &prepared.preview().warnings {
                    eprintln!("knocker forwarders: warning: {w}");
                }
            }
            Ok(None)
        } else {
            prepared.apply().map(Some)
        }
    });
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(report)) => {
            if args.report.json {
                output::print_json(&report, &[]);
            } else if report.action == "list" {
                for net in &report.forwarders {
                    println!("{net}");
                }
            } else {
                println!("{}", report.message);
                if let Some(b) = &report.backup {
                    println!("backup: {}", b.display());
                }
                if report.changed {
                    println!("restart Knocknoc for it to take effect");
                }
            }
            if !args.report.json {
                for w in &report.warnings {
                    eprintln!("knocker forwarders: warning: {w}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => output::fail("forwarders", &e, args.report.json),
    }
}

fn print_plan(plan: &Plan, json: bool) {
    if json {
        output::print_json(&serde_json::json!({"dry_run": true, "plan": plan}), &[]);
    } else {
        print!("{plan}");
        if plan.is_empty() {
            println!("nothing to change");
        }
        eprintln!("(dry run: nothing changed)");
    }
}

fn print_haproxy(report: &haproxy::Report) {
    if report.action == "list" {
        println!("{:<28} {:<34} {:<10} SESSIONS", "NODE", "SERVER", "STATE");
        for n in &report.nodes {
            println!(
                "{:<28} {:<34} {:<10} {}",
                n.node.addr.to_string(),
                n.node.name,
                n.state.as_deref().unwrap_or("?"),
                n.sessions
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into())
            );
        }
    } else {
        println!("{}", report.message);
        if let Some(b) = &report.backup {
            println!("backup: {}", b.display());
        }
        if let Some(r) = &report.reload {
            println!(
                "reloaded: new worker {} (was {:?}), confirmed in {:.2} s",
                r.new_worker, r.old_workers, r.seconds
            );
        }
        if let Some(why) = &report.reload_skipped {
            println!("not reloaded: {why}");
        }
        for c in &report.runtime {
            println!("runtime: {c}");
        }
        print_hints(report);
    }
    for w in &report.warnings {
        eprintln!("knocker haproxy: warning: {w}");
    }
}

/// The TrustedForwarders each added node needs.
fn print_hints(report: &haproxy::Report) {
    for hint in &report.forwarders {
        match &hint.command {
            Some(command) => println!(
                "on web node {} (HAProxy reaches it from {}), run: {command}",
                hint.node.ip(),
                hint.balancer
            ),
            None => println!(
                "web node {} is this host: its TrustedForwarders needs {}{}",
                hint.node,
                hint.balancer,
                report
                    .knocknoc_conf_backup
                    .as_ref()
                    .map(|b| format!(" (updated; backup {})", b.display()))
                    .unwrap_or_default()
            ),
        }
    }
}
