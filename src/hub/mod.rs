//! The hub: this gateway's channels, their local subscribers, and fan-out.
//!
//! A channel is subscribed on the broker while it has at least one local
//! subscriber (the guard lives in the channel and unsubscribes when the
//! channel goes). Each publication is encoded at most once per protocol and
//! the same bytes are queued to every local subscriber; queues never block,
//! so a slow client cannot slow the others down.
//!
//! Locking: the channel index is sharded ([`index`]) and its locks are held
//! only for a lookup; a fan-out reaches its channel through the broker's sink
//! and holds only that channel's subscriber list ([`channel`]). So a fan-out
//! holds nothing another channel's operations need.
//!
//! Ordering: a new subscriber's pushes (publications, joins, leaves) are held
//! until the session calls [`Hub::activate`], which it does once the reply
//! announcing the subscription (subscribe reply, connect reply, subscribe
//! push) is queued. So no push of a channel can precede that reply, whatever
//! the broker and the runtime's threads do. The same hold lets a recovering
//! subscription drop the live publications its reply already carried.

mod channel;
mod delivery;
mod index;
mod key_bases;
#[cfg(test)]
mod tests;
mod users;

use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::broker::{Broker, BrokerError};
use crate::outbox::Outbox;
use crate::protocol::{ClientInfo, Protocol};
use crate::user_command::UserCommand;
use channel::{Channel, Subscriber};
pub use delivery::{escaped_state, recovered_deltas, recovered_map_deltas, Delivery};
use index::Index;
use users::Users;

/// What the hub knows of a connected client.
pub struct ClientHandle {
    /// Process-local key; cheap to compare and hash.
    pub key: u64,
    /// The client ID sent to the client (a UUID).
    pub client_id: String,
    pub user: String,
    pub protocol: Protocol,
    /// `info` from the connection token, for presence and publications.
    pub conn_info: Bytes,
    pub outbox: Arc<Outbox>,
    /// User commands (server API, or the hub's own insufficient-state
    /// unsubscribe) for this connection's session.
    pub commands: mpsc::Sender<Box<UserCommand>>,
}

impl ClientHandle {
    /// Tells the session to unsubscribe `channel` with "insufficient state"
    /// (2500: the SDK subscribes again and recovers or reloads); a session
    /// whose command queue is full is closed with 3010 instead, and
    /// resubscribes on reconnect. Used after a gap in a positioned channel
    /// and by a shared poll channel's epoch change.
    pub fn unsubscribe_insufficient_state(&self, channel: &str) {
        let command =
            UserCommand::Unsubscribe { channel: channel.to_string(), client: String::new(), insufficient_state: true };
        if self.commands.try_send(Box::new(command)).is_err() {
            self.outbox.close(crate::protocol::codes::Disconnect::INSUFFICIENT_STATE);
        }
    }
}

pub struct Hub {
    channels: Index,
    users: RwLock<Users>,
    broker: Arc<dyn Broker>,
    next_key: AtomicU64,
}

impl Hub {
    pub fn new(broker: Arc<dyn Broker>) -> Arc<Hub> {
        Arc::new(Hub {
            channels: Index::new(),
            users: RwLock::new(Users::default()),
            broker,
            next_key: AtomicU64::new(1),
        })
    }

    /// The broker, for in-process tests that publish around the hub.
    #[cfg(test)]
    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a local subscriber; subscribes the broker for the first one.
    /// Returns once publications of the channel reach this gateway; they
    /// reach the client from [`Hub::activate`] on, held until then.
    pub async fn subscribe(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        chan_info: Bytes,
        join_leave: bool,
        positioned: bool,
    ) -> Result<(), BrokerError> {
        self.subscribe_with(channel, client, chan_info, join_leave, positioned, Delivery::default()).await
    }

