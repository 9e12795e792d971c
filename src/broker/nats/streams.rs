//! Stream provisioning: each history namespace's stream and its meta
//! stream, created or updated idempotently by every gateway, and storing a
//! publication in them.

use std::time::Duration;

use super::headers::{encode_headers, msg_id};
use super::{unavailable, NatsBroker};
use crate::broker::history::Position;
use crate::broker::{BrokerError, Message};
use async_nats::jetstream;

/// How long an idempotency key is remembered (JetStream's duplicate window),
/// at most the history ttl.
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(120);

impl NatsBroker {
    /// Creates or updates a namespace's history stream, and its meta stream.
    /// Every gateway does this at startup; the same config makes it a no-op.
    pub(super) async fn ensure_stream(
        &self,
        namespace: &str,
        size: u32,
        ttl: Duration,
    ) -> Result<jetstream::stream::Stream, BrokerError> {
        let source = self.subjects.namespace_wildcard(namespace);
        let config = jetstream::stream::Config {
            name: self.subjects.stream_name(namespace),
            subjects: vec![source.clone()],
            // One more than history_size: the oldest, never shown, anchors
            // continuity (see `history`).
            max_messages_per_subject: i64::from(size) + 1,
            max_age: ttl,
            duplicate_window: ttl.min(IDEMPOTENCY_WINDOW),
            num_replicas: self.replicas,
            allow_direct: true,
            republish: Some(jetstream::stream::Republish {
                source,
                destination: self.subjects.republish_wildcard(namespace),
                headers_only: false,
            }),
            ..Default::default()
        };
        // Two gateways may race to create it; the loser finds it on retry.
        let stream = match self.jetstream.get_or_create_stream(config.clone()).await {
            Ok(s) => s,
            Err(_) => self.jetstream.get_or_create_stream(config.clone()).await.map_err(unavailable)?,
        };
        if stream.cached_info().config != config {
            self.jetstream.update_stream(config).await.map_err(unavailable)?;
        }
        // Maybe a new incarnation: its epoch is read again on next use.
        self.epochs.clear();
        self.ensure_meta(namespace, &epoch_of(stream.cached_info())).await?;
        Ok(stream)
    }

