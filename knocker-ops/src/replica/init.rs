//! `--init`: the replication role, the rewind role, the settings and the
//! (empty) managed block, and a restart when a setting needs one.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use pgctl::conninfo::ConnInfo;
use pgctl::replication::{self, ReplicationSettings};
use pgctl::roles::{EnsureRole, Password};

use super::block::{self, BlockEdit, BlockRoles};
use super::target::{Admin, AppConn};
use super::{pg, require_primary, Options, Report, RestartReport, Secret};
use crate::{Error, FileChange, Plan};

/// The largest default bound on a slot's WAL.
const MAX_DEFAULT_SLOT_KEEP_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// One setting to change with ALTER SYSTEM.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SettingChange {
    name: &'static str,
    value: String,
    /// Takes effect only after a restart.
    restart: bool,
    why: String,
}

/// The default `max_slot_wal_keep_size` in MB: the smaller of 10% of the
/// WAL file system and 8 GB (never less than one MB).
pub(crate) fn default_slot_keep_mb(wal_fs_total: u64) -> u64 {
    (wal_fs_total / 10).min(MAX_DEFAULT_SLOT_KEEP_BYTES) / (1024 * 1024)
}

fn setting_changes(
    s: &ReplicationSettings,
    wal_fs_total: Option<u64>,
    force: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<SettingChange>, Error> {
    let mut out = Vec::new();
    if s.wal_level == "minimal" {
        out.push(SettingChange {
            name: "wal_level",
            value: "replica".into(),
            restart: true,
            why: "wal_level = minimal writes too little WAL for a standby".into(),
        });
    }
    if s.max_wal_senders < 2 {
        out.push(SettingChange {
            name: "max_wal_senders",
            value: "10".into(),
            restart: true,
            why: "a standby and a base backup each need a WAL sender".into(),
        });
    }
    if s.max_replication_slots < 2 {
        out.push(SettingChange {
            name: "max_replication_slots",
            value: "10".into(),
            restart: true,
            why: "each standby has its own slot".into(),
        });
    }
    if !s.data_checksums && !s.wal_log_hints {
        out.push(SettingChange {
            name: "wal_log_hints",
            value: "on".into(),
            restart: true,
            why: "pg_rewind needs wal_log_hints (or data checksums) to rejoin an old primary"
                .into(),
        });
    }
    if s.max_slot_wal_keep_size_mb < 0 {
        if force {
            warnings.push(
                "max_slot_wal_keep_size stays unbounded (--force): a standby that stops \
                 keeps its slot's WAL on this server until the disk fills"
                    .into(),
            );
        } else {
            let total = wal_fs_total.ok_or_else(|| {
                Error::failed(
                    "cannot measure the WAL file system to bound max_slot_wal_keep_size; \
                     set it by hand (or --force to leave it unbounded)",
                )
            })?;
            let mb = default_slot_keep_mb(total).max(1);
            out.push(SettingChange {
                name: "max_slot_wal_keep_size",
                value: format!("{mb}MB"),
                restart: false,
                why: format!(
                    "a slot may hold at most {mb} MB of WAL (the smaller of 10% of the WAL file \
                     system and 8 GB); a standby further behind loses its slot and must be \
                     cloned again, instead of this server's disk filling up"
                ),
            });
        }
    }
    Ok(out)
}

fn role_error(e: pgctl::error::Error) -> Error {
    match e {
        pgctl::error::Error::RoleNotManaged { .. } => Error::refused(e.to_string()),
        pgctl::error::Error::InvalidName { .. } => Error::usage(e.to_string()),
        other => pg(other),
    }
}

/// The restart command as an argument list.
fn restart_argv(manager: &pgctl::server::ServerManager) -> Vec<String> {
    manager
        .restart_command_line()
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .unwrap_or_else(|| vec!["restart PostgreSQL with your service manager".to_string()])
}

/// The connection string a standby clones from.
/// `application_name` carries the primary's own node name, so the clone
/// can admit it back (slot `knocker_<name>`, replica block) for the day
/// the roles swap.
pub(crate) fn replication_url(
    user: &str,
    password: &str,
    host: &str,
    port: u16,
    ssl: bool,
    primary_name: &str,
) -> String {
    let mut b = ConnInfo::builder()
        .user(user)
        .password(password)
        .host(host)
        .port(port)
        .application_name(primary_name);
    if ssl {
        b = b.sslmode(pgctl::connect::SslMode::Require);
    }
    b.build().to_uri()
}

pub(super) async fn init(
    o: &Options,
    app: &AppConn,
    admin: &mut Admin,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
) -> Result<(), Error> {
    require_primary(admin, "--init").await?;
    let node_name = match &o.name {
        Some(n) => n.clone(),
        None => super::default_name(),
    };
    super::validate_standby_name(&node_name).map_err(|_| {
        Error::usage(format!(
            "this host's name {node_name:?} cannot be a node name; give --name NAME"
        ))
    })?;
    admin.check_hba_owner(o.force)?;
    let roles = BlockRoles {
        replication: app.derived_role(super::REPLICATION_ROLE_SUFFIX),
        rewind: app.derived_role(super::REWIND_ROLE_SUFFIX),
        promote: app.derived_role(super::PROMOTE_ROLE_SUFFIX),
    };
    report.replication_role = Some(roles.replication.clone());
    report.rewind_role = Some(roles.rewind.clone());
    let client = admin.client();

    let settings = replication::read_settings(client).await.map_err(pg)?;
    let wal_fs_total = admin
        .facts
        .data_directory
        .as_deref()
        .and_then(|d| replication::filesystem_space(&d.join("pg_wal")).ok())
        .map(|s| s.total);
    let changes = setting_changes(&settings, wal_fs_total, o.force, &mut report.warnings)?;

    // Both roles share one password, so a standby keeps one secret: when
    // either needs a new one, both get it.
    let mut ensure = EnsureRole {
        rotate_password: false,
        force: o.force,
        password: None,
        naming: crate::naming(),
    };
    let rep_plan = pgctl::roles::plan_login_role(client, &roles.replication, &ensure)
        .await
        .map_err(role_error)?;
    let rew_plan = pgctl::roles::plan_login_role(client, &roles.rewind, &ensure)
        .await
        .map_err(role_error)?;
    let pro_plan = pgctl::roles::plan_login_role(client, &roles.promote, &ensure)
        .await
        .map_err(role_error)?;
    let new_password =
        rep_plan.sets_password() || rew_plan.sets_password() || pro_plan.sets_password();
    ensure.rotate_password = new_password;
    let rep_plan = pgctl::roles::plan_login_role(client, &roles.replication, &ensure)
        .await
        .map_err(role_error)?;
    let rew_plan = pgctl::roles::plan_login_role(client, &roles.rewind, &ensure)
        .await
        .map_err(role_error)?;
    let pro_plan = pgctl::roles::plan_login_role(client, &roles.promote, &ensure)
        .await
        .map_err(role_error)?;
    let needs_replication_attr =
        !replication::has_replication_attribute(client, &roles.replication)
            .await
            .map_err(pg)?;
    let mut grants = replication::missing_rewind_grants(client, &roles.rewind)
        .await
        .map_err(pg)?;
    grants.extend(
        replication::missing_execute_grants(client, &roles.promote, replication::PROMOTE_FUNCTIONS)
            .await
            .map_err(pg)?,
    );
    // A switchover checks through it that the standby admits the same web
    // nodes.
    grants.extend(
        replication::missing_hba_rules_grants(client, &roles.rewind)
            .await
            .map_err(pg)?,
    );

    let (path, old) = admin.read_hba()?;
    let version = admin.version()?;
    let ssl = admin.facts.ssl;
    let new = block::edit(&old, version, &roles, ssl, &BlockEdit::Ensure, "")?;

    let mut role_sql = rep_plan.statements(None);
    role_sql.extend(rew_plan.statements(None));
    role_sql.extend(pro_plan.statements(None));
    // What ensure_login_role does not do: the attribute and the grants.
    let mut rights_sql = Vec::new();
    if needs_replication_attr {
        rights_sql.push(replication::replication_attribute_sql(&roles.replication));
    }
    rights_sql.extend(grants);
    role_sql.extend(rights_sql.iter().cloned());
    let setting_sql: Vec<String> = changes
        .iter()
        .map(|c| replication::alter_system_sql(c.name, &c.value))
        .collect::<Result<_, _>>()
        .map_err(pg)?;
    let restart_needed: Vec<String> = changes
        .iter()
        .filter(|c| c.restart)
        .map(|c| c.name.to_string())
        .chain(settings.pending_restart.iter().cloned())
        .collect();
    let manager = pgctl::server::detect_manager(&admin.facts);

    let mut plan = Plan::default();
    plan.files.push(FileChange::new(&path, &old, &new));
    plan.sql.extend(role_sql.iter().cloned());
    plan.sql.extend(setting_sql.iter().cloned());
    if !setting_sql.is_empty() {
        plan.sql.push(replication::RELOAD_SQL.into());
    }
    if !restart_needed.is_empty() && !o.no_restart {
        plan.commands.push(restart_argv(&manager));
    }
    let copy = super::exposedb_copy::pending_copy(admin)?;
    plan.files.extend(copy.clone());
    for c in &changes {
        report
            .done
            .push(format!("{} = {}: {}", c.name, c.value, c.why));
    }
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }
    if plan.is_empty() && restart_needed.is_empty() {
        report
            .done
            .push("already initialised; nothing to do".into());
        return Ok(());
    }
    report.changed = true;

    // Roles first: if anything later fails, a rerun converges.
    let password = new_password.then(Password::generate);
    ensure.password = password.clone();
    for role in [&roles.replication, &roles.rewind, &roles.promote] {
        pgctl::roles::ensure_login_role(admin.client(), role, &ensure)
            .await
            .map_err(role_error)?;
    }
    if !rights_sql.is_empty() {
        admin
            .client()
            .batch_execute(&rights_sql.join(";\n"))
            .await
            .map_err(|e| {
                Error::failed(format!("granting the replication and rewind rights: {e}"))
                    .with_source(e)
            })?;
    }
    if let Some(p) = &password {
        let host = crate::network::advertise_candidates()
            .0
            .map(|a| a.to_string())
            .unwrap_or_else(|| {
                report
                    .warnings
                    .push("no network address found: replace PRIMARY_HOST in the URL".into());
                "PRIMARY_HOST".into()
            });
        report.replication_url = Some(Secret(replication_url(
            &roles.replication,
            p.expose(),
            &host,
            admin.facts.port,
            ssl,
            &node_name,
        )));
        // This node follows a new primary one day (switchover, rejoin):
        // its walreceiver needs the password too, in a file only the
        // server's OS user reads.
        if let Some(data) = &admin.facts.data_directory {
            let passfile = super::clone::passfile_for_data_directory(data);
            let text = super::clone::wildcard_passfile(&roles, p.expose());
            let meta = std::fs::metadata(data)
                .map_err(|e| Error::failed(format!("{}: {e}", data.display())).with_source(e))?;
            super::clone::write_owned(&passfile, text.as_bytes(), 0o600, meta.uid(), meta.gid())?;
            report.done.push(format!(
                "the password is kept for this server's own walreceiver in {} (mode 0600)",
                passfile.display()
            ));
        }
    }
    // ALTER SYSTEM cannot run in a transaction block: one at a time.
    for s in &setting_sql {
        admin
            .client()
            .batch_execute(s)
            .await
            .map_err(|e| Error::failed(format!("{s}: {e}")).with_source(e))?;
    }
    if new != old {
        let (roles2, ssl2) = (roles.clone(), ssl);
        admin
            .install_hba(&path, move |cur: &[u8]| {
                block::edit(cur, version, &roles2, ssl2, &BlockEdit::Ensure, "")
            })
            .await?;
        report.done.push(format!(
            "{}: the knocker replica block is in place",
            path.display()
        ));
    }
    if !setting_sql.is_empty() {
        replication::reload(admin.client()).await.map_err(pg)?;
    }
    if let Some(c) = &copy {
        super::exposedb_copy::write_copy(c)?;
    }
    if listens_only_locally(&admin.facts.listen_addresses) {
        report.warnings.push(format!(
            "listen_addresses = '{}': standbys cannot reach this server; run knocker exposedb --init first",
            admin.facts.listen_addresses
        ));
    }
    restart_if_needed(o, admin, ask, report, &manager).await
}

