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

/// Replays one corpus through its fuzz target without fuzzing (libFuzzer
/// `-runs=0`), failing if any input crashes it.
///
/// To be filled by whoever adds the fuzz targets (pghba): e.g. `cargo fuzz run
/// -s none TARGET DIR -- -runs=0` in `fuzz/`, with cargo-fuzz installed by
/// `cargo xtask pg`-style provisioning. Until then a committed corpus fails
/// the test run rather than being silently skipped.
pub fn replay_fuzz_corpus(root: &Path, target: &str, corpus: &Path) -> Result<()> {
    let _ = root;
    bail!(
        "fuzz corpus {} for target `{target}` is present but replaying is not implemented yet \
         (xtask/src/fuzz.rs: replay_fuzz_corpus)",
        corpus.display()
    )
}
