//! Flags several commands share, declared once and flattened into each
//! command's arguments (`#[command(flatten)]`), so that a flag's name,
//! short form and type are the same everywhere.
//!
//! The help text here is the common one. Where a command's help says
//! something of its own (what its `--yes` stops asking, what its `--force`
//! passes, what its `--dry-run` prints), the command lists it in its
//! `OWN_HELP` table and applies [`own_help`]: the text stays the command's,
//! word for word, and `knocker CMD --help` lists the flags where it always
//! did.

use std::path::PathBuf;

use clap::{Arg, Args};

/// A command's own help texts for shared flags, by argument id
/// (`("yes", "Do not ask before promoting")`).
pub(crate) type OwnHelp = &'static [(&'static str, &'static str)];

/// For `#[command(mut_args(flags::own_help(OWN_HELP)))]`: gives each
/// argument named in `texts` that help. `mut_args` changes the arguments
/// in place, so their order (completions, man page) stays as declared.
pub(crate) fn own_help(texts: OwnHelp) -> impl FnMut(Arg) -> Arg {
    move |arg| match texts.iter().find(|(id, _)| arg.get_id() == *id) {
        Some((_, help)) => arg.help(*help),
        None => arg,
    }
}

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

/// `--config`, `--conn`, `--admin-conn`, `--cluster` and `--name`: the
/// node a command works on (its application's and superuser's connections,
/// its Debian cluster) and its name among the nodes.
#[derive(Debug, Args)]
pub(crate) struct NodeFlags {
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
    /// The Debian cluster on this host (default: the one on the application's port)
    #[arg(long, value_name = "VERSION/NAME")]
    pub(crate) cluster: Option<String>,
    /// The standby's name: its application_name and slot knocker_NAME (default: short host name)
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::OwnHelp;

    /// Every id in a command's `OWN_HELP` is one of its arguments and
    /// shows that help: `own_help` passes over an id it does not find, so
    /// a misspelt one would silently keep the common text.
    #[test]
    fn every_own_help_names_an_argument_of_its_command() {
        let tables: [(&str, OwnHelp); 5] = [
            ("exposedb", crate::exposedb::OWN_HELP),
            ("failover", crate::failover::OWN_HELP),
            ("autofailover", crate::autofailover::OWN_HELP),
            ("haproxy", crate::haproxy::HAPROXY_OWN_HELP),
            ("forwarders", crate::haproxy::FORWARDERS_OWN_HELP),
        ];
        let cli = crate::command();
        for (command, table) in tables {
            let sub = cli.find_subcommand(command).unwrap();
            for (id, help) in table {
                let arg = sub
                    .get_arguments()
                    .find(|a| a.get_id() == id)
                    .unwrap_or_else(|| panic!("knocker {command} has no argument {id}"));
                assert_eq!(
                    arg.get_help().map(ToString::to_string).as_deref(),
                    Some(*help),
                    "knocker {command} {id}"
                );
            }
        }
    }
}
