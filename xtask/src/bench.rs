//! `cargo xtask bench-start`: how long a throwaway cluster takes to start;
//! and what every benchmark shares (the release `knocker`, the load).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use pg_harness::{Cluster, ClusterOptions, MAJOR_VERSIONS};

/// Starts `RUNS` (default 15) clusters per version one after another (after
/// one warm-up start that may build the template) and prints the median,
/// minimum and maximum start and stop times.
pub fn cluster_start(args: &[&str]) -> Result<()> {
    let runs: usize = match args {
        [] => 15,
        [n] => n
            .parse()
            .with_context(|| format!("RUNS must be a number, not {n:?}"))?,
        _ => anyhow::bail!("usage: cargo xtask bench-start [RUNS]"),
    };
    let runs = runs.max(1);
    crate::provision::provision_all()?;
    println!(
        "throwaway cluster start (Cluster::start_blocking until ready), {runs} runs per version"
    );
    println!("version  median_start  min_start  max_start  median_drop");
    for major in MAJOR_VERSIONS {
        drop(Cluster::start_blocking(major, &ClusterOptions::default()));
        let mut starts = Vec::with_capacity(runs);
        let mut drops = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let cluster = Cluster::start_blocking(major, &ClusterOptions::default());
            starts.push(t.elapsed());
            let t = Instant::now();
            drop(cluster);
            drops.push(t.elapsed());
        }
        starts.sort();
        drops.sort();
        println!(
            "{major:>7}  {:>12}  {:>9}  {:>9}  {:>11}",
            ms(starts[runs / 2]),
            ms(starts[0]),
            ms(starts[runs - 1]),
            ms(drops[runs / 2])
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// `cargo build --release -p knocker-cli` for the benchmark `bench` (named
/// in the progress line); the binary's path.
pub fn build_knocker(bench: &str) -> Result<PathBuf> {
    eprintln!("bench {bench}: cargo build --release -p knocker-cli");
    let status = crate::cargo()
        .args(["build", "--release", "-p", "knocker-cli"])
        .status()
        .context("run cargo build")?;
    ensure!(
        status.success(),
        "cargo build --release -p knocker-cli failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let bin = target.join("release/knocker");
    ensure!(bin.exists(), "{} was not built", bin.display());
    Ok(bin)
}

/// The three load averages of `/proc/loadavg` ("?" where unreadable): the
/// machine's business while a benchmark ran.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
