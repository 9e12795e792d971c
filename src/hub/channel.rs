//! One channel of the hub: its local subscribers, and the fan-out of what
//! the broker delivers for it.
//!
//! A fan-out reads only its own channel (the subscribers' read lock), so it
//! never waits for, nor delays, another channel's subscribes, unsubscribes or
//! deliveries. A subscriber starts *held*: its pushes wait in the subscriber
//! until the session has queued the reply that announces the subscription
//! ([`Channel::activate`]); from then on pushes go straight to the client's
//! queue, the common path taking no per-subscriber lock.

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::OnceCell;

use super::delivery::{self, Base, Delivery, DeltaForms, Filters, SharedFilter, Verdicts};
use super::key_bases::KeyBases;
use super::ClientHandle;
use crate::broker::{now_ms, Deliver, Message, PresenceEvent, SubscriptionGuard};
use crate::metrics::metrics;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ClientInfo, Join, Leave, Protocol, Publication, Push, Reply};

/// Pushes held for one subscriber while its subscribe is answered, at most.
pub(super) const MAX_PENDING: usize = 10_000;

/// A channel with at least one local subscriber.
pub(super) struct Channel {
    pub(super) name: String,
    members: RwLock<Members>,
    /// Offset of the last publication seen (history channels), to detect gaps.
    last_offset: AtomicU64,
    /// The previous publication, base of the next delta (issue #20).
    base: Base,
    /// The subscribers' tags filters, one per distinct filter.
    filters: Filters,
    /// Map channels: each key's last value, base of its next delta.
    pub(super) keys: KeyBases,
    /// Filled once the broker subscription is active; shared by concurrent
    /// first subscribers so the broker is asked once. Dropped with the
    /// channel, which unsubscribes the broker.
    pub(super) broker_sub: OnceCell<SubscriptionGuard>,
}

struct Members {
    subscribers: HashMap<u64, Subscriber>,
    /// The last subscriber left and the channel is leaving the index: no one
    /// may join it any more (they make a new one).
    closed: bool,
}

/// One local subscription of a channel.
pub(super) struct Subscriber {
    client: Arc<ClientHandle>,
    /// `chan_info` for presence and publications.
    chan_info: Bytes,
    /// Receives join and leave pushes.
    join_leave: bool,
    /// Positioned: told (2500/3010) when the gateway sees a publication gap.
    positioned: bool,
    /// A gap was seen: nothing more is delivered until the session drops
    /// the subscription, so the client never sees a later publication first.
    stalled: AtomicBool,
    /// Set once the subscribe reply is queued: pushes go straight out.
    live: AtomicBool,
    /// Until then pushes wait here; None once live.
    held: Mutex<Option<Vec<Held>>>,
    /// Gets fossil deltas (see [`Delivery::delta`]).
    delta: bool,
    /// Has had a publication (or a recovery) since subscribing, so the next
    /// one may be a delta: centrifuge's `flagDeltaAllowed`.
    delta_ready: AtomicBool,
    /// Gets only publications passing this filter (not with `delta`).
    filter: Option<Arc<SharedFilter>>,
    /// Map delta subscribers: keys whose next publication must go whole,
    /// the client holding a value its delta base may not be (see
    /// [`Channel::whole_keys`]). Set at most once, and rarely: boxed, so
    /// the subscriber stays small, and unset it costs one atomic load.
    whole_keys: OnceLock<Box<Mutex<HashSet<String>>>>,
}

/// A push held while the subscribe is answered: offset 0 for those outside
/// the history (joins, leaves, publications of channels without history);
/// for a delta subscriber's publication also its delta form, sent instead
/// once the subscriber has had a publication.
struct Held {
    offset: u64,
    bytes: Bytes,
    delta: Option<Bytes>,
    /// A map publication's key, with `delta`.
    key: Option<String>,
}

impl Subscriber {
    pub(super) fn new(client: Arc<ClientHandle>, chan_info: Bytes, join_leave: bool, positioned: bool) -> Self {
        Subscriber {
            client,
            chan_info,
            join_leave,
            positioned,
            stalled: AtomicBool::new(false),
            live: AtomicBool::new(false),
            held: Mutex::new(Some(Vec::new())),
            delta: false,
            delta_ready: AtomicBool::new(false),
            filter: None,
            whole_keys: OnceLock::new(),
        }
    }

