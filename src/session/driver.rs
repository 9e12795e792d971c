//! The one event loop every transport runs a session with.
//!
//! A transport adapts its framing only: a [`Reader`] turns what the client
//! sends into [`Input`]s (frames of commands, the client going away, a
//! framing error), and a [`Writer`] turns batches of encoded replies and
//! pushes from the [`Outbox`] into its wire format and ends the connection
//! its way (a close frame, a `disconnect` push). Everything else happens
//! here, once: the opening frame or unidirectional connect, user commands
//! from the server API, expiry, the stale timer, server pings and the pong
//! check, drain and forced shutdown, and the close bookkeeping (disconnect
//! metrics, leaving channels). A slow client fills its outbox, which closes
//! it with 3008, as centrifuge's per-client queue does.
//!
//! Two tasks per connection, as centrifuge has a reader and a writer: the
//! reader (the caller's task) runs the session; the writer drains the
//! outbox, so a client that does not read only ever blocks its own writer.
//! Transports whose output is pulled by requests that come and go (SockJS
//! polling) pass no writer and drain the outbox themselves.

use bytes::Bytes;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};

use super::Session;
use crate::context::AppContext;
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ConnectRequest, Protocol};
use crate::shutdown::Shutdown;
use crate::transport::Kind;

/// What a transport read from its client.
pub(crate) enum Input {
    /// A frame of commands.
    Frame(Bytes),
    /// A frame handed over by another request (emulation); `taken` fires
    /// once its commands are handled and their replies queued.
    Handed(Bytes, oneshot::Sender<()>),
    /// The client went away.
    Closed,
    /// The client broke the transport's framing: close with this.
    Refused(Disconnect),
}

/// The client-to-server half of a transport.
pub(crate) trait Reader: Send {
    /// The next input; must be cancel-safe (it races the session's timers).
    fn next(&mut self) -> impl Future<Output = Input> + Send;
}

/// Why a write failed: the client is gone, or must be closed with a code.
pub(crate) type WriteError = Option<Disconnect>;

/// The server-to-client half of a transport.
pub(crate) trait Writer: Send + 'static {
    /// Called with a non-empty batch before it is written; may wait and add
    /// what arrives meanwhile (write coalescing).
    fn gather(&mut self, _outbox: &Outbox, _batch: &mut VecDeque<Bytes>) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Writes every message of `batch` (encoded replies or pushes).
    fn write(&mut self, batch: &mut VecDeque<Bytes>) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Ends the connection for `reason` (what was queued before is written).
    fn close(self, reason: Disconnect) -> impl Future<Output = ()> + Send;
}

/// For transports that drain the outbox themselves: never written to.
pub(crate) struct Pulled;

impl Writer for Pulled {
    async fn write(&mut self, _batch: &mut VecDeque<Bytes>) -> Result<(), WriteError> {
        Ok(())
    }
    async fn close(self, _reason: Disconnect) {}
}

/// What the client sent to open the connection, before any [`Input`].
pub(crate) enum Opening {
    /// A frame of commands (the connect command of HTTP-streaming and SSE).
    Frame(Bytes),
    /// The connect request of a unidirectional transport.
    Connect(ConnectRequest),
}

/// How a connection leaves when the gateway drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drain {
    /// The server closes it (3001) in its drain pass over the hub's clients
    /// (`server::drain`); the connection itself waits only for the forced
    /// shutdown.
    ByServer,
    /// At a random moment within `drain_period` after draining begins: the
    /// HTTP server waits for responses in flight before the gateway's drain
    /// runs, so streaming responses leave on their own, spread out so that
    /// clients do not come back at once.
    Spread,
    /// As soon as draining begins.
    AtOnce,
}

/// One client connection to drive.
pub(crate) struct Client {
    pub(crate) kind: Kind,
    pub(crate) protocol: Protocol,
    /// The `session` the connect reply announces (emulation and
    /// unidirectional transports); empty for none.
    pub(crate) session_id: String,
    /// The request that opened the connection; the headers a proxy forwards
    /// (`proxy_http_headers`) are kept from it.
    pub(crate) headers: http::HeaderMap,
    pub(crate) drain: Drain,
    pub(crate) opening: Option<Opening>,
}

/// Runs a connection to its end: the session over `reader`, the outbox
/// into `writer` (None: the transport drains it), then the close.
pub(crate) async fn run<R: Reader, W: Writer>(
    app: Arc<AppContext>,
    shutdown: &Shutdown,
    client: Client,
    outbox: Arc<Outbox>,
    mut reader: R,
    writer: Option<W>,
) {
    let Client { kind, protocol, session_id, headers, drain, opening } = client;
    let mut session = Session::new(app.clone(), protocol, outbox.clone()).with_transport(kind, session_id);
    session.set_request_headers(&headers);
    drop(headers);
    let sent = metrics().messages_sent.with_label_values(&[kind.name()]);
    let writer = writer.map(|w| tokio::spawn(write_loop(w, outbox.clone(), sent)));
    read_loop(&mut session, opening, &mut reader, &outbox, &app, shutdown, drain).await;
    // The transport's own handles (a body sender, a socket half) go first,
    // so that the writer's end is the connection's end.
    drop(reader);
    // The first reason wins: when the client went away this is a no-op write.
    outbox.close(Disconnect::CONNECTION_CLOSED);
    if let Some(reason) = outbox.close_reason() {
        metrics().disconnects.with_label_values(&[&reason.code.to_string()]).inc();
        if reason == Disconnect::SLOW {
            metrics().slow_disconnects.inc();
        }
    }
    session.close();
    if let Some(writer) = writer {
        let _ = writer.await;
    }
}

