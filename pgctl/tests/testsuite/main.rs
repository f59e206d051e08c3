//! pgctl's integration tests, one module per area, in one test binary (as
//! cargo's own `tests/testsuite/`): one link instead of one per file.
//!
//! `conninfo_resolve_libpq17` stays a binary of its own: it sets the
//! process environment (`HOME`, `PG*`) for real, which no other test in the
//! same process may read meanwhile.
//!
//! Test names keep their suffixes (`pg15`..`pg18`, `pg_server`,
//! `debian_cluster`): `.config/nextest.toml` puts server tests in the
//! `pg-server` group by name, and a module path in front changes nothing.

mod common;
mod hba_install_support;

mod appdb;
mod connect;
mod connect_debian;
mod connect_libpq17;
mod connect_tls;
mod conninfo_example;
mod conninfo_libpq17;
mod conninfo_parse;
mod conninfo_props;
mod conninfo_resolve;
mod grants;
mod hba_install;
mod hba_install_faults;
mod libpq17;
mod listen;
mod replication;
mod roles;
mod server;

/// Entry point of the installer child processes (`hba_install_support`:
/// this binary re-executed with `--exact child_process_entry`); does
/// nothing in a normal test run.
#[test]
fn child_process_entry() {
    if std::env::var_os("HBA_CHILD").is_some() {
        hba_install_support::child_main();
    }
}
