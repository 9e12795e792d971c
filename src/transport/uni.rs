//! Unidirectional transports: the client sends only its connect request
//! (a JSON `ConnectRequest`, not a command) and then receives bare pushes,
//! no replies: `{"connect":{..}}` first, then publications and the rest;
//! `{}` is a ping that needs no answer. Subscriptions come from the token
//! (`channels`, `subs`) and the server API. A refused connect closes the
//! stream with a `disconnect` push (see
//! [`crate::protocol::codes::Disconnect::for_unidirectional_error`]).
//!
//! - `/connection/uni_http_stream` (`NATSGATE_UNI_HTTP_STREAM`): `POST` with
//!   the request as the body; one push per line.
//! - `/connection/uni_sse` (`NATSGATE_UNI_SSE`): `GET` with the request in
//!   the `cf_connect` query parameter (none: an empty request), or `POST`
//!   with it as the body; one `data:` event per push.
//!
//! As Centrifugo's `unihttpstream` and `unisse` handlers: a body above the
//! limit gets 413, a malformed request 400, another method 405.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use warp::reply::Response;
use warp::Filter;

use super::sse::{only_if, query, CONNECT_PARAM};
use super::stream::{self, Framing, Opening};
use super::{body, cors, Kind};
use crate::context::AppContext;
use crate::protocol::{ConnectRequest, Protocol};
use crate::shutdown::Shutdown;

/// A connect request in JSON; `null` is an empty one (Centrifugo parses
/// into a pointer).
pub(crate) fn parse_connect(data: &[u8]) -> Result<ConnectRequest, StatusCode> {
    serde_json::from_slice::<Option<ConnectRequest>>(data)
        .map(Option::unwrap_or_default)
        .map_err(|_| StatusCode::BAD_REQUEST)
}

fn open(
    app: &Arc<AppContext>,
    shutdown: Shutdown,
    kind: Kind,
    framing: Framing,
    request: Result<ConnectRequest, StatusCode>,
    headers: &HeaderMap,
) -> Response {
    match request.and_then(|r| stream::admit(app, &shutdown).map(|()| r)) {
        Err(status) => cors::status(status),
        Ok(request) => {
            let opening = Opening::Connect(request);
            stream::start(app.clone(), shutdown, kind, Protocol::Json, framing, opening, headers.clone())
        }
    }
}

/// `/connection/uni_http_stream`.
pub(crate) fn http_stream_route(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("connection" / "uni_http_stream")
        .and(only_if(app.config.uni_http_stream))
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, headers: HeaderMap, stream| {
            let (app, shutdown) = (app.clone(), shutdown.clone());
            async move {
                let mut response = match cors::preflight(&method) {
                    Some(preflight) => preflight,
                    None if method != Method::POST => cors::status(StatusCode::METHOD_NOT_ALLOWED),
                    None => {
                        let request = body::read(stream, app.config.uni_http_stream_max_request_body_size)
                            .await
                            .and_then(|data| parse_connect(&data));
                        open(&app, shutdown, Kind::UniHttpStream, Framing::Lines, request, &headers)
                    }
                };
                cors::apply(&app, &headers, &mut response);
                response
            }
        })
}

/// `/connection/uni_sse`.
pub(crate) fn sse_route(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("connection" / "uni_sse")
        .and(only_if(app.config.uni_sse))
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(query())
        .and(warp::body::stream())
        .then(move |method: Method, headers: HeaderMap, query: HashMap<String, String>, stream| {
            let (app, shutdown) = (app.clone(), shutdown.clone());
            async move {
                let request = if method == Method::GET {
                    match query.get(CONNECT_PARAM).filter(|c| !c.is_empty()) {
                        Some(connect) => parse_connect(connect.as_bytes()),
                        None => Ok(ConnectRequest::default()),
                    }
                } else if method == Method::POST {
                    body::read(stream, app.config.uni_sse_max_request_body_size)
                        .await
                        .and_then(|data: Bytes| parse_connect(&data))
                } else {
                    Err(StatusCode::METHOD_NOT_ALLOWED)
                };
                let mut response = open(&app, shutdown, Kind::UniSse, Framing::Sse, request, &headers);
                cors::apply(&app, &headers, &mut response);
                response
            }
        })
}
