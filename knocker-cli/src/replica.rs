//! `knocker replica`: arguments to [`knocker_ops::replica::Options`], the
//! report to text or JSON, errors to exit codes. The work is in
//! knocker-ops (docs/ARCHITECTURE.md).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use knocker_ops::replica::{self, Action, Options, Report};
use knocker_ops::Error;

use crate::flags::{ConsentFlags, NodeFlags, ReportFlags};
use crate::output;

const ABOUT: &str = "A streaming standby of the Knocknoc database: prepare the primary (--init), \
admit a standby (--allow), remove it (--revoke), clone it on the standby host (--clone-from), \
show replication (--status) and the connection string web nodes use (--print-url).";

const EXAMPLES: &str = "\
Examples (on the primary):
  sudo knocker replica --init
  sudo knocker replica --allow 203.0.113.8/32 --name node_b [--sync]
  sudo knocker replica --status [--json]
  sudo knocker replica --print-url
  sudo knocker replica --revoke 203.0.113.8/32 --terminate
On the standby host (203.0.113.8):
  sudo knocker replica --clone-from 'postgresql://knocknoc_replication:...@203.0.113.7:5432/?sslmode=require' --name node_b

Exit status: 0 done (or nothing to do), 1 failed or refused (nothing changed), 2 bad usage or input.";

/// Arguments of `knocker replica`.
#[derive(Debug, Args)]
#[command(
    about = ABOUT,
    after_help = EXAMPLES,
    group(ArgGroup::new("action").args(["init", "allow", "revoke", "status", "print_url", "clone_from"]))
)]
pub struct ReplicaArgs {
    /// Prepare this primary: replication and rewind roles, settings, the pg_hba.conf block
    #[arg(long)]
    init: bool,
    /// Admit the standby --name from CIDR: pg_hba.conf lines and its slot knocker_NAME
    #[arg(long, value_name = "CIDR")]
    allow: Option<String>,
    /// Remove the lines for CIDR and drop its standby's slot
    #[arg(long, value_name = "CIDR")]
    revoke: Option<String>,
    /// Role, timeline, WAL positions, standbys or upstream, slots
    #[arg(long)]
    status: bool,
    /// The connection string web nodes use (every node, read-write only)
    #[arg(long)]
    print_url: bool,
    /// On the standby host: replace the local cluster with a streaming copy of the primary
    /// (URI: the replication connection string --init printed)
    #[arg(long, value_name = "URI")]
    clone_from: Option<String>,
    /// With --allow: make this standby the synchronous one
    #[arg(long)]
    sync: bool,
    /// With --revoke: end the standby's connection if it is streaming
    #[arg(long)]
    terminate: bool,
    #[command(flatten)]
    node: NodeFlags,
    /// Do not restart PostgreSQL; print the command instead
    #[arg(long)]
    no_restart: bool,
    #[command(flatten)]
    report: ReportFlags,
    #[command(flatten)]
    consent: ConsentFlags,
}

fn options(args: &ReplicaArgs) -> Result<Option<Options>, Error> {
    if args.sync && args.allow.is_none() {
        return Err(Error::usage("--sync goes with --allow CIDR --name NAME"));
    }
    if args.terminate && args.revoke.is_none() {
        return Err(Error::usage("--terminate goes with --revoke CIDR"));
    }
    let action = if args.init {
        Action::Init
    } else if let Some(c) = &args.allow {
        Action::Allow {
            cidr: replica::parse_cidr("--allow", c)?,
            sync: args.sync,
        }
    } else if let Some(c) = &args.revoke {
        Action::Revoke {
            cidr: replica::parse_cidr("--revoke", c)?,
            terminate: args.terminate,
        }
    } else if args.status {
        Action::Status
    } else if args.print_url {
        Action::PrintUrl
    } else if let Some(uri) = &args.clone_from {
        Action::CloneFrom {
            uri: replica::Secret(uri.clone()),
        }
    } else {
        return Ok(None);
    };
    let name = match (&args.node.name, &action) {
        (Some(n), _) => Some(n.clone()),
        // The default (this host's name) fits the standby host only; on
        // the primary the standby's name must be given.
        (None, Action::Allow { .. }) => {
            return Err(Error::usage(
                "--allow needs --name NAME: the standby's name (its application_name)",
            ))
        }
        (None, _) => None,
    };
    Ok(Some(Options {
        action,
        config: args.node.config.clone(),
        conn: args.node.conn.clone(),
        admin_conn: args.node.admin_conn.clone(),
        cluster: args.node.cluster.clone(),
        name,
        dry_run: args.report.dry_run,
        force: args.consent.force,
        no_restart: args.no_restart,
        progress: !args.report.json && std::io::stderr().is_terminal(),
    }))
}

