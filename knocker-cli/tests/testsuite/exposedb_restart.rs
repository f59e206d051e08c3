//! `knocker exposedb --init` and the PostgreSQL restart: the notice and the
//! confirmation on a real terminal (a pty), and the message when the
//! restarted server does not come back.

use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Session};
use pg_harness::Cluster;
use snapbox::str;

use crate::common;

use crate::common::{expect_output, expect_text, printed_uris, uri_password, Primary};

/// `knocker exposedb ARGS` advertising 127.0.0.1, without escape sequences.
fn knocker(p: &Primary, args: &[&str]) -> Command {
    let mut cmd = p.command(&["--advertise", "127.0.0.1"]);
    cmd.args(args).env("TERM", "dumb");
    cmd
}

/// The one text value the server answers to `sql`.
async fn ask(pg: &Cluster, sql: &str) -> String {
    pg.connect().await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn start_time(pg: &Cluster) -> String {
    ask(pg, "SELECT pg_postmaster_start_time()::text").await
}

async fn running_listen_addresses(pg: &Cluster) -> String {
    ask(pg, "SELECT current_setting('listen_addresses')").await
}

const PROMPT: &str = "Restart PostgreSQL now? [y/N] ";
const NOTICE: &str = "the Knocknoc web app on this host loses its database connections";

/// Checks a pty transcript whole, with the password it prints once (its
/// form checked) as `[PASSWORD]`.
fn expect_transcript(p: &Primary, text: &str, expected: impl snapbox::IntoData) {
    let uris = printed_uris(text);
    assert_eq!(uris.len(), 1, "{text}");
    let password = uri_password(&uris[0]);
    common::assert_password_form(&password);
    expect_text(p.redactions(&[&password]), text, expected);
}

/// Runs `--init` on a pty, waits for the notice and the prompt, answers,
/// and returns everything printed and the exit status.
fn init_on_a_pty(p: &Primary, answer: &str) -> (String, String) {
    let mut cmd = knocker(p, &["--init"]);
    // On the pty: standard input is the terminal, not closed.
    cmd.stdin(std::process::Stdio::inherit());
    let mut s = Session::spawn(cmd).expect("spawn on a pty");
    s.set_expect_timeout(Some(Duration::from_secs(120)));
    let mut seen = Vec::new();
    for needle in [NOTICE, PROMPT] {
        let found = s.expect(needle).unwrap_or_else(|e| {
            panic!(
                "waiting for {needle:?}: {e}\nso far:\n{}",
                String::from_utf8_lossy(&seen)
            )
        });
        seen.extend_from_slice(found.before());
        seen.extend_from_slice(needle.as_bytes());
    }
    s.send_line(answer).unwrap();
    let rest = s.expect(Eof).expect("knocker ends");
    seen.extend_from_slice(rest.as_bytes());
    let status = format!("{:?}", s.get_process().wait().expect("wait"));
    (String::from_utf8_lossy(&seen).into_owned(), status)
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_prompt_answered_yes_restarts_pg17() {
    let p = Primary::start(17, None).await;
    let pg = &p.pg;
    let before = start_time(pg).await;
    let (text, status) = tokio::task::block_in_place(|| init_on_a_pty(&p, "y"));
    assert!(
        status.contains("Exited") && status.ends_with(", 0)"),
        "{status}\n{text}"
    );
    expect_transcript(
        &p,
        &text,
        str![[r#"
PostgreSQL will be restarted (pg_ctl -D [DATA]) to change listen_addresses; the Knocknoc web app on this host loses its database connections for a few seconds.
Restart PostgreSQL now? [y/N] Connection string for the secondary web nodes (shown only now; keep it safe):

  postgres://knocknoc_remote:[PASSWORD]@127.0.0.1:[PORT]/knocknoc

Created login role knocknoc_remote (scram-sha-256), acting as knocknoc in database knocknoc.
Added the (empty) knocker block to [HBA].
listen_addresses = '0.0.0.0' (PostgreSQL restarted).
Next: allow each secondary with: knocker exposedb --add "ADDRESS/32"
Firewall: open TCP port [PORT] only to those addresses (e.g. ufw allow from ADDRESS to any port [PORT] proto tcp).

"#]],
    );
    assert_ne!(start_time(pg).await, before, "the server restarted");
    assert!(running_listen_addresses(pg).await.starts_with("0.0.0.0"));
    // It now accepts TCP connections on another IPv4 address.
    tokio::net::TcpStream::connect(("127.0.0.2", pg.port()))
        .await
        .expect("listening on 0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_prompt_answered_no_restarts_nothing_and_says_what_to_run_pg17() {
    let p = Primary::start(17, None).await;
    let pg = &p.pg;
    let before = start_time(pg).await;
    let listen_before = running_listen_addresses(pg).await;
    let (text, status) = tokio::task::block_in_place(|| init_on_a_pty(&p, "n"));
    assert!(
        status.contains("Exited") && status.ends_with(", 0)"),
        "{status}\n{text}"
    );
    assert_eq!(start_time(pg).await, before, "nothing restarted");
    assert_eq!(running_listen_addresses(pg).await, listen_before);
    // The operator is told what to run, with the exact command, and the
    // rest of --init happened: the role exists, the connection string was
    // printed, and the new value waits in postgresql.auto.conf.
    expect_transcript(
        &p,
        &text,
        str![[r#"
PostgreSQL will be restarted (pg_ctl -D [DATA]) to change listen_addresses; the Knocknoc web app on this host loses its database connections for a few seconds.
Restart PostgreSQL now? [y/N] warning: not restarted; listen_addresses takes effect after: runuser -u postgres -- [BIN]/pg_ctl -D [DATA] -l [LOG] -m fast restart
Connection string for the secondary web nodes (shown only now; keep it safe):

  postgres://knocknoc_remote:[PASSWORD]@127.0.0.1:[PORT]/knocknoc

Created login role knocknoc_remote (scram-sha-256), acting as knocknoc in database knocknoc.
Added the (empty) knocker block to [HBA].
listen_addresses = '0.0.0.0' (takes effect after a restart).
Next: allow each secondary with: knocker exposedb --add "ADDRESS/32"
Firewall: open TCP port [PORT] only to those addresses (e.g. ufw allow from ADDRESS to any port [PORT] proto tcp).

"#]],
    );
    let auto = std::fs::read_to_string(pg.data_dir().join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("listen_addresses = '0.0.0.0"), "{auto}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_that_never_comes_back_reports_the_last_connection_error_pg17() {
    let p = Primary::start(17, None).await;
    let pg = &p.pg;
    // A setting that only bites at the next start: the restart stops the
    // server and it cannot start again.
    pg.connect()
        .await
        .batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'knocker_test_no_such_library'")
        .await
        .unwrap();
    let o = knocker(&p, &["--init", "--yes"]).output().unwrap();
    // The error names the real reason the reconnection failed, not a
    // stand-in.
    expect_output(
        p.redactions(&[]),
        &o,
        1,
        str![],
        str![[r#"
PostgreSQL will be restarted (pg_ctl -D [DATA]) to change listen_addresses; the Knocknoc web app on this host loses its database connections for a few seconds.
knocker exposedb: restarting PostgreSQL: the server did not accept connections again within 5s after `[BIN]/pg_ctl -D [DATA] -m fast -w -t 120 -l [LOG] restart` (the command exited with status 1); it said: waiting for server to shut down[..] done
server stopped
waiting for server to start[..] stopped waiting
pg_ctl: could not start server
Examine the log output.; last connection attempt: could not connect to 127.0.0.1:[PORT]: Connection refused (os error 111); is the server running on that host and accepting TCP connections on port [PORT] (listen_addresses)?
The role's new password from this run was not shown and is not kept; once this is fixed, run `knocker exposedb --rotate-password` for a connection string

"#]],
    );
    assert!(pg.log().contains("knocker_test_no_such_library"));
}
