//! The dialogue driven through a real pseudo-terminal, as an operator or an
//! `expect` script would: prompts matched byte for byte (trailing space
//! included), answers typed in order.

/// Named so that nextest counts these tests as PostgreSQL-server tests
/// (`.config/nextest.toml`: at most four at once).
mod pg_server {
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use crate::common::*;
    use expectrl::{ControlCode, Eof, Session};
    use knocknoc_conf::{DatabaseUrl, Listen, TrustedForwarders};

    const LISTEN_FRESH: &str = "Enter IP and port to listen on (default: 127.0.0.1:8756): ";
    const FORWARDERS_FRESH: &str = "Enter TrustedForwarders (default: 127.0.0.1/32): ";
    const OPTION_FRESH: &str = "Option 1, 2, or 3? (default is 1): ";
    const URL_PROMPT: &str = "Enter pre-existing external Knocknoc database connection string: ";

    /// A session of the installer on a pty; `envs` are added (NO_COLOR and TERM
    /// are removed first so each test says what it wants).
    fn spawn(config: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Session {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(config).args(extra);
        cmd.env_remove("NO_COLOR")
            .env_remove("KNOCKNOC_DB_URL")
            .env("TERM", "xterm");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut s = Session::spawn(cmd).expect("spawn on a pty");
        s.set_expect_timeout(Some(Duration::from_secs(60)));
        s
    }

    /// Everything printed, collected as the test goes.
    #[derive(Default)]
    struct Transcript(Vec<u8>);

    impl Transcript {
        fn expect(&mut self, s: &mut Session, needle: &str) {
            let found = s.expect(needle).unwrap_or_else(|e| {
                panic!("waiting for {needle:?}: {e}\nso far:\n{}", self.text())
            });
            self.0.extend_from_slice(found.before());
            self.0.extend_from_slice(needle.as_bytes());
        }

        fn finish(&mut self, s: &mut Session) -> String {
            let rest = s.expect(Eof).expect("the installer ends");
            self.0.extend_from_slice(rest.as_bytes());
            self.text()
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0).into_owned()
        }

        /// Waits for `prompt`, then types `reply` and Enter.
        fn answer(&mut self, s: &mut Session, prompt: &str, reply: impl AsRef<str>) {
            self.expect(s, prompt);
            s.send_line(reply.as_ref()).unwrap();
        }

        /// Takes the default listen address and forwarders of a fresh host
        /// (Enter twice), then picks database option `option`.
        fn defaults_then_option(&mut self, s: &mut Session, option: &str) {
            self.answer(s, LISTEN_FRESH, "");
            self.answer(s, FORWARDERS_FRESH, "");
            self.answer(s, OPTION_FRESH, option);
        }

        /// [`finish`](Self::finish), checking that the installer exited
        /// with status 0.
        fn finish_ok(&mut self, s: &mut Session) -> String {
            let all = self.finish(s);
            let st = status(s);
            assert!(
                st.contains("Exited(") && st.ends_with(", 0)"),
                "{st}\n{all}"
            );
            all
        }

        /// [`finish`](Self::finish), checking that the installer ended by
        /// SIGINT (Ctrl-C on the terminal).
        fn finish_interrupted(&mut self, s: &mut Session) -> String {
            let all = self.finish(s);
            let st = status(s);
            assert!(st.contains("SIGINT"), "{st}\n{all}");
            all
        }
    }

    /// Everything printed holds no escape sequence, as `why` demands.
    fn assert_no_escapes(all: &str, why: &str) {
        assert!(
            !all.contains('\x1b'),
            "{why} must get no escape sequences: {all:?}"
        );
    }

    /// `Exited(pid, CODE)` / `Signaled(pid, SIG, core)` as text.
    fn status(s: &Session) -> String {
        format!("{:?}", s.get_process().wait().expect("wait"))
    }

