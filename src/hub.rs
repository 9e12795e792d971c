//! The hub: this gateway's channels, their local subscribers, and fan-out.
//!
//! A channel is subscribed on the broker while it has at least one local
//! subscriber (the guard lives in the channel entry and unsubscribes when the
//! entry goes). Each publication is encoded at most once per protocol and the
//! same bytes are queued to every local subscriber; queues never block, so a
//! slow client cannot slow the others down.

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, OnceCell};

use crate::broker::subject::user_bucket;
use crate::broker::PresenceEvent;
use crate::broker::{now_ms, Broker, BrokerError, Deliver, DeliverUserCommand, Message, SubscriptionGuard};
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::protocol::{ClientInfo, Join, Leave, Protocol, Publication, Push, Reply};
use crate::user_command::UserCommand;

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

/// This gateway's connections by user, and the user buckets they need.
#[derive(Default)]
struct Users {
    /// user -> that user's connections here.
    by_name: HashMap<String, HashMap<u64, Arc<ClientHandle>>>,
    /// User bucket -> (users here in it, its broker subscription). The
    /// subscription lives while the bucket has a local user.
    buckets: HashMap<u32, (usize, Arc<OnceCell<SubscriptionGuard>>)>,
}

/// One local subscription of a channel.
struct Subscriber {
    client: Arc<ClientHandle>,
    /// `chan_info` for presence and publications.
    chan_info: Bytes,
    /// Receives join and leave pushes.
    join_leave: bool,
    /// Positioned: told (2500/3010) when the gateway sees a publication gap.
    positioned: bool,
    /// A gap was seen: nothing more is delivered until the session drops
    /// the subscription, so the client never sees a later publication first.
    stalled: std::sync::atomic::AtomicBool,
    /// While the subscription recovers, live publications wait here
    /// (offset, encoded) so they are neither lost nor sent twice.
    pending: parking_lot::Mutex<Option<Vec<(u64, Bytes)>>>,
}

/// Live publications held for one recovering subscriber, at most.
const MAX_PENDING: usize = 10_000;

struct Entry {
    subscribers: HashMap<u64, Subscriber>,
    /// Offset of the last publication seen (history channels), to detect gaps.
    last_offset: std::sync::atomic::AtomicU64,
    /// Filled once the broker subscription is active; shared by concurrent
    /// first subscribers so the broker is asked once.
    broker_sub: Arc<OnceCell<SubscriptionGuard>>,
}

pub struct Hub {
    channels: RwLock<HashMap<String, Entry>>,
    users: RwLock<Users>,
    broker: Arc<dyn Broker>,
    next_key: AtomicU64,
}

impl Hub {
    pub fn new(broker: Arc<dyn Broker>) -> Arc<Hub> {
        Arc::new(Hub {
            channels: RwLock::new(HashMap::new()),
            users: RwLock::new(Users::default()),
            broker,
            next_key: AtomicU64::new(1),
        })
    }

    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers an authenticated connection. Returns once user commands
    /// for the user reach this gateway: at once when the user's
    /// bucket is already subscribed, after one broker round trip otherwise.
    pub async fn add_client(self: &Arc<Self>, client: &Arc<ClientHandle>) -> Result<(), BrokerError> {
        let bucket = user_bucket(&client.user);
        let cell = {
            let mut users = self.users.write();
            let Users { by_name, buckets } = &mut *users;
            let (users_in_bucket, cell) = buckets.entry(bucket).or_insert_with(|| (0, Arc::new(OnceCell::new())));
            if !by_name.contains_key(&client.user) {
                *users_in_bucket += 1;
            }
            by_name.entry(client.user.clone()).or_default().insert(client.key, client.clone());
            cell.clone()
        };
        if cell.initialized() {
            return Ok(());
        }
        let sink: Arc<dyn DeliverUserCommand> = self.clone();
        if let Err(e) = cell.get_or_try_init(|| self.broker.subscribe_user_bucket(bucket, sink)).await {
            self.remove_client(client, []);
            return Err(e);
        }
        Ok(())
    }

    /// Forgets a connection and all its subscriptions.
    pub fn remove_client(&self, client: &ClientHandle, channels: impl IntoIterator<Item = String>) {
        for channel in channels {
            self.unsubscribe(&channel, client.key);
        }
        let mut users = self.users.write();
        let Users { by_name, buckets } = &mut *users;
        let Some(connections) = by_name.get_mut(&client.user) else { return };
        connections.remove(&client.key);
        if connections.is_empty() {
            by_name.remove(&client.user);
            let bucket = user_bucket(&client.user);
            if let Some(entry) = buckets.get_mut(&bucket) {
                entry.0 -= 1;
                if entry.0 == 0 {
                    // Dropping the guard unsubscribes the bucket.
                    buckets.remove(&bucket);
                }
            }
        }
    }

