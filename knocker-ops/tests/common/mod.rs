//! Setup shared by the replica and failover tests on Debian clusters.
// Each test crate uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use knocker_ops::replica::{Action, Options};
use pg_harness::DebianCluster;

pub mod pgaf;

/// Paths a test removes when it ends (files a command left beside a
/// cluster: a moved-aside data directory, a passfile, backups), also on
/// failure.
pub struct Leftovers(pub Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// `knocker replica` options for `action` on the Debian cluster `cluster`,
/// with no knocknoc.conf (tests pass `--conn`).
pub fn options(action: Action, cluster: &DebianCluster) -> Options {
    let mut o = Options::new(action);
    o.cluster = Some(format!("{}/{}", cluster.major(), cluster.name()));
    o.config = "/nonexistent/knocknoc.conf".into();
    o
}
