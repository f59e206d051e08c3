//! `pgctl::connect` against real servers: host lists, target_session_attrs,
//! unix sockets, peer authentication as another OS user, and the error
//! classes a human gets to see.

use std::time::{Duration, Instant};

use pg_harness::{Cluster, ClusterOptions};
use pgctl::connect::{
    connect, connect_as_os_user, ConnectErrorKind, ConnectParams, Connected, HostParam, SslMode,
    TargetSessionAttrs,
};

use crate::common::{free_port, make_standby, postgres_on, read_only_cluster, refused};

fn tcp(port: u16) -> HostParam {
    HostParam::tcp("127.0.0.1", port)
}

fn socket(pg: &Cluster) -> HostParam {
    HostParam::unix(pg.socket_dir().to_str().unwrap(), pg.port())
}

/// `user` with `password` to `db` on `hosts`, without TLS.
fn params(hosts: Vec<HostParam>, user: &str, password: Option<&str>, db: &str) -> ConnectParams {
    let mut p = superuser(hosts);
    p.user = user.to_owned();
    p.password = password.map(str::to_owned);
    p.dbname = db.to_owned();
    p
}

/// The superuser connected, without TLS, to the first of `hosts` that
/// `attrs` accepts.
async fn connect_with(hosts: &[HostParam], attrs: TargetSessionAttrs) -> Connected {
    let mut p = superuser(hosts.to_vec());
    p.target_session_attrs = attrs;
    connect(&p)
        .await
        .unwrap_or_else(|e| panic!("{attrs:?}: {e}"))
}

/// The harness's superuser on `hosts`, without TLS.
fn superuser(hosts: Vec<HostParam>) -> ConnectParams {
    postgres_on(hosts, SslMode::Disable, None)
}

#[test]
fn second_host_answers_when_the_first_is_stopped_pg17() {
    pg_harness::block_on(async {
        let stopped = Cluster::start(17).await;
        stopped.stop().await;
        let running = Cluster::start(17).await;
        let c = connect(&superuser(vec![tcp(stopped.port()), tcp(running.port())]))
            .await
            .expect("second host");
        assert_eq!(c.host().port, running.port());
        assert_eq!(c.address(), "127.0.0.1");
        let v: String = c
            .client()
            .query_one("SHOW server_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(c.server_facts().server_version.as_deref(), Some(v.as_str()));

        let e = refused(
            &superuser(vec![tcp(stopped.port())]),
            ConnectErrorKind::Refused,
            "only the stopped host",
        )
        .await;
        assert_eq!(e.main_attempt().unwrap().os_error, Some(libc::ECONNREFUSED));
        assert!(e.to_string().contains("is the server running"), "{e}");
    });
}

pg_harness::pg_test!(
    async fn read_write_skips_a_read_only_server(major: u32) {
        let read_only = read_only_cluster(major).await;
        let writable = Cluster::start(major).await;
        let hosts = vec![tcp(read_only.port()), tcp(writable.port())];

        let c = connect_with(&hosts, TargetSessionAttrs::ReadWrite).await;
        assert_eq!(c.host().port, writable.port());
        assert_eq!(c.server_facts().read_only(), Some(false));

        let c = connect_with(&hosts, TargetSessionAttrs::ReadOnly).await;
        assert_eq!(c.host().port, read_only.port());
        assert_eq!(c.server_facts().read_only(), Some(true));

        let c = connect_with(&hosts, TargetSessionAttrs::Any).await;
        assert_eq!(c.host().port, read_only.port(), "any takes the first");

        let mut only_ro = superuser(vec![tcp(read_only.port())]);
        only_ro.target_session_attrs = TargetSessionAttrs::ReadWrite;
        let e = refused(
            &only_ro,
            ConnectErrorKind::WrongSessionType,
            "no writable server",
        )
        .await;
        assert!(e.to_string().contains("session is read-only"), "{e}");
    }
);

#[test]
fn primary_standby_and_prefer_standby_pg17() {
    pg_harness::block_on(async {
        let standby = Cluster::start(17).await;
        make_standby(&standby).await;
        let primary = Cluster::start(17).await;
        let both = vec![tcp(standby.port()), tcp(primary.port())];

        let c = connect_with(&both, TargetSessionAttrs::Primary).await;
        assert_eq!(c.host().port, primary.port());
        assert_eq!(c.server_facts().standby(), Some(false));

        let c = connect_with(&both, TargetSessionAttrs::ReadWrite).await;
        assert_eq!(c.host().port, primary.port());

        let primary_first = [tcp(primary.port()), tcp(standby.port())];
        let c = connect_with(&primary_first, TargetSessionAttrs::Standby).await;
        assert_eq!(c.host().port, standby.port());
        assert_eq!(c.server_facts().standby(), Some(true));

        let c = connect_with(&primary_first, TargetSessionAttrs::PreferStandby).await;
        assert_eq!(c.host().port, standby.port());

        // prefer-standby without any standby: second pass takes any server.
        let only_primary = [tcp(primary.port())];
        let c = connect_with(&only_primary, TargetSessionAttrs::PreferStandby).await;
        assert_eq!(c.host().port, primary.port());

        let mut p = superuser(only_primary.to_vec());
        p.target_session_attrs = TargetSessionAttrs::Standby;
        let e = refused(&p, ConnectErrorKind::WrongSessionType, "no standby").await;
        assert!(e.to_string().contains("not in hot standby"), "{e}");
    });
}

#[test]
fn unix_socket_host_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start(17).await;
        let mut p = superuser(vec![socket(&pg)]);
        // TLS is never used on unix sockets, even when required.
        p.sslmode = SslMode::Require;
        let c = connect(&p).await.expect("unix socket");
        assert!(!c.is_tls());
        assert_eq!(
            c.address(),
            pg.socket_dir()
                .join(format!(".s.PGSQL.{}", pg.port()))
                .to_str()
                .unwrap()
        );
        pg.stop().await;
        let e = refused(&p, ConnectErrorKind::Refused, "socket gone").await;
        assert!(e.to_string().contains("socket"), "{e}");
    });
}

