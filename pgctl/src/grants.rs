//! Linking a login role to an application database so that it acts as the
//! application's owner role, and undoing that.
//!
//! The link has three parts, made in one transaction and each only when
//! missing (so running it twice changes nothing):
//!
//! - membership in the owner role (`WITH INHERIT TRUE, SET TRUE` on
//!   PostgreSQL 16+, where membership options exist; plain `GRANT` and the
//!   role's INHERIT attribute on 15), so the role can use everything the
//!   owner can;
//! - `ALTER ROLE role IN DATABASE db SET role = owner`, so every session of
//!   the role in that database runs as the owner, and tables it creates
//!   belong to the owner (the application keeps full use of them);
//! - `GRANT CONNECT ON DATABASE db`, so the role can connect even where
//!   CONNECT was revoked from PUBLIC.
//!
//! ```no_run
//! # async fn demo(mut client: tokio_postgres::Client) -> Result<(), pgctl::error::Error> {
//! let owner = pgctl::grants::find_owner_role(&client, "appdb", Some("appdb")).await?;
//! pgctl::grants::link_role(&mut client, "app_remote", "appdb", &owner).await?;
//! # Ok(()) }
//! ```

use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};
use crate::naming::Naming;
use crate::roles::{
    role_info, run_terminate, terminate_sessions, terminate_sessions_sql, validate_name,
};

/// Which parts of the link a call added (or, for [`unlink_role`], removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkChanges {
    /// Membership in the owner role (or its INHERIT/SET options).
    pub membership: bool,
    /// The per-database `role` setting.
    pub role_setting: bool,
    /// The CONNECT privilege.
    pub connect: bool,
}

impl LinkChanges {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.membership || self.role_setting || self.connect
    }
}

/// The role whose rights a remote login role should get: `app_role` (the
/// user of the application's connection string) when given, else the
/// database's owner. Refuses superusers ([`Error::OwnerIsSuperuser`]).
pub async fn find_owner_role(
    client: &impl GenericClient,
    database: &str,
    app_role: Option<&str>,
) -> Result<String> {
    validate_name("database", database)?;
    let owner = client
        .query_opt(
            "SELECT pg_catalog.pg_get_userbyid(datdba)::text FROM pg_catalog.pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(Error::sql(format!(
            "looking up database {}",
            escape_identifier(database)
        )))?
        .ok_or_else(|| Error::DatabaseMissing {
            database: database.to_owned(),
        })?
        .get::<_, String>(0);
    let role = app_role.map_or(owner, str::to_owned);
    let info = role_info(client, &role)
        .await?
        .ok_or_else(|| Error::RoleMissing { role: role.clone() })?;
    if info.superuser {
        return Err(Error::OwnerIsSuperuser { role });
    }
    Ok(role)
}

/// The link's current state: (member, member with inherit+set, has setting, has connect).
struct LinkState {
    member: bool,
    member_options_ok: bool,
    role_setting: bool,
    connect: bool,
    major: i32,
}

async fn link_state(
    client: &impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<LinkState> {
    let action = || {
        format!(
            "reading how role {} is linked to database {}",
            escape_identifier(role),
            escape_identifier(database)
        )
    };
    let major: i32 = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .map_err(Error::sql(action()))?
        .get(0);
    let membership_sql = if major >= 16 {
        "SELECT count(*) > 0, coalesce(bool_or(m.inherit_option AND m.set_option), false) \
         FROM pg_catalog.pg_auth_members m \
         JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
         JOIN pg_catalog.pg_roles u ON u.oid = m.member \
         WHERE g.rolname = $1 AND u.rolname = $2"
    } else {
        "SELECT count(*) > 0, count(*) > 0 AND bool_and(u.rolinherit) \
         FROM pg_catalog.pg_auth_members m \
         JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
         JOIN pg_catalog.pg_roles u ON u.oid = m.member \
         WHERE g.rolname = $1 AND u.rolname = $2"
    };
    let row = client
        .query_one(membership_sql, &[&owner, &role])
        .await
        .map_err(Error::sql(action()))?;
    let (member, member_options_ok): (bool, bool) = (row.get(0), row.get(1));
    let setting = format!("role={owner}");
    let row = client
        .query_one(
            "SELECT \
               EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s \
                       JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase \
                       JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
                       WHERE d.datname = $1 AND r.rolname = $2 AND $3 = ANY (s.setconfig)), \
               EXISTS (SELECT 1 FROM pg_catalog.pg_database d, \
                       LATERAL pg_catalog.aclexplode(d.datacl) a \
                       JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
                       WHERE d.datname = $1 AND r.rolname = $2 AND a.privilege_type = 'CONNECT')",
            &[&database, &role, &setting],
        )
        .await
        .map_err(Error::sql(action()))?;
    Ok(LinkState {
        member,
        member_options_ok,
        role_setting: row.get(0),
        connect: row.get(1),
        major,
    })
}

