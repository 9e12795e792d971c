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
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
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
use super::stream::{self, Framing, Opening};
use super::{cors, uni, Kind};
use crate::context::AppContext;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ConnectRequest, Protocol};
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
                serve(ws, app, shutdown, request).await;
            }
            Err(e) => tracing::debug!("uni_websocket upgrade failed: {e}"),
        }
    });
    response
}

async fn serve<S>(ws: WebSocketStream<S>, app: Arc<AppContext>, shutdown: Shutdown, request: Option<ConnectRequest>)
where
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
    let mut output =
        stream::spawn(app, shutdown, Kind::UniWebSocket, Protocol::Json, Framing::Lines, Opening::Connect(request));
    // Client messages are ignored; reading them notices the close.
    loop {
        tokio::select! {
            chunk = output.recv() => {
                let Some(chunk) = chunk else { break };
                for line in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let disconnect = disconnect_of(line);
                    let Ok(text) = Utf8Bytes::try_from(Bytes::copy_from_slice(line)) else { continue };
                    if !matches!(timeout(WRITE_TIMEOUT, sink.send(Message::Text(text))).await, Ok(Ok(()))) {
                        return;
                    }
                    if let Some(disconnect) = disconnect {
                        let _ = timeout(WRITE_TIMEOUT, sink.send(close(&disconnect))).await;
                        return;
                    }
                }
            }
            message = incoming.next() => {
                if !matches!(message, Some(Ok(_))) {
                    // Dropping the receiver ends the session.
                    return;
                }
            }
        }
    }
}

/// The code and reason of a `{"disconnect":{..}}` push.
fn disconnect_of(line: &[u8]) -> Option<Disconnect> {
    if !line.starts_with(b"{\"disconnect\":") {
        return None;
    }
    let push: crate::protocol::Push = serde_json::from_slice(line).ok()?;
    let d = push.disconnect?;
    Some(Disconnect::custom(d.code as u16, &d.reason))
}

fn close(disconnect: &Disconnect) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(disconnect.code),
        reason: Utf8Bytes::from(disconnect.reason.to_string()),
    }))
}
