//! Making the server listen on more addresses: computing the new
//! `listen_addresses`, setting it (ALTER SYSTEM, or a file in the include
//! directory where ALTER SYSTEM is disabled), restarting the server through
//! whatever manages it, waiting for it to come back, and checking that it
//! listens where asked.
//!
//! ```no_run
//! # async fn demo(client: tokio_postgres::Client, config: tokio_postgres::Config)
//! #     -> Result<(), pgctl::error::Error> {
//! use std::time::Duration;
//! use pgctl::listen::{plan_listen_addresses, restart_and_wait, set_listen_addresses, verify_listening, RestartWith};
//! let facts = pgctl::server::read_facts(&client).await?;
//! let plan = plan_listen_addresses(&facts.listen_addresses, &["0.0.0.0"]);
//! let naming = pgctl::naming::Naming::new("shopctl");
//! let change = set_listen_addresses(&client, &plan.new, &naming).await?;
//! if change.restart_needed {
//!     let how = RestartWith::Manager(pgctl::server::detect_manager(&facts));
//!     let client = restart_and_wait(&client, &how, Duration::from_secs(60), || async {
//!         let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
//!         tokio::spawn(connection);
//!         Ok::<_, tokio_postgres::Error>(client)
//!     })
//!     .await?;
//!     verify_listening(&client, facts.port, &plan).await?;
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres_protocol::escape::escape_literal;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};
use crate::naming::Naming;
// Restarting lives in `crate::restart`; these names stay reachable here
// for callers that found them in this module first.
pub use crate::restart::{pending_restart, restart_and_wait, RestartWith};
use crate::server::require_superuser;

/// The result of [`plan_listen_addresses`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListenPlan {
    /// The value before.
    pub current: String,
    /// The value to set (equal to `current` when nothing needs to change).
    pub new: String,
    /// Loopback addresses the server listened on before; they must still
    /// answer afterwards (the local application uses them).
    pub loopback_before: Vec<IpAddr>,
}

impl ListenPlan {
    /// Whether the value changes.
    pub fn changes(&self) -> bool {
        self.current != self.new
    }
}

/// Splits a `listen_addresses` value into its entries (commas and
/// whitespace separate, double quotes are removed as the server does).
pub fn split_listen_addresses(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim().trim_matches('"').trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// Computes the `listen_addresses` that serves everything `current` serves
/// plus the entries of `add` (`*`, `0.0.0.0`, `::`, addresses or host
/// names), resolving names with the system resolver.
///
/// See [`plan_listen_addresses_with`].
pub fn plan_listen_addresses(current: &str, add: &[&str]) -> ListenPlan {
    plan_listen_addresses_with(current, add, &system_resolve, &can_bind)
}

fn system_resolve(name: &str) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()
        .map(|iter| iter.map(|sa| sa.ip()).collect())
        .unwrap_or_default();
    let mut seen = Vec::new();
    addresses.retain(|a| {
        let fresh = !seen.contains(a);
        seen.push(*a);
        fresh
    });
    addresses
}

fn can_bind(address: IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(address, 0)).is_ok()
}

