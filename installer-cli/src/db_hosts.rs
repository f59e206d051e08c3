//! `--db-hosts`: a web node's stored DatabaseURL rewritten to the
//! multi-host form (a primary and its standbys). The parsing, the building
//! and the checks are `knocker_ops::installer`'s; this prints.

use knocker_ops::installer as ops;
use knocker_ops::ErrorKind;
use knocknoc_conf::{DatabaseUrl, Document};

use crate::ui::Term;
use crate::{Abort, Args};

/// An operations error as the way this run ends.
fn abort(e: knocker_ops::Error) -> Abort {
    match e.kind() {
        ErrorKind::Usage => Abort::Usage(e.to_string()),
        _ => Abort::Check(e.to_string()),
    }
}

/// The whole `--db-hosts` run: nothing is written unless one host is a
/// primary and option 3's check passes through the new string.
pub fn run(args: &Args, list: &str, term: &Term) -> Result<(), Abort> {
    let hosts = ops::parse_db_hosts(list).map_err(abort)?;
    let path = &args.config;
    let mut doc = Document::load(path).map_err(|e| {
        if e.is_not_found() {
            Abort::Usage(format!(
                "{} does not exist: run the installer without --db-hosts first",
                path.display()
            ))
        } else {
            Abort::Check(format!("cannot read {}: {e}", path.display()))
        }
    })?;
    let settings = doc
        .settings()
        .map_err(|e| Abort::Usage(format!("{}: {e}", path.display())))?;
    let current = settings.database_url.ok_or_else(|| {
        Abort::Usage(format!(
            "{} has no DatabaseURL: run the installer without --db-hosts first",
            path.display()
        ))
    })?;
    let url = ops::multi_host_url(current.expose_secret(), &hosts).map_err(abort)?;
    let params = ops::resolve(&url).map_err(abort)?;
    let stored = DatabaseUrl::new(url).map_err(|e| Abort::Usage(e.to_string()))?;
    term.say(&format!("Checking {stored} ..."));
    let rt = crate::database::runtime();
    let checked = rt.block_on(ops::check_db_hosts(&params, args.bind_source));
    term.say("Hosts:");
    for host in &checked.hosts {
        match &host.status {
            Ok(f) => {
                let tls = if f.tls { ", TLS" } else { "" };
                term.say(&format!(
                    "  {}: {}, PostgreSQL {}{tls}",
                    host.name, f.role, f.version
                ));
            }
            Err(why) => term.say(&format!("  {}: unreachable ({why})", host.name)),
        }
    }
    let found = checked.outcome.map_err(abort)?;
    let tls = if found.tls { " over TLS" } else { "" };
    term.ok(&format!(
        "Connected to the primary {} as \"{}\"{tls}: database \"{}\" has {} table(s) this role can read and write.",
        found.address, params.user, params.dbname, found.usable_tables
    ));
    doc.set_database_url(&stored)
        .map_err(|e| Abort::Check(format!("cannot edit the configuration: {e}")))?;
    doc.save(path)
        .map_err(|e| Abort::Check(format!("cannot write {}: {e}", path.display())))?;
    term.ok(&format!("Wrote {}:", path.display()));
    term.say(&format!("  DatabaseURL = {stored}"));
    Ok(())
}
