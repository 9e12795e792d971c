//! Core NATS broker: one NATS subscription per channel with local subscribers.
//!
//! On the wire a publication is a plain NATS message on the channel's subject
//! (see [`super::subject`]): the body is the publication data, and optional
//! metadata rides in headers, so any NATS client can publish to a channel.

use async_nats::HeaderMap;
use async_trait::async_trait;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::task::JoinHandle;

use super::subject::SubjectMap;
use super::{Broker, BrokerError, Deliver, Message, SubscriptionGuard};
use crate::protocol::ClientInfo;

/// Header with the publication tags as a JSON object of strings.
pub const HEADER_TAGS: &str = "Natsgate-Tags";
/// Header with the publisher's ClientInfo as JSON (client publications).
pub const HEADER_INFO: &str = "Natsgate-Info";

pub struct NatsBroker {
    client: async_nats::Client,
    subjects: SubjectMap,
}

impl NatsBroker {
    pub async fn connect(url: &str, subjects: SubjectMap) -> Result<Self, BrokerError> {
        let client = async_nats::ConnectOptions::new()
            .name("natsgate")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        Ok(NatsBroker { client, subjects })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
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
    (!headers.is_empty()).then_some(headers)
}

/// Reads a NATS message back into a publication. Malformed metadata is
/// dropped (with a log line), the data itself is kept.
pub fn decode_message(msg: async_nats::Message) -> Message {
    let mut out = Message { data: msg.payload, ..Default::default() };
    if let Some(headers) = &msg.headers {
        if let Some(tags) = headers.get(HEADER_TAGS) {
            match serde_json::from_str(tags.as_str()) {
                Ok(tags) => out.tags = tags,
                Err(e) => tracing::warn!(subject = %msg.subject, "ignoring malformed {HEADER_TAGS} header: {e}"),
            }
        }
        if let Some(info) = headers.get(HEADER_INFO) {
            match serde_json::from_str::<ClientInfo>(info.as_str()) {
                Ok(info) => out.info = Some(info),
                Err(e) => tracing::warn!(subject = %msg.subject, "ignoring malformed {HEADER_INFO} header: {e}"),
            }
        }
    }
    out
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
    async fn publish(&self, channel: &str, message: Message) -> Result<(), BrokerError> {
        let subject = self.subjects.channel_subject(channel);
        let result = match encode_headers(&message) {
            Some(headers) => self.client.publish_with_headers(subject, headers, message.data).await,
            None => self.client.publish(subject, message.data).await,
        };
        result.map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        // A flush round-trip means the server has the message.
        self.client.flush().await.map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError> {
        let subject = self.subjects.channel_subject(channel);
        let mut subscriber =
            self.client.subscribe(subject).await.map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        // The SUB must reach the server before we report the channel active.
        self.client.flush().await.map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let channel = channel.to_string();
        let task = tokio::spawn(async move {
            while let Some(msg) = subscriber.next().await {
                sink.deliver(&channel, decode_message(msg));
            }
        });
        Ok(SubscriptionGuard::new(AbortOnDrop(task)))
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