/// Computes the new `listen_addresses`, given how to resolve host names and
/// which addresses this host can bind:
///
/// - `*` already present: nothing changes;
/// - a wildcard (`0.0.0.0` or `::`) makes the specific addresses of its
///   family redundant, and binding them next to it would fail ("address
///   already in use"), so they are dropped;
/// - host names (`localhost`) are replaced by the addresses they resolve to
///   that remain needed (and that this host can bind), so `localhost` +
///   `0.0.0.0` gives `0.0.0.0,::1`, not `0.0.0.0,localhost`;
/// - other entries are kept in their order, after the added wildcards.
pub fn plan_listen_addresses_with(
    current: &str,
    add: &[&str],
    resolve: &dyn Fn(&str) -> Vec<IpAddr>,
    bindable: &dyn Fn(IpAddr) -> bool,
) -> ListenPlan {
    let existing = split_listen_addresses(current);
    let wanted: Vec<String> = add.iter().flat_map(|a| split_listen_addresses(a)).collect();
    let addresses_of = |entry: &str| -> Vec<IpAddr> {
        match entry.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) if entry == "*" => vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            Err(_) => resolve(entry),
        }
    };
    let loopback_before: Vec<IpAddr> = {
        let mut list: Vec<IpAddr> = Vec::new();
        for entry in &existing {
            for ip in addresses_of(entry) {
                let ip = if ip.is_unspecified() {
                    match ip {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    }
                } else {
                    ip
                };
                if ip.is_loopback() && !list.contains(&ip) {
                    list.push(ip);
                }
            }
        }
        list
    };
    let unchanged = |current: &str| ListenPlan {
        current: current.to_owned(),
        new: current.to_owned(),
        loopback_before: loopback_before.clone(),
    };
    if existing.iter().any(|e| e == "*") {
        return unchanged(current);
    }
    let mut entries: Vec<String> = Vec::new();
    if wanted.iter().any(|w| w == "*") {
        entries.push("*".to_owned());
    }
    let all = entries.iter().any(|e| e == "*");
    let v4_wild = all || wanted.iter().chain(&existing).any(|e| e == "0.0.0.0");
    let v6_wild = all
        || wanted
            .iter()
            .chain(&existing)
            .any(|e| e.parse() == Ok(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
    let covered = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => v4_wild,
        IpAddr::V6(_) => v6_wild,
    };
    if !all {
        if v4_wild {
            entries.push("0.0.0.0".to_owned());
        }
        if v6_wild {
            entries.push("::".to_owned());
        }
    }
    let push = |entries: &mut Vec<String>, entry: String| {
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    };
    for entry in existing.iter().chain(&wanted) {
        if entry == "*" {
            continue;
        }
        match entry.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {}
            Ok(ip) => {
                if !covered(&ip) {
                    push(&mut entries, entry.clone());
                }
            }
            Err(_) => {
                let resolved = resolve(entry);
                let needed: Vec<IpAddr> =
                    resolved.iter().copied().filter(|ip| !covered(ip)).collect();
                if needed.len() == resolved.len() && !needed.is_empty() {
                    // Nothing of it is covered: keep the name as the operator wrote it.
                    push(&mut entries, entry.clone());
                } else {
                    for ip in needed.into_iter().filter(|ip| bindable(*ip)) {
                        push(&mut entries, ip.to_string());
                    }
                }
            }
        }
    }
    let new = entries.join(",");
    if split_listen_addresses(&new) == existing {
        return unchanged(current);
    }
    ListenPlan {
        current: current.to_owned(),
        new,
        loopback_before,
    }
}

/// Refuses values that could not be written safely into a configuration
/// file or that the server would not parse as a list of hosts: control
/// characters, backslashes, quotes, `#`, and entries that are neither `*`,
/// an IP address nor a host name.
pub fn validate_listen_addresses(value: &str) -> Result<()> {
    let bad = |reason: &'static str| {
        Err(Error::InvalidListenAddresses {
            value: value.to_owned(),
            reason,
        })
    };
    if value.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if value
        .chars()
        .any(|c| c.is_control() || "\\'\"#".contains(c))
    {
        return bad("it contains a control character, quote, backslash or '#'");
    }
    for entry in split_listen_addresses(value) {
        let host_name = entry.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
        let scoped_ipv6 = entry.split_once('%').is_some_and(|(ip, zone)| {
            ip.parse::<Ipv6Addr>().is_ok()
                && !zone.is_empty()
                && zone
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
        if entry != "*" && entry.parse::<IpAddr>().is_err() && !host_name && !scoped_ipv6 {
            return bad("an entry is not *, an IP address or a host name");
        }
    }
    Ok(())
}

/// Where a `listen_addresses` value was written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WrittenTo {
    /// `ALTER SYSTEM` (the data directory's `postgresql.auto.conf`).
    AlterSystem,
    /// A file of ours in the configuration's include directory.
    IncludeFile(PathBuf),
}

/// What [`set_listen_addresses`] did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListenChange {
    /// The value the server runs with now.
    pub running: String,
    /// The value written.
    pub new: String,
    /// Where it was written.
    pub written_to: WrittenTo,
    /// The file (and line) whose setting wins, as `pg_file_settings` shows.
    pub winner: Option<(PathBuf, i32)>,
    /// Whether the server must restart for the value to take effect.
    pub restart_needed: bool,
}

