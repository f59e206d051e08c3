//! Tiny HTTP/1.1 web nodes and a client, for load-balancer tests.
//!
//! A [`WebNode`] is a child process (so a test can SIGKILL or SIGSTOP it)
//! that answers every request with its name and the forwarding headers it
//! received: `node=NAME xff=... forwarded=... realip=... proto=... peer=IP`.
//! `/cacheable` answers with `Cache-Control: public, max-age=600`, a response
//! caches may keep (to check that a balancer marks it private when it sets
//! a cookie).
//!
//! The child is the test binary itself, run with only the test named by the
//! caller (`host_test`) and [`CHILD_ENV`] set; that test must call
//! [`serve_if_child`] first. No separate binary has to be built.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`
/// followed by its private key, in one PEM (what HAProxy's `crt` takes).
pub fn self_signed_pem() -> String {
    let certs = crate::tls::generate();
    format!("{}{}", certs.server_cert_pem, certs.server_key_pem)
}

/// `ADDR NAME` of the node a child process serves.
pub const CHILD_ENV: &str = "PG_HARNESS_WEBNODE";

/// In a child started by [`WebNode::spawn`], serves forever (never
/// returns); elsewhere returns at once.
pub fn serve_if_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (addr, name) = spec.split_once(' ').expect("ADDR NAME");
    let listener = TcpListener::bind(addr).expect("bind the web node's address");
    let name = name.to_string();
    for stream in listener.incoming().flatten() {
        let name = name.clone();
        std::thread::spawn(move || {
            let _ = serve_connection(stream, &name);
        });
    }
    std::process::exit(0);
}

fn serve_connection(stream: TcpStream, name: &str) -> io::Result<()> {
    let peer = stream.peer_addr()?.ip();
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request) = read_head(&mut reader)? else {
            return Ok(());
        };
        let length: usize = header(&request.headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        io::copy(&mut (&mut reader).take(length as u64), &mut io::sink())?;
        let all = |n: &str| {
            let v: Vec<&str> = request
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
                .collect();
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join("|")
            }
        };
        let body = format!(
            "node={name} xff={} forwarded={} realip={} proto={} peer={peer}\n",
            all("x-forwarded-for"),
            all("forwarded"),
            all("x-real-ip"),
            all("x-forwarded-proto"),
        );
        let cache = if request.start.split(' ').nth(1) == Some("/cacheable") {
            "Cache-Control: public, max-age=600\r\n"
        } else {
            ""
        };
        let close =
            header(&request.headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        // One write: pieces written separately meet Nagle's algorithm and
        // the peer's delayed ACK (40 ms per keep-alive request).
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{cache}{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        writer.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}

struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut start = String::new();
    if reader.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "cut in the head",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        start: start.trim_end().to_string(),
        headers,
    }))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A web node child process; killed when dropped.
#[derive(Debug)]
pub struct WebNode {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The name it answers with.
    pub name: String,
    child: Child,
}

impl WebNode {
    /// Starts a node at `addr` answering with `name`, in a child running
    /// this test binary's test `host_test` (which calls [`serve_if_child`]).
    /// Returns once it accepts connections.
    pub fn spawn(host_test: &str, addr: SocketAddr, name: &str) -> io::Result<WebNode> {
        let child = Command::new(std::env::current_exe()?)
            .args([host_test, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, format!("{addr} {name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let node = WebNode {
            addr,
            name: name.to_string(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("web node {name} did not listen on {addr}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(node)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGSTOP: the node keeps its sockets but answers nothing.
    pub fn freeze(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal(Signal::SIGCONT);
    }
}

impl Drop for WebNode {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The first header called `name` (ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The `node=` of a web node's answer.
    pub fn node(&self) -> Option<&str> {
        self.body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("node="))
    }

    /// Another field (`xff`, `forwarded`, `realip`, `proto`, `peer`).
    pub fn field(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.body
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()))
    }
}

/// One request on a new connection (`Connection: close`), from `source`
/// when given (a loopback address that looks like another host), with
/// `extra` header lines, every step bounded by `timeout`.
pub fn get(
    target: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<Response> {
    let stream = match source {
        None => TcpStream::connect_timeout(&target, timeout)?,
        Some(ip) => {
            let socket = match ip {
                IpAddr::V4(_) => nix_socket_v4(ip)?,
                IpAddr::V6(_) => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"))
                }
            };
            socket.connect(target)?
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n");
    for (k, v) in extra {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut writer = stream.try_clone()?;
    writer.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader)
}

/// Reads one response (Content-Length or to end of file).
pub fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let head = read_head(reader)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    let status = head
        .start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, head.start.clone()))?;
    let mut body = Vec::new();
    match header(&head.headers, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        Some(n) => {
            reader.take(n).read_to_end(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(Response {
        status,
        headers: head.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A TCP socket bound to `ip` (any port), ready to connect.
struct BoundSocket(std::os::fd::OwnedFd);

impl BoundSocket {
    fn connect(self, target: SocketAddr) -> io::Result<TcpStream> {
        use nix::sys::socket::{connect, SockaddrIn};
        let SocketAddr::V4(v4) = target else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
        };
        connect(
            std::os::fd::AsRawFd::as_raw_fd(&self.0),
            &SockaddrIn::from(v4),
        )
        .map_err(io::Error::from)?;
        Ok(TcpStream::from(self.0))
    }
}

fn nix_socket_v4(ip: IpAddr) -> io::Result<BoundSocket> {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let IpAddr::V4(v4) = ip else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(std::net::SocketAddrV4::new(v4, 0)),
    )
    .map_err(io::Error::from)?;
    Ok(BoundSocket(fd))
}
