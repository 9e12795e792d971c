//! One SockJS session: the natsgate [`Session`] it drives, and the one
//! receiving request (or WebSocket) at a time that carries its frames.
//!
//! The session outlives the HTTP requests of polling and streaming
//! transports: its task (`drive`) owns the [`Session`] and feeds it what
//! clients send (`xhr_send`, WebSocket messages) through a bounded queue,
//! pings like the WebSocket writer does, and ends the session when no
//! receiving request has been attached for [`DISCONNECT_DELAY`]. Receivers
//! take frames from the session's [`Outbox`], so a slow or absent client
//! fills the outbox and is disconnected with 3008 as over WebSocket.

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

use crate::context::AppContext;
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::Protocol;
use crate::session::Session;
use crate::shutdown::Shutdown;

/// How long a session lives without a receiving request, and how long a
/// closed session keeps answering with its close frame (SockJS servers'
/// usual 5 s, sockjs-go's default that Centrifugo v5 kept).
pub(crate) const DISCONNECT_DELAY: Duration = Duration::from_secs(5);
/// Client messages waiting for the session; a sender waits when it is full.
const INBOUND_QUEUE: usize = 64;
/// The transport label in metrics.
pub(crate) const TRANSPORT: &str = "sockjs";

/// What a receiver writes next.
#[derive(Debug)]
pub(crate) enum Event {
    Open,
    /// Protocol messages, joined by `\n` into one SockJS message.
    Message(String),
    Heartbeat,
    Close(Disconnect),
}

/// The shared half of a session: what requests see.
pub(crate) struct Conn {
    outbox: Arc<Outbox>,
    inbound: mpsc::Sender<Bytes>,
    receiver: Mutex<ReceiverState>,
    opened: AtomicBool,
}

struct ReceiverState {
    attached: bool,
    detached_at: Instant,
}

impl Conn {
    /// Starts a session and its task; the task holds a connection-tracker
    /// token so that drain and `client_connection_limit` count it. `on_end`
    /// runs when the session has ended and [`DISCONNECT_DELAY`] has passed
    /// (the registry forgets it then).
    pub(crate) fn start(
        app: Arc<AppContext>,
        shutdown: Shutdown,
        on_end: impl FnOnce() + Send + 'static,
        linger: bool,
    ) -> Arc<Conn> {
        let outbox = Arc::new(Outbox::new(app.config.client_queue_max_size));
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let conn = Arc::new(Conn {
            outbox: outbox.clone(),
            inbound,
            receiver: Mutex::new(ReceiverState { attached: false, detached_at: Instant::now() }),
            opened: AtomicBool::new(false),
        });
        let mut session = Session::new(app.clone(), Protocol::Json, outbox);
        session.set_transport(crate::transport::Kind::SockJs);
        let token = shutdown.tracker().token();
        let driver = conn.clone();
        tokio::spawn(async move {
            drive(&driver, &mut session, inbound_rx, &app, &shutdown).await;
            driver.outbox.close(Disconnect::CONNECTION_CLOSED);
            if let Some(reason) = driver.outbox.close_reason() {
                metrics().disconnects.with_label_values(&[&reason.code.to_string()]).inc();
                if reason == Disconnect::SLOW {
                    metrics().slow_disconnects.inc();
                }
            }
            session.close();
            drop(token);
            if linger {
                // Late polls still get the close frame meanwhile.
                sleep(DISCONNECT_DELAY).await;
            }
            on_end();
        });
        conn
    }

