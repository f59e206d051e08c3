//! `knocker exposedb` end to end through the built binary against real
//! servers 15-18: allow/deny proven from other loopback addresses.
//!
//! Every run is checked whole with snapbox ([`expect`]): exit code,
//! standard output and standard error, where `[..]` stands for any text
//! within a line, a line `...` for any lines, and the placeholders of
//! [`Primary::redactions`] for this run's values (port, paths, binaries,
//! passwords, timestamps, users). Long and JSON outputs are files in
//! `tests/testsuite/exposedb_e2e/`.
//! `SNAPSHOTS=overwrite cargo test -p knocker-cli --test testsuite --
//! exposedb_e2e:: --skip pg15 --skip pg17 --skip pg18 --test-threads=1`
//! rewrites the `str![]` and file expectations from one version's run
//! (one process: nextest's process per test would patch this file from
//! many); those built with `format!` are edited by hand.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use snapbox::{str, IntoData};
use tokio_postgres::Client;

use crate::common;

use crate::common::{assert_password_form, printed_uris, uri_password, Primary};

/// `--init` without restart, advertising 127.0.0.1.
const INIT: [&str; 4] = ["--init", "--no-restart", "--advertise", "127.0.0.1"];

/// What these tests ask of the shared primary.
trait Knocker {
    /// Runs `knocker exposedb ARGS`.
    fn knocker(&self, args: &[&str]) -> Output;
    /// Runs it with `env` set.
    fn knocker_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output;
    /// Runs [`INIT`] and `extra`, which must succeed.
    fn init(&self, extra: &[&str]) -> Output {
        ok(self.knocker(&[&INIT[..], extra].concat()))
    }
    /// [`INIT`] `--json` for a new role: the password it prints once.
    fn init_password(&self) -> String {
        password_of(&json(&self.init(&["--json"])))
    }
}

impl Knocker for Primary {
    fn knocker(&self, args: &[&str]) -> Output {
        self.knocker_env(args, &[])
    }

    fn knocker_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// A session to database `knocknoc` as `knocknoc_remote` from `addr`.
async fn remote_from(
    p: &Primary,
    addr: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    p.pg.connect_from(ip(addr), "knocknoc_remote", password, "knocknoc")
        .await
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_knocker"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Checks a run whole: its exit code, standard output and standard error
/// (placeholders as [`Primary::redactions`] with `secrets`).
fn expect_with(
    p: &Primary,
    secrets: &[&str],
    o: &Output,
    code: i32,
    out: impl IntoData,
    err: impl IntoData,
) {
    common::expect_output(p.redactions(secrets), o, code, out, err);
}

/// [`expect_with`] for a run that prints no secret.
fn expect(p: &Primary, o: &Output, code: i32, out: impl IntoData, err: impl IntoData) {
    expect_with(p, &[], o, code, out, err);
}

/// The password a report prints once, after checking its form: 32
/// characters of the URL-safe alphabet, the same one in the connection
/// string.
fn password_of(report: &serde_json::Value) -> String {
    let password = report["password"].as_str().unwrap().to_string();
    assert_password_form(&password);
    let uri = report["connection_string"].as_str().unwrap();
    assert_eq!(uri_password(uri), password, "{uri}");
    password
}

/// Checks a `--json` run that prints a new password once: the
/// password's form ([`password_of`]), then the whole object with it as
/// `[PASSWORD]`, and nothing on standard error. Returns the password and
/// the connection string.
fn expect_new_password(p: &Primary, o: &Output, expected: impl IntoData) -> (String, String) {
    let report = json(o);
    let password = password_of(&report);
    expect_with(p, &[&password], o, 0, expected, "");
    let uri = report["connection_string"].as_str().unwrap().to_string();
    (password, uri)
}

/// Checks a text-mode run that prints a new password once in its
/// connection string: the password's form, then the whole run with it as
/// `[PASSWORD]`. Returns the password.
fn expect_printed_password(
    p: &Primary,
    o: &Output,
    out: impl IntoData,
    err: impl IntoData,
) -> String {
    let uris = printed_uris(&stdout(o));
    assert_eq!(uris.len(), 1, "{}", stdout(o));
    let password = uri_password(&uris[0]);
    assert_password_form(&password);
    expect_with(p, &[&password], o, 0, out, err);
    password
}

fn snapshot(p: &Primary) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(p.pg.hba_file()).unwrap(),
        std::fs::read(p.pg.data_dir().join("postgresql.auto.conf")).unwrap_or_default(),
    )
}

