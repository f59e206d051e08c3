//! `knocker exposedb`: share this host's Knocknoc database with other web
//! nodes. Parses arguments, calls pgctl and pghba, prints; nothing else.

mod cidr;

mod init;
mod network;
mod output;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ipnet::IpNet;
use pghba::exposedb_block::{self, PlanError, Scope};
use pghba::matcher::RuleOutcome;
use pghba::{HbaDocument, PgVersion};

use output::{Failure, Out};

/// The reference usage text (DESIGN.md section 1), printed when no action is
/// given.
pub const REFERENCE_USAGE: &str = "\
knocker exposedb [--init | --add <CIDR> | --remove <CIDR> | --list] [--conn URI]
  --init          Initialize/expose the database for external access
  --add <CIDR>    Add access rule to pg_hba.conf for the specified CIDR
  --remove <CIDR> Remove access rule from pg_hba.conf for the specified CIDR
  --list          List all IP addresses currently allowed to access the database
  --conn <URI>    PostgreSQL connection string (default: from knocknoc.conf)
  -h, --help
";

const ABOUT: &str = "Expose this host's Knocknoc PostgreSQL database to other web nodes \
(shared-primary topology): listen on the network, a remote login role, and an \
allow-list of source CIDRs in pg_hba.conf.";

const EXAMPLES: &str = "\
Examples:
  sudo knocker exposedb --init
  sudo knocker exposedb --add \"203.0.113.7/32\"
  sudo knocker exposedb --add 203.0.113.7 --add 2001:db8::/64 --dry-run
  sudo knocker exposedb --remove 203.0.113.7/32 --terminate
  sudo knocker exposedb --list --json
  sudo knocker exposedb --explain 203.0.113.7
  knocker exposedb --list --conn \"postgres://knocknoc:PASSWORD@127.0.0.1:5432/knocknoc\" \\
      --admin-conn \"host=/var/run/postgresql user=postgres\"

Exit status: 0 done (or nothing to do), 1 failed (nothing changed), 2 bad usage or input.";

/// Arguments of `knocker exposedb`.
#[derive(Debug, Args)]
#[command(
    about = ABOUT,
    override_usage = "knocker exposedb [--init | --add <CIDR> | --remove <CIDR> | --list] [--conn URI]",
    after_help = EXAMPLES
)]
pub struct ExposedbArgs {
    /// Initialize/expose the database for external access
    #[arg(long)]
    init: bool,
    /// Add access rule to pg_hba.conf for the specified CIDR (repeatable)
    #[arg(long, value_name = "CIDR")]
    add: Vec<String>,
    /// Remove access rule from pg_hba.conf for the specified CIDR (repeatable)
    #[arg(long, value_name = "CIDR")]
    remove: Vec<String>,
    /// List all IP addresses currently allowed to access the database
    #[arg(long)]
    list: bool,
    /// PostgreSQL connection string (default: from knocknoc.conf)
    #[arg(long, value_name = "URI")]
    conn: Option<String>,
    /// Undo --init: drop the remote role, remove the block, restore listen_addresses
    #[arg(long)]
    deinit: bool,
    /// Say which pg_hba.conf line a connection from ADDR would hit, and why
    #[arg(long, value_name = "ADDR")]
    explain: Option<String>,
    /// Give the remote role a new password (with or without --init)
    #[arg(long)]
    rotate_password: bool,
    /// knocknoc.conf to read the application's connection string from
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/opt/knocknoc/etc/knocknoc.conf"
    )]
    config: PathBuf,
    /// Superuser connection string (default: peer login as `postgres` over the unix socket)
    #[arg(long, value_name = "URI")]
    admin_conn: Option<String>,
    /// Name of the remote role (default: <application role>_remote)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// listen_addresses entries to add with --init (default: 0.0.0.0)
    #[arg(long, value_name = "ADDRS")]
    listen: Option<String>,
    /// Host name or address secondaries use to reach this server
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
    /// Number of web nodes expected (for the max_connections check)
    #[arg(long, value_name = "N", default_value_t = 3)]
    nodes: u32,
    /// Do not restart PostgreSQL; print the command instead
    #[arg(long)]
    no_restart: bool,
    /// With --remove: end sessions already open from the removed CIDRs
    #[arg(long)]
    terminate: bool,
    /// Print what would change (unified diff and SQL); change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object ("version": 1)
    #[arg(long)]
    json: bool,
    /// Do not ask for confirmation before restarting PostgreSQL
    #[arg(long, short = 'y')]
    yes: bool,
    /// Allow 0.0.0.0/0 and ::/0, override an operator's reject, adopt an unmarked role, edit a managed file
    #[arg(long)]
    force: bool,
}