    /// Connections of a user on this gateway.
    pub fn user_clients(&self, user: &str) -> Vec<Arc<ClientHandle>> {
        self.users.read().by_name.get(user).map(|c| c.values().cloned().collect()).unwrap_or_default()
    }

    /// Every connection on this gateway.
    pub fn all_clients(&self) -> Vec<Arc<ClientHandle>> {
        self.users.read().by_name.values().flat_map(|c| c.values().cloned()).collect()
    }

    /// Adds a local subscriber; subscribes the broker for the first one.
    /// While `recovering`, live publications for it wait until [`Hub::activate`].
    /// Returns once publications of the channel reach this client.
    pub async fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        client: &Arc<ClientHandle>,
        chan_info: Bytes,
        join_leave: bool,
        recovering: bool,
        positioned: bool,
    ) -> Result<(), BrokerError> {
        let cell = {
            let mut channels = self.channels.write();
            let entry = channels.entry(channel.to_string()).or_insert_with(|| Entry {
                subscribers: HashMap::new(),
                last_offset: AtomicU64::new(0),
                broker_sub: Arc::new(OnceCell::new()),
            });
            let pending = parking_lot::Mutex::new(recovering.then(Vec::new));
            let stalled = std::sync::atomic::AtomicBool::new(false);
            let sub = Subscriber { client: client.clone(), chan_info, join_leave, positioned, stalled, pending };
            entry.subscribers.insert(client.key, sub);
            entry.broker_sub.clone()
        };
        let sink: Arc<dyn Deliver> = self.clone();
        let result = cell.get_or_try_init(|| self.broker.subscribe(channel, sink)).await;
        if let Err(e) = result {
            self.unsubscribe(channel, client.key);
            return Err(e);
        }
        Ok(())
    }

    /// Ends a subscriber's recovery: queues the live publications that arrived
    /// meanwhile, except those the recovery already sent (offset <= `sent`).
    pub fn activate(&self, channel: &str, client_key: u64, sent: u64) {
        let channels = self.channels.read();
        let Some(sub) = channels.get(channel).and_then(|e| e.subscribers.get(&client_key)) else { return };
        let mut pending = sub.pending.lock();
        for (offset, bytes) in pending.take().unwrap_or_default() {
            if offset == 0 || offset > sent {
                sub.client.outbox.push(bytes);
            }
        }
    }

    /// Removes a local subscriber; the last one out drops the broker subscription.
    pub fn unsubscribe(&self, channel: &str, client_key: u64) {
        let mut channels = self.channels.write();
        if let Some(entry) = channels.get_mut(channel) {
            entry.subscribers.remove(&client_key);
            if entry.subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    pub fn num_channels(&self) -> usize {
        self.channels.read().len()
    }

    pub fn num_subscriptions(&self) -> usize {
        self.channels.read().values().map(|e| e.subscribers.len()).sum()
    }

    /// Channels with their local subscriber counts.
    pub fn channel_counts(&self) -> Vec<(String, usize)> {
        self.channels.read().iter().map(|(c, e)| (c.clone(), e.subscribers.len())).collect()
    }

    /// Presence of a channel on this gateway: client ID -> ClientInfo.
    pub fn local_presence(&self, channel: &str) -> HashMap<String, ClientInfo> {
        let channels = self.channels.read();
        let Some(entry) = channels.get(channel) else { return HashMap::new() };
        entry
            .subscribers
            .values()
            .map(|s| {
                let info = ClientInfo {
                    user: s.client.user.clone(),
                    client: s.client.client_id.clone(),
                    conn_info: s.client.conn_info.clone(),
                    chan_info: s.chan_info.clone(),
                };
                (s.client.client_id.clone(), info)
            })
            .collect()
    }

    pub fn num_clients(&self) -> usize {
        self.users.read().by_name.values().map(HashMap::len).sum()
    }

    pub fn num_users(&self) -> usize {
        self.users.read().by_name.len()
    }
}

impl Deliver for Hub {
    fn deliver(&self, channel: &str, message: Message) {
        let channels = self.channels.read();
        let Some(entry) = channels.get(channel) else { return };
        if let Some(sent) = message.time_ms {
            metrics().delivery_lag.observe(now_ms().saturating_sub(sent) as f64 / 1000.0);
        }
        if let Some(event) = message.event {
            deliver_presence_event(channel, entry, event, message.info.unwrap_or_default());
            return;
        }
        if message.offset > 0 {
            let last = entry.last_offset.swap(message.offset, Ordering::Relaxed);
            // The stream says which offset came before this one in the channel.
            if last != 0 && message.prev_offset.is_some_and(|prev| prev != last) {
                tracing::debug!(channel, last, offset = message.offset, "publication gap");
                for sub in entry.subscribers.values().filter(|s| s.positioned) {
                    if sub.stalled.swap(true, Ordering::Relaxed) {
                        continue;
                    }
                    let command = UserCommand::Unsubscribe {
                        channel: channel.to_string(),
                        client: String::new(),
                        insufficient_state: true,
                    };
                    if sub.client.commands.try_send(Box::new(command)).is_err() {
                        sub.client.outbox.close(crate::protocol::codes::Disconnect::INSUFFICIENT_STATE);
                    }
                }
            }
        }
        // A position marker only moves the channel's offset (so the next
        // publication, which names it as previous, is no gap).
        if message.marker.is_some() {
            return;
        }
        let publication = Publication::from(message);
        let mut encoded = Encoded::default();
        for sub in entry.subscribers.values().filter(|s| !s.stalled.load(Ordering::Relaxed)) {
            if let Some(bytes) = encoded.get(sub.client.protocol, channel, &publication) {
                let mut pending = sub.pending.lock();
                match pending.as_mut() {
                    Some(held) if held.len() < MAX_PENDING => held.push((publication.offset, bytes)),
                    // Too much arrived while recovering: the client must start over.
                    Some(_) => sub.client.outbox.close(crate::protocol::codes::Disconnect::INSUFFICIENT_STATE),
                    None => {
                        sub.client.outbox.push(bytes);
                    }
                }
            }
        }
    }
}

/// Join and leave pushes go only to subscribers that asked for them.
fn deliver_presence_event(channel: &str, entry: &Entry, event: PresenceEvent, info: ClientInfo) {
    let mut push = Push { channel: channel.to_string(), ..Default::default() };
    match event {
        PresenceEvent::Join => push.join = Some(Join { info: Some(info) }),
        PresenceEvent::Leave => push.leave = Some(Leave { info: Some(info) }),
    }
    let reply = Reply { push: Some(push), ..Default::default() };
    let mut json: Option<Option<Bytes>> = None;
    let mut protobuf: Option<Option<Bytes>> = None;
    for sub in entry.subscribers.values().filter(|s| s.join_leave) {
        let slot = match sub.client.protocol {
            Protocol::Json => &mut json,
            Protocol::Protobuf => &mut protobuf,
        };
        if let Some(bytes) = slot.get_or_insert_with(|| sub.client.protocol.encode_one(&reply).ok()) {
            sub.client.outbox.push(bytes.clone());
        }
    }
}

impl DeliverUserCommand for Hub {
    fn deliver_user_command(&self, user: &str, payload: bytes::Bytes) {
        let command: UserCommand = match serde_json::from_slice(&payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("ignoring malformed user command: {e}");
                return;
            }
        };
        for client in self.user_clients(user) {
            if command.targets(&client.client_id) && client.commands.try_send(Box::new(command.clone())).is_err() {
                tracing::warn!(client = %client.client_id, "user command queue full: command dropped");
            }
        }
    }
}

