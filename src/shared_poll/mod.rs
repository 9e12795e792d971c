//! Shared poll subscriptions (Centrifugo v6.9, centrifuge `shared_poll.go`):
//! a client subscribes to a `subscription_type: shared_poll` channel
//! (`SubscribeRequest.type` 4), then tracks keys with `sub_refresh` type 1
//! (batches of keys signed by the backend, see [`signature`]) and untracks
//! them with type 2. The gateway polls the backend's `shared_poll_refresh`
//! proxy for the tracked keys every `refresh_interval` (and at once for a
//! key a client starts tracking), and pushes each key's new data to its
//! trackers as a publication with `key` and `version`. The server API's
//! `shared_poll_publish` pushes data without waiting for the next poll.
//!
//! Across gateways: each gateway polls the keys its own clients track, as
//! each Centrifugo node does. So a key tracked on N gateways is polled at
//! most N times per interval, however many clients track it: the backend
//! load grows with gateways × distinct tracked keys, never with clients.
//! Versions and the versionless epoch are per gateway (per node in
//! Centrifugo), so a client that reconnects elsewhere sees a new epoch and
//! tracks from scratch. `shared_poll_publish` goes through the broker (NATS,
//! or the embedded broker) on the channel's own subject, to which every
//! gateway tracking keys of the channel is subscribed: the publication
//! reaches trackers on every gateway.
//!
//! Bounds: keys per connection (`max_keys_per_connection`), a bounded queue
//! of keys to poll at once per channel (a full queue drops the request; the
//! next timed poll covers the key), a limit on concurrent backend calls per
//! gateway (`shared_poll_concurrency_limit`) and the proxy's timeout. A
//! channel's state and poller go once nobody tracks its keys for
//! `channel_shutdown_delay` (checked at each poll tick).

pub mod api;
pub mod options;
pub mod signature;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Semaphore};

use crate::broker::{Broker, Deliver, Message, SubscriptionGuard};
use crate::hub::ClientHandle;
use crate::protocol::{Protocol, Publication};
use crate::proxy::{pb, Event, Proxy};
use options::{SharedPollMode, SharedPollOptions};

/// `SubscribeRequest.type` / `SubscribeResult.type` of shared poll subscriptions.
pub const SUBSCRIPTION_TYPE: i32 = 4;
/// `SubRefreshRequest.type` of a track and of an untrack.
pub const TRACK: i32 = 1;
pub const UNTRACK: i32 = 2;

/// Keys waiting for an immediate poll, per channel (centrifuge's `notifChCapacity`).
const NOTIFY_QUEUE: usize = 4096;

/// Tags that carry a `shared_poll_publish`'s version and epoch through the
/// broker; taken off before anything reaches a client.
const TAG_VERSION: &str = "shared_poll_version";
const TAG_EPOCH: &str = "shared_poll_epoch";

/// This gateway's shared poll state: the channels with tracked keys.
pub struct SharedPoll {
    broker: Arc<dyn Broker>,
    channels: Mutex<HashMap<String, Chan>>,
    /// Backend calls running at once, over all channels.
    slots: Arc<Semaphore>,
    /// The epoch of versionless channels not yet tracked here.
    epoch: String,
    next_generation: std::sync::atomic::AtomicU64,
}

/// One channel with tracked keys.
struct Chan {
    options: SharedPollOptions,
    proxy: Option<Arc<Proxy>>,
    /// Versionless: made here; versioned: the backend's (or publisher's).
    epoch: String,
    /// Versionless: the last version given out.
    counter: u64,
    keys: HashMap<String, Entry>,
    /// Connection key -> the keys it tracks here.
    clients: HashMap<u64, HashSet<String>>,
    notify: mpsc::Sender<String>,
    /// The broker subscription bringing `shared_poll_publish` (publish_enabled).
    _publications: Option<SubscriptionGuard>,
    /// Since when nobody tracks a key (the channel goes after the shutdown delay).
    idle_since: Option<Instant>,
    /// Tells this channel's poller from an earlier one's.
    generation: u64,
}