async fn check_link_names(
    client: &impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<()> {
    validate_name("role", role)?;
    validate_name("database", database)?;
    validate_name("role", owner)?;
    if role == owner {
        return Err(Error::SelfLink {
            role: role.to_owned(),
        });
    }
    if role_info(client, role).await?.is_none() {
        return Err(Error::RoleMissing {
            role: role.to_owned(),
        });
    }
    let owner_info = role_info(client, owner)
        .await?
        .ok_or_else(|| Error::RoleMissing {
            role: owner.to_owned(),
        })?;
    if owner_info.superuser {
        return Err(Error::OwnerIsSuperuser {
            role: owner.to_owned(),
        });
    }
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
            &[&database],
        )
        .await
        .map_err(Error::sql(format!(
            "looking up database {}",
            escape_identifier(database)
        )))?
        .get(0);
    if !exists {
        return Err(Error::DatabaseMissing {
            database: database.to_owned(),
        });
    }
    Ok(())
}

/// The statements [`link_role`] runs: the missing parts of the link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkPlan {
    /// The statements, in order (empty when the link is complete).
    pub statements: Vec<String>,
    /// Which parts they add.
    pub changes: LinkChanges,
}

fn link_statements(state: &LinkState, role: &str, database: &str, owner: &str) -> LinkPlan {
    let (r, d, o) = (
        escape_identifier(role),
        escape_identifier(database),
        escape_identifier(owner),
    );
    let mut plan = LinkPlan::default();
    if !state.member_options_ok {
        plan.changes.membership = true;
        if state.major >= 16 {
            plan.statements
                .push(format!("GRANT {o} TO {r} WITH INHERIT TRUE, SET TRUE"));
        } else {
            // On 15 inheritance is an attribute of the member role.
            plan.statements.push(format!("ALTER ROLE {r} INHERIT"));
            if !state.member {
                plan.statements.push(format!("GRANT {o} TO {r}"));
            }
        }
    }
    if !state.role_setting {
        plan.changes.role_setting = true;
        plan.statements.push(format!(
            "ALTER ROLE {r} IN DATABASE {d} SET role = {}",
            escape_literal(owner)
        ));
    }
    if !state.connect {
        plan.changes.connect = true;
        plan.statements
            .push(format!("GRANT CONNECT ON DATABASE {d} TO {r}"));
    }
    plan
}

