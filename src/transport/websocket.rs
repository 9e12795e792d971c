//! WebSocket transport at `/connection/websocket`.
//!
//! Upgrades usually arrive on the direct path ([`accept`], handed over by
//! [`super::listener`]), else through warp's route; both apply the same
//! checks ([`admit`]), choose tungstenite's buffer sizes (its defaults hold
//! 128 KiB per idle connection) and echo the `centrifuge-protobuf`
//! subprotocol, which browsers and the `ws` package insist on.
//!
//! Each connection runs two tasks: the reader drives the session; the
//! writer drains the outbox into coalesced frames and pings. A slow client
//! only ever blocks its own writer.

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{Request as HandshakeRequest, Response as HandshakeResponse};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use warp::Filter;

use crate::context::AppContext;
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::Protocol;
use crate::session::{Liveness, Session};
use crate::shutdown::Shutdown;

const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";
const JSON_SUBPROTOCOL: &str = "centrifuge-json";
/// Sent (as a close code) when a client frame exceeds the size limit;
/// SDKs treat 1009 as final, as they do against Centrifugo.
const MESSAGE_TOO_BIG: Disconnect = Disconnect { code: 1009, reason: std::borrow::Cow::Borrowed("message too big") };
/// How long a close frame may take to reach a client that reads slowly.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where clients connect.
pub(crate) const PATH: &str = "/connection/websocket";
/// How long the WebSocket handshake may take on the direct path.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The warp route for `GET /connection/websocket`: the path for upgrades
/// that [`super::listener`] did not take straight to tungstenite.
pub(crate) fn route(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (Response<String>,), Error = warp::Rejection> + Clone {
    warp::path!("connection" / "websocket")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<OnUpgrade>())
        .map(move |headers: HeaderMap, query: String, on_upgrade: Option<OnUpgrade>| {
            upgrade(app.clone(), shutdown.clone(), &headers, &query, on_upgrade)
        })
}

fn plain(status: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_string());
    *response.status_mut() = status;
    response
}

/// A connection the gateway lets in: its protocol and the subprotocol to echo.
struct Admitted {
    protocol: Protocol,
    subprotocol: Option<&'static str>,
}

/// Why an upgrade is refused: the HTTP status and a short body.
type Refusal = (StatusCode, &'static str);

/// The gateway's checks before any upgrade, on both paths: draining,
/// connection limit, origin; then the protocol the client asked for.
fn admit(app: &AppContext, shutdown: &Shutdown, headers: &HeaderMap, query: &str) -> Result<Admitted, Refusal> {
    if shutdown.is_draining() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    }
    let limit = app.config.client_connection_limit;
    if limit > 0 && shutdown.tracker().len() >= limit {
        // Refused before the upgrade, as Centrifugo does: SDKs retry later.
        return Err((StatusCode::SERVICE_UNAVAILABLE, "connection limit reached"));
    }
    if !app.config.allowed_origins.allows(headers) {
        return Err((StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let offered: Vec<&str> = headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let query_asks_protobuf = query.split('&').any(|pair| matches!(pair, "cf_protocol=protobuf" | "format=protobuf"));
    let wants_protobuf = offered.contains(&PROTOBUF_SUBPROTOCOL) || query_asks_protobuf;
    let protocol = if wants_protobuf { Protocol::Protobuf } else { Protocol::Json };
    let subprotocol = if offered.contains(&PROTOBUF_SUBPROTOCOL) && wants_protobuf {
        Some(PROTOBUF_SUBPROTOCOL)
    } else if offered.contains(&JSON_SUBPROTOCOL) {
        Some(JSON_SUBPROTOCOL)
    } else {
        None
    };
    Ok(Admitted { protocol, subprotocol })
}

/// The direct path: the handshake on the raw socket (see [`super::listener`]).
pub(crate) async fn accept(stream: TcpStream, app: Arc<AppContext>, shutdown: Shutdown) {
    let mut admitted = None;
    // The Err type (a whole http::Response) is fixed by tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let check = |request: &HandshakeRequest, mut response: HandshakeResponse| {
        let query = request.uri().query().unwrap_or("");
        match admit(&app, &shutdown, request.headers(), query) {
            Ok(a) => {
                if let Some(subprotocol) = a.subprotocol {
                    response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(subprotocol));
                }
                admitted = Some(a.protocol);
                Ok(response)
            }
            Err((status, body)) => Err(plain(status, body).map(Some)),
        }
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(socket_config(&app)));
    // Boxed: the handshake's state is large and short-lived; inline it would
    // stay in this connection's task for the connection's whole life.
    match Box::pin(timeout(HANDSHAKE_TIMEOUT, handshake)).await {
        Ok(Ok(ws)) => {
            if let Some(protocol) = admitted {
                // Counted from here like every connection, so that drain and
                // the connection limit see it (the limit check above must
                // not count the connection it is deciding about).
                let _tracked = shutdown.tracker().token();
                serve(ws, app, protocol, shutdown).await;
            }
        }
        Ok(Err(e)) => tracing::debug!("websocket handshake failed: {e}"),
        Err(_) => tracing::debug!("websocket handshake timed out"),
    }
}

fn upgrade(
    app: Arc<AppContext>,
    shutdown: Shutdown,
    headers: &HeaderMap,
    query: &str,
    on_upgrade: Option<OnUpgrade>,
) -> Response<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_upgrade = header("upgrade").eq_ignore_ascii_case("websocket")
        && header("connection").to_ascii_lowercase().contains("upgrade");
    let key = header("sec-websocket-key");
    let Some(on_upgrade) = on_upgrade.filter(|_| is_upgrade && !key.is_empty()) else {
        return plain(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    };
    let Admitted { protocol, subprotocol } = match admit(&app, &shutdown, headers, query) {
        Ok(admitted) => admitted,
        Err((status, body)) => return plain(status, body),
    };

    let mut response = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = response.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", accept);
    }
    if let Some(subprotocol) = subprotocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(subprotocol));
    }

    let tracker = shutdown.tracker().clone();
    tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(socket_config(&app)))
                        .await;
                serve(ws, app, protocol, shutdown).await;
            }
            Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
        }
    });
    response
}

