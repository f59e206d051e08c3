//! The `knocknoc-installer` command line as a library, so that its
//! [`clap::Command`] is reachable outside the binary: `cargo xtask dist`
//! generates the man page and shell completions from [`command`]. The
//! dialogue itself lives in the binary (`src/main.rs` and its modules).
//!
//! ```
//! let cmd = installer_cli::command();
//! assert_eq!(cmd.get_name(), "knocknoc-installer");
//! assert!(cmd.get_arguments().any(|a| a.get_id() == "db_option"));
//! ```

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// What `knocknoc-installer --version` prints after the name: the crate
/// version and the git commit of the build (`0.1.0 (commit 0123456789ab)`;
/// see `build-support/git_commit.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KNOCKER_BUILD_COMMIT"),
    ")"
);

/// The installer's command line. Every question has a flag, so automation
/// can skip the dialogue; `--yes` forbids prompting altogether.
#[derive(Debug, Parser)]
#[command(
    name = "knocknoc-installer",
    version = VERSION,
    about = "Configure Knocknoc: listen address, trusted forwarders and database"
)]
pub struct Args {
    /// knocknoc.conf to read (its values are the defaults) and write.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/opt/knocknoc/etc/knocknoc.conf"
    )]
    pub config: PathBuf,

    /// IP:port the web app listens on (answers the first question).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,

    /// Comma-separated CIDRs of trusted reverse proxies (second question).
    #[arg(long, value_name = "CIDRS")]
    pub trusted_forwarders: Option<String>,

    /// Database option: 1 local PostgreSQL, 2 new external database,
    /// 3 pre-existing external Knocknoc database (web node only).
    #[arg(long, value_name = "1|2|3")]
    pub db_option: Option<String>,

    /// Connection string for options 2 and 3 (visible to other users in the
    /// process list: prefer --db-url-file or KNOCKNOC_DB_URL).
    #[arg(long, value_name = "URL", conflicts_with = "db_url_file")]
    pub db_url: Option<String>,

    /// File holding the connection string (first line).
    #[arg(long, value_name = "PATH")]
    pub db_url_file: Option<PathBuf>,

    /// Never prompt and never read standard input: a missing answer takes
    /// its default, or exits 2 when there is none.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Option 2: accept a database that already holds tables.
    #[arg(long)]
    pub allow_nonempty: bool,

    /// Option 1: administrator connection string for the local server
    /// (default: peer authentication as OS user postgres over
    /// /var/run/postgresql).
    #[arg(long, value_name = "URL")]
    pub admin_conn: Option<String>,

    /// Web node: rewrite the stored DatabaseURL to these hosts (a primary
    /// and its standbys, comma-separated HOST:PORT, IPv6 as [ADDR]:PORT),
    /// keeping user, password and options, after checking every host.
    /// Never prompts; nothing else in knocknoc.conf changes.
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        conflicts_with_all = ["db_url", "db_url_file", "db_option", "listen", "trusted_forwarders", "allow_nonempty", "admin_conn"]
    )]
    pub db_hosts: Option<String>,

    /// Connect to the database from this local address (a host with several
    /// addresses; tests use it to play a remote web node).
    #[arg(long, value_name = "IP", hide = true)]
    pub bind_source: Option<std::net::IpAddr>,
}

/// The complete `knocknoc-installer` command line, as clap describes it.
pub fn command() -> clap::Command {
    Args::command()
}
