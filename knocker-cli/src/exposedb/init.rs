//! `--init` and `--deinit`: listen on the network, the remote role and its
//! link to the application database, the (empty) managed block; and undoing
//! all of it.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use pgctl::conninfo::{ConnInfo, UriScheme};
use pgctl::listen::{plan_listen_addresses, RestartWith};
use pgctl::roles::{EnsureRole, RoleOutcome};
use pghba::exposedb_block;

use super::output::{Failure, Out};
use super::target::{Admin, AppConn};
use super::{network, read_hba, rule_comment, scope, version, ExposedbArgs};

/// Connections a typical web node's pool opens.
const POOL_PER_NODE: u32 = 20;

fn pg(e: pgctl::error::Error) -> Failure {
    Failure::failed(e.to_string())
}

/// Restart the server if the operator agrees; returns whether it restarted.
async fn restart(
    args: &ExposedbArgs,
    admin: &mut Admin,
    plan: Option<&pgctl::listen::ListenPlan>,
    out: &mut Out,
) -> Result<bool, Failure> {
    let manager = pgctl::server::detect_manager(&admin.facts);
    let command = manager
        .restart_command_line()
        .unwrap_or_else(|| "restart PostgreSQL with your service manager".into());
    out.set("restart_command", command.clone());
    if args.no_restart {
        out.set("restarted", false);
        out.warn(format!(
            "PostgreSQL must be restarted for listen_addresses to take effect; run: {command}"
        ));
        return Ok(false);
    }
    eprintln!(
        "PostgreSQL will be restarted ({manager}) to change listen_addresses; \
         the Knocknoc web app on this host loses its database connections for a few seconds."
    );
    if !args.yes && std::io::stdin().is_terminal() {
        eprint!("Restart PostgreSQL now? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            out.set("restarted", false);
            out.warn(format!(
                "not restarted; listen_addresses takes effect after: {command}"
            ));
            return Ok(false);
        }
    }
    let how = RestartWith::Manager(manager);
    let client = pgctl::listen::restart_and_wait(
        admin.client(),
        &how,
        Duration::from_secs(120),
        admin.reconnector(),
    )
    .await
    .map_err(|e| Failure::failed(format!("restarting PostgreSQL: {e}")))?;
    if let Some(plan) = plan {
        pgctl::listen::verify_listening(&client, admin.facts.port, plan)
            .await
            .map_err(pg)?;
    }
    admin.replace(client).await?;
    out.set("restarted", true);
    Ok(true)
}

pub(super) fn listen_additions(args: &ExposedbArgs) -> Result<Vec<String>, Failure> {
    let list = args.listen.clone().unwrap_or_else(|| "0.0.0.0".into());
    let items: Vec<String> = list
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for i in &items {
        if i != "*" && i.parse::<std::net::IpAddr>().is_err() {
            return Err(Failure::usage(format!(
                "--listen: {i:?} is not an IP address or *"
            )));
        }
    }
    if items.is_empty() {
        return Err(Failure::usage("--listen: no address given"));
    }
    Ok(items)
}

