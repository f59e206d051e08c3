//! Crash-safe editing of one configuration file: an exclusive lock, backups
//! (the newest [`BACKUPS_KEPT`] kept), and atomic replacement that keeps
//! owner and mode.
//!
//! pgctl has the same machinery for pg_hba.conf, but crate-private and tied
//! to its own error type and to tokio; the commands of this crate that edit
//! other files (haproxy.cfg, knocknoc.conf) use this small synchronous one.
//!
//! Names used next to a file named NAME:
//! - `.NAME.knocker-XXXXXX`: temp files (a candidate, a backup being
//!   written); under the lock any such file is left over from a killed run
//!   and is removed.
//! - `.NAME.knocker.lock`: the lock file, never removed (removing a lock
//!   file races with a process that has just opened it).
//! - `NAME.knocker-backup-YYYYMMDDTHHMMSS.ffffffZ`: backups, sorted by name
//!   = by time. None of these names ends in `.cfg` or `.conf`, so a
//!   directory loaded by HAProxy (`*.cfg`) or an include never reads them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fs4::fs_std::FileExt;
use rand::distr::{Alphanumeric, SampleString};

/// How many backups of a file are kept.
pub const BACKUPS_KEPT: usize = 10;

/// An I/O failure with what was being done and to which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done ("read", "rename a temp file over", ...).
    pub action: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// One file and the names around it.
#[derive(Debug, Clone)]
pub struct EditedFile {
    path: PathBuf,
    dir: PathBuf,
    name: String,
}

impl EditedFile {
    /// The file at `path` (symbolic links are followed, so the link stays a
    /// link and its target is replaced).
    pub fn new(path: &Path) -> Result<EditedFile, FileError> {
        let path = match fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
            Err(e) => return Err(err("resolve", path)(e)),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                err("use", &path)(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a file name in UTF-8",
                ))
            })?
            .to_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(EditedFile { path, dir, name })
    }

    /// The file (its target when given a symbolic link).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the exclusive lock, waiting at most `timeout`.
    pub fn lock(&self, timeout: Duration) -> Result<FileLock, FileError> {
        let lock_path = self.dir.join(format!(".{}.knocker.lock", self.name));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(err("open the lock file", &lock_path))?;
        let start = Instant::now();
        loop {
            match file.try_lock_exclusive() {
                Ok(true) => break,
                Ok(false) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(false) => {
                    return Err(err("lock", &lock_path)(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "another knocker run holds the lock (waited {:.1} s)",
                            timeout.as_secs_f64()
                        ),
                    )))
                }
                Err(e) => return Err(err("lock", &lock_path)(e)),
            }
        }
        let lock = FileLock { file };
        self.remove_stale_temps()?;
        Ok(lock)
    }

    fn temp_prefix(&self) -> String {
        format!(".{}.knocker-", self.name)
    }

    fn backup_prefix(&self) -> String {
        format!("{}.knocker-backup-", self.name)
    }

    fn list_with_prefix(&self, prefix: &str) -> Result<Vec<PathBuf>, FileError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(err("list", &self.dir))? {
            let entry = entry.map_err(err("list", &self.dir))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix))
            {
                found.push(entry.path());
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes temp files of a killed run (call only under the lock).
    fn remove_stale_temps(&self) -> Result<(), FileError> {
        for path in self.list_with_prefix(&self.temp_prefix())? {
            fs::remove_file(&path).map_err(err("remove stale temp file", &path))?;
        }
        Ok(())
    }

    /// Existing backups, oldest first.
    pub fn backups(&self) -> Result<Vec<PathBuf>, FileError> {
        self.list_with_prefix(&self.backup_prefix())
    }

    /// Writes `bytes` to a new temp file next to the file, with the file's
    /// owner and mode (or `new_mode` for a file that does not exist yet),
    /// fsynced. Rename it over the file with [`Candidate::install`].
    pub fn candidate(&self, bytes: &[u8], new_mode: u32) -> Result<Candidate, FileError> {
        let owner = match fs::metadata(&self.path) {
            Ok(meta) => Some((meta.uid(), meta.gid(), meta.mode() & 0o7777)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(err("stat", &self.path)(e)),
        };
        let mode = owner.map_or(new_mode, |o| o.2);
        let (path, file) = loop {
            let suffix = Alphanumeric.sample_string(&mut rand::rng(), 6);
            let path = self.dir.join(format!("{}{}", self.temp_prefix(), suffix));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o777)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err("create a temp file in", &self.dir)(e)),
            }
        };
        let mut candidate = Candidate {
            path,
            file: Some(file),
            installed: false,
        };
        let file = candidate.file.as_mut().expect("open until installed");
        if let Some((uid, gid, _)) = owner {
            std::os::unix::fs::fchown(&*file, Some(uid), Some(gid))
                .map_err(err("give the owner of the original to", &candidate.path))?;
        }
        // After fchown (which may clear set-id bits) and regardless of umask.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err("set the mode of", &candidate.path))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(err("write", &candidate.path))?;
        Ok(candidate)
    }

    /// Copies `bytes` (the file's current content) to a new backup, prunes
    /// all but the newest [`BACKUPS_KEPT`], and returns the backup's path.
    pub fn backup(&self, bytes: &[u8]) -> Result<PathBuf, FileError> {
        let base = format!("{}{}", self.backup_prefix(), utc_stamp(SystemTime::now()));
        let mut target = self.dir.join(&base);
        let mut n = 1;
        while target.symlink_metadata().is_ok() {
            target = self.dir.join(format!("{base}-{n}"));
            n += 1;
        }
        self.candidate(bytes, 0o600)?
            .install_as(&target, &self.dir)?;
        let backups = self.backups()?;
        let excess = backups.len().saturating_sub(BACKUPS_KEPT);
        for old in backups.into_iter().take(excess) {
            fs::remove_file(&old).map_err(err("remove old backup", &old))?;
        }
        Ok(target)
    }

    /// Writes `bytes` over the file atomically (temp file, fsync, rename,
    /// fsync of the directory).
    pub fn replace(&self, bytes: &[u8], new_mode: u32) -> Result<(), FileError> {
        self.candidate(bytes, new_mode)?.install(self)
    }
}

