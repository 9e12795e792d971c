//! One GRPC proxy call: a unary call of Centrifugo's `CentrifugoProxy`
//! service over HTTP/2 without TLS (`grpc://host:port`), with the forwarded
//! headers as metadata.

use http::uri::PathAndQuery;
use http::Uri;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::{Event, ProxyError};

/// A request message the GRPC proxy can send.
pub(crate) trait ProxyMessage: prost::Message + Send + Sync + 'static {}
impl<T: prost::Message + Send + Sync + 'static> ProxyMessage for T {}

/// The connection pool to one GRPC backend (HTTP/2, prior knowledge).
pub(super) struct GrpcCaller {
    client: Client<HttpConnector, tonic::body::Body>,
    origin: Uri,
}

impl GrpcCaller {
    /// `authority` is what follows `grpc://` (`host:port`).
    pub(super) fn new(authority: &str) -> Result<GrpcCaller, String> {
        let authority = authority.trim_end_matches('/');
        let origin: Uri = format!("http://{authority}").parse().map_err(|e| format!("invalid address: {e}"))?;
        if origin.port_u16().is_none() || authority.contains('/') {
            return Err("must be grpc://host:port".into());
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).http2_only(true).build(connector);
        Ok(GrpcCaller { client, origin })
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
        for (name, value) in headers {
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
    }
}