/// `--init` (and `--rotate-password`).
pub async fn init(
    args: &ExposedbArgs,
    app: &AppConn,
    admin: &mut Admin,
    out: &mut Out,
) -> Result<(), Failure> {
    let adds = listen_additions(args)?;
    admin.check_hba_owner(args.force)?;
    let scope = scope(args, app, admin);
    pgctl::roles::validate_name("role", &scope.user)
        .map_err(|e| Failure::usage(format!("--user: {e}")))?;
    let version = version(admin)?;
    let (path, old) = read_hba(admin)?;
    let path_str = path.to_string_lossy().into_owned();
    let hba = exposedb_block::plan(
        &super::hba_file(&path_str, &old, version),
        &mut pghba::FsLoader,
        &scope,
        &[],
        &[],
        &rule_comment(),
        args.force,
    )
    .map_err(super::plan_error)?;
    let adds_ref: Vec<&str> = adds.iter().map(String::as_str).collect();
    let listen = plan_listen_addresses(&admin.facts.listen_addresses, &adds_ref);
    out.set("role", scope.user.clone());
    out.set("database", scope.database.clone());
    out.set("hba_file", path.display().to_string());
    out.set("listen_addresses", listen.new.clone());
    out.set("hostssl", scope.hostssl);

    let ensure = EnsureRole {
        rotate_password: args.rotate_password,
        force: args.force,
        password: None,
    };
    if args.dry_run {
        // The statements come from the same pgctl plans that run them.
        let role_plan = pgctl::roles::plan_login_role(admin.client(), &scope.user, &ensure)
            .await
            .map_err(role_failure)?;
        let owner =
            pgctl::grants::find_owner_role(admin.client(), &scope.database, Some(&app.user))
                .await
                .map_err(pg)?;
        let link = pgctl::grants::plan_link(admin.client(), &scope.user, &scope.database, &owner)
            .await
            .map_err(pg)?;
        let mut sql = role_plan.statements(None);
        sql.extend(link.statements);
        let mut notes = Vec::new();
        if hba.changed() {
            sql.push(RELOAD_SQL.into());
        }
        if listen.changes() {
            if pgctl::listen::alter_system_allowed(admin.client())
                .await
                .map_err(pg)?
            {
                sql.push(pgctl::listen::set_listen_addresses_sql(&listen.new));
            } else {
                notes.push(format!(
                    "ALTER SYSTEM is off: listen_addresses = '{}' would be written to {} in the include directory.",
                    listen.new,
                    pgctl::listen::INCLUDE_FILE_NAME
                ));
            }
            notes.push("Then PostgreSQL would be restarted for listen_addresses.".into());
        }
        let d = knocker_ops::diff::unified(&path.display().to_string(), &old, &hba.new_text);
        print_dry_run(out, &d, &sql, &notes);
        return Ok(());
    }

    // The role, with a password hashed on this side.
    let outcome = pgctl::roles::ensure_login_role(admin.client(), &scope.user, &ensure)
        .await
        .map_err(role_failure)?;
    let owner = pgctl::grants::find_owner_role(admin.client(), &scope.database, Some(&app.user))
        .await
        .map_err(pg)?;
    let link = pgctl::grants::link_role(admin.client_mut(), &scope.user, &scope.database, &owner)
        .await
        .map_err(pg)?;
    let hba_changed = if hba.changed() {
        let (scope2, comment, force) = (scope.clone(), rule_comment(), args.force);
        admin
            .install_hba(&path, move |cur: &[u8]| {
                exposedb_block::plan(
                    &super::hba_file(&path_str, cur, version),
                    &mut pghba::FsLoader,
                    &scope2,
                    &[],
                    &[],
                    &comment,
                    force,
                )
                .map(|c| c.new_text)
            })
            .await?
    } else {
        false
    };
    let mut listen_changed = false;
    let mut restarted = false;
    if listen.changes() {
        let change = pgctl::listen::set_listen_addresses(admin.client(), &listen.new)
            .await
            .map_err(pg)?;
        listen_changed = true;
        if change.restart_needed {
            restarted = restart(args, admin, Some(&listen), out).await?;
        }
    }

    let host = match &args.advertise {
        Some(h) => h.clone(),
        None => {
            let (chosen, others) = network::advertise_candidates();
            out.set(
                "other_addresses",
                others.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            );
            if !others.is_empty() {
                out.warn(format!(
                    "this host has other addresses too ({}); pick one with --advertise HOST if secondaries reach it there",
                    others.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
            match chosen {
                Some(a) => a.to_string(),
                None => {
                    out.warn("no non-loopback IPv4 address found; using 127.0.0.1 (give --advertise HOST)");
                    "127.0.0.1".into()
                }
            }
        }
    };
    out.set("advertise", host.clone());

    let password = outcome.password().cloned();
    let created = matches!(outcome, RoleOutcome::Created(_) | RoleOutcome::Adopted(_));
    let nothing_changed =
        matches!(outcome, RoleOutcome::Unchanged) && !link.any() && !hba_changed && !listen_changed;
    out.set(
        "role_outcome",
        match outcome {
            RoleOutcome::Created(_) => "created",
            RoleOutcome::Rotated(_) => "rotated",
            RoleOutcome::Adopted(_) => "adopted",
            RoleOutcome::Unchanged => "unchanged",
        },
    );
    out.set("changed", !nothing_changed);
    // verify-full only when a secondary would pass it with the system's
    // trust store: a CA-signed certificate naming the advertised host.
    let verify_full = scope.hostssl
        && password.is_some()
        && verifies_with_system_roots(&host, admin.facts.port, &scope).await;
    out.set("verify_full", verify_full);
    match &password {
        Some(p) => {
            let mut b = ConnInfo::builder()
                .host(host.clone())
                .port(admin.facts.port)
                .user(scope.user.clone())
                .password(p.expose().to_string())
                .dbname(scope.database.clone());
            if verify_full {
                b = b
                    .sslmode(pgctl::connect::SslMode::VerifyFull)
                    .sslrootcert("system");
            } else if scope.hostssl {
                b = b.sslmode(pgctl::connect::SslMode::Require);
            }
            let uri = b.build().to_uri_with(UriScheme::Postgres);
            out.set("connection_string", uri.clone());
            out.set("password", p.expose().to_string());
            out.say(format!(
                "Connection string for the secondary web nodes (shown only now; keep it safe):\n\n  {uri}\n"
            ));
        }
        None => {
            out.set("connection_string", serde_json::Value::Null);
            out.say(format!(
                "Already set up: role {} exists (its password is not shown again; \
                 --rotate-password sets a new one).",
                scope.user
            ));
        }
    }
    if nothing_changed {
        out.say("Nothing changed: listen_addresses, the role, its grants and the pg_hba.conf block were already in place.");
    } else {
        if created {
            out.say(format!(
                "Created login role {} (scram-sha-256), acting as {owner} in database {}.",
                scope.user, scope.database
            ));
        }
        if hba_changed {
            out.say(format!(
                "Added the (empty) knocker block to {}.",
                path.display()
            ));
        }
        if listen_changed {
            out.say(format!(
                "listen_addresses = '{}'{}.",
                listen.new,
                if restarted {
                    " (PostgreSQL restarted)"
                } else {
                    " (takes effect after a restart)"
                }
            ));
        }
    }
    out.say(format!(
        "Next: allow each secondary with: knocker exposedb --add \"ADDRESS/32\"\n\
         Firewall: open TCP port {} only to those addresses (e.g. ufw allow from ADDRESS to any port {0} proto tcp).",
        admin.facts.port
    ));
    let needed = args.nodes.saturating_mul(POOL_PER_NODE);
    out.set("max_connections", admin.facts.max_connections);
    if needed + 10 > admin.facts.max_connections {
        out.warn(format!(
            "{} web nodes with pools of {POOL_PER_NODE} need about {needed} connections; \
             max_connections is {} (raise it, or shrink the pools)",
            args.nodes, admin.facts.max_connections
        ));
    }
    if scope.hostssl {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin.facts.port));
        match pgctl::connect::fetch_server_certificate(addr, "localhost", Duration::from_secs(5))
            .await
        {
            Ok(cert) => {
                out.set("certificate_sha256", cert.sha256_fingerprint());
                out.set("certificate_self_signed", cert.is_self_signed());
                if cert.is_self_signed() {
                    out.set("certificate_pem", cert.to_pem());
                    out.say(format!(
                        "The server certificate is self-signed; its SHA-256 fingerprint is\n  {}\n\
                         Secondaries connect with sslmode=require (encrypted, not verified). To verify it, \
                         save the certificate (the certificate_pem field of --json) and use sslrootcert=FILE with sslmode=verify-ca.",
                        cert.sha256_fingerprint()
                    ));
                } else if !verify_full {
                    out.say(format!(
                        "The server certificate is signed by a CA this host's trust store does not know \
                         (or does not name {host}): secondaries connect with sslmode=require. To verify it, \
                         give them that CA's certificate as sslrootcert=FILE with sslmode=verify-full."
                    ));
                }
            }
            Err(e) => out.warn(format!("could not read the server certificate: {e}")),
        }
    }
    Ok(())
}

/// Whether a client reaching this server as `host` with
/// `sslmode=verify-full sslrootcert=system` gets through the TLS handshake
/// (the chain checks out against the system's roots and the certificate
/// names `host`). Probed over loopback (`hostaddr=127.0.0.1`) with the
/// advertised name; the login itself may fail, only TLS matters.
async fn verifies_with_system_roots(host: &str, port: u16, scope: &exposedb_block::Scope) -> bool {
    use pgctl::connect::ConnectErrorKind as K;
    let info = ConnInfo::builder()
        .host(host)
        .set(pgctl::conninfo::Keyword::Hostaddr, "127.0.0.1")
        .port(port)
        .user(scope.user.clone())
        .dbname(scope.database.clone())
        .sslmode(pgctl::connect::SslMode::VerifyFull)
        .sslrootcert("system")
        .connect_timeout(5)
        .build();
    let env = pgctl::conninfo::MapEnvironment::new();
    let Ok(resolved) = pgctl::conninfo::resolve(&info, &env) else {
        return false;
    };
    match pgctl::connect::connect(&resolved.params).await {
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            K::NoHbaEntry
                | K::BadPassword
                | K::PasswordMissing
                | K::AuthenticationFailed
                | K::RoleDoesNotExist
                | K::DatabaseDoesNotExist
                | K::TooManyConnections
                | K::ServerNotAccepting
        ),
    }
}

