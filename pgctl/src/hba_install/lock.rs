//! The exclusive lock that serialises installers of one pg_hba file.
//!
//! The lock is an `flock(2)` on a lock file next to the hba file
//! (`.pg_hba.conf.TOOL.lock`: a dot name not ending in `.conf`, so
//! `include_dir` never reads it). The kernel drops the lock when its holder
//! dies, even by SIGKILL, so a killed run never blocks the next one. The
//! file itself is never removed (removing a lock file races with a process
//! that has just opened it); its content is the holder's pid, only for the
//! "waiting for lock held by pid N" message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use super::error::InstallError;
use super::InstallEvent;

/// How often a waiting caller retries the lock.
const POLL: Duration = Duration::from_millis(5);

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct HbaLock {
    file: File,
    loaded: Option<FileId>,
}

/// Identity of a version of a file: any rename over it or write to it
/// changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

impl FileId {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            size: meta.size(),
        }
    }

    fn parse(line: &str) -> Option<FileId> {
        let mut fields = line
            .strip_prefix("loaded ")?
            .split(' ')
            .map(str::parse::<i128>);
        let mut next = || fields.next()?.ok();
        Some(FileId {
            dev: u64::try_from(next()?).ok()?,
            ino: u64::try_from(next()?).ok()?,
            mtime: i64::try_from(next()?).ok()?,
            mtime_nsec: i64::try_from(next()?).ok()?,
            size: u64::try_from(next()?).ok()?,
        })
    }
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loaded {} {} {} {} {}",
            self.dev, self.ino, self.mtime, self.mtime_nsec, self.size
        )
    }
}

impl HbaLock {
    /// Takes the lock `lock_path`, waiting at most `timeout`, and reports
    /// waiting through `events` once.
    pub(crate) async fn acquire(
        lock_path: &Path,
        timeout: Duration,
        events: &dyn Fn(InstallEvent),
    ) -> Result<(HbaLock, Duration), InstallError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .map_err(|e| InstallError::from_io("open the lock file", lock_path, e))?;
        let start = Instant::now();
        let mut announced = false;
        loop {
            match file.try_lock_exclusive() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return Err(InstallError::from_io("lock", lock_path, e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(InstallError::LockTimeout {
                    lock_file: lock_path.to_path_buf(),
                    holder_pid: holder_pid(&mut file),
                    waited,
                });
            }
            if !announced {
                announced = true;
                events(InstallEvent::WaitingForLock {
                    lock_file: lock_path.to_path_buf(),
                    holder_pid: holder_pid(&mut file),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        let waited = start.elapsed();
        let loaded =
            read_all(&mut file).and_then(|text| text.lines().nth(1).and_then(FileId::parse));
        let mut lock = HbaLock { file, loaded };
        // Best effort: the pid only feeds a message.
        let _ = lock.write();
        Ok((lock, waited))
    }

    /// The hba file the server loaded after the last confirmed reload, as
    /// recorded by [`HbaLock::record_loaded`].
    pub(crate) fn loaded(&self) -> Option<FileId> {
        self.loaded
    }

    /// Records that the server has loaded the file identified by `id`.
    pub(crate) fn record_loaded(&mut self, id: FileId) {
        self.loaded = Some(id);
        // Best effort: without the record the next run only reloads once more.
        let _ = self.write();
    }

    fn write(&mut self) -> std::io::Result<()> {
        let mut text = format!("{}\n", std::process::id());
        if let Some(id) = self.loaded {
            text.push_str(&format!("{id}\n"));
        }
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(text.as_bytes())
    }

    /// The path of the lock file for `hba_path`.
    pub(crate) fn path_for(dir: &Path, file_name: &str, naming: &crate::naming::Naming) -> PathBuf {
        dir.join(naming.lock_name(file_name))
    }
}

impl Drop for HbaLock {
    fn drop(&mut self) {
        // Closing the file releases the flock anyway; unlocking first makes
        // the release independent of other descriptors of the same file.
        let _ = FileExt::unlock(&self.file);
    }
}

fn read_all(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    Some(text)
}

fn holder_pid(file: &mut File) -> Option<u32> {
    read_all(file)?.lines().next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_waiting_caller_is_told_the_holders_pid_then_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = HbaLock::path_for(
            dir.path(),
            "pg_hba.conf",
            &crate::naming::Naming::new("tool"),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seen = Mutex::new(Vec::new());
        let record = |e: InstallEvent| seen.lock().unwrap().push(e);
        let (held, _) = runtime
            .block_on(HbaLock::acquire(&path, Duration::from_secs(1), &record))
            .unwrap();
        assert!(seen.lock().unwrap().is_empty());
        let err = runtime
            .block_on(HbaLock::acquire(&path, Duration::from_millis(50), &record))
            .unwrap_err();
        let pid = std::process::id();
        assert!(
            matches!(err, InstallError::LockTimeout { holder_pid: Some(p), .. } if p == pid),
            "{err:?}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![InstallEvent::WaitingForLock {
                lock_file: path.clone(),
                holder_pid: Some(pid)
            }]
        );
        drop(held);
        runtime
            .block_on(HbaLock::acquire(&path, Duration::from_millis(50), &record))
            .unwrap();
    }
}