/// One tracked key.
#[derive(Default)]
struct Entry {
    /// The version its trackers were last sent (0: none yet).
    version: u64,
    /// Versionless: a hash of the data last sent, to tell a change.
    hash: u64,
    /// Versioned: a tracker lacks the current data; ask the backend for it
    /// as if the gateway had none (version 0).
    needs_broadcast: bool,
    /// Connection key -> tracker.
    subs: HashMap<u64, Tracker>,
}

struct Tracker {
    handle: Arc<ClientHandle>,
    /// The version this connection has (from its track, then from pushes).
    version: u64,
}

impl SharedPoll {
    /// `concurrency`: backend calls at once (`shared_poll_concurrency_limit`).
    pub fn new(broker: Arc<dyn Broker>, concurrency: usize) -> Arc<SharedPoll> {
        Arc::new(SharedPoll {
            broker,
            channels: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            epoch: random_epoch(),
            next_generation: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// The epoch a subscribe reply carries (centrifuge's `SharedPollManager.Epoch`).
    pub fn epoch(&self, channel: &str, options: &SharedPollOptions) -> String {
        match self.channels.lock().get(channel) {
            Some(chan) => chan.epoch.clone(),
            None if options.mode == SharedPollMode::Versionless => self.epoch.clone(),
            None => String::new(),
        }
    }

    /// How many keys of `channel` a connection tracks.
    pub fn tracked_by(&self, channel: &str, client: u64) -> usize {
        self.channels.lock().get(channel).and_then(|c| c.clients.get(&client)).map_or(0, HashSet::len)
    }

    /// Whether a connection tracks `key` in `channel`.
    pub fn tracks(&self, channel: &str, client: u64, key: &str) -> bool {
        self.channels.lock().get(channel).and_then(|c| c.clients.get(&client)).is_some_and(|k| k.contains(key))
    }

    /// Starts pushing `items` (key, version the client has) of `channel` to
    /// a connection, after its track reply is queued. Keys new here, or whose
    /// data the client lacks, are polled at once.
    pub(crate) fn track(
        self: &Arc<Self>,
        channel: &str,
        options: &SharedPollOptions,
        proxy: Option<Arc<Proxy>>,
        handle: &Arc<ClientHandle>,
        items: Vec<(String, u64)>,
    ) {
        let mut channels = self.channels.lock();
        let chan = channels.entry(channel.to_string()).or_insert_with(|| self.open(channel, options, proxy));
        chan.idle_since = None;
        let mut poll_now = Vec::new();
        for (key, version) in items {
            let is_new = !chan.keys.contains_key(&key);
            let entry = chan.keys.entry(key.clone()).or_default();
            let behind = version == 0 || entry.version > version;
            entry.subs.insert(handle.key, Tracker { handle: handle.clone(), version });
            chan.clients.entry(handle.key).or_default().insert(key.clone());
            if is_new && version == 0 {
                poll_now.push(key);
            } else if !is_new && behind {
                entry.needs_broadcast = true;
                poll_now.push(key);
            }
        }
        for key in poll_now {
            // A full queue drops the request: the next timed poll covers it.
            let _ = chan.notify.try_send(key);
        }
    }

    /// Stops pushing these keys of `channel` to a connection.
    pub fn untrack(&self, channel: &str, client: u64, keys: &[String]) {
        let mut channels = self.channels.lock();
        let Some(chan) = channels.get_mut(channel) else { return };
        let Some(tracked) = chan.clients.get_mut(&client) else { return };
        for key in keys {
            if tracked.remove(key) {
                if let Some(entry) = chan.keys.get_mut(key) {
                    entry.subs.remove(&client);
                    if entry.subs.is_empty() {
                        chan.keys.remove(key);
                    }
                }
            }
        }
        if tracked.is_empty() {
            chan.clients.remove(&client);
        }
        if chan.keys.is_empty() {
            chan.idle_since.get_or_insert_with(Instant::now);
        }
    }

    /// Forgets a connection's keys of `channel` (unsubscribe, disconnect).
    pub fn forget(&self, channel: &str, client: u64) {
        let keys: Vec<String> = {
            let channels = self.channels.lock();
            match channels.get(channel).and_then(|c| c.clients.get(&client)) {
                Some(keys) => keys.iter().cloned().collect(),
                None => return,
            }
        };
        self.untrack(channel, client, &keys);
    }

    /// A new channel's state, and its poller.
    fn open(self: &Arc<Self>, channel: &str, options: &SharedPollOptions, proxy: Option<Arc<Proxy>>) -> Chan {
        let (notify, keys) = mpsc::channel(NOTIFY_QUEUE);
        let generation = self.next_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(self.clone().run(channel.to_string(), generation, keys));
        Chan {
            epoch: if options.mode == SharedPollMode::Versionless { random_epoch() } else { String::new() },
            options: options.clone(),
            proxy,
            counter: 0,
            keys: HashMap::new(),
            clients: HashMap::new(),
            notify,
            _publications: None,
            idle_since: None,
            generation,
        }
    }

    /// A channel's poller: a poll of every tracked key each
    /// `refresh_interval`, and of keys clients just started to track as soon
    /// as they come. Ends when the channel has been untracked long enough.
    async fn run(self: Arc<Self>, channel: String, generation: u64, mut keys: mpsc::Receiver<String>) {
        let Some((options, publish)) =
            self.channels.lock().get(&channel).map(|c| (c.options.clone(), c.options.publish_enabled))
        else {
            return;
        };
        if publish {
            let sink = Arc::new(Publications { poll: Arc::downgrade(&self) });
            match self.broker.subscribe(&channel, sink).await {
                Ok(guard) => {
                    if let Some(chan) = self.channels.lock().get_mut(&channel).filter(|c| c.generation == generation) {
                        chan._publications = Some(guard);
                    }
                }
                Err(e) => tracing::warn!(channel, "shared poll: cannot receive shared_poll_publish: {e}"),
            }
        }
        let interval = options.interval();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if self.close_if_idle(&channel, generation) {
                        return;
                    }
                    self.poll(&channel, generation, None).await;
                }
                Some(key) = keys.recv() => {
                    let mut batch = vec![key];
                    while batch.len() < options.batch_size() {
                        match keys.try_recv() {
                            Ok(key) => batch.push(key),
                            Err(_) => break,
                        }
                    }
                    self.poll(&channel, generation, Some(batch)).await;
                }
            }
        }
    }

