//! Core NATS broker: one NATS subscription per channel with local subscribers.
//!
//! On the wire a publication is a plain NATS message on the channel's subject
//! (see [`super::subject`]): the body is the publication data, and optional
//! metadata rides in headers, so any NATS client can publish to a channel.

use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

use super::history::{select, HistoryConfig, Page, Position, Query};
use super::subject::SubjectMap;
use super::{Answer, Broker, BrokerError, Deliver, DeliverControl, Message, SubscriptionGuard};
use crate::protocol::ClientInfo;
use async_nats::jetstream;

/// Header with the publication tags as a JSON object of strings.
pub const HEADER_TAGS: &str = "Natsgate-Tags";
/// Header with the publisher's ClientInfo as JSON (client publications).
pub const HEADER_INFO: &str = "Natsgate-Info";
/// Header marking a join or leave event (`join`, `leave`); the body is empty.
pub const HEADER_EVENT: &str = "Natsgate-Event";
/// Header with the publish time in Unix milliseconds (for the delivery lag metric).
pub const HEADER_TIME: &str = "Natsgate-Time";

pub struct NatsBroker {
    client: async_nats::Client,
    /// A private subject this gateway answers itself (see `round_trip`).
    echo: String,
    _echo_task: AbortOnDrop,
    subjects: SubjectMap,
    jetstream: jetstream::Context,
    history: HistoryConfig,
}

