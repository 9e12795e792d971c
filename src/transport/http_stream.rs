//! HTTP-streaming at `/connection/http_stream` (`NATSGATE_HTTP_STREAM`).
//!
//! As centrifuge's `HTTPStreamHandler`: `POST` with the connect command as
//! the body (at most `http_stream_max_request_body_size`, else 413); the
//! response streams replies and pushes: JSON one per line, or Protobuf
//! length-delimited when the request's `Content-Type` is
//! `application/octet-stream`. Later commands arrive through
//! [`super::emulation`]. `OPTIONS` answers the CORS preflight; other
//! methods 405.

use http::{HeaderMap, Method, StatusCode};
use std::sync::Arc;
use warp::reply::Response;
use warp::Filter;

use super::stream::{self, Framing, Opening};
use super::{body, cors, Kind};
use crate::context::AppContext;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;

/// The warp route (rejects with 404 when the transport is off).
pub(crate) fn route(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let enabled = app.config.http_stream;
    warp::path!("connection" / "http_stream")
        .and(super::sse::only_if(enabled))
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, headers: HeaderMap, stream| {
            let (app, shutdown) = (app.clone(), shutdown.clone());
            async move {
                let mut response = match cors::preflight(&method) {
                    Some(preflight) => preflight,
                    None if method != Method::POST => cors::status(StatusCode::METHOD_NOT_ALLOWED),
                    None => match stream::admit(&app, &shutdown) {
                        Err(status) => cors::status(status),
                        Ok(()) => match body::read(stream, app.config.http_stream_max_request_body_size).await {
                            Err(status) => cors::status(status),
                            Ok(frame) => {
                                let protobuf = headers
                                    .get("content-type")
                                    .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
                                let (protocol, framing) = if protobuf {
                                    (Protocol::Protobuf, Framing::Protobuf)
                                } else {
                                    (Protocol::Json, Framing::Lines)
                                };
                                let opening = Opening::Frame(frame);
                                stream::start(
                                    app.clone(),
                                    shutdown,
                                    Kind::HttpStream,
                                    protocol,
                                    framing,
                                    opening,
                                    headers.clone(),
                                )
                            }
                        },
                    },
                };
                cors::apply(&app, &headers, &mut response);
                response
            }
        })
}
