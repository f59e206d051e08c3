//! `knocker failover`: arguments to [`knocker_ops::failover::Options`],
//! the report to text or JSON, errors to exit codes (docs/ARCHITECTURE.md).

use std::process::ExitCode;

use crate::flags::{self, ConsentFlags, ReportFlags};
use crate::output;
use clap::{ArgGroup, Args};
use knocker_ops::failover::{self, Action, Options, Report};

const ABOUT: &str = "Operator-run failover. --switchover (on the primary): fences it (read-only, \
sessions ended), waits until the standby has replayed everything, stops it cleanly, promotes the \
standby over the network and makes this node its standby; no acknowledged commit is lost. On a node \
enrolled in pg_auto_failover (knocker autofailover --enroll) it asks the monitor instead \
(pg_autoctl perform switchover) and reports the new primary. --promote (on the standby, the primary being gone): \
refuses while the primary still answers (unless --force), shows the last WAL received, asks, \
promotes, checkpoints and confirms writes. --fence (on an old primary): disables it in Debian's \
start.conf, makes it read-only if started anyway, and stops it. --rejoin URI (on a fenced old \
primary): pg_rewind from the new primary and start as its standby.";

/// What this command's shared flags (flags.rs) say in its help.
pub(crate) const OWN_HELP: flags::OwnHelp = &[
    ("dry_run", "Print what would run; change nothing"),
    ("yes", "Do not ask before promoting"),
    ("force", "Promote although the primary still answers"),
];

/// Arguments of `knocker failover`.
#[derive(Debug, Args)]
#[command(
    about = ABOUT,
    group(ArgGroup::new("action").args(["switchover", "promote", "fence", "rejoin"]).required(true)),
    mut_args(flags::own_help(OWN_HELP)),
)]
pub struct FailoverArgs {
    /// Hand the primary role to the streaming standby (run on the primary)
    #[arg(long)]
    switchover: bool,
    /// --switchover: the standby as HOST[:PORT] (default: the one streaming
    /// standby's address, this server's port)
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: Option<String>,
    /// Promote this standby (the primary is gone)
    #[arg(long)]
    promote: bool,
    /// Keep this old primary from coming back as a writable primary
    #[arg(long)]
    fence: bool,
    /// Rewind this fenced old primary from the new primary (URI: its replication
    /// connection string) and start it as a standby
    #[arg(long, value_name = "URI")]
    rejoin: Option<String>,
    /// --rejoin: when pg_rewind cannot rejoin this node, clone it afresh from the
    /// new primary (the old data directory is kept aside)
    #[arg(long)]
    reclone: bool,
    /// This node's name for --rejoin and --switchover (slot knocker_NAME; default: short host name)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Superuser connection string (default: peer login as `postgres` over the unix socket)
    #[arg(long, value_name = "URI")]
    admin_conn: Option<String>,
    /// The Debian cluster on this host (default: the only one)
    #[arg(long, value_name = "VERSION/NAME")]
    cluster: Option<String>,
    #[command(flatten)]
    report: ReportFlags,
    #[command(flatten)]
    consent: ConsentFlags,
}

/// Runs `knocker failover`.
pub fn run(args: &FailoverArgs) -> ExitCode {
    let opts = Options {
        action: if args.switchover {
            Action::Switchover
        } else if args.fence {
            Action::Fence
        } else if let Some(uri) = &args.rejoin {
            Action::Rejoin {
                uri: knocker_ops::replica::Secret(uri.clone()),
            }
        } else {
            Action::Promote
        },
        admin_conn: args.admin_conn.clone(),
        cluster: args.cluster.clone(),
        dry_run: args.report.dry_run,
        force: args.consent.force,
        peer: args.peer.clone(),
        reclone: args.reclone,
        name: args.name.clone().or_else(|| {
            args.rejoin
                .as_ref()
                .map(|_| knocker_ops::replica::default_name())
        }),
    };
    let yes = args.consent.yes;
    let mut ask = move |question: &str| -> bool {
        if yes {
            return true;
        }
        // Promoting can lose data and fencing stops the server: never
        // without a yes.
        let answer = output::confirm(question, false);
        if !answer && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            eprintln!("{question}\nNot a terminal: add --yes to go ahead.");
        }
        answer
    };
    match output::block_on(failover::run(&opts, &mut ask)) {
        Ok(report) => output::print_report(&report, args.report.json, &[], print_text),
        Err(e) => output::fail("failover", &e, args.report.json),
    }
}

fn print_text(r: &Report) {
    if let Some(plan) = &r.plan {
        print!("{plan}");
    }
    if let Some(w) = &r.loss_window {
        println!(
            "received up to {}, replayed up to {}, last replayed commit {}; primary {}: {}",
            w.received_lsn.as_deref().unwrap_or("-"),
            w.replayed_lsn.as_deref().unwrap_or("-"),
            w.last_replayed_commit.as_deref().unwrap_or("-"),
            w.upstream.as_deref().unwrap_or("unknown"),
            w.upstream_probe
        );
    }
    for d in &r.done {
        println!("{d}");
    }
    if let Some(p) = &r.new_primary {
        println!("new primary: {p}");
    }
    if let Some(ms) = r.read_only_ms {
        println!("writes were refused for {ms} ms (fence to promotion)");
    }
    if let Some(ms) = r.writable_after_ms {
        println!("writable {ms} ms after the command started");
    }
    for n in &r.next_steps {
        println!("next: {n}");
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
}
