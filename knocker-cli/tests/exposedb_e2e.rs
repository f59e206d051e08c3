//! `knocker exposedb` end to end through the built binary against real
//! servers 15-18: allow/deny proven from other loopback addresses.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::Primary;

/// What these tests ask of the shared primary.
trait Knocker {
    /// `--init` without restart, advertising 127.0.0.1: the new password.
    fn init_password(&self) -> String;
    /// Runs `knocker exposedb ARGS`.
    fn knocker(&self, args: &[&str]) -> Output;
    /// Runs it with `env` set.
    fn knocker_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output;
}

impl Knocker for Primary {
    fn init_password(&self) -> String {
        let init = json(&ok(self.knocker(&[
            "--init",
            "--no-restart",
            "--advertise",
            "127.0.0.1",
            "--json",
        ])));
        init["password"].as_str().unwrap().to_string()
    }

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

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
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

/// The whole flow on one primary: init, add, list, allow from 127.0.0.2 and
/// deny from 127.0.0.3, idempotence, explain, remove --terminate, deinit.
async fn whole_flow(p: &Primary) {
    let before = mode_and_owner(&p.pg.hba_file());
    let init = json(&ok(p.knocker(&[
        "--init",
        "--no-restart",
        "--advertise",
        "127.0.0.1",
        "--json",
    ])));
    assert_eq!(init["version"], 1);
    assert_eq!(init["role_outcome"], "created");
    let password = init["password"].as_str().unwrap().to_string();
    let uri = init["connection_string"].as_str().unwrap();
    assert_eq!(
        uri,
        format!(
            "postgres://knocknoc_remote:{password}@127.0.0.1:{}/knocknoc",
            p.pg.port()
        )
    );
    p.pg.restart().await;

    // Nobody outside 127.0.0.1 gets in before --add.
    assert!(p
        .pg
        .connect_from(ip("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
        .await
        .is_err());
    let add = ok(p.knocker(&["--add", "127.0.0.2"]));
    assert!(
        stdout(&add).contains("Allowed 127.0.0.2/32"),
        "{}",
        stdout(&add)
    );
    assert_eq!(stdout(&ok(p.knocker(&["--list"]))), "127.0.0.2/32\n");

    let client =
        p.pg.connect_from(ip("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
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
    let err =
        p.pg.connect_from(ip("127.0.0.3"), "knocknoc_remote", &*password, "knocknoc")
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
    let again = ok(p.knocker(&["--add", "127.0.0.2/32"]));
    assert!(stdout(&again).contains("already allowed"));
    assert_eq!(snapshot(p), (hba, auto));
    let rerun = json(&ok(p.knocker(&[
        "--init",
        "--no-restart",
        "--advertise",
        "127.0.0.1",
        "--json",
    ])));
    assert_eq!(rerun["role_outcome"], "unchanged");
    assert_eq!(rerun["changed"], false);
    assert!(rerun["password"].is_null());

    let e2 = json(&ok(p.knocker(&["--explain", "127.0.0.2", "--json"])));
    assert_eq!(e2["allowed"], true);
    assert_eq!(e2["method"], "scram-sha-256");
    let e3 = json(&ok(p.knocker(&["--explain", "127.0.0.3", "--json"])));
    assert_eq!(e3["allowed"], false);

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
    let removed = json(&ok(p.knocker(&[
        "--remove",
        "127.0.0.2/32",
        "--terminate",
        "--json",
    ])));
    assert_eq!(removed["removed"][0], "127.0.0.2/32");
    assert_eq!(removed["terminated_sessions"], 1);
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    assert!(p
        .pg
        .connect_from(ip("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
        .await
        .is_err());
    let absent = ok(p.knocker(&["--remove", "127.0.0.2/32"]));
    assert!(stdout(&absent).contains("nothing to remove"));

    let de = json(&ok(p.knocker(&["--deinit", "--no-restart", "--json"])));
    assert_eq!(de["role_dropped"], true);
    assert!(!roles(p).await.contains(&"knocknoc_remote".to_string()));
    assert!(!String::from_utf8(std::fs::read(p.pg.hba_file()).unwrap())
        .unwrap()
        .contains("knocker"));
}

pg_harness::pg_test!(
    async fn flow_on_default_hba(major: u32) {
        let p = Primary::start(major, None).await;
        whole_flow(&p).await;
    }
);

pg_harness::pg_test!(
    async fn flow_with_catch_all_reject(major: u32) {
        let hba = format!(
            "{}host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n",
            pg_harness::DEFAULT_HBA
        );
        let p = Primary::start(major, Some(&hba)).await;
        whole_flow(&p).await;
    }
);

pg_harness::pg_test!(
    async fn narrower_operator_reject_wins_unless_forced(major: u32) {
        let hba = format!(
            "{}host all all 127.0.0.2/32 reject\n",
            pg_harness::DEFAULT_HBA
        );
        let p = Primary::start(major, Some(&hba)).await;
        ok(p.knocker(&["--init", "--no-restart", "--advertise", "127.0.0.1"]));
        let before = snapshot(&p);
        let o = p.knocker(&["--add", "127.0.0.0/30"]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("line 7") && err.contains("127.0.0.2/32 reject"),
            "{err}"
        );
        assert_eq!(snapshot(&p), before, "nothing changed");
        ok(p.knocker(&["--add", "127.0.0.0/30", "--force"]));
        assert_eq!(stdout(&ok(p.knocker(&["--list"]))), "127.0.0.0/30\n");
    }
);

// Regression for the block's own matcher, replaced by pghba's shadow and
// matcher: each operator line before the block, judged by the server. A
// line that stops `--add` must really reject 127.0.0.2 once forced past,
// one that does not must really let it in, and `--explain` must say what
// the server does. Quoted `/regex` tokens are regexes on 16+ (the old code
// read them as names), `/regex` is a name before 16 (the old code took it
// for a possible regex), `sameuser` cannot meet database `knocknoc` as role
// `knocknoc_remote`; a `hostnossl` reject takes the plain connections a
// `host` rule admits.
pg_harness::pg_test!(
    async fn operator_lines_before_the_block_judged_like_the_server(major: u32) {
        let p = Primary::start(major, None).await;
        let password = p.init_password();
        p.pg.restart().await;
        let regex_rejects = major >= 16;
        for (line, stops) in [
            ("host \"/^knock\" all 127.0.0.2/32 reject", regex_rejects),
            ("host /^knock all 127.0.0.2/32 reject", regex_rejects),
            ("host all /^admin 127.0.0.2/32 reject", false),
            ("host sameuser all 127.0.0.2/32 reject", false),
            ("hostnossl all all 127.0.0.2/32 reject", true),
        ] {
            std::fs::write(
                p.pg.hba_file(),
                format!("{}{line}\n", pg_harness::DEFAULT_HBA),
            )
            .unwrap();
            let add = p.knocker(&["--add", "127.0.0.2/32"]);
            assert_eq!(
                add.status.code(),
                Some(if stops { 1 } else { 0 }),
                "{line}: {}",
                String::from_utf8_lossy(&add.stderr)
            );
            if stops {
                assert!(
                    String::from_utf8_lossy(&add.stderr).contains("line 7"),
                    "{line}: {}",
                    String::from_utf8_lossy(&add.stderr)
                );
                ok(p.knocker(&["--add", "127.0.0.2/32", "--force"]));
            }
            let explained = json(&ok(p.knocker(&["--explain", "127.0.0.2", "--json"])));
            assert_eq!(explained["certain"], true, "{line}: {explained}");
            let connected =
                p.pg.connect_from(ip("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
                    .await
                    .is_ok();
            assert_eq!(
                connected, !stops,
                "{line}: the server disagrees with the plan"
            );
            assert_eq!(explained["allowed"], connected, "{line}: {explained}");
            let expected_line = if stops { 7 } else { 9 };
            assert_eq!(explained["line"], expected_line, "{line}: {explained}");
        }
    }
);

pg_harness::pg_test!(
    async fn hostile_input_exits_2_and_changes_nothing(major: u32) {
        let p = Primary::start(major, None).await;
        let before = (snapshot(&p), roles(&p).await);
        for args in [
            &["--add", "example.com"][..],
            &["--add", "10.0.0.1/24"],
            &["--add", "0.0.0.0/0"],
            &["--add", "::/0"],
            &["--add", "10.0.0.1\nhost all all all trust"],
            &["--add", "10.0.0.1\" trust"],
            &["--add", "10.0.0.1 #"],
            &["--remove", "10.0.0.0/33"],
            &["--add", "10.0.0.1", "--remove", "10.0.0.1"],
            &["--init", "--list"],
            &[
                "--init",
                "--user",
                "x\nhost all all all trust",
                "--no-restart",
            ],
            &["--init", "--listen", "0.0.0.0'; x", "--no-restart"],
            &["--explain", "10.0.0.0/8"],
            &["--terminate"],
        ] {
            let o = p.knocker(args);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let o = run(&[
            "exposedb",
            "--list",
            "--conn",
            "postgres://knocknoc@127.0.0.1:1/knocknoc?sslmod=require",
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert_eq!((snapshot(&p), roles(&p).await), before);
    }
);

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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--dry-run` of --init, --add, --remove --terminate and --deinit prints
/// the diff and the exact SQL of the pgctl plans (the password only as a
/// placeholder) and changes nothing.
async fn dry_run_changes_nothing(major: u32) {
    let p = Primary::start(major, None).await;
    let hba = p.pg.hba_file().display().to_string();

    let before = everything(&p).await;
    let o = ok(p.knocker(&["--init", "--dry-run", "--no-restart"]));
    assert_eq!(
        everything(&p).await,
        before,
        "--init --dry-run changed something"
    );
    let grant = if major >= 16 {
        "  GRANT \"knocknoc\" TO \"knocknoc_remote\" WITH INHERIT TRUE, SET TRUE;\n".to_string()
    } else {
        "  ALTER ROLE \"knocknoc_remote\" INHERIT;\n  GRANT \"knocknoc\" TO \"knocknoc_remote\";\n"
            .to_string()
    };
    snapbox::assert_data_eq!(
        stdout(&o),
        format!(
            r#"Dry run: nothing changed.
pg_hba.conf would change like this:
--- {hba}
+++ {hba} (new)
@@ [..] @@
...
+# BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
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
        )
    );
    assert!(
        !stdout(&o).contains("SCRAM-SHA-256$"),
        "no verifier printed"
    );

    let init = json(&ok(p.knocker(&[
        "--init",
        "--no-restart",
        "--advertise",
        "127.0.0.1",
        "--json",
    ])));
    let password = init["password"].as_str().unwrap().to_string();

    // A rerun with --rotate-password: only the ALTER ROLE, with the placeholder.
    let before = everything(&p).await;
    let o = ok(p.knocker(&["--init", "--rotate-password", "--dry-run", "--no-restart"]));
    assert_eq!(everything(&p).await, before);
    snapbox::assert_data_eq!(
        stdout(&o),
        r#"Dry run: nothing changed.
pg_hba.conf would not change.
SQL it would run:
  ALTER ROLE "knocknoc_remote" LOGIN PASSWORD '<generated>';
  COMMENT ON ROLE "knocknoc_remote" IS 'managed by knocker';
  ALTER SYSTEM SET listen_addresses = '0.0.0.0[..]';
Then PostgreSQL would be restarted for listen_addresses.
"#
    );

    let o = ok(p.knocker(&["--add", "127.0.0.2", "--add", "2001:db8::/64", "--dry-run"]));
    assert_eq!(
        everything(&p).await,
        before,
        "--add --dry-run changed something"
    );
    snapbox::assert_data_eq!(
        stdout(&o),
        format!(
            r#"Dry run: nothing changed.
pg_hba.conf would change like this:
--- {hba}
+++ {hba} (new)
@@ [..] @@
...
 # BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
+host[..]knocknoc knocknoc_remote 127.0.0.2/32 scram-sha-256 # added [..] by [..]
+host[..]knocknoc knocknoc_remote 2001:db8::/64 scram-sha-256 # added [..] by [..]
 # END knocker exposedb
...
SQL it would run:
  SELECT pg_catalog.pg_reload_conf();
"#
        )
    );

    ok(p.knocker(&["--add", "127.0.0.2"]));
    let before = everything(&p).await;
    let o = ok(p.knocker(&["--remove", "127.0.0.2", "--terminate", "--dry-run"]));
    assert_eq!(
        everything(&p).await,
        before,
        "--remove --dry-run changed something"
    );
    snapbox::assert_data_eq!(
        stdout(&o),
        format!(
            r#"Dry run: nothing changed.
pg_hba.conf would change like this:
--- {hba}
+++ {hba} (new)
@@ [..] @@
...
 # BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
-host[..]knocknoc knocknoc_remote 127.0.0.2/32 scram-sha-256 # added [..] by [..]
 # END knocker exposedb
...
SQL it would run:
  SELECT pg_catalog.pg_reload_conf();
  SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)) FROM pg_catalog.pg_stat_activity WHERE client_addr <<= '127.0.0.2/32'::inet AND usename = 'knocknoc_remote' AND pid <> pg_catalog.pg_backend_pid();
"#
        )
    );

    let o = ok(p.knocker(&["--deinit", "--dry-run", "--no-restart"]));
    assert_eq!(
        everything(&p).await,
        before,
        "--deinit --dry-run changed something"
    );
    snapbox::assert_data_eq!(
        stdout(&o),
        format!(
            r#"Dry run: nothing changed.
pg_hba.conf would change like this:
--- {hba}
+++ {hba} (new)
@@ [..] @@
...
-# BEGIN knocker exposedb (managed by knocker; edit with knocker exposedb)
-host[..]knocknoc knocknoc_remote 127.0.0.2/32 scram-sha-256 # added [..] by [..]
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
        )
    );
    // The password the real --init printed still works: nothing rotated.
    p.pg.connect_from(ip("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
        .await
        .expect("the password is unchanged after the dry runs");
}

pg_harness::pg_test!(
    async fn dry_run_prints_diff_and_planned_sql_and_changes_nothing(major: u32) {
        dry_run_changes_nothing(major).await;
    }
);

/// The connection string lines of a text-mode run.
fn printed_uris(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.starts_with("postgres://"))
        .map(str::to_string)
        .collect()
}

/// The password of `postgres://user:PASSWORD@...`.
fn uri_password(uri: &str) -> String {
    let rest = uri.strip_prefix("postgres://").unwrap();
    let userinfo = &rest[..rest.rfind('@').unwrap()];
    userinfo[userinfo.find(':').unwrap() + 1..].to_string()
}

async fn login_refused(p: &Primary, password: &str) -> bool {
    match p
        .pg
        .connect_from(ip("127.0.0.2"), "knocknoc_remote", password, "knocknoc")
        .await
    {
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

pg_harness::pg_test!(
    async fn rotate_password_prints_a_working_new_password_once(major: u32) {
        let p = Primary::start(major, None).await;
        let first = p.init_password();
        ok(p.knocker(&["--add", "127.0.0.2"]));
        assert!(!login_refused(&p, &first).await);

        // --init --rotate-password (text): the new string, printed once.
        let o = ok(p.knocker(&[
            "--init",
            "--rotate-password",
            "--no-restart",
            "--advertise",
            "127.0.0.1",
        ]));
        let (out, err) = (stdout(&o), stderr(&o));
        let uris = printed_uris(&out);
        assert_eq!(uris.len(), 1, "{out}");
        let second = uri_password(&uris[0]);
        assert_ne!(second, first);
        assert_eq!(
            out.matches(&second).count() + err.matches(&second).count(),
            1,
            "printed exactly once:\n{out}\n{err}"
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
        let j = json(&ok(p.knocker(&[
            "--rotate-password",
            "--no-restart",
            "--advertise",
            "127.0.0.1",
            "--json",
        ])));
        assert_eq!(j["role_outcome"], "rotated");
        let third = j["password"].as_str().unwrap().to_string();
        assert_eq!(
            j["connection_string"],
            format!(
                "postgres://knocknoc_remote:{third}@127.0.0.1:{}/knocknoc",
                p.pg.port()
            )
        );
        assert!(login_refused(&p, &second).await);
        assert!(!login_refused(&p, &third).await);

        // A plain rerun shows no password at all.
        let o = ok(p.knocker(&["--init", "--no-restart", "--advertise", "127.0.0.1"]));
        assert!(printed_uris(&stdout(&o)).is_empty(), "{}", stdout(&o));

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
);

pg_harness::pg_test!(
    async fn warns_about_ipv6_cidrs_without_ipv6_listening_and_small_max_connections(major: u32) {
        let p = Primary::start_with(
            major,
            None,
            &[("listen_addresses", "127.0.0.1"), ("max_connections", "40")],
        )
        .await;
        // 3 web nodes (the default) with pools of 20 need about 60
        // connections, more than 40.
        let o = ok(p.knocker(&["--init", "--no-restart", "--advertise", "127.0.0.1"]));
        let err = stderr(&o);
        assert!(
            err.contains("warning: 3 web nodes with pools of 20 need about 60 connections; max_connections is 40"),
            "{err}"
        );
        let j = json(&ok(p.knocker(&[
            "--init",
            "--no-restart",
            "--advertise",
            "127.0.0.1",
            "--json",
        ])));
        assert_eq!(j["max_connections"], 40);
        assert!(
            j["warnings"].to_string().contains("max_connections is 40"),
            "{j}"
        );
        // One node fits: no warning.
        let o = ok(p.knocker(&[
            "--init",
            "--no-restart",
            "--advertise",
            "127.0.0.1",
            "--nodes",
            "1",
        ]));
        assert!(!stderr(&o).contains("max_connections"), "{}", stderr(&o));

        // The server listens on 127.0.0.1 (0.0.0.0 after the restart), not
        // on IPv6: an IPv6 CIDR gets a warning, an IPv4 one does not.
        p.pg.restart().await;
        let o = ok(p.knocker(&["--add", "2001:db8::/64"]));
        let err = stderr(&o);
        assert!(
            err.contains("warning: 2001:db8::/64 is IPv6 but the server does not listen on IPv6 (listen_addresses = '0.0.0.0')"),
            "{err}"
        );
        let o = ok(p.knocker(&["--add", "127.0.0.2"]));
        assert!(!stderr(&o).contains("IPv6"), "{}", stderr(&o));
        let j = json(&ok(p.knocker(&["--add", "2001:db8:1::/48", "--json"])));
        assert!(
            j["warnings"]
                .to_string()
                .contains("does not listen on IPv6"),
            "{j}"
        );
    }
);

pg_harness::pg_test!(
    /// Regression: with neither SUDO_USER nor USER (a root login shell,
    /// cron, a service) the rule comment said "by unknown"; it names the
    /// effective user from the password database.
    async fn rule_comment_names_the_effective_user_without_sudo_user_or_user(major: u32) {
        let p = Primary::start(major, None).await;
        ok(p.knocker(&["--init", "--no-restart", "--advertise", "127.0.0.1"]));
        let o = p
            .command(&["--add", "127.0.0.2"])
            .env_remove("SUDO_USER")
            .env_remove("USER")
            .output()
            .unwrap();
        ok(o);
        let listed = json(&ok(p.knocker(&["--list", "--json"])));
        let comment = listed["rules"][0]["comment"].as_str().unwrap().to_string();
        // The tests run as root.
        assert!(comment.ends_with(" by root"), "{comment}");
        assert!(comment.starts_with("added 20"), "{comment}");
    }
);

pg_harness::pg_test!(
    /// Regression: `--dry-run` printed `SELECT pg_catalog.pg_reload_conf()`
    /// while the installation sent `select pg_reload_conf()`. Every
    /// statement the dry run lists is the one the server then logs.
    async fn dry_run_sql_is_the_sql_the_server_receives(major: u32) {
        let p = Primary::start(major, None).await;
        ok(p.knocker(&["--init", "--no-restart", "--advertise", "127.0.0.1"]));
        ok(p.knocker(&["--add", "127.0.0.5"]));
        let plan = json(&ok(p.knocker(&[
            "--add",
            "127.0.0.2",
            "--remove",
            "127.0.0.5",
            "--terminate",
            "--dry-run",
            "--json",
        ])));
        let sql: Vec<String> = plan["sql"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(sql.len(), 2, "{plan}");
        assert_eq!(sql[0], "SELECT pg_catalog.pg_reload_conf()");
        ok(p.knocker(&["--add", "127.0.0.2", "--remove", "127.0.0.5", "--terminate"]));
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
);

pg_harness::pg_test!(
    /// A pg_hba.conf another tool manages is refused, the flag hint said
    /// once (pgctl names no flag; the CLI adds it), JSON carries the kind
    /// and the causes, and --force passes the check.
    async fn managed_file_refused_with_the_force_hint_once(major: u32) {
        let p = Primary::start(major, None).await;
        ok(p.knocker(&["--init", "--no-restart", "--advertise", "127.0.0.1"]));
        let hba = p.pg.hba_file();
        let original = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("# Ansible managed\n{original}")).unwrap();
        let before = std::fs::read(&hba).unwrap();
        let o = p.knocker(&["--add", "127.0.0.2"]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(
            err.contains("pg_hba.conf is left alone: pg_hba.conf is managed by Ansible"),
            "{err}"
        );
        assert_eq!(err.matches("--force").count(), 1, "{err}");
        assert!(err.ends_with("Add --force to do it anyway.\n"), "{err}");
        assert_eq!(std::fs::read(&hba).unwrap(), before, "nothing changed");
        let j = json(&p.knocker(&["--add", "127.0.0.2", "--json"]));
        assert_eq!(j["ok"], false);
        assert_eq!(j["error"]["kind"], "refused", "{j}");
        assert_eq!(j["error"]["message"], "pg_hba.conf is left alone", "{j}");
        assert!(
            j["error"]["causes"][0]
                .as_str()
                .unwrap()
                .contains("Ansible"),
            "{j}"
        );
        ok(p.knocker(&["--add", "127.0.0.2", "--force"]));
        assert_eq!(stdout(&ok(p.knocker(&["--list"]))), "127.0.0.2/32\n");
    }
);

pg_harness::pg_test!(
    async fn deinit_reassigns_what_the_remote_role_owns_and_refuses_other_databases(major: u32) {
        let p = Primary::start(major, None).await;
        let init = json(&ok(p.knocker(&[
            "--init",
            "--no-restart",
            "--advertise",
            "127.0.0.1",
            "--json",
        ])));
        let password = init["password"].as_str().unwrap().to_string();
        ok(p.knocker(&["--add", "127.0.0.2"]));
        // A table the remote role owns itself (SET ROLE to its own name),
        // which alone would make DROP ROLE fail with 2BP01.
        let remote =
            p.pg.connect_from(ip("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
                .await
                .unwrap();
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
        let o = p.knocker(&["--deinit", "--no-restart"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("owns objects or holds privileges in database(s) postgres")
                && err.contains(
                    "REASSIGN OWNED BY \"knocknoc_remote\" TO \"knocknoc\"; DROP OWNED BY \"knocknoc_remote\";"
                ),
            "{err}"
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
        let de = json(&ok(p.knocker(&["--deinit", "--no-restart", "--json"])));
        assert_eq!(de["role_dropped"], true);
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
);

pg_harness::pg_test!(
    async fn user_name_with_space_quote_and_comma_is_quoted_everywhere_and_connects(major: u32) {
        let p = Primary::start(major, None).await;
        let name = "web \"nodes\", remote";
        let init = json(&ok(p.knocker(&[
            "--init",
            "--no-restart",
            "--advertise",
            "127.0.0.1",
            "--user",
            name,
            "--json",
        ])));
        let password = init["password"].as_str().unwrap().to_string();
        let uri = init["connection_string"].as_str().unwrap().to_string();
        // Percent-encoded in the URI.
        assert_eq!(
            uri,
            format!(
                "postgres://web%20%22nodes%22%2C%20remote:{password}@127.0.0.1:{}/knocknoc",
                p.pg.port()
            )
        );
        ok(p.knocker(&["--add", "127.0.0.2", "--user", name]));
        assert_eq!(
            stdout(&ok(p.knocker(&["--list", "--user", name]))),
            "127.0.0.2/32\n"
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
        ok(p.knocker(&["--deinit", "--no-restart", "--user", name]));
        assert!(!roles(&p).await.contains(&name.to_string()));
    }
);

/// An operator's reject that the server reads before the block from
/// another file: from 16 an `include`d file (its rules sit at the include
/// line), on 15 (no include directives) an `@file` user list. `--add`
/// stops naming the file and line, `--explain` names the included file's
/// line, and the server agrees from 127.0.0.2 / 127.0.0.3.
async fn reject_from_another_file(major: u32) {
    let p = Primary::start(major, None).await;
    let password = p.init_password();
    p.pg.restart().await;
    let dir = p.pg.hba_file().parent().unwrap().to_path_buf();
    let (extra, line, directive, stop_says) = if major >= 16 {
        let extra = dir.join("ops.conf");
        std::fs::write(
            &extra,
            "# operator's rules\nhost all all 127.0.0.2/32 reject\n",
        )
        .unwrap();
        let say = format!("{} line 2 (included from pg_hba.conf)", extra.display());
        (extra, 2, "include ops.conf", say)
    } else {
        let extra = dir.join("ops.txt");
        std::fs::write(&extra, "knocknoc_remote\n").unwrap();
        let say = "pg_hba.conf line 7".to_string();
        (extra, 7, "host all @ops.txt 127.0.0.2/32 reject", say)
    };
    std::fs::write(
        p.pg.hba_file(),
        format!("{}{directive}\n", pg_harness::DEFAULT_HBA),
    )
    .unwrap();
    p.pg.reload().await;
    let before = snapshot(&p);
    let o = p.knocker(&["--add", "127.0.0.0/30"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&stop_says), "{err}");
    assert!(err.contains("127.0.0.2/32 reject"), "{err}");
    assert_eq!(snapshot(&p), before, "nothing changed");
    ok(p.knocker(&["--add", "127.0.0.0/30", "--force"]));
    // the reject file's line for 127.0.0.2, the block for 127.0.0.3
    let hit_file = if major >= 16 {
        extra.display().to_string()
    } else {
        p.pg.hba_file().display().to_string()
    };
    let explained = json(&ok(p.knocker(&["--explain", "127.0.0.2", "--json"])));
    assert_eq!(explained["certain"], true, "{explained}");
    assert_eq!(explained["allowed"], false, "{explained}");
    assert_eq!(
        (explained["file"].as_str(), explained["line"].as_u64()),
        (Some(hit_file.as_str()), Some(line)),
        "{explained}"
    );
    let text = stdout(&ok(p.knocker(&["--explain", "127.0.0.2"])));
    assert!(text.contains(&format!("{hit_file}:{line}")), "{text}");
    let explained = json(&ok(p.knocker(&["--explain", "127.0.0.3", "--json"])));
    assert_eq!(explained["certain"], true, "{explained}");
    assert_eq!(explained["allowed"], true, "{explained}");
    let from = |a: &'static str| {
        let pw = password.clone();
        let pg = &p.pg;
        async move {
            pg.connect_from(ip(a), "knocknoc_remote", &*pw, "knocknoc")
                .await
                .is_ok()
        }
    };
    assert!(!from("127.0.0.2").await, "the included reject wins");
    assert!(from("127.0.0.3").await, "the block admits the rest");
}

pg_harness::pg_test!(
    async fn reject_in_another_file_stops_add_and_explain_names_it(major: u32) {
        reject_from_another_file(major).await;
    }
);

// `--explain` asks the server whether the remote role is a member of a
// `+group` before the block: certain either way, and the server agrees.
// `--add` does not resolve groups: a `+group` reject stops it (the
// operator's reject wins) until forced.
pg_harness::pg_test!(
    async fn group_reject_resolved_by_explain(major: u32) {
        let p = Primary::start(major, None).await;
        let password = p.init_password();
        p.pg.restart().await;
        let admin = p.pg.connect().await;
        admin
            .batch_execute("CREATE ROLE ops NOLOGIN")
            .await
            .unwrap();
        std::fs::write(
            p.pg.hba_file(),
            format!(
                "{}host all +ops 127.0.0.2/32 reject\n",
                pg_harness::DEFAULT_HBA
            ),
        )
        .unwrap();
        let o = p.knocker(&["--add", "127.0.0.2/32"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("pg_hba.conf line 7"));
        ok(p.knocker(&["--add", "127.0.0.2/32", "--force"]));
        let login = || {
            p.pg.connect_from(ip("127.0.0.2"), "knocknoc_remote", &*password, "knocknoc")
        };
        for (member, line) in [(false, 9), (true, 7)] {
            if member {
                admin
                    .batch_execute("GRANT ops TO knocknoc_remote")
                    .await
                    .unwrap();
            }
            let explained = json(&ok(p.knocker(&["--explain", "127.0.0.2", "--json"])));
            assert_eq!(explained["certain"], true, "member {member}: {explained}");
            assert_eq!(explained["line"], line, "member {member}: {explained}");
            assert_eq!(
                explained["allowed"], !member,
                "member {member}: {explained}"
            );
            assert_eq!(
                login().await.is_ok(),
                !member,
                "member {member}: the server disagrees with --explain"
            );
        }
    }
);
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
    let port = p.pg.port();

    // CA unknown to this host: require, and a hint about sslrootcert.
    let o = ok(p.knocker(&["--init", "--no-restart", "--advertise", "localhost"]));
    let out = stdout(&o);
    let uris = printed_uris(&out);
    assert_eq!(uris.len(), 1, "{out}");
    assert!(
        uris[0].ends_with(&format!("@localhost:{port}/knocknoc?sslmode=require")),
        "{out}"
    );
    assert!(
        out.contains("signed by a CA this host's trust store does not know"),
        "{out}"
    );
    assert!(!out.contains("self-signed"), "{out}");
    let hba = std::fs::read_to_string(p.pg.hba_file()).unwrap();
    assert!(hba.contains("# BEGIN knocker"), "{hba}");

    // Trusted, and the certificate names the advertised host: verify-full.
    let j = json(&ok(p.knocker_env(
        &[
            "--rotate-password",
            "--no-restart",
            "--advertise",
            "localhost",
            "--json",
        ],
        &[("SSL_CERT_FILE", ca)],
    )));
    assert_eq!(j["verify_full"], true, "{j}");
    let uri = j["connection_string"].as_str().unwrap().to_string();
    assert!(
        uri.ends_with(&format!(
            "@localhost:{port}/knocknoc?sslmode=verify-full&sslrootcert=system"
        )),
        "{uri}"
    );
    // A secondary trusting the same CA connects with exactly that string,
    // verifying the chain and the name.
    std::env::set_var("SSL_CERT_FILE", ca);
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

    // Trusted CA, but the advertised address is not in the certificate:
    // verify-full would fail there, so require.
    let j = json(&ok(p.knocker_env(
        &[
            "--rotate-password",
            "--no-restart",
            "--advertise",
            "127.0.0.2",
            "--json",
        ],
        &[("SSL_CERT_FILE", ca)],
    )));
    assert_eq!(j["verify_full"], false, "{j}");
    assert!(
        j["connection_string"]
            .as_str()
            .unwrap()
            .ends_with("?sslmode=require"),
        "{j}"
    );
}
