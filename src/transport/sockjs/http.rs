//! The SockJS HTTP side: greeting, `info`, the iframe page, and the
//! polling and streaming transports with their send endpoints. Every
//! answer carries SockJS's CORS headers for origins `allowed_origins`
//! admits; other origins are refused (403), as WebSocket upgrades are.

use ::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use warp::Reply as _;

use super::conn::{Conn, Event};
use super::frame::{self, Kind, Route};
use super::{BodyError, Request, Sockjs};

/// Bytes an `xhr_streaming`, `eventsource` or `htmlfile` response carries
/// before the server ends it and the client opens the next one, so that
/// clients that keep the whole response in memory do not grow without end
/// (SockJS servers' usual 128 KiB).
const RESPONSE_LIMIT: usize = 128 * 1024;
/// Chunks a streaming response may have in flight towards hyper.
const STREAM_CHUNKS: usize = 4;

type Reply = warp::reply::Response;
/// The body of a 404 for a send to an unknown session, Centrifugo v5's.
const NO_SESSION: &str = "404 page not found\n";
/// A refusal's status and plain-text body (small, unlike a whole reply).
type Refusal = (StatusCode, &'static str);

/// Answers one request under the prefix.
pub(super) async fn handle(sockjs: Arc<Sockjs>, request: Request) -> Reply {
    let Some(cors) = cors(&sockjs, &request.headers) else {
        return text(StatusCode::FORBIDDEN, "origin not allowed");
    };
    let route = frame::route(&request.tail);
    let method = request.method.clone();
    let mut reply = match (route, &method) {
        (Some(Route::Greeting), &Method::GET) => text(StatusCode::OK, "Welcome to SockJS!\n"),
        (Some(Route::Info), &Method::GET) => info(),
        (Some(Route::Info), &Method::OPTIONS) => preflight(&request.headers, "OPTIONS, GET"),
        (Some(Route::Iframe), &Method::GET) => iframe(&sockjs, &request.headers),
        (Some(Route::RawWebsocket), &Method::GET) => return super::ws::upgrade(sockjs, request, true),
        (Some(Route::Session { kind: Kind::Websocket, .. }), &Method::GET) => {
            return super::ws::upgrade(sockjs, request, false)
        }
        (Some(Route::Session { session, kind }), _) => {
            let session = session.to_string();
            session_request(sockjs, &request, &session, kind).await
        }
        (Some(_), _) => text(StatusCode::METHOD_NOT_ALLOWED, ""),
        (None, _) => text(StatusCode::NOT_FOUND, "Not found"),
    };
    reply.headers_mut().extend(cors);
    reply
}

async fn session_request(sockjs: Arc<Sockjs>, request: &Request, session: &str, kind: Kind) -> Reply {
    let method = &request.method;
    let is_post = matches!(kind, Kind::XhrPolling | Kind::XhrStreaming | Kind::XhrSend | Kind::JsonpSend);
    if method == Method::OPTIONS && is_post {
        return preflight(&request.headers, "OPTIONS, POST");
    }
    let expected = if is_post { Method::POST } else { Method::GET };
    if *method != expected {
        return text(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    match kind {
        Kind::XhrSend | Kind::JsonpSend => send(&sockjs, request, session, kind).await,
        Kind::XhrPolling => poll(&sockjs, session, &request.headers, None).await,
        Kind::JsonpPolling => match callback(&request.query) {
            Ok(callback) => poll(&sockjs, session, &request.headers, Some(callback)).await,
            Err((status, body)) => text(status, body),
        },
        Kind::XhrStreaming | Kind::EventSource | Kind::HtmlFile => {
            let callback = match kind {
                Kind::HtmlFile => match callback(&request.query) {
                    Ok(callback) => Some(callback),
                    Err((status, body)) => return text(status, body),
                },
                _ => None,
            };
            stream(&sockjs, session, &request.headers, kind, callback)
        }
        Kind::Websocket => text(StatusCode::BAD_REQUEST, "Can \"Upgrade\" only to \"WebSocket\"."),
    }
}

/// The session with this id, started when a receiving request names a new
/// one; a refusal (draining, connection limit) answers 503 as WebSocket
/// upgrades are answered.
fn session_for(sockjs: &Arc<Sockjs>, id: &str, headers: &HeaderMap) -> Result<Arc<Conn>, Refusal> {
    let mut sessions = sockjs.sessions.lock();
    if let Some(conn) = sessions.get(id) {
        return Ok(conn.clone());
    }
    if sockjs.shutdown.is_draining() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    }
    let limit = sockjs.app.config.client_connection_limit;
    if limit > 0 && sockjs.shutdown.tracker().len() >= limit {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "connection limit reached"));
    }
    let registry = Arc::downgrade(sockjs);
    let key = id.to_string();
    let conn = Conn::start(
        sockjs.app.clone(),
        sockjs.shutdown.clone(),
        headers.clone(),
        move || {
            if let Some(sockjs) = registry.upgrade() {
                sockjs.sessions.lock().remove(&key);
            }
        },
        true,
    );
    sessions.insert(id.to_string(), conn.clone());
    Ok(conn)
}

