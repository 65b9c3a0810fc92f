//! Certificates made for one test: a CA, server certificates for
//! `127.0.0.1` / `localhost`, client certificates, all signed by the CA and
//! written as PEM files into a directory the test owns.
//!
//! Generated rather than checked in, so no key ever sits in the repository
//! and nothing expires; a second, unrelated CA gives "untrusted" cases.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key as PEM text and as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: String,
    /// Where the certificate was written.
    pub cert: PathBuf,
    /// Where the key was written.
    pub key: PathBuf,
}

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub cert_pem: String,
    /// Where the CA certificate was written: what `NATS_CA` and
    /// `DISCORD_TLS_CA` point at.
    pub cert: PathBuf,
    dir: PathBuf,
    name: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("name", &self.name)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/{name}-ca.pem`.
    ///
    /// # Panics
    /// When key generation or writing fails.
    #[must_use]
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("discord-bridge e2e {name} CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert_pem = params.self_signed(&key).expect("self-sign the CA").pem();
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, &cert_pem).expect("write the CA certificate");
        Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            cert,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    #[must_use]
    pub fn server_cert(&self, file_stem: &str) -> CertFiles {
        self.leaf(
            file_stem,
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate (for mutual TLS).
    #[must_use]
    pub fn client_cert(&self, file_stem: &str) -> CertFiles {
        self.leaf(file_stem, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, stem: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let key = KeyPair::generate().expect("generate a key");
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{} {stem}", self.name));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert_pem = params
            .signed_by(&key, &self.issuer)
            .expect("sign the certificate")
            .pem();
        let key_pem = key.serialize_pem();
        let cert = self.dir.join(format!("{stem}-cert.pem"));
        let key_path = self.dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &cert_pem).expect("write the certificate");
        std::fs::write(&key_path, &key_pem).expect("write the key");
        CertFiles {
            cert_pem,
            key_pem,
            cert,
            key: key_path,
        }
    }
}
