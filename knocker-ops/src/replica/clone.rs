//! `--clone-from URI --name NAME`, on the standby host: replace the local
//! Debian cluster's data directory with a base backup of the primary and
//! start it as a streaming standby.
//!
//! Checks come first and change nothing: the primary answers as the
//! rewind role (same password as the replication role, lines from
//! `--allow`), is a primary of the same major version, its slot
//! `knocker_NAME` exists, is free and not lost, and the local file system
//! has room for the primary's databases. Then: stop the local cluster,
//! move its data directory aside (kept, named in the report),
//! `pg_basebackup -X stream -c fast` through the slot as the cluster's OS
//! user, `standby.signal`, `primary_conninfo` (with a `passfile`: the
//! password is only in a 0600 file owned by that user) and
//! `primary_slot_name`, start, and wait until it streams. A failure of the
//! copy puts the old data directory back and starts it again.

use std::ffi::CStr;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgctl::connect::SslMode;
use pgctl::conninfo::{ConnInfo, Keyword};
use pgctl::replication::{self, Basebackup, PrimaryConninfo};

use super::target::{self, DebianCluster};
use super::{pg, slot_name, Options, Report};
use crate::{Error, FileChange, Plan};

/// How long the new standby may take to start streaming.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a standby left running by an interrupted clone may take to
/// stream before the next run clones it again (a walreceiver retries every
/// 5 s, `wal_retrieve_retry_interval`).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings a clone must not inherit from the primary's
/// `postgresql.auto.conf`: a promoted standby that names itself as its
/// synchronous standby would make every commit wait forever.
const NOT_INHERITED: [&str; 1] = ["synchronous_standby_names"];

/// The steps of a clone, in order, as [`crate::test_hook::stop_at`] names
/// them: checks passed (nothing changed yet), local cluster stopped, data
/// directory moved aside, `pg_basebackup` copying (some files written),
/// `standby.signal` and `primary_conninfo` written, started, streaming
/// confirmed (the primary not yet admitted back, the exposedb block not yet
/// copied). A run killed at any of them is finished or redone by the next
/// `--clone-from`.
pub const CLONE_STEPS: [&str; 7] = [
    "clone:checked",
    "clone:stopped",
    "clone:moved-aside",
    "clone:copying",
    "clone:configured",
    "clone:started",
    "clone:streaming",
];

/// Where the clone keeps the replication password: next to the data
/// directory (never inside it, where base backups would copy it).
pub fn passfile_path(cluster: &DebianCluster) -> PathBuf {
    passfile_for_data_directory(&cluster.data_directory)
}

/// The passfile of the server whose data directory is `data`: next to it,
/// named after it (Debian: `/var/lib/postgresql/15/.main.knocker-replica.pgpass`).
pub fn passfile_for_data_directory(data: &Path) -> PathBuf {
    let parent = data.parent().unwrap_or(Path::new("/var/lib/postgresql"));
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    parent.join(format!(".{name}.knocker-replica.pgpass"))
}

/// The passfile lines for the three roles that share the replication
/// password, for any host and port: the same file serves this node's
/// walreceiver and `pg_rewind` whichever peer is primary, and the
/// switchover's remote promotion.
pub(crate) fn wildcard_passfile(roles: &super::block::BlockRoles, password: &str) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    [
        ("replication", &roles.replication),
        (super::block::REWIND_DATABASE, &roles.rewind),
        (super::block::REWIND_DATABASE, &roles.promote),
    ]
    .iter()
    .map(|(db, user)| format!("*:*:{}:{}:{}\n", esc(db), esc(user), esc(password)))
    .collect()
}

/// The password of `user` in a passfile [`wildcard_passfile`] (or an older
/// clone) wrote.
pub(crate) fn passfile_password(text: &str, user: &str) -> Option<String> {
    passfile_entries(text)
        .into_iter()
        .find(|f| f[3] == user)
        .map(|f| f[4].clone())
}

/// The user of the first line for `database` in a passfile.
pub(crate) fn passfile_user(text: &str, database: &str) -> Option<String> {
    passfile_entries(text)
        .into_iter()
        .find(|f| f[2] == database)
        .map(|f| f[3].clone())
}

/// A passfile's lines as their five fields, unescaped as libpq reads them.
fn passfile_entries(text: &str) -> Vec<[String; 5]> {
    text.lines()
        .filter_map(|line| {
            let mut fields = Vec::new();
            let mut cur = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => cur.extend(chars.next()),
                    ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            fields.push(cur);
            <[String; 5]>::try_from(fields).ok()
        })
        .collect()
}