/// How the server's current value was set (`pg_settings.source`), and
/// whether a file can override it.
async fn check_source(client: &impl GenericClient) -> Result<()> {
    let source: String = client
        .query_one(
            "SELECT source FROM pg_catalog.pg_settings WHERE name = 'listen_addresses'",
            &[],
        )
        .await
        .map_err(Error::sql("reading where listen_addresses comes from"))?
        .get(0);
    match source.as_str() {
        "command line" | "environment variable" => Err(Error::ListenSetOutsideFiles {
            source_kind: source,
        }),
        _ => Ok(()),
    }
}

/// Whether the server accepts ALTER SYSTEM (`allow_alter_system`, 17+);
/// when it does not, [`set_listen_addresses`] writes an include file.
pub async fn alter_system_allowed(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT coalesce(current_setting('allow_alter_system', true), 'on') = 'on'",
            &[],
        )
        .await
        .map_err(Error::sql("reading allow_alter_system"))?;
    Ok(row.get(0))
}

async fn running_value(client: &impl GenericClient) -> Result<String> {
    Ok(client
        .query_one("SELECT current_setting('listen_addresses')", &[])
        .await
        .map_err(Error::sql("reading listen_addresses"))?
        .get(0))
}

/// The last line of any configuration file that sets listen_addresses:
/// the one that wins at the next start.
async fn winning_file(client: &impl GenericClient) -> Result<Option<(PathBuf, i32, String)>> {
    let row = client
        .query_opt(
            "SELECT sourcefile, sourceline, setting FROM pg_catalog.pg_file_settings \
             WHERE name = 'listen_addresses' ORDER BY seqno DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(Error::sql("reading pg_file_settings"))?;
    Ok(row.map(|row| {
        (
            PathBuf::from(row.get::<_, String>(0)),
            row.get::<_, i32>(1),
            row.get::<_, Option<String>>(2).unwrap_or_default(),
        )
    }))
}

/// The statement [`set_listen_addresses`] runs where ALTER SYSTEM is
/// allowed.
pub fn set_listen_addresses_sql(value: &str) -> String {
    format!(
        "ALTER SYSTEM SET listen_addresses = {}",
        escape_literal(value)
    )
}

/// The statement [`reset_listen_addresses`] runs where ALTER SYSTEM is
/// allowed.
pub const RESET_LISTEN_ADDRESSES_SQL: &str = "ALTER SYSTEM RESET listen_addresses";

/// Sets `listen_addresses` to `value` for the next server start: with
/// ALTER SYSTEM, or, where it is disabled (`allow_alter_system = off`),
/// with a file [`Naming::listen_file_name`] in the configuration's include
/// directory (Debian: `conf.d/`). Checks with `pg_file_settings` which file
/// wins and fails with [`Error::Overridden`] (removing its own file) when it
/// is not ours. Needs a superuser session on the server's own host for the
/// file fallback.
pub async fn set_listen_addresses(
    client: &impl GenericClient,
    value: &str,
    naming: &Naming,
) -> Result<ListenChange> {
    validate_listen_addresses(value)?;
    require_superuser(client, "changing listen_addresses").await?;
    check_source(client).await?;
    let running = running_value(client).await?;
    let written_to = if alter_system_allowed(client).await? {
        match client.batch_execute(&set_listen_addresses_sql(value)).await {
            Ok(()) => WrittenTo::AlterSystem,
            Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
                WrittenTo::IncludeFile(write_include_file(client, value, naming).await?)
            }
            Err(e) => return Err(Error::sql("setting listen_addresses with ALTER SYSTEM")(e)),
        }
    } else {
        WrittenTo::IncludeFile(write_include_file(client, value, naming).await?)
    };
    let winner = winning_file(client).await?;
    if let (WrittenTo::IncludeFile(path), Some((file, line, _))) = (&written_to, &winner) {
        if !same_file(path, file) {
            let _ = std::fs::remove_file(path);
            return Err(Error::Overridden {
                written: path.clone(),
                winner: file.clone(),
                line: *line,
            });
        }
    }
    Ok(ListenChange {
        restart_needed: running != value,
        running,
        new: value.to_owned(),
        written_to,
        winner: winner.map(|(file, line, _)| (file, line)),
    })
}

