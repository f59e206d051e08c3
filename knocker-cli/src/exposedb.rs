//! `knocker exposedb`: arguments to [`knocker_ops::exposedb::Options`],
//! reports to text or JSON, errors to exit codes (docs/ARCHITECTURE.md).
//! The operations live in `knocker_ops::exposedb`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use knocker_ops::exposedb::{
    self as ops, Action, ChangePlan, ChangeReport, DeinitPlan, DeinitReport, DryRun, ExplainReport,
    InitPlan, InitReport, ListReport, Options, Report,
};
use knocker_ops::Error;
use serde_json::{Map, Value};

use crate::flags::{self, ConsentFlags, ReportFlags};
use crate::output;

/// The reference usage text (the reference command line), printed when no action is
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

/// What this command's shared flags (flags.rs) say in its help.
pub(crate) const OWN_HELP: flags::OwnHelp = &[
    ("dry_run", "Print what would change (unified diff and SQL); change nothing"),
    ("yes", "Do not ask for confirmation before restarting PostgreSQL"),
    ("force", "Allow 0.0.0.0/0 and ::/0, override an operator's reject, adopt an unmarked role, edit a managed file"),
];

/// Arguments of `knocker exposedb`.
#[derive(Debug, Args)]
#[command(
    about = ABOUT,
    override_usage = "knocker exposedb [--init | --add <CIDR> | --remove <CIDR> | --list] [--conn URI]",
    after_help = EXAMPLES,
    mut_args(flags::own_help(OWN_HELP)),
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
        default_value = ops::DEFAULT_CONFIG
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
    #[command(flatten)]
    report: ReportFlags,
    #[command(flatten)]
    consent: ConsentFlags,
}

fn action(args: &ExposedbArgs) -> Result<Option<Action>, Error> {
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
        return Err(Error::usage(format!(
            "choose one action, not {}",
            chosen.join(" and ")
        )));
    }
    if args.terminate && args.remove.is_empty() {
        return Err(Error::usage("--terminate goes with --remove CIDR"));
    }
    let cidrs = |list: &[String]| {
        list.iter()
            .map(|a| ops::parse_cidr(a, args.consent.force).map_err(|e| Error::usage(e.0)))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Some(if args.init || args.rotate_password {
        Action::Init
    } else if args.deinit {
        Action::Deinit
    } else if !args.add.is_empty() || !args.remove.is_empty() {
        let (add, remove) = (cidrs(&args.add)?, cidrs(&args.remove)?);
        if let Some(both) = add.iter().find(|n| remove.contains(n)) {
            return Err(Error::usage(format!("{both} is both added and removed")));
        }
        Action::Change { add, remove }
    } else if args.list {
        Action::List
    } else if let Some(addr) = &args.explain {
        let net = ops::parse_cidr(addr, true).map_err(|e| Error::usage(e.0))?;
        if net.prefix_len() != net.max_prefix_len() {
            return Err(Error::usage(format!(
                "--explain takes one address, not the network {net}"
            )));
        }
        Action::Explain(net.addr())
    } else {
        return Ok(None);
    }))
}

/// The options the arguments ask for. The restart question goes to the
/// terminal unless `--yes` (or standard input is not a terminal).
fn options(args: &ExposedbArgs) -> Options {
    let listen = args
        .listen
        .as_deref()
        .unwrap_or("0.0.0.0")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let yes = args.consent.yes;
    let confirm_restart: ops::ConfirmRestart = Box::new(move |manager: &str| {
        eprintln!(
            "PostgreSQL will be restarted ({manager}) to change listen_addresses; \
             the Knocknoc web app on this host loses its database connections for a few seconds."
        );
        yes || output::confirm("Restart PostgreSQL now?", true)
    });
    Options {
        conn: args.conn.clone(),
        config: args.config.clone(),
        admin_conn: args.admin_conn.clone(),
        user: args.user.clone(),
        listen,
        advertise: args.advertise.clone(),
        nodes: args.nodes,
        rotate_password: args.rotate_password,
        no_restart: args.no_restart,
        confirm_restart: Some(confirm_restart),
        terminate: args.terminate,
        force: args.consent.force,
        events: Some(Arc::new(|e: &ops::Event| match e {
            ops::Event::WaitingForLock(text) => eprintln!("{text}"),
        })),
    }
}

