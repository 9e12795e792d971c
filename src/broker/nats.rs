//! Core NATS broker: one NATS subscription per channel with local subscribers.
//!
//! On the wire a publication is a plain NATS message on the channel's subject
//! (see [`super::subject`]): the body is the publication data, and optional
//! metadata rides in headers, so any NATS client can publish to a channel.

use async_nats::HeaderMap;
use async_trait::async_trait;
use futures_util::StreamExt;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

use super::subject::SubjectMap;
use super::{Answer, Broker, BrokerError, Deliver, DeliverControl, Message, SubscriptionGuard};
use crate::protocol::ClientInfo;

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
    subjects: SubjectMap,
}

impl NatsBroker {
    pub async fn connect(url: &str, subjects: SubjectMap) -> Result<Self, BrokerError> {
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
        Ok(NatsBroker { client, subjects })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Subscribes a subject, confirms the SUB with the server, and hands each
    /// message to `handle` on a task that ends when the guard is dropped.
    async fn listen(
        &self,
        subject: String,
        mut handle: impl FnMut(async_nats::Message) + Send + 'static,
    ) -> Result<SubscriptionGuard, BrokerError> {
        let mut subscriber = self.client.subscribe(subject).await.map_err(unavailable)?;
        // The SUB must reach the server before we report the subscription active.
        self.client.flush().await.map_err(unavailable)?;
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
        if let Some(tags) = headers.get(HEADER_TAGS) {
            match serde_json::from_str(tags.as_str()) {
                Ok(tags) => out.tags = tags,
                Err(e) => tracing::warn!(subject = %msg.subject, "ignoring malformed {HEADER_TAGS} header: {e}"),
            }
        }
        out.event = headers.get(HEADER_EVENT).and_then(|e| super::PresenceEvent::parse(e.as_str()));
        out.time_ms = headers.get(HEADER_TIME).and_then(|t| t.as_str().parse().ok());
        if let Some(info) = headers.get(HEADER_INFO) {
            match serde_json::from_str::<ClientInfo>(info.as_str()) {
                Ok(info) => out.info = Some(info),
                Err(e) => tracing::warn!(subject = %msg.subject, "ignoring malformed {HEADER_INFO} header: {e}"),
            }
        }
    }
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
        result.map_err(unavailable)?;
        // A flush round-trip means the server has the message.
        self.client.flush().await.map_err(unavailable)
    }

    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError> {
        let channel = channel.to_string();
        self.listen(self.subjects.channel_subject(&channel), move |msg| sink.deliver(&channel, decode_message(msg))).await
    }

    async fn publish_user(&self, user: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.client.publish(self.subjects.user_subject(user), payload).await.map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)
    }

    async fn subscribe_user(&self, user: &str, sink: Arc<dyn DeliverControl>) -> Result<SubscriptionGuard, BrokerError> {
        let user = user.to_string();
        self.listen(self.subjects.user_subject(&user), move |msg| sink.control(&user, msg.payload)).await
    }

    async fn survey(&self, request: Bytes) -> Result<Vec<Bytes>, BrokerError> {
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        self.client
            .publish_with_reply(self.subjects.survey_subject(), inbox, request)
            .await
            .map_err(unavailable)?;
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
