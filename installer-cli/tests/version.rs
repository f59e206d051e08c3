//! `knocknoc-installer --version` names the git commit it was built from
//! (build-support/git_commit.rs), or says that none is known.

use std::process::Command;

/// What `--version` should say in parentheses for a build of this checkout.
fn expected_commit() -> String {
    let head = Command::new("git")
        .args([
            "-c",
            "safe.directory=*",
            "rev-parse",
            "--short=12",
            "--verify",
            "HEAD",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(out) if out.status.success() => {
            format!("commit {}", String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => "commit unknown".to_owned(),
    }
}

#[test]
fn version_names_the_git_commit_of_the_build() {
    let out = Command::new(env!("CARGO_BIN_EXE_knocknoc-installer"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!(
        "knocknoc-installer {} ({}",
        env!("CARGO_PKG_VERSION"),
        expected_commit()
    );
    assert!(
        text.starts_with(&prefix),
        "{text:?} does not start with {prefix:?}"
    );
    assert!(text.ends_with(")\n"), "{text:?}");
}
