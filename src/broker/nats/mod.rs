//! Core NATS broker: one NATS subscription per channel with local subscribers.
//!
//! On the wire a publication is a plain NATS message on the channel's subject
//! (see [`super::subject`]): the body is the publication data, and optional
//! metadata rides in headers (`headers.rs`), so any NATS client can publish
//! to a channel.
//!
//! History namespaces keep two JetStream streams: the history stream, which
//! stores publications (and numbers them), and its meta stream, which sources
//! it and keeps each channel's last publication for `history_meta_ttl`, so a
//! channel's position outlives its publications.
//!
//! Layout: this file connects and holds plain pub/sub; `streams.rs`
//! provisions the streams and stores publications; `history.rs` reads them;
//! `markers.rs` is the meta-stream and position-marker protocol (removal
//! included); `survey.rs` asks and answers the other gateways; `headers.rs`
//! is the header codec; `confirm.rs` confirms publications with shared
//! round trips (group commit); `epochs.rs` caches each namespace's epoch;
//! `reorder.rs` puts republished history messages back in offset order.

mod confirm;
pub(crate) mod connect;
mod epochs;
pub(crate) mod headers;
mod history;
mod map_state;
mod markers;
mod node;
mod reorder;
mod streams;
mod survey;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::JoinHandle;

use super::history::{HistoryConfig, Page, Position, Query};
use super::{Answer, AnswerNode, Broker, BrokerError, Deliver, DeliverUserCommand, Message, SubscriptionGuard};
use crate::broker::subject::SubjectMap;
use async_nats::jetstream;
use connect::NatsConnect;
use headers::{decode_message, encode_headers};

pub(crate) struct NatsBroker {
    client: async_nats::Client,
    /// Confirms publications and SUBs with shared round trips to a private
    /// subject this gateway answers itself (see `confirm.rs`).
    confirmer: confirm::Confirmer,
    _echo_task: AbortOnDrop,
    /// Changes on every disconnect (see `confirm.rs`).
    disconnects: tokio::sync::watch::Receiver<u64>,
    /// Each history namespace's epoch (see `epochs.rs`).
    epochs: Arc<epochs::Epochs>,
    _advisories: Option<AbortOnDrop>,
    subjects: SubjectMap,
    jetstream: jetstream::Context,
    history: HistoryConfig,
    /// `num_replicas` of the streams this gateway creates.
    replicas: usize,
    /// Namespace -> the history epoch its meta stream was last found (or
    /// made) to belong to, so most reads skip that check.
    meta_checked: parking_lot::Mutex<HashMap<String, String>>,
    /// Map namespaces' buckets by name, once found or made (see `map_state.rs`).
    map_stores: parking_lot::Mutex<HashMap<String, jetstream::kv::Store>>,
}

