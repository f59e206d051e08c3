//! Replacing a file so that a crash leaves either the old or the new
//! content, never a mix: a temporary file in the same directory, given the
//! final owner and mode before any byte is written, fsynced, renamed over
//! the target, and the directory fsynced. pg_hba.conf installation
//! ([`crate::hba_install`]) and the `listen_addresses` include file
//! ([`crate::listen`]) both write through this module.
//!
//! Temporary files are dot files named by the caller's prefix (see
//! [`crate::naming::Naming`]), which PostgreSQL's `include_dir` ignores.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};

/// Owner, group and permission bits a written file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
}

impl Ownership {
    /// Those of an existing file.
    pub fn of(meta: &fs::Metadata) -> Ownership {
        Ownership {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// A step of an atomic write that failed, with the file it concerned and
/// the OS error.
#[derive(Debug, thiserror::Error)]
#[error("cannot {step} {}: {source}", path.display())]
pub struct AtomicWriteError {
    /// What was being done ("create a temp file in", "write", "fsync",
    /// "rename a temp file over", ...).
    pub step: &'static str,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

fn failed(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicWriteError {
    let path = path.to_path_buf();
    move |source| AtomicWriteError { step, path, source }
}

/// A temporary file next to its target, removed on drop unless renamed.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
    renamed: bool,
}

impl TempFile {
    /// Creates `DIR/PREFIXxxxxxx` with `owner`'s uid, gid and mode from the
    /// start (mode at creation, then fchown and fchmod before any byte is
    /// written, whatever the umask), and writes `bytes` to it.
    pub fn create(
        dir: &Path,
        prefix: &str,
        owner: Ownership,
        bytes: &[u8],
    ) -> Result<TempFile, AtomicWriteError> {
        let (path, file) = loop {
            let suffix = Alphanumeric.sample_string(&mut rand::rng(), 6);
            let path = dir.join(format!("{prefix}{suffix}"));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(owner.mode & 0o777)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(failed("create a temp file in", dir)(e)),
            }
        };
        let mut temp = TempFile {
            path,
            file: Some(file),
            renamed: false,
        };
        temp.set_ownership(owner)?;
        let file = temp.file.as_mut().expect("open until renamed");
        file.write_all(bytes).map_err(failed("write", &temp.path))?;
        Ok(temp)
    }

    fn set_ownership(&mut self, owner: Ownership) -> Result<(), AtomicWriteError> {
        let file = self.file.as_ref().expect("open until renamed");
        let meta = file.metadata().map_err(failed("stat", &self.path))?;
        if meta.uid() != owner.uid || meta.gid() != owner.gid {
            std::os::unix::fs::fchown(file, Some(owner.uid), Some(owner.gid))
                .map_err(failed("give the owner of the original to", &self.path))?;
        }
        // After fchown (which may clear set-id bits) and regardless of umask.
        file.set_permissions(fs::Permissions::from_mode(owner.mode))
            .map_err(failed("set the mode of", &self.path))?;
        Ok(())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs the content.
    pub fn sync(&self) -> Result<(), AtomicWriteError> {
        let file = self.file.as_ref().expect("open until renamed");
        file.sync_all().map_err(failed("fsync", &self.path))
    }

    /// Renames it to `target` (atomically replacing it).
    pub fn rename_to(mut self, target: &Path) -> Result<(), AtomicWriteError> {
        self.file = None;
        fs::rename(&self.path, target).map_err(failed("rename a temp file over", target))?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsyncs a directory (after a rename in it).
pub fn sync_dir(dir: &Path) -> Result<(), AtomicWriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed("fsync directory", dir))
}

/// Writes `bytes` to `target` (in `dir`) atomically with `owner`'s owner
/// and mode: temp file `PREFIXxxxxxx`, fsync, rename, fsync of `dir`.
pub fn replace(
    dir: &Path,
    target: &Path,
    prefix: &str,
    owner: Ownership,
    bytes: &[u8],
) -> Result<(), AtomicWriteError> {
    let temp = TempFile::create(dir, prefix, owner, bytes)?;
    temp.sync()?;
    temp.rename_to(target)?;
    sync_dir(dir)
}

/// Removes the files of `dir` whose names start with `prefix` and that were
/// last changed more than `older_than` ago: temporary files of runs killed
/// before their rename (a live run renames within milliseconds). Returns
/// the ones removed.
pub fn remove_stale_temps(
    dir: &Path,
    prefix: &str,
    older_than: Duration,
) -> Result<Vec<PathBuf>, AtomicWriteError> {
    let mut removed = Vec::new();
    let entries = fs::read_dir(dir).map_err(failed("read", dir))?;
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(prefix));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > older_than);
        if ours && stale {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed("remove the stale temporary file", &path)(e)),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_gives_owner_and_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.conf");
        fs::write(&target, "old\n").unwrap();
        let meta = fs::metadata(dir.path()).unwrap();
        let owner = Ownership {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: 0o640,
        };
        replace(dir.path(), &target, ".f.conf.t-", owner, b"new\n").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f.conf"]);
    }

    #[test]
    fn a_temp_file_dropped_before_its_rename_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let owner = Ownership::of(&fs::metadata(dir.path()).unwrap());
        let temp = TempFile::create(dir.path(), ".x.", owner, b"a").unwrap();
        let path = temp.path().to_path_buf();
        assert!(path.exists());
        drop(temp);
        assert!(!path.exists());
    }
}