/// What [`link_role`] would run now (reads the catalog, changes nothing).
/// `role` need not exist yet: then every part is missing, as it will be
/// right after the role is created.
pub async fn plan_link(
    client: &impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<LinkPlan> {
    validate_name("role", role)?;
    validate_name("database", database)?;
    validate_name("role", owner)?;
    let state = link_state(client, role, database, owner).await?;
    Ok(link_statements(&state, role, database, owner))
}

/// Links `role` to `database` so that it acts as `owner` there (see the
/// module docs), in one transaction (a savepoint when `client` is already
/// a transaction). Idempotent: returns what had to be added. Runs the
/// statements of [`plan_link`].
pub async fn link_role(
    client: &mut impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<LinkChanges> {
    let action = format!(
        "linking role {} to database {} as {}",
        escape_identifier(role),
        escape_identifier(database),
        escape_identifier(owner)
    );
    let tx = client
        .transaction()
        .await
        .map_err(Error::sql(action.clone()))?;
    check_link_names(&tx, role, database, owner).await?;
    let state = link_state(&tx, role, database, owner).await?;
    let plan = link_statements(&state, role, database, owner);
    if !plan.statements.is_empty() {
        tx.batch_execute(&plan.statements.join(";\n"))
            .await
            .map_err(Error::sql(action.clone()))?;
    }
    tx.commit().await.map_err(Error::sql(action))?;
    Ok(plan.changes)
}

/// Undoes [`link_role`]: revokes CONNECT, removes the per-database `role`
/// setting and the membership, in one transaction. Idempotent: returns what
/// had to be removed. Does not drop the role (see [`drop_linked_role`]).
pub async fn unlink_role(
    client: &mut impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<LinkChanges> {
    let action = format!(
        "unlinking role {} from database {}",
        escape_identifier(role),
        escape_identifier(database)
    );
    let tx = client
        .transaction()
        .await
        .map_err(Error::sql(action.clone()))?;
    let changes = unlink_in(&tx, role, database, owner).await?;
    tx.commit().await.map_err(Error::sql(action))?;
    Ok(changes)
}

fn unlink_statements(state: &LinkState, role: &str, database: &str, owner: &str) -> LinkPlan {
    let (r, d, o) = (
        escape_identifier(role),
        escape_identifier(database),
        escape_identifier(owner),
    );
    let mut plan = LinkPlan {
        statements: Vec::new(),
        changes: LinkChanges {
            membership: state.member,
            role_setting: state.role_setting,
            connect: state.connect,
        },
    };
    if state.connect {
        plan.statements
            .push(format!("REVOKE CONNECT ON DATABASE {d} FROM {r}"));
    }
    if state.role_setting {
        plan.statements
            .push(format!("ALTER ROLE {r} IN DATABASE {d} RESET role"));
    }
    if state.member {
        plan.statements.push(format!("REVOKE {o} FROM {r}"));
    }
    plan
}

async fn plan_unlink(
    tx: &impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<LinkPlan> {
    validate_name("role", role)?;
    validate_name("database", database)?;
    validate_name("role", owner)?;
    if role_info(tx, role).await?.is_none() {
        return Ok(LinkPlan::default());
    }
    let state = link_state(tx, role, database, owner).await?;
    Ok(unlink_statements(&state, role, database, owner))
}

async fn unlink_in(
    tx: &impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<LinkChanges> {
    let plan = plan_unlink(tx, role, database, owner).await?;
    if !plan.statements.is_empty() {
        tx.batch_execute(&plan.statements.join(";\n"))
            .await
            .map_err(Error::sql(format!(
                "unlinking role {} from database {}",
                escape_identifier(role),
                escape_identifier(database)
            )))?;
    }
    Ok(plan.changes)
}

/// What [`drop_linked_role`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropOutcome {
    /// Parts of the link removed.
    pub unlinked: LinkChanges,
    /// Sessions of the role that were ended.
    pub terminated_sessions: u64,
    /// Whether the role existed and was dropped.
    pub dropped: bool,
}

/// The statements [`drop_linked_role`] runs, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropPlan {
    /// `ALTER ROLE ... NOLOGIN`.
    pub nologin: String,
    /// The `SELECT` that ends the role's sessions (it returns their count).
    pub terminate: String,
    /// Undoing the link ([`unlink_role`]).
    pub unlink: LinkPlan,
    /// `REASSIGN OWNED BY role TO owner; DROP OWNED BY role` (objects the
    /// role owns in the current database and on shared objects go to the
    /// owner role; its remaining privileges are revoked), then `DROP ROLE`.
    pub reassign_and_drop: Vec<String>,
}

impl DropPlan {
    /// Every statement, in the order they run.
    pub fn statements(&self) -> Vec<String> {
        let mut all = vec![self.nologin.clone(), self.terminate.clone()];
        all.extend(self.unlink.statements.iter().cloned());
        all.extend(self.reassign_and_drop.iter().cloned());
        all
    }
}

/// The databases (by name) where `role` owns objects or holds privileges,
/// from the shared catalog `pg_shdepend` (visible from any database);
/// shared objects (databases, tablespaces, parameters) are left out, since
/// `REASSIGN OWNED` / `DROP OWNED` handle them from any database.
async fn databases_with_dependencies(
    client: &impl GenericClient,
    role: &str,
) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT DISTINCT d.datname::text \
             FROM pg_catalog.pg_shdepend s \
             JOIN pg_catalog.pg_database d ON d.oid = s.dbid \
             JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid \
             WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass \
               AND s.deptype <> 'p' AND r.rolname = $1 \
             ORDER BY 1",
            &[&role],
        )
        .await
        .map_err(Error::sql(format!(
            "looking up what role {} owns",
            escape_identifier(role)
        )))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What [`drop_linked_role`] would run now; `None` when the role does not
/// exist. Fails like it: [`Error::RoleNotManaged`] for a superuser or an
/// unmarked role (unless `force`), and
/// [`Error::RoleHasObjectsElsewhere`] when the role owns objects or holds
/// privileges in a database other than `database`, or in `database` while
/// `client` is connected to another one (`REASSIGN OWNED` works on the
/// current database only).
pub async fn plan_drop_linked_role(
    client: &impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
    naming: &Naming,
    force: bool,
) -> Result<Option<DropPlan>> {
    let Some(info) = role_info(client, role).await? else {
        return Ok(None);
    };
    if info.superuser || (!info.is_marked_by(naming) && !force) {
        return Err(Error::RoleNotManaged {
            role: role.to_owned(),
            mark: naming.role_comment(),
        });
    }
    let current: String = client
        .query_one("SELECT pg_catalog.current_database()::text", &[])
        .await
        .map_err(Error::sql("reading the current database"))?
        .get(0);
    let others: Vec<String> = databases_with_dependencies(client, role)
        .await?
        .into_iter()
        .filter(|d| d != database || *d != current)
        .collect();
    let (r, o) = (escape_identifier(role), escape_identifier(owner));
    if !others.is_empty() {
        return Err(Error::RoleHasObjectsElsewhere {
            role: role.to_owned(),
            role_sql: r,
            owner_sql: o,
            database: database.to_owned(),
            others,
        });
    }
    Ok(Some(DropPlan {
        nologin: format!("ALTER ROLE {r} NOLOGIN"),
        terminate: terminate_sessions_sql(role),
        unlink: plan_unlink(client, role, database, owner).await?,
        reassign_and_drop: vec![
            format!("REASSIGN OWNED BY {r} TO {o}"),
            format!("DROP OWNED BY {r}"),
            format!("DROP ROLE {r}"),
        ],
    }))
}

/// The inverse of role creation plus [`link_role`], for `--deinit`: in one
/// transaction, forbids new logins of `role`, ends its sessions, unlinks it
/// from `database`/`owner`, hands what it owns in the current database
/// (and shared objects) to `owner`, revokes its remaining privileges and
/// drops it: the statements of [`plan_drop_linked_role`]. Run it connected
/// to `database`, so that objects the role made there (with `SET ROLE` or
/// `RESET ROLE`) stay with the application instead of blocking the drop. A
/// missing role is not an error (nothing to do); a role without the
/// caller's mark ([`Naming::role_comment`]) is refused unless `force`. If anything fails, nothing
/// changes (sessions already ended stay ended). Sessions that logged in
/// while the transaction ran (NOLOGIN takes effect only at commit) are
/// ended after the commit.
pub async fn drop_linked_role(
    client: &mut impl GenericClient,
    role: &str,
    database: &str,
    owner: &str,
    naming: &Naming,
    force: bool,
) -> Result<DropOutcome> {
    let r = escape_identifier(role);
    let action = format!("dropping role {r}");
    let tx = client
        .transaction()
        .await
        .map_err(Error::sql(action.clone()))?;
    let Some(plan) = plan_drop_linked_role(&tx, role, database, owner, naming, force).await? else {
        return Ok(DropOutcome::default());
    };
    tx.batch_execute(&plan.nologin)
        .await
        .map_err(Error::sql(action.clone()))?;
    let terminated_sessions = run_terminate(&tx, &plan.terminate, role).await?;
    if !plan.unlink.statements.is_empty() {
        tx.batch_execute(&plan.unlink.statements.join(";\n"))
            .await
            .map_err(Error::sql(format!(
                "unlinking role {r} from database {}",
                escape_identifier(database)
            )))?;
    }
    tx.batch_execute(&plan.reassign_and_drop.join(";\n"))
        .await
        .map_err(Error::sql(action.clone()))?;
    tx.commit().await.map_err(Error::sql(action))?;
    // NOLOGIN was invisible to other sessions until the commit, so a client
    // (a web node's pool reconnecting) may have logged in after the first
    // round; a dropped role's session would otherwise live on.
    let stragglers = terminate_sessions(&*client, role).await?;
    Ok(DropOutcome {
        unlinked: plan.unlink.changes,
        terminated_sessions: terminated_sessions + stragglers,
        dropped: true,
    })
}
