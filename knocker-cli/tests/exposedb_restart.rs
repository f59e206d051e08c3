//! `knocker exposedb --init` and the PostgreSQL restart: the notice and the
//! confirmation on a real terminal (a pty), and the message when the
//! restarted server does not come back.

use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Session};
use pg_harness::Cluster;

mod common;

use common::Primary;

/// `knocker exposedb ARGS` advertising 127.0.0.1, without escape sequences.
fn knocker(p: &Primary, args: &[&str]) -> Command {
    let mut cmd = p.command(&["--advertise", "127.0.0.1"]);
    cmd.args(args).env("TERM", "dumb");
    cmd
}

async fn start_time(pg: &Cluster) -> String {
    pg.connect()
        .await
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .await
        .unwrap()
        .get(0)
}

async fn running_listen_addresses(pg: &Cluster) -> String {
    pg.connect()
        .await
        .query_one("SELECT current_setting('listen_addresses')", &[])
        .await
        .unwrap()
        .get(0)
}

const PROMPT: &str = "Restart PostgreSQL now? [y/N] ";
const NOTICE: &str = "the Knocknoc web app on this host loses its database connections";

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
    assert!(text.contains("(PostgreSQL restarted)"), "{text}");
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
    // The operator is told what to run, with the exact command.
    let data_dir = pg.data_dir().display().to_string();
    let told = text
        .lines()
        .find(|l| l.contains("not restarted; listen_addresses takes effect after:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        told.contains("pg_ctl") && told.contains(&data_dir) && told.trim_end().ends_with("restart"),
        "{told}"
    );
    assert!(text.contains("(takes effect after a restart)"), "{text}");
    // The rest of --init happened: the role exists, the connection string
    // was printed, and the new value waits in postgresql.auto.conf.
    assert!(text.contains("postgres://knocknoc_remote:"), "{text}");
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
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("restarting PostgreSQL"), "{err}");
    assert!(err.contains("the command exited with status"), "{err}");
    // The real reason the reconnection failed, not a stand-in.
    let last = err
        .split("last connection attempt: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    assert!(last.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("nonexistent"), "{err}");
    assert!(pg.log().contains("knocker_test_no_such_library"));
}
