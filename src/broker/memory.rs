//! In-process broker for a single gateway: `cargo run` with no NATS.

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::history::{select, HistoryConfig, Page, Position, Query};
use super::memory_history::MemoryHistory;
use super::{Answer, AnswerNode, Broker, BrokerError, Deliver, DeliverUserCommand, Message, SubscriptionGuard};

#[derive(Clone)]
enum Sink {
    Channel(Arc<dyn Deliver>),
    User(Arc<dyn DeliverUserCommand>),
    Survey(Arc<dyn Answer>),
    Node(Arc<dyn AnswerNode>),
}

/// Topics are `c:<channel>`, `u:<user bucket>`, `s` (surveys) and
/// `n:<node>` (requests to one gateway), kept apart by prefix.
type Sinks = HashMap<String, Vec<(u64, Sink)>>;

/// Delivers publications straight to the sinks subscribed in this process.
pub struct MemoryBroker {
    inner: Arc<Mutex<State>>,
    history: Mutex<MemoryHistory>,
    maps: Mutex<super::map_state::MemoryMaps>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sinks: Sinks,
}

struct Unsubscribe {
    state: Weak<Mutex<State>>,
    topic: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let mut state = state.lock();
            if let Some(list) = state.sinks.get_mut(&self.topic) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    state.sinks.remove(&self.topic);
                }
            }
        }
    }
}

impl MemoryBroker {
    pub fn new(history: HistoryConfig) -> Self {
        MemoryBroker { inner: Arc::default(), history: Mutex::new(MemoryHistory::new(history)), maps: Mutex::default() }
    }

    fn sinks(&self, topic: &str) -> Vec<Sink> {
        self.inner.lock().sinks.get(topic).map(|l| l.iter().map(|(_, s)| s.clone()).collect()).unwrap_or_default()
    }

    fn add(&self, topic: String, sink: Sink) -> SubscriptionGuard {
        let mut state = self.inner.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.sinks.entry(topic.clone()).or_default().push((id, sink));
        SubscriptionGuard::new(Unsubscribe { state: Arc::downgrade(&self.inner), topic, id })
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, channel: &str, mut message: Message) -> Result<Option<Position>, BrokerError> {
        let mut position = None;
        if message.event.is_none() && !message.skip_history {
            if let Some((pos, fresh)) = self.history.lock().append(channel, &mut message) {
                if !fresh {
                    return Ok(Some(pos));
                }
                position = Some(pos);
            }
        }
        for sink in self.sinks(&format!("c:{channel}")) {
            if let Sink::Channel(sink) = sink {
                sink.deliver(channel, message.clone());
            }
        }
        Ok(position)
    }

    async fn history(&self, channel: &str, query: Query) -> Result<Page, BrokerError> {
        let (held, position) = self.history.lock().read(channel).ok_or(BrokerError::NoHistory)?;
        // Offsets here count 1, 2, 3... per channel: nothing after `since` is
        // missing when the oldest held one comes right after it (or earlier).
        let since_held = query.since.as_ref().is_some_and(|s| match held.first() {
            Some(first) => first.offset <= s.offset + 1,
            None => position.offset == s.offset,
        });
        select(held, position, &query, since_held)
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let mut history = self.history.lock();
        if !history.keeps(channel) {
            return Err(BrokerError::NoHistory);
        }
        history.remove(channel);
        Ok(())
    }

    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError> {
        Ok(self.add(format!("c:{channel}"), Sink::Channel(sink)))
    }

    async fn publish_user_command(&self, user: &str, payload: Bytes) -> Result<(), BrokerError> {
        for sink in self.sinks(&format!("u:{}", super::subject::user_bucket(user))) {
            if let Sink::User(sink) = sink {
                sink.deliver_user_command(user, payload.clone());
            }
        }
        Ok(())
    }

    async fn subscribe_user_bucket(
        &self,
        bucket: u32,
        sink: Arc<dyn DeliverUserCommand>,
    ) -> Result<SubscriptionGuard, BrokerError> {
        Ok(self.add(format!("u:{bucket}"), Sink::User(sink)))
    }

    async fn survey(&self, request: Bytes) -> Result<Vec<Bytes>, BrokerError> {
        let answers = self
            .sinks("s")
            .into_iter()
            .filter_map(|s| match s {
                Sink::Survey(handler) => Some(handler.answer(&request)),
                _ => None,
            })
            .collect();
        Ok(answers)
    }

    async fn answer_surveys(&self, handler: Arc<dyn Answer>) -> Result<SubscriptionGuard, BrokerError> {
        Ok(self.add("s".to_string(), Sink::Survey(handler)))
    }

    async fn request_node(&self, node: &str, request: Bytes) -> Result<Option<Bytes>, BrokerError> {
        let handler = self.sinks(&format!("n:{node}")).into_iter().find_map(|s| match s {
            Sink::Node(handler) => Some(handler),
            _ => None,
        });
        match handler {
            Some(handler) => Ok(Some(handler.answer(request).await)),
            None => Ok(None),
        }
    }

    async fn answer_node(&self, node: &str, handler: Arc<dyn AnswerNode>) -> Result<SubscriptionGuard, BrokerError> {
        Ok(self.add(format!("n:{node}"), Sink::Node(handler)))
    }

    fn is_connected(&self) -> bool {
        true
    }

    async fn map_write(
        &self,
        channel: &str,
        key: &str,
        entry: super::MapEntry,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<(), BrokerError> {
        self.maps.lock().write(channel, key, entry, key_ttl);
        Ok(())
    }

    async fn map_read(
        &self,
        channel: &str,
        key: Option<&str>,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<(String, super::MapEntry)>, BrokerError> {
        Ok(self.maps.lock().read(channel, key, key_ttl))
    }

    async fn map_replace(
        &self,
        channel: &str,
        key: &str,
        expected: &super::MapEntry,
        entry: super::MapEntry,
        _key_ttl: Option<std::time::Duration>,
    ) -> Result<bool, BrokerError> {
        Ok(self.maps.lock().replace(channel, key, expected, entry))
    }

    async fn map_scan(
        &self,
        namespace: &str,
        _key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<(String, String, super::MapEntry)>, BrokerError> {
        Ok(self.maps.lock().scan(namespace))
    }

    async fn map_write_if(
        &self,
        channel: &str,
        key: &str,
        entry: &mut super::MapEntry,
        key_ttl: Option<std::time::Duration>,
        condition: &super::MapCondition,
    ) -> Result<Result<u64, &'static str>, BrokerError> {
        Ok(self.maps.lock().write_if(channel, key, entry, key_ttl, condition))
    }

    async fn map_clear(&self, channel: &str, _key_ttl: Option<std::time::Duration>) -> Result<(), BrokerError> {
        self.maps.lock().clear(channel);
        Ok(())
    }

    async fn map_result(&self, channel: &str, idempotency_key: &str) -> Result<Option<super::Position>, BrokerError> {
        Ok(self.maps.lock().result(channel, idempotency_key).map(|(offset, epoch)| super::Position { offset, epoch }))
    }

    async fn map_remember(
        &self,
        channel: &str,
        idempotency_key: &str,
        position: super::Position,
    ) -> Result<(), BrokerError> {
        self.maps.lock().remember(channel, idempotency_key, position.offset, position.epoch);
        Ok(())
    }
}