/// The exclusive lock of one file; released when dropped or when the
/// process dies (it is an `flock(2)`).
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// A complete, fsynced temp file next to the file; removed when dropped
/// unless installed.
#[derive(Debug)]
pub struct Candidate {
    path: PathBuf,
    file: Option<File>,
    installed: bool,
}

impl Candidate {
    /// Where the candidate is (for a validator to read).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the candidate over `file` and fsyncs the directory.
    pub fn install(self, file: &EditedFile) -> Result<(), FileError> {
        self.install_as(&file.path, &file.dir)
    }

    fn install_as(mut self, target: &Path, dir: &Path) -> Result<(), FileError> {
        self.file = None;
        fs::rename(&self.path, target).map_err(err("rename a temp file over", target))?;
        self.installed = true;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync directory", dir))
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if !self.installed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// `YYYYMMDDTHHMMSS.ffffffZ` in UTC.
fn utc_stamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_mode_and_backups_are_pruned_to_ten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        fs::write(&path, "a\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let file = EditedFile::new(&path).unwrap();
        let _lock = file.lock(Duration::from_secs(1)).unwrap();
        for i in 0..12 {
            file.backup(format!("{i}\n").as_bytes()).unwrap();
        }
        file.replace(b"b\n", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"b\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        let backups = file.backups().unwrap();
        assert_eq!(backups.len(), BACKUPS_KEPT);
        assert_eq!(fs::read(backups.last().unwrap()).unwrap(), b"11\n");
        assert!(backups
            .iter()
            .all(|b| !b.to_string_lossy().ends_with(".cfg")));
        // Only the file, the lock and the backups: no temp file left.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2 + BACKUPS_KEPT);
    }

    #[test]
    fn a_second_locker_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = EditedFile::new(&dir.path().join("x.cfg")).unwrap();
        let held = file.lock(Duration::from_secs(1)).unwrap();
        let e = file.lock(Duration::from_millis(30)).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::TimedOut);
        drop(held);
        file.lock(Duration::from_millis(30)).unwrap();
    }
}
