//! Atomic saving: owner and mode kept, new files 0600, a crash mid-save never
//! leaves a partial file, errors name the path and the OS error.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use knocknoc_conf::{write_atomic, DatabaseUrl, Document, SaveStep};

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Files other than `name` left in `dir`.
fn leftovers(dir: &Path, name: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != name)
        .collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn new_file_is_0600_whatever_the_umask() {
    let dir = temp_dir();
    let path = dir.path().join("knocknoc.conf");
    let mut doc = Document::new();
    doc.set_database_url(&DatabaseUrl::new("postgres://u:secret@h/db").unwrap())
        .unwrap();
    // SAFETY: umask has no preconditions; it is restored below. Other tests
    // in this binary create files only in their own directories, with
    // explicit modes where the mode matters.
    let old = unsafe { libc::umask(0) };
    let saved = doc.save(&path);
    unsafe { libc::umask(old) };
    saved.unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(fs::read(&path).unwrap(), doc.to_bytes());
    assert!(leftovers(dir.path(), "knocknoc.conf").is_empty());
}

#[test]
fn existing_file_keeps_owner_and_mode() {
    let dir = temp_dir();
    let path = dir.path().join("knocknoc.conf");
    fs::write(&path, "Listen = 127.0.0.1:8756\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    // As root, hand the file to another user and group, as an installed
    // knocknoc.conf owned by the service account would be.
    let (uid, gid) = if is_root() {
        (4242, 4343)
    } else {
        let meta = fs::metadata(&path).unwrap();
        (meta.uid(), meta.gid())
    };
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();

    let inode = fs::metadata(&path).unwrap().ino();
    let mut doc = Document::load(&path).unwrap();
    doc.set_listen("0.0.0.0:8756".parse().unwrap()).unwrap();
    doc.save(&path).unwrap();

    let meta = fs::metadata(&path).unwrap();
    assert_ne!(
        meta.ino(),
        inode,
        "replaced by rename, not rewritten in place"
    );
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "Listen = 0.0.0.0:8756\n"
    );
    assert!(leftovers(dir.path(), "knocknoc.conf").is_empty());
}

#[test]
fn saving_through_a_symlink_replaces_its_target() {
    let dir = temp_dir();
    let real = dir.path().join("real.conf");
    let link = dir.path().join("knocknoc.conf");
    fs::write(&real, "A = 1\n").unwrap();
    std::os::unix::fs::symlink("real.conf", &link).unwrap();
    write_atomic(&link, b"A = 2\n").unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&real).unwrap(), b"A = 2\n");
}

#[test]
fn errors_name_the_path_the_step_and_the_os_error() {
    let dir = temp_dir();
    let path = dir.path().join("missing-dir").join("knocknoc.conf");
    let err = write_atomic(&path, b"x").unwrap_err();
    assert_eq!(err.step, SaveStep::CreateTemp);
    assert_eq!(err.path, path);
    assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");

    let err = write_atomic(dir.path(), b"x").unwrap_err();
    assert_eq!(err.step, SaveStep::Inspect);
}

#[test]
fn load_tells_missing_from_unreadable() {
    let dir = temp_dir();
    let err = Document::load(dir.path().join("nope.conf")).unwrap_err();
    assert!(err.is_not_found());
    let err = Document::load(dir.path()).unwrap_err();
    assert!(!err.is_not_found());
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn load_keeps_non_utf8_bytes() {
    let dir = temp_dir();
    let path = dir.path().join("knocknoc.conf");
    let bytes = b"A = 1\r\nB = \xff\xfe\nC = 'x'";
    fs::write(&path, bytes).unwrap();
    let mut doc = Document::load(&path).unwrap();
    doc.set("A", 2).unwrap();
    doc.save(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"A = 2\r\nB = \xff\xfe\nC = 'x'");
}

/// Set in the child process: the file to save and how to die.
const CHILD_PATH: &str = "KNOCKNOC_CONF_TEST_CHILD_PATH";
const CHILD_IGNORE_SIGXFSZ: &str = "KNOCKNOC_CONF_TEST_CHILD_IGNORE_SIGXFSZ";
/// The child may write this many bytes to any file.
const SIZE_LIMIT: u64 = 4096;

/// In the child: save a document larger than the file size limit. Returns
/// only when the save fails (with SIGXFSZ ignored); otherwise the kernel kills
/// the process in the middle of writing the temporary file.
fn child_saves_under_file_size_limit(path: &Path) -> ! {
    let limit = libc::rlimit {
        rlim_cur: SIZE_LIMIT,
        rlim_max: SIZE_LIMIT,
    };
    // SAFETY: plain system calls with valid arguments, in a child process
    // that exits right after the save.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        if std::env::var_os(CHILD_IGNORE_SIGXFSZ).is_some() {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
    }
    let mut doc = Document::load(path).unwrap();
    doc.set("Big", "x".repeat(64 * 1024)).unwrap();
    match doc.save(path) {
        Ok(()) => std::process::exit(0),
        Err(e) if e.step == SaveStep::Write => std::process::exit(3),
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

/// Runs `test_name` of this test binary again as a child that saves `path`
/// under RLIMIT_FSIZE.
fn run_child(test_name: &str, path: &Path, ignore_sigxfsz: bool) -> std::process::ExitStatus {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_PATH, path);
    if ignore_sigxfsz {
        command.env(CHILD_IGNORE_SIGXFSZ, "1");
    }
    command.status().unwrap()
}

fn old_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("knocknoc.conf");
    let old = b"# old\nListen = 127.0.0.1:8756\n".to_vec();
    fs::write(&path, &old).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    (path, old)
}

