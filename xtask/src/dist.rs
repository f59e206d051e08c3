//! `cargo xtask dist`: the Debian package `target/debian/knocker_<version>_<arch>.deb`.
//!
//! Built with `dpkg-deb` from a staging tree this module lays out, rather
//! than with cargo-deb: dpkg-deb and dpkg-shlibdeps come with Debian's dpkg
//! and dpkg-dev (nothing to compile in CI, where `cargo install cargo-deb`
//! would build a hundred crates), every file, mode and control field is in
//! this one file, and the package test can package the debug binaries that
//! the test build already made instead of a release build.
//!
//! The package installs:
//!
//! * `/opt/knocknoc/knocker/knocker` and `knocknoc-installer` (the path the
//!   Knocknoc documentation runs), stripped, linked from `/usr/bin`;
//! * a man page per command and subcommand, generated from the clap
//!   definitions with clap_mangen (`man knocker-exposedb`);
//! * bash, zsh and fish completions from clap_complete, in Debian's
//!   directories for them;
//! * `/usr/share/doc/knocker`: the README, a Debian changelog naming the
//!   commit, the copyright file;
//! * a lintian override for the files in `/opt` (on purpose, see above).
//!
//! Depends are computed by dpkg-shlibdeps (libc6, libgcc-s1);
//! postgresql-client is recommended (`psql` for the operator), not needed.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap_complete::Shell;

use crate::workspace_root;

/// The Debian package name.
const PACKAGE: &str = "knocker";

/// Where the binaries go: the path the Knocknoc documentation uses.
const INSTALL_DIR: &str = "opt/knocknoc/knocker";

/// The binaries, in the package and in cargo's target directory.
const BINARIES: [&str; 2] = ["knocker", "knocknoc-installer"];

/// The Debian packages that building, checking and installing the package
/// needs beyond a Rust toolchain (dpkg-deb itself is in dpkg, always there):
/// `cargo xtask test` installs the missing ones.
pub const TEST_TOOLS: [&str; 3] = ["dpkg-dev", "man-db", "lintian"];

/// The Maintainer field and the changelog's signature.
const MAINTAINER: &str = "knocker developers <knocker@example.invalid>";

const SUMMARY: &str = "tools to run Knocknoc on several nodes with a shared PostgreSQL";

const DESCRIPTION: &str = "\
knocker turns a single-node Knocknoc server into a multi-node deployment.
`knocker exposedb` shares the primary's PostgreSQL database with other web
nodes: it makes the server listen on the network, creates a remote login
role and keeps an allow-list of source networks in pg_hba.conf, with dry
runs, diffs and JSON output. `knocker hba lint` checks a pg_hba.conf file
offline as a given PostgreSQL version would load it.
`knocknoc-installer` configures a Knocknoc node: listen address, trusted
forwarders and database (local, new external, or an existing shared one).";

const USAGE: &str = "\
usage: cargo xtask dist [--bin-dir DIR] [--out-dir DIR] [--fast]

Builds target/debian/knocker_<version>_<arch>.deb (cargo build --release, then dpkg-deb).
  --bin-dir DIR   package the knocker and knocknoc-installer already built in DIR
                  (e.g. target/debug) instead of building them
  --out-dir DIR   write the .deb into DIR instead of target/debian
  --fast          compress with gzip -1 instead of xz (0.2 s instead of 7 s; for tests)
";

/// `cargo xtask dist [--bin-dir DIR] [--out-dir DIR]`.
pub fn run(args: &[&str]) -> Result<()> {
    let mut bin_dir = None;
    let mut out_dir = workspace_root().join("target/debian");
    let mut fast = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--bin-dir" => {
                bin_dir = Some(crate::option_value(&mut rest, "--bin-dir", USAGE)?.into())
            }
            "--out-dir" => out_dir = crate::option_value(&mut rest, "--out-dir", USAGE)?.into(),
            "--fast" => fast = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(crate::unknown_argument(other, USAGE)),
        }
    }
    let started = Instant::now();
    require_tools()?;
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None => build_release()?,
    };
    let deb = build_package(&bin_dir, &out_dir, fast)?;
    eprintln!(
        "xtask dist: wrote {} in {:.1} s",
        deb.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", deb.display());
    Ok(())
}

/// Fails with the command that installs whatever packaging tool is missing.
fn require_tools() -> Result<()> {
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("strip", "binutils"),
        ("gzip", "gzip"),
    ] {
        if !on_path(tool) {
            bail!("{tool} is missing: install it with `sudo apt-get install {package}` (a Debian or Ubuntu machine is needed to build the package)");
        }
    }
    Ok(())
}

