//! The demo's load-balancer section (`knocker haproxy`, `knocker
//! forwarders`): the demo's own HAProxy master (`haproxy -W -S`, as the
//! Debian package's service runs it) on a loopback port, in front of two
//! tiny web nodes (child processes of xtask, pg-harness's `webnode`, at
//! 127.0.0.2 and 127.0.0.3) that answer with their name and the
//! X-Forwarded-For they received. All of them are stopped by pid when the
//! section ends, however it ends.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use knocker_ops::haproxy::runtime::MasterCli;
use pg_harness::webnode::{self, WebNode};

use crate::demo::{show, Demo};

/// The backend `knocker haproxy` manages.
const BACKEND: &str = "knocker_web_nodes";

/// How long HAProxy may take to start, or to see a node UP.
const LB_WAIT: Duration = Duration::from_secs(10);

/// Requests sent by new clients (no cookie) to see them spread.
const NEW_CLIENTS: usize = 10;

/// A client that is not the balancer, forging its X-Forwarded-For.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
const FORGED: &str = "203.0.113.66";

/// The operator's haproxy.cfg before `--init` (HAProxy 2.6 wants the last
/// line to end with a line feed).
const OPERATOR_CFG: &str = "# the operator's haproxy.cfg\nglobal\n    stats timeout 30s\n\n\
defaults\n    mode http\n    timeout connect 5s\n    timeout client 50s\n    timeout server 50s\n";

/// The demo's HAProxy master; SIGTERM (it stops its workers) and wait.
struct Master(Child);

impl Drop for Master {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn free_port(ip: &str) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))
        .with_context(|| format!("no free port on {ip}"))?
        .local_addr()?
        .port())
}

