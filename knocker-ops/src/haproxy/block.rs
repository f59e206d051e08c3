//! knocker's managed block of haproxy.cfg: one frontend and one backend
//! between `# BEGIN knocker haproxy` and `# END knocker haproxy`. Every byte
//! outside the block is kept as it is (Knocknoc's own agent edits the same
//! file), so the block is found, replaced or removed as a byte range and the
//! rest is never parsed.
//!
//! The block records its own settings on a comment line, so later runs
//! regenerate it identically without the original flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;

use super::input::{self, haproxy_addr};
use crate::Error;

/// The first line of the block (followed by a note on the same line).
pub const BEGIN: &str = "# BEGIN knocker haproxy";
/// The last line of the block.
pub const END: &str = "# END knocker haproxy";
const BEGIN_LINE: &str = "# BEGIN knocker haproxy (managed by knocker; edit with knocker haproxy)";
const SETTINGS_PREFIX: &str = "# settings ";
/// The frontend's name.
pub const FRONTEND: &str = "knocker_web";
/// The backend's name (and the proxy name on the Runtime API).
pub const BACKEND: &str = "knocker_web_nodes";
/// The persistence cookie's default name.
pub const DEFAULT_COOKIE: &str = "KNOCKER_NODE";

/// How clients reach the frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    /// TLS terminated with this PEM (certificate and key); plain HTTP on
    /// port 80 is redirected when the TLS port is 443.
    Cert(PathBuf),
    /// Plain HTTP only.
    PlainHttp,
}

/// The frontend's and backend's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Where clients connect.
    pub bind: SocketAddr,
    /// TLS or plain HTTP.
    pub tls: Tls,
    /// The health check's request path (200-399 is healthy).
    pub check_path: String,
    /// The persistence cookie's name.
    pub cookie: String,
}

impl Settings {
    /// The addresses the frontend binds.
    pub fn binds(&self) -> Vec<SocketAddr> {
        let mut binds = vec![self.bind];
        if let Some(redirect) = self.redirect_bind() {
            binds.push(redirect);
        }
        binds
    }

    /// The plain-HTTP listener that redirects to HTTPS: port 80 of the same
    /// address, only when TLS is on the standard port 443.
    fn redirect_bind(&self) -> Option<SocketAddr> {
        match self.tls {
            Tls::Cert(_) if self.bind.port() == 443 => Some(SocketAddr::new(self.bind.ip(), 80)),
            _ => None,
        }
    }
}

/// One web node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The address HAProxy connects to.
    pub addr: SocketAddr,
    /// The server's name in the backend (derived from the address).
    pub name: String,
    /// The persistence cookie's value: random, so that it says nothing about
    /// the network behind the balancer.
    #[serde(skip)]
    pub cookie: String,
    /// Weight 0: only clients pinned to it still reach it.
    pub drained: bool,
}

impl Node {
    /// A new node with a fresh cookie value.
    pub fn new(addr: SocketAddr) -> Node {
        Node {
            addr,
            name: server_name(addr),
            cookie: Alphanumeric.sample_string(&mut rand::rng(), 12),
            drained: false,
        }
    }
}

/// The server name of a node's address.
pub fn server_name(addr: SocketAddr) -> String {
    format!("web_{}_{}", addr.ip(), addr.port())
}

/// The block's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// Frontend and backend settings.
    pub settings: Settings,
    /// The web nodes, in the order they were added.
    pub nodes: Vec<Node>,
}