async fn roles(p: &Primary) -> Vec<String> {
    p.pg.connect()
        .await
        .query("SELECT rolname::text FROM pg_roles ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.mode(), m.uid(), m.gid())
}

/// The standard error of an `--add` of `cidr` stopped by the operator's
/// reject `line` at `place` (`pg_hba.conf line 7`), which `--force`
/// passes.
fn refused_add(place: &str, cidr: &str, line: &str) -> String {
    format!(
        "knocker exposedb: {place} rejects connections from part of {cidr} before the knocker block:
  {line}
The operator's reject wins: narrow the CIDR or change that line.
Add --force to do it anyway.
"
    )
}

/// A primary whose remote role exists and whose server listens on every
/// address (restarted after `--init`), and the role's password.
async fn exposed(major: u32) -> (Primary, String) {
    let p = Primary::start(major, None).await;
    let password = p.init_password();
    p.pg.restart().await;
    (p, password)
}

/// `--add CIDR` is refused for the operator's reject `rule` at `place`
/// and changes nothing.
fn add_stopped(p: &Primary, cidr: &str, place: &str, rule: &str) {
    let before = snapshot(p);
    expect(
        p,
        &p.knocker(&["--add", cidr]),
        1,
        "",
        refused_add(place, cidr, rule),
    );
    assert_eq!(snapshot(p), before, "nothing changed");
}

/// `--explain 127.0.0.2` is certain, names `line` and says `allowed`, and
/// the server agrees: a login from 127.0.0.2 with `password` succeeds
/// exactly when allowed. Returns the explanation.
async fn explain_agrees_with_server(
    p: &Primary,
    password: &str,
    line: u32,
    allowed: bool,
    case: &str,
) -> serde_json::Value {
    let explained = json(&ok(p.knocker(&["--explain", "127.0.0.2", "--json"])));
    assert_eq!(
        (
            &explained["certain"],
            &explained["line"],
            &explained["allowed"]
        ),
        (&true.into(), &line.into(), &allowed.into()),
        "{case}: {explained}"
    );
    assert_eq!(
        remote_from(p, "127.0.0.2", password).await.is_ok(),
        allowed,
        "{case}: the server disagrees with --explain"
    );
    explained
}

/// What `--add CIDR` prints when it adds the rule.
fn allowed(cidr: &str) -> String {
    format!(
        "Allowed {cidr} to connect to database knocknoc as knocknoc_remote (host, scram-sha-256).\n\
         [HBA] updated and reloaded.\n"
    )
}

/// A primary whose pg_hba.conf is the harness's with `lines` after it.
async fn start_with_lines(major: u32, lines: &str) -> Primary {
    Primary::start(major, Some(&harness_hba_with(lines))).await
}

/// Writes the harness's pg_hba.conf with `lines` after it.
fn hba_with(p: &Primary, lines: &str) {
    std::fs::write(p.pg.hba_file(), harness_hba_with(lines)).unwrap();
}

/// The harness's pg_hba.conf with `lines` after it.
fn harness_hba_with(lines: &str) -> String {
    format!("{}{lines}", pg_harness::DEFAULT_HBA)
}

/// The whole flow on one primary: init, add, list, allow from 127.0.0.2 and
/// deny from 127.0.0.3, idempotence, explain, remove --terminate, deinit.
/// The primary's pg_hba.conf is the harness's with `lines` after it;
/// `denied` is what `--explain 127.0.0.3 --json` prints.
async fn whole_flow(major: u32, lines: &str, denied: snapbox::Data) {
    let p = &start_with_lines(major, lines).await;
    let before = mode_and_owner(&p.pg.hba_file());
    let init = p.knocker(&[&INIT[..], &["--json"]].concat());
    let (password, _) =
        expect_new_password(p, &init, snapbox::file!["exposedb_e2e/init_created.json"]);
    p.pg.restart().await;

    // Nobody outside 127.0.0.1 gets in before --add.
    assert!(remote_from(p, "127.0.0.2", &password).await.is_err());
    expect(
        p,
        &p.knocker(&["--add", "127.0.0.2"]),
        0,
        allowed("127.0.0.2/32"),
        "",
    );
    expect(p, &p.knocker(&["--list"]), 0, "127.0.0.2/32\n", "");

    let client = remote_from(p, "127.0.0.2", &password)
        .await
        .expect("127.0.0.2 is allowed");
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "knocknoc",
        "acts as the app's role"
    );
    client
        .batch_execute("CREATE TABLE made_remotely(x int)")
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let err = remote_from(p, "127.0.0.3", &password)
        .await
        .expect_err("127.0.0.3 is not allowed");
    let msg = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("no pg_hba.conf entry") || msg.contains("rejects"),
        "{msg}"
    );

    // Idempotent: the same add changes nothing and says so.
    let (hba, auto) = snapshot(p);
    expect(
        p,
        &p.knocker(&["--add", "127.0.0.2/32"]),
        0,
        str![[r#"
127.0.0.2/32 is already allowed; nothing to add.

"#]],
        "",
    );
    assert_eq!(snapshot(p), (hba, auto));
    expect(
        p,
        &p.knocker(&[&INIT[..], &["--json"]].concat()),
        0,
        snapbox::file!["exposedb_e2e/init_unchanged.json"],
        "",
    );

    expect(
        p,
        &p.knocker(&["--explain", "127.0.0.2", "--json"]),
        0,
        snapbox::file!["exposedb_e2e/explain_allowed.json"],
        "",
    );
    expect(
        p,
        &p.knocker(&["--explain", "127.0.0.3", "--json"]),
        0,
        denied,
        "",
    );

    assert_eq!(
        mode_and_owner(&p.pg.hba_file()),
        before,
        "owner and mode kept"
    );
    let log = p.pg.log();
    assert!(
        !log.contains(&password),
        "the password reached the server log"
    );

    // Remove with --terminate ends the open session too.
    expect(
        p,
        &p.knocker(&["--remove", "127.0.0.2/32", "--terminate", "--json"]),
        0,
        snapbox::file!["exposedb_e2e/remove_terminate.json"],
        "",
    );
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    assert!(remote_from(p, "127.0.0.2", &password).await.is_err());
    expect(
        p,
        &p.knocker(&["--remove", "127.0.0.2/32"]),
        0,
        str![[r#"
127.0.0.2/32 is not in the list; nothing to remove.

"#]],
        "",
    );

    expect(
        p,
        &p.knocker(&["--deinit", "--no-restart", "--json"]),
        0,
        snapbox::file!["exposedb_e2e/deinit.json"],
        "",
    );
    assert!(!roles(p).await.contains(&"knocknoc_remote".to_string()));
    assert!(!String::from_utf8(std::fs::read(p.pg.hba_file()).unwrap())
        .unwrap()
        .contains("knocker"));
}

async fn flow_on_default_hba(major: u32) {
    // No line matches 127.0.0.3.
    let denied = snapbox::file!["exposedb_e2e/explain_denied_by_no_line.json"];
    whole_flow(major, "", denied).await;
}

async fn flow_with_catch_all_reject(major: u32) {
    let catch_all = "host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n";
    // The catch-all after the block rejects 127.0.0.3.
    let denied = snapbox::file!["exposedb_e2e/explain_denied_by_catch_all.json"];
    whole_flow(major, catch_all, denied).await;
}

/// The operator's narrower reject stops `--add` (nothing changes) until
/// `--force`.
async fn narrower_operator_reject_wins_unless_forced(major: u32) {
    let p = start_with_lines(major, "host all all 127.0.0.2/32 reject\n").await;
    p.init(&[]);
    add_stopped(
        &p,
        "127.0.0.0/30",
        "pg_hba.conf line 7",
        "host all all 127.0.0.2/32 reject",
    );
    expect(
        &p,
        &p.knocker(&["--add", "127.0.0.0/30", "--force"]),
        0,
        allowed("127.0.0.0/30"),
        str![[r#"
warning: line 5 comes first and decides some connections from 127.0.0.0/30: host    all   all        127.0.0.1/32 scram-sha-256
warning: line 7 comes first and rejects some connections from 127.0.0.0/30: host all all 127.0.0.2/32 reject

"#]],
    );
    expect(&p, &p.knocker(&["--list"]), 0, "127.0.0.0/30\n", "");
}

// Regression for the block's own matcher, replaced by pghba's shadow and
// matcher: each operator line before the block, judged by the server. A
// line that stops `--add` must really reject 127.0.0.2 once forced past,
// one that does not must really let it in, and `--explain` must say what
// the server does. Quoted `/regex` tokens are regexes on 16+ (the old code
// read them as names), `/regex` is a name before 16 (the old code took it
// for a possible regex), `sameuser` cannot meet database `knocknoc` as role
// `knocknoc_remote`; a `hostnossl` reject takes the plain connections a
// `host` rule admits.
async fn operator_lines_before_the_block_judged_like_the_server(major: u32) {
    let (p, password) = exposed(major).await;
    let regex_rejects = major >= 16;
    for (line, stops) in [
        ("host \"/^knock\" all 127.0.0.2/32 reject", regex_rejects),
        ("host /^knock all 127.0.0.2/32 reject", regex_rejects),
        ("host all /^admin 127.0.0.2/32 reject", false),
        ("host sameuser all 127.0.0.2/32 reject", false),
        ("hostnossl all all 127.0.0.2/32 reject", true),
    ] {
        hba_with(&p, &format!("{line}\n"));
        if stops {
            add_stopped(&p, "127.0.0.2/32", "pg_hba.conf line 7", line);
            ok(p.knocker(&["--add", "127.0.0.2/32", "--force"]));
        } else {
            expect(
                &p,
                &p.knocker(&["--add", "127.0.0.2/32"]),
                0,
                allowed("127.0.0.2/32"),
                "",
            );
        }
        // the operator's line, or the block's rule after it
        let line_hit = if stops { 7 } else { 9 };
        explain_agrees_with_server(&p, &password, line_hit, !stops, line).await;
    }
}

async fn hostile_input_exits_2_and_changes_nothing(major: u32) {
    let p = Primary::start(major, None).await;
    let before = (snapshot(&p), roles(&p).await);
    let not_a_cidr = "give a numeric address or CIDR such as 203.0.113.7/32";
    let everyone = "admits every address on the Internet; add --force if that is really meant";
    for (args, says) in [
        (
            &["--add", "example.com"][..],
            r#""example.com": not a numeric IPv4/IPv6 address or CIDR (host names are not accepted); example: 203.0.113.7/32"#.to_string(),
        ),
        (
            &["--add", "10.0.0.1/24"],
            r#""10.0.0.1/24": host bits are set; did you mean 10.0.0.0/24 (the network) or 10.0.0.1/32 (one host)?"#.to_string(),
        ),
        (&["--add", "0.0.0.0/0"], format!("0.0.0.0/0 {everyone}")),
        (&["--add", "::/0"], format!("::/0 {everyone}")),
        (
            &["--add", "10.0.0.1\nhost all all all trust"],
            format!(r#""10.0.0.1\nhost all all all trust": contains '\n'; {not_a_cidr}"#),
        ),
        (
            &["--add", "10.0.0.1\" trust"],
            format!(r#""10.0.0.1\" trust": contains '"'; {not_a_cidr}"#),
        ),
        (
            &["--add", "10.0.0.1 #"],
            format!(r#""10.0.0.1 #": contains ' '; {not_a_cidr}"#),
        ),
        (
            &["--remove", "10.0.0.0/33"],
            r#""10.0.0.0/33": the prefix length must be a number from 0 to 32"#.to_string(),
        ),
        (
            &["--add", "10.0.0.1", "--remove", "10.0.0.1"],
            "10.0.0.1/32 is both added and removed".to_string(),
        ),
        (
            &["--init", "--list"],
            "choose one action, not --init and --list".to_string(),
        ),
        (
            &[
                "--init",
                "--user",
                "x\nhost all all all trust",
                "--no-restart",
            ],
            r#"--user: "x\nhost all all all trust" contains a line break, which pg_hba.conf cannot hold"#.to_string(),
        ),
        (
            &["--init", "--listen", "0.0.0.0'; x", "--no-restart"],
            r#"--listen: "0.0.0.0'; x" is not an IP address or *"#.to_string(),
        ),
        (
            &["--explain", "10.0.0.0/8"],
            "--explain takes one address, not the network 10.0.0.0/8".to_string(),
        ),
        (
            &["--terminate"],
            "--terminate goes with --remove CIDR".to_string(),
        ),
    ] {
        expect(&p, &p.knocker(args), 2, "", format!("knocker exposedb: {says}\n"));
    }
    let o = run(&[
        "exposedb",
        "--list",
        "--conn",
        "postgres://knocknoc@127.0.0.1:1/knocknoc?sslmod=require",
    ]);
    expect(
        &p,
        &o,
        2,
        "",
        "knocker exposedb: --conn: not a valid connection string: invalid URI query parameter: \"sslmod\"\n",
    );
    assert_eq!((snapshot(&p), roles(&p).await), before);
}

/// Everything `--dry-run` promises not to touch: pg_hba.conf and
/// postgresql.auto.conf byte for byte, and the roles with their
/// passwords, comments, memberships, per-database settings and database
/// privileges row for row.
async fn everything(p: &Primary) -> ((Vec<u8>, Vec<u8>), Vec<String>) {
    let rows =
        p.pg.connect()
            .await
            .query(
                "SELECT format('%s login=%s pw=%s comment=%s', rolname, rolcanlogin, rolpassword, \
                        shobj_description(oid, 'pg_authid')) FROM pg_authid \
             UNION ALL SELECT format('member %s of %s', member::regrole, roleid::regrole) FROM pg_auth_members \
             UNION ALL SELECT format('setting %s %s %s', setdatabase, setrole, setconfig) FROM pg_db_role_setting \
             UNION ALL SELECT format('acl %s %s', datname, datacl) FROM pg_database \
             ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    (snapshot(p), rows)
}

/// Runs `knocker exposedb ARGS` (a dry run), which must succeed and leave
/// [`everything`] as it was.
async fn dry_run(p: &Primary, args: &[&str]) -> Output {
    let before = everything(p).await;
    let o = ok(p.knocker(args));
    assert_eq!(everything(p).await, before, "{args:?} changed something");
    o
}

/// How a dry run that changes pg_hba.conf starts: the diff's head, any
/// lines before the block.
const DRY_RUN_DIFF: &str = "Dry run: nothing changed.
pg_hba.conf would change like this:
--- [HBA]
+++ [HBA] (new)
@@ [..] @@
...
";

/// A rule line of the block as `--add` writes it.
fn block_rule(cidr: &str) -> String {
    format!("host[..]knocknoc knocknoc_remote {cidr} scram-sha-256 # added [TIMESTAMP] by [USER]")
}

/// `--dry-run` of --init, --add, --remove --terminate and --deinit prints
/// the diff and the exact SQL of the pgctl plans (the password only as a
/// placeholder) and changes nothing.
async fn dry_run_prints_diff_and_planned_sql_and_changes_nothing(major: u32) {
    let p = Primary::start(major, None).await;
    let o = dry_run(&p, &["--init", "--dry-run", "--no-restart"]).await;
    let grant = if major >= 16 {
        "  GRANT \"knocknoc\" TO \"knocknoc_remote\" WITH INHERIT TRUE, SET TRUE;\n"
    } else {
        "  ALTER ROLE \"knocknoc_remote\" INHERIT;\n  GRANT \"knocknoc\" TO \"knocknoc_remote\";\n"
    };
    let expected = format!(
        r#"{DRY_RUN_DIFF}+# BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
+# END knocker exposedb
SQL it would run:
  CREATE ROLE "knocknoc_remote" LOGIN NOSUPERUSER INHERIT PASSWORD '<generated>';
  COMMENT ON ROLE "knocknoc_remote" IS 'managed by knocker';
{grant}  ALTER ROLE "knocknoc_remote" IN DATABASE "knocknoc" SET role = 'knocknoc';
  GRANT CONNECT ON DATABASE "knocknoc" TO "knocknoc_remote";
  SELECT pg_catalog.pg_reload_conf();
  ALTER SYSTEM SET listen_addresses = '0.0.0.0[..]';
Then PostgreSQL would be restarted for listen_addresses.
"#
    );
    // No verifier either: the placeholder stands for the password.
    expect(&p, &o, 0, expected, "");

    let password = p.init_password();

    // A rerun with --rotate-password: only the ALTER ROLE, with the placeholder.
    let o = dry_run(
        &p,
        &["--init", "--rotate-password", "--dry-run", "--no-restart"],
    )
    .await;
    expect(
        &p,
        &o,
        0,
        str![[r#"
Dry run: nothing changed.
pg_hba.conf would not change.
SQL it would run:
  ALTER ROLE "knocknoc_remote" LOGIN PASSWORD '<generated>';
  COMMENT ON ROLE "knocknoc_remote" IS 'managed by knocker';
  ALTER SYSTEM SET listen_addresses = '0.0.0.0[..]';
Then PostgreSQL would be restarted for listen_addresses.

"#]],
        "",
    );

    let o = dry_run(
        &p,
        &["--add", "127.0.0.2", "--add", "2001:db8::/64", "--dry-run"],
    )
    .await;
    let (v4, v6) = (block_rule("127.0.0.2/32"), block_rule("2001:db8::/64"));
    let expected = format!(
        "{DRY_RUN_DIFF} # BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
+{v4}
+{v6}
 # END knocker exposedb
...
SQL it would run:
  SELECT pg_catalog.pg_reload_conf();
"
    );
    // The server listens on 127.0.0.1 until it restarts.
    expect(
        &p,
        &o,
        0,
        expected,
        "warning: 2001:db8::/64 is IPv6 but the server does not listen on IPv6 (listen_addresses = '127.0.0.1')\n",
    );

    ok(p.knocker(&["--add", "127.0.0.2"]));
    let o = dry_run(&p, &["--remove", "127.0.0.2", "--terminate", "--dry-run"]).await;
    let expected = format!(
        "{DRY_RUN_DIFF} # BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
-{v4}
 # END knocker exposedb
...
SQL it would run:
  SELECT pg_catalog.pg_reload_conf();
  SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)) FROM pg_catalog.pg_stat_activity WHERE client_addr <<= '127.0.0.2/32'::inet AND usename = 'knocknoc_remote' AND pid <> pg_catalog.pg_backend_pid();
"
    );
    expect(&p, &o, 0, expected, "");

    let o = dry_run(&p, &["--deinit", "--dry-run", "--no-restart"]).await;
    let expected = format!(
        r#"{DRY_RUN_DIFF}-# BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
-{v4}
-# END knocker exposedb
...
SQL it would run:
  SELECT pg_catalog.pg_reload_conf();
  ALTER ROLE "knocknoc_remote" NOLOGIN;
  SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)) FROM pg_catalog.pg_stat_activity WHERE usename = 'knocknoc_remote' AND pid <> pg_catalog.pg_backend_pid();
  REVOKE CONNECT ON DATABASE "knocknoc" FROM "knocknoc_remote";
  ALTER ROLE "knocknoc_remote" IN DATABASE "knocknoc" RESET role;
  REVOKE "knocknoc" FROM "knocknoc_remote";
  REASSIGN OWNED BY "knocknoc_remote" TO "knocknoc";
  DROP OWNED BY "knocknoc_remote";
  DROP ROLE "knocknoc_remote";
  ALTER SYSTEM RESET listen_addresses;
knocker's zz-knocker-listen.conf in the include directory would be removed if present; PostgreSQL would be restarted if listen_addresses changes.
"#
    );
    expect(&p, &o, 0, expected, "");
    // The password the real --init printed still works: nothing rotated.
    remote_from(&p, "127.0.0.2", &password)
        .await
        .expect("the password is unchanged after the dry runs");
}

/// Whether the server refuses the remote role's `password` (from
/// 127.0.0.2) for the password itself.
async fn login_refused(p: &Primary, password: &str) -> bool {
    match remote_from(p, "127.0.0.2", password).await {
        Ok(_) => false,
        Err(e) => {
            assert_eq!(
                e.code().map(|c| c.code()),
                Some("28P01"),
                "refused for the password, not something else: {e:?}"
            );
            true
        }
    }
}

async fn rotate_password_prints_a_working_new_password_once(major: u32) {
    let p = Primary::start(major, None).await;
    let first = p.init_password();
    ok(p.knocker(&["--add", "127.0.0.2"]));
    assert!(!login_refused(&p, &first).await);

    // --init --rotate-password (text): the new string, printed once.
    let o = p.init(&["--rotate-password"]);
    let second = expect_printed_password(
        &p,
        &o,
        snapbox::file!["exposedb_e2e/init_rotated.stdout"],
        snapbox::file!["exposedb_e2e/restart_warning.stderr"],
    );
    assert_ne!(second, first);
    assert_eq!(
        stdout(&o).matches(&second).count(),
        1,
        "printed exactly once"
    );
    assert!(
        login_refused(&p, &first).await,
        "the old password still works"
    );
    assert!(
        !login_refused(&p, &second).await,
        "the new password does not work"
    );

    // --rotate-password alone does the same, in JSON.
    let o = ok(p.knocker(&[
        "--rotate-password",
        "--no-restart",
        "--advertise",
        "127.0.0.1",
        "--json",
    ]));
    let (third, _) =
        expect_new_password(&p, &o, snapbox::file!["exposedb_e2e/rotate_password.json"]);
    assert!(login_refused(&p, &second).await);
    assert!(!login_refused(&p, &third).await);

    // A plain rerun shows no password at all.
    expect(
        &p,
        &p.init(&[]),
        0,
        snapbox::file!["exposedb_e2e/init_rerun.stdout"],
        snapbox::file!["exposedb_e2e/restart_warning.stderr"],
    );

    // The server logs every statement here, yet no password (nor its
    // verifier) reaches the log.
    let log = p.pg.log();
    for secret in [&first, &second, &third] {
        assert!(
            !log.contains(secret.as_str()),
            "a password reached the server log"
        );
    }
    assert!(
        !log.contains("SCRAM-SHA-256$"),
        "a verifier reached the server log"
    );
}

async fn warns_about_ipv6_cidrs_without_ipv6_listening_and_small_max_connections(major: u32) {
    let p = Primary::start_with(
        major,
        None,
        &[("listen_addresses", "127.0.0.1"), ("max_connections", "40")],
    )
    .await;
    // 3 web nodes (the default) with pools of 20 need about 60
    // connections, more than 40.
    let o = p.init(&[]);
    expect_printed_password(
        &p,
        &o,
        snapbox::file!["exposedb_e2e/init_created.stdout"],
        snapbox::file!["exposedb_e2e/init_small_max_connections.stderr"],
    );
    expect(
        &p,
        &p.knocker(&[&INIT[..], &["--json"]].concat()),
        0,
        snapbox::file!["exposedb_e2e/init_small_max_connections.json"],
        "",
    );
    // One node fits: no warning.
    expect(
        &p,
        &p.init(&["--nodes", "1"]),
        0,
        snapbox::file!["exposedb_e2e/init_rerun.stdout"],
        snapbox::file!["exposedb_e2e/restart_warning.stderr"],
    );

    // The server listens on 127.0.0.1 (0.0.0.0 after the restart), not
    // on IPv6: an IPv6 CIDR gets a warning, an IPv4 one does not.
    p.pg.restart().await;
    expect(
        &p,
        &p.knocker(&["--add", "2001:db8::/64"]),
        0,
        allowed("2001:db8::/64"),
        str![[r#"
warning: 2001:db8::/64 is IPv6 but the server does not listen on IPv6 (listen_addresses = '0.0.0.0')

"#]],
    );
    expect(
        &p,
        &p.knocker(&["--add", "127.0.0.2"]),
        0,
        allowed("127.0.0.2/32"),
        "",
    );
    expect(
        &p,
        &p.knocker(&["--add", "2001:db8:1::/48", "--json"]),
        0,
        snapbox::file!["exposedb_e2e/add_ipv6_without_ipv6_listening.json"],
        "",
    );
}

/// Regression: with neither SUDO_USER nor USER (a root login shell,
/// cron, a service) the rule comment said "by unknown"; it names the
/// effective user from the password database.
async fn rule_comment_names_the_effective_user_without_sudo_user_or_user(major: u32) {
    let p = Primary::start(major, None).await;
    p.init(&[]);
    let o = p
        .command(&["--add", "127.0.0.2"])
        .env_remove("SUDO_USER")
        .env_remove("USER")
        .output()
        .unwrap();
    ok(o);
    let o = p.knocker(&["--list", "--json"]);
    expect(
        &p,
        &o,
        0,
        snapbox::file!["exposedb_e2e/list_without_user_env.json"],
        "",
    );
    // [USER] also stands for the environment's names: this one is the
    // effective user's.
    let me = pgctl::os::effective_user_name().unwrap();
    let comment = json(&o)["rules"][0]["comment"].to_string();
    assert!(comment.ends_with(&format!(" by {me}\"")), "{comment}");
}

/// Regression: `--dry-run` printed `SELECT pg_catalog.pg_reload_conf()`
/// while the installation sent `select pg_reload_conf()`. Every
/// statement the dry run lists is the one the server then logs.
async fn dry_run_sql_is_the_sql_the_server_receives(major: u32) {
    let p = Primary::start(major, None).await;
    p.init(&[]);
    ok(p.knocker(&["--add", "127.0.0.5"]));
    let change = ["--add", "127.0.0.2", "--remove", "127.0.0.5", "--terminate"];
    let o = p.knocker(&[&change[..], &["--dry-run", "--json"]].concat());
    expect(
        &p,
        &o,
        0,
        snapbox::file!["exposedb_e2e/change_dry_run.json"],
        "",
    );
    let plan = json(&o);
    let sql: Vec<&str> = plan["sql"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    ok(p.knocker(&change));
    // log_statement = all: `statement: SQL` (simple protocol) or
    // `execute <unnamed>: SQL` (extended).
    let log = p.pg.log();
    for statement in &sql {
        assert!(
            log.lines().any(|l| l.ends_with(&format!(": {statement}"))),
            "{statement} not in the server log:\n{log}"
        );
    }
}

/// A pg_hba.conf another tool manages is refused, the flag hint said
/// once (pgctl names no flag; the CLI adds it), JSON carries the kind
/// and the causes, and --force passes the check.
async fn managed_file_refused_with_the_force_hint_once(major: u32) {
    let p = Primary::start(major, None).await;
    p.init(&[]);
    let hba = p.pg.hba_file();
    let original = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("# Ansible managed\n{original}")).unwrap();
    let before = std::fs::read(&hba).unwrap();
    expect(
        &p,
        &p.knocker(&["--add", "127.0.0.2"]),
        1,
        "",
        str![[r#"
knocker exposedb: pg_hba.conf is left alone: pg_hba.conf is managed by Ansible (line 1: # Ansible managed); change the rules in its source instead; edits made here would be overwritten, so the edit was refused
Add --force to do it anyway.

"#]],
    );
    assert_eq!(std::fs::read(&hba).unwrap(), before, "nothing changed");
    expect(
        &p,
        &p.knocker(&["--add", "127.0.0.2", "--json"]),
        1,
        snapbox::file!["exposedb_e2e/add_refused_managed_file.json"],
        str![[r#"
knocker exposedb: pg_hba.conf is left alone: pg_hba.conf is managed by Ansible (line 1: # Ansible managed); change the rules in its source instead; edits made here would be overwritten, so the edit was refused
Add --force to do it anyway.

"#]],
    );
    ok(p.knocker(&["--add", "127.0.0.2", "--force"]));
    expect(&p, &p.knocker(&["--list"]), 0, "127.0.0.2/32\n", "");
}

async fn deinit_reassigns_what_the_remote_role_owns_and_refuses_other_databases(major: u32) {
    let p = Primary::start(major, None).await;
    let password = p.init_password();
    ok(p.knocker(&["--add", "127.0.0.2"]));
    // A table the remote role owns itself (SET ROLE to its own name),
    // which alone would make DROP ROLE fail with 2BP01.
    let remote = remote_from(&p, "127.0.0.2", &password).await.unwrap();
    remote
        .batch_execute(
            "SET ROLE knocknoc_remote; CREATE TABLE mine(x int); INSERT INTO mine VALUES (42);",
        )
        .await
        .unwrap();
    drop(remote);
    // A privilege in another database: not knocker's to decide.
    let admin = p.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE elsewhere(x int); GRANT SELECT ON elsewhere TO knocknoc_remote;",
        )
        .await
        .unwrap();

    let before = everything(&p).await;
    expect(
        &p,
        &p.knocker(&["--deinit", "--no-restart"]),
        1,
        "",
        str![[r#"
knocker exposedb: planning to drop the remote role: role "knocknoc_remote" owns objects or holds privileges in database(s) postgres; only those in database "knocknoc" are reassigned. In each of those databases run REASSIGN OWNED BY "knocknoc_remote" TO "knocknoc"; DROP OWNED BY "knocknoc_remote"; (or drop the objects), then run this again

"#]],
    );
    assert_eq!(
        everything(&p).await,
        before,
        "a refused --deinit changed something"
    );

    admin
        .batch_execute("REVOKE SELECT ON elsewhere FROM knocknoc_remote")
        .await
        .unwrap();
    expect(
        &p,
        &p.knocker(&["--deinit", "--no-restart", "--json"]),
        0,
        snapbox::file!["exposedb_e2e/deinit_after_revoke.json"],
        "",
    );
    assert!(!roles(&p).await.contains(&"knocknoc_remote".to_string()));
    // The data stays, now owned by the application's role.
    let app =
        p.pg.connect_as("knocknoc", "app-secret", "knocknoc")
            .await
            .unwrap();
    let row = app
        .query_one(
            "SELECT (SELECT tableowner::text FROM pg_tables WHERE tablename = 'mine'), \
                    (SELECT x FROM mine)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "knocknoc");
    assert_eq!(row.get::<_, i32>(1), 42);
}

async fn user_name_with_space_quote_and_comma_is_quoted_everywhere_and_connects(major: u32) {
    let p = Primary::start(major, None).await;
    let name = "web \"nodes\", remote";
    let init = p.init(&["--user", name, "--json"]);
    // Percent-encoded in the URI.
    let (_, uri) = expect_new_password(
        &p,
        &init,
        snapbox::file!["exposedb_e2e/init_quoted_user.json"],
    );
    ok(p.knocker(&["--add", "127.0.0.2", "--user", name]));
    expect(
        &p,
        &p.knocker(&["--list", "--user", name]),
        0,
        "127.0.0.2/32\n",
        "",
    );
    // Quoted in pg_hba.conf, and the server reads the token back as
    // exactly that name.
    let hba = std::fs::read_to_string(p.pg.hba_file()).unwrap();
    assert!(
        hba.contains("knocknoc \"web \"\"nodes\"\", remote\" 127.0.0.2/32 scram-sha-256"),
        "{hba}"
    );
    let rules =
        p.pg.connect()
            .await
            .query(
                "SELECT user_name::text[] FROM pg_hba_file_rules WHERE address = '127.0.0.2'",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].get::<_, Vec<String>>(0), vec![name.to_string()]);

    // The secondary connects with the printed string, decoded the way
    // libpq decodes it (pgctl's parser), from the allowed address ...
    let info = pgctl::conninfo::ConnInfo::parse(&uri).unwrap();
    use pgctl::conninfo::Keyword;
    let (user, pw, db) = (
        info.get(Keyword::User).unwrap(),
        info.get(Keyword::Password).unwrap(),
        info.get(Keyword::Dbname).unwrap(),
    );
    assert_eq!(user, name);
    let client =
        p.pg.connect_from(ip("127.0.0.2"), user, pw, db)
            .await
            .expect("the secondary connects with the printed string");
    let row = client
        .query_one("SELECT session_user::text, current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), name);
    assert_eq!(row.get::<_, String>(1), "knocknoc");
    // ... and libpq itself (psql) reads the printed URI the same way.
    let psql = Command::new("psql")
        .arg(&uri)
        .args(["-XAtc", "SELECT session_user"])
        .output()
        .unwrap();
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim_end(), name);

    // Gone again with --deinit, block and role.
    expect(
        &p,
        &p.knocker(&["--deinit", "--no-restart", "--user", name]),
        0,
        str![[r#"
Removed the knocker block from [HBA].
Dropped role web "nodes", remote.

"#]],
        "",
    );
    assert!(!roles(&p).await.contains(&name.to_string()));
}

/// An operator's reject that the server reads before the block from
/// another file: from 16 an `include`d file (its rules sit at the include
/// line), on 15 (no include directives) an `@file` user list. `--add`
/// stops naming the file and line, `--explain` names the included file's
/// line, and the server agrees from 127.0.0.2 / 127.0.0.3.
async fn reject_in_another_file_stops_add_and_explain_names_it(major: u32) {
    let (p, password) = exposed(major).await;
    let dir = p.pg.hba_file().parent().unwrap().to_path_buf();
    // The reject's file and line as `--add` and `--explain` name them.
    let (directive, place, rule, hit) = if major >= 16 {
        std::fs::write(
            dir.join("ops.conf"),
            "# operator's rules\nhost all all 127.0.0.2/32 reject\n",
        )
        .unwrap();
        (
            "include ops.conf",
            "[DATA]/ops.conf line 2 (included from pg_hba.conf)",
            "host all all 127.0.0.2/32 reject",
            "[DATA]/ops.conf:2",
        )
    } else {
        std::fs::write(dir.join("ops.txt"), "knocknoc_remote\n").unwrap();
        (
            "host all @ops.txt 127.0.0.2/32 reject",
            "pg_hba.conf line 7",
            "host all @ops.txt 127.0.0.2/32 reject",
            "[HBA]:7",
        )
    };
    hba_with(&p, &format!("{directive}\n"));
    p.pg.reload().await;
    add_stopped(&p, "127.0.0.0/30", place, rule);
    ok(p.knocker(&["--add", "127.0.0.0/30", "--force"]));
    // the reject file's line for 127.0.0.2, the block for 127.0.0.3
    let (file, line) = hit.split_once(':').unwrap();
    let explained =
        explain_agrees_with_server(&p, &password, line.parse().unwrap(), false, "reject").await;
    assert_eq!(
        p.redactions(&[])
            .redact(explained["file"].as_str().unwrap()),
        file
    );
    expect(
        &p,
        &p.knocker(&["--explain", "127.0.0.2"]),
        0,
        format!(
            "A connection from 127.0.0.2 to database knocknoc as knocknoc_remote hits {hit} and is rejected:\n[..]\n...\n"
        ),
        "",
    );
    let explained = json(&ok(p.knocker(&["--explain", "127.0.0.3", "--json"])));
    assert_eq!(explained["certain"], true, "{explained}");
    assert_eq!(explained["allowed"], true, "{explained}");
    assert!(
        remote_from(&p, "127.0.0.3", &password).await.is_ok(),
        "the block admits the rest"
    );
}

// `--explain` asks the server whether the remote role is a member of a
// `+group` before the block: certain either way, and the server agrees.
// `--add` does not resolve groups: a `+group` reject stops it (the
// operator's reject wins) until forced.
async fn group_reject_resolved_by_explain(major: u32) {
    let (p, password) = exposed(major).await;
    let admin = p.pg.connect().await;
    admin
        .batch_execute("CREATE ROLE ops NOLOGIN")
        .await
        .unwrap();
    hba_with(&p, "host all +ops 127.0.0.2/32 reject\n");
    add_stopped(
        &p,
        "127.0.0.2/32",
        "pg_hba.conf line 7",
        "host all +ops 127.0.0.2/32 reject",
    );
    ok(p.knocker(&["--add", "127.0.0.2/32", "--force"]));
    for (member, line) in [(false, 9), (true, 7)] {
        if member {
            admin
                .batch_execute("GRANT ops TO knocknoc_remote")
                .await
                .unwrap();
        }
        let case = format!("member {member}");
        explain_agrees_with_server(&p, &password, line, !member, &case).await;
    }
}

/// sslmode in the printed string: `require` for a certificate the system's
/// trust store cannot verify for the advertised name, `verify-full` (with
/// the system's roots) for one it can. The harness's certificate is signed
/// by a throwaway CA; `SSL_CERT_FILE` makes it the system's trust store.
#[tokio::test]
async fn sslmode_is_verify_full_only_when_the_system_trusts_the_certificate_pg17() {
    let p = Primary::start_opts(17, None, &[], true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, p.pg.ca_cert_pem()).unwrap();
    let ca = ca.to_str().unwrap();
    let rotate = |advertise: &str| {
        p.knocker_env(
            &[
                "--rotate-password",
                "--no-restart",
                "--advertise",
                advertise,
                "--json",
            ],
            &[("SSL_CERT_FILE", ca)],
        )
    };

    // CA unknown to this host: require, and a hint about sslrootcert.
    let o = ok(p.knocker(&["--init", "--no-restart", "--advertise", "localhost"]));
    expect_printed_password(
        &p,
        &o,
        snapbox::file!["exposedb_e2e/init_created_untrusted_ca.stdout"],
        snapbox::file!["exposedb_e2e/restart_warning.stderr"],
    );
    let hba = std::fs::read_to_string(p.pg.hba_file()).unwrap();
    assert!(hba.contains("# BEGIN knocker"), "{hba}");

    // Trusted, and the certificate names the advertised host: verify-full.
    let o = rotate("localhost");
    let (_, uri) = expect_new_password(
        &p,
        &o,
        snapbox::file!["exposedb_e2e/rotate_verify_full.json"],
    );
    // A secondary trusting the same CA connects with exactly that string,
    // verifying the chain and the name: a child process whose system
    // trust store is that CA (this process's environment stays as it is,
    // for the other tests in this binary).
    let child = Command::new(std::env::current_exe().unwrap())
        .args([CONNECT_CHILD_TEST, "--exact", "--nocapture"])
        .env(CONNECT_CHILD_URI, &uri)
        .env("SSL_CERT_FILE", ca)
        .output()
        .unwrap();
    assert!(
        child.status.success() && stdout(&child).contains("1 passed"),
        "the secondary's connection failed:\n{}{}",
        stdout(&child),
        stderr(&child)
    );

    // Trusted CA, but the advertised address is not in the certificate:
    // verify-full would fail there, so require.
    let o = rotate("127.0.0.2");
    expect_new_password(
        &p,
        &o,
        snapbox::file!["exposedb_e2e/rotate_require_unnamed_address.json"],
    );
}

/// The test that connects in the child process of
/// `sslmode_is_verify_full_only_when_the_system_trusts_the_certificate_pg17`.
const CONNECT_CHILD_TEST: &str = "exposedb_e2e::connect_child_entry";
/// The connection string that child connects with.
const CONNECT_CHILD_URI: &str = "KNOCKER_TEST_CONNECT_URI";

/// Entry point of that child (this binary re-run with `--exact` and
/// [`CONNECT_CHILD_URI`] set): connects with exactly the printed string,
/// trusting the system's roots, and runs a query. Does nothing in a
/// normal test run.
#[tokio::test]
async fn connect_child_entry() {
    let Ok(uri) = std::env::var(CONNECT_CHILD_URI) else {
        return;
    };
    let info = pgctl::conninfo::ConnInfo::parse(&uri).unwrap();
    let params = pgctl::conninfo::resolve(&info, &pgctl::conninfo::MapEnvironment::new())
        .unwrap()
        .params;
    let client = pgctl::connect::connect(&params)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_client();
    // verify-full cannot have gone without TLS; the session works.
    client.query_one("SELECT 1", &[]).await.unwrap();
}

/// Runs each `async fn NAME(major: u32)` above on PostgreSQL 15 to 18, as
/// the tests `NAME::pg15` .. `NAME::pg18`. The bodies are plain functions
/// rather than `pg_test!` blocks so that each `str![]` knows its own line,
/// which `SNAPSHOTS=overwrite` needs.
macro_rules! on_every_version {
    ($($name:ident),* $(,)?) => {
        $(pg_harness::pg_test!(
            async fn $name(major: u32) {
                super::$name(major).await;
            }
        );)*
    };
}

on_every_version!(
    flow_on_default_hba,
    flow_with_catch_all_reject,
    narrower_operator_reject_wins_unless_forced,
    operator_lines_before_the_block_judged_like_the_server,
    hostile_input_exits_2_and_changes_nothing,
    dry_run_prints_diff_and_planned_sql_and_changes_nothing,
    rotate_password_prints_a_working_new_password_once,
    warns_about_ipv6_cidrs_without_ipv6_listening_and_small_max_connections,
    rule_comment_names_the_effective_user_without_sudo_user_or_user,
    dry_run_sql_is_the_sql_the_server_receives,
    managed_file_refused_with_the_force_hint_once,
    deinit_reassigns_what_the_remote_role_owns_and_refuses_other_databases,
    user_name_with_space_quote_and_comma_is_quoted_everywhere_and_connects,
    reject_in_another_file_stops_add_and_explain_names_it,
    group_reject_resolved_by_explain,
);
