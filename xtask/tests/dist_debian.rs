//! The Debian package for real, as root: `cargo xtask dist` makes it,
//! lintian finds no error, `dpkg -i` installs it, the binaries, man pages
//! and bash completion work, and `dpkg -r` leaves the machine as it was.
//!
//! It packages the `knocker` and `knocknoc-installer` that the test build
//! made in the same target directory (`--bin-dir`, `--fast`: no release
//! build, gzip instead of xz), so it checks the packaging, not the
//! optimiser. Needs dpkg-dev, man-db and lintian (`cargo xtask test`
//! installs them when missing).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The directories the package writes into (and dpkg's own record of it).
const WATCHED: [&str; 9] = [
    "/opt",
    "/usr/bin",
    "/usr/share/man/man1",
    "/usr/share/bash-completion/completions",
    "/usr/share/zsh/vendor-completions",
    "/usr/share/fish",
    "/usr/share/doc",
    "/usr/share/lintian/overrides",
    "/var/lib/dpkg/info",
];

/// Every path under the watched directories, with the symlink target or
/// the size, so that a change of any kind shows.
fn snapshot() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                out.insert(format!("{} -> {}", path.display(), target.display()));
            } else if meta.is_dir() {
                out.insert(format!("{}/", path.display()));
                walk(&path, out);
            } else {
                out.insert(format!("{} ({} bytes)", path.display(), meta.len()));
            }
        }
    }
    let mut out = BTreeSet::new();
    for dir in WATCHED {
        if Path::new(dir).is_dir() {
            out.insert(format!("{dir}/"));
        }
        walk(Path::new(dir), &mut out);
    }
    out
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn package_installed() -> bool {
    let out = run(
        "dpkg-query",
        &["--show", "--showformat=${db:Status-Abbrev}", "knocker"],
    );
    out.status.success() && out.stdout.starts_with(b"ii")
}

/// Removes the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if package_installed() {
            let _ = run("dpkg", &["--remove", "knocker"]);
        }
    }
}

