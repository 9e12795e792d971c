//! The broker: how publications travel between gateways.
//!
//! One small trait with two implementations: [`nats::NatsBroker`] (core NATS,
//! many gateways) and [`memory::MemoryBroker`] (in-process, one gateway).
//! The hub subscribes a channel when its first local subscriber arrives and
//! drops the returned guard when the last one leaves; the broker hands every
//! publication of a subscribed channel to the [`Deliver`] sink.

pub mod memory;
pub mod nats;
pub mod subject;

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::ClientInfo;

/// A publication as it travels through the broker. On NATS the body is
/// `data` and the rest rides in headers, so direct NATS publishers and the
/// HTTP API produce the same messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub data: Bytes,
    /// Publisher, when a client published.
    pub info: Option<ClientInfo>,
    pub tags: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Receives publications for subscribed channels (the hub).
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, channel: &str, message: Message);
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
    /// Publishes to a channel; returns once the broker accepted the message.
    async fn publish(&self, channel: &str, message: Message) -> Result<(), BrokerError>;

    /// Starts delivering a channel's publications to `sink` until the guard
    /// is dropped. Returns once the subscription is active, so a publication
    /// made after this returns is delivered.
    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError>;

    /// Whether the broker currently reaches its backend.
    fn is_connected(&self) -> bool;
}
