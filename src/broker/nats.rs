//! Core NATS broker: one NATS subscription per channel with local subscribers.
//!
//! On the wire a publication is a plain NATS message on the channel's subject
//! (see [`super::subject`]): the body is the publication data, and optional
//! metadata rides in headers, so any NATS client can publish to a channel.
//!
//! History namespaces keep two JetStream streams: the history stream, which
//! stores publications (and numbers them), and its meta stream, which sources
//! it and keeps each channel's last publication for `history_meta_ttl`, so a
//! channel's position outlives its publications.

use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

use super::history::{select, HistoryConfig, Page, Position, Query};
use super::nats_connect::NatsConnect;
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
/// Header of a position marker: a message with an empty body that a gateway
/// stores on a channel's subject, standing for the channel position in the
/// header's value (see [`NatsBroker::write_marker`]). Never delivered nor
/// returned; it only anchors recovery, like the oldest held publication.
pub const HEADER_POSITION: &str = "Natsgate-Position";

pub struct NatsBroker {
    client: async_nats::Client,
    /// A private subject this gateway answers itself (see `round_trip`).
    echo: String,
    _echo_task: AbortOnDrop,
    subjects: SubjectMap,
    jetstream: jetstream::Context,
    history: HistoryConfig,
    /// `num_replicas` of the streams this gateway creates.
    replicas: usize,
    /// Namespace -> the history epoch its meta stream was last found (or
    /// made) to belong to, so most reads skip that check.
    meta_checked: parking_lot::Mutex<HashMap<String, String>>,
}

/// One history read's view of a namespace's stream: a single STREAM.INFO,
/// filtered to the channel's subject so it also counts the channel.
struct Snapshot {
    stream: jetstream::stream::Stream<()>,
    epoch: String,
    /// Messages held for the channel: at most history_size + 1.
    held: u64,
    first_seq: u64,
    last_seq: u64,
    /// Messages removed from inside the stream (trimmed per channel or
    /// purged). The server leaves the count out when it is 0.
    deleted: u64,
}

impl NatsBroker {
    /// Connects with `connect`'s servers, authentication, TLS and name
    /// (see [`super::nats_connect`]) and makes sure the history streams exist.
    pub async fn connect(
        connect: &NatsConnect,
        subjects: SubjectMap,
        history: HistoryConfig,
    ) -> Result<Self, BrokerError> {
        let client = connect
            .options()
            .await
            .map_err(BrokerError::Unavailable)?
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
        let broker = NatsBroker {
            client,
            echo,
            _echo_task: echo_task,
            subjects,
            jetstream,
            history,
            replicas: connect.history_replicas,
            meta_checked: Default::default(),
        };
        for (namespace, size, ttl) in broker.history.namespaces() {
            broker.ensure_stream(namespace, size, ttl).await?;
        }
        Ok(broker)
    }

