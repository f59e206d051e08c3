//! The exclusive lock that serialises installers of one pg_hba file.
//!
//! The lock is an `flock(2)` on a lock file next to the hba file
//! (`.pg_hba.conf.knocker.lock`: a dot name not ending in `.conf`, so
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
        // Best effort: the pid only feeds a message.
        let _ = write_pid(&mut file);
        Ok((HbaLock { file }, waited))
    }

    /// The path of the lock file for `hba_path`.
    pub(crate) fn path_for(dir: &Path, file_name: &str) -> PathBuf {
        dir.join(format!(".{file_name}.knocker.lock"))
    }
}

impl Drop for HbaLock {
    fn drop(&mut self) {
        // Closing the file releases the flock anyway; unlocking first makes
        // the release independent of other descriptors of the same file.
        let _ = FileExt::unlock(&self.file);
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())
}

fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_waiting_caller_is_told_the_holders_pid_then_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = HbaLock::path_for(dir.path(), "pg_hba.conf");
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
