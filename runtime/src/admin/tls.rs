//! TLS for the admin API: a certificate chain and its key from PEM files, served with
//! rustls (ring as its crypto provider: classic key exchange, no post-quantum). Read once at start: a bad file stops
//! `weir serve` with the file's name and what is wrong with it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::AdminError;

/// The server's TLS settings from `cert` (a PEM chain, leaf first) and `key`.
pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, AdminError> {
    let bad = |path: &Path, reason: String| AdminError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no PEM certificate".to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    // rustls deprecates ring's provider for lacking post-quantum key exchange; its
    // other provider, aws-lc-rs, would add a long C build to every cold build. Classic
    // key exchange is what the admin API gets until that changes.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