impl Block {
    /// The node with this address.
    pub fn node(&self, addr: SocketAddr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.addr == addr)
    }

    /// The block's text, from the BEGIN line to the END line (each line
    /// ending in `\n`).
    pub fn render(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let mut line = |l: &str| {
            out.push_str(l);
            out.push('\n');
        };
        line(BEGIN_LINE);
        let tls = match &s.tls {
            Tls::Cert(pem) => format!("cert={}", pem.display()),
            Tls::PlainHttp => "plain-http".to_string(),
        };
        line(&format!(
            "{SETTINGS_PREFIX}bind={} {tls} check-path={} cookie={}",
            haproxy_addr(s.bind),
            s.check_path,
            s.cookie
        ));
        line(&format!("frontend {FRONTEND}"));
        line("    mode http");
        match &s.tls {
            Tls::Cert(pem) => {
                line(&format!(
                    "    bind {} ssl crt {} alpn h2,http/1.1",
                    haproxy_addr(s.bind),
                    pem.display()
                ));
                if let Some(redirect) = s.redirect_bind() {
                    line(&format!("    bind {}", haproxy_addr(redirect)));
                }
                line("    http-request redirect scheme https code 301 unless { ssl_fc }");
            }
            Tls::PlainHttp => line(&format!("    bind {}", haproxy_addr(s.bind))),
        }
        line("    timeout client 60s");
        line("    timeout http-request 10s");
        line("    # Knocknoc grants access by client address: drop any address a client");
        line("    # wrote itself, then add the one HAProxy saw (option forwardfor).");
        line("    http-request del-header X-Forwarded-For");
        line("    http-request del-header Forwarded");
        line("    http-request del-header X-Real-IP");
        match &s.tls {
            Tls::Cert(_) => {
                line("    http-request set-header X-Forwarded-Proto https if { ssl_fc }");
                line("    http-request set-header X-Forwarded-Proto http unless { ssl_fc }");
            }
            Tls::PlainHttp => line("    http-request set-header X-Forwarded-Proto http"),
        }
        line("    option forwardfor");
        line(&format!("    default_backend {BACKEND}"));
        line("");
        line(&format!("backend {BACKEND}"));
        line("    mode http");
        line("    balance roundrobin");
        let cookie_attrs = match &s.tls {
            // SameSite=None keeps the cookie on a cross-site SAML POST.
            Tls::Cert(_) => " secure attr SameSite=None",
            // Browsers drop a Secure cookie set over plain HTTP.
            Tls::PlainHttp => "",
        };
        line(&format!(
            "    cookie {} insert indirect nocache httponly{cookie_attrs}",
            s.cookie
        ));
        line(&format!("    option httpchk GET {}", s.check_path));
        line("    http-check expect status 200-399");
        line("    # A request for a dead node goes to another at once (plain redispatch");
        line("    # would only do so at the last retry).");
        line("    option redispatch 1");
        line("    retries 3");
        line("    timeout connect 5s");
        line("    timeout server 60s");
        // A frozen node accepts connections but never answers: the check's
        // own timeout decides how fast it is marked down (2 s measured 8.6 s
        // here, 1 s stays under 6 s; a healthy node answers in milliseconds).
        line("    timeout check 1s");
        line("    default-server check inter 2s fastinter 500ms downinter 2s fall 3 rise 2 on-marked-down shutdown-sessions");
        for node in &self.nodes {
            line(&format!(
                "    server {} {} cookie {}{}",
                node.name,
                haproxy_addr(node.addr),
                node.cookie,
                if node.drained { " weight 0" } else { "" }
            ));
        }
        line(END);
        out
    }
}

/// Where the block is in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Byte offset of the BEGIN line (or of the newline knocker added before
    /// it to a file that had no final newline).
    pub start: usize,
    /// Byte offset just past the END line and its line break.
    pub end: usize,
}

