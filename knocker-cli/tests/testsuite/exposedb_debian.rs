//! `knocker exposedb` on a stock Debian cluster (pg_createcluster), run as
//! root the way an operator would: no --admin-conn (peer login as
//! `postgres` over /var/run/postgresql), no --yes with standard input not a
//! terminal, restart through pg_ctlcluster, `hostssl` rules with the
//! snakeoil certificate, and a secondary connecting with exactly the
//! printed string.

use std::process::{Command, Output, Stdio};

use pg_harness::DebianCluster;
use snapbox::str;

use crate::common;

/// The placeholders of [`common::redactions`] for a Debian cluster's
/// files, port and name (`[CONF_DIR]` /etc/postgresql/N/NAME, `[CLUSTER]`
/// NAME).
fn redactions(cluster: &DebianCluster, secrets: &[&str]) -> snapbox::Redactions {
    let mut r = common::redactions(
        &[
            ("[HBA]", cluster.hba_file()),
            ("[CONF_DIR]", cluster.conf_dir()),
            ("[DATA]", cluster.data_dir()),
            ("[LOG]", cluster.log_file()),
        ],
        cluster.port(),
        secrets,
    );
    r.insert("[CLUSTER]", cluster.name().to_string()).unwrap();
    r
}

fn knocker(conf: &std::path::Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_knocker"))
        .arg("exposedb")
        .arg("--config")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

async fn connect(uri: &str, source: &str) -> Result<tokio_postgres::Client, String> {
    let info = pgctl::conninfo::ConnInfo::parse(uri).map_err(|e| e.to_string())?;
    let params = pgctl::conninfo::resolve_from_process_env(&info)
        .map_err(|e| e.to_string())?
        .params;
    pgctl::connect::connect_from(&params, source.parse().unwrap())
        .await
        .map(|c| c.into_client())
        .map_err(|e| e.to_string())
}

#[test]
fn debian_cluster_as_root_without_admin_conn_or_yes() {
    pg_harness::block_on(async {
        let cluster = DebianCluster::create(15).await;
        let admin = cluster.connect().await.unwrap();
        for sql in [
            "CREATE ROLE knocknoc LOGIN PASSWORD 'app-secret'",
            "CREATE DATABASE knocknoc OWNER knocknoc",
        ] {
            admin.batch_execute(sql).await.unwrap();
        }
        let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        assert_eq!(ssl, "on", "Debian clusters use the snakeoil certificate");
        drop(admin);
        let dir = tempfile::tempdir().unwrap();
        let conf = common::knocknoc_conf(dir.path(), cluster.port());
        let hba_meta = std::fs::metadata(cluster.hba_file()).unwrap();

        // The secondary at 127.0.0.2 reaches the primary at 127.0.0.1.
        let init = knocker(&conf, &["--init", "--advertise", "127.0.0.1"]);
        let text = String::from_utf8_lossy(&init.stdout).into_owned();
        let uris = common::printed_uris(&text);
        assert_eq!(uris.len(), 1, "exactly one connection string:\n{text}");
        let uri = uris[0].as_str();
        let password = common::uri_password(uri);
        common::assert_password_form(&password);
        // sslmode=require and the snakeoil certificate's fingerprint; the
        // restart through pg_ctlcluster without a question.
        let secrets = [password.as_str()];
        common::expect_output(
            redactions(&cluster, &secrets),
            &init,
            0,
            str![[r#"
Connection string for the secondary web nodes (shown only now; keep it safe):

  postgres://knocknoc_remote:[PASSWORD]@127.0.0.1:[PORT]/knocknoc?sslmode=require

Created login role knocknoc_remote (scram-sha-256), acting as knocknoc in database knocknoc.
Added the (empty) knocker block to [HBA].
listen_addresses = '0.0.0.0' (PostgreSQL restarted).
Next: allow each secondary with: knocker exposedb --add "ADDRESS/32"
Firewall: open TCP port [PORT] only to those addresses (e.g. ufw allow from ADDRESS to any port [PORT] proto tcp).
The server certificate is self-signed; its SHA-256 fingerprint is
  [FINGERPRINT]
Secondaries connect with sslmode=require (encrypted, not verified). To verify it, save the certificate (the certificate_pem field of --json) and use sslrootcert=FILE with sslmode=verify-ca.

"#]],
            str![[r#"
PostgreSQL will be restarted (pg_ctlcluster (cluster 15/[CLUSTER])) to change listen_addresses; the Knocknoc web app on this host loses its database connections for a few seconds.

"#]],
        );
        assert!(cluster.log().lines().count() > 0);

        // Not yet allowed.
        assert!(connect(uri, "127.0.0.2").await.is_err());
        let add = knocker(&conf, &["--add", "127.0.0.2/32"]);
        common::expect_output(
            redactions(&cluster, &[]),
            &add,
            0,
            str![[r#"
Allowed 127.0.0.2/32 to connect to database knocknoc as knocknoc_remote (hostssl, scram-sha-256).
[HBA] updated and reloaded.

"#]],
            "",
        );
        let client = connect(uri, "127.0.0.2")
            .await
            .expect("the printed string works from 127.0.0.2");
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, "knocknoc");
        // The same string from 127.0.0.3 is refused.
        let err = connect(uri, "127.0.0.3")
            .await
            .expect_err("127.0.0.3 is not allowed");
        assert!(err.contains("pg_hba.conf"), "{err}");

        use std::os::unix::fs::MetadataExt;
        let after = std::fs::metadata(cluster.hba_file()).unwrap();
        assert_eq!(
            (after.mode(), after.uid(), after.gid()),
            (hba_meta.mode(), hba_meta.uid(), hba_meta.gid())
        );
        assert!(
            !cluster.log().contains(&password),
            "password in the server log"
        );

        let deinit = knocker(&conf, &["--deinit"]);
        common::expect_output(
            redactions(&cluster, &[]),
            &deinit,
            0,
            str![[r#"
Removed the knocker block from [HBA].
Dropped role knocknoc_remote.
listen_addresses reset to 'localhost' (PostgreSQL restarted).

"#]],
            str![[r#"
PostgreSQL will be restarted (pg_ctlcluster (cluster 15/[CLUSTER])) to change listen_addresses; the Knocknoc web app on this host loses its database connections for a few seconds.

"#]],
        );
        assert!(connect(uri, "127.0.0.2").await.is_err());
        let hba = std::fs::read_to_string(cluster.hba_file()).unwrap();
        assert!(!hba.contains("knocker"));
    });
}
