//! Test half of `git_commit.rs`, shared by the `knocker` and
//! `knocknoc-installer` tests (included with `#[path]`): `--version` names
//! the git commit the binary was built from, or says that none is known.

use std::process::Command;

/// What `--version` should say in parentheses for a build of the checkout
/// at `manifest_dir`.
fn expected_commit(manifest_dir: &str) -> String {
    let head = Command::new("git")
        .args([
            "-c",
            "safe.directory=*",
            "rev-parse",
            "--short=12",
            "--verify",
            "HEAD",
        ])
        .current_dir(manifest_dir)
        .output();
    match head {
        Ok(out) if out.status.success() => {
            format!("commit {}", String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => "commit unknown".to_owned(),
    }
}

/// Runs `binary --version` and checks that it prints `name VERSION (commit
/// ...)` for the checkout at `manifest_dir`.
pub fn assert_version_names_the_commit(
    binary: &str,
    name: &str,
    version: &str,
    manifest_dir: &str,
) {
    let out = Command::new(binary).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("{name} {version} ({}", expected_commit(manifest_dir));
    assert!(
        text.starts_with(&prefix),
        "{text:?} does not start with {prefix:?}"
    );
    assert!(text.ends_with(")\n"), "{text:?}");
}
