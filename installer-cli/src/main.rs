//! `knocknoc-installer`: asks where the web app listens, which reverse
//! proxies it trusts and which database it uses, checks every answer (the
//! database for real), then writes knocknoc.conf atomically.
//!
//! Exit status: 0 done, 1 a check failed (nothing written), 2 bad usage, a
//! bad answer in non-interactive mode, or end of input (nothing written).

mod answers;
mod database;
mod db_hosts;
mod ui;

use std::process::ExitCode;

use clap::Parser;
use installer_cli::Args;

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
    let outcome = match &args.db_hosts {
        Some(list) => db_hosts::run(&args, list, &term),
        None => answers::run(&args, &mut term),
    };
    match outcome {
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
