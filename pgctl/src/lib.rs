//! PostgreSQL operations for knocker: libpq-compatible connection strings,
//! connecting with TLS, server facts, roles and grants, listen address and
//! restart, and crash-safe pg_hba.conf installation.
//!
//! Every function here returns this crate's own error types; nothing prints.

pub mod appdb;
pub mod connect;
pub mod conninfo;
pub mod error;
pub mod grants;
pub mod hba_install;
pub mod listen;
pub mod roles;
pub mod server;
