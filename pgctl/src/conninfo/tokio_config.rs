//! One resolved host as a `tokio_postgres::Config` (types only, no runtime).

use super::params::{ConnectParams, SslMode, TargetSessionAttrs};

/// A `tokio_postgres::Config` for `params.hosts[host_index]` alone: user,
/// password (the connection's, else that host's `.pgpass` entry), database,
/// host (a unix-socket directory as `host_path`; `hostaddr` as a numeric
/// address with the host name kept for TLS), port, connect timeout,
/// `application_name` and `options`.
///
/// Only part of libpq's semantics fits tokio-postgres' types, so the caller
/// (the `connect` module) owns the rest: `ssl_mode` is `Disable` for
/// disable/allow, `Prefer` for prefer and `Require` for require/verify-ca/
/// verify-full (certificate checks are the TLS connector's job), and
/// `target_session_attrs` is set only for `any`/`read-write`/`read-only`
/// (`Any` otherwise: check primary/standby yourself).
///
/// # Panics
///
/// When `host_index` is out of range.
pub fn tokio_config(params: &ConnectParams, host_index: usize) -> tokio_postgres::Config {
    let host = &params.hosts[host_index];
    let mut config = tokio_postgres::Config::new();
    config.user(&params.user).dbname(&params.dbname);
    if let Some(password) = host.effective_password(params) {
        config.password(password);
    }
    if host.is_unix_socket() {
        config.host_path(&host.host);
    } else if let Some(addr) = host.hostaddr {
        let name = if host.host.is_empty() {
            addr.to_string()
        } else {
            host.host.clone()
        };
        config.host(name).hostaddr(addr);
    } else {
        config.host(&host.host);
    }
    config.port(host.port);
    if let Some(timeout) = params.connect_timeout {
        config.connect_timeout(timeout);
    }
    if let Some(name) = &params.application_name {
        config.application_name(name);
    }
    if let Some(options) = &params.options {
        config.options(options);
    }
    config.ssl_mode(match params.sslmode {
        SslMode::Disable | SslMode::Allow => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    config.target_session_attrs(match params.target_session_attrs {
        TargetSessionAttrs::ReadWrite => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
        TargetSessionAttrs::ReadOnly => tokio_postgres::config::TargetSessionAttrs::ReadOnly,
        _ => tokio_postgres::config::TargetSessionAttrs::Any,
    });
    config
}
