//! A session whose output is a streaming HTTP response: HTTP-streaming, SSE
//! and their unidirectional forms.
//!
//! As over WebSocket, two tasks: the reader drives the session (the first
//! frame or connect request, then emulation frames, user commands, expiry);
//! the writer drains the outbox into the response body and pings. The body
//! channel holds only a couple of chunks: a client that does not read fills
//! the outbox, which closes it with 3008. When the session ends, a
//! `disconnect` push (unless the client itself went away) is the last thing
//! written, as centrifuge does for its HTTP transports, then the body ends.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, StatusCode};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use warp::reply::{Reply, Response};

use super::emulation::Emulated;
use super::Kind;
use crate::context::AppContext;
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ConnectRequest, Protocol, Push, Reply as ProtocolReply};
use crate::session::{Liveness, Session};
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

/// What the client sent to open the stream.
pub(crate) enum Opening {
    /// A frame of commands (bidirectional transports: the connect command).
    Frame(Bytes),
    /// The connect request of a unidirectional transport.
    Connect(ConnectRequest),
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
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_CHUNKS);
    let tracker = shutdown.tracker().clone();
    tracker.spawn(run(app, shutdown, kind, protocol, framing, opening, tx));
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
) -> Response {
    let mut rx = spawn(app, shutdown, kind, protocol, framing, opening);
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

async fn run(
    app: Arc<AppContext>,
    shutdown: Shutdown,
    kind: Kind,
    protocol: Protocol,
    framing: Framing,
    opening: Opening,
    tx: mpsc::Sender<Bytes>,
) {
    let outbox = Arc::new(Outbox::new(app.config.client_queue_max_size));
    // The session id is the emulation endpoint's only key to the session:
    // a v4 UUID from the OS's random source (122 random bits), as centrifuge.
    let session_id =
        if kind.emulation() || kind.unidirectional() { uuid::Uuid::new_v4().to_string() } else { String::new() };
    let mut session = Session::new(app.clone(), protocol, outbox.clone()).with_transport(kind, session_id.clone());
    let (emulated_tx, emulated_rx) = mpsc::channel(EMULATION_QUEUE);
    let _registration = kind.emulation().then(|| app.emulation.register(session_id, protocol, emulated_tx));
    let gone = tx.clone();
    if framing == Framing::Sse && tx.send(Bytes::from_static(b"\r\n")).await.is_err() {
        return;
    }
    let writer = tokio::spawn(write_loop(tx, outbox.clone(), kind, protocol, framing, session.liveness(), app.clone()));
    read_loop(&mut session, opening, emulated_rx, &gone, &outbox, &app, &shutdown).await;
    drop(gone);
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

async fn read_loop(
    session: &mut Session,
    opening: Opening,
    mut emulated: mpsc::Receiver<Emulated>,
    body: &mpsc::Sender<Bytes>,
    outbox: &Outbox,
    app: &AppContext,
    shutdown: &Shutdown,
) {
    let config = &app.config;
    let Some(mut commands) = session.take_command_receiver() else { return };
    let opened = match opening {
        Opening::Frame(frame) => Box::pin(session.handle_frame(&frame)).await,
        Opening::Connect(request) => Box::pin(session.connect_unidirectional(request)).await,
    };
    if let Err(disconnect) = opened {
        outbox.close(disconnect);
        return;
    }
    let stale_deadline = Instant::now() + config.client_stale_close_delay;
    // The HTTP server waits for responses in flight before the gateway's
    // drain runs, so streams leave (3001) as soon as draining begins,
    // spread over the drain period so that clients do not come back at once.
    let spread = config.drain_period.mul_f64(rand::random::<f64>());
    let drained = async move {
        shutdown.draining().await;
        tokio::time::sleep(spread).await;
    };
    tokio::pin!(drained);
    loop {
        let expiry = session.next_expiry_check().map(super::websocket::deadline_after_unix);
        tokio::select! {
            biased;
            _ = outbox.closing() => return,
            _ = body.closed() => return,
            _ = shutdown.forced() => {
                outbox.close(Disconnect::SHUTDOWN);
                return;
            }
            _ = &mut drained => {
                outbox.close(Disconnect::SHUTDOWN);
                return;
            }
            _ = sleep_until(stale_deadline), if !session.is_connected() => {
                outbox.close(Disconnect::STALE);
                return;
            }
            _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                if let Err(disconnect) = Box::pin(session.enforce_expiry()).await {
                    outbox.close(disconnect);
                    return;
                }
            }
            Some(command) = commands.recv() => {
                if let Err(disconnect) = Box::pin(session.handle_user_command(*command)).await {
                    outbox.close(disconnect);
                    return;
                }
            }
            Some(frame) = emulated.recv() => {
                let result = Box::pin(session.handle_frame(&frame.data)).await;
                // Answered once the commands are handled and their replies
                // queued, as centrifuge answers after HandleReadFrame.
                let _ = frame.taken.send(());
                if let Err(disconnect) = result {
                    outbox.close(disconnect);
                    return;
                }
            }
        }
    }
}

/// Drains the outbox into body chunks, pings, and ends the body with the
/// `disconnect` push.
async fn write_loop(
    body: mpsc::Sender<Bytes>,
    outbox: Arc<Outbox>,
    kind: Kind,
    protocol: Protocol,
    framing: Framing,
    liveness: Arc<Liveness>,
    app: Arc<AppContext>,
) {
    let interval = app.config.ping_interval;
    let pong_timeout = app.config.pong_timeout;
    let expects_pong = !kind.unidirectional();
    let sent = metrics().messages_sent.with_label_values(&[kind.name()]);
    let first = interval / 2 + interval.mul_f64(rand::random::<f64>() / 2.0);
    let ping_timer = sleep_until(Instant::now() + first);
    let pong_timer = sleep_until(Instant::now() + first + pong_timeout);
    tokio::pin!(ping_timer, pong_timer);
    let mut awaiting_pong = false;
    let ping = match protocol {
        Protocol::Json => Bytes::from_static(b"{}"),
        Protocol::Protobuf => Bytes::from_static(&[0]),
    };
    let mut batch = VecDeque::new();
    let reason = loop {
        tokio::select! {
            biased;
            closed = outbox.next(&mut batch) => {
                if let Some(reason) = closed {
                    break reason;
                }
                sent.inc_by(batch.len() as u64);
                let chunk = frame(kind, framing, batch.drain(..));
                tokio::select! {
                    biased;
                    result = timeout(WRITE_TIMEOUT, body.send(chunk)) => match result {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            outbox.close(Disconnect::WRITE_ERROR);
                            return;
                        }
                    },
                    reason = outbox.closing() => break reason,
                }
            }
            _ = &mut ping_timer => {
                let now = Instant::now();
                ping_timer.as_mut().reset(now + interval);
                if liveness.connected.load(Ordering::Relaxed) {
                    if expects_pong {
                        liveness.pong_received.store(false, Ordering::Relaxed);
                        pong_timer.as_mut().reset(now + pong_timeout);
                        awaiting_pong = true;
                    }
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
    if reason == Disconnect::CONNECTION_CLOSED {
        return;
    }
    let push = Push {
        disconnect: Some(crate::protocol::Disconnect {
            code: reason.code as u32,
            reason: reason.reason.into_owned(),
            reconnect: false,
        }),
        ..Default::default()
    };
    let reply = ProtocolReply { push: Some(push), ..Default::default() };
    if let Ok(encoded) = protocol.encode_one(&reply) {
        let chunk = frame(kind, framing, std::iter::once(encoded));
        let _ = timeout(WRITE_TIMEOUT, body.send(chunk)).await;
    }
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
