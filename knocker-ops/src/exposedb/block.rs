//! The block of rules `knocker exposedb` keeps in pg_hba.conf.
pub use pghba::exposedb_block::*;
