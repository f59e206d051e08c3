//! The `knocker` command line as a library, so that its [`clap::Command`]
//! (every command, subcommand and flag) is reachable outside the binary:
//! `cargo xtask dist` generates the man pages and shell completions from
//! [`command`].
//!
//! `src/main.rs` only installs the allocator and calls [`run`]. Commands
//! live in their own modules (docs/ARCHITECTURE.md, "Adding a command"):
//! add the module and its variant here.
//!
//! ```
//! let cmd = knocker_cli::command();
//! assert_eq!(cmd.get_name(), "knocker");
//! assert!(cmd.find_subcommand("exposedb").is_some());
//! ```

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod autofailover;
mod exposedb;
mod failover;
mod flags;
mod haproxy;
mod hba_lint;
mod output;
mod replica;

/// What `knocker --version` prints after the name: the crate version and
/// the git commit of the build (`0.1.0 (commit 0123456789ab)`; see
/// `build-support/git_commit.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KNOCKER_BUILD_COMMIT"),
    ")"
);

/// Tools to share a Knocknoc server's PostgreSQL database safely.
#[derive(Debug, Parser)]
#[command(name = "knocker", version = VERSION)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Share this host's Knocknoc database with other web nodes.
    Exposedb(exposedb::ExposedbArgs),
    /// A streaming standby of the Knocknoc database.
    Replica(replica::ReplicaArgs),
    /// Operator-run failover: switchover, promotion, fencing, rejoin.
    Failover(failover::FailoverArgs),
    /// Automated failover by pg_auto_failover: --enroll a node, --status, --disable.
    Autofailover(autofailover::AutofailoverArgs),
    /// The HAProxy load balancer in front of the web nodes.
    Haproxy(haproxy::HaproxyArgs),
    /// The balancers this web node trusts (TrustedForwarders).
    Forwarders(haproxy::ForwardersArgs),
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

/// The complete `knocker` command line, as clap describes it.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the command `cli` holds; returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Exposedb(args) => exposedb::run(&args),
        Command::Replica(args) => replica::run(&args),
        Command::Failover(args) => failover::run(&args),
        Command::Autofailover(args) => autofailover::run(&args),
        Command::Haproxy(args) => haproxy::run(&args),
        Command::Forwarders(args) => haproxy::run_forwarders(&args),
        Command::Hba {
            command: HbaCommand::Lint(args),
        } => hba_lint::run(&args),
    }
}