/// Small buffers: an idle connection should cost a few KiB, not 256.
fn socket_config(app: &AppContext) -> WebSocketConfig {
    let limit = app.config.websocket_message_size_limit;
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(app.config.client_queue_max_size * 2 + 65536)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// What a connection runs over: the raw TCP stream (direct path) or
/// hyper's upgraded stream.
trait Socket: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Socket for S {}

/// Runs one connection to its end.
async fn serve<S: Socket>(ws: WebSocketStream<S>, app: Arc<AppContext>, protocol: Protocol, shutdown: Shutdown) {
    let outbox = Arc::new(Outbox::new(app.config.client_queue_max_size));
    let mut session = Session::new(app.clone(), protocol, outbox.clone());
    let (sink, stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, outbox.clone(), protocol, session.liveness(), app.clone()));
    read_loop(stream, &mut session, &outbox, &app, &shutdown).await;
    // The first reason wins: when the client went away this is a no-op write.
    outbox.close(Disconnect::CONNECTION_CLOSED);
    if let Some(reason) = outbox.close_reason() {
        metrics().disconnects.with_label_values(&[&reason.code.to_string()]).inc();
        if reason == Disconnect::SLOW {
            metrics().slow_disconnects.inc();
        }
    }
    session.close();
    let _ = writer.await;
}

async fn read_loop<S: Socket>(
    mut stream: SplitStream<WebSocketStream<S>>,
    session: &mut Session,
    outbox: &Outbox,
    app: &AppContext,
    shutdown: &Shutdown,
) {
    let config = &app.config;
    let Some(mut commands) = session.take_command_receiver() else { return };
    let stale_deadline = Instant::now() + config.client_stale_close_delay;
    loop {
        let expiry = session.next_expiry_check().map(deadline_after_unix);
        tokio::select! {
            biased;
            _ = outbox.closing() => return,
            _ = shutdown.forced() => {
                outbox.close(Disconnect::SHUTDOWN);
                return;
            }
            _ = sleep_until(stale_deadline), if !session.is_connected() => {
                outbox.close(Disconnect::STALE);
                return;
            }
            _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                if let Err(disconnect) = session.enforce_expiry() {
                    outbox.close(disconnect);
                    return;
                }
            }
            Some(command) = commands.recv() => {
                // Boxed, as handle_frame below: rare, large futures would
                // otherwise make every idle connection's task as big.
                if let Err(disconnect) = Box::pin(session.handle_user_command(*command)).await {
                    outbox.close(disconnect);
                    return;
                }
            }
            message = stream.next() => {
                let frame: Bytes = match message {
                    Some(Ok(Message::Text(text))) if protocol_of(session) == Protocol::Json => text.into(),
                    Some(Ok(Message::Binary(data))) if protocol_of(session) == Protocol::Protobuf => data,
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        outbox.close(Disconnect::BAD_REQUEST);
                        return;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(WsError::Capacity(_))) => {
                        outbox.close(MESSAGE_TOO_BIG);
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::debug!("websocket read: {e}");
                        return;
                    }
                };
                if let Err(disconnect) = Box::pin(session.handle_frame(&frame)).await {
                    outbox.close(disconnect);
                    return;
                }
            }
        }
    }
}

