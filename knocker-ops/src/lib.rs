#![warn(missing_docs)]
//! knocker's commands as a library.
//!
//! Each command is a module with an options struct (plain data, no clap),
//! a plan step that returns the exact [`Plan`] (the diffs, SQL and commands
//! that `--dry-run` prints and that apply runs: one source), and an apply
//! step that returns a serialisable report. The binary `knocker` only turns
//! arguments into options and reports into text or JSON, and chooses exit
//! codes from [`Error::kind`]. See docs/ARCHITECTURE.md in the repository.
//!
//! ```
//! use knocker_ops::{FileChange, Plan};
//!
//! let mut plan = Plan::default();
//! plan.files.push(FileChange::new("/etc/postgresql/15/main/pg_hba.conf", b"a\n", b"a\nb\n"));
//! plan.sql.push("SELECT pg_catalog.pg_reload_conf()".into());
//! assert!(plan.to_string().contains("+b\n"));
//! ```

pub mod app;
pub mod autofailover;
pub mod diff;
pub mod error;
pub mod exposedb;
pub mod failover;
pub mod file_edit;
pub mod forwarders;
pub mod haproxy;
pub mod installer;
pub mod network;
pub mod plan;
pub mod replica;
pub mod test_hook;

pub use error::{Error, ErrorKind};

/// knocker's names for what pgctl creates, shared by every command: temp,
/// backup and lock files `.pg_hba.conf.knocker-*` / `.pg_hba.conf.knocker.lock`
/// (commands that edit the same file must share the lock, so they must
/// share this naming: pass it as `pgctl::hba_install::InstallOptions::naming`),
/// roles marked `managed by knocker`, `zz-knocker-listen.conf`.
pub fn naming() -> pgctl::naming::Naming {
    pgctl::naming::Naming::new("knocker")
}
pub use plan::{FileChange, Plan};