    /// [`Hub::subscribe`] with delta compression or a tags filter (issue #20).
    pub async fn subscribe_with(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        chan_info: Bytes,
        join_leave: bool,
        positioned: bool,
        delivery: Delivery,
    ) -> Result<(), BrokerError> {
        let mut subscriber = Subscriber::new(client.clone(), chan_info, join_leave, positioned);
        let mut delivery = Some(delivery);
        let entry = loop {
            let entry = self.channels.get_or_create(channel);
            if let Some(delivery) = delivery.take() {
                subscriber = entry.with_delivery(subscriber, delivery);
            }
            match entry.join(client.key, subscriber) {
                Ok(()) => break entry,
                Err(back) => {
                    // Its last subscriber left meanwhile: make a new one.
                    subscriber = back;
                    self.channels.remove(&entry);
                }
            }
        };
        // Should the caller stop waiting (its connection closed), the
        // subscriber goes too.
        let mut undo = Undo { hub: self, channel: &entry, key: client.key, armed: true };
        entry.broker_sub.get_or_try_init(|| self.broker.subscribe(channel, entry.sink())).await?;
        undo.armed = false;
        Ok(())
    }

    /// Lets a subscriber's pushes reach its client, once the reply that
    /// announces the subscription is queued. Held publications the reply
    /// already carried or stood for (offset <= `sent`) are dropped; the
    /// others, and held joins and leaves, are queued in order.
    pub fn activate(&self, channel: &str, client_key: u64, sent: u64) {
        if let Some(entry) = self.channels.get(channel) {
            entry.activate(client_key, sent);
        }
    }

    /// A delta subscriber recovered: its next publication may be a delta,
    /// and `last` (the last recovered publication, the channel's latest)
    /// may serve as the channel's delta base.
    pub fn delta_recovered(&self, channel: &str, client_key: u64, last: Option<(u64, Bytes)>) {
        if let Some(entry) = self.channels.get(channel) {
            entry.delta_recovered(client_key, last);
        }
    }

    /// Map channels: key values this gateway read (state entries, recovered
    /// publications) as (key, offset, value), kept as delta bases while the
    /// channel has local subscribers (offsets 0 are skipped).
    pub fn map_seed<'a>(&self, channel: &str, values: impl IntoIterator<Item = (&'a str, u64, &'a Bytes)>) {
        if let Some(entry) = self.channels.get(channel) {
            entry.keys.seed(values);
        }
    }

    /// A map delta subscriber's keys whose next publication it gets whole
    /// (set before [`Hub::activate`]).
    pub fn map_whole_keys(&self, channel: &str, client_key: u64, keys: std::collections::HashSet<String>) {
        if let Some(entry) = self.channels.get(channel) {
            entry.whole_keys(client_key, keys);
        }
    }

    /// Removes a local subscriber; the last one out drops the broker subscription.
    pub fn unsubscribe(&self, channel: &str, client_key: u64) {
        if let Some(entry) = self.channels.get(channel) {
            self.leave(&entry, client_key);
        }
    }

    fn leave(&self, entry: &Arc<Channel>, client_key: u64) {
        if entry.leave(client_key) {
            self.channels.remove(entry);
        }
    }

    pub fn num_channels(&self) -> usize {
        // Not the index's size: a channel being made or closed has none.
        self.channels.all().iter().filter(|c| c.len() > 0).count()
    }

    pub fn num_subscriptions(&self) -> usize {
        self.channels.all().iter().map(|c| c.len()).sum()
    }

    /// Channels with their local subscriber counts.
    pub fn channel_counts(&self) -> Vec<(String, usize)> {
        self.channels.all().iter().map(|c| (c.name.clone(), c.len())).filter(|(_, n)| *n > 0).collect()
    }

    /// Presence of a channel on this gateway: client ID -> ClientInfo.
    pub fn local_presence(&self, channel: &str) -> HashMap<String, ClientInfo> {
        self.channels.get(channel).map(|c| c.presence()).unwrap_or_default()
    }
}

/// Takes a subscriber back out unless disarmed.
struct Undo<'a> {
    hub: &'a Hub,
    channel: &'a Arc<Channel>,
    key: u64,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.hub.leave(self.channel, self.key);
        }
    }
}
