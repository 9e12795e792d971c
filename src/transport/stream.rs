//! A session whose output is a streaming HTTP response: HTTP-streaming, SSE
//! and their unidirectional forms.
//!
//! Runs on the session driver ([`crate::session::driver`]), which reads the
//! first frame or connect request, then emulation frames; this module only
//! writes the outbox into the response body. The body
//! channel holds only a couple of chunks: a client that does not read fills
//! the outbox, which closes it with 3008. When the session ends, a
//! `disconnect` push (unless the client itself went away) is the last thing
//! written, as centrifuge does for its HTTP transports, then the body ends.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;
use warp::reply::{Reply, Response};

use super::emulation::Emulated;
use super::Kind;
use crate::context::AppContext;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::{Protocol, Push, Reply as ProtocolReply};
pub(crate) use crate::session::driver::Opening;
use crate::session::driver::{self, Client, Drain, Input, Reader, WriteError, Writer};
use crate::shutdown::Shutdown;

/// Chunks the body holds before the writer waits for the client.
const BODY_CHUNKS: usize = 2;
/// How long one chunk may take to reach the client (centrifuge's
/// `streamingResponseWriteTimeout` is 1 s; queued bytes are bounded by the
/// outbox, so a little more patience costs nothing).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Emulation frames a session may have waiting; senders wait for room.
const EMULATION_QUEUE: usize = 16;

/// How messages are written into the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One JSON message per line (`\n` after each).
    Lines,
    /// Varint-length-delimited Protobuf messages.
    Protobuf,
    /// One `data: <json>\n\n` event per message, after an opening `\r\n`.
    Sse,
}

/// Refuses a new connection while draining or at the connection limit,
/// as the WebSocket upgrade does (503: SDKs retry later).
pub(crate) fn admit(app: &AppContext, shutdown: &Shutdown) -> Result<(), StatusCode> {
    if shutdown.is_draining() {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let limit = app.config.client_connection_limit;
    if limit > 0 && shutdown.tracker().len() >= limit {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(())
}

/// Starts the session; its output arrives as chunks on the returned
/// receiver, which ends with the session.
pub(crate) fn spawn(
    app: Arc<AppContext>,
    shutdown: Shutdown,
    kind: Kind,
    protocol: Protocol,
    framing: Framing,
    opening: Opening,
    headers: HeaderMap,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_CHUNKS);
    let tracker = shutdown.tracker().clone();
    let opened = Opened { kind, protocol, framing, opening, headers };
    tracker.spawn(run(app, shutdown, opened, tx));
    rx
}

/// Starts the session and returns the streaming response (200, with
/// centrifuge's no-cache headers and the content type of `framing`).
pub(crate) fn start(
    app: Arc<AppContext>,
    shutdown: Shutdown,
    kind: Kind,
    protocol: Protocol,
    framing: Framing,
    opening: Opening,
    headers: HeaderMap,
) -> Response {
    let mut rx = spawn(app, shutdown, kind, protocol, framing, opening, headers);
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok::<Bytes, Infallible>)));
    let mut response = warp::reply::stream(body).into_response();
    let h = response.headers_mut();
    let content_type = match framing {
        Framing::Lines => "application/json",
        Framing::Protobuf => "application/octet-stream",
        Framing::Sse => "text/event-stream; charset=utf-8",
    };
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert("cache-control", HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    h.insert("expire", HeaderValue::from_static("0"));
    response
}

/// A stream's request, as the session needs it.
struct Opened {
    kind: Kind,
    protocol: Protocol,
    framing: Framing,
    opening: Opening,
    headers: HeaderMap,
}

async fn run(app: Arc<AppContext>, shutdown: Shutdown, opened: Opened, tx: mpsc::Sender<Bytes>) {
    let Opened { kind, protocol, framing, opening, headers } = opened;
    let outbox = Arc::new(Outbox::new(app.config.client_queue_max_size));
    // The session id is the emulation endpoint's only key to the session:
    // a v4 UUID from the OS's random source (122 random bits), as centrifuge.
    let session_id =
        if kind.emulation() || kind.unidirectional() { uuid::Uuid::new_v4().to_string() } else { String::new() };
    let (emulated_tx, emulated) = mpsc::channel(EMULATION_QUEUE);
    let _registration = kind.emulation().then(|| app.emulation.register(session_id.clone(), protocol, emulated_tx));
    if framing == Framing::Sse && tx.send(Bytes::from_static(b"\r\n")).await.is_err() {
        return;
    }
    let client = Client { kind, protocol, session_id, headers, drain: Drain::Spread, opening: Some(opening) };
    let reader = BodyReader { emulated: Some(emulated), body: tx.clone() };
    let writer = BodyWriter { body: tx, kind, protocol, framing };
    driver::run(app.clone(), &shutdown, client, outbox, reader, Some(writer)).await;
}

