//! The knocker tests' one setup: a primary with a Knocknoc database and a
//! knocknoc.conf pointing at it, and `knocker exposedb` run against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pg_harness::{Cluster, ClusterOptions};

/// Writes `dir/knocknoc.conf` with the application's connection string
/// (role and database `knocknoc`, password `app-secret`, port `port`).
pub fn knocknoc_conf(dir: &Path, port: u16) -> PathBuf {
    let conf = dir.join("knocknoc.conf");
    std::fs::write(
        &conf,
        format!(
            "Listen = 127.0.0.1:8756\nDatabaseURL = \"postgres://knocknoc:app-secret@127.0.0.1:{port}/knocknoc\"\n"
        ),
    )
    .unwrap();
    conf
}

/// A primary with a Knocknoc database and a knocknoc.conf pointing at it.
pub struct Primary {
    /// The server.
    pub pg: Cluster,
    _dir: tempfile::TempDir,
    /// Its knocknoc.conf.
    pub conf: PathBuf,
}

impl Primary {
    /// Started with `options` (connections and statements logged on top),
    /// role and database `knocknoc` created.
    pub async fn start_with_options(major: u32, mut options: ClusterOptions) -> Primary {
        let mut settings = vec![
            ("log_connections".to_string(), "on".to_string()),
            ("log_statement".to_string(), "all".to_string()),
        ];
        settings.append(&mut options.settings);
        options.settings = settings;
        let pg = Cluster::start_with(major, options).await;
        pg.create_role("knocknoc", "app-secret").await;
        pg.create_database("knocknoc", "knocknoc").await;
        let dir = tempfile::tempdir().unwrap();
        let conf = knocknoc_conf(dir.path(), pg.port());
        Primary {
            pg,
            _dir: dir,
            conf,
        }
    }

    /// With the harness's pg_hba.conf or `hba`.
    pub async fn start(major: u32, hba: Option<&str>) -> Primary {
        Primary::start_opts(major, hba, &[], false).await
    }

    /// With extra server settings.
    pub async fn start_with(major: u32, hba: Option<&str>, settings: &[(&str, &str)]) -> Primary {
        Primary::start_opts(major, hba, settings, false).await
    }

    /// With extra server settings, and SSL on when `ssl` (a certificate
    /// signed by the harness's throwaway CA, naming localhost).
    pub async fn start_opts(
        major: u32,
        hba: Option<&str>,
        settings: &[(&str, &str)],
        ssl: bool,
    ) -> Primary {
        Primary::start_with_options(
            major,
            ClusterOptions {
                hba: hba.map(str::to_string),
                settings: settings
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ssl,
                ..Default::default()
            },
        )
        .await
    }

    /// The superuser connection string `--admin-conn` gets.
    pub fn admin_conn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.pg.port()
        )
    }

    /// The command `knocker exposedb --config CONF --admin-conn .. ARGS`,
    /// standard input closed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_knocker"));
        cmd.arg("exposedb")
            .arg("--config")
            .arg(&self.conf)
            .arg("--admin-conn")
            .arg(self.admin_conn())
            .args(args)
            .stdin(Stdio::null())
            .env_remove("SSL_CERT_FILE");
        cmd
    }
}

