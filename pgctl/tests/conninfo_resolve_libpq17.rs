//! Differential test of resolution: the `PG*` environment, `.pgpass` and the
//! value checks, ours against libpq 17 itself (`libpq.so.5` of the npm
//! PostgreSQL 17 provisioned by `cargo xtask pg`, or `$KNOCKER_LIBPQ17`).
//!
//! For each case the environment is set for real (this file holds a single
//! test, so nothing else in the process reads it meanwhile), then libpq's
//! `PQconnectStart` resolves the options and starts connecting to a local
//! listener that never answers, and we run [`resolve_from_process_env`] on
//! the same string. Compared: verdict and message, user, database, first
//! host and port, the password libpq would send to the first host, sslmode,
//! target_session_attrs, connect_timeout, application_name and the number of
//! hosts. Every host is a unix socket or numeric address, so nothing is
//! looked up in DNS. Cases always name a host: the default socket directory
//! is a build choice (ours is Debian's `/var/run/postgresql`, the npm
//! build's is `/tmp`).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use pgctl::conninfo::{resolve_from_process_env, ConnInfo};

#[path = "testsuite/libpq17.rs"]
mod libpq17;
use libpq17::{open_libpq17, options, sym, PQconninfoOption};

type Conn = *mut c_void;

struct Libpq {
    connect_start: unsafe extern "C" fn(*const c_char) -> Conn,
    status: unsafe extern "C" fn(Conn) -> c_int,
    error_message: unsafe extern "C" fn(Conn) -> *const c_char,
    finish: unsafe extern "C" fn(Conn),
    host: unsafe extern "C" fn(Conn) -> *const c_char,
    port: unsafe extern "C" fn(Conn) -> *const c_char,
    pass: unsafe extern "C" fn(Conn) -> *const c_char,
    conninfo: unsafe extern "C" fn(Conn) -> *mut PQconninfoOption,
    conninfo_free: unsafe extern "C" fn(*mut PQconninfoOption),
}

fn load() -> Libpq {
    let (h, _) = open_libpq17();
    // SAFETY: the symbols have the signatures of libpq-fe.h; the library is
    // never unloaded.
    unsafe {
        Libpq {
            connect_start: sym(h, c"PQconnectStart"),
            status: sym(h, c"PQstatus"),
            error_message: sym(h, c"PQerrorMessage"),
            finish: sym(h, c"PQfinish"),
            host: sym(h, c"PQhost"),
            port: sym(h, c"PQport"),
            pass: sym(h, c"PQpass"),
            conninfo: sym(h, c"PQconninfo"),
            conninfo_free: sym(h, c"PQconninfoFree"),
        }
    }
}

