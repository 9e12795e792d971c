//! In-process broker for a single gateway: `cargo run` with no NATS.

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::{Broker, BrokerError, Deliver, Message, SubscriptionGuard};

type Sinks = HashMap<String, Vec<(u64, Arc<dyn Deliver>)>>;

/// Delivers publications straight to the sinks subscribed in this process.
#[derive(Default)]
pub struct MemoryBroker {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sinks: Sinks,
}

struct Unsubscribe {
    state: Weak<Mutex<State>>,
    channel: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let mut state = state.lock();
            if let Some(list) = state.sinks.get_mut(&self.channel) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    state.sinks.remove(&self.channel);
                }
            }
        }
    }
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, channel: &str, message: Message) -> Result<(), BrokerError> {
        let sinks: Vec<Arc<dyn Deliver>> = match self.inner.lock().sinks.get(channel) {
            Some(list) => list.iter().map(|(_, s)| s.clone()).collect(),
            None => return Ok(()),
        };
        for sink in sinks {
            sink.deliver(channel, message.clone());
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str, sink: Arc<dyn Deliver>) -> Result<SubscriptionGuard, BrokerError> {
        let mut state = self.inner.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.sinks.entry(channel.to_string()).or_default().push((id, sink));
        Ok(SubscriptionGuard::new(Unsubscribe { state: Arc::downgrade(&self.inner), channel: channel.to_string(), id }))
    }

    fn is_connected(&self) -> bool {
        true
    }
}