fn heartbeat(sockjs: &Sockjs) -> Option<Duration> {
    let delay = sockjs.app.config.sockjs_heartbeat_delay;
    (!delay.is_zero()).then_some(delay)
}

fn event_frame(event: Event) -> (String, bool) {
    match event {
        Event::Open => (frame::OPEN.to_string(), false),
        Event::Message(message) => (frame::message_frame(&message), false),
        Event::Heartbeat => (frame::HEARTBEAT.to_string(), false),
        Event::Close(reason) => (frame::close_frame(reason.code, &reason.reason), true),
    }
}

fn another_connection() -> String {
    let (code, reason) = frame::ANOTHER_CONNECTION;
    frame::close_frame(code, reason)
}

/// `xhr` and `jsonp`: one frame per request.
async fn poll(sockjs: &Arc<Sockjs>, id: &str, headers: &HeaderMap, callback: Option<String>) -> Reply {
    let conn = match session_for(sockjs, id, headers) {
        Ok(conn) => conn,
        Err((status, body)) => return text(status, body),
    };
    let frame = match conn.attach() {
        Some(mut receiver) => event_frame(receiver.next(heartbeat(sockjs)).await).0,
        None => another_connection(),
    };
    match callback {
        Some(callback) => with_type(text(StatusCode::OK, ""), "application/javascript; charset=UTF-8")
            .map(|_| frame::jsonp_body(&callback, &frame).into()),
        None => with_type(text(StatusCode::OK, ""), "application/javascript; charset=UTF-8")
            .map(|_| frame::xhr_chunk(&frame).into()),
    }
}

/// `xhr_streaming`, `eventsource`, `htmlfile`: frames until the response
/// limit, the close, or the client going away.
fn stream(sockjs: &Arc<Sockjs>, id: &str, headers: &HeaderMap, kind: Kind, callback: Option<String>) -> Reply {
    let conn = match session_for(sockjs, id, headers) {
        Ok(conn) => conn,
        Err((status, body)) => return text(status, body),
    };
    let (prelude, content_type): (String, &str) = match kind {
        Kind::EventSource => ("\r\n".into(), "text/event-stream"),
        Kind::HtmlFile => (frame::htmlfile_prelude(callback.as_deref().unwrap_or("")), "text/html; charset=UTF-8"),
        _ => (frame::xhr_streaming_prelude(), "application/javascript; charset=UTF-8"),
    };
    let wrap = move |frame: &str| match kind {
        Kind::EventSource => frame::eventsource_chunk(frame),
        Kind::HtmlFile => frame::htmlfile_chunk(frame),
        _ => frame::xhr_chunk(frame),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_CHUNKS);
    let heartbeat = heartbeat(sockjs);
    tokio::spawn(async move {
        if tx.send(prelude.into()).await.is_err() {
            return;
        }
        let Some(mut receiver) = conn.attach() else {
            let _ = tx.send(wrap(&another_connection()).into()).await;
            return;
        };
        tracing::debug!("sockjs {kind:?} receiver attached");
        let mut sent = 0;
        loop {
            let event = tokio::select! {
                event = receiver.next(heartbeat) => event,
                _ = tx.closed() => return,
            };
            let (frame, last) = event_frame(event);
            let chunk = wrap(&frame);
            sent += chunk.len();
            if tx.send(chunk.into()).await.is_err() || last || sent >= RESPONSE_LIMIT {
                return;
            }
        }
    });
    let mut reply = warp::reply::stream(Chunks(rx)).into_response();
    reply.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    reply
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"));
    reply
}