fn role_failure(e: pgctl::error::Error) -> Failure {
    Failure::failed(format!(
        "{e}\n(use --user NAME for another role, or --force to take it over)"
    ))
}

/// What pgctl's safe pg_hba.conf installation asks the server after
/// writing the file.
pub(super) const RELOAD_SQL: &str = "SELECT pg_catalog.pg_reload_conf()";

/// The `--dry-run` report: the diff, the SQL it would run, notes. In JSON:
/// `dry_run`, `diff`, `sql`.
pub(super) fn print_dry_run(out: &mut Out, diff: &str, sql: &[String], notes: &[String]) {
    out.set("dry_run", true);
    out.set("diff", diff.to_string());
    out.set("sql", sql.to_vec());
    out.say("Dry run: nothing changed.");
    if diff.is_empty() {
        out.say("pg_hba.conf would not change.");
    } else {
        out.say(format!(
            "pg_hba.conf would change like this:\n{}",
            diff.trim_end_matches('\n')
        ));
    }
    if sql.is_empty() {
        out.say("No SQL would run.");
    } else {
        out.say("SQL it would run:");
        for s in sql {
            out.say(format!("  {s};"));
        }
    }
    for n in notes {
        out.say(n);
    }
}

/// `--deinit`: undo `--init` completely.
pub async fn deinit(
    args: &ExposedbArgs,
    app: &AppConn,
    admin: &mut Admin,
    out: &mut Out,
) -> Result<(), Failure> {
    admin.check_hba_owner(args.force)?;
    let scope = scope(args, app, admin);
    let version = version(admin)?;
    let (path, old) = read_hba(admin)?;
    let (new, had_block) = exposedb_block::remove(&old, version).map_err(super::plan_error)?;
    out.set("role", scope.user.clone());
    out.set("hba_file", path.display().to_string());
    // REASSIGN OWNED works on the current database: drop the role from a
    // session in the application's database.
    let mut in_app_db = admin.connect_to_database(&scope.database).await?;
    let owner = match pgctl::roles::role_info(&in_app_db, &scope.user)
        .await
        .map_err(pg)?
    {
        Some(_) => Some(
            pgctl::grants::find_owner_role(&in_app_db, &scope.database, Some(&app.user))
                .await
                .map_err(pg)?,
        ),
        None => None,
    };
    // Checked before anything changes: a role that owns objects elsewhere
    // stops --deinit here, with the block still in place.
    let drop_plan = match &owner {
        Some(owner) => pgctl::grants::plan_drop_linked_role(
            &in_app_db,
            &scope.user,
            &scope.database,
            owner,
            args.force,
        )
        .await
        .map_err(pg)?,
        None => None,
    };
    if args.dry_run {
        let mut sql = Vec::new();
        if had_block {
            sql.push(RELOAD_SQL.into());
        }
        sql.extend(drop_plan.map(|p| p.statements()).unwrap_or_default());
        let mut notes = Vec::new();
        if pgctl::listen::alter_system_allowed(admin.client())
            .await
            .map_err(pg)?
        {
            sql.push(pgctl::listen::RESET_LISTEN_ADDRESSES_SQL.into());
        }
        notes.push(format!(
            "knocker's {} in the include directory would be removed if present; \
             PostgreSQL would be restarted if listen_addresses changes.",
            pgctl::listen::INCLUDE_FILE_NAME
        ));
        let d = knocker_ops::diff::unified(&path.display().to_string(), &old, &new);
        print_dry_run(out, &d, &sql, &notes);
        return Ok(());
    }
    let hba_changed = if had_block {
        admin
            .install_hba(&path, move |cur: &[u8]| {
                exposedb_block::remove(cur, version).map(|(t, _)| t)
            })
            .await?
    } else {
        false
    };
    let dropped = match &owner {
        Some(owner) => {
            pgctl::grants::drop_linked_role(
                &mut in_app_db,
                &scope.user,
                &scope.database,
                owner,
                args.force,
            )
            .await
            .map_err(pg)?
            .dropped
        }
        None => false,
    };
    drop(in_app_db);
    let change = pgctl::listen::reset_listen_addresses(admin.client())
        .await
        .map_err(pg)?;
    let mut restarted = false;
    if change.restart_needed {
        restarted = restart(args, admin, None, out).await?;
    }
    out.set("hba_changed", hba_changed);
    out.set("role_dropped", dropped);
    out.set("listen_addresses", change.new.clone());
    out.set("changed", hba_changed || dropped || change.restart_needed);
    if hba_changed {
        out.say(format!(
            "Removed the knocker block from {}.",
            path.display()
        ));
    }
    if dropped {
        out.say(format!("Dropped role {}.", scope.user));
    }
    if change.restart_needed {
        out.say(format!(
            "listen_addresses reset to '{}'{}.",
            change.new,
            if restarted {
                " (PostgreSQL restarted)"
            } else {
                " (takes effect after a restart)"
            }
        ));
    }
    if !hba_changed && !dropped && !change.restart_needed {
        out.say(
            "Nothing to undo: no knocker block, no remote role, listen_addresses as configured.",
        );
    }
    Ok(())
}
