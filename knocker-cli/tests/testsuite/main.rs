//! knocker-cli's integration tests, one module per area, in one test
//! binary (as cargo's own `tests/testsuite/`): one link of the whole
//! knocker stack instead of one per file (docs/ARCHITECTURE.md, "Tests").
//!
//! Paths stay what they were for each module: snapbox's `file![]` is
//! relative to the module's file (`exposedb_e2e/` beside
//! `exposedb_e2e.rs`), trycmd's cases are relative to the crate
//! (`tests/cmd/`). The web-node children of `haproxy` re-run this binary
//! with the host test's full name (`haproxy::webnode_child_...`).
//!
//! No test here sets the process environment: a child process gets its
//! environment through `Command::env`.
//!
//! Test names keep their suffixes (`pg15`..`pg18`, `pg_server`,
//! `debian_cluster`): `.config/nextest.toml` puts server tests in the
//! `pg-server` group by name, and a module path in front changes nothing.

mod common;

mod autofailover_cli;
mod exposedb_cli;
mod exposedb_debian;
mod exposedb_e2e;
mod exposedb_restart;
mod haproxy;
mod hba_differential;
mod hba_lint_cli;
mod hba_lint_shadowing;
mod replica_cli;
mod version;