const PEER_HBA: &str = "\
local   all   all                     peer
host    all   postgres   127.0.0.1/32 trust
";

#[test]
fn connect_as_os_user_passes_peer_authentication_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start_with(17, ClusterOptions::with_hba(PEER_HBA)).await;
        let os_user = pg.os_user().name.clone();
        // The server's OS user (often `postgres`) needs a role of its name;
        // created over TCP, as the socket is peer-only here.
        let admin = pg.connect().await;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&os_user])
            .await
            .unwrap()
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE ROLE \"{os_user}\" LOGIN"))
                .await
                .unwrap();
        }
        let p = params(vec![socket(&pg)], &os_user, None, "postgres");

        // As root, peer authentication sees "root" and refuses.
        let e = refused(
            &p,
            ConnectErrorKind::AuthenticationFailed,
            "root is not that role",
        )
        .await;
        assert_eq!(e.sqlstate(), Some("28000"));

        let c = connect_as_os_user(&p, &os_user)
            .await
            .expect("peer as the OS user");
        let who: String = c
            .client()
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, os_user);
        // The identity was borrowed by one short-lived thread only.
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0);

        let e = connect_as_os_user(&p, "no-such-os-user-knocker")
            .await
            .expect_err("unknown OS user");
        assert_eq!(e.kind(), ConnectErrorKind::InvalidParameters);
    });
}

const PASSWORD_HBA: &str = "\
local   all   all                       trust
host    all   postgres   127.0.0.1/32   trust
host    all   app        127.0.0.1/32   scram-sha-256
";

#[test]
fn server_side_error_classes_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start_with(17, ClusterOptions::with_hba(PASSWORD_HBA)).await;
        pg.create_role("app", "right-secret").await;
        pg.create_role("stranger", "stranger-secret").await;
        let port = pg.port();

        let e = refused(
            &params(vec![tcp(port)], "app", Some("wrong-secret"), "postgres"),
            ConnectErrorKind::BadPassword,
            "bad password",
        )
        .await;
        assert_eq!(e.sqlstate(), Some("28P01"));
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("wrong-secret"), "password leaked: {shown}");

        refused(
            &params(vec![tcp(port)], "app", None, "postgres"),
            ConnectErrorKind::PasswordMissing,
            "no password",
        )
        .await;

        let e = refused(
            &params(
                vec![tcp(port)],
                "stranger",
                Some("stranger-secret"),
                "postgres",
            ),
            ConnectErrorKind::NoHbaEntry,
            "no pg_hba entry",
        )
        .await;
        let hba = e.hba_rejection().unwrap();
        assert_eq!(
            (
                hba.client_address.as_str(),
                hba.user.as_str(),
                hba.database.as_deref()
            ),
            ("127.0.0.1", "stranger", Some("postgres"))
        );
        assert!(
            e.to_string()
                .contains("add a pg_hba.conf rule for 127.0.0.1/32"),
            "{e}"
        );

        let e = refused(
            &params(vec![tcp(port)], "postgres", None, "no_such_db"),
            ConnectErrorKind::DatabaseDoesNotExist,
            "no database",
        )
        .await;
        assert_eq!(e.sqlstate(), Some("3D000"));

        // trust on the socket reveals that the role is missing
        refused(
            &params(vec![socket(&pg)], "ghost", None, "postgres"),
            ConnectErrorKind::RoleDoesNotExist,
            "no role",
        )
        .await;

        let c = connect(&params(
            vec![tcp(port)],
            "app",
            Some("right-secret"),
            "postgres",
        ))
        .await
        .expect("right password");
        assert!(!c.is_closed());
    });
}

