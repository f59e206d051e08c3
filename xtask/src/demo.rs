//! `cargo xtask demo`: the high-availability story (README.md)
//! on throwaway clusters, printed like a tutorial: numbered sections, each
//! with its checks, and one `VERDICT:` line at the end.
//!
//! It provisions what it uses first (PostgreSQL 15 from Debian unless
//! `--pg-version` picks another: the same idempotent steps as `cargo xtask
//! pg`, nothing else), builds the two binaries (unless `--bin-dir` names
//! them), then: a primary (a pg-harness cluster with a Knocknoc database
//! and a knocknoc.conf) is exposed with `knocker exposedb --init`, a web
//! node at 127.0.0.2 is allowed with `--add`, configured with
//! `knocknoc-installer` option 3 (non-interactively) and queries the
//! database; 127.0.0.3 is refused. Then a standby, a failover and a
//! switchover back under a writer on a pair of Debian clusters (`demo_ha`:
//! `knocker replica`, `knocker failover`),
//! the load balancer in front of two web nodes (`demo_lb`: `knocker
//! haproxy`, `knocker forwarders`), and finally `--remove` and `--deinit`
//! undo the sharing. Everything the demo starts is stopped by pid or
//! dropped (`pg_dropcluster`) when its section ends, also on failure.
//!
//! PostgreSQL 15 by default: it is Debian's package (one `apt-get install`
//! on a fresh machine, no download into the cache), and the only build here
//! with `pg_createcluster`, `pg_basebackup` and `pg_rewind`, which the
//! standby, failover and switchover sections need (with `--pg-version 16`..`18` they
//! are left out, saying why).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use pg_harness::{Cluster, ClusterOptions};

/// The version the demo runs on unless `--pg-version` says otherwise.
const DEFAULT_PG_VERSION: u32 = 15;

/// The web node the primary allows, and a host it does not.
const WEB_NODE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// The web node's knocknoc.conf (in the scratch directory): written by the
/// installer, then its TrustedForwarders kept by `knocker forwarders`.
pub(crate) const WEB_NODE_CONF: &str = "web-node-knocknoc.conf";

const USAGE: &str = "\
usage: cargo xtask demo [--pg-version N] [--bin-dir DIR]
  --pg-version N  run on PostgreSQL N (15, the default, from Debian; 16-18 from npm)
  --bin-dir DIR   use the knocker and knocknoc-installer in DIR instead of building them
";

/// One step's verdict, for the summary line.
pub(crate) struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    /// Prints and records one check.
    pub(crate) fn check(&mut self, what: &str, ok: bool) {
        if ok {
            self.passed += 1;
            println!("    ok: {what}");
        } else {
            println!("    FAILED: {what}");
            self.failed.push(what.to_string());
        }
    }
}

fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Run a binary, printing the command line and its output; returns
/// (exit code, stdout).
pub(crate) fn show(bin: &Path, args: &[&str]) -> Result<(i32, String)> {
    let name = bin.file_name().unwrap_or_default().to_string_lossy();
    println!(
        "\n$ {name} {}",
        args.iter()
            .map(|a| shell_word(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  {line}");
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        println!("  {line}");
    }
    let code = out.status.code().unwrap_or(-1);
    println!("  [exit {code}]");
    Ok((code, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// `cargo xtask demo [--pg-version N] [--bin-dir DIR]`.
pub fn run(args: &[&str]) -> Result<()> {
    let mut major = DEFAULT_PG_VERSION;
    let mut bin_dir = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--pg-version" => {
                let value = crate::option_value(&mut rest, "--pg-version", USAGE)?;
                major = value.parse().map_err(|_| {
                    crate::usage_error(&format!("--pg-version {value:?}: not a number"), USAGE)
                })?;
            }
            "--bin-dir" => {
                bin_dir = Some(crate::option_value(&mut rest, "--bin-dir", USAGE)?.into())
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(crate::unknown_argument(other, USAGE)),
        }
    }

    crate::provision::provision(major)?;
    // The load balancer's section runs Debian's HAProxy (installed only
    // when missing).
    crate::provision::ensure_debian_packages(&["haproxy"], "the demo's load balancer")?;
    // As root, the throwaway servers run as an unprivileged user and their
    // initdb template lives in the cache: that user must reach it.
    if nix::unistd::geteuid().is_root() {
        let cache = pg_harness::cache_dir();
        crate::provision::create_dir_0755(&cache)?;
        crate::provision::check_world_reachable(&cache)?;
    }
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None => build()?,
    };
    let knocker = bin_dir.join("knocker");
    let installer = bin_dir.join("knocknoc-installer");
    for bin in [&knocker, &installer] {
        if !bin.is_file() {
            bail!(
                "{} is missing: build it with `cargo build -p knocker-cli -p installer-cli`",
                bin.display()
            );
        }
    }
    // Once the sections have begun, the transcript ends with a VERDICT line
    // whatever happens: a failed check, an error, or a pg-harness panic
    // (whose message the panic hook has printed as the error line).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pg_harness::block_on(flow(major, &knocker, &installer))
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.is::<ChecksFailed>() => Err(e),
        Ok(Err(e)) => {
            println!("\nVERDICT: FAILED: the demo stopped before its end: {e:#}");
            Err(e)
        }
        Err(panic) => {
            println!(
                "\nVERDICT: FAILED: the demo stopped before its end (see the `xtask: error:` line)"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

/// The demo ran to its end and some checks failed (the VERDICT line says
/// which).
#[derive(Debug)]
struct ChecksFailed(usize);

impl std::fmt::Display for ChecksFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of the demo's checks failed (see the VERDICT line)",
            self.0
        )
    }
}

impl std::error::Error for ChecksFailed {}

/// `cargo build` of the two binaries; returns their directory.
fn build() -> Result<PathBuf> {
    eprintln!(
        "xtask demo: building knocker and knocknoc-installer (cargo build; \
         the first build takes a few minutes)"
    );
    // With `-p xtask`, cargo unifies the features of the binaries' crates
    // with xtask's own (a superset: xtask depends on their libraries), so
    // the libraries just built for `cargo run -p xtask` are reused: on a
    // fresh machine, tokio, rustls, ring, pgctl ... are compiled once.
    crate::build_binaries(&["--quiet", "-p", "xtask"])
}

/// Removes the demo's scratch directory however the demo ends.
pub(crate) struct ScratchDir(pub(crate) PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the sections share.
pub(crate) struct Demo<'a> {
    pub(crate) checks: Checks,
    /// The number of the last section printed.
    section: u32,
    pub(crate) knocker: &'a Path,
    installer: &'a Path,
    primary: Cluster,
    pub(crate) scratch: ScratchDir,
    /// `--config` and `--admin-conn` for every `knocker exposedb` call.
    conf: String,
    admin: String,
    /// The connection string `--init` printed for the web nodes.
    uri: String,
    /// The remote role's password (from `uri`).
    password: String,
}

impl Demo<'_> {
    /// Prints the next section's numbered title.
    pub(crate) fn section(&mut self, title: &str) {
        self.section += 1;
        println!("\n== {}. {title}", self.section);
    }

    /// `knocker exposedb --config .. --admin-conn .. EXTRA..`.
    fn exposedb(&self, extra: &[&str]) -> Result<(i32, String)> {
        let mut args = vec![
            "exposedb",
            "--config",
            &self.conf,
            "--admin-conn",
            &self.admin,
        ];
        args.extend_from_slice(extra);
        show(self.knocker, &args)
    }

    /// Connects to the Knocknoc database as the remote role from `source`.
    async fn connect_from(
        &self,
        source: IpAddr,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.primary
            .connect_from(source, "knocknoc_remote", &*self.password, "knocknoc")
            .await
    }
}

/// The sections, in order; each prints its commands and checks.
async fn flow(major: u32, knocker: &Path, installer: &Path) -> Result<()> {
    println!("\n== 1. A primary: PostgreSQL {major} (throwaway cluster) with a Knocknoc database");
    eprintln!("xtask demo: starting a throwaway PostgreSQL {major} (the first start makes an initdb template)");
    let primary = Cluster::start_with(major, ClusterOptions::default()).await;
    let scratch =
        ScratchDir(std::env::temp_dir().join(format!("knocker-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("cannot create {}", scratch.0.display()))?;
    let conf = scratch.0.join("knocknoc.conf");
    let mut demo = Demo {
        checks: Checks {
            failed: Vec::new(),
            passed: 0,
        },
        section: 1,
        knocker,
        installer,
        admin: format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            primary.port()
        ),
        primary,
        conf: conf.to_string_lossy().into_owned(),
        scratch,
        uri: String::new(),
        password: String::new(),
    };
    primary_with_knocknoc(&demo, &conf).await?;
    expose(&mut demo).await?;
    allow_web_node(&mut demo)?;
    web_node_joins(&mut demo).await?;
    // The sections of the other commands join here, each once its command
    // exists (a section whose command does not exist is not shown).
    if let Some(why) = crate::demo_ha::unavailable(major) {
        println!("\n  (The standby, failover and switchover sections are left out: {why}.)");
    } else {
        let pair = crate::demo_ha::standby(&mut demo).await?;
        crate::demo_ha::failover(&mut demo, &pair).await?;
        crate::demo_ha::switchover(&mut demo, &pair).await?;
        pair.remove()?;
    }
    crate::demo_lb::load_balancer(&mut demo)?;
    undo(&mut demo).await?;
    verdict(&demo.checks, major)
}

/// Section 1: the binaries' versions; the application's role, database, a
/// table and knocknoc.conf.
async fn primary_with_knocknoc(demo: &Demo<'_>, conf: &Path) -> Result<()> {
    show(demo.knocker, &["--version"])?;
    show(demo.installer, &["--version"])?;
    let pg = &demo.primary;
    pg.create_role("knocknoc", "app-secret").await;
    pg.create_database("knocknoc", "knocknoc").await;
    // A stand-in for Knocknoc's schema, owned by the application's role.
    let app = pg
        .connect_as("knocknoc", "app-secret", "knocknoc")
        .await
        .context("connecting as the application")?;
    app.batch_execute("CREATE TABLE settings (key text PRIMARY KEY, value text)")
        .await
        .context("creating the demo table")?;
    drop(app);
    std::fs::write(
        conf,
        format!(
            "Listen = 127.0.0.1:8756\nDatabaseURL = \"postgres://knocknoc:app-secret@127.0.0.1:{}/knocknoc\"\n",
            pg.port()
        ),
    )
    .with_context(|| format!("cannot write {}", conf.display()))?;
    println!("\n  {} (the primary's knocknoc.conf):", conf.display());
    println!(
        "    DatabaseURL = \"postgres://knocknoc:********@127.0.0.1:{}/knocknoc\"",
        pg.port()
    );
    println!(
        "  This throwaway server runs as an unprivileged user, not as `postgres` under\n  \
         pg_ctlcluster, so the demo passes --admin-conn and restarts it itself\n  \
         (--no-restart); on a stock Debian primary neither flag is needed."
    );
    Ok(())
}

/// `knocker exposedb --init`, then the restart it leaves to the operator.
async fn expose(demo: &mut Demo<'_>) -> Result<()> {
    demo.section("On the primary: expose the database");
    let (code, out) = demo.exposedb(&["--init", "--no-restart", "--advertise", "127.0.0.1"])?;
    demo.checks.check("--init exits 0", code == 0);
    let uri = out
        .split_whitespace()
        .find(|w| w.starts_with("postgres://"))
        .map(str::to_string);
    demo.checks.check(
        "--init printed the secondaries' connection string",
        uri.is_some(),
    );
    demo.uri = uri.unwrap_or_default();
    demo.password = demo
        .uri
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .and_then(|u| u.split(':').nth(1))
        .unwrap_or_default()
        .to_string();
    println!("\n$ # restart PostgreSQL so that listen_addresses takes effect");
    demo.primary.restart().await;
    Ok(())
}

/// `--add` the web node, `--list`, an idempotent `--add`, `--explain`.
fn allow_web_node(demo: &mut Demo<'_>) -> Result<()> {
    demo.section(&format!("On the primary: allow the web node at {WEB_NODE}"));
    let cidr = format!("{WEB_NODE}/32");
    let (code, _) = demo.exposedb(&["--add", &cidr])?;
    demo.checks.check("--add exits 0", code == 0);
    let (_, listed) = demo.exposedb(&["--list"])?;
    demo.checks
        .check(&format!("--list shows {cidr}"), listed.trim() == cidr);
    let (code, _) = demo.exposedb(&["--add", &cidr])?;
    demo.checks
        .check("adding it again changes nothing (exit 0)", code == 0);
    demo.exposedb(&["--explain", &STRANGER.to_string()])?;
    Ok(())
}

/// The installer's option 3 on the web node, a query from it, and a
/// refusal for a host that was not added.
async fn web_node_joins(demo: &mut Demo<'_>) -> Result<()> {
    demo.section(&format!(
        "On the web node ({WEB_NODE}): knocknoc-installer, option 3"
    ));
    let web_conf = demo.scratch.0.join(WEB_NODE_CONF);
    let web_conf = web_conf.to_string_lossy().into_owned();
    let source = WEB_NODE.to_string();
    let (code, _) = show(
        demo.installer,
        &[
            "--config",
            &web_conf,
            "--yes",
            "--listen",
            "127.0.0.1:8756",
            "--trusted-forwarders",
            "127.0.0.1/32",
            "--db-option",
            "3",
            "--db-url",
            &demo.uri,
            "--bind-source",
            &source,
        ],
    )?;
    demo.checks.check(
        &format!("installer option 3 accepts the string from {WEB_NODE}"),
        code == 0,
    );
    println!("\n$ # a query from {WEB_NODE} as knocknoc_remote");
    match demo.connect_from(WEB_NODE).await {
        Ok(c) => {
            let who: String = c
                .query_one("SELECT current_user::text", &[])
                .await
                .map(|r| r.get(0))
                .unwrap_or_default();
            println!("  connected; current_user = {who}");
            demo.checks.check(
                &format!("{WEB_NODE} connects and acts as knocknoc"),
                who == "knocknoc",
            );
        }
        Err(e) => {
            println!("  refused: {}", server_message(&e));
            demo.checks.check(&format!("{WEB_NODE} connects"), false);
        }
    }
    println!("\n$ # the same from {STRANGER} (not allowed)");
    match demo.connect_from(STRANGER).await {
        Ok(_) => demo.checks.check(&format!("{STRANGER} is refused"), false),
        Err(e) => {
            println!("  refused: {}", server_message(&e));
            demo.checks.check(&format!("{STRANGER} is refused"), true);
        }
    }
    Ok(())
}

/// `--remove --terminate` the web node, then `--deinit`.
async fn undo(demo: &mut Demo<'_>) -> Result<()> {
    demo.section("Undo: remove the web node, then everything");
    let cidr = format!("{WEB_NODE}/32");
    let (code, _) = demo.exposedb(&["--remove", &cidr, "--terminate"])?;
    demo.checks.check("--remove exits 0", code == 0);
    let refused = demo.connect_from(WEB_NODE).await.is_err();
    println!(
        "\n$ # {WEB_NODE} again: {}",
        if refused { "refused" } else { "connected" }
    );
    demo.checks
        .check(&format!("{WEB_NODE} is refused after --remove"), refused);
    let (code, _) = demo.exposedb(&["--deinit", "--no-restart"])?;
    demo.checks.check("--deinit exits 0", code == 0);
    let log = demo.primary.log();
    demo.checks.check(
        "the password never reached the server log",
        !demo.password.is_empty() && !log.contains(&demo.password),
    );
    Ok(())
}

/// The server's message for a refused connection (else the client error).
fn server_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// The one `VERDICT:` line; an error (exit 1) unless every check passed.
fn verdict(checks: &Checks, major: u32) -> Result<()> {
    println!();
    if checks.failed.is_empty() {
        println!(
            "VERDICT: OK: the whole story works on PostgreSQL {major} ({} checks passed).",
            checks.passed
        );
        Ok(())
    } else {
        println!(
            "VERDICT: FAILED: {} of {} checks failed: {}",
            checks.failed.len(),
            checks.failed.len() + checks.passed,
            checks.failed.join("; ")
        );
        Err(ChecksFailed(checks.failed.len()).into())
    }
}
