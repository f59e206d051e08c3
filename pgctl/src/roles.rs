//! Login roles whose password never reaches the server in plain text.
//!
//! The password is turned into a SCRAM-SHA-256 verifier on the client, so
//! only the verifier appears in `CREATE ROLE` / `ALTER ROLE`; statement
//! logging is switched off for the session where the session may do so, so
//! not even the verifier lands in the server log. Roles created here carry
//! the caller's comment ([`Naming::role_comment`], e.g. `managed by
//! shopctl`); a role without it is never taken over unless forced.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client) -> Result<(), pgctl::error::Error> {
//! use pgctl::roles::{ensure_login_role, EnsureRole, RoleOutcome};
//! match ensure_login_role(client, "app_remote", &EnsureRole::default()).await? {
//!     RoleOutcome::Created(password) => println!("password: {}", password.expose()),
//!     other => println!("{other:?}"),
//! }
//! # Ok(()) }
//! ```

use std::fmt;

use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};
use crate::naming::Naming;

/// Longest role or database name PostgreSQL keeps (NAMEDATALEN - 1 bytes);
/// longer names are silently truncated by the server, so they are refused.
pub const MAX_NAME_BYTES: usize = 63;

/// Characters of generated passwords: URL-safe, so a connection URI needs
/// no percent-encoding.
const PASSWORD_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of generated passwords: 32 characters of 6 bits = 192 bits.
pub const PASSWORD_LEN: usize = 32;

// Each character carries 6 bits; the brief asks for at least 128.
const _: () = assert!(PASSWORD_LEN * 6 >= 128);

/// A plaintext password. `Debug` and `Display` never show it; use
/// [`Password::expose`] where it must be shown (once, to the operator).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A new random password: [`PASSWORD_LEN`] characters from a URL-safe
    /// alphabet of 64, drawn from the operating system's CSPRNG (192 bits).
    pub fn generate() -> Password {
        use rand::TryRngCore;
        let mut bytes = [0u8; PASSWORD_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random number generator failed");
        // 64 symbols: the low 6 bits of a uniform byte pick one uniformly.
        let text = bytes
            .iter()
            .map(|b| char::from(PASSWORD_ALPHABET[usize::from(b & 63)]))
            .collect();
        Password(text)
    }

    /// Wraps a password chosen elsewhere.
    pub fn new(text: impl Into<String>) -> Password {
        Password(text.into())
    }

    /// The plaintext.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(********)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// Checks that `name` can be used exactly as given for a role or database.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "it is longer than 63 bytes, and PostgreSQL would silently truncate it"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    })
}

/// What [`ensure_login_role`] may do to an existing role.
#[derive(Clone, Debug, Default)]
pub struct EnsureRole {
    /// Give an existing managed role a new password.
    pub rotate_password: bool,
    /// Take over an existing role that does not carry the caller's mark
    /// (it gets a new password and the mark).
    pub force: bool,
    /// The caller's names: the mark is [`Naming::role_comment`].
    pub naming: Naming,
    /// Use this password instead of generating one.
    pub password: Option<Password>,
}

/// What [`ensure_login_role`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleOutcome {
    /// The role was created with this password.
    Created(Password),
    /// The managed role existed and got this new password.
    Rotated(Password),
    /// An unmarked role was taken over (forced): new password, now marked.
    Adopted(Password),
    /// The managed role existed and was left as it was (its password is
    /// not known).
    Unchanged,
}

impl RoleOutcome {
    /// The new password, when one was set.
    pub fn password(&self) -> Option<&Password> {
        match self {
            RoleOutcome::Created(p) | RoleOutcome::Rotated(p) | RoleOutcome::Adopted(p) => Some(p),
            RoleOutcome::Unchanged => None,
        }
    }
}

/// An existing role as seen in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoleInfo {
    /// Name.
    pub name: String,
    /// Its comment (`COMMENT ON ROLE`), which marks the roles a caller
    /// manages ([`RoleInfo::is_marked_by`]).
    pub comment: Option<String>,
    /// Has LOGIN.
    pub can_login: bool,
    /// Is a superuser.
    pub superuser: bool,
    /// Has INHERIT.
    pub inherit: bool,
}

