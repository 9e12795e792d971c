//! One HTTP proxy call: the request as a JSON body in a POST to the
//! endpoint, the answer read as JSON from a 200 response (Centrifugo's
//! `internal/proxy/http.go`: any other status is a failed call).

use super::tls::{https_client, HttpsClient, TlsClientOptions};
use super::{Event, ProxyError};
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};

/// Largest answer read from a backend; a larger one is a failed call.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// The connection pool to one HTTP backend.
pub(super) struct HttpCaller {
    client: HttpsClient<Full<Bytes>>,
    uri: Uri,
}

impl HttpCaller {
    /// `tls` applies to `https://` endpoints (`proxy_http_tls`).
    pub(super) fn new(endpoint: &str, tls: &TlsClientOptions) -> Result<HttpCaller, String> {
        let uri: Uri = endpoint.parse().map_err(|e| format!("invalid URL: {e}"))?;
        if uri.host().is_none() {
            return Err("invalid URL: no host".into());
        }
        let client = https_client(Some(tls), false)?;
        Ok(HttpCaller { client, uri })
    }

    pub(super) async fn call<Req, Resp>(
        &self,
        _event: Event,
        req: &Req,
        headers: &[(String, String)],
    ) -> Result<Resp, ProxyError>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| ProxyError::Malformed(e.to_string()))?;
        let mut request = Request::post(self.uri.clone());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProxyError::Malformed(e.to_string()))?;
        let response = self.client.request(request).await.map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(ProxyError::Unavailable(format!("unexpected HTTP status {}", response.status().as_u16())));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| ProxyError::Unavailable(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| ProxyError::Malformed(e.to_string()))
    }
}
