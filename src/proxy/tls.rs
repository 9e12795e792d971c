//! TLS for outgoing HTTP(S) and GRPC calls (proxies and the JWKS fetcher):
//! Centrifugo's client TLS object (`tools.TLSConfig`: `enabled`,
//! `server_ca_pem*`, `cert_pem*`, `key_pem*`, `server_name`) read into a
//! rustls client configuration, and the hyper client built on it.

use std::sync::Arc;

use base64::Engine;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;

/// Centrifugo's TLS object for a client (`proxy_grpc_tls`, `proxy_http_tls`,
/// `grpc_tls` and `http_tls` of a named proxy). Each PEM comes as text
/// (`*_pem`), base64 of the text (`*_pem_b64`) or a file path
/// (`*_pem_file`); the first one set wins. No `Debug`: it may hold a key.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsClientOptions {
    /// Use TLS with these settings (for GRPC; an `https://` URL always uses TLS).
    pub enabled: bool,
    /// Client certificate chain, for backends that ask for one (mutual TLS).
    pub cert_pem: String,
    pub cert_pem_b64: String,
    pub cert_pem_file: String,
    /// Private key of the client certificate.
    pub key_pem: String,
    pub key_pem_b64: String,
    pub key_pem_file: String,
    /// CA certificate(s) that verify the backend; none: the system's roots.
    pub server_ca_pem: String,
    pub server_ca_pem_b64: String,
    pub server_ca_pem_file: String,
    /// Server-side options of the same object: accepted and unused by a client.
    pub client_ca_pem: String,
    pub client_ca_pem_b64: String,
    pub client_ca_pem_file: String,
    /// Not supported: natsgate always verifies the backend (refused at startup).
    pub insecure_skip_verify: bool,
    /// Name checked against the backend's certificate instead of the URL's host.
    pub server_name: String,
}

/// Shows what is set, never PEM text or paths' contents.
impl std::fmt::Debug for TlsClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |a: &str, b: &str, c: &str| !(a.is_empty() && b.is_empty() && c.is_empty());
        f.debug_struct("TlsClientOptions")
            .field("enabled", &self.enabled)
            .field("server_ca", &set(&self.server_ca_pem, &self.server_ca_pem_b64, &self.server_ca_pem_file))
            .field("client_cert", &set(&self.cert_pem, &self.cert_pem_b64, &self.cert_pem_file))
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// One of the three forms of a PEM value, read; `None` when none is set.
fn pem(name: &str, text: &str, b64: &str, file: &str) -> Result<Option<Vec<u8>>, String> {
    if !text.is_empty() {
        return Ok(Some(text.as_bytes().to_vec()));
    }
    if !b64.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| format!("{name}_pem_b64 is not base64"))?;
        return Ok(Some(raw));
    }
    if !file.is_empty() {
        let raw = std::fs::read(file).map_err(|e| format!("{name}_pem_file: cannot read {file}: {}", e.kind()))?;
        return Ok(Some(raw));
    }
    Ok(None)
}

impl TlsClientOptions {
    /// A rustls client configuration trusting `server_ca_pem*` (else the
    /// system's roots, which honour `SSL_CERT_FILE` as Go does) and
    /// presenting the client certificate when one is given. Errors name the
    /// field, never its value.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        if self.insecure_skip_verify {
            return Err("insecure_skip_verify is not supported: configure server_ca_pem instead".into());
        }
        let mut roots = rustls::RootCertStore::empty();
        match pem("server_ca", &self.server_ca_pem, &self.server_ca_pem_b64, &self.server_ca_pem_file)? {
            Some(pem) => {
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "server_ca_pem: not PEM certificates".to_string())?;
                if roots.add_parsable_certificates(certs).0 == 0 {
                    return Err("server_ca_pem: no usable CA certificate".into());
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let cert = pem("cert", &self.cert_pem, &self.cert_pem_b64, &self.cert_pem_file)?;
        let key = pem("key", &self.key_pem, &self.key_pem_b64, &self.key_pem_file)?;
        match (cert, key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "cert_pem: not PEM certificates".to_string())?;
                // The key's own error could quote it: say only what is wrong.
                let key = PrivateKeyDer::from_pem_slice(&key).map_err(|_| "key_pem: no PEM private key".to_string())?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("cert_pem and key_pem: {e}"))
            }
            _ => Err("cert_pem and key_pem go together".into()),
        }
    }
}

/// A pooled HTTP client for `http://` and `https://` URLs.
pub(crate) type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// A client speaking TLS with `tls` (defaults: the system's roots) to
/// `https://` origins and plain HTTP to `http://` ones. `http2_only` is
/// for GRPC (prior knowledge on plain connections, ALPN `h2` on TLS).
/// `server_name` overrides the name checked against the certificate.
pub(crate) fn https_client<B>(tls: Option<&TlsClientOptions>, http2_only: bool) -> Result<HttpsClient<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let default = TlsClientOptions::default();
    let tls = tls.unwrap_or(&default);
    // hyper-rustls sets ALPN itself (`h2` for GRPC, none for HTTP/1.1).
    let config = tls.client_config()?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
    let builder = if tls.server_name.is_empty() {
        builder
    } else {
        let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
            .map_err(|_| "server_name is not a valid DNS name or IP address".to_string())?;
        builder.with_server_name_resolver(FixedServerName(name))
    };
    let connector = if http2_only {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    let mut client = Client::builder(TokioExecutor::new());
    client.http2_only(http2_only);
    Ok(client.build(connector))
}

/// `server_name`: the same name for every connection of the client.
struct FixedServerName(rustls::pki_types::ServerName<'static>);

impl hyper_rustls::ResolveServerName for FixedServerName {
    fn resolve(
        &self,
        _uri: &http::Uri,
    ) -> Result<rustls::pki_types::ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(self.0.clone())
    }
}