/// Which action was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Init,
    Deinit,
    Change { add: Vec<IpNet>, remove: Vec<IpNet> },
    List,
    Explain(std::net::IpAddr),
}

fn action(args: &ExposedbArgs) -> Result<Option<Action>, Failure> {
    let mut chosen = Vec::new();
    if args.init {
        chosen.push("--init");
    }
    if args.deinit {
        chosen.push("--deinit");
    }
    if !args.add.is_empty() || !args.remove.is_empty() {
        chosen.push("--add/--remove");
    }
    if args.list {
        chosen.push("--list");
    }
    if args.explain.is_some() {
        chosen.push("--explain");
    }
    if args.rotate_password && !args.init {
        chosen.push("--rotate-password");
    }
    if chosen.len() > 1 {
        return Err(Failure::usage(format!(
            "choose one action, not {}",
            chosen.join(" and ")
        )));
    }
    check_names(args)?;
    if args.terminate && args.remove.is_empty() {
        return Err(Failure::usage("--terminate goes with --remove CIDR"));
    }
    let cidrs = |list: &[String]| {
        list.iter()
            .map(|a| cidr::parse_cidr(a, args.force).map_err(|e| Failure::usage(e.0)))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Some(if args.init || args.rotate_password {
        Action::Init
    } else if args.deinit {
        Action::Deinit
    } else if !args.add.is_empty() || !args.remove.is_empty() {
        let (add, remove) = (cidrs(&args.add)?, cidrs(&args.remove)?);
        if let Some(both) = add.iter().find(|n| remove.contains(n)) {
            return Err(Failure::usage(format!("{both} is both added and removed")));
        }
        Action::Change { add, remove }
    } else if args.list {
        Action::List
    } else if let Some(addr) = &args.explain {
        let net = cidr::parse_cidr(addr, true).map_err(|e| Failure::usage(e.0))?;
        if net.prefix_len() != net.max_prefix_len() {
            return Err(Failure::usage(format!(
                "--explain takes one address, not the network {net}"
            )));
        }
        Action::Explain(net.addr())
    } else {
        return Ok(None);
    }))
}

/// Check `--user`, `--listen` and `--advertise` before anything is touched.
/// `--user` takes any role name PostgreSQL would keep as given (not empty,
/// at most 63 bytes, no NUL) that pg_hba.conf can hold (no line break).
fn check_names(args: &ExposedbArgs) -> Result<(), Failure> {
    if let Some(u) = &args.user {
        // Any name PostgreSQL keeps as given; it is quoted in SQL, in
        // pg_hba.conf and percent-encoded in the printed URI.
        pgctl::roles::validate_name("role", u)
            .map_err(|e| Failure::usage(format!("--user: {e}")))?;
        if u.contains(['\n', '\r']) {
            return Err(Failure::usage(format!(
                "--user: {u:?} contains a line break, which pg_hba.conf cannot hold"
            )));
        }
    }
    if let Some(h) = &args.advertise {
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !ok {
            return Err(Failure::usage(format!(
                "--advertise: {h:?} is not a host name or IP address"
            )));
        }
    }
    init::listen_additions(args).map(|_| ())
}

