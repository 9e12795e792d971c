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
//! - the connection to NATS changed (advisories may have been missed): an
//!   epoch is kept with the connection generation it was read on;
//! - this gateway makes the stream again (`ensure_stream`).
//!
//! An epoch read while the cache was cleared is not stored (it may predate
//! the change that cleared it).

use futures_util::StreamExt;
use std::collections::HashMap;

use super::{unavailable, AbortOnDrop, NatsBroker};
use crate::broker::BrokerError;

/// Namespace -> its epoch, and when it was read.
#[derive(Default)]
pub(super) struct Epochs {
    inner: parking_lot::Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    known: HashMap<String, Known>,
    /// How many times the cache was cleared (see [`Epochs::version`]).
    version: u64,
}

struct Known {
    epoch: String,
    /// The stream sequence it was read at (or after).
    sequence: u64,
    /// The NATS connection generation it was read on.
    connection: u64,
}

impl Epochs {
    /// The namespace's epoch for a publication the stream acked at
    /// `sequence` on connection generation `connection`, if known and still
    /// plausible.
    pub(super) fn get(&self, namespace: &str, sequence: u64, connection: u64) -> Option<String> {
        let inner = self.inner.lock();
        let known = inner.known.get(namespace)?;
        (sequence >= known.sequence && connection == known.connection).then(|| known.epoch.clone())
    }

    /// The cache's version, to read before looking an epoch up with a
    /// `STREAM.INFO` and hand to [`Self::set`].
    pub(super) fn version(&self) -> u64 {
        self.inner.lock().version
    }

    /// Remembers the epoch read after a publication acked at `sequence` on
    /// connection generation `connection`, unless the cache was cleared
    /// since `version` was read.
    pub(super) fn set(&self, namespace: &str, epoch: String, sequence: u64, connection: u64, version: u64) {
        let mut inner = self.inner.lock();
        if inner.version == version {
            inner.known.insert(namespace.to_string(), Known { epoch, sequence, connection });
        }
    }

    /// Forgets every epoch (a stream was made or deleted).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.known.clear();
        inner.version += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_used_only_while_plausible() {
        let epochs = Epochs::default();
        assert_eq!(epochs.get("ns", 1, 1), None);
        epochs.set("ns", "e1".into(), 10, 1, epochs.version());
        assert_eq!(epochs.get("ns", 10, 1).as_deref(), Some("e1"));
        assert_eq!(epochs.get("ns", 11, 1).as_deref(), Some("e1"));
        assert_eq!(epochs.get("ns", 9, 1), None, "a lower sequence may be a new stream");
        assert_eq!(epochs.get("ns", 11, 2), None, "another connection may have missed advisories");
        assert_eq!(epochs.get("other", 11, 1), None);
        epochs.clear();
        assert_eq!(epochs.get("ns", 11, 1), None, "cleared");
        // Read before a clear: not stored.
        let version = epochs.version();
        epochs.clear();
        epochs.set("ns", "stale".into(), 12, 1, version);
        assert_eq!(epochs.get("ns", 12, 1), None);
    }
}
