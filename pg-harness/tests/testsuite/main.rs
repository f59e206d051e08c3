//! pg-harness's own tests in one test binary (as cargo's
//! `tests/testsuite/`). `missing_binaries` stays a binary of its own: it
//! sets `KNOCKER_PG_CACHE` in the process environment, which no other test
//! in the same process may read meanwhile.

mod cluster;
mod debian;
