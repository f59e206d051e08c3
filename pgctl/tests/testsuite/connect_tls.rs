//! `pgctl::connect` TLS behaviour against real servers: every sslmode
//! against a server with ssl on and off, root certificates, host-name
//! checks, hostssl/hostnossl rules, and fetching the server certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pg_harness::{Cluster, ClusterOptions};
use pgctl::connect::{
    connect, fetch_server_certificate, CertificateCheck, ConnectErrorKind, SslMode,
    TlsFailureReason,
};

use crate::common::{
    ca_certificate, no_root_file, refused, ssl_cluster, tls_params as params, untrusted_ca_pem,
    write_pem, HOSTNOSSL_ONLY, HOSTSSL_ONLY,
};

pg_harness::pg_test!(
    async fn every_sslmode_against_ssl_on_and_off(major: u32) {
        let dir = tempfile::tempdir().unwrap();
        let on = ssl_cluster(major, None).await;
        let off = Cluster::start(major).await;
        let ca = write_pem(dir.path(), "ca.crt", on.ca_cert_pem());

        // (mode, root file, expected TLS on the ssl server, expected check)
        let cases = [
            (SslMode::Disable, no_root_file(dir.path()), false, None),
            (SslMode::Allow, no_root_file(dir.path()), false, None),
            (
                SslMode::Prefer,
                no_root_file(dir.path()),
                true,
                Some(CertificateCheck::None),
            ),
            (
                SslMode::Require,
                no_root_file(dir.path()),
                true,
                Some(CertificateCheck::None),
            ),
            // require with an existing root file verifies the chain, as libpq does
            (
                SslMode::Require,
                Some(ca.clone()),
                true,
                Some(CertificateCheck::Chain),
            ),
            (
                SslMode::VerifyCa,
                Some(ca.clone()),
                true,
                Some(CertificateCheck::Chain),
            ),
            (
                SslMode::VerifyFull,
                Some(ca.clone()),
                true,
                Some(CertificateCheck::ChainAndName),
            ),
        ];
        for (mode, root, tls, check) in cases {
            let c = connect(&params("127.0.0.1", on.port(), mode, root.clone()))
                .await
                .unwrap_or_else(|e| panic!("{mode:?} vs ssl=on: {e}"));
            assert_eq!(c.is_tls(), tls, "{mode:?} vs ssl=on");
            assert_eq!(c.certificate_check(), check, "{mode:?} vs ssl=on");
            assert_eq!(c.server_certificate().is_some(), tls);
            let ssl_in_use: bool = c
                .client()
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(ssl_in_use, tls, "{mode:?}: pg_stat_ssl agrees");

            let against_off = connect(&params("127.0.0.1", off.port(), mode, root)).await;
            match mode {
                SslMode::Disable | SslMode::Allow | SslMode::Prefer => {
                    let c = against_off.unwrap_or_else(|e| panic!("{mode:?} vs ssl=off: {e}"));
                    assert!(!c.is_tls());
                }
                _ => {
                    let e = against_off.expect_err("TLS required but server has ssl off");
                    assert_eq!(e.kind(), ConnectErrorKind::TlsUnsupported, "{mode:?}: {e}");
                    assert!(e.to_string().contains("does not support TLS"), "{e}");
                }
            }
        }
    }
);

#[test]
fn untrusted_root_fails_the_handshake_and_prefer_falls_back_to_plain_text_pg17() {
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let on = ssl_cluster(17, None).await;
        let other = write_pem(dir.path(), "other.crt", &untrusted_ca_pem());
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let e = connect(&params("127.0.0.1", on.port(), mode, Some(other.clone())))
                .await
                .expect_err("certificate signed by an unknown CA");
            assert_eq!(e.kind(), ConnectErrorKind::TlsFailure, "{mode:?}: {e}");
            assert_eq!(
                e.tls_reason(),
                Some(&TlsFailureReason::UntrustedCertificate)
            );
            assert!(
                e.to_string().contains("not signed by a trusted root"),
                "{e}"
            );
            assert_eq!(e.attempts().len(), 1, "{mode:?}: no plain-text retry: {e}");
        }
        // libpq 17 retries without TLS after a failed handshake in prefer
        // mode (see tests/testsuite/connect_libpq17.rs).
        let c = connect(&params(
            "127.0.0.1",
            on.port(),
            SslMode::Prefer,
            Some(other),
        ))
        .await
        .expect("prefer falls back to plain text");
        assert!(!c.is_tls());
    });
}