/// Runs `knocker replica`.
pub fn run(args: &ReplicaArgs) -> ExitCode {
    let opts = match options(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{ABOUT}\n\nUsage: knocker replica [--init | --allow <CIDR> --name NAME | --revoke <CIDR> | --clone-from <URI> | --status | --print-url]\n\n{EXAMPLES}");
            // As `knocker exposedb` without an action: the usage, exit 0.
            return ExitCode::SUCCESS;
        }
        Err(e) => return output::fail("replica", &e, args.report.json),
    };
    let yes = args.consent.yes;
    // As exposedb: off a terminal nobody can answer, and the run goes on.
    let mut ask = move |question: &str| yes || output::confirm(question, true);
    match output::block_on(replica::run(&opts, &mut ask)) {
        Ok(report) => {
            let dry_run_text = report
                .plan
                .as_ref()
                .map(|p| ("dry_run_text", p.to_string().into()));
            output::print_report(
                &report,
                args.report.json,
                dry_run_text.as_slice(),
                print_text,
            )
        }
        Err(e) => output::fail("replica", &e, args.report.json),
    }
}

fn print_text(r: &Report) {
    if let Some(url) = &r.replication_url {
        println!("Replication connection string (shown once; keep it for knocker replica --clone-from on the standby):");
        println!("  {}", url.0);
        println!();
    }
    if let Some(plan) = &r.plan {
        print!("{plan}");
        for d in &r.done {
            println!("-- {d}");
        }
    } else {
        for d in &r.done {
            println!("{d}");
        }
    }
    if let Some(s) = &r.status {
        println!(
            "role: {}{}  timeline: {}  lsn: {}",
            s.role,
            if s.fenced { " (fenced: read-only)" } else { "" },
            s.timeline,
            s.current_lsn.as_deref().unwrap_or("-")
        );
        if s.role == "standby" {
            println!(
                "upstream: {}  streaming: {}  received: {}  replayed: {}  last replayed commit: {}",
                s.upstream.as_deref().unwrap_or("-"),
                if s.streaming { "yes" } else { "no" },
                s.receive_lsn.as_deref().unwrap_or("-"),
                s.replay_lsn.as_deref().unwrap_or("-"),
                s.last_replay_time.as_deref().unwrap_or("-"),
            );
        }
        for st in &s.standbys {
            println!(
                "standby {}: {} {}  lag {} bytes, {} s  from {}",
                st.name,
                st.state,
                st.sync_state,
                st.lag_bytes.map_or("-".into(), |b| b.to_string()),
                st.replay_lag_seconds
                    .map_or("-".into(), |s| format!("{s:.3}")),
                st.client_addr.as_deref().unwrap_or("local"),
            );
        }
        for a in &s.allowed {
            if !s.standbys.iter().any(|st| st.name == a.name) {
                println!(
                    "standby {}: not connected (allowed from {})",
                    a.name, a.cidr
                );
            }
        }
        for sl in &s.replication_slots {
            println!(
                "slot {}: {}  wal_status {}  safe_wal_size {}",
                sl.name,
                if sl.active { "active" } else { "inactive" },
                sl.wal_status.as_deref().unwrap_or("-"),
                sl.safe_wal_size
                    .map_or("unbounded".into(), |b| format!("{b} bytes")),
            );
        }
        println!(
            "synchronous_standby_names: '{}'  max_slot_wal_keep_size: {}  rewind ready: {}",
            s.synchronous_standby_names,
            if s.max_slot_wal_keep_size_mb < 0 {
                "unbounded".to_string()
            } else {
                format!("{} MB", s.max_slot_wal_keep_size_mb)
            },
            if s.rewind_ready {
                "yes"
            } else {
                "no (wal_log_hints off, no checksums)"
            }
        );
        println!(
            "exposedb block: {}",
            match s.exposedb_block {
                "same" => "the same as the primary's",
                "differs" => "differs from the primary's (see the warning)",
                other => other,
            }
        );
    }
    if let Some(url) = &r.url {
        println!("{url}");
        println!("Replace PASSWORD with the web nodes' password (knocker does not keep it).");
        if let Some(c) = &r.installer_command {
            println!("On each web node run:\n  {c}");
        }
    }
    if let Some(restart) = &r.restart {
        if !restart.restarted {
            if let Some(c) = &restart.command {
                println!("Restart needed for {}: {c}", restart.settings.join(", "));
            }
        }
    }
    if r.plan.is_none() && !r.changed && r.status.is_none() && r.url.is_none() && r.done.is_empty()
    {
        println!("nothing to do");
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
}
