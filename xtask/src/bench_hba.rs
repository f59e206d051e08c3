//! `cargo xtask bench hba [--sizes 1000,10000] [--skip-pgtoolkit]`: the pg_hba
//! benchmark (`knocker hba lint` vs PostgreSQL's own parse vs pgtoolkit).
//!
//! The benchmark itself is `knocker-cli/benches/hba.rs`, a `harness = false`
//! bench target (it needs the release `knocker` binary through
//! `CARGO_BIN_EXE_knocker`, which only that package's targets get). It is not
//! part of the test build and CI does not run it. Results go to stdout and to
//! `target/bench-hba/results.md`; BENCHMARKS.md holds the last published run.

use std::process::Command;

use anyhow::{bail, Context};

/// Runs the pg_hba benchmark, passing `args` on to it.
pub fn run(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args(["bench", "-p", "knocker-cli", "--bench", "hba", "--"])
        .args(args)
        .status()
        .context("run cargo bench -p knocker-cli --bench hba")?;
    if !status.success() {
        bail!("the hba benchmark failed ({status})");
    }
    Ok(())
}
