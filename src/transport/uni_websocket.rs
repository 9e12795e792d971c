//! Unidirectional WebSocket at `/connection/uni_websocket`
//! (`NATSGATE_UNI_WEBSOCKET`), as Centrifugo's `uniws` handler: the connect
//! request (JSON `ConnectRequest`) comes in the `cf_connect` query parameter
//! or as the first message (at most `uni_websocket_message_size_limit`);
//! then the server sends one bare push per text frame (see [`super::uni`]),
//! and at the end the `disconnect` push followed by a close frame with its
//! code. Messages from the client after the connect are read and ignored.
//! A malformed connect request is answered 400 before the upgrade (query)
//! or with close code 3501 (first message). The origin is checked as for
//! `/connection/websocket`.

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use warp::reply::Response;
use warp::Filter;

use super::sse::{only_if, query, CONNECT_PARAM};
use super::{cors, stream, uni, Kind};
use crate::context::AppContext;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ConnectRequest, Protocol};
use crate::session::driver::{self, Client, Drain, Input, Opening, Reader, WriteError, Writer};
use crate::shutdown::Shutdown;

/// How long the client may take to send its connect request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one frame may take to reach the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The warp route (rejects with 404 when the transport is off).
pub(crate) fn route(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("connection" / "uni_websocket")
        .and(only_if(app.config.uni_websocket))
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(query())
        .and(warp::ext::optional::<OnUpgrade>())
        .map(move |headers: HeaderMap, query: HashMap<String, String>, on_upgrade: Option<OnUpgrade>| {
            upgrade(app.clone(), shutdown.clone(), &headers, &query, on_upgrade)
        })
}

fn upgrade(
    app: Arc<AppContext>,
    shutdown: Shutdown,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    on_upgrade: Option<OnUpgrade>,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_upgrade = header("upgrade").eq_ignore_ascii_case("websocket")
        && header("connection").to_ascii_lowercase().contains("upgrade");
    let key = header("sec-websocket-key");
    let Some(on_upgrade) = on_upgrade.filter(|_| is_upgrade && !key.is_empty()) else {
        return cors::status(StatusCode::BAD_REQUEST);
    };
    if let Err(status) = stream::admit(&app, &shutdown) {
        return cors::status(status);
    }
    if !app.config.allowed_origins.allows(headers) {
        return cors::status(StatusCode::FORBIDDEN);
    }
    let request = match query.get(CONNECT_PARAM).filter(|c| !c.is_empty()) {
        Some(connect) => match uni::parse_connect(connect.as_bytes()) {
            Ok(request) => Some(request),
            Err(status) => return cors::status(status),
        },
        None => None,
    };
    let mut response = cors::status(StatusCode::SWITCHING_PROTOCOLS);
    let h = response.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", accept);
    }
    let tracker = shutdown.tracker().clone();
    let headers = headers.clone();
    tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let limit = app.config.uni_websocket_message_size_limit;
                let config = WebSocketConfig::default()
                    .read_buffer_size(1024)
                    .write_buffer_size(0)
                    .max_message_size(Some(limit))
                    .max_frame_size(Some(limit));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                serve(ws, app, shutdown, request, headers).await;
            }
            Err(e) => tracing::debug!("uni_websocket upgrade failed: {e}"),
        }
    });
    response
}

async fn serve<S>(
    ws: WebSocketStream<S>,
    app: Arc<AppContext>,
    shutdown: Shutdown,
    request: Option<ConnectRequest>,
    headers: HeaderMap,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let request = match request {
        Some(request) => request,
        None => {
            let first = timeout(CONNECT_TIMEOUT, incoming.next()).await;
            let parsed = match first {
                Ok(Some(Ok(Message::Text(text)))) => uni::parse_connect(text.as_bytes()).ok(),
                Ok(Some(Ok(Message::Binary(data)))) => uni::parse_connect(&data).ok(),
                _ => None,
            };
            match parsed {
                Some(request) => request,
                None => {
                    let _ = timeout(WRITE_TIMEOUT, sink.send(close(&Disconnect::BAD_REQUEST))).await;
                    return;
                }
            }
        }
    };
    let outbox = Arc::new(Outbox::new(app.config.client_queue_max_size));
    let client = Client {
        kind: Kind::UniWebSocket,
        protocol: Protocol::Json,
        session_id: uuid::Uuid::new_v4().to_string(),
        headers,
        drain: Drain::Spread,
        opening: Some(Opening::Connect(request)),
    };
    driver::run(app, &shutdown, client, outbox, Ignored { incoming }, Some(PushWriter { sink })).await;
}

/// Client messages after the connect are read and ignored; reading them
/// notices the close.
struct Ignored<S> {
    incoming: SplitStream<WebSocketStream<S>>,
}

impl<S> Reader for Ignored<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    async fn next(&mut self) -> Input {
        while let Some(Ok(_)) = self.incoming.next().await {}
        Input::Closed
    }
}

/// One bare push per text frame; at the end the `disconnect` push and a
/// close frame with its code.
struct PushWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
}

impl<S> PushWriter<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    async fn send(&mut self, message: &[u8]) -> Result<(), WriteError> {
        for line in message.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let push = stream::unwrap_json_push(line);
            let Ok(text) = Utf8Bytes::try_from(Bytes::copy_from_slice(push)) else { continue };
            if !matches!(timeout(WRITE_TIMEOUT, self.sink.send(Message::Text(text))).await, Ok(Ok(()))) {
                return Err(None);
            }
        }
        Ok(())
    }
}

impl<S> Writer for PushWriter<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    async fn write(&mut self, batch: &mut VecDeque<Bytes>) -> Result<(), WriteError> {
        for message in batch.drain(..) {
            self.send(&message).await?;
        }
        Ok(())
    }

    async fn close(mut self, reason: Disconnect) {
        if reason == Disconnect::CONNECTION_CLOSED {
            return;
        }
        if let Some(push) = stream::disconnect_push(Protocol::Json, &reason) {
            if self.send(&push).await.is_ok() {
                let _ = timeout(WRITE_TIMEOUT, self.sink.send(close(&reason))).await;
            }
        }
    }
}

fn close(disconnect: &Disconnect) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(disconnect.code),
        reason: Utf8Bytes::from(disconnect.reason.to_string()),
    }))
}
