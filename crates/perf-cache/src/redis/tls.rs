//! TLS for `rediss://` and `rediss+cluster://` URLs: installs rustls's `ring` crypto provider
//! once per process, and reads the certificates that make clients (one server's, or every
//! cluster node's) trust a private CA or present a client certificate.

use std::path::Path;

use redis::{ClientTlsConfig, ConnectionInfo, TlsCertificates};

use super::config::RedisTierConfig;
use super::url::{is_tls, redact_url};
use crate::error::{Error, Result};

/// Installs the `ring` provider as rustls's process default unless one is installed already
/// (by the application or an earlier call), so `rediss://` connections can be made.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// For a TLS URL (`rediss://`, `rediss+cluster://`): installs the crypto provider and reads
/// the configuration's CA file and client certificate, `None` when it names neither (the
/// system's trust store and no client certificate then). `None` for a plain URL.
pub(crate) fn prepare(config: &RedisTierConfig) -> Result<Option<TlsCertificates>> {
    if !is_tls(&config.url) {
        return Ok(None);
    }
    install_crypto_provider();
    if config.tls_root_cert.is_none() && config.tls_client_cert.is_none() {
        return Ok(None);
    }
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
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// A client for `info` (one node of `config`'s deployment) that uses `certificates`.
pub(crate) fn client_with_certificates(
    config: &RedisTierConfig,
    info: ConnectionInfo,
    certificates: TlsCertificates,
) -> Result<redis::Client> {
    redis::Client::build_with_tls(info, certificates).map_err(|e| Error::InvalidConfig {
        field: "l2_url",
        reason: format!("{}: TLS certificates: {e}", redact_url(&config.url)),
    })
}