#[test]
fn verify_full_checks_the_host_name_and_verify_ca_does_not_pg17() {
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let on = ssl_cluster(17, None).await;
        let ca = write_pem(dir.path(), "ca.crt", on.ca_cert_pem());
        // A name the certificate does not carry, reached through hostaddr so
        // that nothing is resolved.
        let mut p = params(
            "db.example.test",
            on.port(),
            SslMode::VerifyFull,
            Some(ca.clone()),
        );
        p.hosts[0].hostaddr = Some("127.0.0.1".parse().unwrap());
        let e = refused(&p, ConnectErrorKind::TlsFailure, "name mismatch").await;
        match e.tls_reason() {
            Some(TlsFailureReason::NameMismatch { .. }) => {}
            other => panic!("expected a name mismatch, got {other:?}: {e}"),
        }
        p.sslmode = SslMode::VerifyCa;
        let c = connect(&p).await.expect("verify-ca ignores the name");
        assert_eq!(c.certificate_check(), Some(CertificateCheck::Chain));

        // IP hosts are checked against IP SANs; localhost against DNS SANs.
        for host in ["127.0.0.1", "localhost"] {
            connect(&params(
                host,
                on.port(),
                SslMode::VerifyFull,
                Some(ca.clone()),
            ))
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        }
    });
}

#[test]
fn verify_modes_need_a_root_certificate_file_pg17() {
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let e = refused(
                &params("127.0.0.1", 1, mode, no_root_file(dir.path())),
                ConnectErrorKind::InvalidParameters,
                "no root file",
            )
            .await;
            assert!(e.to_string().contains("does not exist"), "{e}");
        }
        let e = refused(
            &params("127.0.0.1", 1, SslMode::Require, Some("system".into())),
            ConnectErrorKind::InvalidParameters,
            "system roots need verify-full",
        )
        .await;
        assert!(e.to_string().contains("verify-full"), "{e}");
    });
}

#[test]
fn allow_retries_with_tls_when_the_server_demands_it_pg17() {
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pg = ssl_cluster(17, Some(HOSTSSL_ONLY)).await;
        let root = no_root_file(dir.path());
        let c = connect(&params(
            "127.0.0.1",
            pg.port(),
            SslMode::Allow,
            root.clone(),
        ))
        .await
        .expect("allow falls back to TLS");
        assert!(c.is_tls());

        let e = refused(
            &params("127.0.0.1", pg.port(), SslMode::Disable, root),
            ConnectErrorKind::TlsRequired,
            "plain text has no rule",
        )
        .await;
        assert_eq!(e.sqlstate(), Some("28000"));
        let hba = e.hba_rejection().expect("parsed pg_hba verdict");
        assert_eq!(hba.client_address, "127.0.0.1");
        assert_eq!(hba.user, "postgres");
        assert_eq!(hba.database.as_deref(), Some("postgres"));
        assert_eq!(hba.encryption.as_deref(), Some("no encryption"));
        assert!(e.to_string().contains("sslmode=require"), "{e}");
    });
}

#[test]
fn prefer_retries_plain_text_when_the_tls_session_is_rejected_pg17() {
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pg = ssl_cluster(17, Some(HOSTNOSSL_ONLY)).await;
        let root = no_root_file(dir.path());
        let c = connect(&params(
            "127.0.0.1",
            pg.port(),
            SslMode::Prefer,
            root.clone(),
        ))
        .await
        .expect("prefer retries without TLS");
        assert!(!c.is_tls());

        let e = refused(
            &params("127.0.0.1", pg.port(), SslMode::Require, root),
            ConnectErrorKind::NoHbaEntry,
            "TLS has no rule",
        )
        .await;
        let hba = e.hba_rejection().unwrap();
        assert_eq!(hba.encryption.as_deref(), Some("SSL encryption"));
    });
}

#[test]
fn fetches_the_server_certificate_pg17() {
    pg_harness::block_on(async {
        let on = ssl_cluster(17, None).await;
        let addr = SocketAddr::from(([127, 0, 0, 1], on.port()));
        let cert = fetch_server_certificate(addr, "localhost", Duration::from_secs(10))
            .await
            .expect("fetch certificate");
        let pem = std::fs::read(on.data_dir().join("server.crt")).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(cert.der(), der.as_ref());
        assert!(!cert.is_self_signed(), "signed by the harness CA");
        let fingerprint = cert.sha256_fingerprint();
        assert_eq!(fingerprint.len(), 95);

        // The same certificate is reported by a TLS connection.
        let c = connect(&params("127.0.0.1", on.port(), SslMode::Require, None))
            .await
            .unwrap();
        assert_eq!(
            c.server_certificate().unwrap().sha256_fingerprint(),
            fingerprint
        );

        let off = Cluster::start(17).await;
        let addr = SocketAddr::from(([127, 0, 0, 1], off.port()));
        let e = fetch_server_certificate(addr, "localhost", Duration::from_secs(10))
            .await
            .expect_err("ssl off");
        assert_eq!(e.kind(), ConnectErrorKind::TlsUnsupported);
    });
}