/// One publication encoded lazily, at most once per protocol.
#[derive(Default)]
struct Encoded {
    json: Option<Option<Bytes>>,
    protobuf: Option<Bytes>,
}

impl Encoded {
    fn get(&mut self, protocol: Protocol, channel: &str, publication: &Publication) -> Option<Bytes> {
        match protocol {
            Protocol::Protobuf => {
                // Protobuf embeds bytes as they are; encoding cannot fail.
                self.protobuf
                    .get_or_insert_with(|| encode(Protocol::Protobuf, channel, publication).unwrap_or_default());
                self.protobuf.clone()
            }
            Protocol::Json => self
                .json
                .get_or_insert_with(|| {
                    // JSON clients get data embedded as raw JSON: anything else
                    // (a direct NATS publisher sending binary) cannot reach them.
                    let encoded = encode(Protocol::Json, channel, publication);
                    if encoded.is_none() {
                        metrics().dropped_publications.with_label_values(&["invalid_json"]).inc();
                        tracing::warn!(channel, "publication data is not valid JSON: not delivered to JSON clients");
                    }
                    encoded
                })
                .clone(),
        }
    }
}

fn encode(protocol: Protocol, channel: &str, publication: &Publication) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(publication.data.len() + channel.len() + 48);
    protocol.encode_publication_push(channel, publication, &mut out).ok()?;
    Some(out.freeze())
}
