//! `cargo xtask demo` from a fresh machine's point of view: an empty
//! provisioning cache (`KNOCKER_PG_CACHE`), and prerequisites that are
//! missing. It runs the `knocker` and `knocknoc-installer` that the test
//! build made in the same target directory (`--bin-dir`), so that it costs
//! no build of its own: run it with `cargo xtask test`, or after building
//! them (`cargo nextest run -p xtask -p knocker-cli -p installer-cli`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/debug` (or whichever profile directory holds this test's xtask).
fn bin_dir() -> PathBuf {
    let xtask = Path::new(env!("CARGO_BIN_EXE_xtask"));
    let dir = xtask.parent().expect("xtask has a directory").to_path_buf();
    for name in ["knocker", "knocknoc-installer"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: build it (cargo build -p knocker-cli -p installer-cli)",
            dir.join(name).display()
        );
    }
    dir
}

/// A new, empty directory the unprivileged server user can reach.
fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("knocker-demo-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn demo(cache: &Path, extra: &[&str]) -> Output {
    demo_command(cache, extra).output().unwrap()
}

fn demo_command(cache: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("demo")
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(extra)
        .env("KNOCKER_PG_CACHE", cache)
        .env_remove("KNOCKER_PG_TMPDIR")
        .env_remove("XTASK_BACKTRACE");
    cmd
}

/// The README's promise: on a machine whose cache does not exist yet, the
/// demo alone ends with `VERDICT: OK`, provisioning only what it uses (its
/// PostgreSQL 15 is Debian's, so nothing is downloaded into the cache; the
/// cache only gets the initdb template and pg-harness's lock for
/// `pg_createcluster`), shows every section of the story, and leaves none
/// of its Debian clusters or HAProxy processes behind.
#[test]
fn demo_from_an_empty_cache_ends_verdict_ok_pg_server() {
    let scratch = reachable_tempdir();
    let cache = scratch.path().join("cache-that-does-not-exist-yet");
    let started = std::time::Instant::now();
    let out = demo(&cache, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "demo took {:.1} s\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "exit {:?}", out.status);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("VERDICT: OK"), "last line: {last}");
    assert!(!stdout.contains("FAILED"));
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Sections are numbered 1, 2, 3 ... in order.
    let numbers: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("== "))
        .filter_map(|l| l.split_once(". "))
        .map(|(n, _)| n.parse().unwrap())
        .collect();
    assert!(numbers.len() >= 9, "{numbers:?}");
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
    // The whole story, in order: the shared primary, a standby, a
    // failover, a switchover back, the load balancer, the undo.
    let headers: Vec<&str> = stdout.lines().filter(|l| l.starts_with("== ")).collect();
    let mut at = 0;
    for wanted in [
        "On the primary: expose the database",
        "knocknoc-installer, option 3",
        "A standby: knocker replica",
        "Failover: node A fails, node B is promoted, node A rejoins",
        "Switchover: node B hands the primary role back to node A",
        "The load balancer: knocker haproxy",
        "Undo:",
    ] {
        let found = headers[at..]
            .iter()
            .position(|h| h.contains(wanted))
            .unwrap_or_else(|| panic!("no section {wanted:?} after {at}: {headers:?}"));
        at += found + 1;
    }
    for command in [
        "$ knocker replica --init",
        "$ knocker replica --allow",
        "$ knocker replica --clone-from",
        "$ knocker replica --status",
        "$ knocker replica --print-url",
        "$ knocker failover --promote",
        "$ knocker failover --fence",
        "$ knocker failover --rejoin",
        "$ knocker failover --switchover",
        "$ knocker haproxy --init --plain-http",
        "$ knocker haproxy --add",
        "$ knocker haproxy --list",
        "$ knocker forwarders --list",
    ] {
        assert!(stdout.contains(command), "{command} is not shown");
    }
    // What the demo started is gone: its Debian clusters (named after its
    // pid) and their files, its HAProxy (whose command line names the
    // demo's scratch directory).
    let pid = out_pid(&stdout);
    let scratch_name = format!("knocker-demo-{pid}/");
    let haproxies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("haproxy") && c.contains(&scratch_name))
        .collect();
    assert!(haproxies.is_empty(), "still running: {haproxies:?}");
    let debian = std::fs::read_dir("/etc/postgresql/15")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("knocker_{pid}_")))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert!(debian.is_empty(), "left behind: {debian:?}");
    let leftovers: Vec<String> = std::fs::read_dir("/var/lib/postgresql/15")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(&format!("knocker_{pid}_")))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    let mut made: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    // The initdb template, and the lock that serialises pg_createcluster.
    assert_eq!(
        made,
        ["debian-clusters.lock", "templates"],
        "the demo provisioned more than it uses"
    );
}

/// The demo's pid, from the scratch directory it names
/// (`/tmp/knocker-demo-PID/...`).
fn out_pid(stdout: &str) -> u32 {
    let at = stdout
        .find("knocker-demo-")
        .expect("the transcript names the demo's scratch directory")
        + "knocker-demo-".len();
    stdout[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a pid")
}

/// A prerequisite that is missing is one line naming the fix, exit 1:
/// here a cache under a 0700 directory, which the unprivileged server user
/// cannot reach (as root; the tests run as root, like CI).
#[test]
fn demo_with_an_unreachable_cache_fails_in_one_line() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root, like the rest of the suite"
    );
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = demo(&private.path().join("cache"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("xtask: error: "), "{stderr}");
    assert!(stderr.contains("KNOCKER_PG_CACHE"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// A version the machine cannot provide: one line, exit 1, nothing done.
#[test]
fn demo_on_an_unsupported_version_fails_in_one_line() {
    let scratch = reachable_tempdir();
    let out = demo(scratch.path(), &["--pg-version", "14"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "xtask: error: PostgreSQL 14 is not provided here: choose one of [15, 16, 17, 18]"
    );
}

/// A failure deep in pg-harness (which reports by panicking) still ends as
/// one `xtask: error:` line, without a backtrace even when `RUST_BACKTRACE`
/// is set (as in many shells and CI images): here the throwaway cluster's
/// directory under a 0700 directory. The transcript ends with its
/// `VERDICT: FAILED` line.
#[test]
fn demo_failure_inside_pg_harness_is_one_line_without_backtrace() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root, like the rest of the suite"
    );
    let scratch = reachable_tempdir();
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = demo_command(scratch.path(), &[])
        .env("KNOCKER_PG_TMPDIR", private.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("xtask: error: pg-harness: "), "{stderr}");
    assert!(last.contains("0700"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    // The transcript still ends with its verdict.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = stdout.lines().last().unwrap_or_default();
    assert!(verdict.starts_with("VERDICT: FAILED: "), "{stdout}");
}