    /// Whether a map publication of `key` must reach this subscriber whole;
    /// true once per key named by [`Channel::whole_keys`].
    fn takes_whole(&self, key: Option<&str>) -> bool {
        match key {
            Some(key) => self.whole_keys.get().is_some_and(|keys| keys.lock().remove(key)),
            _ => false,
        }
    }

    fn push(&self, offset: u64, bytes: Bytes) {
        self.push_forms(offset, bytes, None, None);
    }

    /// Pushes a publication, or its delta form once the subscriber has had
    /// one (`delta`: for delta subscribers; `key`: a map publication's).
    fn push_forms(&self, offset: u64, bytes: Bytes, delta: Option<Bytes>, key: Option<&str>) {
        if self.live.load(Ordering::Acquire) {
            self.client.outbox.push(self.pick(bytes, delta, key));
            return;
        }
        // Rare: only while the subscribe is answered. The lock orders this
        // push against `activate`, which empties the list and turns live.
        let mut held = self.held.lock();
        match held.as_mut() {
            Some(list) if list.len() < MAX_PENDING => {
                list.push(Held { offset, bytes, delta, key: key.map(str::to_string) })
            }
            // Too much arrived meanwhile: the client must start over.
            Some(_) => self.client.outbox.close(Disconnect::INSUFFICIENT_STATE),
            None => {
                self.client.outbox.push(self.pick(bytes, delta, key));
            }
        }
    }

    /// The delta form if the subscriber has had a publication since
    /// subscribing, else the whole one (which it then has).
    fn pick(&self, bytes: Bytes, delta: Option<Bytes>, key: Option<&str>) -> Bytes {
        match delta {
            Some(delta) if self.delta_ready.swap(true, Ordering::Relaxed) && !self.takes_whole(key) => delta,
            _ => bytes,
        }
    }

    /// Queues what was held, except publications the subscribe reply already
    /// carried or stood for (history offset <= `sent`), and goes live.
    fn activate(&self, sent: u64) {
        let mut held = self.held.lock();
        for Held { offset, bytes, delta, key } in held.take().unwrap_or_default() {
            if offset == 0 || offset > sent {
                self.client.outbox.push(self.pick(bytes, delta, key.as_deref()));
            }
        }
        self.live.store(true, Ordering::Release);
    }
}

impl Channel {
    pub(super) fn new(name: &str) -> Arc<Channel> {
        Arc::new(Channel {
            name: name.to_string(),
            members: RwLock::new(Members { subscribers: HashMap::new(), closed: false }),
            last_offset: AtomicU64::new(0),
            base: Base::default(),
            filters: Filters::default(),
            keys: KeyBases::default(),
            broker_sub: OnceCell::new(),
        })
    }

    /// The broker's sink for this channel. It holds the channel weakly (the
    /// channel holds the broker subscription), and a late delivery from a
    /// dropped broker subscription reaches this channel, never a newer one
    /// of the same name.
    pub(super) fn sink(self: &Arc<Self>) -> Arc<dyn Deliver> {
        Arc::new(Sink(Arc::downgrade(self)))
    }

    /// Sets what a subscriber asked of its publications (issue #20).
    pub(super) fn with_delivery(&self, mut subscriber: Subscriber, delivery: Delivery) -> Subscriber {
        subscriber.delta = delivery.delta;
        // A map subscriber holds the state: its first live publication may
        // already be a delta (centrifuge sets flagDeltaAllowed at subscribe).
        subscriber.delta_ready = AtomicBool::new(delivery.delta && delivery.keyed);
        subscriber.filter = delivery.filter.map(|node| self.filters.intern(node));
        subscriber
    }

