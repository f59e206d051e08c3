//! The dialogue (the reference installer dialogue): four questions in a fixed order, each
//! answered by a flag, by the operator, or by its default; then the database
//! check; then one atomic write of knocknoc.conf.

use std::path::Path;

use knocknoc_conf::{DatabaseUrl, Document, Listen, TrustedForwarders};

use crate::database::{self, DbOption};
use crate::ui::Term;
use crate::{Abort, Args};

/// The four prompts: interface, matched by automation, byte for byte.
pub const PROMPT_LISTEN_PREFIX: &str = "Enter IP and port to listen on (default: ";
/// Prefix of the second prompt.
pub const PROMPT_FORWARDERS_PREFIX: &str = "Enter TrustedForwarders (default: ";
/// Prefix of the third prompt.
pub const PROMPT_OPTION_PREFIX: &str = "Option 1, 2, or 3? (default is ";
/// The fourth prompt (option 3).
pub const PROMPT_EXISTING_URL: &str =
    "Enter pre-existing external Knocknoc database connection string: ";
/// The prompt of option 2.
pub const PROMPT_NEW_URL: &str = "Enter new external PostgreSQL database connection string: ";

/// Where the answers' defaults come from.
struct Current {
    doc: Document,
    exists: bool,
    listen: Listen,
    forwarders: TrustedForwarders,
    url: Option<DatabaseUrl>,
}

fn load_current(path: &Path, term: &Term) -> Result<Current, Abort> {
    let (doc, exists) = match Document::load(path) {
        Ok(doc) => (doc, true),
        Err(e) if e.is_not_found() => (Document::new(), false),
        Err(e) => return Err(Abort::Check(format!("cannot read {}: {e}", path.display()))),
    };
    let (settings, errors) = doc.settings_and_errors();
    for e in &errors {
        term.problem(&format!(
            "warning: {}: {e} (the built-in default is offered instead)",
            path.display()
        ));
    }
    Ok(Current {
        exists,
        listen: settings.listen.unwrap_or_default(),
        forwarders: settings.trusted_forwarders.unwrap_or_default(),
        url: settings.database_url,
        doc,
    })
}

/// Asks `prompt` until `parse` accepts the answer (empty = `default`).
/// A flag's value is checked once: a bad one ends the run with exit 2.
fn question<T>(
    term: &mut Term,
    flag: Option<&str>,
    flag_name: &str,
    prompt: &str,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, Abort> {
    if let Some(value) = flag {
        return parse(value.trim()).map_err(|e| Abort::Usage(format!("{flag_name}: {e}")));
    }
    if !term.can_prompt() {
        return Ok(default);
    }
    loop {
        let answer = term.ask(prompt).ok_or(Abort::EndOfInput)?;
        if answer.is_empty() {
            return Ok(default);
        }
        match parse(&answer) {
            Ok(v) => return Ok(v),
            Err(e) => term.problem(&e),
        }
    }
}

/// The database option to offer by default: the one matching the current
/// DatabaseURL (see [`database::option_for_url`]), 1 on a fresh host.
fn default_option(current: &Current) -> DbOption {
    current
        .url
        .as_ref()
        .map(database::option_for_url)
        .unwrap_or(DbOption::Local)
}

/// The whole run.
pub fn run(args: &Args, term: &mut Term) -> Result<(), Abort> {
    let url_flag = database::url_from_args(args)?;
    term.heading("Knocknoc installer");
    let current = load_current(&args.config, term)?;
    if current.exists {
        term.say(&format!(
            "Existing configuration detected in {}: its values are the defaults.",
            args.config.display()
        ));
    } else {
        term.say(&format!(
            "No existing configuration at {}: starting fresh.",
            args.config.display()
        ));
    }

    let listen = question(
        term,
        args.listen.as_deref(),
        "--listen",
        &format!("{PROMPT_LISTEN_PREFIX}{}): ", current.listen),
        current.listen,
        |s| {
            s.parse::<Listen>()
                .map_err(|e| format!("Not a valid IP:port ({s:?}): {e}"))
        },
    )?;

    term.say(
        "If Knocknoc sits behind reverse proxies or load balancers, list their addresses\n\
         so that the client address they forward (X-Forwarded-For) is trusted; only\n\
         those sources are believed. Comma-separated CIDRs, e.g. 10.0.0.0/24, 192.0.2.10/32.",
    );
    let forwarders = question(
        term,
        args.trusted_forwarders.as_deref(),
        "--trusted-forwarders",
        &format!("{PROMPT_FORWARDERS_PREFIX}{}): ", current.forwarders),
        current.forwarders.clone(),
        |s| {
            s.parse::<TrustedForwarders>()
                .map_err(|e| format!("Not a valid CIDR list: {e}"))
        },
    )?;

    let default = default_option(&current);
    term.say("Database:");
    term.say("  1. use a local PostgreSQL installation");
    term.say("  2. use a new external or preconfigured PostgreSQL database");
    term.say("  3. this server is a web node only, use a pre-existing external Knocknoc database");
    let option = question(
        term,
        args.db_option.as_deref(),
        "--db-option",
        &format!("{PROMPT_OPTION_PREFIX}{}): ", default.number()),
        default,
        |s| DbOption::parse(s).ok_or_else(|| format!("{s:?} is not an option: answer 1, 2 or 3")),
    )?;

    let url = database::settle(args, term, option, url_flag, current.url.as_ref())?;

    let mut doc = current.doc;
    let edit =
        |e: knocknoc_conf::EditError| Abort::Check(format!("cannot edit the configuration: {e}"));
    doc.set_listen(listen).map_err(edit)?;
    doc.set_trusted_forwarders(&forwarders).map_err(edit)?;
    doc.set_database_url(&url).map_err(edit)?;
    if let Some(dir) = args.config.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Abort::Check(format!("cannot create {}: {e}", dir.display())))?;
    }
    tighten_mode(&args.config, term)?;
    doc.save(&args.config)
        .map_err(|e| Abort::Check(format!("cannot write {}: {e}", args.config.display())))?;
    term.ok(&format!("Wrote {}:", args.config.display()));
    term.say(&format!("  Listen = {listen}"));
    term.say(&format!("  TrustedForwarders = {forwarders}"));
    term.say(&format!("  DatabaseURL = {url}"));
    Ok(())
}

/// The file holds a password: an existing file readable by group or others
/// is narrowed to its owner before the new content goes in (the save keeps
/// the mode it finds).
fn tighten_mode(path: &Path, term: &Term) -> Result<(), Abort> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let narrowed = mode & 0o700;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(narrowed))
        .map_err(|e| Abort::Check(format!("cannot restrict {}: {e}", path.display())))?;
    term.say(&format!(
        "Restricted {} from mode {mode:04o} to {narrowed:04o}: it holds the database password.",
        path.display()
    ));
    Ok(())
}
