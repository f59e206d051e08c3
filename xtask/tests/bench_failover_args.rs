//! `cargo xtask bench failover` with bad arguments: the problem and the
//! usage on stderr, exit status 2, before anything is provisioned, built or
//! created (the whole bench is not run by tests: it takes minutes and two
//! Debian clusters).

use std::process::Command;

#[test]
fn bench_failover_rejects_bad_arguments_with_exit_2() {
    for (args, problem) in [
        (&["--runs", "0"][..], "--runs takes a number from 1"),
        (&["--runs"], "--runs needs a value"),
        (
            &["--size-mb", "ten"],
            "--size-mb takes a number of MiB from 16",
        ),
        (
            &["--only", "clone,failback"],
            "unknown section \"failback\"",
        ),
        (&["--fast"], "unknown argument \"--fast\""),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["bench", "failover"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(problem), "{args:?}: {stderr}");
        assert!(
            stderr.contains("usage: cargo xtask bench failover"),
            "{args:?}: {stderr}"
        );
        // No progress line: nothing was provisioned, built or created.
        assert!(!stderr.contains("bench failover: "), "started: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