impl RoleInfo {
    /// Whether the role carries the mark of the caller named `naming`.
    pub fn is_marked_by(&self, naming: &Naming) -> bool {
        self.comment.as_deref() == Some(naming.role_comment().as_str())
    }
}

/// Looks a role up; `None` when it does not exist.
pub async fn role_info(client: &impl GenericClient, name: &str) -> Result<Option<RoleInfo>> {
    let row = client
        .query_opt(
            "SELECT rolname::text, \
                    pg_catalog.shobj_description(oid, 'pg_authid')::text, \
                    rolcanlogin, rolsuper, rolinherit \
             FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .map_err(Error::sql(format!(
            "looking up role {}",
            escape_identifier(name)
        )))?;
    Ok(row.map(|row| RoleInfo {
        name: row.get(0),
        comment: row.get(1),
        can_login: row.get(2),
        superuser: row.get(3),
        inherit: row.get(4),
    }))
}

/// Switches off statement logging for this session where the session may
/// set those parameters (superusers, or roles granted SET on them), so that
/// not even a password verifier reaches the log. Returns whether it could.
pub async fn suppress_statement_logging(client: &impl GenericClient) -> Result<bool> {
    let settings = [
        ("log_statement", "none"),
        ("log_min_duration_statement", "-1"),
        ("log_min_error_statement", "panic"),
        ("log_duration", "off"),
    ];
    let names: Vec<&str> = settings.iter().map(|(n, _)| *n).collect();
    let allowed: bool = client
        .query_one(
            "SELECT bool_and(pg_catalog.has_parameter_privilege(n, 'SET')) FROM unnest($1::text[]) AS n",
            &[&names],
        )
        .await
        .map_err(Error::sql("checking whether statement logging can be switched off"))?
        .get::<_, Option<bool>>(0)
        .unwrap_or(false);
    if !allowed {
        return Ok(false);
    }
    let sql: String = settings
        .iter()
        .map(|(name, value)| format!("SET {name} = {};", escape_literal(value)))
        .collect();
    client
        .batch_execute(&sql)
        .await
        .map_err(Error::sql("switching off statement logging"))?;
    Ok(true)
}

/// What goes in place of a password verifier in SQL that is printed
/// rather than run (`--dry-run`): never a real secret.
pub const PASSWORD_PLACEHOLDER: &str = "<generated>";

/// SQL that sets a role's password from a client-side SCRAM verifier, or
/// the [`PASSWORD_PLACEHOLDER`] when `password` is `None`.
fn password_clause(password: Option<&Password>) -> String {
    match password {
        Some(password) => {
            let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
            format!("PASSWORD {}", escape_literal(&verifier))
        }
        None => format!("PASSWORD {}", escape_literal(PASSWORD_PLACEHOLDER)),
    }
}

/// What [`ensure_login_role`] will do to a role, decided from the catalog
/// before anything changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleStep {
    /// Create it (new password).
    Create,
    /// Give the managed role a new password.
    Rotate,
    /// Take over an unmarked role (forced): new password and the mark.
    Adopt,
    /// Allow the managed role to log in again; password kept.
    AllowLogin,
    /// Nothing to do.
    Unchanged,
}

/// The plan of [`ensure_login_role`] for one role: what it will do and the
/// exact SQL. Running the plan ([`ensure_login_role`]) and printing it
/// (`--dry-run`) use the same statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolePlan {
    name: String,
    mark: String,
    /// What will happen.
    pub step: RoleStep,
}

impl RolePlan {
    /// Whether the step sets a new password.
    pub fn sets_password(&self) -> bool {
        matches!(
            self.step,
            RoleStep::Create | RoleStep::Rotate | RoleStep::Adopt
        )
    }

