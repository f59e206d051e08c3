//! Replaying the committed fuzz corpora (`fuzz/corpus/<target>/`).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Replays every non-empty corpus under `fuzz/corpus/`; does nothing when
/// there is none.
pub fn replay_fuzz_corpora(root: &Path) -> Result<()> {
    let corpora = root.join("fuzz").join("corpus");
    let Ok(entries) = std::fs::read_dir(&corpora) else {
        eprintln!("xtask test: no fuzz corpora ({} absent)", corpora.display());
        return Ok(());
    };
    let mut targets: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    targets.sort();
    for dir in targets {
        let has_inputs = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
        if !has_inputs {
            continue;
        }
        let target = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("fuzz target directory name is not UTF-8")?
            .to_owned();
        replay_fuzz_corpus(root, &target, &dir)?;
    }
    Ok(())
}

/// The cargo-fuzz release the replay is known to work with (stable Rust,
/// `-s none`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Installs cargo-fuzz from crates.io when it is missing, as `cargo xtask pg`
/// installs PostgreSQL: a fresh machine must be able to run the whole test.
fn ensure_cargo_fuzz(cargo: &std::ffi::OsStr) -> Result<()> {
    let installed = std::process::Command::new(cargo)
        .args(["fuzz", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask test: cargo-fuzz is missing: cargo install cargo-fuzz@{CARGO_FUZZ_VERSION}");
    let status = std::process::Command::new(cargo)
        .args([
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ])
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cannot install cargo-fuzz {CARGO_FUZZ_VERSION} ({status}): is crates.io reachable?");
    }
    Ok(())
}

/// Replays one corpus through its fuzz target without fuzzing (libFuzzer
/// `-runs=0`), failing if any input crashes it:
/// `cargo fuzz run -s none TARGET fuzz/corpus/TARGET -- -runs=0` in `fuzz/`
/// (stable Rust; cargo-fuzz is installed first when missing).
pub fn replay_fuzz_corpus(root: &Path, target: &str, corpus: &Path) -> Result<()> {
    let fuzz_dir = root.join("fuzz");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    ensure_cargo_fuzz(&cargo)?;
    eprintln!("xtask test: == fuzz corpus replay: {target}");
    let status = std::process::Command::new(&cargo)
        .current_dir(&fuzz_dir)
        .args(["fuzz", "run", "-s", "none", target])
        .arg(corpus)
        .args(["--", "-runs=0"])
        .status()
        .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
    if !status.success() {
        bail!("fuzz corpus replay failed for target `{target}` ({status})");
    }
    Ok(())
}
