//! `cargo xtask bench haproxy [--runs N] [--requests N] [--knocker PATH]`:
//! `knocker haproxy` against a real HAProxy, side by side in one run.
//!
//! A HAProxy (`haproxy -W -S <socket> -f <file>`, the file in `/var/tmp`
//! so that fsync costs what it costs on a disk) balances three web nodes on
//! 127.0.0.2-4 (pg-harness web nodes: child processes of this program).
//!
//! * change: `knocker haproxy --add` whole (validate, write, reload, confirm;
//!   release build) next to `haproxy -c -W -f FILE` plus a bare reload by
//!   hand (`reload` on the master CLI, then `show proc` until a new worker
//!   runs); medians of N interleaved runs (each add removed again, untimed);
//! * reloads under load: new-connection requests from 4 client threads while
//!   10 `--add`/`--remove` changes reload HAProxy; failed requests counted;
//! * failure detection: a SIGKILLed node and a SIGSTOPped node, time until
//!   the worker's `show stat` says DOWN (polled every 20 ms);
//! * latency: sequential keep-alive requests through the balancer and
//!   directly to a node, median and mean per request.
//!
//! Not part of `cargo xtask test`.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use knocker_ops::haproxy::runtime::MasterCli;
use pg_harness::webnode::{self, WebNode};

const USAGE: &str = "usage: cargo xtask bench haproxy [--runs N] [--requests N] [--knocker PATH]";

/// The argument that makes this program a web node (see `main`).
pub const WEBNODE_ARG: &str = "__webnode";

fn free_port(ip: &str) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

struct Lb {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    cli: MasterCli,
    master: Child,
    knocker: PathBuf,
}

impl Lb {
    fn knocker(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(&self.knocker)
            .arg("haproxy")
            .args(args)
            .arg("--haproxy-config")
            .arg(&self.cfg)
            .arg("--master-socket")
            .arg(self.cli.socket())
            .arg("--knocknoc-config")
            .arg("/nonexistent/knocknoc.conf")
            .output()?;
        ensure!(
            out.status.success(),
            "knocker haproxy {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn wait_state(&self, name: &str, state: &str, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let stats = self.cli.server_stats("knocker_web_nodes")?;
            if stats.iter().any(|s| s.name == name && s.status == state) {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{name} not {state} within {limit:?}")
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.master.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.master.wait();
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the benchmark and prints a markdown report.
pub fn run(args: &[&str]) -> Result<()> {
    let (mut runs, mut requests, mut knocker) = (10usize, 20_000u64, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--runs" => runs = it.next().context(USAGE)?.parse()?,
            "--requests" => requests = it.next().context(USAGE)?.parse()?,
            "--knocker" => knocker = Some(PathBuf::from(it.next().context(USAGE)?)),
            _ => bail!("{USAGE}"),
        }
    }
    crate::provision::provision_haproxy()?;
    let knocker = match knocker {
        Some(k) => k,
        None => crate::bench::build_knocker("haproxy")?,
    };
    let spawn = |ip: &str, name: &str| -> Result<WebNode> {
        let addr = SocketAddr::new(ip.parse()?, free_port(ip)?);
        Ok(WebNode::spawn(WEBNODE_ARG, addr, name)?)
    };
    let mut nodes = vec![
        spawn("127.0.0.2", "a")?,
        spawn("127.0.0.3", "b")?,
        spawn("127.0.0.4", "c")?,
    ];
    let spare = spawn("127.0.0.5", "spare")?;

    std::fs::create_dir_all("/var/tmp")?;
    let dir = tempfile::Builder::new()
        .prefix("knocker-bench-haproxy-")
        .tempdir_in("/var/tmp")?;
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        "global\n    stats timeout 30s\ndefaults\n    mode http\n    timeout connect 5s\n    \
         timeout client 50s\n    timeout server 50s\n",
    )?;
    let socket = dir.path().join("master.sock");
    let master = Command::new("haproxy")
        .arg("-W")
        .arg("-S")
        .arg(&socket)
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start haproxy")?;
    let cli = MasterCli::new(&socket);
    let start = Instant::now();
    while cli
        .show_proc()
        .map(|p| p.workers.is_empty())
        .unwrap_or(true)
    {
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "haproxy did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let front = SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")?));
    let lb = Lb {
        _dir: dir,
        cfg: cfg.clone(),
        cli,
        master,
        knocker,
    };
    lb.knocker(&["--init", "--plain-http", "--bind", &front.to_string()])?;
    for n in &nodes {
        lb.knocker(&["--add", &n.addr.to_string()])?;
    }
    for n in &nodes {
        let name = knocker_ops::haproxy::block::server_name(n.addr);
        lb.wait_state(&name, "UP", Duration::from_secs(10))?;
    }
    let mut report = String::new();
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    report.push_str(&format!(
        "HAProxy {}, load average at start {}\n\n",
        haproxy_version(),
        load()
    ));