    /// After a successful recovery with deltas: the subscriber's next
    /// publication may be a delta (centrifuge sets `flagDeltaAllowed`), and
    /// the last recovered publication, the channel's latest, may be the base.
    pub(super) fn delta_recovered(&self, key: u64, last: Option<(u64, Bytes)>) {
        if let Some(sub) = self.members.read().subscribers.get(&key) {
            sub.delta_ready.store(true, Ordering::Relaxed);
        }
        if let Some((offset, data)) = last {
            self.base.seed(offset, data);
        }
    }

    /// A map delta subscriber's keys whose next publication must go whole:
    /// those whose state entry it got while their change was still pending
    /// (offset 0), whose value may come live with a base it never had.
    pub(super) fn whole_keys(&self, key: u64, keys: HashSet<String>) {
        if let Some(sub) = self.members.read().subscribers.get(&key) {
            let _ = sub.whole_keys.set(Box::new(Mutex::new(keys)));
        }
    }

    /// Adds a subscriber, held until [`Channel::activate`]. Gives it back if
    /// the channel is closed.
    pub(super) fn join(&self, key: u64, subscriber: Subscriber) -> Result<(), Subscriber> {
        let mut members = self.members.write();
        if members.closed {
            return Err(subscriber);
        }
        members.subscribers.insert(key, subscriber);
        Ok(())
    }

    /// Removes a subscriber. True when it was the last one: the channel is
    /// then closed and must leave the index.
    pub(super) fn leave(&self, key: u64) -> bool {
        let mut members = self.members.write();
        members.subscribers.remove(&key);
        if members.subscribers.is_empty() && !members.closed {
            members.closed = true;
            return true;
        }
        false
    }

