//! `knocker`: command-line tools for a shared Knocknoc PostgreSQL.
//!
//! This file only parses the command line and dispatches; each command lives
//! in its own module and returns the process exit code.

// mimalloc: pghba's document model and the JSON rows allocate per line; a
// 100k-rule `hba lint --json` uses ~15% less CPU than with glibc malloc
// (10% less than mimalloc without transparent huge pages, which would save
// ~6 MB RSS and ~0.8 ms per start; glibc malloc saves ~2.5 ms), and a
// 10k-rule `exposedb --add` took
// 212 ms instead of 228 (no THP) or 247 (glibc) in `cargo xtask bench
// exposedb` (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod autofailover;
mod exposedb;
mod failover;
mod haproxy;
mod hba_lint;
mod replica;

/// Tools to share a Knocknoc server's PostgreSQL database safely.
#[derive(Debug, Parser)]
#[command(name = "knocker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Share this host's Knocknoc database with other web nodes.
    Exposedb(exposedb::ExposedbArgs),
    /// The HAProxy load balancer in front of the web nodes.
    Haproxy(haproxy::HaproxyArgs),
    /// The balancers this web node trusts (TrustedForwarders).
    Forwarders(haproxy::ForwardersArgs),
    /// Operator-run failover: --promote a standby, --fence an old primary.
    Failover(failover::FailoverArgs),
    /// A streaming standby of the Knocknoc database.
    Replica(replica::ReplicaArgs),
    /// Automated failover by pg_auto_failover: --enroll a node, --status.
    Autofailover(autofailover::AutofailoverArgs),
    /// Work with pg_hba.conf files.
    Hba {
        #[command(subcommand)]
        command: HbaCommand,
    },
}

#[derive(Debug, Subcommand)]
enum HbaCommand {
    /// Check a pg_hba.conf offline, as a given PostgreSQL version would load it.
    Lint(hba_lint::LintArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Exposedb(args) => exposedb::run(&args),
        Command::Haproxy(args) => haproxy::run(&args),
        Command::Forwarders(args) => haproxy::run_forwarders(&args),
        Command::Replica(args) => replica::run(&args),
        Command::Failover(args) => failover::run(&args),
        Command::Autofailover(args) => autofailover::run(&args),
        Command::Hba {
            command: HbaCommand::Lint(args),
        } => hba_lint::run(&args),
    }
}
