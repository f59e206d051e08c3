//! pghba's integration tests, one module per area, in one test binary (as
//! cargo's own `tests/testsuite/`): one link instead of one per file.
//!
//! Server tests end in `pg15`..`pg18` (`pg_harness::pg_test!`):
//! `.config/nextest.toml` puts them in the `pg-server` group by name, and
//! the module path in front changes nothing. proptest keeps its regression
//! seeds beside each module (`edit_props.proptest-regressions`).

mod differential_oracle;
mod edit_props;
mod matcher;
mod matcher_server;
mod round_trip;
mod validate;
