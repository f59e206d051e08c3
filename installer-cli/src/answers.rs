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

    let url = settle(args, term, option, url_flag, current.url.as_ref())?;

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

/// Reads a connection string: the flag/file/environment value, else the
/// prompt (empty = `default`, or the last string tried, to retry).
fn next_url(
    term: &mut Term,
    prompt: &str,
    given: &mut Option<String>,
    default: Option<&str>,
) -> Result<String, Abort> {
    if let Some(url) = given.take() {
        return Ok(url);
    }
    if !term.can_prompt() {
        return default.map(str::to_owned).ok_or_else(|| {
            Abort::Usage(
                "no connection string given (--db-url, --db-url-file or KNOCKNOC_DB_URL)".into(),
            )
        });
    }
    loop {
        let answer = term.ask(prompt).ok_or(Abort::EndOfInput)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
        if let Some(d) = default {
            return Ok(d.to_owned());
        }
        term.problem(
            "A connection string is required, e.g. postgres://USER:PASSWORD@HOST:5432/knocknoc",
        );
    }
}

/// Runs the chosen option to the end and gives the connection string to
/// store. Interactive: every failure is explained and the prompt comes back
/// (an empty answer retries the same string). Otherwise the first failure
/// ends the run.
pub fn settle(
    args: &Args,
    term: &mut Term,
    option: DbOption,
    mut given: Option<String>,
    current: Option<&DatabaseUrl>,
) -> Result<DatabaseUrl, Abort> {
    let interactive_retry = term.can_prompt();
    let rt = database::runtime();
    match option {
        DbOption::Local => {
            if given.is_some() {
                return Err(Abort::Usage(
                    "option 1 creates its own connection string: --db-url is for options 2 and 3"
                        .into(),
                ));
            }
            rt.block_on(database::local(args, term, current))
        }
        DbOption::ExistingExternal | DbOption::NewExternal => {
            let prompt = if option == DbOption::ExistingExternal {
                PROMPT_EXISTING_URL
            } else {
                PROMPT_NEW_URL
            };
            let mut default = if option == DbOption::ExistingExternal {
                current.map(|u| u.expose_secret().to_owned())
            } else {
                None
            };
            loop {
                let from_flag = given.is_some();
                let url = next_url(term, prompt, &mut given, default.as_deref())?;
                let fail = |term: &Term, reason: String, usage: bool| -> Result<(), Abort> {
                    if interactive_retry && !from_flag {
                        term.problem(&reason);
                        term.say("Press Enter to retry with the same connection string, or enter another one.");
                        Ok(())
                    } else if usage {
                        Err(Abort::Usage(reason))
                    } else {
                        Err(Abort::Check(reason))
                    }
                };
                let params = match database::resolve(&url) {
                    Ok(p) => p,
                    Err(reason) => {
                        fail(term, reason, true)?;
                        default = None;
                        continue;
                    }
                };
                let stored =
                    DatabaseUrl::new(url.clone()).map_err(|e| Abort::Usage(e.to_string()))?;
                term.say(&format!("Checking {stored} ..."));
                default = Some(url.clone());
                if option == DbOption::ExistingExternal {
                    match rt.block_on(database::check_existing(term, &params, args.bind_source)) {
                        Ok(()) => return Ok(stored),
                        Err(reason) => fail(term, reason, false)?,
                    }
                    continue;
                }
                match rt.block_on(database::check_new(term, &params, args.bind_source)) {
                    Ok(database::NewDbCheck::Empty) => return Ok(stored),
                    Ok(database::NewDbCheck::HasTables(names)) => {
                        let list = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                        let more = if names.len() > 5 { ", ..." } else { "" };
                        let what = format!(
                            "Database \"{}\" already holds {} table(s) ({list}{more}): it may belong to another application.",
                            params.dbname,
                            names.len()
                        );
                        if args.allow_nonempty {
                            term.problem(&format!("{what} Using it anyway (--allow-nonempty)."));
                            return Ok(stored);
                        }
                        if !term.can_prompt() {
                            return Err(Abort::Usage(format!(
                                "{what} Refusing it (--allow-nonempty to accept)."
                            )));
                        }
                        term.problem(&what);
                        let answer = term
                            .ask("Use it anyway? [y/N]: ")
                            .ok_or(Abort::EndOfInput)?;
                        if answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes") {
                            return Ok(stored);
                        }
                        default = None;
                        if from_flag {
                            return Err(Abort::Usage(format!("{what} Not confirmed.")));
                        }
                    }
                    Err(reason) => fail(term, reason, false)?,
                }
            }
        }
    }
}