/// Run `knocker exposedb`; returns the exit code.
pub fn run(args: &ExposedbArgs) -> ExitCode {
    let mut out = Out::new(args.json);
    let result = match action(args) {
        Ok(None) => {
            println!("{ABOUT}\n\nUsage: {REFERENCE_USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(action)) => {
            out.set("action", action_name(&action));
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(execute(args, action, &mut out)),
                Err(e) => Err(Failure::failed(format!("cannot start the runtime: {e}"))),
            }
        }
        Err(e) => Err(e),
    };
    out.finish(result)
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Init => "init",
        Action::Deinit => "deinit",
        Action::Change { .. } => "change",
        Action::List => "list",
        Action::Explain(_) => "explain",
    }
}

async fn execute(args: &ExposedbArgs, action: Action, out: &mut Out) -> Result<(), Failure> {
    let app = target::AppConn::load(args)?;
    let mut admin = target::Admin::connect(args, &app).await?;
    match action {
        Action::Init => init::init(args, &app, &mut admin, out).await,
        Action::Deinit => init::deinit(args, &app, &mut admin, out).await,
        Action::Change { add, remove } => change(args, &app, &mut admin, &add, &remove, out).await,
        Action::List => list(args, &app, &admin, out),
        Action::Explain(addr) => explain(args, &app, &admin, addr, out).await,
    }
}

/// The scope of the block's rules on this server.
fn scope(args: &ExposedbArgs, app: &target::AppConn, admin: &target::Admin) -> Scope {
    Scope {
        database: app.database.clone(),
        user: app.remote_role(args),
        hostssl: admin.facts.ssl,
    }
}

fn version(admin: &target::Admin) -> Result<PgVersion, Failure> {
    PgVersion::new(admin.facts.major())
        .map_err(|e| Failure::failed(format!("unsupported server version: {e}")))
}

fn read_hba(admin: &target::Admin) -> Result<(PathBuf, Vec<u8>), Failure> {
    let path = admin.hba_path()?;
    let bytes = std::fs::read(&path)
        .map_err(|e| Failure::failed(format!("cannot read {}: {e}", path.display())))?;
    Ok((path, bytes))
}

fn net_strings(nets: &[IpNet]) -> Vec<String> {
    nets.iter().map(|n| n.to_string()).collect()
}

/// Who is making the change, for the rule's comment.
pub(crate) fn rule_comment() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let who: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        .take(64)
        .collect();
    format!("added {} by {who}", output::utc_now())
}

/// Where an operator's line is, for messages: `pg_hba.conf line N`, or
/// `FILE line N (included from pg_hba.conf)`.
fn line_place(line: &exposedb_block::EarlierLine) -> String {
    if line.included {
        format!(
            "{} line {} (included from pg_hba.conf)",
            line.file, line.line_number
        )
    } else {
        format!("pg_hba.conf line {}", line.line_number)
    }
}

/// The top pg_hba.conf at `path` for [`exposedb_block`]; included files
/// are read from disk with [`pghba::FsLoader`], relative to it.
fn hba_file<'a>(path: &'a str, text: &'a [u8], version: PgVersion) -> exposedb_block::HbaFile<'a> {
    exposedb_block::HbaFile {
        path,
        text,
        version,
    }
}

fn plan_error(e: PlanError) -> Failure {
    match e {
        PlanError::RejectedBy { net, line } => Failure::failed(format!(
            "{} rejects connections from part of {net} before the knocker block:\n  {}\n\
             The operator's reject wins: narrow the CIDR, change that line, or add --force.",
            line_place(&line),
            line.text
        )),
        other => Failure::failed(format!("pg_hba.conf: {other}")),
    }
}