/// What either side concluded.
#[derive(Debug, PartialEq)]
enum Outcome {
    Resolved(Vec<(&'static str, String)>),
    Rejected(String),
}

const CONNECTION_BAD: c_int = 1;

fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: libpq returns NUL-terminated strings owned by the PGconn.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn int_or(s: &str, default: i64) -> i64 {
    let t = s.trim();
    if t.is_empty() {
        default
    } else {
        t.parse().unwrap_or(i64::MIN)
    }
}

impl Libpq {
    fn resolve(&self, s: &str) -> Outcome {
        let cs = CString::new(s).unwrap();
        // SAFETY: PQconnectStart returns a PGconn (NULL only when out of
        // memory) that we read and then free with PQfinish.
        unsafe {
            let conn = (self.connect_start)(cs.as_ptr());
            assert!(!conn.is_null());
            let message = text((self.error_message)(conn));
            let message = message.trim_end_matches('\n').to_owned();
            // A failure to connect is not a resolution failure: the options
            // were accepted (our listeners never answer, so this is rare).
            if (self.status)(conn) == CONNECTION_BAD && !message.starts_with("connection to server")
            {
                (self.finish)(conn);
                return Outcome::Rejected(message);
            }
            let mut fields = Vec::new();
            let opts = (self.conninfo)(conn);
            let mut host_list = String::new();
            let mut hostaddr_list = String::new();
            for (k, val) in options(opts) {
                let v = val.clone().unwrap_or_default();
                match k.as_str() {
                    "user" => fields.push(("user", v)),
                    "dbname" => fields.push(("dbname", v)),
                    "sslmode" => fields.push(("sslmode", v)),
                    "target_session_attrs" => fields.push(("target_session_attrs", v)),
                    "application_name" => fields.push(("application_name", v)),
                    "connect_timeout" => {
                        let t = if val.is_none() { 0 } else { int_or(&v, 0) };
                        let t = if t > 0 { t.max(2) } else { 0 };
                        fields.push(("connect_timeout", t.to_string()));
                    }
                    "host" => host_list = v,
                    "hostaddr" => hostaddr_list = v,
                    _ => {}
                }
            }
            (self.conninfo_free)(opts);
            let count = if !hostaddr_list.is_empty() {
                hostaddr_list.split(',').count()
            } else if !host_list.is_empty() {
                host_list.split(',').count()
            } else {
                1
            };
            fields.push(("hosts", count.to_string()));
            fields.push(("host0", text((self.host)(conn))));
            fields.push(("port0", int_or(&text((self.port)(conn)), 5432).to_string()));
            fields.push(("password0", text((self.pass)(conn))));
            (self.finish)(conn);
            fields.sort();
            Outcome::Resolved(fields)
        }
    }
}

fn ours(s: &str) -> Outcome {
    let info = match ConnInfo::parse(s) {
        Ok(i) => i,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    match resolve_from_process_env(&info) {
        Err(e) => Outcome::Rejected(e.to_string()),
        Ok(r) => {
            let p = &r.params;
            let h = &p.hosts[0];
            let host0 = if h.host.is_empty() {
                h.hostaddr.map(|a| a.to_string()).unwrap_or_default()
            } else {
                h.host.clone()
            };
            let mut fields = vec![
                ("user", p.user.clone()),
                ("dbname", p.dbname.clone()),
                ("sslmode", p.sslmode.as_str().to_owned()),
                (
                    "target_session_attrs",
                    p.target_session_attrs.as_str().to_owned(),
                ),
                (
                    "application_name",
                    info.get(pgctl::conninfo::Keyword::ApplicationName)
                        .map(str::to_owned)
                        .or_else(|| std::env::var("PGAPPNAME").ok())
                        .unwrap_or_default(),
                ),
                (
                    "connect_timeout",
                    p.connect_timeout.map_or(0, |d| d.as_secs()).to_string(),
                ),
                ("hosts", p.hosts.len().to_string()),
                ("host0", host0),
                ("port0", h.port.to_string()),
                (
                    "password0",
                    h.effective_password(p).unwrap_or_default().to_owned(),
                ),
            ];
            fields.sort();
            Outcome::Resolved(fields)
        }
    }
}

/// Every environment variable resolution reads.
const VARS: &[&str] = &[
    "PGSERVICE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGCHANNELBINDING",
    "PGCONNECT_TIMEOUT",
    "PGDATABASE",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGCLIENTENCODING",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGSSLNEGOTIATION",
    "PGSSLCOMPRESSION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGREQUIREPEER",
    "PGREQUIREAUTH",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGREQUIRESSL",
    "PGSYSCONFDIR",
    "PGSERVICEFILE",
    "HOME",
];

#[test]
fn resolution_matches_libpq17() {
    let libpq = load();
    let dir = tempfile::Builder::new()
        .prefix("ci")
        .tempdir_in("/tmp")
        .unwrap();
    let sock = dir.path().join("s");
    fs::create_dir(&sock).unwrap();
    // Listeners that accept nothing: libpq connects into the backlog and
    // waits, so it stays on the first host.
    let _unix: Vec<_> = [5432, 6000]
        .iter()
        .map(|p| {
            std::os::unix::net::UnixListener::bind(sock.join(format!(".s.PGSQL.{p}"))).unwrap()
        })
        .collect();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port().to_string();
    let sock = sock.display().to_string();

    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let write = |path: PathBuf, content: String, mode: u32| {
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    };
    let pass = write(
        dir.path().join("pgpass"),
        format!(
            "# comment\n\
             {sock}:5432:app:alice:sockpw\n\
             {sock}:6000:app:alice:six\\:thousand\\\\\n\
             127.0.0.1:{tcp_port}:app:alice:tcppw\r\n\
             127.0.0.1:*:*:bob:bobpw\n\
             *:*:other:*:wildcard\n"
        ),
        0o600,
    );
    let pass2 = write(dir.path().join("pgpass2"), "*:*:*:*:second\n".into(), 0o600);
    let insecure = write(
        dir.path().join("pgpass3"),
        "*:*:*:*:insecure\n".into(),
        0o644,
    );
    write(home.join(".pgpass"), "*:*:*:*:fromhome\n".into(), 0o600);
    let home = home.display().to_string();

    let s = |t: &str| {
        t.replace("{SOCK}", &sock)
            .replace("{PORT}", &tcp_port)
            .replace("{PASS}", &pass)
            .replace("{PASS2}", &pass2)
            .replace("{INSECURE}", &insecure)
            .replace("{HOME}", &home)
    };
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("host={SOCK}", &[]),
        ("", &[("PGHOST", "{SOCK}")]),
        (
            "",
            &[
                ("PGHOST", "{SOCK}"),
                ("PGPORT", "6000"),
                ("PGUSER", "bob"),
                ("PGDATABASE", "db"),
                ("PGPASSWORD", "pw"),
            ],
        ),
        ("host={SOCK} user=carol", &[("PGUSER", "bob")]),
        (
            "host={SOCK} dbname=",
            &[("PGDATABASE", "envdb"), ("PGUSER", "u")],
        ),
        ("host={SOCK} dbname=''", &[("PGDATABASE", "envdb")]),
        ("postgresql:///db?host={SOCK}", &[("PGUSER", "u")]),
        ("postgresql://u@:6000/db?host={SOCK}", &[]),
        ("host={SOCK}", &[("PGSSLMODE", "require")]),
        ("host={SOCK}", &[("PGSSLMODE", "bogus")]),
        ("host={SOCK} sslmode=disable", &[("PGSSLMODE", "bogus")]),
        ("host={SOCK}", &[("PGREQUIRESSL", "1")]),
        (
            "host={SOCK}",
            &[("PGREQUIRESSL", "1"), ("PGSSLMODE", "allow")],
        ),
        ("host={SOCK} sslrootcert=system", &[]),
        ("host={SOCK}", &[("PGSSLROOTCERT", "system")]),
        ("host={SOCK} sslrootcert=system sslmode=require", &[]),
        (
            "host={SOCK} sslrootcert=system",
            &[("PGSSLMODE", "verify-ca")],
        ),
        ("host={SOCK}", &[("PGTARGETSESSIONATTRS", "read-only")]),
        ("host={SOCK} target_session_attrs=standby", &[]),
        ("host={SOCK} target_session_attrs=master", &[]),
        ("host={SOCK}", &[("PGTARGETSESSIONATTRS", "Read-Write")]),
        ("host={SOCK},{SOCK} port=5432,6000", &[]),
        ("host={SOCK},{SOCK},{SOCK} port=6000", &[]),
        ("host={SOCK},{SOCK},{SOCK} port=1,2", &[]),
        ("host={SOCK},127.0.0.1 hostaddr=127.0.0.1", &[]),
        ("host={SOCK}", &[("PGHOSTADDR", "127.0.0.1,127.0.0.2")]),
        ("hostaddr=127.0.0.1 port={PORT}", &[]),
        ("host=localhost hostaddr=127.0.0.1 port={PORT}", &[]),
        ("hostaddr=127.0.0.1", &[("PGPORT", "{PORT}")]),
        ("hostaddr=not.an.ip port={PORT}", &[]),
        // ConnectParams keeps the address, not its spelling: name a host.
        ("host=localhost hostaddr=127.1 port={PORT}", &[]),
        ("host=localhost hostaddr=0x7f.0.0.1 port={PORT}", &[]),
        ("host=localhost hostaddr=127.0.0.1x port={PORT}", &[]),
        ("host=localhost hostaddr=::1 port={PORT}", &[]),
        ("host={SOCK} port=abc", &[]),
        ("host={SOCK} port=70000", &[]),
        ("host={SOCK} port=0", &[]),
        ("host={SOCK} port=' 6000 '", &[]),
        ("host={SOCK}", &[("PGPORT", "6000x")]),
        ("host={SOCK} connect_timeout=1", &[]),
        ("host={SOCK}", &[("PGCONNECT_TIMEOUT", "10")]),
        ("host={SOCK} connect_timeout=-5", &[]),
        ("host={SOCK} application_name=a", &[("PGAPPNAME", "env")]),
        ("host={SOCK}", &[("PGAPPNAME", "env")]),
        ("host={SOCK} channel_binding=yes", &[]),
        ("host={SOCK}", &[("PGCHANNELBINDING", "disable")]),
        (
            "host={SOCK} ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=tlsv1.2",
            &[],
        ),
        ("host={SOCK} ssl_min_protocol_version=TLSv1.4", &[]),
        (
            "host={SOCK} ssl_min_protocol_version=TLSv1 ssl_max_protocol_version=TLSv1",
            &[],
        ),
        (
            "host={SOCK} ssl_min_protocol_version=tlsv1.2 ssl_max_protocol_version=TLSv1",
            &[],
        ),
        ("host={SOCK} sslcertmode=bogus", &[]),
        ("host={SOCK} gssencmode=bogus", &[]),
        ("host={SOCK} load_balance_hosts=sometimes", &[]),
        ("host={SOCK} sslnegotiation=bogus", &[]),
        ("host={SOCK} sslnegotiation=direct", &[]),
        ("host={SOCK} sslnegotiation=direct sslmode=allow", &[]),
        // .pgpass
        (
            "host={SOCK} user=alice dbname=app",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host={SOCK} port=6000 user=alice dbname=app",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "hostaddr=127.0.0.1 port={PORT} user=alice dbname=app",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host=127.0.0.1 port={PORT} user=alice dbname=app",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host=localhost hostaddr=127.0.0.1 port={PORT} user=alice dbname=app",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "hostaddr=127.0.0.1 port={PORT} user=bob",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host={SOCK} user=zed dbname=other",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host={SOCK} user=zed dbname=nomatch",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host={SOCK} user=alice dbname=app password=given",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host={SOCK} user=alice dbname=app",
            &[("PGPASSFILE", "{PASS}"), ("PGPASSWORD", "envpw")],
        ),
        (
            "host={SOCK} user=alice dbname=app",
            &[("PGPASSFILE", "{PASS}"), ("PGPASSWORD", "")],
        ),
        (
            "host={SOCK} user=alice dbname=app password=",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host={SOCK} user=alice dbname=app passfile={PASS2}",
            &[("PGPASSFILE", "{PASS}")],
        ),
        (
            "host={SOCK} user=alice dbname=app",
            &[("PGPASSFILE", "{INSECURE}")],
        ),
        ("host={SOCK} user=alice dbname=app", &[("HOME", "{HOME}")]),
        (
            "host={SOCK} user=alice dbname=app",
            &[("HOME", "{HOME}"), ("PGPASSFILE", "{PASS2}")],
        ),
        (
            "host={SOCK} user=alice dbname=app passfile=",
            &[("HOME", "{HOME}")],
        ),
        (
            "postgresql://alice@:6000/app?host={SOCK}",
            &[("PGPASSFILE", "{PASS}")],
        ),
    ];
    assert!(cases.len() >= 60);

    let mut failures = Vec::new();
    for (conninfo, env) in cases {
        for var in VARS {
            std::env::remove_var(var);
        }
        // HOME unset: both fall back to the password database; point it at
        // an empty directory instead so that a real ~/.pgpass cannot interfere.
        std::env::set_var("HOME", dir.path());
        for (k, v) in *env {
            std::env::set_var(k, s(v));
        }
        let conninfo = s(conninfo);
        let theirs = libpq.resolve(&conninfo);
        let mine = ours(&conninfo);
        if theirs != mine {
            failures.push(format!(
                "{conninfo:?} with {env:?}\n  libpq 17: {theirs:?}\n  ours:     {mine:?}"
            ));
        }
    }
    drop(tcp);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
