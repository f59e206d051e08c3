//! What every knocker command prints when it fails, how it prints one JSON
//! object, and how it asks a question: one place, so that the commands
//! agree (docs/ARCHITECTURE.md, "Errors").

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use knocker_ops::{Error, ErrorKind};
use serde::Serialize;
use serde_json::{Map, Value};

/// The exit status of a failure: 2 bad usage or input, 1 failed or refused.
pub(crate) fn exit_code(e: &Error) -> ExitCode {
    ExitCode::from(match e.kind() {
        ErrorKind::Usage => 2,
        _ => 1,
    })
}

/// The flag that passes an overridable refusal, said once, here.
pub(crate) fn force_hint(e: &Error) -> Option<&'static str> {
    matches!(e.kind(), ErrorKind::Refused { overridable: true })
        .then_some("Add --force to do it anyway.")
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Usage => "usage",
        ErrorKind::Refused { .. } => "refused",
        ErrorKind::Failed => "failed",
    }
}

/// The error and its causes, `message: cause: cause`, leaving out a cause
/// whose text the line already holds (many errors repeat their source).
fn error_text(e: &Error) -> String {
    let mut text = e.to_string();
    for cause in e.causes() {
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The `"error"` member of a failed run's JSON object:
/// `{"kind", "message", "causes"}`, `"note"` when the failure leaves a
/// state to know about, and `"hint"` for an overridable refusal.
pub(crate) fn error_json(e: &Error) -> Value {
    let mut error = serde_json::json!({
        "kind": kind_name(e.kind()),
        "message": e.to_string(),
        "causes": e.causes(),
    });
    if let Some(n) = e.note() {
        error["note"] = Value::from(n);
    }
    if let Some(h) = force_hint(e) {
        error["hint"] = Value::from(h);
    }
    error
}

/// Prints a failure's text on stderr: the error with its causes, then the
/// note about the state it leaves and the `--force` hint, each once.
pub(crate) fn print_failure(command: &str, e: &Error) {
    eprintln!("knocker {command}: {}", error_text(e));
    if let Some(n) = e.note() {
        eprintln!("{n}");
    }
    if let Some(h) = force_hint(e) {
        eprintln!("{h}");
    }
}

/// Prints a failure of `knocker COMMAND` (the text on stderr; with `json`
/// also `{"version": 1, "ok": false, "error": {...}}` on stdout) and
/// returns its exit status.
pub(crate) fn fail(command: &str, e: &Error, json: bool) -> ExitCode {
    print_failure(command, e);
    if json {
        let mut fields = Map::new();
        fields.insert("version".into(), Value::from(1));
        fields.insert("ok".into(), Value::from(false));
        fields.insert("error".into(), error_json(e));
        println!("{}", Value::Object(fields));
    }
    exit_code(e)
}

/// Prints `report` as one JSON object with `"version": 1` and
/// `"ok": true`, plus `extra` members.
pub(crate) fn print_json(report: &impl Serialize, extra: &[(&str, Value)]) {
    let mut fields = Map::new();
    fields.insert("version".into(), Value::from(1));
    if let Ok(Value::Object(m)) = serde_json::to_value(report) {
        fields.extend(m);
    }
    fields.insert("ok".into(), Value::from(true));
    for (k, v) in extra {
        fields.insert((*k).into(), v.clone());
    }
    println!("{}", Value::Object(fields));
}

/// Prints a run's report, as one JSON object with `extra` members (see
/// [`print_json`]) when `json`, else with `text`; returns exit status 0.
pub(crate) fn print_report<R: Serialize>(
    report: &R,
    json: bool,
    extra: &[(&str, Value)],
    text: impl FnOnce(&R),
) -> ExitCode {
    if json {
        print_json(report, extra);
    } else {
        text(report);
    }
    ExitCode::SUCCESS
}

/// Asks `question` on the terminal (answered on stdin, `y` or `yes`).
/// Off a terminal nobody can answer, so the answer is `off_terminal`.
pub(crate) fn confirm(question: &str, off_terminal: bool) -> bool {
    if !std::io::stdin().is_terminal() {
        return off_terminal;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES")
}

/// Runs `future` to its end on a single-threaded runtime.
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed("cannot start the runtime").with_source(e))?
        .block_on(future)
}
