//! SockJS over WebSocket: framed (`<server>/<session>/websocket`, frames
//! as on the HTTP transports, client messages as JSON arrays of strings)
//! and raw (`/connection/sockjs/websocket`, one protocol frame per text
//! message, disconnects as WebSocket close frames). Each connection is its
//! own session; none is registered, since no other request can name it.

use ::http::{HeaderValue, StatusCode};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::conn::{Conn, Event};
use super::frame;
use super::{Request, Sockjs};
use crate::protocol::codes::Disconnect;

/// How long a close may take to reach a client that reads slowly.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Sent when a client message exceeds `websocket_message_size_limit`.
const MESSAGE_TOO_BIG: Disconnect = Disconnect { code: 1009, reason: std::borrow::Cow::Borrowed("message too big") };

/// Answers the upgrade and serves the connection on hyper's upgraded stream.
pub(super) fn upgrade(sockjs: Arc<Sockjs>, request: Request, raw: bool) -> warp::reply::Response {
    let text = |status: StatusCode, body: &'static str| {
        let mut reply = warp::reply::Response::new(body.into());
        *reply.status_mut() = status;
        reply
    };
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_upgrade = header("upgrade").eq_ignore_ascii_case("websocket")
        && header("connection").to_ascii_lowercase().contains("upgrade");
    let key = header("sec-websocket-key").to_string();
    let Some(on_upgrade) = request.upgrade.filter(|_| is_upgrade && !key.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Can \"Upgrade\" only to \"WebSocket\".");
    };
    if !sockjs.app.config.allowed_origins.allows(&request.headers) {
        return text(StatusCode::FORBIDDEN, "origin not allowed");
    }
    if sockjs.shutdown.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let limit = sockjs.app.config.client_connection_limit;
    if limit > 0 && sockjs.shutdown.tracker().len() >= limit {
        return text(StatusCode::SERVICE_UNAVAILABLE, "connection limit reached");
    }
    let mut reply = text(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = reply.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", accept);
    }
    let headers = request.headers;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let limit = sockjs.app.config.websocket_message_size_limit;
                // Framed messages are JSON strings: escaping may double them.
                let wire_limit = if raw { limit } else { limit * 2 + 16 };
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0)
                    .max_write_buffer_size(sockjs.app.config.client_queue_max_size * 2 + 65536)
                    .max_message_size(Some(wire_limit))
                    .max_frame_size(Some(wire_limit));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                serve(ws, &sockjs, raw, limit, headers).await;
            }
            Err(e) => tracing::debug!("sockjs websocket upgrade failed: {e}"),
        }
    });
    reply
}

async fn serve<S>(ws: WebSocketStream<S>, sockjs: &Sockjs, raw: bool, limit: usize, headers: ::http::HeaderMap)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Conn::start(sockjs.app.clone(), sockjs.shutdown.clone(), headers, || {}, false);
    let Some(mut receiver) = conn.attach() else { return };
    let (mut sink, mut stream) = ws.split();
    let reader_conn = conn.clone();
    let reader = tokio::spawn(async move {
        let conn = reader_conn;
        while let Some(message) = stream.next().await {
            let text = match message {
                Ok(Message::Text(text)) => text,
                Ok(Message::Binary(_)) => {
                    conn.close(Disconnect::BAD_REQUEST);
                    return;
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(WsError::Capacity(_)) => {
                    conn.close(MESSAGE_TOO_BIG);
                    return;
                }
                Err(e) => {
                    tracing::debug!("sockjs websocket read: {e}");
                    break;
                }
            };
            let messages = if raw {
                vec![text.as_str().to_string()]
            } else {
                match frame::parse_messages(text.as_bytes()) {
                    Ok(messages) => messages,
                    // An empty message is nothing to deliver.
                    Err(frame::PayloadError::Empty) => continue,
                    Err(frame::PayloadError::Broken) => {
                        conn.close(Disconnect::BAD_REQUEST);
                        return;
                    }
                }
            };
            if messages.iter().any(|m| m.len() > limit) {
                conn.close(MESSAGE_TOO_BIG);
                return;
            }
            if !conn.deliver(messages.into_iter().map(Bytes::from).collect()).await {
                return;
            }
        }
        conn.close(Disconnect::CONNECTION_CLOSED);
    });
    let heartbeat = {
        let delay = sockjs.app.config.sockjs_heartbeat_delay;
        (!raw && !delay.is_zero()).then_some(delay)
    };
    let reason = loop {
        let out = match receiver.next(heartbeat).await {
            Event::Close(reason) => break reason,
            Event::Open if raw => continue,
            Event::Heartbeat if raw => continue,
            Event::Message(message) if raw => message,
            Event::Open => frame::OPEN.to_string(),
            Event::Heartbeat => frame::HEARTBEAT.to_string(),
            Event::Message(message) => frame::message_frame(&message),
        };
        if sink.send(Message::Text(Utf8Bytes::from(out))).await.is_err() {
            conn.close(Disconnect::CONNECTION_CLOSED);
            break Disconnect::CONNECTION_CLOSED;
        }
    };
    let _ = timeout(CLOSE_WRITE_TIMEOUT, async {
        if raw {
            let close =
                CloseFrame { code: CloseCode::from(reason.code), reason: Utf8Bytes::from(reason.reason.into_owned()) };
            let _ = sink.send(Message::Close(Some(close))).await;
        } else {
            // SockJS closes with its own frame, then a normal WebSocket close.
            let _ = sink.send(Message::Text(Utf8Bytes::from(frame::close_frame(reason.code, &reason.reason)))).await;
            let close = CloseFrame { code: CloseCode::Normal, reason: Utf8Bytes::from_static("") };
            let _ = sink.send(Message::Close(Some(close))).await;
        }
        let _ = sink.close().await;
    })
    .await;
    reader.abort();
}