    /// Queues client messages for the session, waiting while the queue is
    /// full (a client that floods waits for its own requests). False once
    /// the session has ended.
    pub(crate) async fn deliver(&self, messages: Vec<Bytes>) -> bool {
        for message in messages {
            if self.inbound.send(message).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Attaches a receiving request; None while another is attached.
    pub(crate) fn attach(self: &Arc<Self>) -> Option<Receiver> {
        let mut state = self.receiver.lock();
        if state.attached {
            return None;
        }
        state.attached = true;
        Some(Receiver { conn: self.clone(), batch: VecDeque::new() })
    }

    /// Ends the session (the client closed its WebSocket).
    pub(crate) fn close(&self, reason: Disconnect) {
        self.outbox.close(reason);
    }

    fn receiver_gone_for(&self, delay: Duration) -> bool {
        let state = self.receiver.lock();
        !state.attached && state.detached_at.elapsed() >= delay
    }
}

/// The receiving request attached to a session; detaches when dropped.
pub(crate) struct Receiver {
    conn: Arc<Conn>,
    batch: VecDeque<Bytes>,
}

impl Receiver {
    /// The next frame to write: the open frame on a new session, queued
    /// messages, a heartbeat after `heartbeat` of silence, or the close.
    pub(crate) async fn next(&mut self, heartbeat: Option<Duration>) -> Event {
        if !self.conn.opened.swap(true, Ordering::Relaxed) {
            return Event::Open;
        }
        let beat = async {
            match heartbeat {
                Some(delay) => sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            closed = self.conn.outbox.next(&mut self.batch) => match closed {
                Some(reason) => Event::Close(reason),
                None => {
                    metrics().messages_sent.with_label_values(&[TRANSPORT]).inc_by(self.batch.len() as u64);
                    let mut joined = BytesMut::new();
                    for message in self.batch.drain(..) {
                        Protocol::Json.join_into(&mut joined, &message);
                    }
                    Event::Message(String::from_utf8_lossy(&joined).into_owned())
                }
            },
            _ = beat => Event::Heartbeat,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.conn.receiver.lock();
        state.attached = false;
        state.detached_at = Instant::now();
    }
}

/// Runs the session until it closes: client messages, user commands,
/// expiry, pings, and the receiver timeout.
async fn drive(
    conn: &Conn,
    session: &mut Session,
    mut inbound: mpsc::Receiver<Bytes>,
    app: &AppContext,
    shutdown: &Shutdown,
) {
    let config = &app.config;
    let outbox = &conn.outbox;
    let Some(mut commands) = session.take_command_receiver() else { return };
    let stale_deadline = Instant::now() + config.client_stale_close_delay;
    let liveness = session.liveness();
    let interval = config.ping_interval;
    let ping_timer = sleep_until(Instant::now() + interval);
    let pong_timer = sleep_until(Instant::now() + interval + config.pong_timeout);
    tokio::pin!(ping_timer, pong_timer);
    let mut awaiting_pong = false;
    let mut receiver_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let expiry = session.next_expiry_check().map(super::super::websocket::deadline_after_unix);
        tokio::select! {
            biased;
            _ = outbox.closing() => return,
            // HTTP keeps draining until every response ends, and streaming
            // responses end only with their session: close at once, with 3001.
            _ = shutdown.draining() => {
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
            Some(message) = inbound.recv() => {
                if let Err(disconnect) = Box::pin(session.handle_frame(&message)).await {
                    outbox.close(disconnect);
                    return;
                }
            }
            _ = &mut ping_timer => {
                let now = Instant::now();
                ping_timer.as_mut().reset(now + interval);
                if liveness.connected.load(Ordering::Relaxed) {
                    liveness.pong_received.store(false, Ordering::Relaxed);
                    pong_timer.as_mut().reset(now + config.pong_timeout);
                    awaiting_pong = true;
                    outbox.push(Bytes::from_static(b"{}"));
                }
            }
            _ = &mut pong_timer, if awaiting_pong => {
                awaiting_pong = false;
                if !liveness.pong_received.load(Ordering::Relaxed) {
                    outbox.close(Disconnect::NO_PONG);
                    return;
                }
            }
            _ = receiver_check.tick() => {
                if conn.receiver_gone_for(DISCONNECT_DELAY) {
                    outbox.close(Disconnect::CONNECTION_CLOSED);
                    return;
                }
            }
        }
    }
}
