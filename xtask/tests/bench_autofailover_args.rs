//! `cargo xtask bench autofailover` with bad arguments: the usage on
//! standard error and exit status 2, before anything is set up (the bench
//! itself takes minutes and is not run by any test).

use std::process::Command;

#[test]
fn bad_arguments_exit_2_before_anything_starts() {
    let cases: [&[&str]; 6] = [
        &["--runs"],
        &["--runs", "0"],
        &["--runs", "six"],
        &["--faults", "kill,reboot"],
        &["--faults", "kill,kill"],
        &["--verbose"],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["bench", "autofailover"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("usage: cargo xtask bench autofailover"),
            "{args:?}: {stderr}"
        );
        // Nothing was set up: no progress line, no server started.
        assert!(!stderr.contains("started;"), "{args:?}: {stderr}");
        assert!(!stderr.contains("nodes started"), "{args:?}: {stderr}");
    }
}
