//! One GRPC proxy call: a unary call of Centrifugo's `CentrifugoProxy`
//! service over HTTP/2 (`grpc://host:port`), with TLS when `proxy_grpc_tls`
//! is enabled or `proxy_grpc_cert_file` is set (as Centrifugo's
//! `internal/proxy/grpc.go`), the forwarded headers and the per-call
//! credentials (`proxy_grpc_credentials_key`/`_value`) as metadata.

use super::tls::{https_client, HttpsClient, TlsClientOptions};
use super::{Event, ProxyError};
use http::uri::PathAndQuery;
use http::Uri;

/// A request message the GRPC proxy can send.
pub(crate) trait ProxyMessage: prost::Message + Send + Sync + 'static {}
impl<T: prost::Message + Send + Sync + 'static> ProxyMessage for T {}

/// The connection pool to one GRPC backend (HTTP/2: prior knowledge
/// without TLS, ALPN `h2` with it).
pub(super) struct GrpcCaller {
    client: HttpsClient<tonic::body::Body>,
    origin: Uri,
    /// `proxy_grpc_credentials_key`/`_value`: sent with every call.
    credentials: Option<(String, String)>,
}

impl GrpcCaller {
    /// `authority` is what follows `grpc://` (`host:port`); `tls`, when
    /// given, turns TLS on.
    pub(super) fn new(
        authority: &str,
        tls: Option<&TlsClientOptions>,
        credentials: Option<(String, String)>,
    ) -> Result<GrpcCaller, String> {
        let authority = authority.trim_end_matches('/');
        let scheme = if tls.is_some() { "https" } else { "http" };
        let origin: Uri = format!("{scheme}://{authority}").parse().map_err(|e| format!("invalid address: {e}"))?;
        if origin.port_u16().is_none() || authority.contains('/') {
            return Err("must be grpc://host:port".into());
        }
        if let Some((key, value)) = &credentials {
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(key.to_ascii_lowercase().as_bytes())
                .map_err(|_| "proxy_grpc_credentials_key is not a valid metadata name".to_string())?;
            value
                .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .map_err(|_| "proxy_grpc_credentials_value is not a valid metadata value".to_string())?;
        }
        let client = https_client(tls, true)?;
        Ok(GrpcCaller { client, origin, credentials })
    }

    pub(super) async fn call<Req, Resp>(
        &self,
        event: Event,
        req: Req,
        headers: &[(String, String)],
    ) -> Result<Resp, ProxyError>
    where
        Req: ProxyMessage,
        Resp: prost::Message + Default + 'static,
    {
        let mut grpc = tonic::client::Grpc::with_origin(self.client.clone(), self.origin.clone());
        grpc.ready().await.map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(req);
        let credentials = self.credentials.iter().map(|(k, v)| (k, v));
        for (name, value) in headers.iter().map(|(k, v)| (k, v)).chain(credentials) {
            let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()),
                value.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>(),
            ) else {
                continue;
            };
            request.metadata_mut().insert(key, value);
        }
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = PathAndQuery::from_static(method_path(event));
        match grpc.unary(request, path, codec).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(ProxyError::Unavailable(format!("GRPC status {:?}", status.code()))),
        }
    }
}

fn method_path(event: Event) -> &'static str {
    match event {
        Event::Connect => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Connect",
        Event::Refresh => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Refresh",
        Event::Subscribe => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Subscribe",
        Event::Publish => "/centrifugal.centrifugo.proxy.CentrifugoProxy/Publish",
        Event::SubRefresh => "/centrifugal.centrifugo.proxy.CentrifugoProxy/SubRefresh",
        Event::Rpc => "/centrifugal.centrifugo.proxy.CentrifugoProxy/RPC",
        Event::SharedPollRefresh => "/centrifugal.centrifugo.proxy.CentrifugoProxy/SharedPollRefresh",
        Event::MapPublish => "/centrifugal.centrifugo.proxy.CentrifugoProxy/MapPublish",
        Event::MapRemove => "/centrifugal.centrifugo.proxy.CentrifugoProxy/MapRemove",
    }
}
