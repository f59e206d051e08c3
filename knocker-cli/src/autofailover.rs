//! `knocker autofailover`: arguments to [`knocker_ops::autofailover::Options`],
//! the report to text or JSON, errors to exit codes. The work is in
//! knocker-ops (docs/ARCHITECTURE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use knocker_ops::autofailover::{self, Action, Options, Report, Secret};
use knocker_ops::Error;

use crate::flags::{self, ConsentFlags, NodeFlags, ReportFlags};
use crate::output;

const ABOUT: &str = "Automated failover by pg_auto_failover: create the monitor on a third host \
(--monitor-init; prints the monitor URI once), hand this node to the formation (--enroll, on the primary first, then on each standby cloned by knocker replica), show the \
formation (--status), and take the node back to manual mode (--disable).";

const EXAMPLES: &str = "\
Examples:
  sudo knocker autofailover --monitor-init --address 203.0.113.9 --ssl-ca /etc/ssl/ca.crt \
      --ssl-cert /etc/ssl/monitor.crt --ssl-key /etc/ssl/private/monitor.key [--allow 203.0.113.0/24]
  sudo knocker autofailover --enroll --monitor 'postgres://autoctl_node:...@203.0.113.9:5432/pg_auto_failover?sslmode=verify-full&sslrootcert=/etc/ssl/ca.crt'
  sudo knocker autofailover --status [--json]
  sudo knocker autofailover --disable

Where systemd runs, --monitor-init and --enroll write, enable and start a unit for the monitor or
the keeper (JSON key \"service\": its name and path; --disable removes a keeper's unit). Without
systemd it is not started: they print the command that runs it (JSON key \"supervise\");
PostgreSQL stays stopped until it runs.

Exit status: 0 done (or nothing to do), 1 failed or refused (nothing changed), 2 bad usage or input.";

/// What this command's shared flags (flags.rs) say in its help.
pub(crate) const OWN_HELP: flags::OwnHelp = &[
    ("cluster", "The Debian cluster on this host"),
    (
        "name",
        "This node's name in the formation (default: the host name)",
    ),
    ("yes", "Do not ask before stopping PostgreSQL"),
];

/// Arguments of `knocker autofailover`.
#[derive(Debug, Args)]
#[command(
    about = ABOUT,
    after_help = EXAMPLES,
    group(ArgGroup::new("action").args(["monitor_init", "enroll", "status", "disable"])),
    mut_args(flags::own_help(OWN_HELP)),
)]
pub struct AutofailoverArgs {
    /// Create the pg_auto_failover monitor on this (third) host and print its URI once
    #[arg(long)]
    monitor_init: bool,
    /// --monitor-init: the monitor's data directory (new or empty; its parent belongs to the
    /// PostgreSQL user, who runs the monitor) [default: /var/lib/postgresql/15/monitor]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// --monitor-init: the monitor's port [default: 5432]
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// --monitor-init: the name or address the nodes reach the monitor at (the server
    /// certificate must name it; default: this host's address)
    #[arg(long, value_name = "HOST")]
    address: Option<String>,
    /// --monitor-init: the formation's CA certificate (the keepers verify the monitor with it)
    #[arg(long, value_name = "FILE")]
    ssl_ca: Option<PathBuf>,
    /// --monitor-init: the monitor's server certificate (signed by that CA)
    #[arg(long, value_name = "FILE")]
    ssl_cert: Option<PathBuf>,
    /// --monitor-init: its private key (owned by the PostgreSQL user, mode 0600)
    #[arg(long, value_name = "FILE")]
    ssl_key: Option<PathBuf>,
    /// --monitor-init: an address or CIDR the nodes connect from (repeat; default: samenet)
    #[arg(long, value_name = "CIDR")]
    allow: Vec<String>,
    /// Hand this node (running primary, or standby cloned by knocker replica) to pg_auto_failover
    #[arg(long, requires = "monitor")]
    enroll: bool,
    /// The formation's nodes, states, roles, health and the web nodes' connection string
    #[arg(long)]
    status: bool,
    /// Back to knocker's manual mode, nothing lost (the node leaves the formation)
    #[arg(long)]
    disable: bool,
    /// The monitor URI --monitor-init printed (it carries the formation's password)
    #[arg(long, value_name = "URI")]
    monitor: Option<String>,
    #[command(flatten)]
    node: NodeFlags,
    #[command(flatten)]
    report: ReportFlags,
    #[command(flatten)]
    consent: ConsentFlags,
}

