//! Opening the byte stream to a server: TCP, unix-domain sockets, and unix
//! sockets opened with another OS user's identity (for peer authentication).

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The stream tokio-postgres talks over: one type for TCP and unix sockets,
/// so every attempt produces the same connection type.
#[derive(Debug)]
pub(crate) enum PgStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            PgStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            PgStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            PgStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            PgStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Opens a TCP connection (no delay, like libpq), from local address
/// `source` when given.
pub(crate) async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<PgStream> {
    let stream = match source {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(PgStream::Tcp(stream))
}

/// The socket file of a unix-socket "host": `<dir>/.s.PGSQL.<port>`; a host
/// starting with `@` names Linux's abstract namespace, as in libpq.
pub(crate) fn socket_path(host: &str, port: u16) -> PathBuf {
    PathBuf::from(format!("{host}/.s.PGSQL.{port}"))
}

fn connect_std(path: &std::path::Path) -> io::Result<StdUnixStream> {
    let text = path.as_os_str().as_encoded_bytes();
    if let Some(name) = text.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        StdUnixStream::connect_addr(&addr)
    } else {
        StdUnixStream::connect(path)
    }
}

fn into_tokio(stream: StdUnixStream) -> io::Result<PgStream> {
    stream.set_nonblocking(true)?;
    Ok(PgStream::Unix(UnixStream::from_std(stream)?))
}

/// Opens a unix-domain socket connection.
pub(crate) async fn unix(path: PathBuf) -> io::Result<PgStream> {
    // connect(2) on a unix socket does not block for long (the listen
    // backlog answers at once), so no thread hand-off is needed.
    into_tokio(connect_std(&path)?)
}

/// An OS account, as needed to take its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OsIdentity {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
}

/// Looks up an OS user by name (`getpwnam_r`).
pub(crate) fn lookup_os_user(name: &str) -> io::Result<OsIdentity> {
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user name contains NUL"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for the out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and the buffer length is
    // its real length; the strings it fills in point into `buf`, which we do
    // not read after it is dropped (only uid and gid are copied out).
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if result.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no OS user named \"{name}\""),
        ));
    }
    Ok(OsIdentity {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

/// Connects a unix socket with `who`'s effective uid and gid, so the server
/// sees that user through `SO_PEERCRED` (peer authentication).
///
/// Effective ids are process-wide through the libc wrappers, which signal
/// every thread to change together. The raw `setresuid`/`setresgid`/
/// `setgroups` system calls change only the calling thread on Linux, so the
/// connect runs on a dedicated, short-lived thread that takes the identity,
/// connects, and exits: no other thread (tokio's workers included) ever runs
/// with the changed identity, and nothing has to be restored. Forking instead
/// would be unsafe in a multi-threaded process (only async-signal-safe calls
/// are allowed in the child) and would need fd passing.
pub(crate) async fn unix_as(path: PathBuf, who: OsIdentity) -> io::Result<PgStream> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == who.uid {
        return unix(path).await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pgctl-peer-connect".to_owned())
        .spawn(move || {
            let _ = tx.send(connect_with_identity(&path, who));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("peer-connect thread ended without an answer"))??;
    into_tokio(stream)
}

fn connect_with_identity(path: &std::path::Path, who: OsIdentity) -> io::Result<StdUnixStream> {
    let keep = libc::c_long::from(-1i32);
    // SAFETY: raw system calls with integer arguments and a null group list
    // of length 0; they affect only this thread, which exits right after.
    unsafe {
        if libc::syscall(
            libc::SYS_setgroups,
            0 as libc::c_long,
            std::ptr::null::<libc::gid_t>(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setresgid, keep, libc::c_long::from(who.gid), keep) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setresuid, keep, libc::c_long::from(who.uid), keep) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    connect_std(path)
}
