//! The broker: how publications travel between gateways.
//!
//! One small trait with two implementations: [`nats::NatsBroker`] (core NATS,
//! many gateways) and [`memory::MemoryBroker`] (in-process, one gateway).
//! The hub subscribes a channel when its first local subscriber arrives and
//! drops the returned guard when the last one leaves; the broker hands every
//! publication of a subscribed channel to the [`Deliver`] sink.

pub mod history;
pub mod map_state;
pub mod memory;
pub(crate) mod memory_history;
pub(crate) mod nats;
pub mod subject;

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::ClientInfo;
pub use history::{HistoryConfig, Page, Position, Query};
pub use map_state::{KeyMode, MapCondition, MapEntry};

/// A publication as it travels through the broker. On NATS the body is
/// `data` and the rest rides in headers, so direct NATS publishers and the
/// HTTP API produce the same messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub data: Bytes,
    /// Publisher, when a client published.
    pub info: Option<ClientInfo>,
    pub tags: HashMap<String, String>,
    /// When it was published (Unix milliseconds), if the publisher said.
    pub time_ms: Option<u64>,
    /// Set for join/leave events, which carry `info` and no data.
    pub event: Option<PresenceEvent>,
    /// Position in the channel's history (0: not kept in history).
    pub offset: u64,
    /// The offset before this one in the channel, when the broker knows it.
    pub prev_offset: Option<u64>,
    /// Publishing: deduplicate repeated publishes with this key.
    pub idempotency_key: Option<String>,
    /// Publishing: deliver without keeping it in history.
    pub skip_history: bool,
    /// A hidden position marker (NATS history only; see `nats.rs`): the
    /// channel position it stands for. Never delivered nor returned.
    pub marker: Option<u64>,
    /// Map channels: the key this publication sets (or removes).
    pub key: Option<String>,
    /// Map channels: the publication removes `key`.
    pub removed: bool,
    /// Published with the delta flag (issue #20): subscribers that asked for
    /// fossil deltas get a delta against the channel's previous publication.
    pub delta: bool,
    /// Map channels, with `delta`: the offset of the publication that set
    /// the key's previous value, the base of this one's delta (0: none; the
    /// key was new, or its previous change was never published). Gateways
    /// make the delta only when they hold that very value (see
    /// `crate::hub`'s key bases).
    pub key_base: u64,
}

impl From<Message> for crate::protocol::Publication {
    /// What subscribers see of a broker message (history, recovery, live).
    fn from(m: Message) -> Self {
        crate::protocol::Publication {
            data: m.data,
            info: m.info,
            offset: m.offset,
            tags: m.tags,
            key: m.key.unwrap_or_default(),
            removed: m.removed,
            delta: false,
            ..Default::default()
        }
    }
}

/// A client joined or left a channel (namespaces with `join_leave`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceEvent {
    Join,
    Leave,
}

impl PresenceEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceEvent::Join => "join",
            PresenceEvent::Leave => "leave",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "join" => Some(PresenceEvent::Join),
            "leave" => Some(PresenceEvent::Leave),
            _ => None,
        }
    }
}

/// Now in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The asked-for position (epoch or offset) is not in the history.
    #[error("unrecoverable position")]
    UnrecoverablePosition,
    /// The channel keeps no history.
    #[error("history not available for the channel")]
    NoHistory,
}

/// Receives publications for subscribed channels (the hub).
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, channel: &str, message: Message);
}

/// Receives user commands (see [`crate::user_command`]) addressed to one
/// user's connections.
pub trait DeliverUserCommand: Send + Sync + 'static {
    fn deliver_user_command(&self, user: &str, payload: Bytes);
}

/// Answers a survey (a question asked of every gateway).
pub trait Answer: Send + Sync + 'static {
    fn answer(&self, request: &[u8]) -> Bytes;
}

/// Answers requests addressed to this gateway alone (the emulation
/// endpoint's commands for a session held here). The answer may wait: it is
/// sent once the future resolves.
pub trait AnswerNode: Send + Sync + 'static {
    fn answer(&self, request: Bytes) -> futures_util::future::BoxFuture<'static, Bytes>;
}

/// Keeps a broker subscription alive; dropping it unsubscribes.
pub struct SubscriptionGuard {
    _inner: Box<dyn Send + Sync>,
}

impl SubscriptionGuard {
    pub fn new(inner: impl Send + Sync + 'static) -> Self {
        SubscriptionGuard { _inner: Box::new(inner) }
    }
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes to a channel; returns once the broker accepted the message,
    /// with its position when the channel keeps history.
    async fn publish(&self, channel: &str, message: Message) -> Result<Option<Position>, BrokerError>;

    /// Reads a channel's history (see [`history::Query`]).
    async fn history(&self, channel: &str, query: Query) -> Result<Page, BrokerError>;

