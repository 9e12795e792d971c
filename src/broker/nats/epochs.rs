//! The history epoch of each namespace, cached so that a history publish
//! costs one round trip (its JetStream ack) and not a `STREAM.INFO` more.
//!
//! The epoch is the stream's creation time (see `streams::epoch_of`); it
//! changes only when the stream is deleted and made again, by this gateway,
//! another one, or an operator. The cache forgets a namespace's epoch when:
//! - JetStream announces that a stream was created or deleted (every
//!   gateway listens to `$JS.EVENT.ADVISORY.STREAM.{CREATED,DELETED}.*`);
//! - an ack's sequence is below the one the epoch was read at (a new
//!   stream numbers from 1 again);
//! - the connection to NATS was lost (advisories may have been missed);
//! - this gateway makes the stream again (`ensure_stream`).

use futures_util::StreamExt;
use std::collections::HashMap;

use super::{unavailable, AbortOnDrop, NatsBroker};
use crate::broker::BrokerError;

/// Namespace -> (epoch, the stream sequence it was read at or after).
#[derive(Default)]
pub(super) struct Epochs {
    known: parking_lot::Mutex<HashMap<String, (String, u64)>>,
}

impl Epochs {
    /// The namespace's epoch for a publication the stream acked at
    /// `sequence`, if known and still plausible.
    pub(super) fn get(&self, namespace: &str, sequence: u64) -> Option<String> {
        let known = self.known.lock();
        let (epoch, read_at) = known.get(namespace)?;
        (sequence >= *read_at).then(|| epoch.clone())
    }

    /// Remembers the epoch read (after a publication acked at `sequence`).
    pub(super) fn set(&self, namespace: &str, epoch: String, sequence: u64) {
        self.known.lock().insert(namespace.to_string(), (epoch, sequence));
    }

    /// Forgets every epoch (a stream was made or deleted, or the connection
    /// was lost).
    pub(crate) fn clear(&self) {
        self.known.lock().clear();
    }
}

impl NatsBroker {
    /// Listens to JetStream's stream created/deleted advisories and clears
    /// the epoch cache on each; returns once the server has the SUBs.
    pub(super) async fn watch_streams(&self) -> Result<AbortOnDrop, BrokerError> {
        let mut created = self.client.subscribe("$JS.EVENT.ADVISORY.STREAM.CREATED.*").await.map_err(unavailable)?;
        let mut deleted = self.client.subscribe("$JS.EVENT.ADVISORY.STREAM.DELETED.*").await.map_err(unavailable)?;
        self.confirmer.confirm(None).await?;
        let epochs = self.epochs.clone();
        Ok(AbortOnDrop(tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    m = created.next() => m,
                    m = deleted.next() => m,
                };
                let Some(event) = event else { return };
                tracing::debug!(subject = %event.subject, "stream advisory: history epochs forgotten");
                epochs.clear();
            }
        })))
    }
}
