//! The unprivileged OS user that runs test servers, and connecting a unix
//! socket as another user.

use std::io;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Name of the dedicated user created when running as root on a machine
/// without a `postgres` user.
const DEDICATED_USER: &str = "knocker-pg";

/// An OS user (name, uid, primary gid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl OsUser {
    /// Looks a user up by name in the passwd database.
    pub fn lookup(name: &str) -> Option<OsUser> {
        let user = nix::unistd::User::from_name(name).ok().flatten()?;
        Some(OsUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// The user that runs `initdb` and `postgres` for [`crate::Cluster`].
    ///
    /// As root: `postgres` if it exists, else the dedicated system user
    /// `knocker-pg` (created with `useradd` on first use). Otherwise: the
    /// current user (PostgreSQL only refuses root).
    pub fn server_user() -> &'static OsUser {
        static USER: OnceLock<OsUser> = OnceLock::new();
        USER.get_or_init(|| {
            if !running_as_root() {
                let uid = nix::unistd::geteuid();
                let user = nix::unistd::User::from_uid(uid).ok().flatten();
                return OsUser {
                    name: user.map_or_else(|| uid.to_string(), |u| u.name),
                    uid: uid.as_raw(),
                    gid: nix::unistd::getegid().as_raw(),
                };
            }
            if let Some(user) = OsUser::lookup("postgres") {
                return user;
            }
            if let Some(user) = OsUser::lookup(DEDICATED_USER) {
                return user;
            }
            // Parallel test processes may race here; a loser's useradd fails
            // with "already exists", which the lookup below settles.
            let _ = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    DEDICATED_USER,
                ])
                .status();
            OsUser::lookup(DEDICATED_USER).unwrap_or_else(|| {
                panic!(
                    "pg-harness: running as root, there is no `postgres` user and \
                     `useradd {DEDICATED_USER}` failed: PostgreSQL refuses to run as root, \
                     create an unprivileged user named postgres"
                )
            })
        })
    }

    /// A command that runs `program` as this user (when the current process
    /// is root; otherwise as the current user), with supplementary groups
    /// dropped and the working directory set to `/`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        if running_as_root() && self.uid != 0 {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd.current_dir("/");
        cmd
    }

    /// Gives `path` to this user (no-op unless running as root).
    pub fn chown(&self, path: &Path) -> io::Result<()> {
        if running_as_root() {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))?;
        }
        Ok(())
    }
}

/// Whether the effective uid is 0.
pub(crate) fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Connects the unix socket at `path` with the effective uid and gid of
/// `user`, so that a server doing peer authentication (`SO_PEERCRED`) sees
/// that user; the caller may be root. Hand the stream to
/// `tokio_postgres::Config::connect_raw`.
///
/// How: a short-lived helper thread switches its own credentials with the raw
/// `setresgid`/`setresuid` system calls and connects. On Linux credentials are
/// per thread at the kernel level; only glibc's wrappers (`seteuid` & co.)
/// broadcast a change to every thread of the process, which is why the raw
/// system calls are used. The kernel records the connecting thread's
/// credentials on the socket at `connect` time, and the thread then exits, so
/// the rest of the process never runs with changed credentials. When not
/// running as root this simply connects as the current user.
pub fn unix_stream_as(user: &OsUser, path: &Path) -> io::Result<tokio::net::UnixStream> {
    let path: PathBuf = path.to_owned();
    let (uid, gid) = (user.uid, user.gid);
    let switch = running_as_root() && uid != 0;
    let stream = std::thread::spawn(move || -> io::Result<UnixStream> {
        if switch {
            // Group first: once the uid is no longer root, the gid cannot change.
            set_effective_id_of_this_thread(libc::SYS_setresgid, gid)?;
            set_effective_id_of_this_thread(libc::SYS_setresuid, uid)?;
        }
        UnixStream::connect(&path)
    })
    .join()
    .map_err(|_| io::Error::other("unix_stream_as: helper thread panicked"))??;
    stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(stream)
}

/// The raw `setresgid`/`setresuid` system call `call` with the effective id
/// `id`, keeping the real and saved ids (-1): it changes the calling thread
/// only (see [`unix_stream_as`]).
fn set_effective_id_of_this_thread(call: libc::c_long, id: u32) -> io::Result<()> {
    // SAFETY: a plain system call with integer arguments.
    let rc = unsafe {
        libc::syscall(
            call,
            -1 as libc::c_long,
            libc::c_long::from(id),
            -1 as libc::c_long,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