/// Whether an executable `name` is in one of `$PATH`'s directories.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// `cargo build --release` of the two binaries; returns their directory.
fn build_release() -> Result<PathBuf> {
    eprintln!(
        "xtask dist: building knocker and knocknoc-installer (cargo build --release; \
         the first release build takes several minutes)"
    );
    crate::build_binaries(&["--release"])
}

/// What the packaged binaries say about themselves.
#[derive(Debug)]
struct BuildInfo {
    /// The crate version (`0.1.0`), also the Debian version.
    version: String,
    /// What `--version` prints in parentheses (`commit 0123456789ab`).
    commit: String,
}

/// Runs `<bin> --version` for each binary: both must be one build.
fn build_info(bin_dir: &Path) -> Result<BuildInfo> {
    let mut seen: Option<(String, String)> = None;
    for name in BINARIES {
        let bin = bin_dir.join(name);
        if !bin.is_file() {
            bail!(
                "{} is missing: build it first (cargo build -p knocker-cli -p installer-cli)",
                bin.display()
            );
        }
        let out = Command::new(&bin)
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // `knocker 0.1.0 (commit 0123456789ab)`
        let parsed = text
            .strip_prefix(name)
            .and_then(|rest| rest.trim().split_once(' '))
            .map(|(version, commit)| {
                (
                    version.to_owned(),
                    commit.trim_matches(|c| c == '(' || c == ')').to_owned(),
                )
            });
        let Some(parsed) = parsed.filter(|_| out.status.success()) else {
            bail!("{} --version printed {text:?}", bin.display());
        };
        match &seen {
            Some(first) if *first != parsed => bail!(
                "{} is not from the same build as knocker ({} {} vs {} {}): rebuild both",
                bin.display(),
                parsed.0,
                parsed.1,
                first.0,
                first.1
            ),
            _ => seen = Some(parsed),
        }
    }
    let (version, commit) = seen.context("no binaries")?;
    Ok(BuildInfo { version, commit })
}

/// Lays out the staging tree under a scratch directory in `out_dir`, then
/// `dpkg-deb --build`s it into `out_dir/knocker_<version>_<arch>.deb`.
fn build_package(bin_dir: &Path, out_dir: &Path, fast: bool) -> Result<PathBuf> {
    let info = build_info(bin_dir)?;
    let arch = command_stdout(Command::new("dpkg").arg("--print-architecture"))?;
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    // debhelper's layout: dpkg-shlibdeps expects `debian/control` in its
    // working directory and the binaries under `debian/<package>/`.
    let work = out_dir.join(format!(".build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let result = stage_and_build(bin_dir, out_dir, &work, &info, &arch, fast);
    let _ = fs::remove_dir_all(&work);
    result
}

fn stage_and_build(
    bin_dir: &Path,
    out_dir: &Path,
    work: &Path,
    info: &BuildInfo,
    arch: &str,
    fast: bool,
) -> Result<PathBuf> {
    let root = work.join("debian").join(PACKAGE);
    create_dir(&root)?;
    write_file(&work.join("debian/control"), b"", 0o644)?;
    let epoch = source_date_epoch(info);

    // The binaries, stripped like dh_strip does, and their links on PATH.
    let install_dir = root.join(INSTALL_DIR);
    create_dir(&install_dir)?;
    create_dir(&root.join("usr/bin"))?;
    for name in BINARIES {
        let target = install_dir.join(name);
        fs::copy(bin_dir.join(name), &target)
            .with_context(|| format!("cannot copy {}", bin_dir.join(name).display()))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
        run_checked(
            Command::new("strip")
                .args([
                    "--remove-section=.comment",
                    "--remove-section=.note",
                    "--strip-unneeded",
                ])
                .arg(&target),
        )?;
        // Absolute: Debian policy 10.5 wants links between top-level
        // directories absolute.
        std::os::unix::fs::symlink(
            format!("/{INSTALL_DIR}/{name}"),
            root.join("usr/bin").join(name),
        )?;
    }

    write_man_pages(&root.join("usr/share/man/man1"), info, epoch)?;
    write_completions(&root)?;
    write_docs(&root, info, epoch)?;

    let lintian = root.join("usr/share/lintian/overrides");
    create_dir(&lintian)?;
    write_file(
        &lintian.join(PACKAGE),
        format!(
            "# The Knocknoc documentation runs /{INSTALL_DIR}/knocker (with sudo):\n\
             # the binaries live there on purpose and are linked from /usr/bin.\n\
             {PACKAGE}: dir-or-file-in-opt\n"
        )
        .as_bytes(),
        0o644,
    )?;

    let depends = shlib_depends(work, &install_dir)?;
    // Both before DEBIAN/ exists: they describe the installed files only.
    let sums = md5sums(&root)?;
    let control = control_file(info, arch, &depends, installed_size_kib(&root)?);
    let control_dir = root.join("DEBIAN");
    create_dir(&control_dir)?;
    write_file(&control_dir.join("md5sums"), sums.as_bytes(), 0o644)?;
    write_file(&control_dir.join("control"), control.as_bytes(), 0o644)?;
    fix_directory_modes(&root)?;

    let deb = out_dir.join(format!("{PACKAGE}_{}_{arch}.deb", info.version));
    let partial = work.join("package.deb");
    let compression: &[&str] = if fast { &["-Zgzip", "-z1"] } else { &["-Zxz"] };
    run_checked(
        Command::new("dpkg-deb")
            .args(compression)
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&partial)
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .stdout(Stdio::null()),
    )?;
    fs::rename(&partial, &deb)
        .with_context(|| format!("cannot move the package to {}", deb.display()))?;
    Ok(deb)
}

/// The time the package says it was made (every file's mtime, the man
/// pages' and changelog's date): `$SOURCE_DATE_EPOCH` (reproducible
/// builds), else the time of the binaries' commit, else now. A build with uncommitted
/// changes is not the commit: it takes now, also because man-db reuses a
/// formatted page cached for a source page of the same mtime.
fn source_date_epoch(info: &BuildInfo) -> u64 {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|e| e.trim().parse().ok())
    {
        return epoch;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // `commit 0123456789ab`; `-modified` and `unknown: ...` take now.
    let Some(hash) = info
        .commit
        .strip_prefix("commit ")
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return now;
    };
    Command::new("git")
        .args(["show", "--no-patch", "--format=%ct", hash])
        .current_dir(workspace_root())
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(now)
}

