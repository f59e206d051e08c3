//! Connects with a libpq connection string (resolved with the process's
//! `PG*` environment and `.pgpass`, as libpq would) and says where it got
//! in: host, address, TLS and certificate check, what the server reported.
//! On failure prints the classified error (never the password) and exits
//! with status 1. `--as-os-user NAME` connects unix sockets with that OS
//! user's identity (peer authentication; needs root).
//!
//! ```text
//! cargo run -p pgctl --example connect -- 'host=/var/run/postgresql' --as-os-user postgres
//! connected to /var/run/postgresql/.s.PGSQL.5432 (host /var/run/postgresql, port 5432)
//! tls: no
//! server_version: 15.14 (Debian 15.14-0+deb12u1)
//! ```

use std::process::ExitCode;

use pgctl::connect::{connect, connect_as_os_user};
use pgctl::conninfo::{resolve_from_process_env, ConnInfo};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (conninfo, os_user) = match args.as_slice() {
        [c] => (c.as_str(), None),
        [c, flag, user] if flag == "--as-os-user" => (c.as_str(), Some(user.as_str())),
        _ => {
            eprintln!("usage: connect CONNECTION-STRING [--as-os-user NAME]");
            return ExitCode::from(2);
        }
    };
    let info = match ConnInfo::parse(conninfo) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let resolved = match resolve_from_process_env(&info) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match os_user {
            Some(user) => connect_as_os_user(&resolved.params, user).await,
            None => connect(&resolved.params).await,
        }
    });
    match result {
        Ok(c) => {
            println!(
                "connected to {} (host {}, port {})",
                c.address(),
                c.host().host,
                c.host().port
            );
            match (c.certificate_check(), c.server_certificate()) {
                (Some(check), Some(cert)) => println!(
                    "tls: yes, certificate check {check:?}, SHA-256 {}{}",
                    cert.sha256_fingerprint(),
                    if cert.is_self_signed() {
                        " (self-signed)"
                    } else {
                        ""
                    }
                ),
                _ => println!("tls: no"),
            }
            let facts = c.server_facts();
            if let Some(v) = &facts.server_version {
                println!("server_version: {v}");
            }
            if let Some(ro) = facts.read_only() {
                println!("read_only: {ro}");
            }
            if let Some(standby) = facts.standby() {
                println!("standby: {standby}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