    #[tokio::test]
    async fn dialogue_answers_in_order_like_a_script() {
        let (_pg, _dir, config, url) = app_setup(17).await;
        let mut s = spawn(&config, &[], &[("TERM", "dumb")]);
        let mut t = Transcript::default();
        t.expect(&mut s, "Knocknoc installer");
        t.expect(&mut s, "starting fresh");
        t.answer(&mut s, LISTEN_FRESH, "0.0.0.0:8080");
        t.expect(&mut s, "reverse proxies");
        t.answer(&mut s, FORWARDERS_FRESH, "10.0.0.0/8, 192.168.1.0/24");
        t.expect(&mut s, "1. use a local PostgreSQL installation");
        t.expect(
            &mut s,
            "2. use a new external or preconfigured PostgreSQL database",
        );
        t.expect(
            &mut s,
            "3. this server is a web node only, use a pre-existing external Knocknoc database",
        );
        t.answer(&mut s, OPTION_FRESH, "3");
        t.answer(&mut s, URL_PROMPT, &url);
        let all = t.finish_ok(&mut s);
        assert_no_escapes(&all, "TERM=dumb");
        let settings = written(&config);
        assert_answers(&settings, "0.0.0.0:8080", "10.0.0.0/8,192.168.1.0/24");
        assert_eq!(settings.database_url, Some(DatabaseUrl::new(url).unwrap()));
    }

    #[tokio::test]
    async fn dialogue_bad_answers_are_explained_and_the_same_prompt_comes_back() {
        let (pg, _dir, config, url) = app_setup(17).await;
        let mut s = spawn(&config, &[], &[("NO_COLOR", "1")]);
        let mut t = Transcript::default();
        t.answer(&mut s, LISTEN_FRESH, "localhost:80");
        t.expect(&mut s, "is not an IP address");
        t.answer(&mut s, LISTEN_FRESH, "[::1]:70000");
        t.expect(&mut s, "is not a port number");
        t.answer(&mut s, LISTEN_FRESH, "");
        t.answer(&mut s, FORWARDERS_FRESH, "10.0.0.1/8");
        t.expect(&mut s, "host bits are set; the network is 10.0.0.0/8");
        t.answer(&mut s, FORWARDERS_FRESH, "");
        t.answer(&mut s, OPTION_FRESH, "4");
        t.expect(&mut s, "is not an option");
        t.answer(&mut s, OPTION_FRESH, "3");
        t.answer(
            &mut s,
            URL_PROMPT,
            "postgres://app@127.0.0.1/knocknoc?sslmod=require",
        );
        t.expect(&mut s, "Not a valid connection string");
        t.answer(&mut s, URL_PROMPT, app_url(&pg, "knocknoc", "wrong"));
        t.expect(&mut s, "password authentication failed");
        t.expect(&mut s, "Press Enter to retry");
        t.answer(&mut s, URL_PROMPT, &url);
        let all = t.finish_ok(&mut s);
        assert_no_escapes(&all, "NO_COLOR");
        let settings = written(&config);
        assert_eq!(settings.listen, Some(Listen::DEFAULT));
        assert_eq!(
            settings.trusted_forwarders,
            Some(TrustedForwarders::default())
        );
        assert_eq!(settings.database_url, Some(DatabaseUrl::new(url).unwrap()));
    }

    #[test]
    fn dialogue_uses_colour_only_when_allowed() {
        // The counterpart of the TERM=dumb / NO_COLOR checks: on a capable
        // terminal the banner is bold, so those checks can fail.
        let (_dir, config) = config_in_tempdir();
        let mut s = spawn(&config, &[], &[]);
        let mut t = Transcript::default();
        t.expect(&mut s, LISTEN_FRESH);
        s.send(ControlCode::EndOfText).unwrap();
        let all = t.finish(&mut s);
        assert!(all.contains("\x1b[1mKnocknoc installer"), "{all:?}");
    }

    const EXISTING: &str = "# Knocknoc configuration\n\
CustomScripts = true   # keep me\n\
Listen = 0.0.0.0:9000\n\
\n\
# proxies\n\
TrustedForwarders = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n\
FutureKey = 'unknown to the installer'\n";