/// `date -u -d @EPOCH +FORMAT`.
fn format_date(epoch: u64, format: &str) -> Result<String> {
    command_stdout(
        Command::new("date")
            .arg("-u")
            .arg(format!("--date=@{epoch}"))
            .arg(format!("+{format}"))
            .env("LC_ALL", "C"),
    )
}

/// One man page per command and subcommand (`knocker-hba-lint.1.gz`),
/// gzipped like dh_installman does.
fn write_man_pages(dir: &Path, info: &BuildInfo, epoch: u64) -> Result<()> {
    create_dir(dir)?;
    let date = format_date(epoch, "%Y-%m-%d")?;
    for cmd in [knocker_cli::command(), installer_cli::command()] {
        let mut pages = Vec::new();
        // The packaged binaries' version, not the one compiled into xtask
        // (which may be older than the binaries given with --bin-dir).
        // (clap takes a &'static str without its `string` feature; xtask
        // makes two of these per run.)
        let version: &'static str =
            Box::leak(format!("{} ({})", info.version, info.commit).into_boxed_str());
        let mut cmd = cmd.version(version).disable_help_subcommand(true);
        cmd.build();
        collect_commands(&cmd, &mut pages);
        for page in pages {
            let man = clap_mangen::Man::new(page)
                .date(&date)
                .source(format!("knocker {}", info.version))
                .manual("knocker manual");
            let mut roff = Vec::new();
            man.render(&mut roff)?;
            let path = dir.join(format!("{}.gz", man.get_filename()));
            write_file(&path, &gzip(&roff)?, 0o644)?;
        }
    }
    Ok(())
}

/// `cmd` and every visible subcommand under it, depth first.
fn collect_commands(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_commands(sub, out);
    }
}

/// The completion files, where Debian's bash-completion, zsh and fish look.
fn write_completions(root: &Path) -> Result<()> {
    for (shell, dir, file_name) in [
        (Shell::Bash, "usr/share/bash-completion/completions", "{}"),
        (Shell::Zsh, "usr/share/zsh/vendor-completions", "_{}"),
        (
            Shell::Fish,
            "usr/share/fish/vendor_completions.d",
            "{}.fish",
        ),
    ] {
        let dir = root.join(dir);
        create_dir(&dir)?;
        for mut cmd in [knocker_cli::command(), installer_cli::command()] {
            let name = cmd.get_name().to_owned();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut script);
            write_file(&dir.join(file_name.replace("{}", &name)), &script, 0o644)?;
        }
    }
    Ok(())
}

