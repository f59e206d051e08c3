#![warn(missing_docs)]
//! PostgreSQL operations for tools that set servers up: libpq-compatible connection strings,
//! connecting with TLS, server facts, roles and grants, listen address and
//! restart, and crash-safe pg_hba.conf installation.
//!
//! Every function here returns this crate's own error types; nothing prints.
//!
//! ```no_run
//! use pgctl::conninfo::{resolve_from_process_env, ConnInfo};
//! use pgctl::roles::{ensure_login_role, EnsureRole};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Parse like libpq, fill in PG* variables and .pgpass, then connect.
//! let info = ConnInfo::parse("postgresql://postgres@127.0.0.1:5432/appdb")?;
//! let params = resolve_from_process_env(&info)?.params;
//! let connected = pgctl::connect::connect(&params).await?;
//! let mut client = connected.into_client();
//!
//! let facts = pgctl::server::read_facts(&client).await?;
//! println!("PostgreSQL {} listening on {}", facts.major(), facts.listen_addresses);
//!
//! // A login role with a client-side SCRAM verifier, linked to the
//! // application database as its owner role.
//! let outcome = ensure_login_role(&client, "app_remote", &EnsureRole::default()).await?;
//! let owner = pgctl::grants::find_owner_role(&client, "appdb", None).await?;
//! pgctl::grants::link_role(&mut client, "app_remote", "appdb", &owner).await?;
//! if let Some(password) = outcome.password() {
//!     // `password` prints as ******** unless exposed on purpose.
//!     println!("new password for app_remote: {password}");
//! }
//! # Ok(()) }
//! ```

pub mod appdb;
pub mod atomic;
pub mod connect;
pub mod conninfo;
pub mod error;
pub mod grants;
pub mod hba_install;
pub mod listen;
pub mod naming;
pub mod os;
pub mod replication;
pub mod restart;
pub mod roles;
pub mod server;
