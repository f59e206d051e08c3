//! `--add` and `--remove`: one change of the block's CIDRs.

use ipnet::IpNet;
use serde::Serialize;

use super::{block, pg, rule_comment, DryRun, Exposedb};
use crate::{Error, FileChange, Plan};

/// What `--add/--remove` will do: the block's new text and what changes,
/// and the [`Plan`] a dry run prints. [`Exposedb::change`] carries it out.
#[derive(Debug, Clone, Serialize)]
pub struct ChangePlan {
    /// The server's pg_hba.conf.
    pub hba_file: String,
    /// CIDRs that will be added.
    pub added: Vec<String>,
    /// CIDRs asked for that are already present.
    pub already_present: Vec<String>,
    /// CIDRs that will be removed.
    pub removed: Vec<String>,
    /// CIDRs asked to be removed that are not there.
    pub absent: Vec<String>,
    /// The diff and SQL (a dry run's JSON fields).
    #[serde(flatten)]
    pub dry_run: DryRun,
    /// The application database.
    #[serde(skip)]
    pub database: String,
    /// The remote role.
    #[serde(skip)]
    pub user: String,
    /// Whether the rules are `hostssl`.
    #[serde(skip)]
    pub hostssl: bool,
    /// Warnings: earlier lines that decide some of the new rules'
    /// connections, IPv6 CIDRs on a server that does not listen on IPv6.
    #[serde(skip)]
    pub warnings: Vec<String>,
    #[serde(skip)]
    removed_nets: Vec<IpNet>,
    #[serde(skip)]
    edit: super::BlockEdit,
    /// The validation of the new text made while planning, for the
    /// installation to reuse while it holds.
    #[serde(skip)]
    validation: Option<std::sync::Arc<pgctl::hba_install::Validation>>,
}

/// What `--add/--remove` did. JSON: the plan's `hba_file`, `added`,
/// `already_present`, `removed`, `absent`, then `changed` and
/// `terminated_sessions`.
#[derive(Debug, Clone)]
pub struct ChangeReport {
    /// The plan it carried out.
    pub plan: ChangePlan,
    /// Whether pg_hba.conf changed (and was reloaded).
    pub changed: bool,
    /// Sessions ended from removed CIDRs (with `terminate`).
    pub terminated_sessions: Option<u64>,
    /// The copy of the block `knocker replica` keeps in the data
    /// directory, when this change refreshed it.
    pub replica_copy: Option<std::path::PathBuf>,
}

impl Serialize for ChangeReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = &self.plan;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("hba_file", &p.hba_file)?;
        m.serialize_entry("added", &p.added)?;
        m.serialize_entry("already_present", &p.already_present)?;
        m.serialize_entry("removed", &p.removed)?;
        m.serialize_entry("absent", &p.absent)?;
        m.serialize_entry("changed", &self.changed)?;
        if let Some(n) = self.terminated_sessions {
            m.serialize_entry("terminated_sessions", &n)?;
        }
        if let Some(p) = &self.replica_copy {
            m.serialize_entry("replica_copy", p)?;
        }
        m.end()
    }
}

/// Where an operator's line is, for messages: `pg_hba.conf line N`, or
/// `FILE line N (included from pg_hba.conf)`.
fn line_place(line: &block::EarlierLine) -> String {
    if line.included {
        format!(
            "{} line {} (included from pg_hba.conf)",
            line.file, line.line_number
        )
    } else {
        format!("pg_hba.conf line {}", line.line_number)
    }
}

/// The block planner's error as an operation's: an operator's reject is a
/// refusal that `force` passes.
pub(crate) fn plan_error(e: block::PlanError) -> Error {
    match e {
        block::PlanError::RejectedBy { net, line } => Error::refused(format!(
            "{} rejects connections from part of {net} before the knocker block:\n  {}\n\
             The operator's reject wins: narrow the CIDR or change that line.",
            line_place(&line),
            line.text
        )),
        other => Error::failed("pg_hba.conf").with_source(other),
    }
}

fn net_strings(nets: &[IpNet]) -> Vec<String> {
    nets.iter().map(|n| n.to_string()).collect()
}

impl Exposedb {
    /// Plan adding `add` and removing `remove` (as one change): the new
    /// pg_hba.conf, the SQL, and what each CIDR comes to.
    pub fn plan_change(&self, add: &[IpNet], remove: &[IpNet]) -> Result<ChangePlan, Error> {
        self.plan_change_diffed(add, remove, true)
    }

