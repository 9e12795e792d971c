//! Transports: adapters that turn client sockets into frames for a session.
//!
//! WebSocket ([`websocket`]); HTTP-streaming ([`http_stream`]) and SSE
//! ([`sse`]), whose commands after connect arrive through the emulation
//! endpoint ([`emulation`]); the unidirectional transports ([`uni`],
//! [`uni_websocket`], [`uni_grpc`]); and
//! SockJS ([`sockjs`]), Centrifugo v5's fallback.
//! All run the same session on one driver ([`crate::session::driver`]);
//! the HTTP streaming ones share [`stream`], whose output is a response body.

pub(crate) mod body;
pub(crate) mod cors;
pub(crate) mod emulation;
pub(crate) mod http_stream;
pub(crate) mod listener;
pub(crate) mod sockjs;
pub(crate) mod sse;
pub(crate) mod stream;
pub(crate) mod tls;
pub(crate) mod uni;
pub(crate) mod uni_grpc;
pub(crate) mod uni_websocket;
pub(crate) mod websocket;

/// Which transport a session runs over: its label in the transport metrics
/// (`natsgate_transport_messages_*_total{transport=...}`, Centrifugo's
/// transport names) and what its connect reply announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    WebSocket,
    HttpStream,
    Sse,
    UniWebSocket,
    UniSse,
    UniHttpStream,
    SockJs,
    UniGrpc,
}

impl Kind {
    /// Centrifugo's name of the transport.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::WebSocket => "websocket",
            Kind::HttpStream => "http_stream",
            Kind::Sse => "sse",
            Kind::UniWebSocket => "uni_websocket",
            Kind::UniSse => "uni_sse",
            Kind::UniHttpStream => "uni_http_stream",
            Kind::SockJs => "sockjs",
            Kind::UniGrpc => "uni_grpc",
        }
    }

    /// Commands after connect come through `/emulation` (centrifuge's
    /// `Transport.Emulation`): the connect reply carries `session` and `node`.
    pub(crate) fn emulation(self) -> bool {
        matches!(self, Kind::HttpStream | Kind::Sse)
    }

    /// Only the connect request comes from the client; everything sent is a
    /// bare `Push` (centrifuge's `Transport.Unidirectional`).
    pub(crate) fn unidirectional(self) -> bool {
        matches!(self, Kind::UniWebSocket | Kind::UniSse | Kind::UniHttpStream | Kind::UniGrpc)
    }
}

/// The routes of the HTTP transports (each rejects as not found when off).
pub(crate) fn routes(
    app: std::sync::Arc<crate::context::AppContext>,
    shutdown: crate::shutdown::Shutdown,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    http_stream::route(app.clone(), shutdown.clone())
        .or(sse::route(app.clone(), shutdown.clone()))
        .unify()
        .or(emulation::route(app.clone()))
        .unify()
        .or(uni::http_stream_route(app.clone(), shutdown.clone()))
        .unify()
        .or(uni::sse_route(app.clone(), shutdown.clone()))
        .unify()
        .or(uni_websocket::route(app, shutdown))
        .unify()
}
