//! Reading and atomically saving knocknoc.conf.
//!
//! Saving writes a temporary file in the target's directory (created with mode
//! 0600 from the start, as the file holds a password), gives it the existing
//! file's owner and mode (or 0600 for a new file), flushes it to disk, renames
//! it over the target and flushes the directory. A crash at any point leaves
//! the old file or the new one, never a partial one. A crash before the
//! rename may leave a stale `.NAME.knocknoc-save-XXXXXX.tmp` file next to it,
//! which is never read; the next successful save removes such files once they
//! are older than [`STALE_TEMP_AGE`] (younger ones may belong to a save still
//! running).
//!
//! If the path is a symbolic link, the file it points to is replaced (the link
//! stays). ACLs, extended attributes and SELinux labels of the old file are
//! not copied.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::document::Document;
use crate::error::{LoadError, LoadErrorKind, SaveError, SaveStep};

/// The largest file [`Document::load`] reads (16 MiB): knocknoc.conf is a few
/// hundred bytes; anything this large is a mistake such as a device path.
pub const MAX_FILE_SIZE: u64 = 16 << 20;

/// Mode of a newly created file: the file holds a database password.
pub const NEW_FILE_MODE: u32 = 0o600;

/// Age after which a leftover temporary file of a killed save is removed.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Length of the random part tempfile puts in a temporary file's name.
const TEMP_RANDOM_LEN: usize = 6;

impl Document {
    /// Reads and parses the file at `path` (any bytes; see
    /// [`Document::parse`]). Use [`LoadError::is_not_found`] to tell a fresh
    /// host from an unreadable file.
    pub fn load(path: impl AsRef<Path>) -> Result<Document, LoadError> {
        let path = path.as_ref();
        let error = |kind| LoadError {
            path: path.to_owned(),
            kind,
        };
        let file = File::open(path).map_err(|e| error(LoadErrorKind::Io(e)))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(LoadErrorKind::Io(e)))?;
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(error(LoadErrorKind::TooLarge {
                limit: MAX_FILE_SIZE,
            }));
        }
        Ok(Document::parse(bytes))
    }

    /// Saves the document to `path` atomically; see [`write_atomic`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), SaveError> {
        write_atomic(path.as_ref(), &self.to_bytes())
    }
}

/// Replaces the file at `path` with `content` atomically, keeping the owner
/// and mode of an existing file and creating a new one with mode 0600 (see
/// the [module documentation](self)).
///
/// Run by a user who may not give the file its owner back (not root, file
/// owned by someone else), it fails at [`SaveStep::KeepOwner`] and changes
/// nothing, rather than silently handing the file to that user.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), SaveError> {
    let error = |step, source| SaveError {
        path: path.to_owned(),
        step,
        source,
    };
    let target = resolve_symlink(path).map_err(|e| error(SaveStep::Inspect, e))?;
    let existing = match fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => {
            return Err(error(
                SaveStep::Inspect,
                io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
            ))
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(error(SaveStep::Inspect, e)),
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            error(
                SaveStep::Inspect,
                io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            )
        })?;

    let prefix = format!(".{name}.{TEMP_MARKER}");
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .rand_bytes(TEMP_RANDOM_LEN)
        .permissions(Permissions::from_mode(NEW_FILE_MODE))
        .tempfile_in(&dir)
        .map_err(|e| error(SaveStep::CreateTemp, e))?;
    // The umask may have narrowed the mode given at creation: set it exactly.
    let mode = existing
        .as_ref()
        .map_or(NEW_FILE_MODE, |meta| meta.mode() & 0o7777);
    temp.as_file_mut()
        .write_all(content)
        .map_err(|e| error(SaveStep::Write, e))?;
    if let Some(meta) = &existing {
        let own = temp
            .as_file()
            .metadata()
            .map_err(|e| error(SaveStep::KeepOwner, e))?;
        if (own.uid(), own.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| error(SaveStep::KeepOwner, e))?;
        }
    }
    // After chown, which may clear set-id bits.
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(|e| error(SaveStep::SetMode, e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| error(SaveStep::SyncFile, e))?;
    temp.persist(&target)
        .map_err(|e| error(SaveStep::Rename, e.error))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| error(SaveStep::SyncDir, e))?;
    remove_stale_temps(&dir, &prefix);
    Ok(())
}

const TEMP_SUFFIX: &str = ".tmp";

/// Marks temporary files as this crate's, so that no other file is ever
/// taken for a stale one.
const TEMP_MARKER: &str = "knocknoc-save-";

/// Best effort: removes temporary files of earlier, killed saves of the same
/// file (`PREFIX` + random part + `.tmp`, older than [`STALE_TEMP_AGE`]).
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(random) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
        else {
            continue;
        };
        if random.len() != TEMP_RANDOM_LEN || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let stale = entry
            .metadata()
            .ok()
            .filter(|meta| meta.is_file())
            .and_then(|meta| meta.modified().ok())
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The file a path finally names: a symbolic link is followed (so that
/// saving replaces its target, not the link); a missing file is itself.
fn resolve_symlink(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => Ok(target),
            // A dangling link: create the file it points to.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let link = fs::read_link(path)?;
                Ok(match path.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                })
            }
            Err(e) => Err(e),
        },
        _ => Ok(path.to_owned()),
    }
}
