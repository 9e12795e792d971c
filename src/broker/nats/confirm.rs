//! Group commit: one NATS round trip confirms every publication written
//! before it, however many requests are waiting, and never confirms one
//! that a reconnect may have lost.
//!
//! async-nats' `publish` returns once the message is queued for the
//! connection's writer; a request to the gateway's own echo subject, queued
//! after it, is answered only once nats-server has processed everything the
//! connection sent before (a connection's protocol is handled in order). So
//! one echo request answers for all publications queued before it: waiters
//! gather into a batch, one echo request is sent per batch, and up to
//! [`PIPELINE`] round trips are in flight at once, so under load a batch
//! does not wait for the previous round trip before its own is sent.
//!
//! A reconnect breaks that reasoning: what sat in the old connection's
//! buffers is gone, while an echo sent on the new connection is answered.
//! Each waiter therefore carries the connection generation (async-nats'
//! count of successful connects) read before its publication was queued; a
//! confirmation is good only if the generation is unchanged once the echo is
//! answered, and a disconnect seen meanwhile fails the round trip at once.

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

use super::AbortOnDrop;
use crate::broker::BrokerError;

/// How long a round trip may take before its waiters get an error.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Most waiters queued; past it `confirm` waits for room (backpressure).
const QUEUE: usize = 65_536;
/// Most waiters one round trip answers.
const BATCH: usize = 4096;
/// Most round trips in flight at once.
const PIPELINE: usize = 4;

/// One publication (or subscription) waiting for its round trip.
struct Waiter {
    /// The connection generation its message was queued on; `None` for a
    /// SUB, which async-nats sends again on a new connection by itself.
    generation: Option<u64>,
    done: oneshot::Sender<Result<(), BrokerError>>,
}

/// The group-commit queue and the task that serves it.
pub(super) struct Confirmer {
    queue: mpsc::Sender<Waiter>,
    stats: Arc<async_nats::Statistics>,
    _task: AbortOnDrop,
}

impl Confirmer {
    /// Serves confirmations for `client` with requests to `echo` (a subject
    /// the gateway answers itself). `disconnects` changes on every
    /// disconnect the connection's events report.
    pub(super) fn start(client: async_nats::Client, echo: String, disconnects: watch::Receiver<u64>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let stats = client.statistics();
        let task = AbortOnDrop(tokio::spawn(serve(client, echo, waiting, disconnects, stats.clone())));
        Confirmer { queue, stats, _task: task }
    }

    /// The current connection generation, or an error while disconnected
    /// (so a publication is refused rather than buffered for a later
    /// connection that may never carry it).
    pub(super) fn generation(&self, client: &async_nats::Client) -> Result<u64, BrokerError> {
        // Read before the state: a connect counted after this read makes
        // the confirmation fail, never succeed wrongly.
        let generation = self.stats.connects.load(Ordering::Acquire);
        match client.connection_state() {
            async_nats::connection::State::Connected => Ok(generation),
            _ => Err(BrokerError::Unavailable("not connected to NATS".into())),
        }
    }

    /// Waits until nats-server has processed everything this gateway queued
    /// before the call. With `generation` (see [`Self::generation`], read
    /// before queuing the message), fails if the connection changed since.
    pub(super) async fn confirm(&self, generation: Option<u64>) -> Result<(), BrokerError> {
        let (done, outcome) = oneshot::channel();
        self.queue.send(Waiter { generation, done }).await.map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }
}

fn closed() -> BrokerError {
    BrokerError::Unavailable("NATS confirmation task ended".into())
}

async fn serve(
    client: async_nats::Client,
    echo: String,
    mut waiting: mpsc::Receiver<Waiter>,
    disconnects: watch::Receiver<u64>,
    stats: Arc<async_nats::Statistics>,
) {
    // Round trips in flight, each answering for the batch gathered before
    // it was sent. Several may be in flight, so a publication waits for one
    // round trip (the one sent after it), not for the one already in flight
    // plus its own.
    let mut in_flight = FuturesUnordered::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            // Every waiter received here queued its message before being
            // queued itself, so before the echo request sent for its batch.
            received = waiting.recv_many(&mut batch, BATCH), if in_flight.len() < PIPELINE => {
                if received == 0 {
                    break;
                }
                let waiters = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                in_flight.push(round_trip(client.clone(), echo.clone(), waiters, disconnects.clone(), stats.clone()));
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Sends one echo request and answers `batch` with its outcome.
async fn round_trip(
    client: async_nats::Client,
    echo: String,
    mut batch: Vec<Waiter>,
    mut disconnects: watch::Receiver<u64>,
    stats: Arc<async_nats::Statistics>,
) {
    disconnects.borrow_and_update();
    // A disconnect reported before the line above: do not wait for the
    // next connection to answer (its answer could not confirm anyway).
    let connected = client.connection_state() == async_nats::connection::State::Connected;
    let lost = async {
        if !connected {
            return;
        }
        if disconnects.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let outcome: Result<(), String> = tokio::select! {
        answer = tokio::time::timeout(CONFIRM_TIMEOUT, client.request(echo, Bytes::new())) => {
            match answer {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("NATS round trip failed: {e}")),
                Err(_) => Err("NATS round trip timed out".into()),
            }
        }
        _ = lost => Err("disconnected from NATS before the publication was confirmed".into()),
    };
    let now = stats.connects.load(Ordering::Acquire);
    for waiter in batch.drain(..) {
        let result = match (&outcome, waiter.generation) {
            (Err(e), _) => Err(BrokerError::Unavailable(e.clone())),
            (Ok(()), Some(generation)) if generation != now => {
                Err(BrokerError::Unavailable("reconnected to NATS before the publication was confirmed".into()))
            }
            (Ok(()), _) => Ok(()),
        };
        let _ = waiter.done.send(result);
    }
}