    // 1. One change, whole, vs haproxy -c + a bare reload.
    let spare_addr = spare.addr.to_string();
    let (mut knocker_add, mut by_hand) = (Vec::new(), Vec::new());
    for round in 0..runs + 2 {
        let t = Instant::now();
        lb.knocker(&["--add", &spare_addr])?;
        let add = t.elapsed();
        lb.knocker(&["--remove", &spare_addr])?;
        let t = Instant::now();
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-W", "-f"])
            .arg(&cfg)
            .status()?;
        ensure!(check.success(), "haproxy -c");
        let before = lb.cli.show_proc()?;
        lb.cli.reload()?;
        loop {
            if let Ok(now) = lb.cli.show_proc() {
                if now.reloads > before.reloads
                    && now.workers.iter().any(|w| !before.workers.contains(w))
                {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let hand = t.elapsed();
        if round >= 2 {
            knocker_add.push(add);
            by_hand.push(hand);
        }
    }
    let (k, h) = (median(&mut knocker_add), median(&mut by_hand));
    report.push_str(&format!(
        "| change ({runs} runs, medians) | time |\n|---|---|\n\
         | `knocker haproxy --add` whole (lock, -c, backup, fsync, rename, reload, confirm) | {} |\n\
         | `haproxy -c -W -f` + bare reload on the master CLI + wait for the new worker | {} |\n\
         | ratio (target <= 3x) | {:.2}x |\n\n",
        ms(k),
        ms(h),
        k.as_secs_f64() / h.as_secs_f64()
    ));

    // 2. Requests while 10 changes reload HAProxy.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(HashMap::<String, u64>::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent, failed, errors) =
                (stop.clone(), sent.clone(), failed.clone(), errors.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match webnode::get(front, "/", &[], None, Duration::from_secs(10)) {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *errors
                                .lock()
                                .unwrap()
                                .entry(format!("status {}", r.status))
                                .or_default() += 1;
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *errors
                                .lock()
                                .unwrap()
                                .entry(e.kind().to_string())
                                .or_default() += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    for change in 0..10 {
        // Spread the changes over the run.
        while sent.load(Ordering::Relaxed) < requests * change / 10 + requests / 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let action = if change % 2 == 0 { "--add" } else { "--remove" };
        lb.knocker(&[action, &spare_addr])?;
    }
    while sent.load(Ordering::Relaxed) < requests {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let elapsed = started.elapsed();
    report.push_str(&format!(
        "| requests during 10 reloading changes | value |\n|---|---|\n\
         | new-connection requests (4 client threads) | {} in {:.1} s |\n\
         | failed (target 0) | {} {:?} |\n\n",
        sent.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed),
        errors.lock().unwrap()
    ));

    // 4. Latency (before the nodes are hurt).
    let direct = keepalive_latency(nodes[1].addr, 3000)?;
    let balanced = keepalive_latency(front, 3000)?;
    report.push_str(&format!(
        "| keep-alive request, 3000 sequential | median | mean |\n|---|---|---|\n\
         | directly to a web node | {:.3} ms | {:.3} ms |\n\
         | through HAProxy | {:.3} ms | {:.3} ms |\n\
         | added by the balancer | {:+.3} ms | {:+.3} ms |\n\n",
        direct.0,
        direct.1,
        balanced.0,
        balanced.1,
        balanced.0 - direct.0,
        balanced.1 - direct.1
    ));

    // 3. Failure detection.
    let name_a = knocker_ops::haproxy::block::server_name(nodes[0].addr);
    let name_b = knocker_ops::haproxy::block::server_name(nodes[1].addr);
    nodes[0].kill();
    let killed = lb.wait_state(&name_a, "DOWN", Duration::from_secs(15))?;
    nodes[1].freeze();
    let frozen = lb.wait_state(&name_b, "DOWN", Duration::from_secs(20))?;
    nodes[1].thaw();
    report.push_str(&format!(
        "| failure detection (inter 2s fastinter 500ms fall 3, timeout check 1s) | marked DOWN after |\n|---|---|\n\
         | SIGKILLed node (target <= 3 s) | {:.2} s |\n\
         | SIGSTOPped node (target <= 10 s) | {:.2} s |\n\n",
        killed.as_secs_f64(),
        frozen.as_secs_f64()
    ));
    report.push_str(&format!("load average at end {}\n", load()));
    drop(nodes);
    print!("{report}");
    Ok(())
}

/// Median and mean milliseconds per request on one keep-alive connection.
fn keepalive_latency(target: SocketAddr, n: usize) -> Result<(f64, f64)> {
    let stream = TcpStream::connect(target)?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let request = format!("GET / HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let t = Instant::now();
        writer.write_all(request.as_bytes())?;
        let r = webnode::read_response(&mut reader)?;
        ensure!(r.status == 200, "status {}", r.status);
        if i >= 200 {
            times.push(t.elapsed());
        }
    }
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1000.0 / n as f64;
    Ok((median(&mut times).as_secs_f64() * 1000.0, mean))
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_default()
}