    /// Drops the channel once it has been untracked for its shutdown delay.
    fn close_if_idle(&self, channel: &str, generation: u64) -> bool {
        let mut channels = self.channels.lock();
        let Some(chan) = channels.get(channel) else { return true };
        if chan.generation != generation {
            return true;
        }
        if chan.keys.is_empty() && chan.idle_since.is_some_and(|at| at.elapsed() >= chan.options.shutdown_delay()) {
            channels.remove(channel);
            return true;
        }
        false
    }

    /// Asks the backend for `only` these keys, or every tracked key, in
    /// batches of `refresh_batch_size`, and pushes what changed.
    async fn poll(&self, channel: &str, generation: u64, only: Option<Vec<String>>) {
        let (items, proxy, batch) = {
            let channels = self.channels.lock();
            let Some(chan) = channels.get(channel).filter(|c| c.generation == generation) else { return };
            let versioned = chan.options.mode == SharedPollMode::Versioned;
            let item = |key: &String, entry: &Entry| pb::SharedPollRefreshItem {
                key: key.clone(),
                version: if versioned && !entry.needs_broadcast { entry.version } else { 0 },
            };
            let mut items: Vec<_> = match only {
                Some(keys) => {
                    let unique: HashSet<String> = keys.into_iter().collect();
                    unique.iter().filter_map(|k| chan.keys.get(k).map(|e| item(k, e))).collect()
                }
                None => chan.keys.iter().map(|(k, e)| item(k, e)).collect(),
            };
            items.sort_by(|a, b| a.key.cmp(&b.key));
            (items, chan.proxy.clone(), chan.options.batch_size())
        };
        let Some(proxy) = proxy else {
            if !items.is_empty() {
                tracing::warn!(channel, "shared poll: no shared_poll_refresh proxy for the channel");
            }
            return;
        };
        for chunk in items.chunks(batch) {
            let Ok(_slot) = self.slots.acquire().await else { return };
            let request = pb::SharedPollRefreshRequest { channel: channel.to_string(), items: chunk.to_vec() };
            let origin = crate::proxy::ClientOrigin::default();
            let answer: pb::SharedPollRefreshResponse =
                match proxy.call(Event::SharedPollRefresh, request, &origin).await {
                    Ok(answer) => answer,
                    // Logged by the proxy; the next poll tries again.
                    Err(_) => continue,
                };
            if let Some(error) = answer.error {
                tracing::warn!(channel, code = error.code, "shared poll: backend answered an error");
                continue;
            }
            if let Some(result) = answer.result {
                self.apply(channel, generation, result);
            }
        }
    }

