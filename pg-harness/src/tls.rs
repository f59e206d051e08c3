//! Certificates generated at cluster start.

/// A throwaway CA and a server certificate it signed.
pub(crate) struct ServerCerts {
    /// The CA certificate (PEM): what clients trust.
    pub ca_cert_pem: String,
    /// The server certificate (PEM), valid for `localhost`, `127.0.0.1`, `::1`.
    pub server_cert_pem: String,
    /// The server's private key (PEM, PKCS#8).
    pub server_key_pem: String,
}

/// Makes a new CA and a server certificate for the loopback names.
pub(crate) fn generate() -> ServerCerts {
    let ca_key = rcgen::KeyPair::generate().expect("pg-harness: generate CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("pg-harness: CA certificate parameters");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pg-harness throwaway CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params
        .self_signed(&ca_key)
        .expect("pg-harness: self-sign CA certificate");

    let server_key = rcgen::KeyPair::generate().expect("pg-harness: generate server key");
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("pg-harness: server certificate parameters");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("pg-harness: sign server certificate");
    ServerCerts {
        ca_cert_pem: ca.pem(),
        server_cert_pem: cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}