    /// Lets a subscriber's pushes flow (see [`Subscriber::activate`]).
    pub(super) fn activate(&self, key: u64, sent: u64) {
        if let Some(sub) = self.members.read().subscribers.get(&key) {
            sub.activate(sent);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.members.read().subscribers.len()
    }

    /// Client ID -> ClientInfo of the subscribers.
    pub(super) fn presence(&self) -> HashMap<String, ClientInfo> {
        let members = self.members.read();
        let info = |s: &Subscriber| ClientInfo {
            user: s.client.user.clone(),
            client: s.client.client_id.clone(),
            conn_info: s.client.conn_info.clone(),
            chan_info: s.chan_info.clone(),
        };
        members.subscribers.values().map(|s| (s.client.client_id.clone(), info(s))).collect()
    }

    /// Fans one broker message out to the subscribers.
    fn deliver(&self, message: Message) {
        let channel = self.name.as_str();
        if let Some(sent) = message.time_ms {
            metrics().delivery_lag.observe(now_ms().saturating_sub(sent) as f64 / 1000.0);
        }
        let members = self.members.read();
        if let Some(event) = message.event {
            return deliver_presence_event(channel, &members, event, message.info.unwrap_or_default());
        }
        let mut base = None;
        // The same stored publication twice (two NATS subscriptions of the
        // channel overlapping while one replaces the other): subscribers
        // get it once. Stored offsets are unique per channel.
        if message.offset > 0 && self.last_offset.load(Ordering::Relaxed) == message.offset {
            tracing::debug!(channel, offset = message.offset, "repeated publication dropped");
            return;
        }
        if message.offset > 0 {
            // Markers too: the publication after one names it as previous.
            let prev = message.prev_offset.unwrap_or(message.offset - 1);
            let previous = self.base.advance(message.offset, prev, &message.data);
            base = previous.filter(|_| message.delta && message.marker.is_none());
            let last = self.last_offset.swap(message.offset, Ordering::Relaxed);
            // The stream says which offset came before this one in the channel.
            if last != 0 && message.prev_offset.is_some_and(|prev| prev != last) {
                tracing::debug!(channel, last, offset = message.offset, "publication gap");
                stall_positioned(channel, &members);
            }
        }
        // A position marker only moves the channel's offset (so the next
        // publication, which names it as previous, is no gap).
        if message.marker.is_some() {
            return;
        }
        // Map publications: a delta against the key's previous value, not
        // the channel's previous publication (streamless ones get none, as
        // from centrifuge, whose hub has no previous one for them).
        if let Some(key) = message.key.as_deref() {
            base = match message.offset {
                0 => None,
                offset => {
                    let (base_offset, removed) = (message.key_base, message.removed);
                    self.keys.advance(key, offset, base_offset, message.delta, removed, &message.data)
                }
            };
        }
        let publication = Publication::from(message);
        let mut encoded = Encoded::default();
        let mut forms = DeltaForms::new(channel, &publication, base);
        let mut verdicts = Verdicts::default();
        let offset = publication.offset;
        let key = (!publication.key.is_empty()).then_some(publication.key.as_str());
        for sub in members.subscribers.values().filter(|s| !s.stalled.load(Ordering::Relaxed)) {
            let protocol = sub.client.protocol;
            if sub.delta {
                let plain = || encoded.get(protocol, channel, &publication);
                deliver_delta(sub, offset, key, protocol, &mut forms, plain);
                continue;
            }
            if sub.filter.as_ref().is_some_and(|f| !verdicts.passes(f, &publication)) {
                continue;
            }
            if let Some(bytes) = encoded.get(protocol, channel, &publication) {
                sub.push(offset, bytes);
            }
        }
    }
}

/// A delta subscriber's publication: live, only the form it gets is made;
/// held, both (see [`Subscriber::pick`]). Only positioned (or recoverable)
/// subscribers get deltas; the others get every publication whole, as from
/// Centrifugo v6.9.1: its non-positioned subscribers get the delta against
/// the hub's local previous publication, which only a channel medium keeps,
/// and Centrifugo configures none (centrifuge hub.go `localPrevPub`, sent by
/// client.go `writePublicationUpdatePosition` without positioning).
fn deliver_delta(
    sub: &Subscriber,
    offset: u64,
    key: Option<&str>,
    protocol: Protocol,
    forms: &mut DeltaForms<'_>,
    mut plain: impl FnMut() -> Option<Bytes>,
) {
    if sub.live.load(Ordering::Acquire) {
        let ready = sub.positioned && sub.delta_ready.swap(true, Ordering::Relaxed);
        let bytes = match ready && !sub.takes_whole(key) {
            true => forms.delta(protocol, &mut plain),
            false => forms.whole(protocol, &mut plain),
        };
        if let Some(bytes) = bytes {
            sub.client.outbox.push(bytes);
        }
        return;
    }
    let Some(whole) = forms.whole(protocol, &mut plain) else { return };
    let delta = if sub.positioned { forms.delta(protocol, &mut plain) } else { None };
    sub.push_forms(offset, whole, delta, key);
}

/// The broker's handle on a channel.
struct Sink(Weak<Channel>);

impl Deliver for Sink {
    fn deliver(&self, _channel: &str, message: Message) {
        if let Some(channel) = self.0.upgrade() {
            channel.deliver(message);
        }
    }
}

/// After a gap, positioned subscribers get nothing more and their session is
/// told to unsubscribe them with "insufficient state".
fn stall_positioned(channel: &str, members: &Members) {
    for sub in members.subscribers.values().filter(|s| s.positioned) {
        if sub.stalled.swap(true, Ordering::Relaxed) {
            continue;
        }
        sub.client.unsubscribe_insufficient_state(channel);
    }
}

/// Join and leave pushes go only to subscribers that asked for them.
fn deliver_presence_event(channel: &str, members: &Members, event: PresenceEvent, info: ClientInfo) {
    let mut push = Push { channel: channel.to_string(), ..Default::default() };
    match event {
        PresenceEvent::Join => push.join = Some(Join { info: Some(info) }),
        PresenceEvent::Leave => push.leave = Some(Leave { info: Some(info) }),
    }
    let reply = Reply { push: Some(push), ..Default::default() };
    let mut json: Option<Option<Bytes>> = None;
    let mut protobuf: Option<Option<Bytes>> = None;
    for sub in members.subscribers.values().filter(|s| s.join_leave) {
        let slot = match sub.client.protocol {
            Protocol::Json => &mut json,
            Protocol::Protobuf => &mut protobuf,
        };
        if let Some(bytes) = slot.get_or_insert_with(|| sub.client.protocol.encode_one(&reply).ok()) {
            sub.push(0, bytes.clone());
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

use delivery::encode;