fn options(args: &AutofailoverArgs) -> Result<Option<Options>, Error> {
    let monitor = args.monitor.clone().map(Secret);
    let init_flags_given = args.data_dir.is_some()
        || args.port.is_some()
        || args.address.is_some()
        || args.ssl_ca.is_some()
        || args.ssl_cert.is_some()
        || args.ssl_key.is_some()
        || !args.allow.is_empty();
    if init_flags_given && !args.monitor_init {
        return Err(Error::usage(
            "--data-dir, --port, --address, --ssl-ca, --ssl-cert, --ssl-key and --allow go with --monitor-init",
        ));
    }
    let action = if args.monitor_init {
        if args.monitor.is_some() {
            return Err(Error::usage(
                "--monitor-init takes no --monitor (it creates the monitor and prints its URI)",
            ));
        }
        Action::MonitorInit(autofailover::MonitorInit {
            data_dir: args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(autofailover::DEFAULT_DATA_DIR)),
            port: args.port.unwrap_or(5432),
            address: args.address.clone(),
            ssl_ca: args.ssl_ca.clone(),
            ssl_cert: args.ssl_cert.clone(),
            ssl_key: args.ssl_key.clone(),
            allow: args.allow.clone(),
        })
    } else if args.enroll {
        Action::Enroll {
            monitor: monitor.ok_or_else(|| Error::usage("--enroll needs --monitor URI"))?,
        }
    } else if args.disable {
        if args.monitor.is_some() {
            return Err(Error::usage(
                "--disable takes no --monitor (the node's own configuration names it)",
            ));
        }
        Action::Disable
    } else if args.status {
        Action::Status { monitor }
    } else {
        return Ok(None);
    };
    Ok(Some(Options {
        action,
        config: args.node.config.clone(),
        conn: args.node.conn.clone(),
        admin_conn: args.node.admin_conn.clone(),
        cluster: args.node.cluster.clone(),
        name: args.node.name.clone(),
        dry_run: args.report.dry_run,
        force: args.consent.force,
    }))
}

/// Runs `knocker autofailover`.
pub fn run(args: &AutofailoverArgs) -> ExitCode {
    let opts = match options(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{ABOUT}\n\nUsage: knocker autofailover [--monitor-init | --enroll --monitor URI | --status [--monitor URI] | --disable]\n\n{EXAMPLES}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(args.report.json, &e),
    };
    let yes = args.consent.yes;
    // Stopping a primary is never done without a yes: with no terminal to
    // ask, --yes is required.
    let mut ask = move |question: &str| yes || output::confirm(question, false);
    match output::block_on(autofailover::run(&opts, &mut ask)) {
        Ok(report) => {
            let plan = match &report {
                Report::MonitorInit(r) => r.plan.as_ref(),
                Report::Enroll(r) => r.plan.as_ref(),
                Report::Disable(r) => r.plan.as_ref(),
                Report::Status(_) => None,
            };
            let dry_run_text = plan.map(|p| ("dry_run_text", p.to_string().into()));
            output::print_report(
                &report,
                args.report.json,
                dry_run_text.as_slice(),
                print_text,
            )
        }
        Err(e) => fail(args.report.json, &e),
    }
}

/// As every command's failure, and the `--yes` hint when a question could
/// not be asked.
fn fail(json: bool, e: &Error) -> ExitCode {
    let code = output::fail("autofailover", e, json);
    if e.to_string().contains("was not confirmed") {
        eprintln!("Add --yes to confirm without a terminal.");
    }
    code
}

fn print_text(report: &Report) {
    match report {
        Report::MonitorInit(r) => {
            // The secret first, once.
            if let Some(url) = &r.monitor_url {
                println!(
                    "Monitor URI (shown once; give it to --enroll on each node):\n  {}",
                    url.0
                );
            }
            if let Some(plan) = &r.plan {
                print!("{plan}");
            }
            for d in &r.done {
                println!("{d}");
            }
            println!(
                "monitor at {}:{} ({}), keepers connect with sslmode={}",
                r.address,
                r.port,
                r.data_dir.display(),
                r.sslmode
            );
            if let Some(unit) = &r.service {
                println!("the monitor runs under systemd: {unit}");
            }
            if let Some(s) = &r.supervise {
                println!(
                    "Run the monitor (foreground, supervised) with:\n  {}",
                    knocker_ops::plan::shell_words(s)
                );
            }
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
        }
        Report::Enroll(r) => {
            if let Some(plan) = &r.plan {
                print!("{plan}");
            }
            for d in &r.done {
                println!("{d}");
            }
            if let Some(unit) = &r.service {
                println!("the keeper runs under systemd: {unit}");
            }
            if let Some(s) = &r.supervise {
                println!(
                    "Run the keeper (foreground, supervised) with:\n  {}",
                    knocker_ops::plan::shell_words(s)
                );
            }
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
        }
        Report::Disable(r) => {
            if let Some(plan) = &r.plan {
                print!("{plan}");
            }
            for d in &r.done {
                println!("{d}");
            }
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
        }
        Report::Status(s) => {
            println!(
                "{:<16} {:<22} {:<10} {:<8} {:<9} address",
                "node", "state", "role", "healthy", "lsn"
            );
            for n in &s.nodes {
                let state = if n.state == n.assigned_state {
                    n.state.clone()
                } else {
                    format!("{} -> {}", n.state, n.assigned_state)
                };
                println!(
                    "{:<16} {:<22} {:<10} {:<8} {:<9} {}:{}",
                    n.name,
                    state,
                    n.role,
                    if n.healthy { "yes" } else { "NO" },
                    n.reported_lsn,
                    n.host,
                    n.port
                );
            }
            if let Some(f) = &s.last_failover {
                println!(
                    "last failover: {} promoted at {}, writable at {}",
                    f.node,
                    f.started_at,
                    f.writable_at.as_deref().unwrap_or("-")
                );
            }
            println!(
                "web nodes' connection string (add user and password):\n  {}",
                s.multi_host_url
            );
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
        }
    }
}