impl NatsBroker {
    pub async fn connect(url: &str, subjects: SubjectMap, history: HistoryConfig) -> Result<Self, BrokerError> {
        let client = async_nats::ConnectOptions::new()
            .name("natsgate")
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        // The first Connected is the initial connection.
                        if CONNECTED_ONCE.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            crate::metrics::metrics().nats_reconnects.inc();
                        }
                    }
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    other => tracing::info!("NATS: {other}"),
                }
            })
            .retry_on_initial_connect()
            .connect(url)
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
        let broker = NatsBroker { client, echo, _echo_task: echo_task, subjects, jetstream, history };
        for (namespace, size, ttl) in broker.history.namespaces() {
            broker.ensure_stream(namespace, size, ttl).await?;
        }
        Ok(broker)
    }

    /// Creates or updates a namespace's history stream. Every gateway does
    /// this at startup; the same config makes it a no-op.
    async fn ensure_stream(
        &self,
        namespace: &str,
        size: u32,
        ttl: Duration,
    ) -> Result<jetstream::stream::Stream, BrokerError> {
        let source = self.subjects.namespace_wildcard(namespace);
        let config = jetstream::stream::Config {
            name: self.subjects.stream_name(namespace),
            subjects: vec![source.clone()],
            max_messages_per_subject: size as i64,
            max_age: ttl,
            duplicate_window: ttl.min(IDEMPOTENCY_WINDOW),
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
        Ok(stream)
    }

    async fn stream_of(&self, channel: &str) -> Result<(jetstream::stream::Stream, String), BrokerError> {
        let (size, ttl) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let namespace = super::subject::namespace_of(channel);
        let stream = match self.jetstream.get_stream(self.subjects.stream_name(namespace)).await {
            Ok(stream) => stream,
            // Deleted under us: recreate it (a new epoch).
            Err(_) => self.ensure_stream(namespace, size, ttl).await?,
        };
        let epoch = epoch_of(&stream);
        Ok((stream, epoch))
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// A request to our own echo subscription. nats-server processes each
    /// connection's protocol in order, so when the answer comes back every
    /// SUB and PUB sent before it has been handled (`flush` only empties the
    /// local buffer).
    async fn round_trip(&self) -> Result<(), BrokerError> {
        self.client.request(self.echo.clone(), Bytes::new()).await.map_err(unavailable)?;
        Ok(())
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
}

/// Builds the NATS headers for a publication; None when there is no metadata.
pub fn encode_headers(message: &Message) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    if !message.tags.is_empty() {
        if let Ok(tags) = serde_json::to_string(&message.tags) {
            headers.insert(HEADER_TAGS, tags.as_str());
        }
    }
    if let Some(info) = &message.info {
        if let Ok(info) = serde_json::to_string(info) {
            headers.insert(HEADER_INFO, info.as_str());
        }
    }
    if let Some(event) = message.event {
        headers.insert(HEADER_EVENT, event.as_str());
    }
    if let Some(time) = message.time_ms {
        headers.insert(HEADER_TIME, time.to_string().as_str());
    }
    (!headers.is_empty()).then_some(headers)
}

/// Reads a NATS message back into a publication. Malformed metadata is
/// dropped (with a log line), the data itself is kept.
pub fn decode_message(msg: async_nats::Message) -> Message {
    let mut out = Message { data: msg.payload, ..Default::default() };
    if let Some(headers) = &msg.headers {
        read_headers(&mut out, headers, &msg.subject);
    }
    out
}

fn read_headers(out: &mut Message, headers: &HeaderMap, subject: &async_nats::Subject) {
    // Set on messages a history stream republishes: the stream sequence.
    out.offset = headers.get("Nats-Sequence").and_then(|s| s.as_str().parse().ok()).unwrap_or(0);
    out.prev_offset = headers.get("Nats-Last-Sequence").and_then(|s| s.as_str().parse().ok());
    if let Some(tags) = headers.get(HEADER_TAGS) {
        match serde_json::from_str(tags.as_str()) {
            Ok(tags) => out.tags = tags,
            Err(e) => tracing::warn!(subject = %subject, "ignoring malformed {HEADER_TAGS} header: {e}"),
        }
    }
    out.event = headers.get(HEADER_EVENT).and_then(|e| super::PresenceEvent::parse(e.as_str()));
    out.time_ms = headers.get(HEADER_TIME).and_then(|t| t.as_str().parse().ok());
    if let Some(info) = headers.get(HEADER_INFO) {
        match serde_json::from_str::<ClientInfo>(info.as_str()) {
            Ok(info) => out.info = Some(info),
            Err(e) => tracing::warn!(subject = %subject, "ignoring malformed {HEADER_INFO} header: {e}"),
        }
    }
}

/// How long an idempotency key is remembered (JetStream's duplicate window),
/// at most the history ttl.
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(120);

/// The epoch of a stream: its creation time, which changes only when the
/// stream (and so its history) is recreated.
fn epoch_of(stream: &jetstream::stream::Stream) -> String {
    format!("{:x}", stream.cached_info().created.unix_timestamp_nanos())
}

/// Reads a stored message back into a publication.
fn from_stored(msg: jetstream::message::StreamMessage) -> Message {
    let mut out = Message { data: msg.payload, ..Default::default() };
    read_headers(&mut out, &msg.headers, &msg.subject);
    out.offset = msg.sequence;
    out
}

static CONNECTED_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A survey waits this long for the first answer, and then for each next one.
const SURVEY_FIRST_ANSWER: Duration = Duration::from_millis(1000);
const SURVEY_QUIET: Duration = Duration::from_millis(100);
/// A survey never gathers more answers than this (bounded memory).
const SURVEY_MAX_ANSWERS: usize = 10_000;

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl NatsBroker {
    /// Stores a publication in the namespace's stream (JetStream acks it);
    /// the stream republishes it to subscribers with its sequence.
    async fn publish_to_history(&self, channel: &str, message: Message) -> Result<Position, BrokerError> {
        let subject = self.subjects.channel_subject(channel);
        let mut headers = encode_headers(&message).unwrap_or_default();
        if let Some(key) = &message.idempotency_key {
            headers.insert("Nats-Msg-Id", key.as_str());
        }
        let mut attempt = 0;
        loop {
            let sent =
                self.jetstream.publish_with_headers(subject.clone(), headers.clone(), message.data.clone()).await;
            let ack = match sent {
                Ok(ack) => ack.await,
                Err(e) => {
                    Err(jetstream::context::PublishError::with_source(jetstream::context::PublishErrorKind::Other, e))
                }
            };
            match ack {
                Ok(ack) => {
                    let (stream, epoch) = self.stream_of(channel).await?;
                    drop(stream);
                    return Ok(Position { offset: ack.sequence, epoch });
                }
                // The stream may have been deleted: recreate it once.
                Err(_) if attempt == 0 => {
                    attempt += 1;
                    let (size, ttl) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
                    self.ensure_stream(super::subject::namespace_of(channel), size, ttl).await?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
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
        let result = match encode_headers(&message) {
            Some(headers) => self.client.publish_with_headers(subject, headers, message.data).await,
            None => self.client.publish(subject, message.data).await,
        };
        result.map_err(unavailable)?;
        // The server handles a connection's messages in order: once the round
        // trip is answered, it has the publication.
        self.round_trip().await?;
        Ok(None)
    }

    async fn history(&self, channel: &str, query: Query) -> Result<Page, BrokerError> {
        let (size, _) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let (stream, epoch) = self.stream_of(channel).await?;
        let subject = self.subjects.channel_subject(channel);
        let state = &stream.cached_info().state;
        let stream_first = state.first_sequence;
        let top = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(msg) => msg.sequence,
            // Nothing held for the channel: 0, as Centrifugo answers for a
            // fresh channel. Known limit: a channel whose every publication
            // aged out or was removed also reads 0, so a client positioned
            // before that is told recovered:false (never a false true).
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => 0,
            Err(e) => return Err(unavailable(e)),
        };
        let position = Position { offset: top, epoch };
        // Read what the page can need, oldest first: at most history_size
        // messages, one request each (direct gets by subject).
        let mut held = Vec::new();
        if query.limit > 0 {
            let mut seq = match (&query.since, query.reverse) {
                (Some(since), false) => since.offset + 1,
                _ => 1,
            };
            while held.len() < size as usize && seq <= top {
                let next = stream.raw_message_builder().sequence(seq).next_by_subject(subject.clone()).send().await;
                match next {
                    Ok(msg) => {
                        seq = msg.sequence + 1;
                        held.push(from_stored(msg));
                    }
                    Err(_) => break,
                }
                if !query.reverse && held.len() >= query.limit {
                    break;
                }
            }
        }
        // Stream sequences are shared by the namespace's channels, so "all
        // after `since` are held" is decided conservatively: never claimed
        // when publications may have been lost.
        let since_held = match &query.since {
            // The publication at the client's offset is held: all later ones are.
            Some(since) if since.offset > 0 => {
                matches!(stream.get_raw_message(since.offset).await, Ok(m) if m.subject.as_str() == subject)
            }
            // From the very beginning: the stream never aged anything out
            // (its first sequence is still 1) and the channel is below its
            // size limit, so nothing of it was trimmed.
            Some(_) => stream_first <= 1 && query.limit > 0 && held.len() < size as usize,
            None => true,
        };
        select(held, position, &query, since_held)
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let (stream, _) = self.stream_of(channel).await?;
        stream.purge().filter(self.subjects.channel_subject(channel)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError> {
        // History channels are heard on the republish subject, where each
        // message carries its stream sequence (the offset).
        let subject = if self.history.for_channel(channel).is_some() {
            self.subjects.republish_subject(channel)
        } else {
            self.subjects.channel_subject(channel)
        };
        let channel = channel.to_string();
        self.listen(subject, move |msg| sink.deliver(&channel, decode_message(msg))).await
    }

    async fn publish_user(&self, user: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.client.publish(self.subjects.user_subject(user), payload).await.map_err(unavailable)?;
        self.round_trip().await
    }

    async fn subscribe_user_bucket(
        &self,
        bucket: u32,
        sink: Arc<dyn DeliverControl>,
    ) -> Result<SubscriptionGuard, BrokerError> {
        let subjects = self.subjects.clone();
        self.listen(self.subjects.user_bucket_wildcard(bucket), move |msg| {
            if let Some(user) = subjects.user_of(msg.subject.as_str()) {
                sink.control(&user, msg.payload);
            }
        })
        .await
    }

    async fn survey(&self, request: Bytes) -> Result<Vec<Bytes>, BrokerError> {
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        self.client.publish_with_reply(self.subjects.survey_subject(), inbox, request).await.map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)?;
        // Gateways do not know how many others there are: gather until the
        // answers stop coming.
        let mut out = Vec::new();
        let mut wait = SURVEY_FIRST_ANSWER;
        while out.len() < SURVEY_MAX_ANSWERS {
            match tokio::time::timeout(wait, answers.next()).await {
                Ok(Some(msg)) => out.push(msg.payload),
                Ok(None) | Err(_) => break,
            }
            wait = SURVEY_QUIET;
        }
        Ok(out)
    }

    async fn answer_surveys(&self, handler: Arc<dyn Answer>) -> Result<SubscriptionGuard, BrokerError> {
        let client = self.client.clone();
        self.listen(self.subjects.survey_subject(), move |msg| {
            if let Some(reply) = msg.reply {
                let answer = handler.answer(&msg.payload);
                let client = client.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.publish(reply, answer).await {
                        tracing::warn!("cannot answer survey: {e}");
                    }
                });
            }
        })
        .await
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