    /// The statements, with the SCRAM verifier of `password` (or the
    /// [`PASSWORD_PLACEHOLDER`] when `None`, for printing).
    pub fn statements(&self, password: Option<&Password>) -> Vec<String> {
        let ident = escape_identifier(&self.name);
        let mark = || format!("COMMENT ON ROLE {ident} IS {}", escape_literal(&self.mark));
        match self.step {
            RoleStep::Create => vec![
                format!(
                    "CREATE ROLE {ident} LOGIN NOSUPERUSER INHERIT {}",
                    password_clause(password)
                ),
                mark(),
            ],
            RoleStep::Rotate | RoleStep::Adopt => vec![
                format!("ALTER ROLE {ident} LOGIN {}", password_clause(password)),
                mark(),
            ],
            RoleStep::AllowLogin => vec![format!("ALTER ROLE {ident} LOGIN")],
            RoleStep::Unchanged => Vec::new(),
        }
    }
}

/// Decides what [`ensure_login_role`] would do to `name` (reads the
/// catalog, changes nothing). Fails like it: [`Error::RoleNotManaged`] for
/// a superuser or, unless `force`, an unmarked role.
pub async fn plan_login_role(
    client: &impl GenericClient,
    name: &str,
    options: &EnsureRole,
) -> Result<RolePlan> {
    validate_name("role", name)?;
    let marked = |info: &RoleInfo| info.is_marked_by(&options.naming);
    let step = match role_info(client, name).await? {
        None => RoleStep::Create,
        Some(info) if info.superuser || (!marked(&info) && !options.force) => {
            return Err(Error::RoleNotManaged {
                role: name.to_owned(),
                mark: options.naming.role_comment(),
            })
        }
        Some(info) if !marked(&info) => RoleStep::Adopt,
        Some(_) if options.rotate_password => RoleStep::Rotate,
        Some(info) if !info.can_login => RoleStep::AllowLogin,
        Some(_) => RoleStep::Unchanged,
    };
    Ok(RolePlan {
        name: name.to_owned(),
        mark: options.naming.role_comment(),
        step,
    })
}

/// Creates the login role `name`, or makes sure the existing one is usable:
///
/// - missing: created with LOGIN, a SCRAM verifier of a new password and the
///   caller's mark ([`Naming::role_comment`]) → [`RoleOutcome::Created`];
/// - present and marked: LOGIN ensured, password kept
///   ([`RoleOutcome::Unchanged`]) unless `rotate_password`
///   ([`RoleOutcome::Rotated`]);
/// - present and unmarked: [`Error::RoleNotManaged`] unless `force`
///   ([`RoleOutcome::Adopted`]).
///
/// Statement logging is switched off for the session first where allowed
/// ([`suppress_statement_logging`]). Superuser roles are never touched.
/// The statements are those of [`plan_login_role`].
pub async fn ensure_login_role(
    client: &impl GenericClient,
    name: &str,
    options: &EnsureRole,
) -> Result<RoleOutcome> {
    validate_name("role", name)?;
    let ident = escape_identifier(name);
    suppress_statement_logging(client).await?;
    let plan = plan_login_role(client, name, options).await?;
    let password = plan
        .sets_password()
        .then(|| options.password.clone().unwrap_or_else(Password::generate));
    let sql = plan.statements(password.as_ref()).join(";\n");
    if !sql.is_empty() {
        let action = match plan.step {
            RoleStep::Create => format!("creating role {ident}"),
            RoleStep::AllowLogin => format!("allowing role {ident} to log in"),
            _ => format!("setting the password of role {ident}"),
        };
        client
            .batch_execute(&sql)
            .await
            .map_err(Error::sql(action))?;
    }
    Ok(match (plan.step, password) {
        (RoleStep::Create, Some(p)) => RoleOutcome::Created(p),
        (RoleStep::Rotate, Some(p)) => RoleOutcome::Rotated(p),
        (RoleStep::Adopt, Some(p)) => RoleOutcome::Adopted(p),
        _ => RoleOutcome::Unchanged,
    })
}

/// The statement of [`terminate_sessions`], with the role inlined as a
/// literal (so it can be printed as it runs). It returns one row: how many
/// sessions there were.
pub fn terminate_sessions_sql(name: &str) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)) \
         FROM pg_catalog.pg_stat_activity \
         WHERE usename = {} AND pid <> pg_catalog.pg_backend_pid()",
        escape_literal(name)
    )
}

