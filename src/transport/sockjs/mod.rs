//! SockJS at `/connection/sockjs` (`NATSGATE_SOCKJS`), as Centrifugo v5
//! served it (centrifuge's `handler_sockjs.go`): the JSON client protocol
//! only, each write of one or more protocol messages (joined by `\n`) sent
//! as one SockJS message, disconnects as SockJS close frames with
//! Centrifugo's codes and reasons, and application-level pings (`{}`) as
//! over WebSocket.
//!
//! Layout: [`frame`] is the pure wire format; [`conn`] one session and its
//! task; [`http`] the HTTP transports (`info`, `xhr`, `xhr_streaming`,
//! `xhr_send`, `eventsource`, `htmlfile`, `jsonp`, `jsonp_send`, the
//! iframe page); [`ws`] framed and raw WebSocket.
//!
//! Sessions live in this gateway's memory: every request of a polling or
//! streaming session must reach the gateway that holds it, so SockJS
//! behind a load balancer needs sticky sessions, as Centrifugo required.
//! Nothing of SockJS goes over NATS.

mod conn;
pub(crate) mod frame;
mod http;
mod ws;

use ::http::{HeaderMap, Method};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use warp::Filter;

use crate::context::AppContext;
use crate::shutdown::Shutdown;
use conn::Conn;

/// The SockJS endpoint's shared state: the sessions of polling and
/// streaming transports by id (WebSocket sessions need no lookup).
pub(crate) struct Sockjs {
    app: Arc<AppContext>,
    shutdown: Shutdown,
    sessions: Mutex<HashMap<String, Arc<Conn>>>,
}

/// One request under the prefix, as the handlers need it.
pub(crate) struct Request {
    tail: String,
    method: Method,
    headers: HeaderMap,
    query: String,
    upgrade: Option<OnUpgrade>,
    body: Result<Bytes, BodyError>,
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    Broken,
}

/// The warp route for everything under `/connection/sockjs`; rejects (404)
/// when `NATSGATE_SOCKJS` is off.
pub(crate) fn route(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let enabled = app.config.sockjs;
    let limit = app.config.websocket_message_size_limit;
    let sockjs = Arc::new(Sockjs { app, shutdown, sessions: Mutex::new(HashMap::new()) });
    warp::path("connection")
        .and(warp::path("sockjs"))
        .and_then(move || async move {
            if enabled {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::body::stream())
        .then(move |tail: warp::path::Tail, method: Method, headers, query, upgrade, body| {
            let sockjs = sockjs.clone();
            async move {
                let body = if method == Method::POST { read_body(body, limit).await } else { Ok(Bytes::new()) };
                let request = Request { tail: tail.as_str().to_string(), method, headers, query, upgrade, body };
                http::handle(sockjs, request).await
            }
        })
}

/// Reads a request body of at most `limit` bytes, whatever its framing
/// (`Content-Length` or chunked).
async fn read_body<S, B>(body: S, limit: usize) -> Result<Bytes, BodyError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures_util::StreamExt;
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Broken)?;
        if out.len() + chunk.remaining() > limit {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}
