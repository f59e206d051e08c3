//! `initdb` once per (version, initdb options) into an on-disk template that
//! every cluster copies.
//!
//! nextest runs each test in its own process, so the template is guarded by a
//! file lock, built in a temp dir and renamed into place when complete.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::os_user::{running_as_root, OsUser};

/// Bumped when the way templates are made changes, so old ones are not used.
const TEMPLATE_FORMAT: &str = "2";

/// The base `initdb` options of every template.
pub(crate) const BASE_INITDB_ARGS: [&str; 8] = [
    "--username=postgres",
    "--auth=trust",
    "--encoding=UTF8",
    "--locale=C",
    "--no-sync",
    "--no-instructions",
    "--lc-messages=C",
    // 1 MB WAL segments instead of 16: a smaller template to copy.
    "--wal-segsize=1",
];

/// Where templates live: `<cache>/templates` as root, else a per-user dir in
/// the system temp dir.
fn templates_root() -> PathBuf {
    if running_as_root() {
        crate::cache_dir().join("templates")
    } else {
        std::env::temp_dir().join(format!(
            "knocker-pg-templates-{}",
            nix::unistd::geteuid().as_raw()
        ))
    }
}

/// A stable 64-bit FNV-1a hash (std's hasher may change between releases).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0u8)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Creates `dir` (and parents) with mode 0755 whatever the umask.
pub(crate) fn create_dir_0755(dir: &Path) {
    fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("pg-harness: cannot create {}: {e}", dir.display()));
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
}

/// Panics with a clear message unless `user` can search every directory on
/// the way to `path` (PostgreSQL runs as that user and must reach it).
/// Opens (creating it) and locks `path` exclusively, waiting for other test
/// processes; the lock holds until the file is dropped. Panics on failure.
pub(crate) fn lock_exclusive(path: &Path) -> fs::File {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("pg-harness: cannot open {}: {e}", path.display()));
    lock.lock_exclusive()
        .unwrap_or_else(|e| panic!("pg-harness: cannot lock {}: {e}", path.display()));
    lock
}

pub(crate) fn check_reachable(path: &Path, user: &OsUser) {
    if !running_as_root() || user.uid == 0 {
        return;
    }
    let mut current = PathBuf::new();
    for component in path.components() {
        current.push(component);
        let Ok(meta) = fs::metadata(&current) else {
            return;
        };
        if !meta.is_dir() {
            return;
        }
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        assert!(
            searchable,
            "pg-harness: the server user `{}` cannot reach {}: directory {} has mode {:o}; \
             keep PostgreSQL binaries and cluster dirs out of 0700 directories such as /root",
            user.name,
            path.display(),
            current.display(),
            mode & 0o7777
        );
    }
}

/// Returns the template data dir for `major` with `extra_args` given to
/// `initdb`, creating it on first use.
pub(crate) fn ensure_template(major: u32, extra_args: &[String], user: &OsUser) -> PathBuf {
    crate::require_binaries(major);
    let bin_dir = crate::bin_dir(major);
    check_reachable(&bin_dir, user);
    let postgres = bin_dir.join("postgres");
    let meta = fs::metadata(&postgres)
        .unwrap_or_else(|e| panic!("pg-harness: cannot stat {}: {e}", postgres.display()));
    let stamp = format!("{}:{}:{}", meta.len(), meta.mtime(), meta.mtime_nsec());
    let mut parts: Vec<&[u8]> = vec![
        TEMPLATE_FORMAT.as_bytes(),
        bin_dir.as_os_str().as_encoded_bytes(),
        stamp.as_bytes(),
    ];
    parts.extend(BASE_INITDB_ARGS.iter().map(|a| a.as_bytes()));
    parts.extend(extra_args.iter().map(|a| a.as_bytes()));
    let key = format!("{major}-{:016x}", fnv1a(&parts));

    let root = templates_root();
    let final_dir = root.join(&key);
    let data = final_dir.join("data");
    if data.join("PG_VERSION").is_file() {
        return data;
    }

    create_dir_0755(&root);
    check_reachable(&root, user);
    let lock_path = root.join(format!("{key}.lock"));
    let lock = lock_exclusive(&lock_path);
    // Someone else may have built it while we waited for the lock.
    if data.join("PG_VERSION").is_file() {
        return data;
    }

    let building = root.join(format!("{key}.building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&building);
    create_dir_0755(&building);
    let building_data = building.join("data");
    fs::create_dir(&building_data)
        .unwrap_or_else(|e| panic!("pg-harness: cannot create {}: {e}", building_data.display()));
    fs::set_permissions(&building_data, fs::Permissions::from_mode(0o700))
        .expect("pg-harness: chmod template data dir");
    user.chown(&building_data)
        .expect("pg-harness: chown template data dir");

    let output = user
        .command(bin_dir.join("initdb"))
        .arg("--pgdata")
        .arg(&building_data)
        .args(BASE_INITDB_ARGS)
        .args(extra_args)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .output()
        .unwrap_or_else(|e| panic!("pg-harness: cannot run initdb of PostgreSQL {major}: {e}"));
    if !output.status.success() {
        let _ = fs::remove_dir_all(&building);
        panic!(
            "pg-harness: initdb of PostgreSQL {major} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if let Ok(mut log) = fs::File::create(building.join("initdb.log")) {
        let _ = log.write_all(&output.stdout);
        let _ = log.write_all(&output.stderr);
    }
    // A stale final dir without PG_VERSION (interrupted by hand) is replaced.
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&building, &final_dir).unwrap_or_else(|e| {
        panic!(
            "pg-harness: cannot rename {} to {}: {e}",
            building.display(),
            final_dir.display()
        )
    });
    drop(lock);
    data
}