pub(crate) async fn run_terminate(
    client: &impl GenericClient,
    sql: &str,
    name: &str,
) -> Result<u64> {
    let row = client
        .query_one(sql, &[])
        .await
        .map_err(Error::sql(format!(
            "ending the sessions of role {}",
            escape_identifier(name)
        )))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Ends every session logged in as `name` (waiting up to 5 s each for them
/// to go) and returns how many there were. Runs [`terminate_sessions_sql`].
pub async fn terminate_sessions(client: &impl GenericClient, name: &str) -> Result<u64> {
    run_terminate(client, &terminate_sessions_sql(name), name).await
}

/// The statement of [`terminate_sessions_from`], with its values inlined
/// as literals (so it can be printed as it runs). It returns one row: how
/// many sessions there were.
pub fn terminate_sessions_from_sql(network: &ipnet::IpNet, role: Option<&str>) -> String {
    let role_filter = role.map_or(String::new(), |r| {
        format!(" AND usename = {}", escape_literal(r))
    });
    format!(
        "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)) \
         FROM pg_catalog.pg_stat_activity \
         WHERE client_addr <<= {}::inet{role_filter} \
           AND pid <> pg_catalog.pg_backend_pid()",
        escape_literal(&network.to_string())
    )
}

/// Ends the sessions whose client address lies in `network` (only those
/// logged in as `role`, when given), waiting up to 5 s each for them to go;
/// returns how many there were. For `--remove CIDR --terminate`: removing a
/// pg_hba.conf rule does not end sessions already authenticated by it.
/// Runs [`terminate_sessions_from_sql`].
pub async fn terminate_sessions_from(
    client: &impl GenericClient,
    network: &ipnet::IpNet,
    role: Option<&str>,
) -> Result<u64> {
    let row = client
        .query_one(&terminate_sessions_from_sql(network, role), &[])
        .await
        .map_err(Error::sql(format!("ending the sessions from {network}")))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Which of `roles` the role `user` belongs to, the way the server's
/// pg_hba.conf matching asks (hba.c `is_member()`, that is
/// `is_member_of_role_nosuper()`): every role reachable through
/// `pg_auth_members` grants, itself included, whatever the grants'
/// INHERIT/SET options, and no superuser bypass (unlike `pg_has_role`).
/// Every role of `roles` is in the answer; one that `user` does not belong
/// to (or a `user` that does not exist) maps to false.
pub async fn memberships(
    client: &impl GenericClient,
    user: &str,
    roles: &[String],
) -> Result<std::collections::HashMap<String, bool>> {
    let mut member_of: std::collections::HashMap<String, bool> =
        roles.iter().map(|r| (r.clone(), false)).collect();
    if roles.is_empty() {
        return Ok(member_of);
    }
    let rows = client
        .query(
            "WITH RECURSIVE m(oid) AS ( \
               SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1 \
               UNION \
               SELECT a.roleid FROM pg_catalog.pg_auth_members a JOIN m ON a.member = m.oid) \
             SELECT r.rolname::text FROM pg_catalog.pg_roles r JOIN m ON r.oid = m.oid \
             WHERE r.rolname = ANY($2::text[])",
            &[&user, &roles],
        )
        .await
        .map_err(Error::sql("reading role memberships"))?;
    for row in rows {
        member_of.insert(row.get(0), true);
    }
    Ok(member_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_url_safe_and_distinct() {
        let a = Password::generate();
        let b = Password::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert!(a
            .expose()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn password_debug_and_display_are_redacted() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?} {p}").contains("hunter2"));
    }

    #[test]
    fn names_that_the_server_would_truncate_are_refused() {
        assert!(validate_name("role", &"a".repeat(63)).is_ok());
        assert!(validate_name("role", &"a".repeat(64)).is_err());
        assert!(validate_name("role", "").is_err());
        assert!(validate_name("role", "a\0b").is_err());
        assert!(validate_name("role", "we\"ird; DROP TABLE x; --").is_ok());
    }

    #[test]
    fn password_clause_carries_only_the_verifier() {
        let clause = password_clause(Some(&Password::new("s3cret-plain")));
        assert!(clause.starts_with("PASSWORD 'SCRAM-SHA-256$4096:"));
        assert!(!clause.contains("s3cret-plain"));
        assert_eq!(password_clause(None), "PASSWORD '<generated>'");
    }
}