#[test]
fn too_many_connections_pg17() {
    pg_harness::block_on(async {
        let pg = Cluster::start_with(
            17,
            ClusterOptions {
                settings: vec![
                    ("max_connections".into(), "3".into()),
                    ("superuser_reserved_connections".into(), "0".into()),
                    ("reserved_connections".into(), "0".into()),
                ],
                ..Default::default()
            },
        )
        .await;
        let p = superuser(vec![tcp(pg.port())]);
        let mut open = Vec::new();
        let error = loop {
            match connect(&p).await {
                Ok(c) => open.push(c),
                Err(e) => break e,
            }
            assert!(open.len() <= 3, "max_connections not enforced");
        };
        assert_eq!(
            error.kind(),
            ConnectErrorKind::TooManyConnections,
            "{error}"
        );
        assert_eq!(error.sqlstate(), Some("53300"));
    });
}

#[test]
fn shutting_down_server_moves_on_to_the_next_host_pg17() {
    pg_harness::block_on(async {
        let closing = Cluster::start(17).await;
        let other = Cluster::start(17).await;
        // A smart shutdown waits for this session and refuses new ones
        // with 57P03.
        let holder = closing.connect().await;
        let pid = i32::try_from(closing.pid().unwrap()).unwrap();
        // SAFETY: plain kill(2) on the postmaster we started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        assert!(
            closing
                .wait_for_log(
                    "received smart shutdown request",
                    1,
                    Duration::from_secs(10)
                )
                .await
        );
        let e = refused(
            &superuser(vec![tcp(closing.port())]),
            ConnectErrorKind::ServerNotAccepting,
            "shutting down",
        )
        .await;
        assert_eq!(e.sqlstate(), Some("57P03"));

        let c = connect(&superuser(vec![tcp(closing.port()), tcp(other.port())]))
            .await
            .expect("next host");
        assert_eq!(c.host().port, other.port());
        drop(holder);
    });
}

#[tokio::test]
async fn network_error_classes() {
    // refused: nothing listens on a just-freed port
    refused(
        &superuser(vec![tcp(free_port())]),
        ConnectErrorKind::Refused,
        "refused",
    )
    .await;

    // timeout: a listener that accepts (kernel backlog) but never answers;
    // libpq's minimum of 2 s applies to a 1 s setting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut p = superuser(vec![tcp(silent.local_addr().unwrap().port())]);
    p.connect_timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let e = connect(&p).await.expect_err("timeout");
    let waited = started.elapsed();
    assert_eq!(e.kind(), ConnectErrorKind::Timeout, "{e}");
    assert!(waited >= Duration::from_secs(2), "waited {waited:?}");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    assert!(e.to_string().contains("timed out"), "{e}");

    // DNS: a name the resolver rejects locally (no query leaves the host)
    let mut p = superuser(vec![HostParam {
        host: "bad\0name".to_owned(),
        hostaddr: None,
        port: 5432,
        password: None,
    }]);
    p.connect_timeout = None;
    let e = refused(&p, ConnectErrorKind::Dns, "dns").await;
    assert!(e.to_string().contains("could not resolve host name"), "{e}");

    // every attempt is listed, the furthest one summarised
    let e = connect(&superuser(vec![tcp(free_port()), tcp(free_port())]))
        .await
        .expect_err("two refused");
    assert_eq!(e.attempts().len(), 2);
    assert!(e.to_string().contains("attempts:"), "{e}");
}

/// The path knocker and the installer take: a libpq connection string,
/// resolved by conninfo (no process environment), connected by `connect`.
#[test]
fn connection_string_to_connection_pg17() {
    use pgctl::conninfo::{resolve, ConnInfo, MapEnvironment};
    pg_harness::block_on(async {
        let stopped = Cluster::start(17).await;
        stopped.stop().await;
        let pg = Cluster::start(17).await;
        pg.create_role("app", "s3cret").await;
        let url = format!(
            "postgresql://app:s3cret@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write&sslmode=disable&connect_timeout=5",
            stopped.port(),
            pg.port()
        );
        let info = ConnInfo::parse(&url).unwrap();
        let env = MapEnvironment::new()
            .with_os_user("nobody")
            .with_passwd_home("/nonexistent");
        let resolved = resolve(&info, &env).unwrap();
        let c = connect(&resolved.params).await.expect("second host");
        assert_eq!(c.host().port, pg.port());
        let who: String = c
            .client()
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, "app");
    });
}
