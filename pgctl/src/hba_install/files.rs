//! File handling of the installation: names, atomic replacement keeping
//! owner and mode, backups and their pruning, stale temp files.
//!
//! Names used next to `pg_hba.conf` (for a hba file named NAME):
//! - `.NAME.TOOL-XXXXXX`: temp files (new content, backup in progress,
//!   restore); under the lock any such file is left over from a killed run.
//! - `.NAME.TOOL.lock`: the lock file (see `lock.rs`).
//! - `NAME.TOOL-backup-YYYYMMDDTHHMMSS.ffffffZ`: backups, visible, sorted
//!   by name = by time. None of these ends in `.conf`, so an `include_dir`
//!   pointed at the directory never reads them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::atomic::{self, AtomicWriteError};
use crate::naming::Naming;

use super::error::InstallError;

/// Where things live around one hba file.
#[derive(Debug, Clone)]
pub(crate) struct HbaPaths {
    /// The hba file.
    pub(crate) file: PathBuf,
    /// Its directory.
    pub(crate) dir: PathBuf,
    /// Its file name.
    pub(crate) name: String,
    /// The caller's names for the temp and backup files.
    pub(crate) naming: Naming,
}

impl HbaPaths {
    pub(crate) fn new(file: &Path, naming: &Naming) -> Result<HbaPaths, InstallError> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| InstallError::Io {
                action: "use",
                path: file.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name in UTF-8"),
            })?
            .to_string();
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(HbaPaths {
            file: file.to_path_buf(),
            dir,
            name,
            naming: naming.clone(),
        })
    }

    fn temp_prefix(&self) -> String {
        self.naming.temp_prefix(&self.name)
    }

    fn backup_prefix(&self) -> String {
        self.naming.backup_prefix(&self.name)
    }

    /// Removes temp files left by a killed run (call only under the lock).
    pub(crate) fn remove_stale_temps(&self) -> Result<Vec<PathBuf>, InstallError> {
        let prefix = self.temp_prefix();
        let mut removed = Vec::new();
        for path in self.list_with_prefix(&prefix)? {
            fs::remove_file(&path)
                .map_err(|e| InstallError::from_io("remove stale temp file", &path, e))?;
            removed.push(path);
        }
        Ok(removed)
    }

    /// Existing backups, oldest first.
    pub(crate) fn backups(&self) -> Result<Vec<PathBuf>, InstallError> {
        self.list_with_prefix(&self.backup_prefix())
    }

    fn list_with_prefix(&self, prefix: &str) -> Result<Vec<PathBuf>, InstallError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| InstallError::from_io("list", &self.dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| InstallError::from_io("list", &self.dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.starts_with(prefix)) {
                found.push(entry.path());
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes all but the newest `keep` backups; returns the removed ones.
    pub(crate) fn prune_backups(&self, keep: usize) -> Result<Vec<PathBuf>, InstallError> {
        let backups = self.backups()?;
        let excess = backups.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for path in backups.into_iter().take(excess) {
            fs::remove_file(&path)
                .map_err(|e| InstallError::from_io("remove old backup", &path, e))?;
            removed.push(path);
        }
        Ok(removed)
    }

    /// A backup name for now that does not exist yet.
    pub(crate) fn new_backup_path(&self) -> PathBuf {
        let stamp = utc_stamp(SystemTime::now());
        let base = format!("{}{}", self.backup_prefix(), stamp);
        let mut path = self.dir.join(&base);
        let mut n = 1;
        while path.symlink_metadata().is_ok() {
            path = self.dir.join(format!("{base}-{n}"));
            n += 1;
        }
        path
    }
}

/// Owner, group and permission bits to give every file written for the hba
/// file: the original's.
pub(crate) use crate::atomic::Ownership;

impl From<AtomicWriteError> for InstallError {
    fn from(e: AtomicWriteError) -> InstallError {
        InstallError::from_io(e.step, e.path, e.source)
    }
}

/// Durability switches and the time spent in fsync.
#[derive(Debug)]
pub(crate) struct Syncer {
    pub(crate) enabled: bool,
    pub(crate) spent: Duration,
}

impl Syncer {
    fn sync_file(&mut self, temp: &atomic::TempFile) -> Result<(), InstallError> {
        if !self.enabled {
            return Ok(());
        }
        let start = Instant::now();
        let result = temp.sync();
        self.spent += start.elapsed();
        Ok(result?)
    }

    pub(crate) fn sync_dir(&mut self, dir: &Path) -> Result<(), InstallError> {
        if !self.enabled {
            return Ok(());
        }
        let start = Instant::now();
        let result = atomic::sync_dir(dir);
        self.spent += start.elapsed();
        Ok(result?)
    }
}

/// A temp file next to the hba file ([`atomic::TempFile`]), removed on drop
/// unless renamed.
#[derive(Debug)]
pub(crate) struct TempFile(atomic::TempFile);

impl TempFile {
    /// Creates `.NAME.TOOL-XXXXXX` with the given ownership from the
    /// start and writes `bytes` to it.
    pub(crate) fn create(
        paths: &HbaPaths,
        owner: Ownership,
        bytes: &[u8],
    ) -> Result<TempFile, InstallError> {
        Ok(TempFile(atomic::TempFile::create(
            &paths.dir,
            &paths.temp_prefix(),
            owner,
            bytes,
        )?))
    }

    /// fsyncs the content.
    pub(crate) fn sync(&mut self, syncer: &mut Syncer) -> Result<(), InstallError> {
        syncer.sync_file(&self.0)
    }

    /// Renames the temp file to `target` (atomically replacing it).
    pub(crate) fn rename_to(self, target: &Path) -> Result<(), InstallError> {
        Ok(self.0.rename_to(target)?)
    }
}

/// Writes `bytes` to `target` atomically with the given ownership: temp
/// file, fsync, rename, fsync of the directory.
pub(crate) fn replace_atomically(
    paths: &HbaPaths,
    target: &Path,
    owner: Ownership,
    bytes: &[u8],
    syncer: &mut Syncer,
) -> Result<(), InstallError> {
    let mut temp = TempFile::create(paths, owner, bytes)?;
    temp.sync(syncer)?;
    temp.rename_to(target)?;
    syncer.sync_dir(&paths.dir)
}

/// Checks that `path` may be written by this process, without opening it:
/// catches immutable files (EPERM) and read-only mounts (EROFS) before
/// anything is written. (`faccessat` rather than an open for writing, which
/// would wake inotify watchers with a close-after-write event.) An
/// append-only file passes here and fails at the rename, before anything
/// changed.
pub(crate) fn check_writable(path: &Path) -> Result<(), InstallError> {
    use std::os::unix::ffi::OsStrExt;
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| InstallError::Io {
            action: "use",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
    // SAFETY: `c_path` is a NUL-terminated string alive for the whole call;
    // faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(InstallError::from_io(
            "write",
            path,
            io::Error::last_os_error(),
        ))
    }
}

/// `YYYYMMDDTHHMMSS.ffffffZ` in UTC.
fn utc_stamp(t: SystemTime) -> String {
    crate::os::utc_compact_timestamp_of(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn utc_stamp_formats_known_instants() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_764_121_082_123_456);
        assert_eq!(utc_stamp(t), "20251126T013802.123456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "20000229T000000.000000Z");
    }

    #[test]
    fn generated_names_never_end_in_conf() {
        let paths = HbaPaths::new(
            Path::new("/etc/postgresql/15/main/pg_hba.conf"),
            &Naming::new("tool"),
        )
        .unwrap();
        assert!(!paths.new_backup_path().to_string_lossy().ends_with(".conf"));
        assert!(paths.temp_prefix().starts_with('.'));
        assert_eq!(paths.temp_prefix(), ".pg_hba.conf.tool-");
        assert_eq!(paths.backup_prefix(), "pg_hba.conf.tool-backup-");
    }
}
