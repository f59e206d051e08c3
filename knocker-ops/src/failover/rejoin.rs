//! `--rejoin URI --name NAME`, on a fenced old primary (a Debian cluster):
//! `pg_rewind` from the new primary, then start as its standby.
//!
//! Checks first: the cluster is stopped and fenced (`--fence`), it can be
//! rewound (`wal_log_hints` or data checksums, per `pg_controldata`), the
//! new primary answers this host as the rewind role, is a primary of the
//! same major version and has a free slot `knocker_NAME`. Then
//! `pg_rewind --config-file` (which first runs crash recovery in
//! single-user mode when the old primary died), this node's own
//! `postgresql.auto.conf` put back (pg_rewind copies the source's) with
//! `primary_conninfo`/`primary_slot_name` for the new primary and without
//! the fence's read-only setting, `standby.signal`, start.conf back to its
//! mode before the fence, start, and wait until it streams; then the
//! slots of the standbys its replica block admits, which pg_rewind does not
//! keep, are reserved again (a switchover back needs them). A failed
//! rewind leaves the node stopped and fenced; a fresh clone
//! (`knocker replica --clone-from`) is then the way back.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pgctl::conninfo::{ConnInfo, Keyword};
use pgctl::replication::{self, PrimaryConninfo};

use super::fence::{start_mode, READ_ONLY_SETTING, START_CONF_MARK};
use super::{Options, Report};
use crate::replica::clone::{
    ask_primary, ctlcluster, local_cluster, parse_source, passfile_path, rewind_role_of,
    start_standby, user_name, write_owned,
};
use crate::replica::{block, slot_name};
use crate::{Error, FileChange, Plan};

/// `pg_controldata` facts pg_rewind depends on.
pub(super) fn controldata(bin: &std::path::Path, data: &std::path::Path) -> Result<String, Error> {
    let out = Command::new(bin.join("pg_controldata"))
        .arg(data)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::failed(format!("cannot run pg_controldata: {e}")).with_source(e))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "pg_controldata {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn control_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