/// A CA of the test's own and a client certificate for `cn` it signed,
/// written as PEM files: (CA file, client certificate, client key).
fn client_certificate(dir: &Path, cn: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key) = ca_certificate("client CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (
        write_pem(dir, "client-ca.crt", &ca.pem()),
        write_pem(dir, "client.crt", &cert.pem()),
        write_pem(dir, "client.key", &key.serialize_pem()),
    )
}

#[test]
fn client_certificate_authentication_pg17() {
    use std::os::unix::fs::PermissionsExt;
    pg_harness::block_on(async {
        // The server (another OS user) must read the client CA file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (client_ca, cert, key) = client_certificate(dir.path(), "postgres");
        std::fs::set_permissions(&client_ca, std::fs::Permissions::from_mode(0o644)).unwrap();
        let pg = Cluster::start_with(
            17,
            ClusterOptions {
                ssl: true,
                hba: Some(
                    "local all all trust\nhostssl all postgres 127.0.0.1/32 cert\n".to_owned(),
                ),
                settings: vec![("ssl_ca_file".into(), client_ca.to_str().unwrap().into())],
                ..Default::default()
            },
        )
        .await;
        let mut p = params(
            "127.0.0.1",
            pg.port(),
            SslMode::Require,
            no_root_file(dir.path()),
        );
        refused(
            &p,
            ConnectErrorKind::AuthenticationFailed,
            "no client certificate",
        )
        .await;

        p.sslcert = Some(cert);
        p.sslkey = Some(key);
        let c = connect(&p).await.expect("cert authentication");
        let client_dn: Option<String> = c
            .client()
            .query_one(
                "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(client_dn.as_deref(), Some("/CN=postgres"));
    });
}

/// Replaces the server's certificate with a self-signed one for
/// `localhost` (like Debian's "snakeoil" certificate; `is_ca` makes it a
/// CA:TRUE one as `openssl req -x509` makes by default) and reloads.
/// Returns the certificate's PEM.
async fn use_self_signed_certificate(pg: &Cluster, is_ca: bool) -> String {
    use std::os::unix::fs::PermissionsExt;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    if is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let cert = params.self_signed(&key).unwrap();
    for (name, contents, mode) in [
        ("server.crt", cert.pem(), 0o644),
        ("server.key", key.serialize_pem(), 0o600),
    ] {
        let path = pg.data_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        pg.os_user().chown(&path).unwrap();
    }
    pg.reload().await;
    cert.pem()
}

#[test]
fn self_signed_server_certificate_exported_as_sslrootcert_pg17() {
    pg_harness::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pg = ssl_cluster(17, None).await;
        // CA:TRUE guards the verifier's "certificate listed in the root file"
        // rule: webpki alone rejects it (CaUsedAsEndEntity), OpenSSL accepts.
        for is_ca in [false, true] {
            let pem = use_self_signed_certificate(&pg, is_ca).await;
            // What knocker does after --init: fetch, report, export.
            let addr = SocketAddr::from(([127, 0, 0, 1], pg.port()));
            let cert = fetch_server_certificate(addr, "localhost", Duration::from_secs(10))
                .await
                .unwrap();
            assert!(cert.is_self_signed(), "CA:{is_ca}");
            assert_eq!(cert.to_pem().trim(), pem.trim().replace("\r\n", "\n"));
            let exported = write_pem(dir.path(), "exported.crt", &cert.to_pem());

            let c = connect(&params(
                "localhost",
                pg.port(),
                SslMode::VerifyFull,
                Some(exported.clone()),
            ))
            .await
            .unwrap_or_else(|e| panic!("CA:{is_ca}: pinned self-signed certificate: {e}"));
            assert_eq!(c.certificate_check(), Some(CertificateCheck::ChainAndName));
            // The certificate names localhost only.
            let e = connect(&params(
                "127.0.0.1",
                pg.port(),
                SslMode::VerifyFull,
                Some(exported.clone()),
            ))
            .await
            .expect_err("no IP SAN");
            assert!(
                matches!(e.tls_reason(), Some(TlsFailureReason::NameMismatch { .. })),
                "CA:{is_ca}: {e}"
            );
            connect(&params(
                "127.0.0.1",
                pg.port(),
                SslMode::VerifyCa,
                Some(exported),
            ))
            .await
            .unwrap_or_else(|e| panic!("CA:{is_ca}: verify-ca: {e}"));
        }
    });
}