    fn meta_config(&self, namespace: &str, epoch: &str) -> jetstream::stream::Config {
        let history = self.subjects.stream_name(namespace);
        jetstream::stream::Config {
            name: self.subjects.meta_stream_name(namespace),
            description: Some(meta_description(&history, epoch)),
            // No subjects of its own: everything comes from the history
            // stream, unaffected by its max_age and by its subject purges.
            sources: Some(vec![jetstream::stream::Source { name: history, ..Default::default() }]),
            max_messages_per_subject: 1,
            max_age: self.history.meta_ttl,
            // Sourced messages keep their Nats-Msg-Id and this stream
            // deduplicates too: at the server's minimum window it does not
            // drop a key the history stream accepted again after its own.
            duplicate_window: Duration::from_millis(100),
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// Makes sure a namespace's meta stream exists and belongs to the
    /// history stream's incarnation `epoch`. One made for another epoch
    /// holds positions of a lost history, and its source would not follow
    /// the new stream (it resumes after the old stream's last sequence), so
    /// it is deleted and made again; the new one sources what is still held.
    pub(super) async fn ensure_meta(&self, namespace: &str, epoch: &str) -> Result<(), BrokerError> {
        let config = self.meta_config(namespace, epoch);
        match self.jetstream.get_stream(&config.name).await {
            Ok(meta) if meta.cached_info().config.description == config.description => {
                let held = &meta.cached_info().config;
                if held.max_age != config.max_age || held.num_replicas != config.num_replicas {
                    self.jetstream.update_stream(&config).await.map_err(unavailable)?;
                }
            }
            found => {
                if let Err(e) = &found {
                    if !stream_not_found(e.kind()) {
                        return Err(unavailable(e));
                    }
                } else {
                    tracing::info!(stream = %config.name, "history stream recreated: recreating its meta stream");
                    match self.jetstream.delete_stream(&config.name).await {
                        Err(e) if !stream_not_found(e.kind()) => return Err(unavailable(e)),
                        _ => {}
                    }
                }
                if let Err(e) = self.jetstream.create_stream(&config).await {
                    // Another gateway made it meanwhile: fine if for this epoch.
                    let meta = self.jetstream.get_stream(&config.name).await.map_err(unavailable)?;
                    if meta.cached_info().config.description != config.description {
                        return Err(unavailable(e));
                    }
                }
            }
        }
        self.meta_checked.lock().insert(namespace.to_string(), epoch.to_string());
        Ok(())
    }

    /// The namespace's meta stream, checked to belong to history `epoch`
    /// (made again if it does not).
    pub(super) async fn meta_stream(
        &self,
        namespace: &str,
        epoch: &str,
    ) -> Result<jetstream::stream::Stream<()>, BrokerError> {
        let checked = self.meta_checked.lock().get(namespace).is_some_and(|e| e == epoch);
        if !checked {
            self.ensure_meta(namespace, epoch).await?;
        }
        self.jetstream.get_stream_no_info(self.subjects.meta_stream_name(namespace)).await.map_err(unavailable)
    }

    pub(super) async fn stream_of(&self, channel: &str) -> Result<(jetstream::stream::Stream, String), BrokerError> {
        let (size, ttl) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let namespace = crate::channels::namespace_of(channel);
        let stream = match self.jetstream.get_stream(self.subjects.stream_name(namespace)).await {
            Ok(stream) => stream,
            // Deleted under us: recreate it (a new epoch).
            Err(_) => self.ensure_stream(namespace, size, ttl).await?,
        };
        let epoch = epoch_of(stream.cached_info());
        Ok((stream, epoch))
    }

    /// Stores a publication in the namespace's stream (JetStream acks it);
    /// the stream republishes it to subscribers with its sequence. One
    /// round trip, the ack: the epoch comes from the cache (`epochs.rs`),
    /// read with a `STREAM.INFO` only when not known.
    pub(super) async fn publish_to_history(&self, channel: &str, message: Message) -> Result<Position, BrokerError> {
        // Refused at once while disconnected; the ack proves storage anyway.
        let connection = self.confirmer.generation(&self.client)?;
        let namespace = crate::channels::namespace_of(channel);
        let subject = self.subjects.channel_subject(channel);
        let mut headers = encode_headers(&message).unwrap_or_default();
        if let Some(key) = &message.idempotency_key {
            headers.insert("Nats-Msg-Id", msg_id(channel, key).as_str());
        }
        let mut attempt = 0;
        loop {
            // An ack cannot come back over another connection: a disconnect
            // fails the wait at once (the publication may have been stored).
            let mut disconnects = self.disconnects.clone();
            disconnects.borrow_and_update();
            if self.confirmer.generation(&self.client)? != connection {
                return Err(BrokerError::Unavailable("reconnected to NATS while publishing".into()));
            }
            let sent =
                self.jetstream.publish_with_headers(subject.clone(), headers.clone(), message.data.clone()).await;
            let ack = match sent {
                Ok(ack) => tokio::select! {
                    ack = ack => ack,
                    _ = disconnects.changed() => {
                        return Err(BrokerError::Unavailable("disconnected from NATS before the ack".into()));
                    }
                },
                Err(e) => {
                    Err(jetstream::context::PublishError::with_source(jetstream::context::PublishErrorKind::Other, e))
                }
            };
            match ack {
                Ok(ack) => {
                    if message.info.is_some() {
                        // A client's publication: Centrifugo delivers it to
                        // the publisher's own subscription before the reply.
                        // The stream republished it before acking; a shared
                        // round trip gives this gateway's subscription time
                        // to hand it on (the STREAM.INFO that used to follow
                        // every ack did the same).
                        self.confirmer.confirm(None).await?;
                    }
                    if let Some(epoch) = self.epochs.get(namespace, ack.sequence, connection) {
                        return Ok(Position { offset: ack.sequence, epoch });
                    }
                    let version = self.epochs.version();
                    let (_, epoch) = self.stream_of(channel).await?;
                    self.epochs.set(namespace, epoch.clone(), ack.sequence, connection, version);
                    return Ok(Position { offset: ack.sequence, epoch });
                }
                // No stream answered (deleted): make it again, once. Not
                // after a timeout, which could store the publication twice.
                Err(e) if attempt == 0 && e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                    attempt += 1;
                    let (size, ttl) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
                    self.ensure_stream(crate::channels::namespace_of(channel), size, ttl).await?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }
}

/// The epoch of a stream: its creation time, which changes only when the
/// stream (and so its history) is recreated.
pub(super) fn epoch_of(info: &jetstream::stream::Info) -> String {
    format!("{:x}", info.created.unix_timestamp_nanos())
}

/// The meta stream's description names the history incarnation it follows.
fn meta_description(history: &str, epoch: &str) -> String {
    format!("natsgate: last publication of each channel of stream {history}, epoch {epoch}")
}

pub(super) fn stream_not_found(kind: jetstream::context::GetStreamErrorKind) -> bool {
    matches!(kind, jetstream::context::GetStreamErrorKind::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}
