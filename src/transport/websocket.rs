//! WebSocket transport at `/connection/websocket`.
//!
//! Upgrades usually arrive on the direct path ([`accept`], handed over by
//! [`super::listener`]), else through warp's route; both apply the same
//! checks ([`admit`]), choose tungstenite's buffer sizes (its defaults hold
//! 128 KiB per idle connection) and echo the `centrifuge-protobuf`
//! subprotocol, which browsers and the `ws` package insist on.
//!
//! Each connection runs on the session driver ([`crate::session::driver`]):
//! this module adapts only the framing, client frames in and coalesced
//! frames out, ending with a close frame. With `client_write_delay` the writer
//! waits that long after a message for more to share its frame, as
//! centrifuge's writer does (`writer.go`, `waitSendMessage`).

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{Request as HandshakeRequest, Response as HandshakeResponse};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use warp::Filter;

use super::Kind;
use crate::context::AppContext;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::Protocol;
use crate::session::driver::{self, Client, Drain, Input, Reader, WriteError, Writer};
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
    let mut request_headers = HeaderMap::new();
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
                request_headers = request.headers().clone();
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
                serve(ws, app, protocol, shutdown, &request_headers).await;
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
    let headers = headers.clone();
    tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(socket_config(&app)))
                        .await;
                serve(ws, app, protocol, shutdown, &headers).await;
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

/// Runs one connection to its end, on the session driver.
async fn serve<S: Socket>(
    ws: WebSocketStream<S>,
    app: Arc<AppContext>,
    protocol: Protocol,
    shutdown: Shutdown,
    headers: &HeaderMap,
) {
    let outbox = Arc::new(Outbox::new(app.config.client_queue_max_size));
    let (sink, stream) = ws.split();
    let client = Client {
        kind: Kind::WebSocket,
        protocol,
        session_id: String::new(),
        headers: headers.clone(),
        drain: Drain::ByServer,
        opening: None,
    };
    let writer = FrameWriter { sink, protocol, coalesce: Coalesce::from_config(&app.config) };
    driver::run(app, &shutdown, client, outbox, FrameReader { stream, protocol }, Some(writer)).await;
}

/// Client frames: text on JSON connections, binary on Protobuf ones.
struct FrameReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    protocol: Protocol,
}

impl<S: Socket> Reader for FrameReader<S> {
    async fn next(&mut self) -> Input {
        loop {
            return match self.stream.next().await {
                Some(Ok(Message::Text(text))) if self.protocol == Protocol::Json => Input::Frame(text.into()),
                Some(Ok(Message::Binary(data))) if self.protocol == Protocol::Protobuf => Input::Frame(data),
                Some(Ok(Message::Text(_) | Message::Binary(_))) => Input::Refused(Disconnect::BAD_REQUEST),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None => Input::Closed,
                Some(Err(WsError::Capacity(_))) => Input::Refused(MESSAGE_TOO_BIG),
                Some(Err(e)) => {
                    tracing::debug!("websocket read: {e}");
                    Input::Closed
                }
            };
        }
    }
}

/// Coalesced frames out, a close frame with the disconnect code at the end.
struct FrameWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    protocol: Protocol,
    coalesce: Coalesce,
}

impl<S: Socket> Writer for FrameWriter<S> {
    async fn gather(&mut self, outbox: &Outbox, batch: &mut VecDeque<Bytes>) {
        self.coalesce.collect(outbox, batch).await;
    }

    async fn write(&mut self, batch: &mut VecDeque<Bytes>) -> Result<(), WriteError> {
        write_frames(&mut self.sink, self.protocol, batch, self.coalesce.max_messages).await.map_err(|_| None)
    }

    async fn close(mut self, reason: Disconnect) {
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::from(reason.code),
            reason: Utf8Bytes::from(reason.reason.into_owned()),
        }));
        let _ = timeout(CLOSE_WRITE_TIMEOUT, async {
            let _ = self.sink.send(close).await;
            let _ = self.sink.close().await;
        })
        .await;
    }
}

/// The writer's coalescing settings (`client_write_delay`,
/// `client_max_messages_in_frame`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Coalesce {
    /// Zero: write what is queued at once.
    delay: Duration,
    /// Most messages per frame; None: no limit.
    max_messages: Option<usize>,
}

/// centrifuge's `defaultMaxMessagesInFrame`, used for a configured 0.
const DEFAULT_MAX_MESSAGES_IN_FRAME: usize = 16;

impl Coalesce {
    fn from_config(config: &crate::config::Config) -> Coalesce {
        Coalesce::new(config.client_write_delay, config.client_max_messages_in_frame)
    }

    /// As centrifuge reads `MaxMessagesInFrame`: 0 is its default (16),
    /// any negative value is no limit.
    fn new(delay: Duration, max_messages: i64) -> Coalesce {
        let max_messages = match max_messages {
            0 => Some(DEFAULT_MAX_MESSAGES_IN_FRAME),
            n if n < 0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        Coalesce { delay, max_messages }
    }

    /// With a delay, and fewer messages than fit one frame, waits the
    /// delay (or until the connection is asked to close) and adds what
    /// arrived meanwhile to `batch`.
    async fn collect(&self, outbox: &Outbox, batch: &mut VecDeque<Bytes>) {
        if self.delay.is_zero() || self.max_messages.is_some_and(|max| batch.len() >= max) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => {}
            _ = outbox.closing() => {}
        }
        outbox.take_more(batch);
    }
}

