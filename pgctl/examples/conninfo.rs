//! Prints what a connection string itself sets, as one flat JSON object
//! (libpq keyword -> string, in libpq's keyword order), the way libpq 17's
//! `PQconninfoParse` reads it: no defaults, environment or `.pgpass`; values
//! verbatim; multi-host values comma-joined with empty entries kept; secrets
//! as `********`. A rejected string prints libpq's error text on stderr and
//! exits with status 1.
//!
//! ```text
//! cargo run -p pgctl --example conninfo -- 'postgresql://u:pw@h1,h2:5433/db'
//! {"user":"u","password":"********","dbname":"db","host":"h1,h2","port":",5433"}
//! ```

use std::process::ExitCode;

use pgctl::conninfo::ConnInfo;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(arg), None) = (args.next(), args.next()) else {
        eprintln!("usage: conninfo CONNECTION-STRING");
        return ExitCode::from(2);
    };
    let Some(s) = arg.to_str() else {
        eprintln!("connection string is not valid UTF-8");
        return ExitCode::from(1);
    };
    match ConnInfo::parse(s) {
        Ok(info) => {
            let redacted = info.redacted();
            let fields: Vec<String> = redacted
                .iter()
                .map(|(k, v)| format!("{}:{}", json_string(k.as_str()), json_string(v)))
                .collect();
            println!("{{{}}}", fields.join(","));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}
