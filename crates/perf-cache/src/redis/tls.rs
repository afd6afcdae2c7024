//! TLS for `rediss://` URLs: installs rustls's `ring` crypto provider once per process, and
//! builds clients that trust a private CA or present a client certificate.

use std::path::Path;

use redis::{ClientTlsConfig, ConnectionInfo, TlsCertificates};

use super::config::RedisTierConfig;
use super::url::redact_url;
use crate::error::{Error, Result};

/// Installs the `ring` provider as rustls's process default unless one is installed already
/// (by the application or an earlier call), so `rediss://` connections can be made.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client for `info` with the configuration's CA file and client certificate, when it
/// names any (the system's trust store and no client certificate otherwise).
pub(crate) fn client_with_certificates(
    config: &RedisTierConfig,
    info: ConnectionInfo,
) -> Result<redis::Client> {
    install_crypto_provider();
    let read = |field: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| Error::InvalidConfig {
            field,
            reason: format!("{}: {e}", path.display()),
        })
    };
    let root_cert = config
        .tls_root_cert
        .as_deref()
        .map(|path| {
            let pem = read("tls_root_cert", path)?;
            // An empty trust store would fail every handshake later, with a vaguer error.
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(Error::InvalidConfig {
                    field: "tls_root_cert",
                    reason: format!("{}: no PEM certificate in the file", path.display()),
                });
            }
            Ok(pem)
        })
        .transpose()?;
    let client_tls = match &config.tls_client_cert {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("tls_client_cert", cert)?,
            client_key: read("tls_client_cert", key)?,
        }),
        None => None,
    };
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| Error::InvalidConfig {
        field: "l2_url",
        reason: format!("{}: TLS certificates: {e}", redact_url(&config.url)),
    })
}
