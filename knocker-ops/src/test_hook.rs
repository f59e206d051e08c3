//! The one test hook of the crate: a named step at which the process stops
//! itself, so that a test can SIGKILL the real `knocker` binary exactly
//! there (docs/ARCHITECTURE.md, "Test hooks").
//!
//! With `KNOCKER_TEST_STOP_AT=<step>` in its environment, a command that
//! reaches `<step>` raises SIGSTOP on itself; the test sees the process
//! stopped (state `T`), kills it with SIGKILL and checks what the next run
//! does. Unset (or naming another step), [`stop_at`] does nothing.

/// The environment variable naming the step to stop at.
pub const STOP_AT_ENV: &str = "KNOCKER_TEST_STOP_AT";

/// Stops this process (SIGSTOP) when [`STOP_AT_ENV`] names `step`.
pub fn stop_at(step: &str) {
    if std::env::var_os(STOP_AT_ENV).is_some_and(|v| v == step) {
        // SAFETY: raise has no memory preconditions; SIGSTOP cannot be
        // caught, so no handler runs.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}
