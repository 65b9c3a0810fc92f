//! TLS set-up shared by every connection the process makes.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_tolerates_a_second_call() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
