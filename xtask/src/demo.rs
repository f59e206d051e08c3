//! `cargo xtask demo`: the shared-primary flow (README.md) on
//! throwaway clusters, printed like a tutorial, with a one-line verdict.
//!
//! A primary (a pg-harness cluster with a Knocknoc database and a
//! knocknoc.conf) is exposed with `knocker exposedb --init`, a secondary at
//! 127.0.0.2 is allowed with `--add`, configured with `knocknoc-installer`
//! option 3 (non-interactively) and queries the database; 127.0.0.3 is
//! refused; then `--remove` and `--deinit` undo it all.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use pg_harness::{Cluster, ClusterOptions};

use crate::cargo;

/// One step's verdict, for the summary line.
struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool) {
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
fn show(bin: &Path, args: &[&str]) -> Result<(i32, String)> {
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

fn target_bin(name: &str) -> PathBuf {
    crate::workspace_root().join("target/debug").join(name)
}

/// `cargo xtask demo`.
pub fn run(_args: &[&str]) -> Result<()> {
    println!("== Building knocker and knocknoc-installer");
    let status = cargo()
        .args(["build", "-q", "-p", "knocker-cli", "-p", "installer-cli"])
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let knocker = target_bin("knocker");
    let installer = target_bin("knocknoc-installer");
    let major = *pg_harness::versions()
        .last()
        .context("no PostgreSQL provisioned: run cargo xtask pg")?;
    pg_harness::block_on(flow(major, &knocker, &installer))
}

async fn flow(major: u32, knocker: &Path, installer: &Path) -> Result<()> {
    let mut checks = Checks {
        failed: Vec::new(),
        passed: 0,
    };
    println!("\n== A primary: PostgreSQL {major} (throwaway cluster) with a Knocknoc database");
    let pg = Cluster::start_with(major, ClusterOptions::default()).await;
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
    let dir = std::env::temp_dir().join(format!("knocker-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("knocknoc.conf");
    std::fs::write(
        &conf,
        format!(
            "Listen = 127.0.0.1:8756\nDatabaseURL = \"postgres://knocknoc:app-secret@127.0.0.1:{}/knocknoc\"\n",
            pg.port()
        ),
    )?;
    println!("  {} (the primary's knocknoc.conf):", conf.display());
    println!(
        "    DatabaseURL = \"postgres://knocknoc:********@127.0.0.1:{}/knocknoc\"",
        pg.port()
    );
    println!(
        "  This throwaway server runs as an unprivileged user, not as `postgres` under\n  \
         pg_ctlcluster, so the demo passes --admin-conn and restarts it itself\n  \
         (--no-restart); on a stock Debian primary neither flag is needed."
    );
    let admin = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        pg.port()
    );
    let conf_s = conf.to_string_lossy().into_owned();
    let base = |extra: &[&'static str]| -> Vec<String> {
        let mut v = vec![
            "exposedb".to_string(),
            "--config".into(),
            conf_s.clone(),
            "--admin-conn".into(),
            admin.clone(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run_k = |extra: &[&'static str]| {
        let v = base(extra);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        show(knocker, &refs)
    };

    println!("\n== 1. On the primary: expose the database");
    let (code, out) = run_k(&["--init", "--no-restart", "--advertise", "127.0.0.1"])?;
    checks.check("--init exits 0", code == 0);
    let uri = out
        .split_whitespace()
        .find(|w| w.starts_with("postgres://"))
        .map(str::to_string);
    checks.check(
        "--init printed the secondaries' connection string",
        uri.is_some(),
    );
    let uri = uri.unwrap_or_default();
    println!("\n$ # restart PostgreSQL so that listen_addresses takes effect");
    pg.restart().await;

    println!("\n== 2. On the primary: allow the secondary at 127.0.0.2");
    let (code, _) = run_k(&["--add", "127.0.0.2/32"])?;
    checks.check("--add exits 0", code == 0);
    let (_, listed) = run_k(&["--list"])?;
    checks.check("--list shows 127.0.0.2/32", listed.trim() == "127.0.0.2/32");
    let (code, _) = run_k(&["--add", "127.0.0.2/32"])?;
    checks.check("adding it again changes nothing (exit 0)", code == 0);
    run_k(&["--explain", "127.0.0.3"])?;

    println!("\n== 3. On the secondary (127.0.0.2): the installer, option 3");
    let password = uri
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .and_then(|u| u.split(':').nth(1))
        .unwrap_or_default()
        .to_string();
    if installer.exists() {
        let sec_conf = dir.join("secondary-knocknoc.conf");
        let sec_conf_s = sec_conf.to_string_lossy().into_owned();
        let (code, _) = show(
            installer,
            &[
                "--config",
                &sec_conf_s,
                "--yes",
                "--listen",
                "127.0.0.1:8756",
                "--trusted-forwarders",
                "127.0.0.1/32",
                "--db-option",
                "3",
                "--db-url",
                &uri,
                "--bind-source",
                "127.0.0.2",
            ],
        )?;
        checks.check(
            "installer option 3 accepts the string from 127.0.0.2",
            code == 0,
        );
    } else {
        println!("  (knocknoc-installer is not built here; checking the string with a direct connection)");
    }
    let from = |a: &str| a.parse::<IpAddr>().expect("literal address");
    println!("\n$ # a query from 127.0.0.2 as knocknoc_remote");
    match pg
        .connect_from(from("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
        .await
    {
        Ok(c) => {
            let who: String = c
                .query_one("SELECT current_user::text", &[])
                .await
                .map(|r| r.get(0))
                .unwrap_or_default();
            println!("  connected; current_user = {who}");
            checks.check("127.0.0.2 connects and acts as knocknoc", who == "knocknoc");
        }
        Err(e) => {
            println!(
                "  refused: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            );
            checks.check("127.0.0.2 connects", false);
        }
    }
    println!("\n$ # the same from 127.0.0.3 (not allowed)");
    match pg
        .connect_from(from("127.0.0.3"), "knocknoc_remote", &*password, "knocknoc")
        .await
    {
        Ok(_) => checks.check("127.0.0.3 is refused", false),
        Err(e) => {
            println!(
                "  refused: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            );
            checks.check("127.0.0.3 is refused", true);
        }
    }

    println!("\n== 4. Undo: remove the secondary, then everything");
    let (code, _) = run_k(&["--remove", "127.0.0.2/32", "--terminate"])?;
    checks.check("--remove exits 0", code == 0);
    let refused = pg
        .connect_from(from("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
        .await
        .is_err();
    println!(
        "\n$ # 127.0.0.2 again: {}",
        if refused { "refused" } else { "connected" }
    );
    checks.check("127.0.0.2 is refused after --remove", refused);
    let (code, _) = run_k(&["--deinit", "--no-restart"])?;
    checks.check("--deinit exits 0", code == 0);
    let log = pg.log();
    checks.check(
        "the password never reached the server log",
        !password.is_empty() && !log.contains(&password),
    );
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    if checks.failed.is_empty() {
        println!(
            "VERDICT: OK: the whole shared-primary flow works on PostgreSQL {major} ({} checks passed).",
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
        bail!("demo failed")
    }
}
