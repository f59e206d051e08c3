//! Printing: plain text as the run goes, or one JSON object at the end;
//! failures with their exit code.

use std::process::ExitCode;

use serde_json::{Map, Value};

/// A failure and its exit code (1 failed, 2 bad usage or input).
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad usage or input: exit 2.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// The action failed: exit 1.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

/// Output of one run.
#[derive(Debug)]
pub struct Out {
    json: bool,
    fields: Map<String, Value>,
    warnings: Vec<String>,
}

impl Out {
    /// Text (`json` false) or JSON output.
    pub fn new(json: bool) -> Out {
        let mut fields = Map::new();
        fields.insert("version".into(), Value::from(1));
        Out {
            json,
            fields,
            warnings: Vec::new(),
        }
    }

    /// Whether the output is JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Record a field of the JSON object.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.fields.insert(key.into(), value.into());
    }

    /// A line of text output (stdout); nothing in JSON mode.
    pub fn say(&mut self, line: impl AsRef<str>) {
        if !self.json {
            println!("{}", line.as_ref());
        }
    }

    /// A warning: on stderr as text, in `warnings` in JSON.
    pub fn warn(&mut self, line: impl Into<String>) {
        let line = line.into();
        if !self.json {
            eprintln!("warning: {line}");
        }
        self.warnings.push(line);
    }

    /// Print the JSON object (if any) and turn the result into the exit code.
    pub fn finish(mut self, result: Result<(), Failure>) -> ExitCode {
        let code = match &result {
            Ok(()) => 0,
            Err(f) => f.code,
        };
        if let Err(f) = &result {
            eprintln!("knocker exposedb: {}", f.message);
            self.set("error", f.message.clone());
        }
        if self.json {
            self.set("ok", result.is_ok());
            let w = std::mem::take(&mut self.warnings);
            self.set("warnings", w);
            println!("{}", Value::Object(std::mem::take(&mut self.fields)));
        }
        ExitCode::from(code)
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // civil-from-days (proleptic Gregorian)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
