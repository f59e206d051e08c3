//! End-to-end cost of adding one pg_hba rule with `pgctl::hba_install`,
//! side by side with `psql -c 'select pg_reload_conf()'` in the same run.
//!
//! Run: `cargo bench -p pgctl --bench hba_install [-- RUNS]` (default 25
//! runs per series, after 3 warm-up runs). Needs the PostgreSQL 15 and 17
//! binaries (`cargo xtask pg`).
//!
//! For PostgreSQL 15 and 17, one throwaway cluster each, with `hba_file`
//! pointing at a file of 1000+ rules on a real disk (`/var/tmp`: the
//! harness keeps data directories on tmpfs, where fsync costs nothing). psql is the provisioned one of the server's version
//! when it has one, else PostgreSQL 15's (the npm builds of 16-18 ship no
//! psql); the output says which. The series are interleaved (one run of each in turn), so load on
//! the machine hits them alike:
//! - `knocker add`: connect over the unix socket, read the server facts,
//!   edit (append one new rule) + offline validation + lock, backup, temp
//!   file, fsync, rename, directory fsync, server check
//!   (`pg_hba_file_rules`), `pg_reload_conf()`, confirmation from a new
//!   session; the same with `fsync: false` to isolate what durability costs;
//! - `psql reload`: `psql -X -c 'select pg_reload_conf()'` over the same
//!   socket (process start, connect, reload, exit), the floor a shell script
//!   would pay without any check.
//!
//! It also prints the median time spent inside fsync calls as reported by
//! `InstallReport::fsync_time`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;

use pg_harness::{Cluster, ClusterOptions};
use pgctl::hba_install::{edit, InstallOptions, InstallReport};

const RULES: usize = 1000;

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(25);
    for major in [15, 17] {
        pg_harness::block_on(run(major, runs.max(1)));
    }
}

async fn run(major: u32, runs: usize) {
    let disk_dir = tempfile::Builder::new()
        .prefix("knocker-bench-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(disk_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hba = disk_dir.path().join("pg_hba.conf");
    let mut text = pg_harness::DEFAULT_HBA.to_string();
    for n in 0..RULES {
        text.push_str(&format!(
            "host knocknoc bench_{n} 10.{}.{}.0/24 scram-sha-256\n",
            n / 256,
            n % 256
        ));
    }
    std::fs::write(&hba, &text).unwrap();
    std::fs::set_permissions(&hba, std::fs::Permissions::from_mode(0o644)).unwrap();
    let settings = vec![("hba_file".to_string(), hba.to_string_lossy().into_owned())];
    let pg = Cluster::start_with(
        major,
        ClusterOptions {
            settings,
            ..ClusterOptions::default()
        },
    )
    .await;
    let client = pg.connect_unix().await;
    assert_eq!(
        pgctl::hba_install::server_hba_file(&client).await.unwrap(),
        hba
    );

    let psql = [pg.bin_dir(), pg_harness::bin_dir(15)]
        .into_iter()
        .map(|dir| dir.join("psql"))
        .find(|p| p.exists())
        .expect("a provisioned psql (PostgreSQL 15's, from `cargo xtask pg`)");
    let mut with_fsync = Vec::new();
    let mut without_fsync = Vec::new();
    let mut fsync_time = Vec::new();
    let mut reload_only = Vec::new();
    let mut added = 0u32;
    for i in 0..runs + 3 {
        let warm = i >= 3;
        let (t, report) = knocker_add(&pg, &mut added, true).await;
        if warm {
            with_fsync.push(t);
            fsync_time.push(report.fsync_time);
        }
        let (t, _) = knocker_add(&pg, &mut added, false).await;
        if warm {
            without_fsync.push(t);
        }
        let t = psql_reload(&pg, &psql);
        if warm {
            reload_only.push(t);
        }
    }
    let lines = std::fs::read_to_string(&hba).unwrap().lines().count();
    drop(client);
    drop(pg);
    println!(
        "\nPostgreSQL {major}, pg_hba.conf {RULES}+ rules ({lines} lines at the end), {runs} runs per series, interleaved, psql: {}",
        psql.display()
    );
    println!("| series | median | min | max |");
    println!("|---|---|---|---|");
    row("knocker add (fsync on)", &mut with_fsync);
    row("knocker add (fsync off)", &mut without_fsync);
    row("  of which inside fsync calls", &mut fsync_time);
    row("psql -c 'select pg_reload_conf()'", &mut reload_only);
    let ratio = median(&mut with_fsync).as_secs_f64() / median(&mut reload_only).as_secs_f64();
    println!("knocker add / psql reload (medians): {ratio:.2}x");
}

/// One end-to-end add of a new rule, as `knocker exposedb --add` does it.
async fn knocker_add(pg: &Cluster, added: &mut u32, fsync: bool) -> (Duration, InstallReport) {
    *added += 1;
    let line = format!(
        "host knocknoc added_{added} 192.0.2.{}/32 scram-sha-256\n",
        *added % 250
    );
    let config = pg.unix_config();
    let start = Instant::now();
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let facts = pgctl::server::read_facts(&client).await.unwrap();
    let hba = facts.hba_file.clone().unwrap();
    let options = InstallOptions {
        fsync,
        reconnect: Some(Arc::new(config)),
        ..InstallOptions::default()
    };
    let report = edit(
        &client,
        &hba,
        |old: &[u8]| {
            let mut new = old.to_vec();
            new.extend_from_slice(line.as_bytes());
            Ok::<_, std::convert::Infallible>(new)
        },
        &options,
    )
    .await
    .unwrap();
    drop(client);
    let _ = connection.await;
    let elapsed = start.elapsed();
    assert!(report.changed && report.reload.is_some());
    (elapsed, report)
}

fn psql_reload(pg: &Cluster, psql: &std::path::Path) -> Duration {
    let start = Instant::now();
    let out = pg
        .psql_command(psql, "select pg_reload_conf()")
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    elapsed
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn row(name: &str, v: &mut [Duration]) {
    let m = median(v);
    println!(
        "| {name} | {:.2} ms | {:.2} ms | {:.2} ms |",
        ms(m),
        ms(v[0]),
        ms(v[v.len() - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