impl NatsBroker {
    /// Connects with `connect`'s servers, authentication, TLS and name
    /// (see [`connect`](self::connect)) and makes sure the history streams exist.
    pub(crate) async fn connect(
        connect: &NatsConnect,
        subjects: SubjectMap,
        history: HistoryConfig,
    ) -> Result<Self, BrokerError> {
        let (disconnected, disconnects) = tokio::sync::watch::channel(0u64);
        let epochs = Arc::new(epochs::Epochs::default());
        let on_event = epochs.clone();
        let client = connect
            .options()
            .await
            .map_err(BrokerError::Unavailable)?
            .event_callback(move |event| {
                let epochs = on_event.clone();
                let disconnected = disconnected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            // Stream advisories may have been missed meanwhile
                            // (epochs also keep their connection generation).
                            epochs.clear();
                            // The first Connected is the initial connection.
                            if CONNECTED_ONCE.swap(true, std::sync::atomic::Ordering::Relaxed) {
                                crate::metrics::metrics().nats_reconnects.inc();
                            }
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("disconnected from NATS");
                            // Fails the round trips in flight (see `confirm.rs`).
                            disconnected.send_modify(|n| *n += 1);
                        }
                        other => tracing::info!("NATS: {other}"),
                    }
                }
            })
            // No retry_on_initial_connect: an unreachable NATS fails this
            // call at once, and `crate::startup` retries it while the ports
            // answer /health and /ready. Later disconnects are retried by
            // the client itself (unlimited reconnects).
            .connect(connect.servers.clone())
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let jetstream = jetstream::new(client.clone());
        let echo = format!("{}.echo", client.new_inbox());
        let mut echo_sub = client.subscribe(echo.clone()).await.map_err(unavailable)?;
        let responder = client.clone();
        let echo_task = AbortOnDrop(tokio::spawn(async move {
            while let Some(msg) = echo_sub.next().await {
                if let Some(reply) = msg.reply {
                    let _ = responder.publish(reply, Bytes::new()).await;
                }
            }
        }));
        let confirmer = confirm::Confirmer::start(client.clone(), echo, disconnects.clone());
        let mut broker = NatsBroker {
            client,
            confirmer,
            _echo_task: echo_task,
            disconnects,
            epochs,
            _advisories: None,
            subjects,
            jetstream,
            history,
            replicas: connect.history_replicas,
            meta_checked: Default::default(),
            map_stores: Default::default(),
        };
        if broker.history.namespaces().next().is_some() {
            broker._advisories = Some(broker.watch_streams().await?);
        }
        for (namespace, size, ttl) in broker.history.namespaces() {
            broker.ensure_stream(namespace, size, ttl).await?;
        }
        Ok(broker)
    }

    /// Waits until nats-server has handled every SUB this gateway sent
    /// before the call (one shared round trip, see `confirm.rs`; `flush`
    /// only empties the local buffer).
    async fn round_trip(&self) -> Result<(), BrokerError> {
        self.confirmer.confirm(None).await
    }

    /// Publishes a core NATS message and returns once nats-server has it:
    /// refused at once while disconnected, and never confirmed if the
    /// connection changed before the confirming round trip came back.
    async fn publish_confirmed(
        &self,
        subject: String,
        headers: Option<async_nats::HeaderMap>,
        payload: Bytes,
    ) -> Result<(), BrokerError> {
        let generation = self.confirmer.generation(&self.client)?;
        let queued = match headers {
            Some(headers) => self.client.publish_with_headers(subject, headers, payload).await,
            None => self.client.publish(subject, payload).await,
        };
        queued.map_err(unavailable)?;
        self.confirmer.confirm(Some(generation)).await
    }

    /// Subscribes a subject, confirms the SUB with the server, and hands each
    /// message to `handle` on a task that ends when the guard is dropped.
    async fn listen(
        &self,
        subject: String,
        mut handle: impl FnMut(async_nats::Message) + Send + 'static,
    ) -> Result<SubscriptionGuard, BrokerError> {
        let mut subscriber = self.client.subscribe(subject).await.map_err(unavailable)?;
        // The server must have the SUB before we report the subscription active.
        self.round_trip().await?;
        let task = tokio::spawn(async move {
            while let Some(msg) = subscriber.next().await {
                handle(msg);
            }
        });
        Ok(SubscriptionGuard::new(AbortOnDrop(task)))
    }

    /// [`Self::listen`] for a history channel's republish subject: messages
    /// are handed on in offset order (see `reorder.rs`).
    async fn listen_ordered(
        &self,
        subject: String,
        mut handle: impl FnMut(Message) + Send + 'static,
    ) -> Result<SubscriptionGuard, BrokerError> {
        let mut subscriber = self.client.subscribe(subject).await.map_err(unavailable)?;
        self.round_trip().await?;
        let task = tokio::spawn(async move {
            let mut order = reorder::Reorder::default();
            loop {
                let ready = match order.deadline() {
                    Some(deadline) => tokio::select! {
                        msg = subscriber.next() => match msg {
                            Some(msg) => order.push(decode_message(msg), tokio::time::Instant::now()),
                            None => break,
                        },
                        _ = tokio::time::sleep_until(deadline) => order.release_all(),
                    },
                    None => match subscriber.next().await {
                        Some(msg) => order.push(decode_message(msg), tokio::time::Instant::now()),
                        None => break,
                    },
                };
                ready.into_iter().for_each(&mut handle);
            }
        });
        Ok(SubscriptionGuard::new(AbortOnDrop(task)))
    }
}

