//! TLS set-up shared by every connection the process makes.
//!
//! * [`install_crypto_provider`] picks rustls' `ring` provider once for the
//!   process;
//! * [`DiscordTls`] is the one client configuration of the Discord side:
//!   `GET /gateway/bot` (reqwest) and every gateway WebSocket
//!   (tokio-tungstenite) use it, so both trust the same roots — the webpki
//!   roots plus the CA of `discord.tls_ca`, for a TLS-intercepting proxy or
//!   the simulator serving `https://` and `wss://`;
//! * [`is_certificate_problem`] tells a refused certificate (a setting fixes
//!   it) from a network failure (retrying does), in any error chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};

/// Installs rustls' `ring` provider as the process-wide default.
///
/// rustls refuses to pick a provider on its own when more than one is
/// compiled in (tokio-tungstenite, reqwest and async-nats each pull rustls in,
/// not necessarily with the same features), and then panics at the first
/// handshake. Installing one explicitly, first thing in `main` and in tests
/// that open TLS connections, makes that choice once. A provider that is
/// already installed (by an earlier call or by an embedding application) is
/// kept.
pub fn install_crypto_provider() {
    // `Err` only means a provider is already installed, which is fine.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// A CA file that cannot be trusted as given.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be read or is not PEM.
    #[error("cannot read {} as PEM certificates: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the file cannot be a trust anchor.
    #[error("{} holds a certificate rustls cannot trust: {source}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// rustls cannot build a client configuration (no usable protocol
    /// version with this provider; a build problem, not a setting).
    #[error("cannot set up TLS: {0}")]
    Config(#[source] rustls::Error),
}

/// Reads every certificate of a PEM file as trust anchors.
///
/// # Errors
/// An unreadable file, bad PEM, no certificate in it, or a certificate
/// rustls cannot use as a trust anchor.
pub fn read_ca_file(path: &Path) -> Result<RootCertStore, CaFileError> {
    let pem = |source| CaFileError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(CaFileError::Empty {
            path: path.to_owned(),
        });
    }
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|source| CaFileError::Unusable {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(store)
}

/// The TLS client configuration of every Discord connection (see the
/// [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct DiscordTls {
    config: Arc<ClientConfig>,
    /// Whether a CA of `discord.tls_ca` is trusted besides the webpki roots.
    pub extra_ca: bool,
}

impl std::fmt::Debug for DiscordTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordTls")
            .field("extra_ca", &self.extra_ca)
            .finish_non_exhaustive()
    }
}

impl DiscordTls {
    /// The webpki roots, plus every certificate of `extra_ca` when given.
    ///
    /// The `ring` provider is named here rather than taken from the process
    /// default, so an embedding application (or a test running the bridge
    /// in process) needs no [`install_crypto_provider`] call first.
    ///
    /// # Errors
    /// A CA file that cannot be read or trusted.
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, CaFileError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = extra_ca {
            roots.roots.extend(read_ca_file(path)?.roots);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(CaFileError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            extra_ca: extra_ca.is_some(),
        })
    }

    /// The configuration, for reqwest and tokio-tungstenite.
    #[must_use]
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }
}

/// The rustls error somewhere in `error`'s chain, looking inside
/// `std::io::Error`s too: tokio-rustls puts it in one, which hyper wraps in
/// another, and an `io::Error`'s `source()` skips the error it wraps.
#[must_use]
pub fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Whether `error` is rustls refusing a certificate: ours (the peer's
/// verdict, as an alert) or the peer's (our verdict). Such a failure repeats
/// on every attempt until a setting changes; a reset or a timeout does not.
#[must_use]
pub fn is_certificate_problem(error: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    match error {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
                | A::AccessDenied
                | A::HandshakeFailure
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_tolerates_a_second_call() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn webpki_roots_without_an_extra_ca() {
        let tls = DiscordTls::new(None).unwrap();
        assert!(!tls.extra_ca);
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            DiscordTls::new(Some(&empty)),
            Err(CaFileError::Empty { .. })
        ));
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            DiscordTls::new(Some(&broken)),
            Err(CaFileError::Pem { .. })
        ));
        let missing = dir.path().join("missing.pem");
        let err = DiscordTls::new(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn finds_rustls_errors_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let found = rustls_error(&io).unwrap();
        assert!(is_certificate_problem(found));
        // As hyper reports a failed connect: an io::Error in an io::Error.
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, inner));
        assert!(rustls_error(&nested).is_some());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(rustls_error(&reset).is_none());
        assert!(!is_certificate_problem(&rustls::Error::DecryptError));
        assert!(is_certificate_problem(&rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        )));
    }
}