    /// Applies a backend answer (centrifuge's `applyRefreshResponse`).
    fn apply(&self, channel: &str, generation: u64, result: pb::SharedPollRefreshResult) {
        let mut channels = self.channels.lock();
        let Some(chan) = channels.get_mut(channel).filter(|c| c.generation == generation) else { return };
        let versioned = chan.options.mode == SharedPollMode::Versioned;
        if versioned {
            flip_epoch(channel, chan, &result.epoch);
        }
        let mut removed = Vec::new();
        for item in result.items {
            if item.removed {
                removed.push(item.key);
                continue;
            }
            let Some(entry) = chan.keys.get_mut(&item.key) else { continue };
            let version = if versioned || item.version != 0 {
                if item.version > entry.version {
                    entry.version = item.version;
                } else if !(entry.needs_broadcast && item.version == entry.version) {
                    continue;
                }
                entry.version
            } else {
                let hash = hash_of(&item.data);
                if entry.version == 0 || hash != entry.hash {
                    chan.counter += 1;
                    entry.version = chan.counter;
                    entry.hash = hash;
                }
                entry.version
            };
            entry.needs_broadcast = false;
            let publication = Publication { key: item.key.clone(), data: item.data, version, ..Default::default() };
            deliver(channel, entry, &publication);
        }
        for key in removed {
            let Some(mut entry) = chan.keys.remove(&key) else { continue };
            let publication = Publication { key: key.clone(), removed: true, ..Default::default() };
            for tracker in entry.subs.values_mut() {
                tracker.version = 0;
            }
            deliver_all(channel, &entry, &publication);
            for client in entry.subs.keys() {
                if let Some(keys) = chan.clients.get_mut(client) {
                    keys.remove(&key);
                }
            }
        }
        chan.clients.retain(|_, keys| !keys.is_empty());
        if chan.keys.is_empty() {
            chan.idle_since.get_or_insert_with(Instant::now);
        }
    }

    /// A `shared_poll_publish` that came through the broker
    /// (centrifuge's `handlePublishedData`).
    fn published(&self, channel: &str, key: String, version: u64, epoch: String, data: Bytes) {
        let mut channels = self.channels.lock();
        let Some(chan) = channels.get_mut(channel) else { return };
        if chan.options.mode != SharedPollMode::Versioned {
            return;
        }
        flip_epoch(channel, chan, &epoch);
        let Some(entry) = chan.keys.get_mut(&key) else { return };
        if version <= entry.version {
            return;
        }
        entry.version = version;
        entry.needs_broadcast = false;
        let publication = Publication { key, data, version, epoch, ..Default::default() };
        deliver(channel, entry, &publication);
    }

