//! TLS for `rediss://` URLs: installs rustls's `ring` crypto provider once per process.

/// Installs the `ring` provider as rustls's process default unless one is installed already
/// (by the application or an earlier call), so `rediss://` connections can be made.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
