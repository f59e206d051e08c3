//! `knocker --version` names the git commit it was built from
//! (build-support/git_commit.rs), or says that none is known.

#[path = "../../../build-support/version_check.rs"]
mod version_check;

#[test]
fn version_names_the_git_commit_of_the_build() {
    version_check::assert_version_names_the_commit(
        env!("CARGO_BIN_EXE_knocker"),
        "knocker",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