/// Run `knocker exposedb`; returns the exit code.
pub fn run(args: &ExposedbArgs) -> ExitCode {
    let options = options(args);
    let action = match action(args).and_then(|a| options.check().map(|()| a)) {
        Ok(None) => {
            println!("{ABOUT}\n\nUsage: {REFERENCE_USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(action)) => action,
        Err(e) => return finish(args.report.json, None, Err(e)),
    };
    let name = action.name();
    let result = output::block_on(ops::run(options, action, args.report.dry_run));
    finish(args.report.json, Some(name), result)
}

/// Print the report (text or one JSON object) or the error, and choose the
/// exit code: 0 done, 1 failed or refused, 2 bad usage or input.
fn finish(json: bool, action: Option<&str>, result: Result<Report, Error>) -> ExitCode {
    let mut fields = Map::new();
    fields.insert("version".into(), Value::from(1));
    if let Some(a) = action {
        fields.insert("action".into(), Value::from(a));
    }
    let code = match &result {
        Ok(report) => {
            if json {
                if let Ok(Value::Object(m)) = serde_json::to_value(report) {
                    fields.extend(m);
                }
            } else {
                for w in report.warnings() {
                    eprintln!("warning: {w}");
                }
                print_text(report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::print_failure("exposedb", e);
            fields.insert("error".into(), output::error_json(e));
            output::exit_code(e)
        }
    };
    if json {
        let warnings = result
            .as_ref()
            .map(|r| r.warnings().to_vec())
            .unwrap_or_default();
        fields.insert("ok".into(), Value::from(result.is_ok()));
        fields.insert("warnings".into(), Value::from(warnings));
        println!("{}", Value::Object(fields));
    }
    code
}

fn print_text(report: &Report) {
    match report {
        Report::InitPlan(p) => print_init_plan(p),
        Report::Init(r) => print_init(r),
        Report::DeinitPlan(p) => print_deinit_plan(p),
        Report::Deinit(r) => print_deinit(r),
        Report::ChangePlan(p) => {
            print_change_head(p);
            print_dry_run(&p.dry_run);
        }
        Report::Change(r) => print_change(r),
        Report::List(r) => print_list(r),
        Report::Explain(r) => print_explain(r),
    }
}

/// The `--dry-run` text: the diff, the SQL it would run, notes.
fn print_dry_run(d: &DryRun) {
    println!("Dry run: nothing changed.");
    if d.diff.is_empty() {
        println!("pg_hba.conf would not change.");
    } else {
        println!(
            "pg_hba.conf would change like this:\n{}",
            d.diff.trim_end_matches('\n')
        );
    }
    if d.sql.is_empty() {
        println!("No SQL would run.");
    } else {
        println!("SQL it would run:");
        for s in &d.sql {
            println!("  {s};");
        }
    }
    for n in &d.notes {
        println!("{n}");
    }
}

fn print_init_plan(p: &InitPlan) {
    print_dry_run(&p.dry_run);
}

fn print_deinit_plan(p: &DeinitPlan) {
    print_dry_run(&p.dry_run);
}

/// How a change of listen_addresses takes effect.
fn restart_note(restart: Option<&ops::RestartReport>) -> &'static str {
    if restart.is_some_and(|r| r.restarted) {
        " (PostgreSQL restarted)"
    } else {
        " (takes effect after a restart)"
    }
}

fn replica_copy_note(copy: Option<&std::path::PathBuf>) {
    if let Some(path) = copy {
        println!(
            "Refreshed {} (the copy of this block a standby takes with knocker replica --clone-from).",
            path.display()
        );
    }
}

fn print_init(r: &InitReport) {
    let t = &r.target;
    match &r.connection_string {
        Some(uri) => println!(
            "Connection string for the secondary web nodes (shown only now; keep it safe):\n\n  {uri}\n"
        ),
        None => println!(
            "Already set up: role {} exists (its password is not shown again; \
             --rotate-password sets a new one).",
            t.role
        ),
    }
    if !r.changed {
        println!("Nothing changed: listen_addresses, the role, its grants and the pg_hba.conf block were already in place.");
    } else {
        if matches!(
            r.role_outcome,
            ops::RoleOutcomeName::Created | ops::RoleOutcomeName::Adopted
        ) {
            println!(
                "Created login role {} (scram-sha-256), acting as {} in database {}.",
                t.role, r.owner, t.database
            );
        }
        if r.hba_changed {
            println!("Added the (empty) knocker block to {}.", t.hba_file);
        }
        replica_copy_note(r.replica_copy.as_ref());
        if r.listen_changed {
            println!(
                "listen_addresses = '{}'{}.",
                t.listen_addresses,
                restart_note(r.restart.as_ref())
            );
        }
    }
    println!(
        "Next: allow each secondary with: knocker exposedb --add \"ADDRESS/32\"\n\
         Firewall: open TCP port {} only to those addresses (e.g. ufw allow from ADDRESS to any port {0} proto tcp).",
        r.port
    );
    if let Some(cert) = &r.certificate {
        if cert.self_signed {
            println!(
                "The server certificate is self-signed; its SHA-256 fingerprint is\n  {}\n\
                 Secondaries connect with sslmode=require (encrypted, not verified). To verify it, \
                 save the certificate (the certificate_pem field of --json) and use sslrootcert=FILE with sslmode=verify-ca.",
                cert.sha256
            );
        } else if !r.verify_full {
            println!(
                "The server certificate is signed by a CA this host's trust store does not know \
                 (or does not name {}): secondaries connect with sslmode=require. To verify it, \
                 give them that CA's certificate as sslrootcert=FILE with sslmode=verify-full.",
                r.advertise
            );
        }
    }
}

fn print_deinit(r: &DeinitReport) {
    if r.hba_changed {
        println!("Removed the knocker block from {}.", r.hba_file);
    }
    if r.role_dropped {
        println!("Dropped role {}.", r.role);
    }
    if r.listen_changed {
        println!(
            "listen_addresses reset to '{}'{}.",
            r.listen_addresses,
            restart_note(r.restart.as_ref())
        );
    }
    if !r.hba_changed && !r.role_dropped && !r.listen_changed {
        println!(
            "Nothing to undo: no knocker block, no remote role, listen_addresses as configured."
        );
    }
    replica_copy_note(r.replica_copy.as_ref());
}

fn print_change_head(p: &ChangePlan) {
    for n in &p.already_present {
        println!("{n} is already allowed; nothing to add.");
    }
    for n in &p.absent {
        println!("{n} is not in the list; nothing to remove.");
    }
}

fn print_change(r: &ChangeReport) {
    let p = &r.plan;
    print_change_head(p);
    for n in &p.added {
        println!(
            "Allowed {n} to connect to database {} as {} ({}, scram-sha-256).",
            p.database,
            p.user,
            if p.hostssl { "hostssl" } else { "host" }
        );
    }
    for n in &p.removed {
        println!("Removed {n}.");
    }
    if r.changed {
        println!("{} updated and reloaded.", p.hba_file);
    }
    if let Some(ended) = r.terminated_sessions {
        println!("Ended {ended} open session(s) from the removed CIDRs.");
    }
    replica_copy_note(r.replica_copy.as_ref());
}

fn print_list(r: &ListReport) {
    if r.rules.is_empty() {
        eprintln!(
            "No CIDR is allowed yet{}; add one with: knocker exposedb --add CIDR",
            if r.has_block {
                ""
            } else {
                " (no knocker block in pg_hba.conf; run knocker exposedb --init)"
            }
        );
    }
    for c in &r.cidrs {
        println!("{c}");
    }
}

fn print_explain(r: &ExplainReport) {
    // `line N` in the top file, `FILE:N` in an included one.
    let place = |file: &str, line: u32| {
        if file == r.hba_file {
            format!("line {line}")
        } else {
            format!("{file}:{line}")
        }
    };
    let head = format!(
        "A connection from {} to database {} as {}{}",
        r.address,
        r.database,
        r.user,
        if r.ssl { " over SSL" } else { "" }
    );
    match &r.hit {
        Some(hit) => {
            let verdict = if hit.allowed {
                format!("is admitted with {}", hit.method)
            } else {
                "is rejected".to_string()
            };
            println!(
                "{head} hits {}:{} and {verdict}:\n  {}",
                hit.file, hit.line, hit.text
            );
        }
        None => println!(
            "{head} matches no line of {} and is refused (\"no pg_hba.conf entry\"). \
             Allow it with: knocker exposedb --add {}",
            r.hba_file, r.address
        ),
    }
    let said: Vec<String> = r
        .steps
        .iter()
        .filter_map(|s| {
            let at = place(&s.file, s.line);
            match s.outcome {
                "no match" => Some(format!("  {at}: passed over ({})", s.why)),
                "may match" => Some(format!(
                    "  {at}: may match first, it cannot be decided offline ({}): {}",
                    s.why, s.text
                )),
                _ => None,
            }
        })
        .collect();
    if !said.is_empty() {
        println!("Earlier lines, in order:\n{}", said.join("\n"));
    }
}
