//! One SockJS session: the natsgate session it drives, and the one
//! receiving request (or WebSocket) at a time that carries its frames.
//!
//! The session outlives the HTTP requests of polling and streaming
//! transports: its task runs the session driver
//! ([`crate::session::driver`]) with what clients send (`xhr_send`,
//! WebSocket messages) through a bounded queue, and ends the session when no
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
use tokio::time::{interval, sleep, Instant};

use crate::context::AppContext;
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::Protocol;
use crate::session::driver::{self, Client, Drain, Input, Pulled, Reader};
use crate::shutdown::Shutdown;
use ::http::HeaderMap;

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
        headers: HeaderMap,
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
        let client = Client {
            kind: crate::transport::Kind::SockJs,
            protocol: Protocol::Json,
            session_id: String::new(),
            headers,
            // HTTP keeps draining until every response ends, and streaming
            // responses end only with their session: close at once, with 3001.
            drain: Drain::AtOnce,
            opening: None,
        };
        let token = shutdown.tracker().token();
        let reader = Inbound { conn: conn.clone(), messages: inbound_rx, check: interval(Duration::from_secs(1)) };
        tokio::spawn(async move {
            driver::run(app, &shutdown, client, outbox, reader, None::<Pulled>).await;
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

/// Client messages for the driver; the client is gone when no receiving
/// request has been attached for [`DISCONNECT_DELAY`].
struct Inbound {
    conn: Arc<Conn>,
    messages: mpsc::Receiver<Bytes>,
    check: tokio::time::Interval,
}

impl Reader for Inbound {
    async fn next(&mut self) -> Input {
        loop {
            tokio::select! {
                biased;
                Some(message) = self.messages.recv() => return Input::Frame(message),
                _ = self.check.tick() => {
                    if self.conn.receiver_gone_for(DISCONNECT_DELAY) {
                        return Input::Closed;
                    }
                }
            }
        }
    }
}