/// Writes `messages` (leaving it empty) as frames of at most `max`
/// messages each, flushing once at the end.
async fn write_frames<S: Socket>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    protocol: Protocol,
    messages: &mut VecDeque<Bytes>,
    max: Option<usize>,
) -> Result<(), WsError> {
    let per_frame = max.unwrap_or(usize::MAX).max(1);
    if messages.len() <= per_frame {
        return sink.send(into_frame(protocol, messages, per_frame)).await;
    }
    while !messages.is_empty() {
        sink.feed(into_frame(protocol, messages, per_frame)).await?;
    }
    sink.flush().await
}

/// Joins up to `max` queued messages (taken from the front) into one
/// WebSocket frame: JSON messages newline-separated, Protobuf ones
/// length-prefixed already, so simply concatenated.
fn into_frame(protocol: Protocol, messages: &mut VecDeque<Bytes>, max: usize) -> Message {
    let count = messages.len().min(max);
    let payload = if count == 1 {
        messages.pop_front().unwrap_or_default()
    } else {
        let size = messages.iter().take(count).map(|m| m.len() + 1).sum();
        let mut frame = BytesMut::with_capacity(size);
        for message in messages.drain(..count) {
            protocol.join_into(&mut frame, &message);
        }
        frame.freeze()
    };
    match protocol {
        // A text frame built without `Utf8Bytes`' check: every JSON message
        // comes from our encoder, which writes only UTF-8 (raw `data` is
        // validated once per publication when it is encoded), so checking
        // it again here would cost a pass over every frame per subscriber.
        Protocol::Json => Message::Frame(Frame::message(payload, OpCode::Data(Data::Text), true)),
        Protocol::Protobuf => Message::Binary(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn queue(items: &[&'static str]) -> VecDeque<Bytes> {
        items.iter().map(|s| Bytes::from_static(s.as_bytes())).collect()
    }

    fn payload(message: Message) -> (OpCode, Bytes) {
        match message {
            Message::Frame(frame) => (frame.header().opcode, frame.into_payload()),
            Message::Binary(data) => (OpCode::Data(Data::Binary), data),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_messages_join_with_newlines_as_text_frames() {
        let mut messages = queue(&[r#"{"push":1}"#, r#"{"push":2}"#, r#"{"push":3}"#]);
        let (opcode, data) = payload(into_frame(Protocol::Json, &mut messages, 2));
        assert_eq!(opcode, OpCode::Data(Data::Text));
        assert_eq!(&data[..], b"{\"push\":1}\n{\"push\":2}");
        let (_, data) = payload(into_frame(Protocol::Json, &mut messages, 2));
        assert_eq!(&data[..], b"{\"push\":3}");
        assert!(messages.is_empty());
    }

    #[test]
    fn protobuf_messages_concatenate_length_prefixed() {
        let mut messages: VecDeque<Bytes> =
            [&[2u8, 8, 1][..], &[0], &[1, 7]].iter().map(|m| Bytes::copy_from_slice(m)).collect();
        let (opcode, data) = payload(into_frame(Protocol::Protobuf, &mut messages, usize::MAX));
        assert_eq!(opcode, OpCode::Data(Data::Binary));
        assert_eq!(&data[..], &[2, 8, 1, 0, 1, 7]);
    }

    #[test]
    fn max_messages_reads_as_centrifuge_does() {
        let ms = Duration::from_millis(5);
        assert_eq!(Coalesce::new(ms, 0).max_messages, Some(16));
        assert_eq!(Coalesce::new(ms, -1).max_messages, None);
        assert_eq!(Coalesce::new(ms, -7).max_messages, None);
        assert_eq!(Coalesce::new(ms, 3).max_messages, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn collect_waits_the_delay_for_more_messages() {
        let outbox = Arc::new(Outbox::new(1 << 10));
        let coalesce = Coalesce::new(Duration::from_millis(20), -1);
        outbox.push(Bytes::from_static(b"1"));
        let mut batch = VecDeque::new();
        assert_eq!(outbox.next(&mut batch).await, None);
        let pusher = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                outbox.push(Bytes::from_static(b"2"));
                tokio::time::sleep(Duration::from_millis(30)).await;
                outbox.push(Bytes::from_static(b"3"));
            })
        };
        let started = Instant::now();
        coalesce.collect(&outbox, &mut batch).await;
        assert_eq!(started.elapsed(), Duration::from_millis(20));
        assert_eq!(batch, ["1", "2"], "what came within the delay, not later");
        pusher.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn collect_does_not_wait_without_delay_or_with_a_full_frame() {
        let outbox = Outbox::new(1 << 10);
        let mut batch = queue(&["a", "b"]);
        let started = Instant::now();
        Coalesce::new(Duration::ZERO, -1).collect(&outbox, &mut batch).await;
        Coalesce::new(Duration::from_secs(1), 2).collect(&outbox, &mut batch).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn collect_stops_waiting_on_close_and_keeps_the_messages() {
        let outbox = Outbox::new(1 << 10);
        let coalesce = Coalesce::new(Duration::from_secs(10), -1);
        outbox.push(Bytes::from_static(b"1"));
        let mut batch = VecDeque::new();
        outbox.next(&mut batch).await;
        outbox.push(Bytes::from_static(b"2"));
        outbox.close(Disconnect::SHUTDOWN);
        let started = Instant::now();
        coalesce.collect(&outbox, &mut batch).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(batch, ["1", "2"]);
    }
}