async fn change(
    args: &ExposedbArgs,
    app: &target::AppConn,
    admin: &mut target::Admin,
    add: &[IpNet],
    remove: &[IpNet],
    out: &mut Out,
) -> Result<(), Failure> {
    admin.check_hba_owner(args.force)?;
    let scope = scope(args, app, admin);
    let version = version(admin)?;
    let (path, old) = read_hba(admin)?;
    let comment = rule_comment();
    let path_str = path.to_string_lossy().into_owned();
    let planned = exposedb_block::plan(
        &hba_file(&path_str, &old, version),
        &mut pghba::FsLoader,
        &scope,
        add,
        remove,
        &comment,
        args.force,
    )
    .map_err(plan_error)?;
    for (net, line) in &planned.shadowed_by {
        let how = if line.rejects { "rejects" } else { "decides" };
        let place = if line.included {
            format!("{}:{}", line.file, line.line_number)
        } else {
            format!("line {}", line.line_number)
        };
        out.warn(format!(
            "{place} comes first and {how} {} connections from {net}: {}",
            if line.covers_all { "all" } else { "some" },
            line.text
        ));
    }
    for net in add.iter().chain(remove) {
        if net.addr().is_ipv6() && !admin.listens_on_ipv6() {
            out.warn(format!(
                "{net} is IPv6 but the server does not listen on IPv6 (listen_addresses = '{}')",
                admin.facts.listen_addresses
            ));
        }
    }
    out.set("hba_file", path.display().to_string());
    out.set("added", net_strings(&planned.added));
    out.set("already_present", net_strings(&planned.already_present));
    out.set("removed", net_strings(&planned.removed));
    out.set("absent", net_strings(&planned.absent));
    for n in &planned.already_present {
        out.say(format!("{n} is already allowed; nothing to add."));
    }
    for n in &planned.absent {
        out.say(format!("{n} is not in the list; nothing to remove."));
    }
    if args.dry_run {
        let d = knocker_ops::diff::unified(&path.display().to_string(), &old, &planned.new_text);
        let mut sql = Vec::new();
        if planned.changed() {
            sql.push(init::RELOAD_SQL.to_string());
        }
        if args.terminate {
            sql.extend(
                planned
                    .removed
                    .iter()
                    .map(|n| pgctl::roles::terminate_sessions_from_sql(n, Some(&scope.user))),
            );
        }
        init::print_dry_run(out, &d, &sql, &[]);
        return Ok(());
    }
    let changed = if planned.changed() {
        let force = args.force;
        let scope2 = scope.clone();
        let (add2, remove2) = (add.to_vec(), remove.to_vec());
        // Unchanged under the lock (the usual case): the plan above holds,
        // so skip a second whole-file parse and check (cargo xtask bench exposedb).
        let planned_text = planned.new_text.clone();
        admin
            .install_hba(&path, move |current: &[u8]| {
                if current == old.as_slice() {
                    return Ok(planned_text);
                }
                exposedb_block::plan(
                    &hba_file(&path_str, current, version),
                    &mut pghba::FsLoader,
                    &scope2,
                    &add2,
                    &remove2,
                    &comment,
                    force,
                )
                .map(|c| c.new_text)
            })
            .await?
    } else {
        false
    };
    out.set("changed", changed);
    for n in &planned.added {
        out.say(format!(
            "Allowed {n} to connect to database {} as {} ({}, scram-sha-256).",
            scope.database,
            scope.user,
            if scope.hostssl { "hostssl" } else { "host" }
        ));
    }
    for n in &planned.removed {
        out.say(format!("Removed {n}."));
    }
    if changed {
        out.say(format!("{} updated and reloaded.", path.display()));
    }
    if args.terminate && !planned.removed.is_empty() {
        let mut ended = 0;
        for n in &planned.removed {
            ended += pgctl::roles::terminate_sessions_from(admin.client(), n, Some(&scope.user))
                .await
                .map_err(|e| Failure::failed(format!("ending sessions from {n}: {e}")))?;
        }
        out.set("terminated_sessions", ended);
        out.say(format!(
            "Ended {ended} open session(s) from the removed CIDRs."
        ));
    }
    Ok(())
}