/// Starts `haproxy -W -S SOCKET -f CFG` and waits until a worker runs.
fn start_master(dir: &Path, cfg: &Path, socket: &Path) -> Result<Master> {
    let log = std::fs::File::create(dir.join("haproxy.log"))?;
    let child = Command::new("haproxy")
        .arg("-W")
        .arg("-S")
        .arg(socket)
        .arg("-f")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting haproxy (Debian's package `haproxy`)")?;
    let master = Master(child);
    let deadline = Instant::now() + LB_WAIT;
    loop {
        if MasterCli::new(socket)
            .show_proc()
            .is_ok_and(|p| !p.workers.is_empty())
        {
            return Ok(master);
        }
        if Instant::now() > deadline {
            bail!(
                "haproxy did not start within {LB_WAIT:?}: {}",
                std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether HAProxy sees `count` servers, all UP, within [`LB_WAIT`].
fn wait_all_up(socket: &Path, count: usize) -> bool {
    let cli = MasterCli::new(socket);
    let deadline = Instant::now() + LB_WAIT;
    while Instant::now() < deadline {
        if let Ok(stats) = cli.server_stats(BACKEND) {
            if stats.len() == count && stats.iter().all(|s| s.status == "UP") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// `--init --plain-http`, `--add` two web nodes, requests spread, a forged
/// X-Forwarded-For replaced, `--list`, and the web node's
/// `knocker forwarders`.
pub fn load_balancer(demo: &mut Demo<'_>) -> Result<()> {
    demo.section("The load balancer: knocker haproxy in front of two web nodes");
    let spawn = |ip: &str, name: &str| -> Result<WebNode> {
        let addr = SocketAddr::new(ip.parse()?, free_port(ip)?);
        WebNode::spawn(crate::bench_haproxy::WEBNODE_ARG, addr, name)
            .with_context(|| format!("starting the demo's web node {name} at {addr}"))
    };
    let nodes = [spawn("127.0.0.2", "web-a")?, spawn("127.0.0.3", "web-b")?];
    let dir = demo.scratch.0.join("haproxy");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, OPERATOR_CFG)
        .with_context(|| format!("cannot write {}", cfg.display()))?;
    let socket = dir.join("master.sock");
    let master = start_master(&dir, &cfg, &socket)?;
    println!(
        "\n  The demo's own HAProxy (pid {}): haproxy -W -S {} -f {}\n  \
         (the Debian package's service runs it the same way), and two tiny web nodes\n  \
         answering with their name and the X-Forwarded-For they got: {} at {} (pid {}),\n  \
         {} at {} (pid {}). --haproxy-config, --master-socket and --knocknoc-config\n  \
         point at the demo's files instead of /etc/haproxy and /opt/knocknoc.",
        master.0.id(),
        socket.display(),
        cfg.display(),
        nodes[0].name,
        nodes[0].addr,
        nodes[0].pid(),
        nodes[1].name,
        nodes[1].addr,
        nodes[1].pid(),
    );
    let web_conf: PathBuf = demo.scratch.0.join(crate::demo::WEB_NODE_CONF);
    let files: Vec<String> = vec![
        "--haproxy-config".into(),
        cfg.to_string_lossy().into_owned(),
        "--master-socket".into(),
        socket.to_string_lossy().into_owned(),
        "--knocknoc-config".into(),
        web_conf.to_string_lossy().into_owned(),
    ];
    let knocker = demo.knocker;
    let haproxy = |extra: &[&str]| -> Result<(i32, String)> {
        let mut args = vec!["haproxy"];
        args.extend_from_slice(extra);
        args.extend(files.iter().map(String::as_str));
        show(knocker, &args)
    };
    let front = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port("127.0.0.1")?);
    let bind = front.to_string();

    let (code, _) = haproxy(&["--init", "--plain-http", "--bind", &bind])?;
    demo.checks
        .check("haproxy --init --plain-http exits 0", code == 0);
    for n in &nodes {
        let (code, _) = haproxy(&["--add", &n.addr.to_string()])?;
        demo.checks
            .check(&format!("haproxy --add {} exits 0", n.addr), code == 0);
    }
    let up = wait_all_up(&socket, nodes.len());
    demo.checks
        .check("HAProxy's health checks see both nodes UP", up);

    println!("\n$ # {NEW_CLIENTS} new clients (no cookie) at http://{front}/");
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut cookie = None;
    for _ in 0..NEW_CLIENTS {
        match webnode::get(front, "/", &[], None, LB_WAIT) {
            Ok(r) => {
                *served
                    .entry(r.node().unwrap_or("?").to_string())
                    .or_default() += 1;
                cookie = cookie.or_else(|| r.header("set-cookie").map(str::to_string));
            }
            Err(e) => *served.entry(format!("error: {e}")).or_default() += 1,
        }
    }
    for (node, n) in &served {
        println!("  {node}: {n} requests");
    }
    if let Some(c) = &cookie {
        println!("  Set-Cookie: {c}");
    }
    let spread = nodes
        .iter()
        .all(|n| served.get(&n.name).is_some_and(|&k| k >= NEW_CLIENTS / 4));
    demo.checks
        .check("new clients are spread over both web nodes", spread);

    println!("\n$ # a client at {CLIENT} sends a forged X-Forwarded-For: {FORGED}");
    let forged = webnode::get(
        front,
        "/",
        &[("X-Forwarded-For", FORGED)],
        Some(CLIENT),
        LB_WAIT,
    );
    let xff = match &forged {
        Ok(r) => {
            println!("  {} answered: {}", r.node().unwrap_or("?"), r.body.trim());
            r.field("xff").map(str::to_string)
        }
        Err(e) => {
            println!("  no answer: {e}");
            None
        }
    };
    demo.checks.check(
        &format!("the web node sees X-Forwarded-For {CLIENT}, not the forged {FORGED}"),
        xff.as_deref() == Some(&CLIENT.to_string()),
    );

    let (code, listed) = haproxy(&["--list"])?;
    let both_listed = nodes.iter().all(|n| {
        listed
            .lines()
            .any(|l| l.contains(&n.addr.to_string()) && l.contains("UP"))
    });
    demo.checks.check(
        "haproxy --list shows both nodes UP",
        code == 0 && both_listed,
    );

    println!("\n$ # on each web node: trust the balancer's X-Forwarded-For (here 127.0.0.1)");
    let web_conf = web_conf.to_string_lossy().into_owned();
    let (code, _) = show(
        knocker,
        &["forwarders", "--add", "127.0.0.1/32", "--config", &web_conf],
    )?;
    demo.checks.check("forwarders --add exits 0", code == 0);
    let (code, trusted) = show(knocker, &["forwarders", "--list", "--config", &web_conf])?;
    demo.checks.check(
        "forwarders --list shows the balancer",
        code == 0 && trusted.lines().any(|l| l.trim() == "127.0.0.1/32"),
    );

    println!(
        "\n$ kill -TERM {} {} {}   # the demo's HAProxy master and web nodes",
        master.0.id(),
        nodes[0].pid(),
        nodes[1].pid()
    );
    drop(master);
    drop(nodes);
    Ok(())
}