/// A streaming body fed by the task that writes frames.
struct Chunks(mpsc::Receiver<Bytes>);

impl futures_util::Stream for Chunks {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

/// `xhr_send` and `jsonp_send`: messages for an existing session.
async fn send(sockjs: &Arc<Sockjs>, request: &Request, id: &str, kind: Kind) -> Reply {
    let body = match &request.body {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return text(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large."),
        Err(BodyError::Broken) => return text(StatusCode::BAD_REQUEST, "Broken body."),
    };
    let Some(conn) = sockjs.sessions.lock().get(id).cloned() else {
        return text(StatusCode::NOT_FOUND, NO_SESSION);
    };
    let payload = if kind == Kind::JsonpSend {
        let form = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        frame::jsonp_send_payload(body, form).unwrap_or_default()
    } else {
        body.to_vec()
    };
    let messages = match frame::parse_messages(&payload) {
        Ok(messages) => messages,
        // 400, as Centrifugo v5 (sockjs-go) answers; sockjs-node says 500.
        Err(e) => return text(StatusCode::BAD_REQUEST, e.text()),
    };
    if !conn.deliver(messages.into_iter().map(Bytes::from).collect()).await {
        return text(StatusCode::NOT_FOUND, NO_SESSION);
    }
    match kind {
        Kind::JsonpSend => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::NO_CONTENT, ""),
    }
}

/// The `c` query parameter of `htmlfile` and `jsonp`.
fn callback(query: &str) -> Result<String, Refusal> {
    match frame::query_value(query, "c") {
        None => Err((StatusCode::INTERNAL_SERVER_ERROR, "\"callback\" parameter required")),
        Some(c) if !frame::valid_callback(&c) => {
            Err((StatusCode::INTERNAL_SERVER_ERROR, "invalid \"callback\" parameter"))
        }
        Some(c) => Ok(c),
    }
}

fn info() -> Reply {
    let body = frame::info_json(true, rand::random::<u32>());
    let mut reply = with_type(text(StatusCode::OK, ""), "application/json; charset=UTF-8").map(|_| body.into());
    reply
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"));
    reply
}

fn iframe(sockjs: &Sockjs, headers: &HeaderMap) -> Reply {
    let page = frame::iframe_html(&sockjs.app.config.sockjs_url);
    // A strong validator from the page itself: same URL, same page.
    let etag = format!("\"{:016x}\"", fnv(page.as_bytes()));
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return text(StatusCode::NOT_MODIFIED, "");
    }
    let mut reply = with_type(text(StatusCode::OK, ""), "text/html; charset=UTF-8").map(|_| page.into());
    let h = reply.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("public, max-age=31536000"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert("etag", etag);
    }
    reply
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// A CORS preflight answer, cached for a year as SockJS servers do.
fn preflight(headers: &HeaderMap, methods: &'static str) -> Reply {
    let mut reply = text(StatusCode::NO_CONTENT, "");
    let h = reply.headers_mut();
    h.insert("access-control-allow-methods", HeaderValue::from_static(methods));
    h.insert("access-control-max-age", HeaderValue::from_static("31536000"));
    h.insert("cache-control", HeaderValue::from_static("public, max-age=31536000"));
    if let Some(asked) = headers.get("access-control-request-headers") {
        h.insert("access-control-allow-headers", asked.clone());
    }
    reply
}

/// The CORS headers for this request, or None when its origin is not
/// allowed. Without an `Origin` (or with `null`) any origin is allowed, as
/// SockJS answers `*`.
fn cors(sockjs: &Sockjs, headers: &HeaderMap) -> Option<HeaderMap> {
    let mut out = HeaderMap::new();
    match headers.get("origin").filter(|o| o.as_bytes() != b"null" && !o.is_empty()) {
        None => {
            out.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        }
        Some(origin) => {
            if !sockjs.app.config.allowed_origins.allows(headers) {
                return None;
            }
            out.insert("access-control-allow-origin", origin.clone());
            out.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
            out.insert("vary", HeaderValue::from_static("origin"));
        }
    }
    Some(out)
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut reply = Response::new(body.into());
    *reply.status_mut() = status;
    if !body.is_empty() {
        reply.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=UTF-8"));
    }
    reply
}

fn with_type(mut reply: Reply, content_type: &'static str) -> Reply {
    reply.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    reply
}
