//! `knocker exposedb` as a library, with no command line in sight: start a
//! throwaway PostgreSQL (pg-harness), give it an application database, then
//! init, add a CIDR, list, and deinit, printing each report as JSON.
//!
//! ```text
//! cargo run -p knocker-ops --example exposedb [MAJOR]   # default 17
//! ```
//!
//! `tests/example_exposedb.rs` runs it against every server version.

use knocker_ops::exposedb::{Exposedb, Options};
use pg_harness::Cluster;

/// What the run saw, for the test that runs this example.
#[derive(Debug)]
pub struct Seen {
    /// The secondaries' connection string from init.
    pub connection_string: Option<String>,
    /// The dry run of the add, as `--dry-run` prints it.
    pub add_plan: String,
    /// The CIDRs listed after the add.
    pub listed: Vec<String>,
    /// Whether deinit dropped the role.
    pub role_dropped: bool,
    /// pg_hba.conf before init and after deinit.
    pub hba_before: Vec<u8>,
    /// pg_hba.conf after deinit.
    pub hba_after: Vec<u8>,
}

/// Runs init, add, list and deinit on a new cluster of version `major`.
pub async fn run(major: u32) -> Result<Seen, knocker_ops::Error> {
    let pg = Cluster::start(major).await;
    pg.create_role("shop", "app-secret").await;
    pg.create_database("shop", "shop").await;
    let hba_before = std::fs::read(pg.hba_file()).expect("pg_hba.conf");

    // The options an embedder builds itself; `Options::default()` holds the
    // defaults the command line shows.
    let options = || Options {
        conn: Some(format!(
            "postgres://shop:app-secret@127.0.0.1:{}/shop",
            pg.port()
        )),
        admin_conn: Some(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            pg.port()
        )),
        advertise: Some("127.0.0.1".into()),
        // A throwaway server: leave the restart for listen_addresses out.
        no_restart: true,
        ..Options::default()
    };

    let mut session = Exposedb::connect(options()).await?;
    let init = session.init().await?;
    println!("init: {}", serde_json::to_string(&init).expect("JSON"));

    let add = session.plan_change(&["127.0.0.2/32".parse().expect("CIDR")], &[])?;
    let add_plan = add.dry_run.plan.to_string();
    print!("add, planned:\n{add_plan}");
    let added = session.change(add).await?;
    println!("add: {}", serde_json::to_string(&added).expect("JSON"));

    let list = session.list()?;
    println!("list: {}", serde_json::to_string(&list).expect("JSON"));

    let mut session = Exposedb::connect(options()).await?;
    let deinit = session.deinit().await?;
    println!("deinit: {}", serde_json::to_string(&deinit).expect("JSON"));

    Ok(Seen {
        connection_string: init.connection_string,
        add_plan,
        listed: list.cidrs,
        role_dropped: deinit.role_dropped,
        hba_before,
        hba_after: std::fs::read(pg.hba_file()).expect("pg_hba.conf"),
    })
}

#[allow(dead_code)] // the test includes this file and calls `run` only
fn main() {
    let major = std::env::args()
        .nth(1)
        .map(|m| m.parse().expect("a major version such as 17"))
        .unwrap_or(17);
    match pg_harness::block_on(run(major)) {
        Ok(seen) => println!("done: {seen:?}"),
        Err(e) => {
            eprintln!("exposedb example: {e}: {:?}", e.causes());
            std::process::exit(1);
        }
    }
}
