//! `knocknoc-installer`: asks where the web app listens, which reverse
//! proxies it trusts and which database it uses, checks every answer (the
//! database for real), then writes knocknoc.conf atomically.
//!
//! Exit status: 0 done, 1 a check failed (nothing written), 2 bad usage, a
//! bad answer in non-interactive mode, or end of input (nothing written).

mod answers;
mod database;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The installer's command line. Every question has a flag, so automation
/// can skip the dialogue; `--yes` forbids prompting altogether.
#[derive(Debug, Parser)]
#[command(
    name = "knocknoc-installer",
    version,
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

    /// Connect to the database from this local address (a host with several
    /// addresses; tests use it to play a remote web node).
    #[arg(long, value_name = "IP", hide = true)]
    pub bind_source: Option<std::net::IpAddr>,
}

/// How a run ends without writing anything.
#[derive(Debug)]
pub enum Abort {
    /// Bad usage or a bad answer that cannot be asked again (exit 2).
    Usage(String),
    /// A check failed (exit 1).
    Check(String),
    /// Standard input ended before every question was answered (exit 2).
    EndOfInput,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut term = ui::Term::new(args.yes);
    match answers::run(&args, &mut term) {
        Ok(()) => ExitCode::SUCCESS,
        Err(abort) => {
            let (code, message) = match abort {
                Abort::Usage(m) => (2, m),
                Abort::Check(m) => (1, m),
                Abort::EndOfInput => (2, "end of input before every question was answered".into()),
            };
            term.error(&format!("{message}\nnothing was written"));
            ExitCode::from(code)
        }
    }
}