pub(super) async fn rejoin(
    o: &Options,
    uri: &str,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
) -> Result<(), Error> {
    let name = o
        .name
        .clone()
        .ok_or_else(|| Error::usage("--rejoin needs --name NAME (this node's standby name)"))?;
    crate::replica::validate_standby_name(&name)?;
    let slot = slot_name(&name);
    let mut info = ConnInfo::parse_checked(uri)
        .map_err(|e| Error::usage(format!("--rejoin: not a valid connection string: {e}")))?;
    if info.get(Keyword::Password).is_none_or(str::is_empty) {
        // The URL --promote printed has no password: this node's passfile
        // (written by --init or --clone-from) holds it.
        let cluster = local_cluster(o.cluster.as_deref()).map_err(|e| {
            Error::usage(format!(
                "--rejoin: the URL has no password, and this node's passfile cannot be found: {e}"
            ))
        })?;
        let passfile = passfile_path(&cluster);
        let user = info.get(Keyword::User).unwrap_or("").to_string();
        let text = std::fs::read_to_string(&passfile).unwrap_or_default();
        match crate::replica::clone::passfile_password(&text, &user) {
            Some(p) => {
                info.set(Keyword::Password, p);
            }
            None => {
                return Err(Error::usage(format!(
                    "--rejoin: the URL has no password and {} holds none for {user:?}",
                    passfile.display()
                )))
            }
        }
    }
    let src = parse_source(&info.to_uri(), "--rejoin")?;
    let cluster = local_cluster(o.cluster.as_deref())?;
    let conf_dir = PathBuf::from(format!(
        "/etc/postgresql/{}/{}",
        cluster.version, cluster.name
    ));
    let start_conf = conf_dir.join("start.conf");
    let start_text = std::fs::read_to_string(&start_conf).unwrap_or_default();
    if cluster.status.starts_with("online") || start_mode(&start_text) != "disabled" {
        return Err(Error::refused_always(format!(
            "{} is not stopped and fenced; run knocker failover --fence on it first",
            cluster.id()
        )));
    }
    let previous_mode = start_text
        .lines()
        .find_map(|l| l.strip_prefix(START_CONF_MARK))
        .map(|m| m.trim().to_string())
        .filter(|m| matches!(m.as_str(), "auto" | "manual"))
        .unwrap_or_else(|| "auto".into());
    let data = cluster.data_directory.clone();
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", cluster.version));
    let control = controldata(&bin, &data)?;
    let hints = control_value(&control, "wal_log_hints setting") == Some("on");
    let checksums = control_value(&control, "Data page checksum version").is_some_and(|v| v != "0");
    if !hints && !checksums {
        if o.reclone {
            report.warnings.push(format!(
                "{} has neither wal_log_hints nor data checksums: pg_rewind cannot rejoin it; cloning it afresh (--reclone)",
                cluster.id()
            ));
            return reclone(
                o,
                &info.to_uri(),
                &name,
                &start_conf,
                &previous_mode,
                ask,
                report,
            )
            .await;
        }
        return Err(Error::refused_always(format!(
            "{} has neither wal_log_hints nor data checksums: pg_rewind cannot rejoin it; clone it again with knocker replica --clone-from",
            cluster.id()
        )));
    }
    let old_end = control_value(&control, "Latest checkpoint location").map(str::to_string);
    let clean = matches!(
        control_value(&control, "Database cluster state"),
        Some("shut down") | Some("shut down in recovery")
    );

    let facts = ask_primary(&src, &slot).await?;
    let local_major: u32 = cluster.version.parse().unwrap_or(0);
    if facts.major != local_major {
        return Err(Error::refused_always(format!(
            "the new primary runs PostgreSQL {}, this cluster {local_major}",
            facts.major
        )));
    }
    match &facts.slot {
        None => {
            return Err(Error::refused_always(format!(
                "the new primary has no slot {slot}; there run: knocker replica --init, then --allow THIS_HOST_ADDRESS/32 --name {name}"
            )))
        }
        Some(s) if s.active => {
            return Err(Error::refused_always(format!(
                "slot {slot} on the new primary is in use by another standby"
            )))
        }
        Some(_) => {}
    }

    let meta = std::fs::metadata(&data)
        .map_err(|e| Error::failed(format!("{}: {e}", data.display())).with_source(e))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let os_user = user_name(uid)
        .ok_or_else(|| Error::failed(format!("uid {uid} of {} has no name", data.display())))?;
    let passfile = passfile_path(&cluster);
    let rewind_user = rewind_role_of(&src.user);
    let mut source = ConnInfo::builder()
        .host(src.host.clone())
        .port(src.port)
        .user(rewind_user.clone())
        .dbname(block::REWIND_DATABASE)
        .set(Keyword::Passfile, passfile.to_string_lossy().into_owned())
        .build();
    if let Some(m) = src.sslmode {
        source.set(Keyword::Sslmode, m.as_str());
    }
    let config_file = conf_dir.join("postgresql.conf");
    let rewind_argv: Vec<String> = vec![
        "runuser".into(),
        "-u".into(),
        os_user.clone(),
        "--".into(),
        bin.join("pg_rewind").to_string_lossy().into_owned(),
        "--target-pgdata".into(),
        data.to_string_lossy().into_owned(),
        "--source-server".into(),
        source.to_keyword_value(),
        "--config-file".into(),
        config_file.to_string_lossy().into_owned(),
        "--progress".into(),
    ];
    // Crash recovery of a primary that died, done here rather than by
    // pg_rewind itself: its end-of-recovery checkpoint may recycle the WAL
    // segments pg_rewind then needs to find the last common checkpoint
    // ("could not open file .../pg_wal/0000...": seen in this project's
    // tests). With archive_mode on and an archive_command that fails, no
    // segment counts as archived, so none is removed.
    let recovery_argv: Vec<String> = vec![
        "runuser".into(),
        "-u".into(),
        os_user.clone(),
        "--".into(),
        bin.join("postgres").to_string_lossy().into_owned(),
        "--single".into(),
        "-F".into(),
        "-D".into(),
        data.to_string_lossy().into_owned(),
        "-c".into(),
        format!("config_file={}", config_file.display()),
        "-c".into(),
        "archive_mode=on".into(),
        "-c".into(),
        "archive_command=false".into(),
        "template1".into(),
    ];
    let conninfo = PrimaryConninfo {
        host: src.host.clone(),
        port: src.port,
        user: src.user.clone(),
        application_name: name.clone(),
        sslmode: src.sslmode,
        passfile: Some(passfile.clone()),
        connect_timeout: Some(5),
    };
    let auto = data.join("postgresql.auto.conf");
    let own_auto = std::fs::read_to_string(&auto).unwrap_or_default();
    let new_auto = replication::set_conf_values(
        &replication::remove_conf_values(
            &own_auto,
            &[READ_ONLY_SETTING, "synchronous_standby_names"],
        ),
        &[
            ("primary_conninfo", &conninfo.to_keyword_value()),
            ("primary_slot_name", &slot),
        ],
    );
    // The same wildcard lines as --init and --clone-from write: this node
    // can later switch over (promote role) and follow either node.
    let roles = crate::replica::clone::roles_of(&src.user);
    let pass_text = crate::replica::clone::wildcard_passfile(&roles, &src.password);
    let new_start = format!("{previous_mode}\n");

    let mut plan = Plan::default();
    plan.files.push(FileChange::new(
        &passfile,
        b"",
        format!(
            "# 3 lines for {}, {} and {} (mode 0600, owner {os_user}); passwords not shown\n",
            roles.replication, roles.rewind, roles.promote
        )
        .as_bytes(),
    ));
    if !clean {
        plan.commands.push(recovery_argv.clone());
    }
    plan.commands.push(rewind_argv.clone());
    plan.files.push(FileChange::new(
        &auto,
        own_auto.as_bytes(),
        new_auto.as_bytes(),
    ));
    plan.files
        .push(FileChange::new(data.join("standby.signal"), b"", b""));
    plan.files.push(FileChange::new(
        &start_conf,
        start_text.as_bytes(),
        new_start.as_bytes(),
    ));
    plan.commands.push(ctlcluster(&cluster, "start"));
    report.done.push(format!(
        "checked: {}:{} is a primary of PostgreSQL {}, slot {slot} is free; this node can be rewound ({})",
        src.host,
        src.port,
        facts.major,
        if checksums { "data checksums" } else { "wal_log_hints" }
    ));
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }
    if !ask(&format!(
        "Rewind {} to {}:{} and start it as a standby? WAL this node wrote after the two diverged (up to its last checkpoint {}) is discarded.",
        cluster.id(),
        src.host,
        src.port,
        old_end.as_deref().unwrap_or("-")
    )) {
        return Err(Error::refused_always("not rejoined (declined)"));
    }
    report.changed = true;
    write_owned(&passfile, pass_text.as_bytes(), 0o600, uid, gid)?;
    if !clean {
        let out = Command::new(&recovery_argv[0])
            .args(&recovery_argv[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                Error::failed(format!("cannot run postgres --single: {e}")).with_source(e)
            })?;
        if !out.status.success() {
            if o.reclone {
                report.warnings.push(format!(
                    "crash recovery of {} failed ({}); cloning it afresh (--reclone)",
                    cluster.id(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                return reclone(
                    o,
                    &info.to_uri(),
                    &name,
                    &start_conf,
                    &previous_mode,
                    ask,
                    report,
                )
                .await;
            }
            return Err(Error::failed(format!(
                "crash recovery of {} failed; it stays stopped and fenced (or add --reclone to clone it afresh):\n{}",
                cluster.id(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        report
            .done
            .push("crash recovery done (single-user, keeping every WAL segment)".into());
    }
    // The end of this node's WAL: its (shutdown) checkpoint now.
    let old_end = controldata(&bin, &data)
        .ok()
        .and_then(|c| control_value(&c, "Latest checkpoint location").map(str::to_string))
        .or(old_end);
    let out = Command::new(&rewind_argv[0])
        .args(&rewind_argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::failed(format!("cannot run pg_rewind: {e}")).with_source(e))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        if o.reclone {
            report.warnings.push(format!(
                "pg_rewind failed ({}); cloning {} afresh (--reclone)",
                said.trim(),
                cluster.id()
            ));
            return reclone(
                o,
                &info.to_uri(),
                &name,
                &start_conf,
                &previous_mode,
                ask,
                report,
            )
            .await;
        }
        return Err(Error::failed(format!(
            "pg_rewind failed; {} stays stopped and fenced. Clone it afresh instead: the same command with --reclone\n{}",
            cluster.id(),
            said.trim()
        )));
    }
    let diverged = said
        .lines()
        .find(|l| l.contains("servers diverged at WAL location"))
        .map(|l| l.trim().trim_start_matches("pg_rewind: ").to_string());
    report.done.push(match &diverged {
        Some(d) => format!(
            "pg_rewind: {d}; this node's WAL from there to its end ({}) was discarded",
            old_end.as_deref().unwrap_or("unknown")
        ),
        None if said.contains("no rewind required") => "pg_rewind: no rewind required".into(),
        None => "pg_rewind done".into(),
    });
    write_owned(&auto, new_auto.as_bytes(), 0o600, uid, gid)?;
    write_owned(&data.join("standby.signal"), b"", 0o600, uid, gid)?;
    let sc_meta = std::fs::metadata(&start_conf)
        .map_err(|e| Error::failed(format!("{}: {e}", start_conf.display())).with_source(e))?;
    write_owned(
        &start_conf,
        new_start.as_bytes(),
        0o644,
        sc_meta.uid(),
        sc_meta.gid(),
    )?;
    let admin = start_standby(o.admin_conn.as_deref(), &cluster).await?;
    let node = replication::node_status(admin.client())
        .await
        .map_err(|e| Error::failed(e.to_string()).with_source(e))?;
    report.timeline = Some(node.timeline);
    report.done.push(format!(
        "{} streams from {}:{} as standby {name} (timeline {})",
        cluster.id(),
        src.host,
        src.port,
        node.timeline
    ));
    restore_standby_slots(&admin, &name, report).await;
    Ok(())
}

/// pg_rewind leaves `pg_replslot/` out, so the slots this node kept for
/// the standbys its replica block admits are gone; without them a
/// `--switchover` back to this node is refused. They are reserved again
/// the way `--clone-from` reserves its primary's (no WAL held until a
/// standby streams through one). A failure here is a warning: the node
/// streams, which is what was asked.
async fn restore_standby_slots(
    admin: &crate::replica::target::Admin,
    own_name: &str,
    report: &mut Report,
) {
    let allowed = admin.read_hba().and_then(|(_, text)| {
        let version = admin.version()?;
        block::allowed(&text, version)
    });
    let mut names: Vec<String> = match allowed {
        Ok(a) => a.into_iter().map(|a| a.name).collect(),
        Err(e) => {
            report.warnings.push(format!(
                "cannot read this node's replica block to restore its standbys' slots: {e}"
            ));
            return;
        }
    };
    names.sort();
    names.dedup();
    for standby in names.iter().filter(|n| n.as_str() != own_name) {
        let slot = slot_name(standby);
        match admin
            .client()
            .batch_execute(&crate::replica::clone::reserve_later_slot_sql(&slot))
            .await
        {
            Ok(()) => report.done.push(format!(
                "ready to serve {standby} after a switchover: slot {slot} (pg_rewind does not keep slots)"
            )),
            Err(e) => report.warnings.push(format!(
                "slot {slot} for {standby} (pg_rewind does not keep slots) could not be created: {e}; \
                 a switchover to this node needs it"
            )),
        }
    }
}

/// `--reclone`: the fence's `start.conf` back (the clone starts the
/// cluster), then `knocker replica --clone-from` with the same URL and
/// name: the old data directory is moved aside and kept.
async fn reclone(
    o: &Options,
    uri: &str,
    name: &str,
    start_conf: &std::path::Path,
    previous_mode: &str,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
) -> Result<(), Error> {
    if o.dry_run {
        report.done.push(format!(
            "--reclone: would run knocker replica --clone-from URI --name {name} (start.conf back to {previous_mode} first)"
        ));
        return Ok(());
    }
    if !ask(
        "Clone this node afresh from the new primary? Its data directory is moved aside (kept).",
    ) {
        return Err(Error::refused_always("not recloned (declined)"));
    }
    report.changed = true;
    let meta = std::fs::metadata(start_conf)
        .map_err(|e| Error::failed(format!("{}: {e}", start_conf.display())).with_source(e))?;
    write_owned(
        start_conf,
        format!("{previous_mode}\n").as_bytes(),
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid(),
    )?;
    let mut clone = crate::replica::Options::new(crate::replica::Action::CloneFrom {
        uri: crate::replica::Secret(uri.to_string()),
    });
    clone.cluster = o.cluster.clone();
    clone.admin_conn = o.admin_conn.clone();
    clone.name = Some(name.to_string());
    let mut r = crate::replica::Report::default();
    let result = crate::replica::clone::clone_from(&clone, uri, &mut r).await;
    report.done.extend(r.done);
    report.warnings.extend(r.warnings);
    if let Err(e) = result {
        return Err(Error::failed(format!(
            "the fresh clone failed: {e}; start.conf is back to {previous_mode}: run knocker failover --fence again before anything else"
        )));
    }
    report.timeline = r.status.map(|s| s.timeline);
    report
        .done
        .push(format!("recloned: {name} streams from the new primary"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controldata_values_are_read_by_key() {
        let text = "pg_control version number:            1300\n\
                    Database cluster state:               shut down in recovery\n\
                    Latest checkpoint location:           0/5000060\n\
                    wal_log_hints setting:                on\n\
                    Data page checksum version:           0\n";
        assert_eq!(
            control_value(text, "Database cluster state"),
            Some("shut down in recovery")
        );
        assert_eq!(
            control_value(text, "Latest checkpoint location"),
            Some("0/5000060")
        );
        assert_eq!(control_value(text, "wal_log_hints setting"), Some("on"));
        assert_eq!(control_value(text, "Data page checksum version"), Some("0"));
        assert_eq!(control_value(text, "missing"), None);
    }
}
