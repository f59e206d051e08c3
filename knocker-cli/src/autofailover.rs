//! `knocker autofailover`: arguments to [`knocker_ops::autofailover::Options`],
//! the report to text or JSON, errors to exit codes. The work is in
//! knocker-ops (docs/ARCHITECTURE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use knocker_ops::autofailover::{self, Action, Options, Report, Secret};
use knocker_ops::Error;

use crate::output;

const ABOUT: &str = "Automated failover by pg_auto_failover: hand this node to the formation \
(--enroll, on the primary first, then on each standby cloned by knocker replica), show the \
formation (--status), and take the node back to manual mode (--disable).";

const EXAMPLES: &str = "\
Examples:
  sudo knocker autofailover --enroll --monitor 'postgres://autoctl_node:...@203.0.113.9:5432/pg_auto_failover?sslmode=verify-full&sslrootcert=/etc/ssl/ca.crt'
  sudo knocker autofailover --status [--json]
  sudo knocker autofailover --disable

Without systemd the keeper is not started: --enroll prints the command that runs it
(JSON key \"supervise\"); PostgreSQL stays stopped until it runs.

Exit status: 0 done (or nothing to do), 1 failed or refused (nothing changed), 2 bad usage or input.";

/// Arguments of `knocker autofailover`.
#[derive(Debug, Args)]
#[command(
    about = ABOUT,
    after_help = EXAMPLES,
    group(ArgGroup::new("action").args(["enroll", "status", "disable"]))
)]
pub struct AutofailoverArgs {
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
    /// knocknoc.conf to read the application's connection string from
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/opt/knocknoc/etc/knocknoc.conf"
    )]
    config: PathBuf,
    /// The application's connection string (default: from knocknoc.conf)
    #[arg(long, value_name = "URI")]
    conn: Option<String>,
    /// Superuser connection string (default: peer login as `postgres` over the unix socket)
    #[arg(long, value_name = "URI")]
    admin_conn: Option<String>,
    /// The Debian cluster on this host
    #[arg(long, value_name = "VERSION/NAME")]
    cluster: Option<String>,
    /// This node's name in the formation (default: the host name)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Print what would change (diff, SQL, commands); change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object ("version": 1)
    #[arg(long)]
    json: bool,
    /// Do not ask before stopping PostgreSQL
    #[arg(long, short = 'y')]
    yes: bool,
    /// Pass a safety check that names --force
    #[arg(long)]
    force: bool,
}

fn options(args: &AutofailoverArgs) -> Result<Option<Options>, Error> {
    let monitor = args.monitor.clone().map(Secret);
    let action = if args.enroll {
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
        config: args.config.clone(),
        conn: args.conn.clone(),
        admin_conn: args.admin_conn.clone(),
        cluster: args.cluster.clone(),
        name: args.name.clone(),
        dry_run: args.dry_run,
        force: args.force,
    }))
}

/// Runs `knocker autofailover`.
pub fn run(args: &AutofailoverArgs) -> ExitCode {
    let opts = match options(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{ABOUT}\n\nUsage: knocker autofailover [--enroll --monitor URI | --status [--monitor URI] | --disable]\n\n{EXAMPLES}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(args.json, &e),
    };
    let yes = args.yes;
    // Stopping a primary is never done without a yes: with no terminal to
    // ask, --yes is required.
    let mut ask = move |question: &str| yes || output::confirm(question, false);
    match output::block_on(autofailover::run(&opts, &mut ask)) {
        Ok(report) => {
            if args.json {
                let plan = match &report {
                    Report::Enroll(r) => r.plan.as_ref(),
                    Report::Disable(r) => r.plan.as_ref(),
                    Report::Status(_) => None,
                };
                let dry_run_text = plan.map(|p| ("dry_run_text", p.to_string().into()));
                output::print_json(&report, dry_run_text.as_slice());
            } else {
                print_text(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(args.json, &e),
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
        Report::Enroll(r) => {
            if let Some(plan) = &r.plan {
                print!("{plan}");
            }
            for d in &r.done {
                println!("{d}");
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
