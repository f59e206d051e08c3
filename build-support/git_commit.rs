//! Build script shared by the `knocker` and `knocknoc-installer` binaries:
//! records the git commit they are built from in `KNOCKER_BUILD_COMMIT`,
//! which their `--version` prints (`knocker 0.1.0 (commit 0123456789ab)`).
//!
//! It never fails a build: outside a git checkout (a source tarball), without
//! `git`, or in a repository git refuses to read, the value comes from the
//! `KNOCKER_BUILD_COMMIT` environment variable when a packager sets it, else
//! it says that no commit is known.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KNOCKER_BUILD_COMMIT");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let described = match git_commit(Path::new(&manifest_dir)) {
        Some(commit) => format!("commit {commit}"),
        None => match std::env::var("KNOCKER_BUILD_COMMIT") {
            Ok(commit) if !commit.trim().is_empty() => format!("commit {}", commit.trim()),
            _ => "commit unknown: not built from a git checkout".to_owned(),
        },
    };
    println!("cargo:rustc-env=KNOCKER_BUILD_COMMIT={described}");
}

/// `git` in `dir`, stdout trimmed, `None` when it cannot run or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // safe.directory: a checkout owned by another user (root building a
    // user's clone, CI containers) is otherwise refused; we only read it.
    let output = Command::new("git")
        .arg("-c")
        .arg("safe.directory=*")
        .args(args)
        .current_dir(dir)
        // Reading only: `git status` must not refresh (rewrite) the index.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The abbreviated commit of `HEAD`, with `-modified` when tracked files
/// differ from it; registers the files whose change means a new commit.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "--verify", "HEAD"])?;
    // HEAD and its reflog move with every commit, checkout and reset; the
    // branch's ref (loose or packed) too. Not the index: shell prompts
    // rewrite it all the time, and each rewrite would rebuild the binaries.
    let mut watched = vec![
        "HEAD".to_owned(),
        "logs/HEAD".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in &watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", name]) {
            let path = dir.join(path);
            // A missing file would make cargo rerun this script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    // The `-modified` flag is re-evaluated when the sources compiled into
    // the binaries change: this package's and our libraries' (cargo would
    // recompile the binary for those anyway).
    for sources in [
        "src",
        "../pghba/src",
        "../pgctl/src",
        "../knocknoc-conf/src",
        "../knocker-ops/src",
    ] {
        if dir.join(sources).is_dir() {
            println!("cargo:rerun-if-changed={sources}");
        }
    }
    let modified = git(dir, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    Some(if modified {
        format!("{commit}-modified")
    } else {
        commit
    })
}