fn protocol_of(session: &Session) -> Protocol {
    session.protocol()
}

/// The tokio instant at a Unix time in seconds (never early, so the check
/// it triggers finds the second reached).
pub(crate) fn deadline_after_unix(at: i64) -> Instant {
    let left_ms = (at.saturating_mul(1000) - crate::broker::now_ms() as i64).max(0) as u64;
    Instant::now() + Duration::from_millis(left_ms)
}

/// Drains the outbox into frames and sends pings. This runs once per
/// delivery under fan-out, so it keeps per-pass work small: the timers are
/// pinned and reset only when they fire, and the batch queue is reused.
async fn write_loop<S: Socket>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    outbox: Arc<Outbox>,
    protocol: Protocol,
    liveness: Arc<Liveness>,
    app: Arc<AppContext>,
) {
    let interval = app.config.ping_interval;
    let pong_timeout = app.config.pong_timeout;
    let sent = metrics().messages_sent.with_label_values(&["websocket"]);
    // The first ping is randomised so that reconnect waves do not ping in step.
    let first = interval / 2 + interval.mul_f64(rand::random::<f64>() / 2.0);
    let ping_timer = sleep_until(Instant::now() + first);
    let pong_timer = sleep_until(Instant::now() + first + pong_timeout);
    tokio::pin!(ping_timer, pong_timer);
    let mut awaiting_pong = false;
    let ping = ping_message(protocol);
    let mut batch = VecDeque::new();

    let reason = loop {
        tokio::select! {
            biased;
            closed = outbox.next(&mut batch) => {
                if let Some(reason) = closed {
                    break reason;
                }
                sent.inc_by(batch.len() as u64);
                let frame = into_frame(protocol, &mut batch);
                // The write goes first: replies queued just before a close
                // must reach the client. Only a write that cannot finish
                // (a client not reading) is abandoned for the close.
                tokio::select! {
                    biased;
                    result = sink.send(frame) => if result.is_err() { return },
                    reason = outbox.closing() => break reason,
                }
            }
            _ = &mut ping_timer => {
                let now = Instant::now();
                ping_timer.as_mut().reset(now + interval);
                if liveness.connected.load(Ordering::Relaxed) {
                    liveness.pong_received.store(false, Ordering::Relaxed);
                    pong_timer.as_mut().reset(now + pong_timeout);
                    awaiting_pong = true;
                    outbox.push(ping.clone());
                }
            }
            _ = &mut pong_timer, if awaiting_pong => {
                awaiting_pong = false;
                if !liveness.pong_received.load(Ordering::Relaxed) {
                    outbox.close(Disconnect::NO_PONG);
                }
            }
        }
    };
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::from(reason.code),
        reason: Utf8Bytes::from(reason.reason.into_owned()),
    }));
    let _ = timeout(CLOSE_WRITE_TIMEOUT, async {
        let _ = sink.send(close).await;
        let _ = sink.close().await;
    })
    .await;
}

/// The empty reply Centrifugo uses as a ping: `{}` in JSON, one zero byte
/// (an empty length-prefixed message) in Protobuf.
fn ping_message(protocol: Protocol) -> Bytes {
    match protocol {
        Protocol::Json => Bytes::from_static(b"{}"),
        Protocol::Protobuf => Bytes::from_static(&[0]),
    }
}

/// Joins queued messages into one WebSocket frame, leaving `messages` empty.
fn into_frame(protocol: Protocol, messages: &mut VecDeque<Bytes>) -> Message {
    let payload = if messages.len() == 1 {
        messages.pop_front().unwrap_or_default()
    } else {
        let size = messages.iter().map(|m| m.len() + 1).sum();
        let mut frame = BytesMut::with_capacity(size);
        for message in messages.drain(..) {
            protocol.join_into(&mut frame, &message);
        }
        frame.freeze()
    };
    match protocol {
        // Our JSON encoder only writes UTF-8.
        Protocol::Json => match Utf8Bytes::try_from(payload) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Text(Utf8Bytes::from_static("")),
        },
        Protocol::Protobuf => Message::Binary(payload),
    }
}