/// Finds the block. A second BEGIN, a BEGIN without END or an END without
/// BEGIN means someone edited the markers: refused, nothing touched.
pub fn find(text: &str) -> Result<Option<Span>, Error> {
    let mut begin: Option<(usize, usize)> = None;
    let mut span = None;
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        if content.starts_with(BEGIN) {
            if begin.is_some() || span.is_some() {
                return Err(Error::refused_always(format!(
                    "line {}: a second \"{BEGIN}\" marker; keep one block and remove the other",
                    number + 1
                )));
            }
            begin = Some((offset, number));
        } else if content == END {
            let Some((start, _)) = begin.take() else {
                return Err(Error::refused_always(format!(
                    "line {}: \"{END}\" without a \"{BEGIN}\" line above it",
                    number + 1
                )));
            };
            let end = offset + line.len();
            // The newline added before a block appended to a file that had
            // none goes with the block, so removing it restores the file.
            let start = if !line.ends_with('\n') && start > 0 && text[..start].ends_with('\n') {
                start - 1
            } else {
                start
            };
            span = Some(Span { start, end });
        }
        offset += line.len();
    }
    if let Some((_, number)) = begin {
        return Err(Error::refused_always(format!(
            "line {}: \"{BEGIN}\" without a matching \"{END}\" line",
            number + 1
        )));
    }
    Ok(span)
}

/// The file with the block replaced by `block` (inserted at the end when
/// absent), or removed when `block` is `None`.
pub fn splice(text: &str, span: Option<Span>, block: Option<&str>) -> String {
    match (span, block) {
        (Some(span), Some(block)) => {
            let keep_final_newline = text[..span.end].ends_with('\n');
            let mut out = String::with_capacity(text.len() + block.len());
            out.push_str(&text[..span.start]);
            if text[span.start..].starts_with('\n') && !text[span.start..].starts_with(BEGIN) {
                out.push('\n');
            }
            out.push_str(block);
            if !keep_final_newline {
                out.pop();
            }
            out.push_str(&text[span.end..]);
            out
        }
        (Some(span), None) => format!("{}{}", &text[..span.start], &text[span.end..]),
        (None, Some(block)) => {
            if text.is_empty() || text.ends_with('\n') {
                format!("{text}{block}")
            } else {
                // Keep the file without a final newline after removal: the
                // separator belongs to the block.
                format!("{text}\n{}", block.strip_suffix('\n').unwrap_or(block))
            }
        }
        (None, None) => text.to_string(),
    }
}