    #[test]
    fn dialogue_ctrl_c_midway_leaves_the_file_untouched() {
        let (dir, config) = config_in_tempdir();
        std::fs::write(&config, EXISTING).unwrap();
        let mut s = spawn(&config, &[], &[("NO_COLOR", "1")]);
        let mut t = Transcript::default();
        t.expect(&mut s, "Existing configuration detected");
        t.answer(
            &mut s,
            "Enter IP and port to listen on (default: 0.0.0.0:9000): ",
            "127.0.0.1:1234",
        );
        t.answer(
            &mut s,
            "Enter TrustedForwarders (default: 10.0.0.0/8, 192.168.0.0/16): ",
            "",
        );
        t.expect(&mut s, OPTION_FRESH);
        s.send(ControlCode::EndOfText).unwrap();
        t.finish_interrupted(&mut s);
        assert_eq!(std::fs::read_to_string(&config).unwrap(), EXISTING);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn dialogue_ctrl_c_on_fresh_host_writes_no_file() {
        let (dir, config) = config_in_tempdir();
        let mut s = spawn(&config, &[], &[("NO_COLOR", "1")]);
        let mut t = Transcript::default();
        t.answer(&mut s, LISTEN_FRESH, "");
        t.expect(&mut s, FORWARDERS_FRESH);
        s.send(ControlCode::EndOfText).unwrap();
        t.finish_interrupted(&mut s);
        assert!(!config.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn dialogue_rerun_takes_every_default_keeping_comments_and_unknown_keys() {
        let pg = app_server(17).await;
        let (_dir, config) = config_in_tempdir();
        // A primary named by a non-local name makes the current choice option 3
        // (hostaddr keeps the test on loopback, with no DNS lookup).
        let url = format!(
        "postgres://app:s3cret%20pass@primary.example:{},127.0.0.1:{}/knocknoc?hostaddr=127.0.0.1,127.0.0.1",
        pg.port(),
        pg.port()
    );
        let original = format!("{EXISTING}DatabaseURL = \"{url}\"  # the shared primary\n");
        std::fs::write(&config, &original).unwrap();
        let mut s = spawn(&config, &[], &[("NO_COLOR", "1")]);
        let mut t = Transcript::default();
        t.expect(&mut s, "Existing configuration detected");
        t.answer(
            &mut s,
            "Enter IP and port to listen on (default: 0.0.0.0:9000): ",
            "",
        );
        t.answer(
            &mut s,
            "Enter TrustedForwarders (default: 10.0.0.0/8, 192.168.0.0/16): ",
            "",
        );
        t.answer(&mut s, "Option 1, 2, or 3? (default is 3): ", "");
        t.answer(&mut s, URL_PROMPT, "");
        let all = t.finish_ok(&mut s);
        assert!(
            all.contains(&format!("127.0.0.1:{}: primary", pg.port())),
            "{all}"
        );
        let settings = written(&config);
        assert_eq!(settings.database_url, Some(DatabaseUrl::new(url).unwrap()));
        let after = std::fs::read_to_string(&config).unwrap();
        for line in original.lines() {
            if !line.starts_with("Listen") && !line.starts_with("TrustedForwarders") {
                assert!(after.contains(line), "line {line:?} lost:\n{after}");
            }
        }
        assert_answers(&settings, "0.0.0.0:9000", "10.0.0.0/8, 192.168.0.0/16");
    }

    #[tokio::test]
    async fn dialogue_pg_hba_refusal_offers_retry_and_succeeds_once_allowed() {
        let (pg, _dir, config, url) = app_setup(17).await;
        let mut s = spawn(
            &config,
            &["--bind-source", "127.0.0.3"],
            &[("NO_COLOR", "1")],
        );
        let mut t = Transcript::default();
        t.defaults_then_option(&mut s, "3");
        t.answer(&mut s, URL_PROMPT, &url);
        t.expect(&mut s, "\nsudo knocker exposedb --add \"127.0.0.3/32\"");
        t.expect(&mut s, "Press Enter to retry");
        t.expect(&mut s, URL_PROMPT);
        // What `knocker exposedb --add` would do on the primary.
        let hba = format!("{HBA}host knocknoc app 127.0.0.3/32 scram-sha-256\n");
        std::fs::write(pg.hba_file(), hba).unwrap();
        pg.reload().await;
        s.send_line("").unwrap();
        t.finish_ok(&mut s);
        assert_eq!(
            written(&config).database_url,
            Some(DatabaseUrl::new(url).unwrap())
        );
    }

    #[test]
    fn end_of_input_midway_exits_2_and_writes_nothing() {
        let (_dir, config) = config_in_tempdir();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"0.0.0.0:80\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(!config.exists());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains('\x1b'),
            "no escapes when stdout is not a terminal"
        );
    }

    #[tokio::test]
    async fn dialogue_option2_nonempty_database_asks_to_confirm() {
        let (_pg, _dir, config, url) = app_setup(17).await;
        let mut s = spawn(&config, &[], &[("NO_COLOR", "1")]);
        let mut t = Transcript::default();
        t.defaults_then_option(&mut s, "2");
        t.answer(
            &mut s,
            "Enter new external PostgreSQL database connection string: ",
            &url,
        );
        t.expect(&mut s, "already holds 1 table(s) (public.users)");
        t.answer(&mut s, "Use it anyway? [y/N]: ", "y");
        t.finish_ok(&mut s);
        assert_eq!(
            written(&config).database_url,
            Some(DatabaseUrl::new(url).unwrap())
        );
    }
}