fn list(
    args: &ExposedbArgs,
    app: &target::AppConn,
    admin: &target::Admin,
    out: &mut Out,
) -> Result<(), Failure> {
    let version = version(admin)?;
    let (path, bytes) = read_hba(admin)?;
    let doc = HbaDocument::parse_for(&bytes, version);
    let rules = exposedb_block::list(&doc, version)
        .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))?;
    let scope = scope(args, app, admin);
    out.set("hba_file", path.display().to_string());
    out.set(
        "cidrs",
        rules.iter().map(|r| r.net.to_string()).collect::<Vec<_>>(),
    );
    out.set(
        "rules",
        rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "cidr": r.net.to_string(),
                    "line": r.line_number,
                    "type": r.connection_type.as_str(),
                    "databases": r.databases,
                    "users": r.users,
                    "comment": r.comment,
                })
            })
            .collect::<Vec<_>>(),
    );
    if !out.json() {
        if rules.is_empty() {
            eprintln!(
                "No CIDR is allowed yet{}; add one with: knocker exposedb --add CIDR",
                if doc
                    .find_block(exposedb_block::BEGIN_MARKER, exposedb_block::END_MARKER)
                    .ok()
                    .flatten()
                    .is_none()
                {
                    " (no knocker block in pg_hba.conf; run knocker exposedb --init)"
                } else {
                    ""
                }
            );
        }
        for r in &rules {
            println!("{}", r.net);
        }
    }
    let _ = scope;
    Ok(())
}

/// Membership answers for `--explain`: whether the remote role belongs to
/// each role the file names (`+group`, and the database for `samerole`),
/// as the server's hba.c `is_member()` decides it.
struct Membership {
    user: String,
    member_of: std::collections::HashMap<String, bool>,
}

impl pghba::matcher::MatchContext for Membership {
    fn is_member(&self, user: &str, role: &str) -> Option<bool> {
        if user != self.user {
            return None;
        }
        self.member_of.get(role).copied()
    }
}

