//! `knocker haproxy` against a real HAProxy (`haproxy -W -S <socket> -f
//! <file>`, started here on loopback ports) and real web nodes (child
//! processes on 127.0.0.2-4 that answer with their name and the
//! X-Forwarded-For they received). Every wait is bounded.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pg_harness::webnode::{self, WebNode};
use serde_json::Value;

const HOST_TEST: &str = "haproxy::webnode_child_answers_with_its_name_and_forwarding_headers";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Hosts the web-node children; on its own, checks one node's answer.
#[test]
fn webnode_child_answers_with_its_name_and_forwarding_headers() {
    webnode::serve_if_child();
    let node = node("127.0.0.5", "alone");
    let r = webnode::get(
        node.addr,
        "/",
        &[("X-Forwarded-For", "192.0.2.1")],
        Some("127.0.0.6".parse().unwrap()),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.node(), Some("alone"));
    assert_eq!(r.field("xff"), Some("192.0.2.1"));
    assert_eq!(r.field("peer"), Some("127.0.0.6"));
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node(ip: &str, name: &str) -> WebNode {
    let addr = SocketAddr::new(ip.parse().unwrap(), free_port(ip));
    WebNode::spawn(HOST_TEST, addr, name).unwrap()
}

/// The operator's part of haproxy.cfg: odd spacing, comments, tabs. (HAProxy
/// 2.6 refuses a file whose last line has no line feed.)
const OPERATOR: &str = "# operator's haproxy.cfg\nglobal\n\tstats timeout 30s   \n\n\
defaults\n    mode http\n    timeout connect 5s\n    timeout client 50s\n    timeout server 50s\n\
# knocknoc agent section below\nbackend agent_stub\n    server agent 127.0.0.1:1 disabled\n    # trailing comment\n";

/// A running HAProxy in master-worker mode, stopped when dropped.
struct Lb {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    socket: PathBuf,
    master: Child,
    port: u16,
}

impl Lb {
    fn start(operator: &str) -> Lb {
        Lb::start_with_env(operator, &[])
    }

    fn start_with_env(operator: &str, env: &[(&str, &str)]) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        fs::write(&cfg, operator).unwrap();
        let socket = dir.path().join("master.sock");
        let master = Command::new("haproxy")
            .arg("-W")
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(&cfg)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("haproxy.log")).unwrap())
            .spawn()
            .expect("haproxy is installed (cargo xtask test provisions it)");
        let lb = Lb {
            dir,
            cfg,
            socket,
            master,
            port: free_port("127.0.0.1"),
        };
        wait_for("haproxy's master CLI", Duration::from_secs(10), || {
            lb.procs().filter(|p| !p.workers.is_empty())
        });
        lb
    }

    fn procs(&self) -> Option<knocker_ops::haproxy::runtime::ProcList> {
        knocker_ops::haproxy::runtime::MasterCli::new(&self.socket)
            .show_proc()
            .ok()
    }

    fn worker(&self) -> u32 {
        self.procs().unwrap().workers[0]
    }

    fn front(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn knocker(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_knocker"));
        cmd.arg("haproxy")
            .args(args)
            .arg("--haproxy-config")
            .arg(&self.cfg)
            .arg("--master-socket")
            .arg(&self.socket)
            .arg("--knocknoc-config")
            .arg(self.dir.path().join("knocknoc.conf"));
        let out = cmd.output().unwrap();
        eprintln!(
            "knocker haproxy {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.knocker(args);
        assert!(out.status.success(), "knocker haproxy {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    fn init(&self, nodes: &[&WebNode]) {
        let bind = format!("127.0.0.1:{}", self.port);
        self.ok(&["--init", "--plain-http", "--bind", &bind]);
        for n in nodes {
            self.ok(&["--add", &n.addr.to_string()]);
        }
    }

    fn states(&self) -> HashMap<String, String> {
        let out = self.ok(&["--list", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["addr"].as_str().unwrap().to_string(),
                    n["state"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    }

    fn wait_state(&self, node: &WebNode, state: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        wait_for(&format!("{} {state}", node.name), limit, || {
            let states = self.states();
            (states.get(&node.addr.to_string()).map(String::as_str) == Some(state)).then_some(())
        });
        start.elapsed()
    }

    fn get(&self, cookie: Option<&str>) -> std::io::Result<webnode::Response> {
        let header;
        let extra: Vec<(&str, &str)> = match cookie {
            Some(c) => {
                header = c.to_string();
                vec![("Cookie", header.as_str())]
            }
            None => vec![],
        };
        webnode::get(self.front(), "/", &extra, None, Duration::from_secs(15))
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.cfg).unwrap()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.master.id().to_string())
            .status();
        let _ = self.master.wait();
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The persistence cookie a response sets, as a `Cookie` header value.
fn cookie_of(r: &webnode::Response) -> String {
    r.header("set-cookie")
        .expect("a Set-Cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn all_up(lb: &Lb, nodes: &[&WebNode]) {
    for n in nodes {
        lb.wait_state(n, "UP", Duration::from_secs(10));
    }
}

#[test]
fn bad_input_exits_2_touches_nothing_and_does_not_reload() {
    let lb = Lb::start(OPERATOR);
    let a = node("127.0.0.2", "a");
    lb.init(&[&a]);
    let before = lb.text();
    let procs = lb.procs().unwrap();
    let port = lb.port.to_string();
    for args in [
        vec!["--add", "10.0.0.5 #"],
        vec!["--add", "10.0.0.5\n    server evil 1.2.3.4:80"],
        vec!["--add", "\"10.0.0.5\""],
        vec!["--add", "10.0.0.300"],
        vec!["--add", "10.0.0.5:0"],
        vec!["--remove", "not-an-ip"],
        vec!["--drain", "10.0.0.5:99999"],
        vec!["--init", "--plain-http", "--bind", "127.0.0.1"],
        vec!["--init", "--plain-http", "--check-path", "/x y"],
        vec!["--init", "--plain-http", "--cookie", "a;b"],
        vec!["--init", "--cert", "/tmp/x#y.pem"],
        vec!["--init", "--cert", "/tmp/x.pem", "--plain-http"],
        vec!["--add", "10.0.0.5", "--bind", &port],
    ] {
        let out = lb.knocker(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(lb.text(), before, "{args:?} touched the file");
    }
    assert_eq!(lb.procs().unwrap(), procs, "a bad input reloaded HAProxy");
}

#[test]
fn deinit_restores_the_operators_file_byte_for_byte() {
    let lb = Lb::start(OPERATOR);
    let a = node("127.0.0.2", "a");
    let b = node("127.0.0.3", "b");
    lb.init(&[&a, &b]);
    let with_block = lb.text();
    assert!(
        with_block.starts_with(OPERATOR),
        "bytes before the block changed"
    );
    lb.ok(&["--drain", &a.addr.to_string()]);
    lb.ok(&["--remove", &b.addr.to_string()]);
    // Idempotent: the same change again changes nothing and exits 0.
    let again = lb.ok(&["--remove", &b.addr.to_string()]);
    assert!(again.contains("nothing to do"), "{again}");
    let worker = lb.worker();
    lb.ok(&["--deinit"]);
    assert_eq!(lb.text(), OPERATOR);
    assert_ne!(lb.worker(), worker, "--deinit reloads");
    let nothing = lb.ok(&["--deinit"]);
    assert!(
        nothing.contains("removed") || nothing.contains("nothing"),
        "{nothing}"
    );
    assert_eq!(lb.text(), OPERATOR);
    // Backups are kept, at most 10.
    let backups = fs::read_dir(lb.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("haproxy.cfg.knocker-backup-")
        })
        .count();
    assert!((1..=10).contains(&backups), "{backups} backups");
}

#[test]
fn a_haproxy_check_refusal_and_a_bind_precheck_failure_leave_the_worker_untouched() {
    let lb = Lb::start(OPERATOR);
    let a = node("127.0.0.2", "a");
    lb.init(&[&a]);
    let before = lb.text();
    let procs = lb.procs().unwrap();

    // A certificate that does not exist: only haproxy -c can tell.
    let missing = lb.dir.path().join("missing.pem");
    let out = lb.knocker(&["--init", "--cert", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("haproxy -c refuses"));

    // A port another process listens on, and an address not on this host:
    // haproxy -c passes both, the reload would fail.
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().to_string();
    let out = lb.knocker(&["--init", "--plain-http", "--bind", &taken]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listens"));
    let out = lb.knocker(&["--init", "--plain-http", "--bind", "203.0.113.77:18443"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an address of this host"));

    assert_eq!(lb.text(), before);
    assert_eq!(lb.procs().unwrap(), procs, "the running worker was touched");
    // The port HAProxy itself holds is fine: re-running --init passes.
    let bind = format!("127.0.0.1:{}", lb.port);
    lb.ok(&[
        "--init",
        "--plain-http",
        "--bind",
        &bind,
        "--check-path",
        "/health",
    ]);
}

#[test]
fn thirty_new_clients_spread_evenly_and_a_cookie_keeps_one_on_its_node() {
    let lb = Lb::start(OPERATOR);
    let nodes = [
        node("127.0.0.2", "a"),
        node("127.0.0.3", "b"),
        node("127.0.0.4", "c"),
    ];
    lb.init(&[&nodes[0], &nodes[1], &nodes[2]]);
    all_up(&lb, &[&nodes[0], &nodes[1], &nodes[2]]);
    let mut count: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        let r = lb.get(None).unwrap();
        assert_eq!(r.status, 200);
        *count.entry(r.node().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(count.len(), 3, "{count:?}");
    assert!(count.values().all(|n| (9..=11).contains(n)), "{count:?}");

    let first = lb.get(None).unwrap();
    let set_cookie = first.header("set-cookie").unwrap().to_string();
    assert!(set_cookie.starts_with("KNOCKER_NODE="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    // The value says nothing about the node's address.
    assert!(!set_cookie.contains("127.0.0"), "{set_cookie}");
    let cookie = cookie_of(&first);
    for _ in 0..100 {
        let r = lb.get(Some(&cookie)).unwrap();
        assert_eq!(r.node(), first.node());
        assert!(r.header("set-cookie").is_none(), "indirect: set once");
    }
    // nocache: a cacheable response that sets the cookie is made private.
    let r = webnode::get(lb.front(), "/cacheable", &[], None, TIMEOUT).unwrap();
    assert!(r.header("set-cookie").is_some());
    let cache_control: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cache-control"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        cache_control.iter().any(|v| v.contains("private")),
        "{:?}",
        r.headers
    );
}

#[test]
fn a_forged_x_forwarded_for_is_replaced_by_the_clients_address() {
    let lb = Lb::start(OPERATOR);
    let a = node("127.0.0.2", "a");
    lb.init(&[&a]);
    all_up(&lb, &[&a]);
    let r = webnode::get(
        lb.front(),
        "/",
        &[
            ("X-Forwarded-For", "203.0.113.66"),
            ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
            ("Forwarded", "for=203.0.113.66"),
            ("X-Real-IP", "203.0.113.66"),
            ("X-Forwarded-Proto", "https"),
        ],
        Some(IpAddr::from([127, 0, 0, 9])),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.field("xff"), Some("127.0.0.9"), "{}", r.body);
    assert_eq!(r.field("forwarded"), Some("-"), "{}", r.body);
    assert_eq!(r.field("realip"), Some("-"), "{}", r.body);
    assert_eq!(r.field("proto"), Some("http"), "{}", r.body);
}

/// Ten clients pinned over three nodes; returns their cookies by node.
fn pin_clients(lb: &Lb) -> Vec<(String, String)> {
    (0..12)
        .map(|_| {
            let r = lb.get(None).unwrap();
            (r.node().unwrap().to_string(), cookie_of(&r))
        })
        .collect()
}

/// Every pinned client sends requests until `until` holds; returns
/// (requests, failures, nodes the victim's clients moved to).
fn hammer(lb: &Lb, clients: &[(String, String)], mut until: impl FnMut() -> bool) -> (u32, u32) {
    let (mut sent, mut failed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !until() {
        assert!(Instant::now() < deadline, "bounded");
        for (_, cookie) in clients {
            sent += 1;
            match lb.get(Some(cookie)) {
                Ok(r) if r.status == 200 => {}
                _ => failed += 1,
            }
        }
    }
    (sent, failed)
}

#[test]
fn a_killed_node_is_marked_down_and_its_pinned_clients_move_without_a_failed_request() {
    let lb = Lb::start(OPERATOR);
    let mut nodes = [
        node("127.0.0.2", "a"),
        node("127.0.0.3", "b"),
        node("127.0.0.4", "c"),
    ];
    lb.init(&[&nodes[0], &nodes[1], &nodes[2]]);
    all_up(&lb, &[&nodes[0], &nodes[1], &nodes[2]]);
    let clients = pin_clients(&lb);
    assert!(clients.iter().any(|(n, _)| n == "a"));
    let killed_at = Instant::now();
    nodes[0].kill();
    let addr = nodes[0].addr.to_string();
    let mut down_after = None;
    let (sent, failed) = hammer(&lb, &clients, || {
        if down_after.is_none() && lb.states().get(&addr).map(String::as_str) == Some("DOWN") {
            down_after = Some(killed_at.elapsed());
        }
        down_after.is_some() && killed_at.elapsed() > Duration::from_secs(4)
    });
    let down_after = down_after.unwrap();
    eprintln!("killed node marked DOWN after {down_after:?}; {failed} of {sent} requests failed");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(down_after <= Duration::from_millis(3500), "{down_after:?}");
    for (_, cookie) in clients.iter().filter(|(n, _)| n == "a") {
        let r = lb.get(Some(cookie)).unwrap();
        assert_ne!(r.node(), Some("a"));
    }
}

#[test]
fn a_frozen_node_is_marked_down_and_its_pinned_clients_move() {
    let lb = Lb::start(OPERATOR);
    let nodes = [
        node("127.0.0.2", "a"),
        node("127.0.0.3", "b"),
        node("127.0.0.4", "c"),
    ];
    lb.init(&[&nodes[0], &nodes[1], &nodes[2]]);
    all_up(&lb, &[&nodes[0], &nodes[1], &nodes[2]]);
    let clients = pin_clients(&lb);
    let pinned: Vec<String> = clients
        .iter()
        .filter(|(n, _)| n == "a")
        .map(|(_, c)| c.clone())
        .collect();
    assert!(!pinned.is_empty());
    nodes[0].freeze();
    // Each client pinned to the frozen node keeps sending, one request at a
    // time: its request in flight hangs until the node is marked down and
    // its session shut; every later one goes to another node.
    let front = lb.front();
    let senders: Vec<_> = pinned
        .iter()
        .cloned()
        .map(|cookie| {
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut last_failed_at) = (0u32, 0u32, None);
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(12) {
                    let r = webnode::get(
                        front,
                        "/",
                        &[("Cookie", cookie.as_str())],
                        None,
                        Duration::from_secs(15),
                    );
                    match r {
                        Ok(r) if r.status == 200 && r.node() != Some("a") => ok += 1,
                        _ => {
                            failed += 1;
                            last_failed_at = Some(start.elapsed());
                        }
                    }
                }
                (ok, failed, last_failed_at)
            })
        })
        .collect();
    let down_after = lb.wait_state(&nodes[0], "DOWN", Duration::from_secs(12));
    eprintln!("frozen node marked DOWN after {down_after:?}");
    assert!(down_after <= Duration::from_secs(10), "{down_after:?}");
    for sender in senders {
        let (ok, failed, last_failed_at) = sender.join().unwrap();
        eprintln!("pinned client: {ok} ok, {failed} failed (last at {last_failed_at:?})");
        assert!(
            failed <= 1,
            "only the request in flight at the freeze may fail"
        );
        assert!(ok > 0);
    }
    for (_, cookie) in &clients {
        let r = lb.get(Some(cookie)).unwrap();
        assert_eq!(r.status, 200);
        assert_ne!(r.node(), Some("a"));
    }
    nodes[0].thaw();
}

#[test]
fn drain_is_live_and_kept_across_a_reload() {
    let lb = Lb::start(OPERATOR);
    let nodes = [node("127.0.0.2", "a"), node("127.0.0.3", "b")];
    lb.init(&[&nodes[0], &nodes[1]]);
    all_up(&lb, &[&nodes[0], &nodes[1]]);
    let pinned_to_a = wait_for("a client pinned to a", TIMEOUT, || {
        let r = lb.get(None).ok()?;
        (r.node() == Some("a")).then(|| cookie_of(&r))
    });
    let worker = lb.worker();
    let out = lb.ok(&["--drain", &nodes[0].addr.to_string()]);
    assert!(out.contains("runtime: set server"), "{out}");
    assert_eq!(lb.worker(), worker, "drain is live, without a reload");
    assert_eq!(lb.states()[&nodes[0].addr.to_string()], "DRAIN");
    let check = |when: &str| {
        for _ in 0..10 {
            assert_eq!(lb.get(None).unwrap().node(), Some("b"), "{when}");
        }
        assert_eq!(
            lb.get(Some(&pinned_to_a)).unwrap().node(),
            Some("a"),
            "{when}"
        );
    };
    check("after --drain");
    // A reload (another node added) keeps it drained.
    let c = node("127.0.0.4", "c");
    lb.ok(&["--add", &c.addr.to_string()]);
    assert_ne!(lb.worker(), worker);
    // A new worker shows "DRAIN 1/3" until its first checks pass.
    lb.wait_state(&nodes[0], "DRAIN", Duration::from_secs(5));
    lb.ok(&["--remove", &c.addr.to_string()]);
    check("after a reload");
    lb.ok(&["--undrain", &nodes[0].addr.to_string()]);
    lb.wait_state(&nodes[0], "UP", Duration::from_secs(5));
    let seen: Vec<String> = (0..10)
        .map(|_| lb.get(None).unwrap().node().unwrap().to_string())
        .collect();
    assert!(seen.iter().any(|n| n == "a"), "{seen:?}");
}

#[test]
fn a_reload_failing_after_the_check_passed_is_rolled_back() {
    let lb = Lb::start(OPERATOR);
    let a = node("127.0.0.2", "a");
    lb.init(&[&a]);
    all_up(&lb, &[&a]);
    // The operator adds a frontend on a port another process holds, outside
    // knocker's block, without reloading: haproxy -c passes, a reload fails.
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let edited = format!(
        "{}\nfrontend operators_own\n    bind {}\n    default_backend knocker_web_nodes\n",
        lb.text(),
        squatter.local_addr().unwrap()
    );
    fs::write(&lb.cfg, &edited).unwrap();
    let worker = lb.worker();
    let b = node("127.0.0.3", "b");
    let out = lb.knocker(&["--add", &b.addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the reload"), "{stderr}");
    assert!(stderr.contains("restored the previous file"), "{stderr}");
    assert_eq!(
        lb.text(),
        edited,
        "rolled back to the file before the change"
    );
    assert_eq!(lb.worker(), worker, "the old worker still serves");
    assert_eq!(lb.get(None).unwrap().node(), Some("a"));
}

#[test]
fn kill_9_of_knocker_mid_change_leaves_the_old_or_the_new_file() {
    let lb = Lb::start(OPERATOR);
    let a = node("127.0.0.2", "a");
    lb.init(&[&a]);
    let extra: SocketAddr = "127.0.0.3:8756".parse().unwrap();
    // Kill at moments spread over a whole run (lock, check, backup, rename,
    // reload, confirm).
    let started = Instant::now();
    lb.ok(&["--add", &extra.to_string()]);
    lb.ok(&["--remove", &extra.to_string()]);
    let run = started.elapsed() / 2;
    let mut outcomes = HashMap::new();
    const ROUNDS: u32 = 24;
    for round in 0..ROUNDS {
        let before = lb.text();
        let adding = !before.contains("web_127.0.0.3_8756");
        let action = if adding { "--add" } else { "--remove" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_knocker"))
            .args(["haproxy", action, &extra.to_string()])
            .arg("--haproxy-config")
            .arg(&lb.cfg)
            .arg("--master-socket")
            .arg(&lb.socket)
            .arg("--knocknoc-config")
            .arg(lb.dir.path().join("knocknoc.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(run * round / (ROUNDS - 4));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let after = lb.text();
        let span = knocker_ops::haproxy::block::find(&after)
            .unwrap()
            .expect("block present");
        assert!(after.starts_with(OPERATOR), "bytes outside changed");
        let block = knocker_ops::haproxy::block::parse(&after[span.start..span.end]).unwrap();
        let has = block.node(extra).is_some();
        let outcome = if after == before {
            "old"
        } else {
            assert_eq!(has, adding, "a changed file is the new one");
            "new"
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
        eprintln!("round {round}: {status} -> {outcome}");
    }
    // No temp file survives the next locked run.
    lb.ok(&["--list"]);
    lb.ok(&["--add", "127.0.0.4"]);
    let temps = fs::read_dir(lb.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".haproxy.cfg.knocker-")
        })
        .count();
    assert_eq!(temps, 0);
    eprintln!("outcomes: {outcomes:?} (a whole run: {run:?})");
    assert!(outcomes.contains_key("old") && outcomes.contains_key("new"));
}

#[test]
fn dry_run_prints_the_exact_diff_and_commands_and_changes_nothing() {
    let lb = Lb::start(OPERATOR);
    let bind = format!("127.0.0.1:{}", lb.port);
    let procs = lb.procs().unwrap();
    let out = lb.ok(&["--init", "--plain-http", "--bind", &bind, "--dry-run"]);
    assert!(out.contains("+# BEGIN knocker haproxy"), "{out}");
    assert!(out.contains("haproxy -c -W -f "), "{out}");
    assert!(out.contains("reload"), "{out}");
    assert_eq!(lb.text(), OPERATOR);
    assert_eq!(lb.procs().unwrap(), procs);
    let json: Value = serde_json::from_str(&lb.ok(&[
        "--init",
        "--plain-http",
        "--bind",
        &bind,
        "--dry-run",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["version"], 1);
    // A remote node (dry run: no traffic leaves the host): the command for
    // its TrustedForwarders names the address HAProxy reaches it from.
    lb.ok(&["--init", "--plain-http", "--bind", &bind]);
    let remote: Value =
        serde_json::from_str(&lb.ok(&["--add", "198.51.100.7", "--json", "--dry-run"])).unwrap();
    assert!(remote["plan"]["diffs"][0]
        .as_str()
        .unwrap()
        .contains("198.51.100.7:8756"));
    let hint = &remote["forwarders"][0];
    assert_eq!(hint["local"], false);
    let command = hint["command"].as_str().unwrap();
    assert_eq!(
        command,
        format!(
            "sudo knocker forwarders --add {}",
            hint["balancer"].as_str().unwrap()
        )
    );
    assert!(command.ends_with("/32"), "{command}");
    let text = lb.ok(&["--add", "198.51.100.7", "--dry-run"]);
    assert!(
        text.contains("+    server web_198.51.100.7_8756 198.51.100.7:8756 cookie "),
        "{text}"
    );
    assert!(json["plan"]["diffs"][0]
        .as_str()
        .unwrap()
        .contains("option redispatch 1"));
}

#[test]
fn a_file_managed_by_ansible_is_refused_without_force() {
    let managed = format!("# Ansible managed: do not edit\n{OPERATOR}");
    let lb = Lb::start(&managed);
    let bind = format!("127.0.0.1:{}", lb.port);
    let out = lb.knocker(&["--init", "--plain-http", "--bind", &bind]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(lb.text(), managed);
    lb.ok(&["--init", "--plain-http", "--bind", &bind, "--force"]);
    assert!(lb.text().starts_with(&managed));
}

fn forwarders(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_knocker"))
        .arg("forwarders")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn forwarders_add_remove_and_list_keep_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("knocknoc.conf");
    let original = "# Knocknoc\nListen = 0.0.0.0:8756\r\nTrustedForwarders = [\"127.0.0.1/32\"]  # lb\nCustomScripts = true";
    fs::write(&config, original).unwrap();
    let out = forwarders(&config, &["--add", "10.0.0.1"]);
    assert!(out.status.success());
    let text = fs::read_to_string(&config).unwrap();
    assert_eq!(
        text,
        "# Knocknoc\nListen = 0.0.0.0:8756\r\nTrustedForwarders = [\"127.0.0.1/32\", \"10.0.0.1/32\"]  # lb\nCustomScripts = true"
    );
    let list = forwarders(&config, &["--list", "--json"]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        v["forwarders"],
        serde_json::json!(["127.0.0.1/32", "10.0.0.1/32"])
    );
    // Idempotent, then removed.
    let again = forwarders(&config, &["--add", "10.0.0.1/32"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to do"));
    assert!(forwarders(&config, &["--remove", "10.0.0.1/32"])
        .status
        .success());
    assert_eq!(fs::read_to_string(&config).unwrap(), original);
    let wide = forwarders(&config, &["--add", "10.0.0.0/8", "--dry-run"]);
    assert!(wide.status.success());
    assert!(String::from_utf8_lossy(&wide.stderr).contains("10.0.0.0/8 trusts 16777216 addresses"));
    let everyone = forwarders(&config, &["--add", "0.0.0.0/0"]);
    assert_eq!(everyone.status.code(), Some(1));
    assert_eq!(fs::read_to_string(&config).unwrap(), original);
    for bad in ["10.0.0.1/8", "10.0.0.1 #", "x"] {
        let out = forwarders(&config, &["--add", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert_eq!(fs::read_to_string(&config).unwrap(), original);
    }
}

#[test]
fn adding_a_local_node_fixes_this_hosts_trusted_forwarders() {
    let lb = Lb::start(OPERATOR);
    let knocknoc = lb.dir.path().join("knocknoc.conf");
    fs::write(&knocknoc, "TrustedForwarders = 10.9.9.0/24\n").unwrap();
    let a = node("127.0.0.2", "a");
    lb.init(&[&a]);
    assert_eq!(
        fs::read_to_string(&knocknoc).unwrap(),
        "TrustedForwarders = 10.9.9.0/24, 127.0.0.1/32\n"
    );
    let out = lb.knocker(&["--add", "127.0.0.3:9"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("trusts more than its balancer"));
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "5", "-D", "-"])
        .args(args)
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_sets_a_secure_samesite_none_cookie_and_redirects_plain_http() {
    let lb = Lb::start(OPERATOR);
    let pem = lb.dir.path().join("knocknoc.pem");
    fs::write(&pem, webnode::self_signed_pem()).unwrap();
    let a = node("127.0.0.2", "a");
    // TLS on 443 of an address of its own, so port 80 beside it is free too.
    lb.ok(&[
        "--init",
        "--cert",
        pem.to_str().unwrap(),
        "--bind",
        "127.0.0.7:443",
    ]);
    lb.ok(&["--add", &a.addr.to_string()]);
    all_up(&lb, &[&a]);
    let https = curl(&["https://127.0.0.7/"]);
    let set_cookie = https
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{https}"));
    for attr in ["Secure", "HttpOnly", "SameSite=None"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(https.contains("node=a"), "{https}");
    assert!(https.contains("proto=https"), "{https}");
    let http = curl(&["http://127.0.0.7/login?x=1"]);
    assert!(http.starts_with("HTTP/1.1 301"), "{http}");
    assert!(
        http.to_ascii_lowercase()
            .contains("location: https://127.0.0.7/login?x=1"),
        "{http}"
    );
}

#[test]
fn the_master_socket_is_found_from_the_running_haproxy_and_ipv6_nodes_work() {
    let lb = Lb::start(OPERATOR);
    let bind = format!("127.0.0.1:{}", lb.port);
    // No --master-socket: found from the master's command line in /proc
    // (the process whose -f is this file).
    let out = Command::new(env!("CARGO_BIN_EXE_knocker"))
        .args([
            "haproxy",
            "--init",
            "--plain-http",
            "--bind",
            &bind,
            "--json",
        ])
        .arg("--haproxy-config")
        .arg(&lb.cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["reload"]["new_worker"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["version"], 1);

    let v6 = SocketAddr::new("::1".parse().unwrap(), free_port("::1"));
    let node = WebNode::spawn(HOST_TEST, v6, "six").unwrap();
    lb.ok(&["--add", &v6.to_string()]);
    assert!(lb.text().contains(&format!("[::1]:{}", v6.port())));
    lb.wait_state(&node, "UP", Duration::from_secs(10));
    let r = lb.get(None).unwrap();
    assert_eq!(r.node(), Some("six"));
    assert_eq!(r.field("xff"), Some("127.0.0.1"));
}

#[test]
fn a_port_another_frontend_of_the_file_binds_is_refused() {
    // haproxy -c accepts two frontends on one port (SO_REUSEPORT); both
    // would then take connections.
    let port = free_port("127.0.0.1");
    let operator = format!(
        "{OPERATOR}frontend agent_proxy\n    bind :{port}\n    default_backend agent_stub\n"
    );
    let lb = Lb::start(&operator);
    let procs = lb.procs().unwrap();
    let out = lb.knocker(&[
        "--init",
        "--plain-http",
        "--bind",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("split the traffic"));
    assert_eq!(lb.text(), operator);
    assert_eq!(lb.procs().unwrap(), procs);
}

#[test]
fn haproxy_c_runs_with_the_masters_environment() {
    // The operator's part uses a variable only the service's environment
    // has; knocker's own environment lacks it.
    let operator = format!(
        "{OPERATOR}backend env_stub\n    server env \"${{KNOCKER_TEST_AGENT_ADDR}}\" disabled\n"
    );
    let lb = Lb::start_with_env(&operator, &[("KNOCKER_TEST_AGENT_ADDR", "127.0.0.1:2")]);
    assert!(std::env::var_os("KNOCKER_TEST_AGENT_ADDR").is_none());
    let bind = format!("127.0.0.1:{}", lb.port);
    lb.ok(&["--init", "--plain-http", "--bind", &bind]);
}

#[test]
fn a_change_written_but_not_loaded_is_reloaded_by_the_next_run() {
    // As after a run killed between the rename and the reload.
    let lb = Lb::start(OPERATOR);
    let a = node("127.0.0.2", "a");
    lb.init(&[]);
    let out = lb.ok(&["--add", &a.addr.to_string(), "--no-reload"]);
    assert!(out.contains("not reloaded"), "{out}");
    let worker = lb.worker();
    let written = lb.text();
    let again = lb.ok(&["--add", &a.addr.to_string()]);
    assert!(again.contains("had not loaded"), "{again}");
    assert_ne!(lb.worker(), worker);
    assert_eq!(lb.text(), written);
    lb.wait_state(&a, "UP", Duration::from_secs(10));
    // Loaded now: the same call changes nothing and does not reload.
    let worker = lb.worker();
    let nothing = lb.ok(&["--add", &a.addr.to_string()]);
    assert!(nothing.contains("nothing to do"), "{nothing}");
    assert_eq!(lb.worker(), worker);
}
