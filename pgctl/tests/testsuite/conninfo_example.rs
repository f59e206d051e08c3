//! The `conninfo` example's contract: one flat JSON object of what the
//! string set (libpq keyword order, verbatim, password `********`) on
//! stdout and status 0; libpq's error text on stderr and status 1 for a
//! rejected string.
//!
//! `cargo test` (and `cargo nextest`) build the examples next to the test
//! binaries, in `target/<profile>/examples/`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/conninfo
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("conninfo"))
        .expect("test binary lives in target/<profile>/deps");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p pgctl --example conninfo`",
        path.display()
    );
    path
}

fn run(arg: &str) -> Output {
    Command::new(example())
        .arg(arg)
        .output()
        .expect("run example")
}

#[test]
fn prints_what_the_string_set_as_flat_json_with_password_hidden() {
    let out = run("postgresql://app:s3cret@h1,[::1]:5433,/knocknoc?sslmode=require&ssl=true");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        "{\"user\":\"app\",\"password\":\"********\",\"dbname\":\"knocknoc\",\
         \"host\":\"h1,::1,\",\"port\":\",5433,\",\"sslmode\":\"require\"}\n"
    );
    assert!(!stdout.contains("s3cret"));
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(value.is_object());
}

#[test]
fn keyword_value_strings_are_verbatim() {
    let out = run("host=/var/run/postgresql port=5432 sslmode=bogus password='a \\'b'");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"password\":\"********\",\"host\":\"/var/run/postgresql\",\"port\":\"5432\",\"sslmode\":\"bogus\"}\n"
    );
}

#[test]
fn rejected_strings_print_libpq_text_on_stderr_and_exit_1() {
    let out = run("postgresql://u:topsecret@[::1");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \
         \"postgresql://u:********@[::1\"\n"
    );
    let out = run("host=a bogus=1");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "invalid connection option \"bogus\"\n"
    );
}