/// Reads the block's settings and nodes back.
pub fn parse(block_text: &str) -> Result<Block, Error> {
    let broken = |what: String| {
        Error::refused_always(format!(
            "the knocker haproxy block was edited by hand ({what}); restore it from a backup \
             or remove it (with its markers) and run knocker haproxy --init again"
        ))
    };
    let settings_line = block_text
        .lines()
        .find_map(|l| l.strip_prefix(SETTINGS_PREFIX))
        .ok_or_else(|| broken("no settings line".into()))?;
    let (mut bind, mut tls, mut check_path, mut cookie) = (None, None, None, None);
    for word in settings_line.split_whitespace() {
        match word.split_once('=') {
            Some(("bind", v)) => bind = input::parse_bind(v).ok(),
            Some(("cert", v)) => tls = Some(Tls::Cert(PathBuf::from(v))),
            Some(("check-path", v)) => check_path = Some(v.to_string()),
            Some(("cookie", v)) => cookie = Some(v.to_string()),
            None if word == "plain-http" => tls = Some(Tls::PlainHttp),
            _ => return Err(broken(format!("unknown setting {word:?}"))),
        }
    }
    let settings = match (bind, tls, check_path, cookie) {
        (Some(bind), Some(tls), Some(check_path), Some(cookie)) => Settings {
            bind,
            tls,
            check_path,
            cookie,
        },
        _ => return Err(broken("incomplete settings line".into())),
    };
    let mut nodes = Vec::new();
    for line in block_text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["server", name, addr, "cookie", cookie, rest @ ..] => {
                let addr = input::parse_node(addr)
                    .map_err(|_| broken(format!("server {name} has address {addr:?}")))?;
                let drained = match rest {
                    [] => false,
                    ["weight", "0"] => true,
                    _ => return Err(broken(format!("server {name} has {rest:?}"))),
                };
                nodes.push(Node {
                    addr,
                    name: name.to_string(),
                    cookie: cookie.to_string(),
                    drained,
                });
            }
            ["server", ..] => return Err(broken(format!("line {line:?}"))),
            _ => {}
        }
    }
    Ok(Block { settings, nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block() -> Block {
        Block {
            settings: Settings {
                bind: "127.0.0.1:8443".parse().unwrap(),
                tls: Tls::PlainHttp,
                check_path: "/".into(),
                cookie: DEFAULT_COOKIE.into(),
            },
            nodes: vec![Node::new("127.0.0.2:8756".parse().unwrap())],
        }
    }

    #[test]
    fn a_rendered_block_parses_back() {
        let mut b = block();
        b.nodes.push(Node {
            drained: true,
            ..Node::new("[::1]:80".parse().unwrap())
        });
        assert_eq!(parse(&b.render()).unwrap(), b);
        b.settings.tls = Tls::Cert("/etc/haproxy/k.pem".into());
        b.settings.bind = "0.0.0.0:443".parse().unwrap();
        assert_eq!(parse(&b.render()).unwrap(), b);
        assert!(b.render().contains("    bind 0.0.0.0:80\n"));
    }

    #[test]
    fn broken_markers_are_refused() {
        assert!(find(&format!("{BEGIN}\n")).is_err());
        assert!(find(&format!("{END}\n")).is_err());
        assert!(find(&format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n")).is_err());
    }

    fn operator_line() -> impl Strategy<Value = String> {
        // Anything but our markers: blanks, comments, CR, odd sections.
        prop_oneof![
            "[ \t]*(frontend|backend|global|defaults|listen)[ a-z_]*",
            "[ \t]*#[ -~]*",
            "[ \t]*(bind|server|option|timeout)[ -~]*",
            "[^\n]*",
            Just(String::new()),
        ]
        .prop_filter("not a marker", |l| {
            !l.trim_start().starts_with(BEGIN) && l.trim_end_matches('\r') != END
        })
    }

    fn operator_file() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((operator_line(), prop_oneof!["\n", "\r\n"]), 0..20),
            any::<bool>(),
        )
            .prop_map(|(lines, final_newline)| {
                let mut text: String = lines.iter().map(|(l, e)| format!("{l}{e}")).collect();
                if !final_newline && text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            })
    }

    proptest! {
        #[test]
        fn bytes_outside_the_block_never_change_and_removal_restores_the_file(
            file in operator_file(),
            more_nodes in 0usize..3,
        ) {
            let mut b = block();
            let first = splice(&file, find(&file).unwrap(), Some(&b.render()));
            let span = find(&first).unwrap().expect("inserted");
            prop_assert_eq!(&first[..span.start], file.get(..span.start).unwrap_or(&file));
            prop_assert_eq!(parse(&first[span.start..span.end]).unwrap(), b.clone());
            for i in 0..more_nodes {
                b.nodes.push(Node::new(SocketAddr::new([10, 0, 0, i as u8 + 1].into(), 8756)));
            }
            let second = splice(&first, Some(span), Some(&b.render()));
            let span2 = find(&second).unwrap().expect("kept");
            prop_assert_eq!(&second[..span2.start], &first[..span.start]);
            prop_assert_eq!(&second[span2.end..], &first[span.end..]);
            let removed = splice(&second, Some(span2), None);
            prop_assert_eq!(removed, file);
        }

        #[test]
        fn a_block_in_the_middle_keeps_both_sides(
            before in operator_file(),
            after in operator_file(),
        ) {
            let before = if before.is_empty() || before.ends_with('\n') { before } else { format!("{before}\n") };
            let file = format!("{before}{}{after}", block().render());
            let span = find(&file).unwrap().expect("present");
            prop_assert_eq!(&file[..span.start], before.as_str());
            let mut b = block();
            b.nodes.clear();
            let edited = splice(&file, Some(span), Some(&b.render()));
            prop_assert_eq!(edited, format!("{before}{}{after}", b.render()));
            prop_assert_eq!(splice(&file, Some(span), None), format!("{before}{after}"));
        }
    }
}