/// The reader side: everything that drives the session, until it must close.
async fn read_loop<R: Reader>(
    session: &mut Session,
    opening: Option<Opening>,
    reader: &mut R,
    outbox: &Outbox,
    app: &AppContext,
    shutdown: &Shutdown,
    drain: Drain,
) {
    let config = &app.config;
    let Some(mut commands) = session.take_command_receiver() else { return };
    if let Some(opening) = opening {
        // Boxed, as every command below: rare, large futures would otherwise
        // make every idle connection's task as big.
        let opened = match opening {
            Opening::Frame(frame) => Box::pin(session.handle_frame(&frame)).await,
            Opening::Connect(request) => Box::pin(session.connect_unidirectional(request)).await,
        };
        if let Err(disconnect) = opened {
            outbox.close(disconnect);
            return;
        }
    }
    let stale_deadline = Instant::now() + config.client_stale_close_delay;
    let drained = async move {
        match drain {
            Drain::ByServer => std::future::pending().await,
            Drain::Spread => {
                let spread = config.drain_period.mul_f64(rand::random::<f64>());
                shutdown.draining().await;
                tokio::time::sleep(spread).await;
            }
            Drain::AtOnce => shutdown.draining().await,
        }
    };
    tokio::pin!(drained);
    let liveness = session.liveness();
    let interval = config.ping_interval;
    let pong_timeout = config.pong_timeout;
    // Unidirectional clients cannot answer (centrifuge's sendPing).
    let expects_pong = !session.transport.unidirectional();
    // The first ping is randomised in [interval/2, interval] so that
    // reconnect waves do not ping in step (centrifuge's addPingUpdate).
    let first = interval / 2 + interval.mul_f64(rand::random::<f64>() / 2.0);
    let ping_timer = sleep_until(Instant::now() + first);
    let pong_timer = sleep_until(Instant::now() + first + pong_timeout);
    tokio::pin!(ping_timer, pong_timer);
    let mut awaiting_pong = false;
    let ping = ping_message(session.protocol());
    loop {
        let expiry = session.next_expiry_check().map(deadline_after_unix);
        tokio::select! {
            biased;
            _ = outbox.closing() => return,
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
            input = reader.next() => {
                let result = match input {
                    Input::Frame(frame) => Box::pin(session.handle_frame(&frame)).await,
                    Input::Handed(frame, taken) => {
                        let result = Box::pin(session.handle_frame(&frame)).await;
                        // Answered once the commands are handled and their
                        // replies queued, as centrifuge answers after
                        // HandleReadFrame.
                        let _ = taken.send(());
                        result
                    }
                    Input::Closed => return,
                    Input::Refused(disconnect) => Err(disconnect),
                };
                if let Err(disconnect) = result {
                    outbox.close(disconnect);
                    return;
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
                    return;
                }
            }
        }
    }
}

/// The writer side: drains the outbox into the transport. This runs once
/// per delivery under fan-out, so it keeps per-pass work small (the batch
/// queue is reused).
async fn write_loop<W: Writer>(mut writer: W, outbox: Arc<Outbox>, sent: prometheus::IntCounter) {
    let mut batch = VecDeque::new();
    let reason = loop {
        if let Some(reason) = outbox.next(&mut batch).await {
            break reason;
        }
        // A close asked for during a write delay ends the wait; the next
        // pass writes what is left, then the close.
        writer.gather(&outbox, &mut batch).await;
        sent.inc_by(batch.len() as u64);
        // The write goes first: replies queued just before a close must
        // reach the client. Only a write that cannot finish (a client not
        // reading) is abandoned for the close.
        tokio::select! {
            biased;
            result = writer.write(&mut batch) => {
                if let Err(error) = result {
                    outbox.close(error.unwrap_or(Disconnect::CONNECTION_CLOSED));
                    return;
                }
                batch.clear();
            }
            reason = outbox.closing() => break reason,
        }
    };
    writer.close(reason).await;
}

/// The empty reply Centrifugo uses as a ping: `{}` in JSON, one zero byte
/// (an empty length-prefixed message) in Protobuf. Unidirectional writers
/// turn it into an empty push.
pub(crate) fn ping_message(protocol: Protocol) -> Bytes {
    match protocol {
        Protocol::Json => Bytes::from_static(b"{}"),
        Protocol::Protobuf => Bytes::from_static(&[0]),
    }
}

/// The tokio instant at a Unix time in seconds (never early, so the check
/// it triggers finds the second reached).
pub(crate) fn deadline_after_unix(at: i64) -> Instant {
    let left_ms = (at.saturating_mul(1000) - crate::broker::now_ms() as i64).max(0) as u64;
    Instant::now() + Duration::from_millis(left_ms)
}
