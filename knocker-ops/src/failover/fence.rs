//! `--fence`, on an old primary (a Debian cluster): keep it from coming
//! back as a writable primary. Debian's `start.conf` becomes `disabled`
//! (pg_ctlcluster, and so the systemd unit, refuse to start it; the old
//! value is kept in a comment), `default_transaction_read_only = on` goes
//! into `postgresql.auto.conf` (a server started some other way is
//! read-only, so clients with `target_session_attrs=read-write` pass it
//! by), and a running server is stopped (fast: every session ends).
//!
//! What remains the operator's duty: a server started by hand with
//! `pg_ctl`, or by a tool that ignores start.conf, runs read-only but still
//! runs; a client may `SET default_transaction_read_only = off` itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pgctl::replication;

use super::{Options, Report};
use crate::replica::clone::{ctlcluster, local_cluster, run_command, write_owned};
use crate::replica::target::Admin;
use crate::{Error, FileChange, Plan};

/// The setting that makes a fenced server read-only.
pub const READ_ONLY_SETTING: &str = "default_transaction_read_only";

/// The mark knocker leaves in a start.conf it disabled.
pub const START_CONF_MARK: &str = "# knocker failover --fence; was: ";

/// The mode start.conf says (`auto` when absent), as postgresql-common
/// reads it: the first non-comment word.
pub fn start_mode(text: &str) -> String {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .unwrap_or("auto")
        .to_string()
}

/// The start.conf of a fenced cluster, remembering the mode it had.
pub fn fenced_start_conf(previous: &str) -> String {
    format!("{START_CONF_MARK}{previous}\ndisabled\n")
}

fn read_only_set(auto_conf: &str) -> bool {
    auto_conf.lines().any(|l| {
        let t = l.trim_start();
        t.strip_prefix(READ_ONLY_SETTING).is_some_and(|r| {
            let v = r.trim_start().trim_start_matches('=').trim();
            v == "'on'" || v == "on" || v == "'true'" || v == "true"
        })
    })
}

fn read_text(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::failed(format!("reading {}: {e}", path.display())).with_source(e)),
    }
}

pub(super) async fn fence(
    o: &Options,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
) -> Result<(), Error> {
    let cluster = local_cluster(o.cluster.as_deref())?;
    let conf_dir = PathBuf::from(format!(
        "/etc/postgresql/{}/{}",
        cluster.version, cluster.name
    ));
    let start_conf = conf_dir.join("start.conf");
    let old_start = read_text(&start_conf)?.unwrap_or_default();
    let mode = start_mode(&old_start);
    let previous = if mode == "disabled" {
        // Already ours (or the operator's): keep what it remembers.
        old_start
            .lines()
            .find_map(|l| l.strip_prefix(START_CONF_MARK))
            .unwrap_or("disabled")
            .trim()
            .to_string()
    } else {
        mode.clone()
    };
    let new_start = fenced_start_conf(&previous);
    let data = cluster.data_directory.clone();
    let auto = data.join("postgresql.auto.conf");
    let old_auto = read_text(&auto)?.unwrap_or_default();
    let running = cluster.status.starts_with("online");
    let read_only = read_only_set(&old_auto);

    let mut plan = Plan::default();
    if mode != "disabled" {
        plan.files.push(FileChange::new(
            &start_conf,
            old_start.as_bytes(),
            new_start.as_bytes(),
        ));
    }
    let new_auto = replication::set_conf_values(&old_auto, &[(READ_ONLY_SETTING, "on")]);
    if !read_only {
        if running {
            plan.sql.push(
                replication::alter_system_sql(READ_ONLY_SETTING, "on")
                    .map_err(|e| Error::failed(e.to_string()))?,
            );
        } else {
            plan.files.push(FileChange::new(
                &auto,
                old_auto.as_bytes(),
                new_auto.as_bytes(),
            ));
        }
    }
    if running {
        plan.commands.push(ctlcluster(&cluster, "stop"));
    }
    report.next_steps.push(format!(
        "to undo by hand: put '{previous}' back in {} and remove {READ_ONLY_SETTING} from {} (or ALTER SYSTEM RESET {READ_ONLY_SETTING}) before starting it",
        start_conf.display(),
        auto.display()
    ));
    if plan.is_empty() {
        report
            .done
            .push(format!("{} is fenced already; nothing to do", cluster.id()));
        return Ok(());
    }
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }
    if running
        && !ask(&format!(
            "Fence {}: it stops now (every session ends) and will not start as a writable primary until it is rejoined. Continue?",
            cluster.id()
        ))
    {
        return Err(Error::refused_always("not fenced (declined)"));
    }
    report.changed = true;
    // start.conf first: from here a restart by anyone is refused.
    if mode != "disabled" {
        let (uid, gid, perm) = std::fs::metadata(&start_conf)
            .or_else(|_| std::fs::metadata(&conf_dir))
            .map(|m| (m.uid(), m.gid(), 0o644))
            .map_err(|e| Error::failed(format!("{}: {e}", conf_dir.display())).with_source(e))?;
        write_owned(&start_conf, new_start.as_bytes(), perm, uid, gid)?;
        report.done.push(format!(
            "{}: disabled (was {previous}): pg_ctlcluster and the service refuse to start it",
            start_conf.display()
        ));
    }
    if !read_only {
        if running {
            let admin = Admin::connect(o.admin_conn.as_deref(), cluster.port).await?;
            replication::alter_system(admin.client(), READ_ONLY_SETTING, "on")
                .await
                .map_err(|e| Error::failed(e.to_string()).with_source(e))?;
        } else {
            let meta = std::fs::metadata(&data)
                .map_err(|e| Error::failed(format!("{}: {e}", data.display())).with_source(e))?;
            write_owned(&auto, new_auto.as_bytes(), 0o600, meta.uid(), meta.gid())?;
        }
        report.done.push(format!(
            "{READ_ONLY_SETTING} = on in {}: started any other way, it is read-only",
            auto.display()
        ));
    }
    if running {
        run_command(&ctlcluster(&cluster, "stop"), false)?;
        report.done.push(format!("{} stopped", cluster.id()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_conf_is_read_like_postgresql_common() {
        assert_eq!(start_mode(""), "auto");
        assert_eq!(start_mode("# comment\n\n  manual # why\n"), "manual");
        assert_eq!(start_mode(&fenced_start_conf("auto")), "disabled");
        assert!(read_only_set(
            "x = 1\ndefault_transaction_read_only = 'on'\n"
        ));
        assert!(!read_only_set("default_transaction_read_only = 'off'\n"));
    }
}
