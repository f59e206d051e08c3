//! The installer's integration tests, one module per area, in one test
//! binary (as cargo's own `tests/testsuite/`): one link instead of one per
//! file.
//!
//! Server tests sit in `mod pg_server` blocks: `.config/nextest.toml` puts
//! them in the `pg-server` group by name, and the module path in front
//! changes nothing.

mod common;

mod db_hosts;
mod dialogue;
mod option3;
mod options_local_and_new;
mod version;