/// The roles `rules` asks membership of for a connection to `database`:
/// `+group` user names, and the database name when a rule says
/// `samerole`/`samegroup`.
fn roles_asked(rules: &pghba::matcher::RuleSet, database: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &rules.rules {
        for t in &r.rule.users {
            if let Some(g) = t.member_of() {
                out.push(g.to_string());
            }
        }
        if r.rule
            .databases
            .iter()
            .any(|t| t.is_keyword("samerole") || t.is_keyword("samegroup"))
        {
            out.push(database.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Which of `roles` the role `user` belongs to, the way hba.c's
/// `is_member()` asks (`is_member_of_role_nosuper()`): every role reachable
/// through `pg_auth_members` grants, itself included, whatever the grants'
/// INHERIT/SET options, and no superuser bypass (unlike `pg_has_role`).
/// A role that does not exist is no member of anything.
async fn membership(
    client: &tokio_postgres::Client,
    user: &str,
    roles: Vec<String>,
) -> Result<Membership, Failure> {
    let mut member_of: std::collections::HashMap<String, bool> =
        roles.iter().map(|r| (r.clone(), false)).collect();
    if !roles.is_empty() {
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
            .map_err(|e| Failure::failed(format!("reading role memberships: {e}")))?;
        for row in rows {
            member_of.insert(row.get(0), true);
        }
    }
    Ok(Membership {
        user: user.to_string(),
        member_of,
    })
}

async fn explain(
    args: &ExposedbArgs,
    app: &target::AppConn,
    admin: &target::Admin,
    addr: std::net::IpAddr,
    out: &mut Out,
) -> Result<(), Failure> {
    let version = version(admin)?;
    let (path, bytes) = read_hba(admin)?;
    let scope = scope(args, app, admin);
    let path_str = path.to_string_lossy().into_owned();
    let rules = exposedb_block::rule_set(
        &hba_file(&path_str, &bytes, version),
        &mut pghba::FsLoader,
        scope.hostssl,
    );
    let ctx = membership(
        admin.client(),
        &scope.user,
        roles_asked(&rules, &scope.database),
    )
    .await?;
    let m = rules.first_match(&exposedb_block::connection(&scope, addr), &ctx);
    // Line texts, each file parsed once (included files read again).
    let mut docs: std::collections::HashMap<String, HbaDocument> = std::collections::HashMap::new();
    docs.insert(path_str.clone(), HbaDocument::parse_for(&bytes, version));
    let mut text_of = |file: &str, line: u32| {
        docs.entry(file.to_string())
            .or_insert_with(|| {
                HbaDocument::parse_for(&std::fs::read(file).unwrap_or_default(), version)
            })
            .lines()
            .iter()
            .find(|l| l.line_number() == line)
            .map(|l| String::from_utf8_lossy(l.content()).trim_end().to_string())
            .unwrap_or_default()
    };
    // `line N` in the top file, `FILE:N` in an included one.
    let place = |file: &str, line: u32| {
        if file == path_str {
            format!("line {line}")
        } else {
            format!("{file}:{line}")
        }
    };
    out.set("hba_file", path.display().to_string());
    out.set("address", addr.to_string());
    out.set("database", scope.database.clone());
    out.set("user", scope.user.clone());
    out.set("ssl", scope.hostssl);
    out.set("certain", m.certain);
    out.set(
        "maybe",
        m.maybe
            .iter()
            .map(|&i| {
                let r = &rules.rules[i];
                serde_json::json!({"file": r.file, "line": r.line, "text": text_of(&r.file, r.line)})
            })
            .collect::<Vec<_>>(),
    );
    let mut steps = Vec::new();
    let mut said = Vec::new();
    for step in &m.steps {
        let r = &rules.rules[step.index];
        let (line, at) = (r.line, place(&r.file, r.line));
        let (outcome, why) = match &step.outcome {
            RuleOutcome::Matches => ("matches", String::new()),
            RuleOutcome::NoMatch(r) => ("no match", r.to_string()),
            RuleOutcome::Unknown(rs) => (
                "may match",
                rs.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        steps.push(
            serde_json::json!({"file": r.file, "line": line, "outcome": outcome, "why": why}),
        );
        match &step.outcome {
            RuleOutcome::Matches => {}
            RuleOutcome::NoMatch(_) => said.push(format!("  {at}: passed over ({why})")),
            RuleOutcome::Unknown(_) => said.push(format!(
                "  {at}: may match first, it cannot be decided offline ({why}): {}",
                text_of(&r.file, line)
            )),
        }
    }
    out.set("steps", steps);
    let head = format!(
        "A connection from {addr} to database {} as {}{}",
        scope.database,
        scope.user,
        if scope.hostssl { " over SSL" } else { "" }
    );
    match m.rule() {
        Some(hit) => {
            let (n, t, method) = (hit.line, text_of(&hit.file, hit.line), hit.rule.method);
            out.set("file", hit.file.clone());
            out.set("line", n);
            out.set("text", t.clone());
            out.set("method", method.as_str());
            out.set("allowed", method != pghba::AuthMethod::Reject);
            let verdict = if method == pghba::AuthMethod::Reject {
                "is rejected".to_string()
            } else {
                format!("is admitted with {}", method.as_str())
            };
            out.say(format!(
                "{head} hits {}:{n} and {verdict}:\n  {t}",
                hit.file
            ));
        }
        None => {
            out.set("line", serde_json::Value::Null);
            out.set("allowed", false);
            out.say(format!(
                "{head} matches no line of {} and is refused (\"no pg_hba.conf entry\"). \
                 Allow it with: knocker exposedb --add {addr}",
                path.display()
            ));
        }
    }
    if !said.is_empty() {
        out.say(format!("Earlier lines, in order:\n{}", said.join("\n")));
    }
    Ok(())
}