#[test]
fn killed_mid_save_leaves_the_old_file() {
    if let Some(path) = std::env::var_os(CHILD_PATH) {
        child_saves_under_file_size_limit(Path::new(&path));
    }
    let dir = temp_dir();
    let (path, old) = old_file(dir.path());
    let status = run_child("killed_mid_save_leaves_the_old_file", &path, false);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGXFSZ), "{status:?}");
    assert_eq!(fs::read(&path).unwrap(), old);
    // The kernel stopped the write in the temporary file, which stays behind
    // cut short, is never read, and is not the file.
    let stale = leftovers(dir.path(), "knocknoc.conf");
    assert_eq!(stale.len(), 1, "{stale:?}");
    let stale_meta = fs::metadata(&stale[0]).unwrap();
    assert_eq!(stale_meta.len(), SIZE_LIMIT);
    // It held the content (a password) with mode 0600 from the start, even
    // though the file it replaces is 0644.
    assert_eq!(stale_meta.mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    assert!(stale[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(".knocknoc.conf.knocknoc-save-"));
    // The next save works and is whole.
    let mut doc = Document::load(&path).unwrap();
    doc.set("Big", "x".repeat(64 * 1024)).unwrap();
    doc.save(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), doc.to_bytes());
}

#[test]
fn failed_write_mid_save_leaves_the_old_file_and_no_temp() {
    if let Some(path) = std::env::var_os(CHILD_PATH) {
        child_saves_under_file_size_limit(Path::new(&path));
    }
    let dir = temp_dir();
    let (path, old) = old_file(dir.path());
    let status = run_child(
        "failed_write_mid_save_leaves_the_old_file_and_no_temp",
        &path,
        true,
    );
    assert_eq!(status.code(), Some(3), "{status:?}");
    assert_eq!(fs::read(&path).unwrap(), old);
    assert!(leftovers(dir.path(), "knocknoc.conf").is_empty());
}

#[test]
fn stale_temp_files_of_killed_saves_are_removed_once_old() {
    let dir = temp_dir();
    let path = dir.path().join("knocknoc.conf");
    let old_enough = std::time::SystemTime::now() - knocknoc_conf::STALE_TEMP_AGE * 2;
    let make = |name: &str, old: bool| {
        let file = fs::File::create(dir.path().join(name)).unwrap();
        if old {
            file.set_modified(old_enough).unwrap();
        }
    };
    make(".knocknoc.conf.knocknoc-save-a1B2c3.tmp", true); // stale: removed
    make(".knocknoc.conf.knocknoc-save-x9y8z7.tmp", false); // a save still running: kept
    make(".knocknoc.conf.backup.tmp", true); // not ours: kept
    make(".other.conf.knocknoc-save-a1B2c3.tmp", true); // another file's: kept
    write_atomic(&path, b"A = 1\n").unwrap();
    let mut left: Vec<_> = leftovers(dir.path(), "knocknoc.conf")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".knocknoc.conf.backup.tmp",
            ".knocknoc.conf.knocknoc-save-x9y8z7.tmp",
            ".other.conf.knocknoc-save-a1B2c3.tmp"
        ]
    );
}

/// Set in the child process that saves as an unprivileged user.
const CHILD_UNPRIVILEGED_PATH: &str = "KNOCKNOC_CONF_TEST_CHILD_UNPRIVILEGED_PATH";

#[test]
fn saving_a_file_one_cannot_give_back_to_its_owner_fails_and_changes_nothing() {
    if let Some(path) = std::env::var_os(CHILD_UNPRIVILEGED_PATH) {
        let mut doc = Document::load(&path).unwrap();
        doc.set("A", 2).unwrap();
        match doc.save(&path) {
            Err(e) if e.step == SaveStep::KeepOwner => std::process::exit(4),
            other => panic!("expected a KeepOwner failure, got {other:?}"),
        }
    }
    if !is_root() {
        // Unprivileged already: a root-owned file cannot be prepared here,
        // and the test below needs root to switch users.
        return;
    }
    // A root-owned file in a directory the unprivileged user may write to:
    // it could create the temporary file but not give it to root.
    let dir = temp_dir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("knocknoc.conf");
    fs::write(&path, "A = 1\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    use std::os::unix::process::CommandExt;
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "saving_a_file_one_cannot_give_back_to_its_owner_fails_and_changes_nothing",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_UNPRIVILEGED_PATH, &path)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(4), "{status:?}");
    assert_eq!(fs::read(&path).unwrap(), b"A = 1\n");
    assert_eq!(fs::metadata(&path).unwrap().uid(), 0);
    assert!(leftovers(dir.path(), "knocknoc.conf").is_empty());
}
