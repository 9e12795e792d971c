//! TLS for the client port (and the internal port unless `tls_external`),
//! as Centrifugo v5's `tls`, `tls_cert`, `tls_key`, `tls_external`: the
//! certificate chain and key are read once at startup into a rustls acceptor.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// How long a new connection may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptors of the two ports: `(client port, internal port)`, `None`
/// where the port is plain. The internal port shares the client port's
/// certificate (Centrifugo's default) unless `tls_external`.
pub(crate) fn acceptors(config: &Config) -> Result<(Option<TlsAcceptor>, Option<TlsAcceptor>), String> {
    if !config.tls {
        return Ok((None, None));
    }
    // validate() checked both are set with `tls`.
    let cert = config.tls_cert.as_deref().unwrap_or_default();
    let key = config.tls_key.as_deref().unwrap_or_default();
    let acceptor = acceptor(cert, key)?;
    let internal = (!config.tls_external).then(|| acceptor.clone());
    Ok((Some(acceptor), internal))
}

/// A rustls acceptor serving the PEM chain in file `cert` with the PEM key
/// in file `key`; HTTP/1.1 only (WebSocket upgrades need it). Errors name
/// the file and the problem, never key material.
pub(crate) fn acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("NATSGATE_TLS_CERT {cert}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("NATSGATE_TLS_CERT {cert}: no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| format!("NATSGATE_TLS_KEY {key}: no PEM private key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("NATSGATE_TLS_CERT and NATSGATE_TLS_KEY: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The handshake on an accepted connection, bounded in time; `None` (logged
/// at debug: scanners and plain-HTTP clients are common) when it fails.
pub(crate) async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
