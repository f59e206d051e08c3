//! `--allow CIDR --name NAME [--sync]` and `--revoke CIDR [--terminate]`.

use ipnet::IpNet;
use pgctl::replication::{self, DropSlot};

use super::block::{self, BlockEdit, BlockRoles};
use super::target::{Admin, AppConn};
use super::{pg, require_primary, rule_comment, slot_name, Options, Report};
use crate::{Error, FileChange, Plan};

async fn initialised_roles(app: &AppConn, admin: &Admin) -> Result<BlockRoles, Error> {
    let roles = BlockRoles {
        replication: app.derived_role(super::REPLICATION_ROLE_SUFFIX),
        rewind: app.derived_role(super::REWIND_ROLE_SUFFIX),
        promote: app.derived_role(super::PROMOTE_ROLE_SUFFIX),
    };
    for role in [&roles.replication, &roles.rewind] {
        let info = pgctl::roles::role_info(admin.client(), role)
            .await
            .map_err(pg)?;
        if !info.is_some_and(|i| i.is_marked_by(&crate::naming())) {
            return Err(Error::refused_always(format!(
                "role {role:?} does not exist or is not knocker's; run knocker replica --init first"
            )));
        }
    }
    Ok(roles)
}

/// What a lost synchronous standby does to commits, said where `--sync`
/// is chosen.
pub(crate) fn sync_warning(name: &str) -> String {
    format!(
        "{name} is now the synchronous standby: every commit on this server waits until {name} \
         has flushed it. While {name} is down, not yet cloned or cut off, commits do not fail: \
         they hang (the web app stalls) until it is back, or until it is revoked \
         (knocker replica --revoke CIDR) or synchronous_standby_names is emptied"
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn allow(
    o: &Options,
    app: &AppConn,
    admin: &Admin,
    name: &str,
    cidr: IpNet,
    sync: bool,
    report: &mut Report,
) -> Result<(), Error> {
    require_primary(admin, "--allow").await?;
    admin.check_hba_owner(o.force)?;
    let roles = initialised_roles(app, admin).await?;
    let (path, old) = admin.read_hba()?;
    let version = admin.version()?;
    if !block::exists(&old, version)? {
        return Err(Error::refused_always(format!(
            "{} has no knocker replica block; run knocker replica --init first",
            path.display()
        )));
    }
    let ssl = admin.facts.ssl;
    let comment = rule_comment();
    let edit = BlockEdit::Allow {
        name: name.to_string(),
        cidr,
    };
    let new = block::edit(&old, version, &roles, ssl, &edit, &comment)?;
    let slot = slot_name(name);
    let existing = replication::slot(admin.client(), &slot).await.map_err(pg)?;
    let settings = replication::read_settings(admin.client())
        .await
        .map_err(pg)?;
    let sync_value = replication::first_one_synchronous(name);
    let set_sync = sync && settings.synchronous_standby_names != sync_value;
    if sync
        && !settings.synchronous_standby_names.is_empty()
        && settings.synchronous_standby_names != sync_value
        && !o.force
    {
        return Err(Error::refused(format!(
            "synchronous_standby_names is already '{}'; --sync would replace it",
            settings.synchronous_standby_names
        )));
    }

    let mut plan = Plan::default();
    plan.files.push(FileChange::new(&path, &old, &new));
    if existing.is_none() {
        plan.sql.push(replication::create_physical_slot_sql(&slot));
    }
    if set_sync {
        plan.sql.push(
            replication::alter_system_sql("synchronous_standby_names", &sync_value).map_err(pg)?,
        );
        plan.sql.push(replication::RELOAD_SQL.into());
    }
    report.slots.push(slot.clone());
    if let Some(s) = &existing {
        if s.slot_type != "physical" {
            return Err(Error::refused_always(format!(
                "a {} slot named {slot} exists; drop it or choose another --name",
                s.slot_type
            )));
        }
        if s.wal_status.as_deref() == Some("lost") {
            report.warnings.push(format!(
                "slot {slot} is lost (its standby fell further behind than max_slot_wal_keep_size): \
                 the standby must be cloned again"
            ));
        }
    }
    if cidr.prefix_len() < cidr.max_prefix_len() {
        report.warnings.push(format!(
            "{cidr} admits a whole network as standby {name}; a single address (/{}) is tighter",
            cidr.max_prefix_len()
        ));
    }
    let copy = super::exposedb_copy::pending_copy(admin)?;
    plan.files.extend(copy.clone());
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }
    if plan.is_empty() {
        report.done.push(format!(
            "standby {name} is already allowed from {cidr}; nothing to do"
        ));
        return Ok(());
    }
    report.changed = true;
    if let Some(c) = &copy {
        super::exposedb_copy::write_copy(c)?;
        report.done.push(format!(
            "{}: a copy of the exposedb block, for the standby's clone",
            c.path.display()
        ));
    }
    if new != old {
        let (roles2, edit2, comment2) = (roles.clone(), edit.clone(), comment.clone());
        admin
            .install_hba(&path, move |cur: &[u8]| {
                block::edit(cur, version, &roles2, ssl, &edit2, &comment2)
            })
            .await?;
        report.done.push(format!(
            "{}: {} may stream and rewind from {cidr}",
            path.display(),
            name
        ));
    }
    if existing.is_none() {
        replication::create_physical_slot(admin.client(), &slot)
            .await
            .map_err(pg)?;
        let bound = if settings.max_slot_wal_keep_size_mb < 0 {
            "no bound".to_string()
        } else {
            format!("at most {} MB", settings.max_slot_wal_keep_size_mb)
        };
        report.done.push(format!(
            "slot {slot} created; it keeps WAL for {name} from now on ({bound}, max_slot_wal_keep_size)"
        ));
        if settings.max_slot_wal_keep_size_mb < 0 {
            report.warnings.push(format!(
                "max_slot_wal_keep_size is unbounded: while {name} is not streaming, slot {slot} keeps WAL until the disk fills"
            ));
        }
    }
    if set_sync {
        replication::alter_system(admin.client(), "synchronous_standby_names", &sync_value)
            .await
            .map_err(pg)?;
        replication::reload(admin.client()).await.map_err(pg)?;
        report.warnings.push(sync_warning(name));
    }
    Ok(())
}

pub(super) async fn revoke(
    o: &Options,
    app: &AppConn,
    admin: &Admin,
    cidr: IpNet,
    terminate: bool,
    report: &mut Report,
) -> Result<(), Error> {
    require_primary(admin, "--revoke").await?;
    admin.check_hba_owner(o.force)?;
    let roles = BlockRoles {
        replication: app.derived_role(super::REPLICATION_ROLE_SUFFIX),
        rewind: app.derived_role(super::REWIND_ROLE_SUFFIX),
        promote: app.derived_role(super::PROMOTE_ROLE_SUFFIX),
    };
    let (path, old) = admin.read_hba()?;
    let version = admin.version()?;
    let names: Vec<String> = block::allowed(&old, version)?
        .into_iter()
        .filter(|a| a.cidr == cidr)
        .map(|a| a.name)
        .collect();
    let ssl = admin.facts.ssl;
    let new = block::edit(&old, version, &roles, ssl, &BlockEdit::Revoke(cidr), "")?;
    let settings = replication::read_settings(admin.client())
        .await
        .map_err(pg)?;

    let mut plan = Plan::default();
    plan.files.push(FileChange::new(&path, &old, &new));
    let mut drops = Vec::new();
    let mut reset_sync = false;
    for name in &names {
        let slot = slot_name(name);
        report.slots.push(slot.clone());
        if settings.synchronous_standby_names == replication::first_one_synchronous(name) {
            reset_sync = true;
        }
        if let Some(s) = replication::slot(admin.client(), &slot).await.map_err(pg)? {
            if let Some(pid) = s.active_pid {
                if !terminate {
                    return Err(Error::refused_always(format!(
                        "standby {name} is streaming through slot {slot} (walsender pid {pid}); \
                         add --terminate to end its connection and drop the slot"
                    )));
                }
                plan.sql.push(replication::terminate_slot_user_sql(&slot));
            }
            plan.sql.push(replication::drop_slot_sql(&slot));
            drops.push(slot);
        }
    }
    if reset_sync {
        plan.sql
            .push(replication::alter_system_reset_sql("synchronous_standby_names").map_err(pg)?);
        plan.sql.push(replication::RELOAD_SQL.into());
    }
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }
    if plan.is_empty() {
        report
            .done
            .push(format!("{cidr} is not allowed; nothing to do"));
        return Ok(());
    }
    report.changed = true;
    if new != old {
        admin
            .install_hba(&path, move |cur: &[u8]| {
                block::edit(cur, version, &roles, ssl, &BlockEdit::Revoke(cidr), "")
            })
            .await?;
        report.done.push(format!(
            "{}: the lines for {cidr} are removed",
            path.display()
        ));
    }
    // Commits must not wait for a standby that is going away.
    if reset_sync {
        let reset = replication::alter_system_reset_sql("synchronous_standby_names").map_err(pg)?;
        admin
            .client()
            .batch_execute(&reset)
            .await
            .map_err(|e| Error::failed(format!("{reset}: {e}")).with_source(e))?;
        replication::reload(admin.client()).await.map_err(pg)?;
        report
            .done
            .push("synchronous_standby_names reset: commits no longer wait for a standby".into());
    }
    for slot in drops {
        match replication::drop_slot(admin.client(), &slot, terminate)
            .await
            .map_err(pg)?
        {
            DropSlot::Dropped => report.done.push(format!("slot {slot} dropped")),
            DropSlot::Absent => {}
            DropSlot::Active { pid } => {
                return Err(Error::failed(format!(
                    "slot {slot} is in use again (walsender pid {pid}); run --revoke {cidr} --terminate"
                )))
            }
        }
    }
    Ok(())
}