/// Undoes [`set_listen_addresses`]: removes the ALTER SYSTEM entry (when
/// ALTER SYSTEM is allowed) and the caller's include file
/// ([`Naming::listen_file_name`], when present), so the operator's own
/// configuration applies again. To go back to a value remembered from before, call
/// [`set_listen_addresses`] with it instead.
pub async fn reset_listen_addresses(
    client: &impl GenericClient,
    naming: &Naming,
) -> Result<ListenChange> {
    require_superuser(client, "resetting listen_addresses").await?;
    let running = running_value(client).await?;
    let mut written_to = WrittenTo::AlterSystem;
    if alter_system_allowed(client).await? {
        client
            .batch_execute(RESET_LISTEN_ADDRESSES_SQL)
            .await
            .map_err(Error::sql("resetting listen_addresses with ALTER SYSTEM"))?;
    }
    if let Some(dir) = include_dir_of(client).await? {
        let path = dir.join(naming.listen_file_name());
        match std::fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&dir)?;
                written_to = WrittenTo::IncludeFile(path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", path)(e)),
        }
    }
    let winner = winning_file(client).await?;
    let new = match &winner {
        Some((_, _, setting)) => setting.clone(),
        None => "localhost".to_owned(),
    };
    Ok(ListenChange {
        restart_needed: running != new,
        running,
        new,
        written_to,
        winner: winner.map(|(file, line, _)| (file, line)),
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

async fn include_dir_of(client: &impl GenericClient) -> Result<Option<PathBuf>> {
    let config_file: Option<String> = client
        .query_one("SELECT current_setting('config_file', true)", &[])
        .await
        .map_err(Error::sql("reading config_file"))?
        .get(0);
    let Some(config_file) = config_file else {
        return Ok(None);
    };
    let config_file = PathBuf::from(config_file);
    let text = std::fs::read_to_string(&config_file).map_err(Error::io("reading", &config_file))?;
    Ok(find_include_dir(&text, &config_file))
}

async fn write_include_file(
    client: &impl GenericClient,
    value: &str,
    naming: &Naming,
) -> Result<PathBuf> {
    let dir = include_dir_of(client).await?;
    let Some(dir) = dir else {
        let config_file: String = client
            .query_one("SELECT current_setting('config_file')", &[])
            .await
            .map_err(Error::sql("reading config_file"))?
            .get(0);
        return Err(Error::NoIncludeDir {
            config_file: config_file.into(),
            wanted: value.to_owned(),
        });
    };
    let path = dir.join(naming.listen_file_name());
    let text = format!(
        "# Written by {}: ALTER SYSTEM is disabled on this server\n\
         # (allow_alter_system = off), so the listen addresses live here.\n\
         listen_addresses = '{}'\n",
        naming.writer(),
        value.replace('\'', "''")
    );
    write_config_file(&dir, &path, &text, &naming.listen_temp_prefix())?;
    Ok(path)
}

/// A temporary file older than this was left by a run that was killed before
/// its rename (a live run renames within milliseconds).
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes `text` to `path` atomically ([`crate::atomic`]: dot-named
/// temporary file in the same directory, which include_dir ignores; fsync;
/// rename; fsync directory), owned like the directory and readable by the
/// server. Temporary files of earlier, killed runs are removed first (the
/// server ignores them, but they are litter in a directory operators read).
fn write_config_file(dir: &Path, path: &Path, text: &str, temp_prefix: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let io_error = |e: crate::atomic::AtomicWriteError| Error::io(e.step, e.path)(e.source);
    let meta = std::fs::metadata(dir).map_err(Error::io("reading", dir))?;
    crate::atomic::remove_stale_temps(dir, temp_prefix, STALE_TEMP_AGE).map_err(io_error)?;
    let owner = crate::atomic::Ownership {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: 0o644,
    };
    crate::atomic::replace(dir, path, temp_prefix, owner, text.as_bytes()).map_err(io_error)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

/// The last `include_dir` directive of a postgresql.conf text, resolved
/// against the file's directory.
pub fn find_include_dir(config_text: &str, config_file: &Path) -> Option<PathBuf> {
    let base = config_file.parent().unwrap_or(Path::new("/"));
    let mut found = None;
    for line in config_text.lines() {
        let Some((key, value)) = parse_config_line(line) else {
            continue;
        };
        if key.eq_ignore_ascii_case("include_dir") && !value.is_empty() {
            found = Some(base.join(value));
        }
    }
    found
}

/// `name [=] value` of one postgresql.conf line, quotes and comments removed.
fn parse_config_line(line: &str) -> Option<(&str, String)> {
    let line = line.trim_start();
    let key_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    if key_end == 0 {
        return None;
    }
    let key = &line[..key_end];
    let rest = line[key_end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let value = if let Some(quoted) = rest.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    out.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                c => out.push(c),
            }
        }
        out
    } else {
        rest.split(|c: char| c == '#' || c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_owned()
    };
    Some((key, value))
}

/// Checks, after a restart, that the server reports `plan.new` as its
/// `listen_addresses` and accepts TCP connections on `port` at every
/// address it should: each entry of the new value (a wildcard is probed
/// through its loopback address) and every loopback address it served
/// before.
pub async fn verify_listening(client: &Client, port: u16, plan: &ListenPlan) -> Result<()> {
    let actual = running_value(client).await?;
    if actual != plan.new {
        return Err(Error::ListenMismatch {
            expected: plan.new.clone(),
            actual,
        });
    }
    let mut probes: Vec<IpAddr> = plan.loopback_before.clone();
    for entry in split_listen_addresses(&plan.new) {
        let addresses = match entry.as_str() {
            "*" => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            _ => match entry.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) if v4.is_unspecified() => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                Ok(IpAddr::V6(v6)) if v6.is_unspecified() => vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
                Ok(ip) => vec![ip],
                Err(_) => system_resolve(&entry),
            },
        };
        for ip in addresses {
            if !probes.contains(&ip) {
                probes.push(ip);
            }
        }
    }
    for ip in probes {
        let address = SocketAddr::new(ip, port);
        let attempt = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(address),
        )
        .await;
        let result = match attempt {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            )),
        };
        if let Err(source) = result {
            return Err(Error::NotListening {
                address: address.to_string(),
                listen_addresses: actual,
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the leftover noted for issue 5: a run killed between creating
    /// its temporary file and the rename left `.zz-tool-listen.*` behind
    /// for good. The next write removes old ones and keeps fresh ones (which
    /// may belong to a run in progress).
    #[test]
    fn write_config_file_removes_stale_temps_only() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".zz-tool-listen.Ab12Cd");
        let fresh = dir.path().join(".zz-tool-listen.Ef34Gh");
        let other = dir.path().join(".other.Ij56Kl");
        for p in [&stale, &fresh, &other] {
            std::fs::write(p, "listen_addresses = '*'\n").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [&stale, &other] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let naming = Naming::new("tool");
        let target = dir.path().join(naming.listen_file_name());
        write_config_file(
            dir.path(),
            &target,
            "listen_addresses = 'localhost'\n",
            &naming.listen_temp_prefix(),
        )
        .unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists() && other.exists());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "listen_addresses = 'localhost'\n"
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".other.Ij56Kl",
                ".zz-tool-listen.Ef34Gh",
                "zz-tool-listen.conf"
            ]
        );
    }

    fn resolve(name: &str) -> Vec<IpAddr> {
        match name {
            "localhost" => vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            "db.internal" => vec!["10.1.2.3".parse().unwrap()],
            "v6only" => vec!["fd00::5".parse().unwrap()],
            _ => vec![],
        }
    }

    fn plan(current: &str, add: &[&str]) -> String {
        plan_listen_addresses_with(current, add, &resolve, &|_| true).new
    }

    #[test]
    fn localhost_becomes_wildcard_and_ipv6_loopback_not_localhost() {
        assert_eq!(plan("localhost", &["0.0.0.0"]), "0.0.0.0,::1");
    }

    #[test]
    fn ipv6_loopback_is_left_out_when_the_host_cannot_bind_it() {
        let p = plan_listen_addresses_with("localhost", &["0.0.0.0"], &resolve, &|ip| ip.is_ipv4());
        assert_eq!(p.new, "0.0.0.0");
    }

    #[test]
    fn star_stays_star() {
        assert_eq!(plan("*", &["0.0.0.0"]), "*");
        assert!(!plan_listen_addresses_with("*", &["0.0.0.0"], &resolve, &|_| true).changes());
    }

    #[test]
    fn covered_ipv4_addresses_are_dropped_and_others_kept() {
        assert_eq!(plan("127.0.0.1", &["0.0.0.0"]), "0.0.0.0");
        assert_eq!(
            plan("127.0.0.1, ::1,fd00::1", &["0.0.0.0"]),
            "0.0.0.0,::1,fd00::1"
        );
        assert_eq!(plan("db.internal,v6only", &["0.0.0.0"]), "0.0.0.0,v6only");
    }

    #[test]
    fn already_wildcard_is_unchanged() {
        let p = plan_listen_addresses_with("0.0.0.0", &["0.0.0.0"], &resolve, &|_| true);
        assert!(!p.changes());
        assert_eq!(
            p.loopback_before,
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn empty_value_gets_the_wildcard() {
        assert_eq!(plan("", &["0.0.0.0"]), "0.0.0.0");
    }

    #[test]
    fn loopback_before_lists_what_localhost_served() {
        let p = plan_listen_addresses_with("localhost", &["0.0.0.0"], &resolve, &|_| true);
        assert_eq!(
            p.loopback_before,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn hostile_values_are_refused() {
        for bad in [
            "0.0.0.0\nssl = off",
            "0.0.0.0' ; x",
            "a\\b",
            "0.0.0.0 # c",
            "not a host",
            "10.0.0.0/8",
        ] {
            assert!(validate_listen_addresses(bad).is_err(), "{bad:?}");
        }
        for good in [
            "*",
            "0.0.0.0,::1",
            "fe80::1%eth0",
            "localhost",
            "db-1.example.com, 10.1.2.3",
            "",
        ] {
            assert!(validate_listen_addresses(good).is_ok(), "{good:?}");
        }
    }

    proptest::proptest! {
        /// Adding 0.0.0.0 to any list of addresses keeps every IPv6 entry,
        /// drops every specific IPv4 one (it would fail to bind next to the
        /// wildcard), and adding it again changes nothing.
        #[test]
        fn adding_the_ipv4_wildcard_keeps_ipv6_and_is_idempotent(
            v4 in proptest::collection::vec(proptest::arbitrary::any::<[u8; 4]>(), 0..4),
            v6 in proptest::collection::vec(proptest::arbitrary::any::<[u16; 8]>(), 0..4),
        ) {
            let mut entries: Vec<String> = v4.iter().map(|o| Ipv4Addr::from(*o).to_string()).collect();
            entries.extend(v6.iter().map(|s| Ipv6Addr::from(*s).to_string()));
            let current = entries.join(",");
            let p = plan_listen_addresses_with(&current, &["0.0.0.0"], &resolve, &|_| true);
            let new = split_listen_addresses(&p.new);
            proptest::prop_assert!(new.contains(&"0.0.0.0".to_owned()) || new.contains(&"*".to_owned()));
            for entry in &new {
                if let Ok(IpAddr::V4(ip)) = entry.parse::<IpAddr>() {
                    proptest::prop_assert!(ip.is_unspecified(), "{}", p.new);
                }
            }
            for s in &v6 {
                let ip = Ipv6Addr::from(*s);
                proptest::prop_assert!(
                    ip.is_unspecified() || new.iter().any(|e| e.parse::<IpAddr>() == Ok(IpAddr::V6(ip)))
                        || new.contains(&"::".to_owned()),
                    "{} lost {}", p.new, ip
                );
            }
            let again = plan_listen_addresses_with(&p.new, &["0.0.0.0"], &resolve, &|_| true);
            proptest::prop_assert!(!again.changes(), "{} -> {}", p.new, again.new);
            proptest::prop_assert!(validate_listen_addresses(&p.new).is_ok());
        }
    }

    #[test]
    fn include_dir_is_found_relative_to_the_config_file() {
        let conf = "# include_dir = 'nope'\nlisten_addresses = 'localhost' # x\ninclude_dir = 'conf.d'\t# extra\n";
        assert_eq!(
            find_include_dir(conf, Path::new("/etc/postgresql/15/main/postgresql.conf")),
            Some(PathBuf::from("/etc/postgresql/15/main/conf.d"))
        );
        assert_eq!(
            find_include_dir("include_dir '/abs/dir'\n", Path::new("/x/postgresql.conf")),
            Some(PathBuf::from("/abs/dir"))
        );
        assert_eq!(
            find_include_dir("port = 5432\n", Path::new("/x/p.conf")),
            None
        );
    }
}