/// The roles sharing the replication password, from the replication role.
pub(crate) fn roles_of(replication_role: &str) -> super::block::BlockRoles {
    let base = replication_role
        .strip_suffix(super::REPLICATION_ROLE_SUFFIX)
        .unwrap_or(replication_role);
    super::block::BlockRoles {
        replication: replication_role.to_string(),
        rewind: format!("{base}{}", super::REWIND_ROLE_SUFFIX),
        promote: format!("{base}{}", super::PROMOTE_ROLE_SUFFIX),
    }
}

/// The name the old data directory is moved to.
fn moved_aside(data: &Path) -> PathBuf {
    let stamp = pgctl::os::utc_timestamp().replace([':', '-'], "");
    let mut name = data.as_os_str().to_owned();
    name.push(format!(".knocker-replaced-{stamp}"));
    let first = PathBuf::from(name);
    // Two clones within a second (a run killed after its move, then run
    // again): never move onto the earlier copy.
    (1..)
        .map(|n| {
            if n == 1 {
                first.clone()
            } else {
                let mut p = first.clone().into_os_string();
                p.push(format!("-{n}"));
                PathBuf::from(p)
            }
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or(first)
}

/// The directories earlier clones moved `data` aside to, oldest first.
fn kept_aside(data: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (data.parent(), data.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.knocker-replaced-", name.to_string_lossy());
    let mut kept: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    kept.sort();
    kept
}

/// The pids of a `pg_basebackup` still copying into `data` (left by a
/// clone whose knocker was killed: the copy goes on without it), with its
/// WAL-streaming child (`-X stream` forks one, with the same command line).
fn copy_running_into(data: &Path) -> Vec<i32> {
    let data = data.to_string_lossy();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_copy = argv.first()?.ends_with(b"pg_basebackup")
                && argv
                    .windows(2)
                    .any(|w| w[0] == b"--pgdata" && w[1] == data.as_bytes());
            is_copy.then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Runs the base backup; [`crate::test_hook::stop_at`]`("clone:copying")`
/// once it has written into `data` while still running. A failure carries
/// its output.
fn run_basebackup(argv: &[String], data: &Path, inherit_stderr: bool) -> Result<(), Error> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if inherit_stderr {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", argv[0])).with_source(e))?;
    while let Ok(None) = child.try_wait() {
        if std::fs::read_dir(data).is_ok_and(|mut d| d.next().is_some()) {
            crate::test_hook::stop_at("clone:copying");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::failed(format!("waiting for {}: {e}", argv[0])).with_source(e))?;
    succeeded(argv, &out)
}

pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: zeroed passwd is a valid out parameter for getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the given lengths; getpwuid_r
    // writes only into `pwd` and `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The clone's source, from the URI the primary's `--init` printed.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) info: ConnInfo,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) sslmode: Option<SslMode>,
    /// The primary's node name (`application_name` in the URL `--init`
    /// printed), when the URL carries it.
    pub(crate) primary_name: Option<String>,
}

/// Reads the primary's replication URL given with `flag` (`--clone-from`,
/// `--rejoin`), naming that flag in every complaint.
pub(crate) fn parse_source(uri: &str, flag: &str) -> Result<Source, Error> {
    let info = ConnInfo::parse_checked(uri)
        .map_err(|e| Error::usage(format!("{flag}: not a valid connection string: {e}")))?;
    let need = |k: Keyword, what: &str| {
        info.get(k)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::usage(format!("{flag}: the connection string names no {what}")))
    };
    let host = need(Keyword::Host, "host")?;
    if host.contains(',') || host.starts_with('/') {
        return Err(Error::usage(format!(
            "{flag}: give the primary's one network address (as knocker replica --init printed it)"
        )));
    }
    let user = need(Keyword::User, "user")?;
    let password = need(Keyword::Password, "password")?;
    let port = match info.get(Keyword::Port) {
        None | Some("") => 5432,
        Some(p) => p
            .parse()
            .map_err(|_| Error::usage(format!("{flag}: bad port {p:?}")))?,
    };
    let sslmode = match info.get(Keyword::Sslmode) {
        None => None,
        Some(m) => Some(
            SslMode::from_keyword(m)
                .ok_or_else(|| Error::usage(format!("{flag}: bad sslmode {m:?}")))?,
        ),
    };
    let primary_name = match info.get(Keyword::ApplicationName) {
        None | Some("") => None,
        Some(n) => {
            super::validate_standby_name(n).map_err(|_| {
                Error::usage(format!("{flag}: application_name {n:?} is not a node name"))
            })?;
            Some(n.to_string())
        }
    };
    // The URL's application_name names the primary; this node's own name
    // goes in its primary_conninfo instead.
    let mut info = info;
    info.remove(Keyword::ApplicationName);
    Ok(Source {
        info,
        host,
        port,
        user,
        password,
        sslmode,
        primary_name,
    })
}

/// The rewind role that shares the replication role's password.
pub(crate) fn rewind_role_of(replication_role: &str) -> String {
    let base = replication_role
        .strip_suffix(super::REPLICATION_ROLE_SUFFIX)
        .unwrap_or(replication_role);
    format!("{base}{}", super::REWIND_ROLE_SUFFIX)
}

/// What the primary said when asked as the rewind role.
pub(crate) struct PrimaryFacts {
    pub(crate) major: u32,
    pub(crate) database_bytes: i64,
    pub(crate) slot: Option<replication::Slot>,
}

pub(crate) async fn ask_primary(src: &Source, slot: &str) -> Result<PrimaryFacts, Error> {
    let mut info = src.info.clone();
    info.set(Keyword::User, rewind_role_of(&src.user));
    info.set(Keyword::Dbname, super::block::REWIND_DATABASE);
    info.set(Keyword::ConnectTimeout, "10");
    let params = pgctl::conninfo::resolve_from_process_env(&info)
        .map_err(|e| Error::usage(format!("--clone-from: {e}")))?
        .params;
    let client = pgctl::connect::connect(&params)
        .await
        .map_err(|e| {
            Error::refused_always(format!(
                "cannot reach the primary at {}:{} as {}: {e}\nOn the primary, run: knocker replica --allow THIS_HOST_ADDRESS/32 --name NAME",
                src.host,
                src.port,
                rewind_role_of(&src.user)
            ))
        })?
        .into_client();
    let row = client
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int, pg_catalog.pg_is_in_recovery(), \
                    (SELECT pg_catalog.sum(pg_catalog.pg_database_size(oid))::int8 FROM pg_catalog.pg_database \
                     WHERE datallowconn)",
            &[],
        )
        .await
        .map_err(|e| Error::failed(format!("asking the primary: {e}")).with_source(e))?;
    let version: i32 = row.get(0);
    if row.get::<_, bool>(1) {
        return Err(Error::refused_always(format!(
            "{}:{} is a standby, not a primary",
            src.host, src.port
        )));
    }
    let slot = replication::slot(&client, slot).await.map_err(pg)?;
    Ok(PrimaryFacts {
        major: u32::try_from(version).unwrap_or(0) / 10000,
        database_bytes: row.get::<_, Option<i64>>(2).unwrap_or(0),
        slot,
    })
}

/// The Debian cluster `--cluster` names, or the only one.
pub(crate) fn local_cluster(cluster: Option<&str>) -> Result<DebianCluster, Error> {
    let clusters = target::debian_clusters().ok_or_else(|| {
        Error::refused_always(
            "--clone-from needs Debian's postgresql-common (pg_lsclusters, pg_ctlcluster) on this host",
        )
    })?;
    match cluster {
        Some(text) => {
            let (v, n) = target::parse_cluster_arg(text)?;
            clusters
                .into_iter()
                .find(|c| c.version == v && c.name == n)
                .ok_or_else(|| Error::usage(format!("--cluster {text}: no such cluster")))
        }
        None => match clusters.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Error::refused_always(
                "no PostgreSQL cluster on this host; create one with pg_createcluster VERSION main",
            )),
            several => Err(Error::usage(format!(
                "several clusters on this host ({}); pick one with --cluster VERSION/NAME",
                several
                    .iter()
                    .map(DebianCluster::id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// `pg_ctlcluster [-m fast] VERSION NAME ACTION`.
pub(crate) fn ctlcluster(c: &DebianCluster, action: &str) -> Vec<String> {
    let mut argv = vec!["pg_ctlcluster".to_string()];
    if action == "stop" {
        argv.extend(["-m".into(), "fast".into()]);
    }
    argv.extend([c.version.clone(), c.name.clone(), action.to_string()]);
    argv
}

/// Runs `argv`; a failure carries its output.
pub(crate) fn run_command(argv: &[String], inherit_stderr: bool) -> Result<(), Error> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    if inherit_stderr {
        cmd.stderr(Stdio::inherit());
    }
    let out = cmd
        .output()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", argv[0])).with_source(e))?;
    succeeded(argv, &out)
}

/// `Ok` when `argv` exited with success; otherwise a failure naming the
/// command as a shell would run it, with its status and output.
fn succeeded(argv: &[String], out: &std::process::Output) -> Result<(), Error> {
    if out.status.success() {
        return Ok(());
    }
    Err(Error::failed(format!(
        "`{}` failed ({}): {}{}",
        crate::plan::shell_words(argv),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Writes `contents` to `path` atomically (temp file in the same
/// directory, fsync, rename, fsync directory) with `mode` and owner.
pub(crate) fn write_owned(
    path: &Path,
    contents: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), Error> {
    let io = |what: &str, e: std::io::Error| {
        Error::failed(format!("{what} {}: {e}", path.display())).with_source(e)
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.knocker-tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    // The directories belong to the server's OS user: never follow a link
    // that user may have put where the temp file goes (root writes here).
    // A stale temp file of a killed run is removed (the link itself, if
    // it is one) and the file created anew, exclusively.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| io("chown", e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("chmod", e))?;
    f.write_all(contents).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io("renaming into", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(crate) async fn clone_from(o: &Options, uri: &str, report: &mut Report) -> Result<(), Error> {
    let src = parse_source(uri, "--clone-from")?;
    let name = match &o.name {
        Some(n) => n.clone(),
        None => {
            let n = super::default_name();
            super::validate_standby_name(&n).map_err(|_| {
                Error::usage(format!(
                    "this host's name {n:?} cannot be a standby name; give --name NAME"
                ))
            })?;
            n
        }
    };
    let slot = slot_name(&name);
    let cluster = local_cluster(o.cluster.as_deref())?;
    let data = cluster.data_directory.clone();
    // A run killed between moving the data directory aside and the end of
    // the copy leaves no (or a partial) data directory: the next run
    // clones again, taking the owner from the parent directory.
    let data_exists = data.exists();
    let owner_of = if data_exists {
        data.clone()
    } else {
        data.parent().unwrap_or(Path::new("/")).to_path_buf()
    };
    let meta = std::fs::metadata(&owner_of)
        .map_err(|e| Error::failed(format!("{}: {e}", owner_of.display())).with_source(e))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let kept_before = kept_aside(&data);
    if !data_exists {
        report.warnings.push(format!(
            "{} is missing (an interrupted clone?); the clone starts again",
            data.display()
        ));
    }
    if !kept_before.is_empty() {
        report.warnings.push(format!(
            "data directories kept aside by earlier clones (remove them once you no longer need them): {}",
            kept_before
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let os_user = user_name(uid).ok_or_else(|| {
        Error::failed(format!(
            "the owner (uid {uid}) of {} has no name",
            data.display()
        ))
    })?;
    let local_major: u32 = cluster.version.parse().unwrap_or(0);

    // Checks: nothing changes until they pass.
    let copying = copy_running_into(&data);
    if !copying.is_empty() {
        let pids = copying
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        return Err(Error::refused_always(format!(
            "a pg_basebackup (pid {pids}) of an interrupted clone is still copying into {}: \
             wait until it ends or stop it (kill {pids}), then run --clone-from again",
            data.display()
        )));
    }
    if cluster.status.starts_with("online") {
        if streams_already(o, &cluster, &src, &slot).await? {
            // A clone killed after its start: finish it.
            let roles = roles_of(&src.user);
            if o.dry_run {
                report.done.push(format!(
                    "{} is already a standby of {}:{} through slot {slot}: would confirm streaming, admit the primary back and copy its exposedb block",
                    cluster.id(),
                    src.host,
                    src.port
                ));
                return Ok(());
            }
            // A standby of this primary that does not stream (WAL it
            // needs is gone, another timeline) is cloned again rather
            // than waited for at every run.
            match wait_streaming_for(o.admin_conn.as_deref(), &cluster, SETTLE_TIMEOUT).await {
                Ok(admin) => {
                    report.done.push(format!(
                        "{} already streams from {}:{} through slot {slot} (an earlier clone stopped after its start): finishing it",
                        cluster.id(),
                        src.host,
                        src.port
                    ));
                    return finish(&src, &roles, &admin, &data, report).await;
                }
                Err(_) => report.warnings.push(format!(
                    "{} is a standby of {}:{} through slot {slot} but does not stream after {}s: cloning it again",
                    cluster.id(),
                    src.host,
                    src.port,
                    SETTLE_TIMEOUT.as_secs()
                )),
            }
        }
        refuse_replacing_data(o, &cluster).await?;
    }
    let mut primary = ask_primary(&src, &slot).await?;
    // The walsender of a copy or standby killed a moment ago lets go of
    // the slot once it notices its client is gone.
    let released_by = Instant::now() + Duration::from_secs(5);
    while primary.slot.as_ref().is_some_and(|s| s.active) && Instant::now() < released_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
        primary = ask_primary(&src, &slot).await?;
    }
    if primary.major != local_major {
        return Err(Error::refused_always(format!(
            "the primary runs PostgreSQL {}, this cluster ({}) is {local_major}: streaming replication needs the same major version",
            primary.major,
            cluster.id()
        )));
    }
    match &primary.slot {
        None => {
            return Err(Error::refused_always(format!(
                "the primary has no slot {slot}; on the primary run: knocker replica --allow THIS_HOST_ADDRESS/32 --name {name}"
            )))
        }
        Some(s) if s.active => {
            return Err(Error::refused_always(format!(
                "slot {slot} is in use (walsender pid {}): another standby named {name} is streaming",
                s.active_pid.unwrap_or(0)
            )))
        }
        Some(s) if s.wal_status.as_deref() == Some("lost") && !o.force => {
            return Err(Error::refused(format!(
                "slot {slot} is lost; on the primary run --revoke and --allow again for a fresh slot"
            )))
        }
        Some(_) => {}
    }
    let parent = data.parent().unwrap_or(Path::new("/"));
    let space = replication::filesystem_space(parent).map_err(pg)?;
    // The copy plus WAL written meanwhile: ask for 10% and 1 GB more.
    let needed = u64::try_from(primary.database_bytes).unwrap_or(0) / 10 * 11 + (1 << 30);
    if space.available < needed && !o.force {
        return Err(Error::refused(format!(
            "{} has {} MB free; the primary's databases need about {} MB",
            parent.display(),
            space.available >> 20,
            needed >> 20
        )));
    }

    let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", cluster.version));
    let passfile = passfile_path(&cluster);
    let mut source = ConnInfo::builder()
        .host(src.host.clone())
        .port(src.port)
        .user(src.user.clone())
        .application_name(name.clone())
        .set(Keyword::Passfile, passfile.to_string_lossy().into_owned())
        .build();
    if let Some(m) = src.sslmode {
        source.set(Keyword::Sslmode, m.as_str());
    }
    let mut backup_argv = vec![
        "runuser".to_string(),
        "-u".into(),
        os_user.clone(),
        "--".into(),
    ];
    backup_argv.extend(
        Basebackup {
            bin_dir: bin,
            data_directory: data.clone(),
            source,
            slot: Some(slot.clone()),
            wal_directory: None,
            progress: o.progress,
        }
        .argv(),
    );
    let conninfo = PrimaryConninfo {
        host: src.host.clone(),
        port: src.port,
        user: src.user.clone(),
        application_name: name.clone(),
        sslmode: src.sslmode,
        passfile: Some(passfile.clone()),
        connect_timeout: Some(5),
    };
    let moved = moved_aside(&data);
    let roles = roles_of(&src.user);
    let pass_text = wildcard_passfile(&roles, &src.password);

    let mut plan = Plan::default();
    plan.files.push(FileChange::new(
        &passfile,
        b"",
        format!(
            "# {} lines for {}, {} and {} (mode 0600, owner {os_user}); passwords not shown\n",
            3, roles.replication, roles.rewind, roles.promote
        )
        .as_bytes(),
    ));
    let auto_conf_new =
        replication::auto_conf_line("primary_conninfo", &conninfo.to_keyword_value())
            + &replication::auto_conf_line("primary_slot_name", &slot);
    plan.files.push(FileChange::new(
        data.join("postgresql.auto.conf"),
        b"(from the primary)\n",
        format!("(from the primary, without synchronous_standby_names)\n{auto_conf_new}")
            .as_bytes(),
    ));
    plan.files
        .push(FileChange::new(data.join("standby.signal"), b"", b"\n"));
    let stopped = !cluster.status.starts_with("online");
    if !stopped {
        plan.commands.push(ctlcluster(&cluster, "stop"));
    }
    if data_exists {
        plan.commands.push(vec![
            "mv".into(),
            data.to_string_lossy().into_owned(),
            moved.to_string_lossy().into_owned(),
        ]);
    }
    plan.commands.push(backup_argv.clone());
    plan.commands.push(ctlcluster(&cluster, "start"));
    report.slots.push(slot.clone());
    report.done.push(format!(
        "checked: {}:{} is a primary of PostgreSQL {}, slot {slot} is free, {} MB free for about {} MB",
        src.host,
        src.port,
        primary.major,
        space.available >> 20,
        primary.database_bytes >> 20
    ));
    if o.dry_run {
        report.plan = Some(plan);
        return Ok(());
    }

    // Apply.
    crate::test_hook::stop_at("clone:checked");
    report.changed = true;
    write_owned(&passfile, pass_text.as_bytes(), 0o600, uid, gid)?;
    if !stopped {
        run_command(&ctlcluster(&cluster, "stop"), false)?;
        crate::test_hook::stop_at("clone:stopped");
    }
    if data_exists {
        std::fs::rename(&data, &moved).map_err(|e| {
            Error::failed(format!("moving {} aside: {e}", data.display())).with_source(e)
        })?;
        report.done.push(format!(
            "the old data directory is kept as {}",
            moved.display()
        ));
        crate::test_hook::stop_at("clone:moved-aside");
    }
    if let Err(e) = run_basebackup(&backup_argv, &data, o.progress) {
        if !data_exists {
            let _ = std::fs::remove_dir_all(&data);
            return Err(Error::failed(format!("the base backup failed: {e}")));
        }
        // Put the old cluster back as it was.
        let _ = std::fs::remove_dir_all(&data);
        let back = std::fs::rename(&moved, &data);
        if back.is_ok() && !stopped {
            let _ = run_command(&ctlcluster(&cluster, "start"), false);
        }
        return Err(match back {
            Ok(()) => Error::failed(format!(
                "the base backup failed; the old data directory is back in place: {e}"
            )),
            Err(b) => Error::failed(format!(
                "the base backup failed ({e}), and moving {} back failed too ({b}): move it back by hand",
                moved.display()
            )),
        });
    }
    let auto = data.join("postgresql.auto.conf");
    let old_auto = std::fs::read_to_string(&auto).unwrap_or_default();
    let kept = replication::remove_conf_values(&old_auto, &NOT_INHERITED);
    let new_auto = replication::set_conf_values(
        &kept,
        &[
            ("primary_conninfo", &conninfo.to_keyword_value()),
            ("primary_slot_name", &slot),
        ],
    );
    write_owned(&auto, new_auto.as_bytes(), 0o600, uid, gid)?;
    write_owned(&data.join("standby.signal"), b"", 0o600, uid, gid)?;
    crate::test_hook::stop_at("clone:configured");
    let admin = start_standby(o.admin_conn.as_deref(), &cluster).await?;
    report.done.push(format!(
        "cloned from {}:{} through slot {slot}; {} started as a standby",
        src.host,
        src.port,
        cluster.id()
    ));
    crate::test_hook::stop_at("clone:started");

    report
        .done
        .push(format!("streaming from {}:{}", src.host, src.port));
    crate::test_hook::stop_at("clone:streaming");
    finish(&src, &roles, &admin, &data, report).await
}

/// The steps after streaming is confirmed: admit the primary back, copy
/// its exposedb block, report the status.
async fn finish(
    src: &Source,
    roles: &super::block::BlockRoles,
    admin: &target::Admin,
    data: &Path,
    report: &mut Report,
) -> Result<(), Error> {
    admit_primary_back(src, roles, admin, report).await?;
    copy_exposedb_block(admin, &data.join(super::exposedb_copy::COPY_FILE), report).await?;
    super::status::status(admin, report).await
}

/// Whether the running local cluster is already a standby of `src`
/// through `slot` (what a clone killed after its start leaves).
async fn streams_already(
    o: &Options,
    cluster: &DebianCluster,
    src: &Source,
    slot: &str,
) -> Result<bool, Error> {
    let admin = target::Admin::connect(o.admin_conn.as_deref(), cluster.port).await?;
    let row = admin
        .client()
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('primary_slot_name'), \
                    pg_catalog.current_setting('primary_conninfo')",
            &[],
        )
        .await
        .map_err(|e| Error::failed(format!("asking the local cluster: {e}")).with_source(e))?;
    let (recovering, their_slot, conninfo): (bool, String, String) =
        (row.get(0), row.get(1), row.get(2));
    let upstream = ConnInfo::parse(&conninfo).ok();
    let host = upstream.as_ref().and_then(|c| c.get(Keyword::Host));
    let port = upstream
        .as_ref()
        .and_then(|c| c.get(Keyword::Port))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(5432);
    Ok(recovering && their_slot == slot && host == Some(src.host.as_str()) && port == src.port)
}

/// Puts the primary's exposedb block (the copy the base backup brought)
/// into this node's own pg_hba.conf, so the web nodes reach it once it is
/// primary. Also used by `failover --promote`.
pub(crate) async fn copy_exposedb_block(
    admin: &target::Admin,
    copy_path: &Path,
    report: &mut Report,
) -> Result<(), Error> {
    let Ok(copy) = std::fs::read(copy_path) else {
        report.warnings.push(format!(
            "no copy of the primary's exposedb block ({} is missing: its knocker is older); \
             run knocker exposedb --add here for each web node",
            copy_path.display()
        ));
        return Ok(());
    };
    let (path, old) = admin.read_hba()?;
    let version = admin.version()?;
    if super::exposedb_copy::apply(&old, &copy, version)?.is_none_or(|new| new == old) {
        return Ok(());
    }
    admin
        .install_hba(&path, move |cur: &[u8]| {
            super::exposedb_copy::apply(cur, &copy, version)
                .map(|n| n.unwrap_or_else(|| cur.to_vec()))
        })
        .await?;
    report.done.push(format!(
        "{}: the primary's exposedb block is in place (the same web nodes are admitted here)",
        path.display()
    ));
    Ok(())
}

/// Makes this standby ready to be the primary of its own primary one day
/// (switchover, `--promote`): the slot `knocker_<primary name>` (made
/// here, in recovery, without reserving WAL until it is used, so it holds
/// nothing meanwhile) and, in this node's own pg_hba.conf, the replica
/// block admitting the primary's address for the three roles.
async fn admit_primary_back(
    src: &Source,
    roles: &super::block::BlockRoles,
    admin: &target::Admin,
    report: &mut Report,
) -> Result<(), Error> {
    let Some(primary_name) = &src.primary_name else {
        report.warnings.push(
            "the replication URL names no primary (an older knocker printed it): this node does not admit it back; \
             after a promotion run knocker replica --allow OLD_PRIMARY/32 --name OLD_NAME here"
                .into(),
        );
        return Ok(());
    };
    let Ok(addr) = src.host.parse::<std::net::IpAddr>() else {
        report.warnings.push(format!(
            "the primary is named by host name ({}), not address: after a promotion run knocker replica --allow ADDRESS/32 --name {primary_name} here",
            src.host
        ));
        return Ok(());
    };
    let slot = slot_name(primary_name);
    admin
        .client()
        .batch_execute(&reserve_later_slot_sql(&slot))
        .await
        .map_err(|e| {
            Error::failed(format!("creating slot {slot} for the primary: {e}")).with_source(e)
        })?;
    let (path, _) = admin.read_hba()?;
    let version = admin.version()?;
    let ssl = admin.facts.ssl;
    let edit = super::block::BlockEdit::Allow {
        name: primary_name.clone(),
        cidr: ipnet::IpNet::from(addr),
    };
    let comment = super::rule_comment();
    let roles2 = roles.clone();
    let changed = admin
        .install_hba(&path, move |cur: &[u8]| {
            super::block::edit(cur, version, &roles2, ssl, &edit, &comment)
        })
        .await?;
    report.slots.push(slot.clone());
    report.done.push(format!(
        "ready to serve {primary_name} after a switchover: slot {slot}{}",
        if changed {
            format!(", and {} admits {addr}", path.display())
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// Creates physical slot `name` unless it exists, reserving no WAL until a
/// standby first streams through it (a slot on a node that has no standby
/// yet must not hold WAL back).
pub(crate) fn reserve_later_slot_sql(name: &str) -> String {
    let lit = format!("'{}'", name.replace('\'', "''"));
    format!(
        "SELECT pg_catalog.pg_create_physical_replication_slot({lit}, false) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = {lit})"
    )
}

/// Refuses to replace a running primary that holds data of its own (the
/// clone would stop it and move its data aside: run on the wrong host, or
/// with the wrong `--cluster`, that is an outage), unless forced. A fresh
/// cluster (only the default databases) and a standby are replaced.
async fn refuse_replacing_data(o: &Options, cluster: &DebianCluster) -> Result<(), Error> {
    let admin = target::Admin::connect(o.admin_conn.as_deref(), cluster.port).await?;
    if replication::is_in_recovery(admin.client())
        .await
        .map_err(pg)?
    {
        return Ok(());
    }
    let databases: Vec<String> = admin
        .client()
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database \
             WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::failed(format!("listing databases: {e}")).with_source(e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !databases.is_empty() && !o.force {
        return Err(Error::refused(format!(
            "{} is a running primary with databases of its own ({}); --clone-from would stop it and replace its data (kept aside). \
             Is this the standby host, and the right --cluster?",
            cluster.id(),
            databases.join(", ")
        )));
    }
    Ok(())
}

/// How often [`start_standby`] looks whether the standby streams yet.
const START_POLL: Duration = Duration::from_millis(50);

/// Reads `pipe` to its end on a thread of its own (see [`start_standby`]).
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut text);
        }
        text
    })
}

/// Starts the standby `cluster` (`pg_ctlcluster VERSION NAME start`) and
/// waits until it streams from its upstream; returns the session it
/// watched through.
///
/// `pg_ctlcluster start` returns only after its own stability probe, a
/// psql connection every 0.5 s until three in a row succeed: at least 2 s
/// after the server is up (systemd's unit runs the same code). A standby
/// that streams is a stronger sign than that probe, so the wrapper is
/// watched, not waited for: if it fails first, its output is the error;
/// once the standby streams, the wrapper (this process's own child; pg_ctl
/// has started the server in a session of its own) is ended and reaped.
/// `cargo xtask bench failover` measured the probe as 2.0-2.4 s of every
/// clone and rejoin (BENCHMARKS.md).
pub(crate) async fn start_standby(
    admin_conn: Option<&str>,
    cluster: &DebianCluster,
) -> Result<target::Admin, Error> {
    let argv = ctlcluster(cluster, "start");
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", argv[0])).with_source(e))?;
    // Each pipe read to its end on a thread of its own: a long failure
    // message (the server log pg_ctlcluster prints) never blocks the
    // wrapper, and a process that keeps a pipe open after the wrapper is
    // ended (under systemd, the `systemctl start` it runs) blocks nobody.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let mut connected = false;
    loop {
        let exited = child
            .try_wait()
            .map_err(|e| Error::failed(format!("waiting for {}: {e}", argv[0])).with_source(e))?;
        if let Some(status) = exited {
            if !status.success() {
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                return Err(Error::failed(format!(
                    "`{}` failed ({status}): {}{}",
                    crate::plan::shell_words(&argv),
                    String::from_utf8_lossy(&out).trim(),
                    String::from_utf8_lossy(&err).trim()
                )));
            }
            return wait_streaming(admin_conn, cluster).await;
        }
        if let Ok(admin) = target::Admin::connect(admin_conn, cluster.port).await {
            connected = true;
            if streams(&admin).await? {
                // Still our unreaped child (try_wait said so just above and
                // only this function reaps it): ending it cannot hit another
                // process. The server runs in a session of its own.
                if let Ok(pid) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) has no memory preconditions.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
                let _ = child.wait();
                return Ok(admin);
            }
        }
        if Instant::now() > deadline {
            return Err(not_streaming(cluster, STREAM_TIMEOUT));
        }
        // Until the server accepts connections each attempt is a FATAL
        // line in its log: poll slowly then, fast once it answers.
        tokio::time::sleep(if connected {
            START_POLL
        } else {
            START_POLL * 5
        })
        .await;
    }
}

/// Whether the standby behind `admin` streams from its upstream.
async fn streams(admin: &target::Admin) -> Result<bool, Error> {
    let receiver = replication::wal_receiver(admin.client())
        .await
        .map_err(pg)?;
    Ok(receiver.is_some_and(|r| r.status == "streaming"))
}

fn not_streaming(cluster: &DebianCluster, timeout: Duration) -> Error {
    Error::failed(format!(
        "the standby started but does not stream after {}s; see the server log of {} (knocker replica --status)",
        timeout.as_secs(),
        cluster.id()
    ))
}

/// Waits until the local standby `cluster` streams from its upstream;
/// returns the session it watched through.
pub(crate) async fn wait_streaming(
    admin_conn: Option<&str>,
    cluster: &DebianCluster,
) -> Result<target::Admin, Error> {
    wait_streaming_for(admin_conn, cluster, STREAM_TIMEOUT).await
}

/// [`wait_streaming`], giving up after `timeout`.
async fn wait_streaming_for(
    admin_conn: Option<&str>,
    cluster: &DebianCluster,
    timeout: Duration,
) -> Result<target::Admin, Error> {
    let admin = target::Admin::connect(admin_conn, cluster.port).await?;
    let deadline = Instant::now() + timeout;
    loop {
        if streams(&admin).await? {
            return Ok(admin);
        }
        if Instant::now() > deadline {
            return Err(not_streaming(cluster, timeout));
        }
        tokio::time::sleep(START_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_owned_never_follows_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let target = dir.path().join("standby.signal");
        let tmp = dir.path().join(format!(
            ".standby.signal.knocker-tmp-{}",
            std::process::id()
        ));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        write_owned(&target, b"new", 0o600, uid, gid).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn source_needs_host_user_and_password() {
        let s = parse_source(
            "postgresql://app_replication:pw@10.0.0.1:5433/?sslmode=require",
            "--clone-from",
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str()),
            ("10.0.0.1", 5433, "app_replication")
        );
        assert_eq!(s.sslmode, Some(pgctl::connect::SslMode::Require));
        for bad in [
            "postgresql://app_replication@10.0.0.1/",
            "postgresql://:pw@10.0.0.1/",
            "postgresql://u:pw@a,b/",
            "not a uri = ",
        ] {
            assert_eq!(
                parse_source(bad, "--clone-from").unwrap_err().kind(),
                crate::ErrorKind::Usage,
                "{bad}"
            );
        }
        assert_eq!(rewind_role_of("knocknoc_replication"), "knocknoc_rewind");
    }
}