fn listens_only_locally(listen: &str) -> bool {
    pgctl::listen::split_listen_addresses(listen)
        .iter()
        .all(|a| a == "localhost" || a.starts_with("127.") || a == "::1" || a.is_empty())
}

async fn restart_if_needed(
    o: &Options,
    admin: &mut Admin,
    ask: &mut dyn FnMut(&str) -> bool,
    report: &mut Report,
    manager: &pgctl::server::ServerManager,
) -> Result<(), Error> {
    let pending = pgctl::listen::pending_restart(admin.client())
        .await
        .map_err(pg)?;
    if pending.is_empty() {
        return Ok(());
    }
    let command = manager.restart_command_line();
    let mut restart = RestartReport {
        settings: pending.clone(),
        restarted: false,
        command: command.clone(),
    };
    let question = format!(
        "PostgreSQL must restart for {} ({manager}); the Knocknoc web app on this host loses \
         its database connections for a few seconds. Restart now?",
        pending.join(", ")
    );
    if o.no_restart || !ask(&question) {
        report.warnings.push(format!(
            "{} take effect after a restart: {}",
            pending.join(", "),
            command.as_deref().unwrap_or("restart PostgreSQL")
        ));
        report.restart = Some(restart);
        return Ok(());
    }
    let client = pgctl::listen::restart_and_wait(
        admin.client(),
        &pgctl::listen::RestartWith::Manager(manager.clone()),
        Duration::from_secs(120),
        admin.reconnector(),
    )
    .await
    .map_err(|e| Error::failed(format!("restarting PostgreSQL: {e}")).with_source(e))?;
    admin.replace(client).await?;
    let still = pgctl::listen::pending_restart(admin.client())
        .await
        .map_err(pg)?;
    if !still.is_empty() {
        return Err(Error::failed(format!(
            "after the restart {} still wait for one; check the server's configuration files",
            still.join(", ")
        )));
    }
    restart.restarted = true;
    report.restart = Some(restart);
    report.done.push("PostgreSQL restarted".into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bound_is_a_tenth_of_the_disk_capped_at_8_gb() {
        assert_eq!(default_slot_keep_mb(20 * 1024 * 1024 * 1024), 2048);
        assert_eq!(default_slot_keep_mb(1024 * 1024 * 1024 * 1024), 8192);
    }
}