/// Aborting the reader task drops the NATS subscriber, which unsubscribes.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, channel: &str, message: Message) -> Result<Option<Position>, BrokerError> {
        let keeps_history = self.history.for_channel(channel).is_some();
        if keeps_history && message.event.is_none() && !message.skip_history {
            return self.publish_to_history(channel, message).await.map(Some);
        }
        // Not stored: history channels' subscribers listen on the republish subject.
        let subject = if keeps_history {
            self.subjects.republish_subject(channel)
        } else {
            self.subjects.channel_subject(channel)
        };
        self.publish_confirmed(subject, encode_headers(&message), message.data).await?;
        Ok(None)
    }

    async fn history(&self, channel: &str, query: Query) -> Result<Page, BrokerError> {
        self.read_backed_history(channel, query).await
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        self.remove_channel_history(channel).await
    }

    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError> {
        // History channels are heard on the republish subject, where each
        // message carries its stream sequence (the offset).
        let name = channel.to_string();
        if self.history.for_channel(channel).is_some() {
            let subject = self.subjects.republish_subject(channel);
            return self.listen_ordered(subject, move |message| sink.deliver(&name, message)).await;
        }
        let subject = self.subjects.channel_subject(channel);
        self.listen(subject, move |msg| sink.deliver(&name, decode_message(msg))).await
    }

    async fn publish_user_command(&self, user: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.publish_confirmed(self.subjects.user_subject(user), None, payload).await
    }

    async fn subscribe_user_bucket(
        &self,
        bucket: u32,
        sink: Arc<dyn DeliverUserCommand>,
    ) -> Result<SubscriptionGuard, BrokerError> {
        let subjects = self.subjects.clone();
        self.listen(self.subjects.user_bucket_wildcard(bucket), move |msg| {
            if let Some(user) = subjects.user_of(msg.subject.as_str()) {
                sink.deliver_user_command(&user, msg.payload);
            }
        })
        .await
    }

    async fn survey(&self, request: Bytes) -> Result<Vec<Bytes>, BrokerError> {
        self.ask_all(request).await
    }

    async fn answer_surveys(&self, handler: Arc<dyn Answer>) -> Result<SubscriptionGuard, BrokerError> {
        self.answer_all(handler).await
    }

    async fn request_node(&self, node: &str, request: Bytes) -> Result<Option<Bytes>, BrokerError> {
        self.ask_node(node, request).await
    }

    async fn answer_node(&self, node: &str, handler: Arc<dyn AnswerNode>) -> Result<SubscriptionGuard, BrokerError> {
        self.answer_as_node(node, handler).await
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn map_write(
        &self,
        channel: &str,
        key: &str,
        entry: crate::broker::MapEntry,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<(), BrokerError> {
        self.write_map_entry(channel, key, entry, key_ttl).await
    }

    async fn map_read(
        &self,
        channel: &str,
        key: Option<&str>,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<(String, crate::broker::MapEntry)>, BrokerError> {
        self.read_map_state(channel, key, key_ttl).await
    }

    async fn map_replace(
        &self,
        channel: &str,
        key: &str,
        expected: &crate::broker::MapEntry,
        entry: crate::broker::MapEntry,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<bool, BrokerError> {
        self.replace_map_entry(channel, key, expected, entry, key_ttl).await
    }

    async fn map_scan(
        &self,
        namespace: &str,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<(String, String, crate::broker::MapEntry)>, BrokerError> {
        self.scan_map_state(namespace, key_ttl).await
    }

    async fn map_write_if(
        &self,
        channel: &str,
        key: &str,
        entry: &mut crate::broker::MapEntry,
        key_ttl: Option<std::time::Duration>,
        condition: &crate::broker::MapCondition,
    ) -> Result<Result<u64, &'static str>, BrokerError> {
        self.write_map_entry_if(channel, key, entry, key_ttl, condition).await
    }

    async fn map_clear(&self, channel: &str, key_ttl: Option<std::time::Duration>) -> Result<(), BrokerError> {
        self.clear_map_state(channel, key_ttl).await
    }

    async fn map_result(&self, channel: &str, idempotency_key: &str) -> Result<Option<Position>, BrokerError> {
        self.read_map_result(channel, idempotency_key).await
    }

    async fn map_remember(&self, channel: &str, idempotency_key: &str, position: Position) -> Result<(), BrokerError> {
        self.write_map_result(channel, idempotency_key, position).await
    }
}

static CONNECTED_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The servers of a `nats_url`: comma-separated URLs (`nats://a:4222,nats://b:4222`).
/// An unparsable one is a configuration error, named by position only (a
/// URL may hold a password).
pub(crate) fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .enumerate()
        .map(|(i, u)| u.parse().map_err(|e| format!("NATS URL #{}: {e}", i + 1)))
        .collect()
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}