    /// The broker message of a `shared_poll_publish`.
    pub fn publish_message(key: String, version: u64, epoch: String, data: Bytes) -> Message {
        let mut tags = HashMap::new();
        tags.insert(TAG_VERSION.to_string(), version.to_string());
        tags.insert(TAG_EPOCH.to_string(), epoch);
        Message { data, key: Some(key), tags, skip_history: true, ..Default::default() }
    }
}

/// Receives the channel's `shared_poll_publish` messages from the broker.
struct Publications {
    poll: std::sync::Weak<SharedPoll>,
}

impl Deliver for Publications {
    fn deliver(&self, channel: &str, mut message: Message) {
        let Some(poll) = self.poll.upgrade() else { return };
        let version = message.tags.get(TAG_VERSION).and_then(|v| v.parse::<u64>().ok());
        let (Some(key), Some(version)) = (message.key.take(), version) else { return };
        let epoch = message.tags.remove(TAG_EPOCH).unwrap_or_default();
        if key.is_empty() || version == 0 {
            return;
        }
        poll.published(channel, key, version, epoch, message.data);
    }
}

/// A versioned channel's publisher epoch changed (centrifuge's
/// `flipEpochAndCollectClients`, checked before the keys of a backend
/// answer or a `shared_poll_publish` are looked at): the versions before it
/// mean nothing, so every tracker is unsubscribed with "insufficient state"
/// (2500: the SDK subscribes and tracks again, learning the new epoch) and
/// the channel's keys go with them, so nothing of the new epoch reaches a
/// tracker before its unsubscribe.
fn flip_epoch(channel: &str, chan: &mut Chan, epoch: &str) {
    if chan.epoch == epoch {
        return;
    }
    chan.epoch = epoch.to_string();
    let mut trackers: HashMap<u64, Arc<ClientHandle>> = HashMap::new();
    for entry in chan.keys.values() {
        for (key, tracker) in &entry.subs {
            trackers.entry(*key).or_insert_with(|| tracker.handle.clone());
        }
    }
    if trackers.is_empty() {
        return;
    }
    chan.keys.clear();
    chan.clients.clear();
    chan.idle_since.get_or_insert_with(Instant::now);
    for handle in trackers.values() {
        handle.unsubscribe_insufficient_state(channel);
    }
}

/// Pushes a key's publication to its trackers that lack this version.
fn deliver(channel: &str, entry: &mut Entry, publication: &Publication) {
    let mut encoded: [Option<Bytes>; 2] = [None, None];
    for tracker in entry.subs.values_mut() {
        if publication.version <= tracker.version {
            continue;
        }
        tracker.version = publication.version;
        push(channel, &tracker.handle, publication, &mut encoded);
    }
}

/// Pushes a publication to every tracker of a key.
fn deliver_all(channel: &str, entry: &Entry, publication: &Publication) {
    let mut encoded: [Option<Bytes>; 2] = [None, None];
    for tracker in entry.subs.values() {
        push(channel, &tracker.handle, publication, &mut encoded);
    }
}

/// Queues the push, encoded once per protocol.
fn push(channel: &str, handle: &ClientHandle, publication: &Publication, encoded: &mut [Option<Bytes>; 2]) {
    let slot = match handle.protocol {
        Protocol::Json => 0,
        Protocol::Protobuf => 1,
    };
    if encoded[slot].is_none() {
        let mut out = BytesMut::new();
        if handle.protocol.encode_publication_push(channel, publication, &mut out).is_err() {
            // Data that is not JSON cannot reach a JSON client.
            return;
        }
        encoded[slot] = Some(out.freeze());
    }
    if let Some(bytes) = &encoded[slot] {
        handle.outbox.push(bytes.clone());
    }
}

fn hash_of(data: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

fn random_epoch() -> String {
    let n: u32 = rand::random();
    format!("{n:08x}").chars().take(4).collect()
}