    /// Removes every publication of a channel from its history.
    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError>;

    /// Starts delivering a channel's publications to `sink` until the guard
    /// is dropped. Returns once the subscription is active, so a publication
    /// made after this returns is delivered.
    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError>;

    /// Sends a user command to every gateway serving `user`.
    async fn publish_user_command(&self, user: &str, payload: Bytes) -> Result<(), BrokerError>;

    /// Receives user commands for every user of one bucket
    /// ([`subject::user_bucket`]) until the guard is dropped. A gateway
    /// subscribes only the buckets of users it has connections of; the
    /// sink filters by user.
    async fn subscribe_user_bucket(
        &self,
        bucket: u32,
        sink: Arc<dyn DeliverUserCommand>,
    ) -> Result<SubscriptionGuard, BrokerError>;

    /// Asks every gateway (this one included) and gathers their answers.
    async fn survey(&self, request: Bytes) -> Result<Vec<Bytes>, BrokerError>;

    /// Answers surveys until the guard is dropped.
    async fn answer_surveys(&self, handler: Arc<dyn Answer>) -> Result<SubscriptionGuard, BrokerError>;

    /// Sends a request to one gateway, named by its unique id
    /// ([`crate::context::AppContext::uid`]), and waits for its answer.
    /// `Ok(None)`: no gateway of that id listens (gone, or never existed).
    async fn request_node(&self, node: &str, request: Bytes) -> Result<Option<Bytes>, BrokerError>;

    /// Answers the requests addressed to `node` (this gateway's unique id)
    /// until the guard is dropped.
    async fn answer_node(&self, node: &str, handler: Arc<dyn AnswerNode>) -> Result<SubscriptionGuard, BrokerError>;

    /// Whether the broker currently reaches its backend.
    fn is_connected(&self) -> bool;

    /// Writes one key of a map channel's state, unless the held entry is a
    /// later change ([`MapEntry::supersedes`]). `key_ttl`: the namespace's
    /// `map.key_ttl` (on NATS, the state bucket's `max_age`). Map channels
    /// only (see [`crate::map`]).
    async fn map_write(
        &self,
        _channel: &str,
        _key: &str,
        _entry: MapEntry,
        _key_ttl: Option<std::time::Duration>,
    ) -> Result<(), BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }

    /// [`map_write`](Self::map_write) if the key's live entry meets
    /// `condition` ([`MapCondition::admit`], which also sets `entry`'s
    /// version), checked and written atomically (a compare-and-set on NATS):
    /// `Ok(Err(reason))` when it does not, nothing written; `Ok(Ok(offset))`
    /// with the offset of the live entry it replaced (0: none, a pending
    /// one, or an ephemeral map's), the base of a delta (issue #20).
    async fn map_write_if(
        &self,
        _channel: &str,
        _key: &str,
        _entry: &mut MapEntry,
        _key_ttl: Option<std::time::Duration>,
        _condition: &MapCondition,
    ) -> Result<Result<u64, &'static str>, BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }

    /// `map_clear`: every key of a map channel's state and its idempotent
    /// results go (the caller removes the stream).
    async fn map_clear(&self, _channel: &str, _key_ttl: Option<std::time::Duration>) -> Result<(), BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }

    /// The position an idempotent map write (`idempotency_key`) got, if one
    /// was made in the last [`map_state::IDEMPOTENT_RESULT_TTL`].
    async fn map_result(&self, _channel: &str, _idempotency_key: &str) -> Result<Option<Position>, BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }

    /// Remembers an idempotent map write's position (see
    /// [`map_result`](Self::map_result)).
    async fn map_remember(
        &self,
        _channel: &str,
        _idempotency_key: &str,
        _position: Position,
    ) -> Result<(), BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }

    /// A map channel's live keys (only `key`, when given) in key order,
    /// removals and expired keys left out.
    async fn map_read(
        &self,
        _channel: &str,
        _key: Option<&str>,
        _key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<(String, MapEntry)>, BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }

    /// Replaces one key's entry with `entry` only if the held entry still is
    /// `expected` (compare-and-set): `Ok(false)` when it changed or is gone.
    /// Refreshes a live key's time and claims an expired key for its
    /// removal, so two gateways never both do it (`crate::map::presence`).
    async fn map_replace(
        &self,
        _channel: &str,
        _key: &str,
        _expected: &MapEntry,
        _entry: MapEntry,
        _key_ttl: Option<std::time::Duration>,
    ) -> Result<bool, BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }

    /// Every entry of the map channels of `namespace` as `(channel, key,
    /// entry)`, expired ones included (removals not): what the expiry sweep
    /// reads.
    async fn map_scan(
        &self,
        _namespace: &str,
        _key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<(String, String, MapEntry)>, BrokerError> {
        Err(BrokerError::Unavailable("this broker keeps no map state".into()))
    }
}