/// Runs `knocker COMMAND ARGS` with standard input closed (no terminal
/// to ask on) and waits for it.
pub fn knocker(command: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_knocker"))
        .arg(command)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl Primary {
    /// The placeholders expected outputs use for this primary's values
    /// ([`redactions`] of its paths and port; `[CONF]` its knocknoc.conf).
    pub fn redactions(&self, secrets: &[&str]) -> snapbox::Redactions {
        let mut r = redactions(
            &[
                ("[HBA]", self.pg.hba_file()),
                ("[DATA]", self.pg.data_dir().to_path_buf()),
                ("[BIN]", self.pg.bin_dir()),
                ("[LOG]", self.pg.log_file().to_path_buf()),
            ],
            self.pg.port(),
            secrets,
        );
        r.insert("[CONF]", self.conf.clone()).unwrap();
        r
    }
}

/// The placeholders expected outputs use for a run's values: `paths`
/// (placeholder, path), the server's `port`, `secrets` (passwords printed
/// once, as `[PASSWORD]`), UTC timestamps (`[TIMESTAMP]`) and users
/// (`[USER]`) as rule comments write them, and certificate fingerprints
/// (`[FINGERPRINT]`). A longer value is replaced before a shorter one, so
/// a file's placeholder wins over its directory's.
pub fn redactions(
    paths: &[(&'static str, PathBuf)],
    port: u16,
    secrets: &[&str],
) -> snapbox::Redactions {
    let mut r = snapbox::Redactions::new();
    for (placeholder, path) in paths {
        r.insert(placeholder, path.clone()).unwrap();
    }
    let port = regex::Regex::new(&format!(r"\b{port}\b")).unwrap();
    r.insert("[PORT]", port).unwrap();
    let timestamp = regex::Regex::new(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b").unwrap();
    r.insert("[TIMESTAMP]", timestamp).unwrap();
    // Rule comments name who ran knocker: SUDO_USER or USER, else the
    // effective user (from the password database).
    let users: Vec<String> = ["SUDO_USER", "USER"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .chain(pgctl::os::effective_user_name())
        .map(|u| regex::escape(&u))
        .collect();
    let by = format!(r"(?m)\bby (?<redacted>{})$", users.join("|"));
    r.insert("[USER]", regex::Regex::new(&by).unwrap()).unwrap();
    // Throwaway certificates differ each run.
    let fingerprint = regex::Regex::new(r"\b([0-9A-F]{2}:){31}[0-9A-F]{2}\b").unwrap();
    r.insert("[FINGERPRINT]", fingerprint).unwrap();
    for s in secrets {
        r.insert("[PASSWORD]", s.to_string()).unwrap();
    }
    r
}

/// Checks a run whole with snapbox: standard output, standard error and
/// exit code, `redactions` standing for the run's values. `SNAPSHOTS=
/// overwrite` rewrites the expectations (inline `str![]` or files).
pub fn expect_output(
    redactions: snapbox::Redactions,
    o: &Output,
    code: i32,
    out: impl snapbox::IntoData,
    err: impl snapbox::IntoData,
) {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let assert = assert_with(redactions);
    assert.eq(String::from_utf8_lossy(&o.stdout).into_owned(), out);
    assert.eq(stderr.clone(), err);
    assert_eq!(o.status.code(), Some(code), "{stderr}");
}

/// Checks `text` (a terminal's transcript, say) whole against `expected`.
pub fn expect_text(redactions: snapbox::Redactions, text: &str, expected: impl snapbox::IntoData) {
    assert_with(redactions).eq(text.to_string(), expected);
}

fn assert_with(redactions: snapbox::Redactions) -> snapbox::Assert {
    snapbox::Assert::new()
        .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
        // Backslashes are the output's own (`\n` in a quoted argument).
        .normalize_paths(false)
        .redact_with(redactions)
}

/// Asserts the form of a password knocker generates: 32 characters of the
/// URL-safe alphabet.
pub fn assert_password_form(password: &str) {
    assert!(
        password.len() == 32
            && password
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not a generated password: {password:?}"
    );
}

/// The connection strings a text-mode run printed.
pub fn printed_uris(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.starts_with("postgres://"))
        .map(str::to_string)
        .collect()
}

/// The password of `postgres://user:PASSWORD@...`.
pub fn uri_password(uri: &str) -> String {
    let rest = uri.strip_prefix("postgres://").unwrap();
    let userinfo = &rest[..rest.rfind('@').unwrap()];
    userinfo[userinfo.find(':').unwrap() + 1..].to_string()
}