    /// [`Exposedb::plan_change`]; without `diff` the dry run's diff is
    /// left empty (a run that applies the plan prints none, and at 100k
    /// rules it costs tens of milliseconds).
    pub(crate) fn plan_change_diffed(
        &self,
        add: &[IpNet],
        remove: &[IpNet],
        diff: bool,
    ) -> Result<ChangePlan, Error> {
        if let Some(both) = add.iter().find(|n| remove.contains(n)) {
            return Err(Error::usage(format!("{both} is both added and removed")));
        }
        self.admin.check_hba_owner(self.options.force)?;
        let scope = self.scope();
        let (path, old) = self.read_hba()?;
        let edit = self.block_edit(
            &path,
            block::Request {
                add: add.to_vec(),
                remove: remove.to_vec(),
                comment: rule_comment(),
                force: self.options.force,
            },
        )?;
        let settings = pgctl::hba_install::ValidationSettings::from_facts(&self.admin.facts);
        let (planned, validation) = edit
            .plan_validated(&old, self.admin.facts.major(), &settings)
            .map_err(plan_error)?;
        let mut warnings = Vec::new();
        for (net, line) in &planned.shadowed_by {
            let how = if line.rejects { "rejects" } else { "decides" };
            let place = if line.included {
                format!("{}:{}", line.file, line.line_number)
            } else {
                format!("line {}", line.line_number)
            };
            warnings.push(format!(
                "{place} comes first and {how} {} connections from {net}: {}",
                if line.covers_all { "all" } else { "some" },
                line.text
            ));
        }
        for net in add.iter().chain(remove) {
            if net.addr().is_ipv6() && !self.admin.listens_on_ipv6() {
                warnings.push(format!(
                    "{net} is IPv6 but the server does not listen on IPv6 (listen_addresses = '{}')",
                    self.admin.facts.listen_addresses
                ));
            }
        }
        let mut plan = Plan {
            files: vec![FileChange {
                path: path.clone(),
                old,
                new: planned.new_text.clone(),
            }],
            ..Plan::default()
        };
        if planned.changed() {
            plan.sql.push(pgctl::hba_install::RELOAD_SQL.to_string());
            // The standby's copy of the block, refreshed after the change
            // (shown only: the installation writes it).
            if diff {
                if let Some(copy) = crate::replica::exposedb_copy::planned_refresh(
                    &self.admin.facts,
                    &planned.new_text,
                )? {
                    plan.files.push(copy);
                }
            }
        }
        if self.options.terminate {
            plan.sql.extend(
                planned
                    .removed
                    .iter()
                    .map(|n| pgctl::roles::terminate_sessions_from_sql(n, Some(&scope.user))),
            );
        }
        Ok(ChangePlan {
            hba_file: path.display().to_string(),
            added: net_strings(&planned.added),
            already_present: net_strings(&planned.already_present),
            removed: net_strings(&planned.removed),
            absent: net_strings(&planned.absent),
            dry_run: if diff {
                DryRun::new(plan, Vec::new())
            } else {
                DryRun::without_diff(plan, Vec::new())
            },
            database: scope.database,
            user: scope.user,
            hostssl: scope.hostssl,
            warnings,
            removed_nets: planned.removed,
            edit,
            validation: validation.map(std::sync::Arc::new),
        })
    }

    /// Carry out a [`ChangePlan`]: install the new pg_hba.conf (planned
    /// again under the lock if the file changed since), reload, and end
    /// the removed CIDRs' sessions when asked.
    pub async fn change(&mut self, plan: ChangePlan) -> Result<ChangeReport, Error> {
        let file = &plan.dry_run.plan.files[0];
        let changed = if file.changes() {
            let edit = plan
                .edit
                .clone()
                .into_edit(file.old.clone(), file.new.clone());
            self.admin
                .install_hba_validated(
                    &file.path,
                    edit,
                    self.options.events.clone(),
                    plan.validation.clone(),
                )
                .await?
        } else {
            false
        };
        let mut terminated_sessions = None;
        if self.options.terminate && !plan.removed_nets.is_empty() {
            let mut ended = 0;
            for n in &plan.removed_nets {
                ended +=
                    pgctl::roles::terminate_sessions_from(self.admin.client(), n, Some(&plan.user))
                        .await
                        .map_err(|e| pg(format!("ending sessions from {n}"), e))?;
            }
            terminated_sessions = Some(ended);
        }
        let mut plan = plan;
        let replica_copy = if changed {
            self.refresh_replica_copy(&mut plan.warnings)
        } else {
            None
        };
        Ok(ChangeReport {
            plan,
            changed,
            terminated_sessions,
            replica_copy,
        })
    }
}