/// Emulation frames for the session; the client is gone when the body is.
struct BodyReader {
    emulated: Option<mpsc::Receiver<Emulated>>,
    body: mpsc::Sender<Bytes>,
}

impl Reader for BodyReader {
    async fn next(&mut self) -> Input {
        let emulated = async {
            match self.emulated.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.body.closed() => Input::Closed,
            frame = emulated => match frame {
                Some(frame) => Input::Handed(frame.data, frame.taken),
                // The registration is gone: only the body's end remains.
                None => {
                    self.emulated = None;
                    self.body.closed().await;
                    Input::Closed
                }
            },
        }
    }
}

/// Body chunks out; the body ends with the `disconnect` push.
struct BodyWriter {
    body: mpsc::Sender<Bytes>,
    kind: Kind,
    protocol: Protocol,
    framing: Framing,
}

impl Writer for BodyWriter {
    async fn write(&mut self, batch: &mut VecDeque<Bytes>) -> Result<(), WriteError> {
        let chunk = frame(self.kind, self.framing, batch.drain(..));
        match timeout(WRITE_TIMEOUT, self.body.send(chunk)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => Err(Some(Disconnect::WRITE_ERROR)),
        }
    }

    async fn close(self, reason: Disconnect) {
        if reason == Disconnect::CONNECTION_CLOSED {
            return;
        }
        if let Some(encoded) = disconnect_push(self.protocol, &reason) {
            let chunk = frame(self.kind, self.framing, std::iter::once(encoded));
            let _ = timeout(WRITE_TIMEOUT, self.body.send(chunk)).await;
        }
    }
}

/// The `disconnect` push a streaming transport ends with, as centrifuge
/// writes it before closing (its `close`: not for connection closed).
pub(crate) fn disconnect_push(protocol: Protocol, reason: &Disconnect) -> Option<Bytes> {
    let push = Push {
        disconnect: Some(crate::protocol::Disconnect {
            code: reason.code as u32,
            reason: reason.reason.to_string(),
            reconnect: false,
        }),
        ..Default::default()
    };
    let reply = ProtocolReply { push: Some(push), ..Default::default() };
    protocol.encode_one(&reply).ok()
}

/// Writes messages (each an encoded reply, or JSON replies joined by `\n`)
/// as one body chunk. Unidirectional clients get the bare push of each
/// reply, as centrifuge encodes for them.
fn frame(kind: Kind, framing: Framing, messages: impl Iterator<Item = Bytes>) -> Bytes {
    let mut out = BytesMut::new();
    for message in messages {
        match framing {
            Framing::Protobuf => {
                if kind.unidirectional() {
                    unwrap_protobuf_push(&message, &mut out);
                } else {
                    out.extend_from_slice(&message);
                }
            }
            Framing::Lines | Framing::Sse => {
                for line in message.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let line = if kind.unidirectional() { unwrap_json_push(line) } else { line };
                    if framing == Framing::Sse {
                        out.put_slice(b"data: ");
                        out.put_slice(line);
                        out.put_slice(b"\n\n");
                    } else {
                        out.put_slice(line);
                        out.put_u8(b'\n');
                    }
                }
            }
        }
    }
    out.freeze()
}

/// `{"push":P}` -> `P`; anything else (the `{}` ping) as it is.
pub(crate) fn unwrap_json_push(line: &[u8]) -> &[u8] {
    const PREFIX: &[u8] = b"{\"push\":";
    if line.starts_with(PREFIX) && line.ends_with(b"}") && line.len() > PREFIX.len() + 1 {
        &line[PREFIX.len()..line.len() - 1]
    } else {
        line
    }
}

/// Length-delimited Protobuf `Reply`s -> the length-delimited `Push` each
/// carries (an empty reply, the ping, becomes an empty push).
pub(crate) fn unwrap_protobuf_push(mut message: &[u8], out: &mut BytesMut) {
    use prost::Message;
    while !message.is_empty() {
        let Ok(reply) = ProtocolReply::decode_length_delimited(&mut message) else { return };
        let _ = reply.push.unwrap_or_default().encode_length_delimited(out);
    }
}
