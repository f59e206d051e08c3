//! Flags several commands share, declared once and flattened into each
//! command's arguments (`#[command(flatten)]`), so that a flag's name,
//! short form and type are the same everywhere.
//!
//! The help text here is the common one. Where a command's help says
//! something of its own (what its `--yes` stops asking, what its `--force`
//! passes, what its `--dry-run` prints), the command replaces it with
//! `mut_arg` beside its other help: the text stays the command's, word for
//! word, and `knocker CMD --help` lists the flags where it always did.

use std::path::PathBuf;

use clap::Args;

/// `--dry-run` and `--json`: what a run prints.
#[derive(Debug, Args)]
pub(crate) struct ReportFlags {
    /// Print what would change (diff, SQL, commands); change nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print one JSON object ("version": 1)
    #[arg(long)]
    pub(crate) json: bool,
}

/// `--yes` and `--force`: consent given in advance to a question or to a
/// safety check.
#[derive(Debug, Args)]
pub(crate) struct ConsentFlags {
    /// Do not ask before restarting PostgreSQL
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Pass a safety check that names --force
    #[arg(long)]
    pub(crate) force: bool,
}

/// `--config`, `--conn` and `--admin-conn`: where the application's and
/// the superuser's connections come from.
#[derive(Debug, Args)]
pub(crate) struct ConnectionFlags {
    /// knocknoc.conf to read the application's connection string from
    #[arg(
        long,
        value_name = "PATH",
        default_value = knocker_ops::exposedb::DEFAULT_CONFIG
    )]
    pub(crate) config: PathBuf,
    /// The application's connection string (default: from knocknoc.conf)
    #[arg(long, value_name = "URI")]
    pub(crate) conn: Option<String>,
    /// Superuser connection string (default: peer login as `postgres` over the unix socket)
    #[arg(long, value_name = "URI")]
    pub(crate) admin_conn: Option<String>,
}
