//! Connecting to PostgreSQL as libpq would: TLS per `sslmode`, several hosts
//! tried in order, `target_session_attrs`, connect timeout.

mod params;

pub use params::{ConnectParams, HostParam, SslMode, TargetSessionAttrs};
