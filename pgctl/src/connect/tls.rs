//! TLS for connections: rustls client configurations that verify the server
//! certificate the way libpq's `sslmode` asks, and a connector that tells
//! "the server declined TLS" apart from "the handshake failed".

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::transport::PgStream;
use crate::conninfo::{ConnectParams, SslMode};

/// The `sslrootcert` value that means "the operating system's trusted roots"
/// (libpq 16+).
pub(crate) const SYSTEM_ROOTS: &str = "system";

/// How much of the server certificate a TLS attempt checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateCheck {
    /// Encrypted, certificate not checked (`require`/`prefer`/`allow`
    /// without a root certificate file).
    None,
    /// The chain must lead to a root of `sslrootcert` (`verify-ca`, or a
    /// weaker mode when the root certificate file exists, as libpq does).
    Chain,
    /// Chain and host name (`verify-full`).
    ChainAndName,
}

/// The TLS policy of one `connect` call, resolved once from the parameters.
#[derive(Clone)]
pub(crate) struct TlsPolicy {
    pub(crate) check: CertificateCheck,
    roots: Arc<RootCertStore>,
    /// Certificates of the root file, kept to accept a server certificate
    /// that is itself listed there (a pinned self-signed certificate).
    pinned: Arc<Vec<CertificateDer<'static>>>,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPolicy")
            .field("check", &self.check)
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_auth.is_some())
            .finish()
    }
}

/// Why the TLS settings could not be turned into a configuration.
#[derive(Debug)]
pub(crate) struct TlsSetupError(pub(crate) String);

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let data = fs::read(path).map_err(|e| {
        TlsSetupError(format!(
            "could not read root certificate file \"{}\": {e}",
            path.display()
        ))
    })?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| {
        TlsSetupError(format!(
            "could not read certificates from \"{}\": {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(TlsSetupError(format!(
            "no certificates found in \"{}\" (PEM expected)",
            path.display()
        )));
    }
    Ok(certs)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

impl TlsPolicy {
    /// The policy for connections that never use TLS (no files read).
    pub(crate) fn plain() -> TlsPolicy {
        TlsPolicy {
            check: CertificateCheck::None,
            roots: Arc::new(RootCertStore::empty()),
            pinned: Arc::new(Vec::new()),
            client_auth: None,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// Resolves `sslmode`, `sslrootcert`, `sslcert` and `sslkey` as libpq
    /// does: a root file (given, or `~/.postgresql/root.crt`) that exists turns
    /// on chain verification in every mode; verify-ca/verify-full without one
    /// is an error; `sslrootcert=system` demands verify-full.
    pub(crate) fn resolve(params: &ConnectParams) -> Result<TlsPolicy, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mode = params.sslmode;
        let mut roots = RootCertStore::empty();
        let mut pinned = Vec::new();
        let system = params
            .sslrootcert
            .as_deref()
            .is_some_and(|p| p.as_os_str() == SYSTEM_ROOTS);
        let have_roots = if system {
            if mode != SslMode::VerifyFull && mode != SslMode::Disable {
                return Err(TlsSetupError(format!(
                    "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                    mode.as_str()
                )));
            }
            roots = system_roots();
            true
        } else {
            // conninfo already put libpq's default (~/.postgresql/root.crt)
            // here when that file exists: `None` means no root file.
            match params.sslrootcert.clone() {
                Some(path) if path.exists() => {
                    let certs = read_certs(&path)?;
                    let (added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
                    if added == 0 {
                        return Err(TlsSetupError(format!(
                            "no usable certificate in root certificate file \"{}\"",
                            path.display()
                        )));
                    }
                    pinned = certs;
                    true
                }
                Some(path) if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                    return Err(TlsSetupError(format!(
                        "root certificate file \"{}\" does not exist; either provide the file, \
                         use the system's trusted roots with sslrootcert=system, or change \
                         sslmode to disable server certificate verification",
                        path.display()
                    )));
                }
                None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                    return Err(TlsSetupError(
                        "root certificate file \"~/.postgresql/root.crt\" does not exist; either \
                         provide the file (sslrootcert), use the system's trusted roots with \
                         sslrootcert=system, or change sslmode to disable server certificate \
                         verification"
                            .to_owned(),
                    ));
                }
                _ => false,
            }
        };
        let check = match mode {
            SslMode::VerifyFull => CertificateCheck::ChainAndName,
            _ if have_roots => CertificateCheck::Chain,
            _ => CertificateCheck::None,
        };
        let client_auth = client_certificate(params)?;
        Ok(TlsPolicy {
            check,
            roots: Arc::new(roots),
            pinned: Arc::new(pinned),
            client_auth,
            provider,
        })
    }