    /// Creates or updates a namespace's history stream, and its meta stream.
    /// Every gateway does this at startup; the same config makes it a no-op.
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
            // One more than history_size: the oldest, never shown, anchors
            // continuity (see `history`).
            max_messages_per_subject: i64::from(size) + 1,
            max_age: ttl,
            duplicate_window: ttl.min(IDEMPOTENCY_WINDOW),
            allow_direct: true,
            num_replicas: self.replicas,
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
    async fn ensure_meta(&self, namespace: &str, epoch: &str) -> Result<(), BrokerError> {
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
    async fn meta_stream(&self, namespace: &str, epoch: &str) -> Result<jetstream::stream::Stream<()>, BrokerError> {
        let checked = self.meta_checked.lock().get(namespace).is_some_and(|e| e == epoch);
        if !checked {
            self.ensure_meta(namespace, epoch).await?;
        }
        self.jetstream.get_stream_no_info(self.subjects.meta_stream_name(namespace)).await.map_err(unavailable)
    }

    /// Polls the meta stream until its last message on `subject` (a channel
    /// subject or the namespace wildcard) was sourced from history sequence
    /// `seq` or later; false after [`META_WAIT`].
    async fn meta_reaches(
        &self,
        meta: &jetstream::stream::Stream<()>,
        namespace: &str,
        subject: &str,
        seq: u64,
    ) -> Result<bool, BrokerError> {
        let history = self.subjects.stream_name(namespace);
        let deadline = Instant::now() + META_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            match meta.get_last_raw_message_by_subject(subject).await {
                Ok(msg) if source_sequence(&msg.headers, &history).is_some_and(|s| s >= seq) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) if is_stream_not_found(&e) => {
                    self.meta_checked.lock().remove(namespace);
                    return Ok(false);
                }
                Err(e) => return Err(unavailable(e)),
            }
            if Instant::now() + pause > deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The position of a channel the history stream holds nothing of (all
    /// aged out or removed): the history sequence of its last publication,
    /// as the meta stream of this incarnation kept it (a marker: the position
    /// it stands for); 0 when it kept none.
    async fn meta_top(&self, namespace: &str, snap: &Snapshot, subject: &str) -> Result<u64, BrokerError> {
        let meta = self.meta_stream(namespace, &snap.epoch).await?;
        let history = self.subjects.stream_name(namespace);
        match meta.get_last_raw_message_by_subject(subject).await {
            // Never past the history's own last sequence (that would be
            // another incarnation's).
            Ok(msg) => {
                let seq = source_sequence(&msg.headers, &history).filter(|s| *s <= snap.last_seq);
                Ok(seq.map(|seq| marker_of(&msg.headers).unwrap_or(seq)).unwrap_or(0))
            }
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) if is_stream_not_found(&e) => {
                self.meta_checked.lock().remove(namespace);
                Ok(0)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Reads a channel's history stream state (see [`Snapshot`]), making the
    /// stream again if it was deleted (a new epoch).
    async fn snapshot(&self, channel: &str, subject: &str) -> Result<Snapshot, BrokerError> {
        use jetstream::response::Response;
        let (size, ttl) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let namespace = super::subject::namespace_of(channel);
        let name = self.subjects.stream_name(namespace);
        let request = serde_json::json!({ "subjects_filter": subject });
        let reply: Response<serde_json::Value> =
            self.jetstream.request(format!("STREAM.INFO.{name}"), &request).await.map_err(unavailable)?;
        let (info, held) = match reply {
            Response::Ok(value) => {
                // `state.subjects` (the per-subject counts) is not public in
                // async-nats' Info: read it from the JSON.
                let held = value["state"]["subjects"][subject].as_u64().unwrap_or(0);
                (serde_json::from_value::<jetstream::stream::Info>(value).map_err(unavailable)?, held)
            }
            Response::Err { error } if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {
                (self.ensure_stream(namespace, size, ttl).await?.cached_info().clone(), 0)
            }
            Response::Err { error } => return Err(unavailable(error)),
        };
        Ok(Snapshot {
            stream: self.jetstream.get_stream_no_info(&name).await.map_err(unavailable)?,
            epoch: epoch_of(&info),
            held,
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            deleted: info.state.deleted_count.unwrap_or(0),
        })
    }

    async fn stream_of(&self, channel: &str) -> Result<(jetstream::stream::Stream, String), BrokerError> {
        let (size, ttl) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let namespace = super::subject::namespace_of(channel);
        let stream = match self.jetstream.get_stream(self.subjects.stream_name(namespace)).await {
            Ok(stream) => stream,
            // Deleted under us: recreate it (a new epoch).
            Err(_) => self.ensure_stream(namespace, size, ttl).await?,
        };
        let epoch = epoch_of(stream.cached_info());
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
    out.marker = marker_of(headers);
    out.time_ms = headers.get(HEADER_TIME).and_then(|t| t.as_str().parse().ok());
    if let Some(info) = headers.get(HEADER_INFO) {
        match serde_json::from_str::<ClientInfo>(info.as_str()) {
            Ok(info) => out.info = Some(info),
            Err(e) => tracing::warn!(subject = %subject, "ignoring malformed {HEADER_INFO} header: {e}"),
        }
    }
}

/// The position a stored message stands for when it is a marker.
fn marker_of(headers: &HeaderMap) -> Option<u64> {
    headers.get(HEADER_POSITION).and_then(|v| v.as_str().parse().ok())
}

/// How long an idempotency key is remembered (JetStream's duplicate window),
/// at most the history ttl.
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(120);

/// The JetStream message id for an idempotency key: Centrifugo applies a
/// key per channel, while JetStream deduplicates ids across the whole
/// stream (every channel of a namespace), so the id names the channel too.
/// Both parts are subject tokens (no `:`, no control characters), so the id
/// is unambiguous and a valid header value. Direct NATS publishers can send
/// the same form to be deduplicated with API publishes.
pub fn msg_id(channel: &str, key: &str) -> String {
    format!("{}:{}", super::subject::encode_token(channel), super::subject::encode_token(key))
}

/// The epoch of a stream: its creation time, which changes only when the
/// stream (and so its history) is recreated.
fn epoch_of(info: &jetstream::stream::Info) -> String {
    format!("{:x}", info.created.unix_timestamp_nanos())
}

/// How long a history read or removal waits for the meta stream to source
/// a publication. Sourcing takes a fraction of a millisecond on a healthy
/// server; past this the meta stream is taken to be stalled.
const META_WAIT: Duration = Duration::from_millis(300);

/// The meta stream's description names the history incarnation it follows.
fn meta_description(history: &str, epoch: &str) -> String {
    format!("natsgate: last publication of each channel of stream {history}, epoch {epoch}")
}

/// The history sequence of a message the meta stream sourced from stream
/// `history`. nats-server 2.9 sets `Nats-Stream-Source: <stream> <sequence>`;
/// later versions append fields, and suffix the name with `:<hash>` for
/// external sources. Anything else is not trusted.
fn source_sequence(headers: &HeaderMap, history: &str) -> Option<u64> {
    let value = headers.get("Nats-Stream-Source")?;
    let mut fields = value.as_str().split_whitespace();
    let name = fields.next()?;
    if name.split(':').next() != Some(history) {
        return None;
    }
    fields.next()?.parse().ok()
}

/// A delete failed because the message is no longer there (nats-server 2.9
/// answers 10057 "no message found"; later versions may use 10037).
fn message_gone(e: &jetstream::stream::DeleteMessageError) -> bool {
    use jetstream::ErrorCode;
    match e.kind() {
        jetstream::stream::DeleteMessageErrorKind::JetStream(j) => {
            j.error_code() == ErrorCode::NO_MESSAGE_FOUND
                || j.error_code() == ErrorCode::SEQUENCE_NOT_FOUND
                || (j.error_code() == ErrorCode::STREAM_MESSAGE_DELETE_FAILED && j.to_string().contains("no message"))
        }
        _ => false,
    }
}

fn stream_not_found(kind: jetstream::context::GetStreamErrorKind) -> bool {
    matches!(kind, jetstream::context::GetStreamErrorKind::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

fn is_stream_not_found(e: &jetstream::stream::LastRawMessageError) -> bool {
    matches!(e.kind(), jetstream::stream::LastRawMessageErrorKind::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
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

/// The servers of a `nats_url`: comma-separated URLs (`nats://a:4222,nats://b:4222`).
/// An unparsable one is a configuration error, named by position only (a
/// URL may hold a password).
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
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

/// What [`NatsBroker::write_marker`] did.
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    Written,
    /// The channel held a message (another write came first).
    Raced,
    /// Not written, or taken back (see the log).
    Skipped,
}

impl NatsBroker {
    /// One read of a channel's history (see [`Broker::history`]); with the
    /// snapshot when it reports position 0 with no marker held to back it.
    async fn read_history(&self, channel: &str, query: &Query) -> Result<(Page, Option<Snapshot>), BrokerError> {
        use jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
        let (size, _) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let size = u64::from(size);
        let namespace = super::subject::namespace_of(channel);
        let subject = self.subjects.channel_subject(channel);
        let snap = self.snapshot(channel, &subject).await?;
        let stream = &snap.stream;
        // The channel's last stored message: its sequence, and the position
        // it stands for (its own sequence, or a marker's position).
        let last = match snap.held {
            0 => None,
            _ => match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(msg) => Some((msg.sequence, marker_of(&msg.headers).unwrap_or(msg.sequence))),
                // Aged out or removed since the snapshot.
                Err(e) if e.kind() == NoMessageFound => None,
                Err(e) => return Err(unavailable(e)),
            },
        };
        let last_held = last.map(|(seq, _)| seq);
        // The position: the channel's last message, held, or when every one
        // aged out or was removed, as the meta stream kept it (0 for a fresh
        // channel, as Centrifugo answers).
        let top = match last {
            Some((_, position)) => position,
            None => self.meta_top(namespace, &snap, &subject).await?,
        };
        let position = Position { offset: top, epoch: snap.epoch.clone() };
        // The channel's oldest held message. A full channel holds
        // history_size + 1: the oldest is the anchor, never shown, only there
        // so that a client positioned at it (which missed exactly
        // history_size) can be told it missed nothing else. A recovery also
        // asks whether it is a marker.
        let oldest = match last_held.is_some() && (snap.held > size || query.since.is_some()) {
            true => match stream.raw_message_builder().sequence(1).next_by_subject(subject.clone()).send().await {
                Ok(msg) => Some((msg.sequence, marker_of(&msg.headers))),
                Err(e) if e.kind() == NoMessageFound => None,
                Err(e) => return Err(unavailable(e)),
            },
            false => None,
        };
        let anchor = oldest.filter(|_| snap.held > size).map(|(seq, _)| seq);
        // Read what the page can need, oldest first: at most history_size
        // messages, one request each (direct gets by subject); markers are
        // skipped (a marker other than the oldest shows a race, see
        // `write_marker`).
        let mut held = Vec::new();
        let mut other_marker = false;
        if let (true, Some(last_seq)) = (query.limit > 0, last_held) {
            let mut seq = match (&query.since, query.reverse) {
                (Some(since), false) => since.offset + 1,
                _ => 1,
            };
            if let Some(anchor) = anchor {
                seq = seq.max(anchor + 1);
            }
            while held.len() < size as usize && seq <= last_seq {
                let next = stream.raw_message_builder().sequence(seq).next_by_subject(subject.clone()).send().await;
                match next {
                    Ok(msg) => {
                        seq = msg.sequence + 1;
                        if marker_of(&msg.headers).is_none() {
                            held.push(from_stored(msg));
                        } else if oldest.is_some_and(|(first, _)| first != msg.sequence) {
                            other_marker = true;
                        }
                    }
                    Err(_) => break,
                }
                if !query.reverse && held.len() >= query.limit {
                    break;
                }
            }
        }
        // Stream sequences are shared by the namespace's channels, so "all
        // after `since` are held" is decided conservatively, and after the
        // reads: never claimed when publications may have been lost.
        let since_held = match &query.since {
            None => true,
            Some(since) => {
                // A held marker stands for the client's position: it is the
                // channel's oldest message (see `write_marker`), so every
                // later one is held. This is how a client given position 0
                // recovers, in any stream. (The reads above saw every held
                // message after it: at most history_size follow it, or the
                // page is over the recovery limit anyway.)
                (oldest.is_some_and(|(_, marker)| marker == Some(since.offset)) && !other_marker)
                // The publication at the client's offset (the anchor
                // included) is still held: all later ones are, since size and
                // age trim the oldest first and a removal takes all up to the
                // channel's last.
                || (since.offset > 0
                    && matches!(stream.get_raw_message(since.offset).await, Ok(m) if m.subject.as_str() == subject))
                // From the very beginning, without a marker (an application's
                // getState that sends offset 0): the stream never lost a
                // message (its first is still held, so nothing aged out, and
                // none was trimmed or purged from inside it), so every
                // publication the channel ever had is held.
                || (since.offset == 0
                    && snap.first_seq <= 1
                    && snap.deleted == 0
                    && stream.get_raw_message(1).await.is_ok_and(|m| m.sequence == 1))
            }
        };
        let mut page = select(held, position, query, since_held)?;
        // A position read from the meta stream proves "nothing missed" only
        // if the meta stream had sourced everything the history stream held:
        // a stalled source could have missed the channel's last publications
        // before they aged out.
        if page.continuous && last_held.is_none() && query.since.is_some() {
            let meta = self.meta_stream(namespace, &snap.epoch).await?;
            let wildcard = self.subjects.namespace_wildcard(namespace);
            if snap.last_seq > 0 && !self.meta_reaches(&meta, namespace, &wildcard, snap.last_seq).await? {
                tracing::warn!(channel, "history meta stream lags its history stream: recovery refused");
                page.continuous = false;
            }
        }
        let unbacked = top == 0 && last_held.is_none();
        Ok((page, unbacked.then_some(snap)))
    }

    /// Backs position 0 of a channel that holds nothing with a marker, once
    /// the meta stream shows the channel really has no later position.
    async fn mark_empty_channel(
        &self,
        channel: &str,
        snap: &Snapshot,
        started: Instant,
    ) -> Result<Marker, BrokerError> {
        let namespace = super::subject::namespace_of(channel);
        let meta = self.meta_stream(namespace, &snap.epoch).await?;
        let wildcard = self.subjects.namespace_wildcard(namespace);
        if snap.last_seq > 0 && !self.meta_reaches(&meta, namespace, &wildcard, snap.last_seq).await? {
            tracing::warn!(channel, "history meta stream lags its history stream: position 0 not marked");
            return Ok(Marker::Skipped);
        }
        // Read again now that the meta stream is known to be current.
        if self.meta_top(namespace, snap, &self.subjects.channel_subject(channel)).await? != 0 {
            return Ok(Marker::Raced);
        }
        self.write_marker(channel, 0, started).await
    }

    /// Stores a marker standing for channel position `position`, kept only
    /// if it is then the channel's oldest message (else it is deleted and
    /// the write lost a race). A removal's marker takes precedence over a
    /// marker for 0 older than it, which is deleted instead. (JetStream's
    /// `Nats-Expected-Last-Subject-Sequence` would check this atomically, but
    /// nats-server 2.9 applies it again to the copy the meta stream sources,
    /// which then stalls.)
    ///
    /// The invariant that makes recovery from a marker sound: a marker is
    /// kept only while nothing of the channel is older, so while held it is
    /// the channel's oldest message, and since ttl and size trim the oldest
    /// first and a removal takes everything up to the channel's last, every
    /// message stored after it is held too. A client at the position a held
    /// marker stands for has lost nothing, provided no publication of the
    /// channel lies between that position and the marker:
    /// - a removal's marker stands for the removed last publication and is
    ///   written right after the purge;
    /// - a marker for 0 is written only when the channel's last message,
    ///   held or kept by the meta stream, is a marker for 0 or there is
    ///   none, read after the meta stream has sourced the whole history
    ///   stream. A publication stored after that read is older than the
    ///   marker, so the marker is deleted, unless the publication is gone by
    ///   then: aged out, which takes history_ttl (the marker is taken back
    ///   when the write took that long), or removed, which leaves the
    ///   removal's marker after it. Recovery therefore also requires that
    ///   no other marker is held (see `read_history`).
    ///
    /// What remains is a channel whose every trace also aged out of the
    /// meta stream (history_meta_ttl, 720 h by default), like Centrifugo,
    /// where such a channel starts a new epoch.
    async fn write_marker(&self, channel: &str, position: u64, started: Instant) -> Result<Marker, BrokerError> {
        use jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
        let Some((_, ttl)) = self.history.for_channel(channel) else { return Ok(Marker::Skipped) };
        let subject = self.subjects.channel_subject(channel);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_POSITION, position.to_string().as_str());
        let sent = self.jetstream.publish_with_headers(subject.clone(), headers, Bytes::new()).await;
        let seq = match sent {
            Ok(ack) => ack.await.map_err(unavailable)?.sequence,
            Err(e) => return Err(unavailable(e)),
        };
        let namespace = super::subject::namespace_of(channel);
        let stream =
            self.jetstream.get_stream_no_info(self.subjects.stream_name(namespace)).await.map_err(unavailable)?;
        let delete = |seq: u64| {
            let stream = &stream;
            async move {
                match stream.delete_message(seq).await {
                    Ok(_) => Ok(()),
                    // Already gone (aged out, purged): as good.
                    Err(e) if message_gone(&e) => Ok(()),
                    Err(e) => Err(unavailable(e)),
                }
            }
        };
        if started.elapsed() >= ttl {
            tracing::warn!(channel, "storing a position marker took longer than history_ttl: taken back");
            delete(seq).await?;
            return Ok(Marker::Skipped);
        }
        for _ in 0..3 {
            let oldest = match stream.raw_message_builder().sequence(1).next_by_subject(subject.clone()).send().await {
                Ok(msg) => msg,
                Err(e) if e.kind() == NoMessageFound => return Ok(Marker::Skipped),
                Err(e) => return Err(unavailable(e)),
            };
            if oldest.sequence == seq {
                return Ok(Marker::Written);
            }
            if position == 0 || marker_of(&oldest.headers) != Some(0) {
                delete(seq).await?;
                return Ok(Marker::Raced);
            }
            // A marker for 0 slipped in between a removal's purge and its
            // marker: it would tell clients at 0 they missed nothing.
            delete(oldest.sequence).await?;
        }
        delete(seq).await?;
        Ok(Marker::Raced)
    }
}

impl NatsBroker {
    /// Stores a publication in the namespace's stream (JetStream acks it);
    /// the stream republishes it to subscribers with its sequence.
    async fn publish_to_history(&self, channel: &str, message: Message) -> Result<Position, BrokerError> {
        let subject = self.subjects.channel_subject(channel);
        let mut headers = encode_headers(&message).unwrap_or_default();
        if let Some(key) = &message.idempotency_key {
            headers.insert("Nats-Msg-Id", msg_id(channel, key).as_str());
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
        // Every position 0 handed out is backed by a marker (see
        // `write_marker`); when another write to the channel wins the race,
        // the page is read again, once.
        let mut raced = false;
        loop {
            let started = Instant::now();
            let (page, unbacked) = self.read_history(channel, &query).await?;
            let Some(snap) = unbacked.filter(|_| !raced) else { return Ok(page) };
            match self.mark_empty_channel(channel, &snap, started).await {
                Ok(Marker::Raced) => raced = true,
                Ok(_) => return Ok(page),
                Err(e) => {
                    // The page stands; only a later recovery from 0 may fail.
                    tracing::warn!(channel, "cannot mark position 0: {e}");
                    return Ok(page);
                }
            }
        }
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        use jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
        let (stream, epoch) = self.stream_of(channel).await?;
        let namespace = super::subject::namespace_of(channel);
        let subject = self.subjects.channel_subject(channel);
        let (last, position) = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(msg) => (msg.sequence, marker_of(&msg.headers).unwrap_or(msg.sequence)),
            Err(e) if e.kind() == NoMessageFound => return Ok(()),
            Err(e) => return Err(unavailable(e)),
        };
        // The position must survive the removal, in the meta stream, which
        // sources asynchronously: wait until it has the last publication.
        let meta = self.meta_stream(namespace, &epoch).await?;
        let kept = self.meta_reaches(&meta, namespace, &subject, last).await?;
        if !kept {
            // It lags: forget the channel's position there rather than keep
            // an older one, which would tell a client that missed `last` it
            // missed nothing. If even that fails, remove nothing.
            tracing::warn!(channel, "history meta stream lags: the channel's position is not kept");
            meta.purge().filter(subject.clone()).await.map_err(unavailable)?;
        }
        // Up to `last` only, what the meta stream has: a publication racing
        // this removal stays, as if it came just after.
        let started = Instant::now();
        stream.purge().filter(subject.clone()).sequence(last + 1).await.map_err(unavailable)?;
        if !kept {
            // One the lagging source delivered meanwhile would be older.
            if let Err(e) = meta.purge().filter(subject.clone()).await {
                tracing::warn!(channel, "cannot clear the channel's position in the meta stream: {e}");
            }
        }
        // A marker for the removed position: clients at it keep recovering,
        // and the channel never looks empty, so no marker for 0 can follow
        // and hide the removal from clients at 0. A publication stored
        // meanwhile moves the position on by itself (the marker is dropped).
        if let Err(e) = self.write_marker(channel, position, started).await {
            tracing::warn!(channel, "history removed, but its position marker could not be stored: {e}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn source(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Stream-Source", value);
        headers
    }

    #[test]
    fn source_sequence_reads_the_origin_sequence() {
        // As nats-server 2.9.10 writes it (seen in its sourced messages).
        assert_eq!(source_sequence(&source("natsgate_chat 42"), "natsgate_chat"), Some(42));
        // Later servers append fields, external sources a hash to the name.
        assert_eq!(source_sequence(&source("natsgate_chat 42 > >"), "natsgate_chat"), Some(42));
        assert_eq!(source_sequence(&source("natsgate_chat:a1b2 42"), "natsgate_chat"), Some(42));
        for bad in ["natsgate_chat2 42", "other 42", "natsgate_chat", "natsgate_chat x", "", " 42"] {
            assert_eq!(source_sequence(&source(bad), "natsgate_chat"), None, "{bad:?}");
        }
        assert_eq!(source_sequence(&HeaderMap::new(), "natsgate_chat"), None);
    }
}