/// README, changelog and copyright in `/usr/share/doc/knocker`.
fn write_docs(root: &Path, info: &BuildInfo, epoch: u64) -> Result<()> {
    let doc = root.join("usr/share/doc").join(PACKAGE);
    create_dir(&doc)?;
    let readme = workspace_root().join("README.md");
    let text = fs::read(&readme).with_context(|| format!("cannot read {}", readme.display()))?;
    write_file(&doc.join("README.md"), &text, 0o644)?;
    // A native package (no Debian revision): the changelog is changelog.gz.
    let changelog = format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\n  \
         * Built from {commit} of the knocker repository.\n\n \
         -- {MAINTAINER}  {date}\n",
        version = info.version,
        commit = info.commit,
        date = format_date(epoch, "%a, %d %b %Y %H:%M:%S +0000")?,
    );
    write_file(
        &doc.join("changelog.gz"),
        &gzip(changelog.as_bytes())?,
        0o644,
    )?;
    write_file(&doc.join("copyright"), COPYRIGHT.as_bytes(), 0o644)?;
    Ok(())
}

/// `debian/copyright` in the machine-readable format (DEP-5), for the
/// workspace's `MIT OR Apache-2.0`.
const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: knocker
Source: https://example.invalid/knocker

Files: *
Copyright: 2026 knocker developers
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the \"License\");
 you may not use this file except in compliance with the License.
 You may obtain a copy of the License at
 .
 http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an \"AS IS\" BASIS,
 WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 See the License for the specific language governing permissions and
 limitations under the License.
 .
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in the file `/usr/share/common-licenses/Apache-2.0'.
";

/// `Depends` from dpkg-shlibdeps (the libraries the binaries link).
fn shlib_depends(work: &Path, install_dir: &Path) -> Result<String> {
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.arg("-O").current_dir(work);
    for name in BINARIES {
        cmd.arg(format!("-e{}", install_dir.join(name).display()));
    }
    let out = command_stdout(&mut cmd)?;
    let depends = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out:?}"))?;
    Ok(depends.trim().to_owned())
}

/// The `DEBIAN/control` file.
fn control_file(info: &BuildInfo, arch: &str, depends: &str, installed_kib: u64) -> String {
    let mut control = String::new();
    let _ = write!(
        control,
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Recommends: postgresql-client\n\
         Section: admin\n\
         Priority: optional\n\
         Description: {SUMMARY}\n",
        version = info.version,
    );
    for line in DESCRIPTION.lines() {
        let _ = writeln!(control, " {line}");
    }
    control
}

/// `DEBIAN/md5sums`: every regular file, relative to the root, sorted.
fn md5sums(root: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk(root, &mut |path, meta| {
        if meta.is_file() {
            files.push(path.to_path_buf());
        }
    })?;
    files.sort();
    let mut cmd = Command::new("md5sum");
    cmd.current_dir(root);
    for file in &files {
        cmd.arg(file.strip_prefix(root)?);
    }
    command_stdout(&mut cmd).map(|s| s + "\n")
}

/// Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up,
/// plus one per directory and symlink.
fn installed_size_kib(root: &Path) -> Result<u64> {
    let mut kib = 0;
    walk(root, &mut |_, meta| {
        kib += if meta.is_file() {
            meta.len().div_ceil(1024)
        } else {
            1
        };
    })?;
    Ok(kib)
}

/// Calls `visit` for everything under `dir` (not following symlinks).
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &fs::Metadata)) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        visit(&path, &meta);
        if meta.is_dir() {
            walk(&path, visit)?;
        }
    }
    Ok(())
}

/// `gzip -9n` (no name, no time stamp: the same input gives the same bytes).
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .arg("-9n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    let mut stdin = child.stdin.take().context("gzip stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().context("gzip")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("gzip writer thread panicked"))?
        .context("writing to gzip")?;
    if !out.status.success() {
        bail!("gzip failed ({})", out.status);
    }
    Ok(out.stdout)
}

/// Creates `dir` and its parents (modes are settled by [`fix_directory_modes`]).
fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Every directory of the staging tree 0755 whatever the umask (what
/// dh_fixperms does; lintian checks).
fn fix_directory_modes(root: &Path) -> Result<()> {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    let mut dirs = Vec::new();
    walk(root, &mut |path, meta| {
        if meta.is_dir() {
            dirs.push(path.to_path_buf());
        }
    })?;
    for dir in dirs {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", dir.display()))?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Runs `cmd`; fails with its stderr unless it succeeds.
fn run_checked(cmd: &mut Command) -> Result<()> {
    command_stdout(cmd).map(drop)
}

/// Runs `cmd` and returns its trimmed stdout; fails with its stderr unless
/// it succeeds.
fn command_stdout(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