    /// A connector for one attempt, with the name the certificate must carry
    /// (for verify-full) and a fresh record of what happened.
    pub(crate) fn connector(&self, server_name: &str) -> Result<TrackedConnect, TlsSetupError> {
        let record = Arc::new(TlsRecord::default());
        let verifier = Arc::new(PgVerifier {
            check: self.check,
            roots: self.roots.clone(),
            pinned: self.pinned.clone(),
            algorithms: self.provider.signature_verification_algorithms,
            record: record.clone(),
        });
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| TlsSetupError(format!("bad client certificate or key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        let mut make = MakeRustlsConnect::new(config);
        let inner = <MakeRustlsConnect as MakeTlsConnect<PgStream>>::make_tls_connect(
            &mut make,
            server_name,
        )
        .map_err(|e| TlsSetupError(e.to_string()))?;
        Ok(TrackedConnect { inner, record })
    }
}

/// libpq loads a client certificate when the file exists (given, or
/// `~/.postgresql/postgresql.crt`, which conninfo fills in when present), and
/// silently goes without one otherwise.
#[allow(clippy::type_complexity)]
fn client_certificate(
    params: &ConnectParams,
) -> Result<Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>, TlsSetupError> {
    let Some(cert_path) = params.sslcert.clone() else {
        return Ok(None);
    };
    if !cert_path.exists() {
        return Ok(None);
    }
    let data = fs::read(&cert_path).map_err(|e| {
        TlsSetupError(format!(
            "could not read client certificate \"{}\": {e}",
            cert_path.display()
        ))
    })?;
    let chain: Result<Vec<_>, io::Error> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let chain = chain.map_err(|e| {
        TlsSetupError(format!(
            "could not read client certificate \"{}\": {e}",
            cert_path.display()
        ))
    })?;
    let key_path = params.sslkey.clone().ok_or_else(|| {
        TlsSetupError(format!(
            "certificate present, but not private key file (sslkey) for \"{}\"",
            cert_path.display()
        ))
    })?;
    let key_data = fs::read(&key_path).map_err(|e| {
        TlsSetupError(format!(
            "certificate present, but not private key file \"{}\": {e}",
            key_path.display()
        ))
    })?;
    let key = rustls_pemfile::private_key(&mut key_data.as_slice())
        .map_err(|e| TlsSetupError(format!("could not read \"{}\": {e}", key_path.display())))?
        .ok_or_else(|| {
            TlsSetupError(format!(
                "no private key found in \"{}\"",
                key_path.display()
            ))
        })?;
    Ok(Some((chain, Arc::new(key))))
}

/// What one TLS attempt saw: whether the handshake started at all (if not,
/// the server declined TLS) and the certificate chain the server presented.
#[derive(Debug, Default)]
pub(crate) struct TlsRecord {
    started: AtomicBool,
    chain: Mutex<Option<Vec<Vec<u8>>>>,
}

impl TlsRecord {
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// The leaf certificate (DER), when the server presented one.
    pub(crate) fn leaf(&self) -> Option<Vec<u8>> {
        self.chain
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|c| c.first().cloned()))
    }
}

/// The rustls connector of tokio-postgres-rustls, plus a record of the
/// attempt.
pub(crate) struct TrackedConnect {
    inner: RustlsConnect,
    pub(crate) record: Arc<TlsRecord>,
}

impl fmt::Debug for TrackedConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedConnect")
            .field("record", &self.record)
            .finish()
    }
}

type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<PgStream>>::TlsConnect;

impl TlsConnect<PgStream> for TrackedConnect {
    type Stream = <RustlsConnect as TlsConnect<PgStream>>::Stream;
    type Error = <RustlsConnect as TlsConnect<PgStream>>::Error;
    type Future = <RustlsConnect as TlsConnect<PgStream>>::Future;

    fn connect(self, stream: PgStream) -> Self::Future {
        // tokio-postgres calls this only after the server answered 'S' to
        // the SSLRequest.
        self.record.started.store(true, Ordering::SeqCst);
        self.inner.connect(stream)
    }
}

/// The one certificate verifier: records the chain, then checks as much as
/// the policy asks. Handshake signatures are always verified.
#[derive(Debug)]
struct PgVerifier {
    check: CertificateCheck,
    roots: Arc<RootCertStore>,
    pinned: Arc<Vec<CertificateDer<'static>>>,
    algorithms: WebPkiSupportedAlgorithms,
    record: Arc<TlsRecord>,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.record.chain.lock() {
            let mut all = vec![end_entity.to_vec()];
            all.extend(intermediates.iter().map(|c| c.to_vec()));
            *chain = Some(all);
        }
        if self.check == CertificateCheck::None {
            return Ok(ServerCertVerified::assertion());
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let chain = verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        );
        if let Err(error) = chain {
            // OpenSSL accepts a server certificate that is itself in the root
            // file even when webpki would not treat it as an anchor of itself
            // (e.g. a self-signed CA:TRUE certificate used as the server's).
            let listed = self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref());
            if !listed {
                return Err(error);
            }
        }
        if self.check == CertificateCheck::ChainAndName {
            verify_server_name(&parsed, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A verifier that accepts any certificate (signatures still checked) and
/// records it: used to fetch a server's certificate for inspection.
pub(crate) fn recording_config(record: Arc<TlsRecord>) -> Result<ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PgVerifier {
        check: CertificateCheck::None,
        roots: Arc::new(RootCertStore::empty()),
        pinned: Arc::new(Vec::new()),
        algorithms: provider.signature_verification_algorithms,
        record,
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The leaf certificate recorded by a [`recording_config`] handshake.
pub(crate) fn recorded_chain(record: &TlsRecord) -> Option<Vec<Vec<u8>>> {
    record.chain.lock().ok().and_then(|c| c.clone())
}
