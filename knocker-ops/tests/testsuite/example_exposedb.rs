//! Runs `examples/exposedb.rs` (the operations as a library, no clap)
//! against a real server of each version, and checks what it saw.

#[path = "../../examples/exposedb.rs"]
mod example;

pg_harness::pg_test!(
    async fn example_runs_init_add_list_deinit(major: u32) {
        let seen = example::run(major).await.expect("the example runs");
        let uri = seen.connection_string.expect("init prints a password");
        assert!(uri.starts_with("postgres://shop_remote:"), "{uri}");
        // The dry run shows the exact reload statement the installation sends.
        assert!(
            seen.add_plan
                .contains(&format!("{};", pgctl::hba_install::RELOAD_SQL)),
            "{}",
            seen.add_plan
        );
        assert!(seen.add_plan.contains("+host"), "{}", seen.add_plan);
        assert_eq!(seen.listed, ["127.0.0.2/32"]);
        assert!(seen.role_dropped);
        // deinit leaves pg_hba.conf as it found it.
        assert_eq!(
            String::from_utf8_lossy(&seen.hba_after),
            String::from_utf8_lossy(&seen.hba_before)
        );
    }
);