/// Completes `line` with the bash completion file as bash-completion would
/// (`COMP_WORDS` etc.), returning the candidates.
fn bash_complete(file: &str, command: &str, line: &str) -> Vec<String> {
    let script = format!(
        r#"source {file}
func=$(complete -p {command} | sed -n 's/.*-F \([^ ]*\).*/\1/p')
COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
"$func" {command} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = run("bash", &["-c", &script]);
    assert_success("bash completion", &out);
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn debian_package_installs_works_and_removes_cleanly() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test installs a package: run it as root, like the rest of the suite"
    );
    for (tool, package) in [
        ("lintian", "lintian"),
        ("man", "man-db"),
        ("dpkg-shlibdeps", "dpkg-dev"),
    ] {
        assert!(
            run("sh", &["-c", &format!("command -v {tool}")])
                .status
                .success(),
            "{tool} is missing: `cargo xtask test` installs it (apt-get install {package})"
        );
    }
    assert!(
        !package_installed(),
        "the package knocker is installed on this machine: this test would remove it"
    );
    let started = std::time::Instant::now();

    // Build.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_xtask")).parent().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let dist = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dist", "--fast", "--bin-dir"])
        .arg(bin_dir)
        .arg("--out-dir")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert_success("cargo xtask dist", &dist);
    let deb = PathBuf::from(stdout(&dist).trim());
    let arch = stdout(&run("dpkg", &["--print-architecture"]));
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!("knocker_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim())
    );
    let deb = deb.to_str().unwrap();
    let built = started.elapsed();

    // The control fields.
    let fields = stdout(&run("dpkg-deb", &["--field", deb]));
    assert!(fields.contains("\nDepends: libc6 (>= "), "{fields}");
    assert!(
        fields.contains("\nRecommends: postgresql-client\n"),
        "{fields}"
    );

    // lintian: no error (the files in /opt carry an override that says why).
    let lintian = run("lintian", &["--fail-on", "error", deb]);
    assert_success("lintian", &lintian);
    assert!(
        !stdout(&lintian).lines().any(|l| l.starts_with("E:")),
        "{}",
        stdout(&lintian)
    );
    let linted = started.elapsed();

    let before = snapshot();
    let installed = Installed;
    assert_success("dpkg -i", &run("dpkg", &["--install", deb]));

    // The binaries, where the Knocknoc documentation runs them and on PATH.
    let knocker_version = stdout(&run("/opt/knocknoc/knocker/knocker", &["--version"]));
    for bin in [
        "/opt/knocknoc/knocker/knocker",
        "/usr/bin/knocker",
        "/opt/knocknoc/knocker/knocknoc-installer",
        "/usr/bin/knocknoc-installer",
    ] {
        let out = run(bin, &["--version"]);
        assert_success(bin, &out);
        let name = Path::new(bin).file_name().unwrap().to_string_lossy();
        let version = stdout(&out);
        assert!(
            version.starts_with(&format!("{name} {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{version}"
        );
    }

    // A man page per command and subcommand; man finds and renders them.
    for page in [
        "knocker",
        "knocker-exposedb",
        "knocker-hba",
        "knocker-hba-lint",
        "knocknoc-installer",
    ] {
        let out = run("man", &["-w", page]);
        assert_success(
            &format!(
                "man -w {page} (if the file is missing, is /usr/share/man excluded by a \
                 path-exclude in /etc/dpkg/dpkg.cfg.d, as in Docker's slim images?)"
            ),
            &out,
        );
        assert_eq!(
            stdout(&out).trim(),
            format!("/usr/share/man/man1/{page}.1.gz")
        );
    }
    // Rendered from the file man found (`-l`: man-db's cache of formatted
    // pages in /var/cache/man is keyed by the page's mtime, which is the
    // commit's time, so it could hold another build's page of that commit).
    let render = |page: &str| {
        let out = Command::new("man")
            .args(["-P", "cat", "-l"])
            .arg(format!("/usr/share/man/man1/{page}.1.gz"))
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert_success(&format!("man {page}"), &out);
        stdout(&out)
    };
    let rendered = render("knocker-exposedb");
    assert!(rendered.contains("--init"), "{rendered}");
    assert!(rendered.contains("--add <CIDR>"), "{rendered}");
    // The man page names the packaged build, not whatever xtask was built from.
    let rendered = render("knocker");
    let build = knocker_version.trim().split_once(' ').unwrap().1;
    assert!(rendered.contains(build), "{build} not in\n{rendered}");

    // Completions: bash for real, zsh and fish by content.
    let bash = "/usr/share/bash-completion/completions/knocker";
    let options = bash_complete(bash, "knocker", "knocker exposedb --");
    for option in ["--init", "--add", "--remove", "--list", "--conn"] {
        assert!(
            options.iter().any(|o| o == option),
            "{option} not in {options:?}"
        );
    }
    let commands = bash_complete(bash, "knocker", "knocker ");
    assert!(commands.iter().any(|c| c == "exposedb"), "{commands:?}");
    let installer = bash_complete(
        "/usr/share/bash-completion/completions/knocknoc-installer",
        "knocknoc-installer",
        "knocknoc-installer --db",
    );
    assert!(
        installer.iter().any(|o| o == "--db-option"),
        "{installer:?}"
    );
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_knocker").unwrap();
    assert!(zsh.starts_with("#compdef knocker"), "{zsh}");
    assert!(zsh.contains("'--init["), "{zsh}");
    let fish =
        std::fs::read_to_string("/usr/share/fish/vendor_completions.d/knocker.fish").unwrap();
    assert!(fish.contains("-l init"), "{fish}");

    // Documentation.
    for doc in ["README.md", "changelog.gz", "copyright"] {
        assert!(
            Path::new("/usr/share/doc/knocker").join(doc).is_file(),
            "{doc}"
        );
    }

    // Removal leaves exactly what was there before.
    assert_success("dpkg -r", &run("dpkg", &["--remove", "knocker"]));
    drop(installed);
    assert!(!package_installed());
    let after = snapshot();
    let left: Vec<_> = after.difference(&before).collect();
    let lost: Vec<_> = before.difference(&after).collect();
    assert!(
        left.is_empty() && lost.is_empty(),
        "left behind: {left:?}\nremoved: {lost:?}"
    );
    eprintln!(
        "package built in {:.1} s, lintian {:.1} s, whole test {:.1} s",
        built.as_secs_f64(),
        (linted - built).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
