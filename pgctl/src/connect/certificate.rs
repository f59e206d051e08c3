//! The server's certificate, for showing to an operator: SHA-256
//! fingerprint, whether it is self-signed, PEM export for `sslrootcert`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};

use super::error::{ConnectError, ConnectErrorKind, HostAttempt};
use super::tls::{recorded_chain, recording_config, TlsRecord};

/// A certificate the server presented (DER), with what an operator wants to
/// know about it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    der: Vec<u8>,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("sha256", &self.sha256_fingerprint())
            .field("self_signed", &self.is_self_signed())
            .finish()
    }
}

impl ServerCertificate {
    /// Wraps a DER-encoded X.509 certificate.
    pub fn from_der(der: Vec<u8>) -> ServerCertificate {
        ServerCertificate { der }
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-256 digest of the DER bytes.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// The SHA-256 fingerprint as OpenSSL prints it: upper-case hex pairs
    /// joined by colons.
    pub fn sha256_fingerprint(&self) -> String {
        self.sha256()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Whether issuer and subject are the same name (a self-signed
    /// certificate, such as Debian's "snakeoil" one). `false` when the
    /// certificate cannot be parsed.
    pub fn is_self_signed(&self) -> bool {
        match issuer_and_subject(&self.der) {
            Some((issuer, subject)) => issuer == subject,
            None => false,
        }
    }

    /// The certificate in PEM form, ready to be saved as an `sslrootcert`
    /// file.
    pub fn to_pem(&self) -> String {
        let b64 = base64_encode(&self.der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

fn base64_encode(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One DER element: (tag, contents, rest after it).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..count] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The raw issuer and subject Names of a certificate:
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity, subject, ... }, ... }
fn issuer_and_subject(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, cert, _) = der_element(der)? else {
        return None;
    };
    let (0x30, tbs, _) = der_element(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der_element(tbs)?;
    if tag == 0xa0 {
        // version was present; skip the serial number too
        rest = der_element(rest)?.2;
    }
    let (_, _, rest) = der_element(rest)?; // signature algorithm
    let (0x30, issuer, rest) = der_element(rest)? else {
        return None;
    };
    let (_, _, rest) = der_element(rest)?; // validity
    let (0x30, subject, _) = der_element(rest)? else {
        return None;
    };
    Some((issuer, subject))
}

/// Fetches the certificate a server presents on `addr`, without verifying
/// it and without logging in: sends PostgreSQL's SSLRequest, completes the
/// TLS handshake, closes. `server_name` is sent as SNI when it is a DNS name.
/// Returns the leaf certificate; fails with
/// [`ConnectErrorKind::TlsUnsupported`] when the server has TLS off.
pub async fn fetch_server_certificate(
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<ServerCertificate, ConnectError> {
    let name = server_name.to_owned();
    let task = tokio::task::spawn_blocking(move || fetch_blocking(addr, &name, timeout));
    match task.await {
        Ok(result) => result,
        Err(e) => Err(ConnectError::invalid(format!(
            "certificate fetch task failed: {e}"
        ))),
    }
}

fn fetch_blocking(
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<ServerCertificate, ConnectError> {
    let mut attempt = HostAttempt::new(server_name, addr.port(), Some(addr.ip().to_string()), true);
    let fail = |mut attempt: HostAttempt, kind: ConnectErrorKind, message: String| {
        attempt.kind = kind;
        attempt.message = message;
        Err(ConnectError::from_attempts("", vec![attempt]))
    };
    let mut tcp = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            attempt.set_io(&e);
            return Err(ConnectError::from_attempts("", vec![attempt]));
        }
    };
    let io = (|| -> std::io::Result<u8> {
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        // SSLRequest: length 8, code 1234.5679
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)?;
        Ok(answer[0])
    })();
    match io {
        Ok(b'S') => {}
        Ok(b'N') => {
            return fail(
                attempt,
                ConnectErrorKind::TlsUnsupported,
                "the server does not support TLS".to_owned(),
            )
        }
        Ok(other) => {
            return fail(
                attempt,
                ConnectErrorKind::Protocol,
                format!("unexpected answer {other:#04x} to SSLRequest"),
            )
        }
        Err(e) => {
            attempt.set_io(&e);
            return Err(ConnectError::from_attempts("", vec![attempt]));
        }
    }
    let record = Arc::new(TlsRecord::default());
    let config = match recording_config(record.clone()) {
        Ok(c) => c,
        Err(e) => return fail(attempt, ConnectErrorKind::InvalidParameters, e.0),
    };
    let name = ServerName::try_from(server_name.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
    let mut tls = match rustls::ClientConnection::new(Arc::new(config), name) {
        Ok(c) => c,
        Err(e) => return fail(attempt, ConnectErrorKind::TlsFailure, e.to_string()),
    };
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut tcp) {
            if recorded_chain(&record).is_some() {
                break;
            }
            return fail(attempt, ConnectErrorKind::TlsFailure, e.to_string());
        }
    }
    tls.send_close_notify();
    let _ = tls.complete_io(&mut tcp);
    match recorded_chain(&record).and_then(|c| c.into_iter().next()) {
        Some(leaf) => Ok(ServerCertificate::from_der(leaf)),
        None => fail(
            attempt,
            ConnectErrorKind::TlsFailure,
            "the server presented no certificate".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn self_signed_detection_on_generated_certificates() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_cert = ServerCertificate::from_der(ca.der().to_vec());
        assert!(ca_cert.is_self_signed());

        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "server");
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let leaf_cert = ServerCertificate::from_der(leaf.der().to_vec());
        assert!(!leaf_cert.is_self_signed());
        assert_eq!(leaf_cert.sha256_fingerprint().len(), 32 * 3 - 1);
        let pem = leaf_cert.to_pem();
        let back: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back[0].as_ref(), leaf.der().as_ref());
    }
}
