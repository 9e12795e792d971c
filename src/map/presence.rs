//! Presence-style map channels (Centrifugo v6.8+ `map_clients` and
//! `map_users`; centrifuge `client_map.go`: `addMapClientPresence`,
//! `addMapUserPresence`, `updateMapPresence`, `removeMapPresence`, and the
//! memory map broker's key expiry).
//!
//! A namespace with `map_clients_presence_channel_prefix: "pc:"` keeps each
//! subscriber of its channel `c` as a key of the map channel `pc:c` (whose
//! namespace has `subscription_type: map_clients`): the key is the client
//! id and the entry carries its client info. `map_users_presence_channel_prefix`
//! does the same keyed by user id, without info, and never for anonymous
//! clients. Observers subscribe to the map channel (`type` 2 or 3) and see
//! the keys come and go as map changes.
//!
//! A key is written only when missing (a join is published then) and
//! otherwise has its time renewed (nothing published). A client key is
//! removed (a published removal) when its client unsubscribes or
//! disconnects; a user key never is: it expires `map.key_ttl` after the
//! last refresh, which debounces quick reconnects.
//!
//! Gateways stay stateless: the keys are in the broker's map state (on NATS
//! the namespace's JetStream key-value bucket). Each gateway renews the keys
//! of its own connections every third of `map.key_ttl` ([`start`]), and
//! every gateway sweeps the map namespaces with a `key_ttl` for keys whose
//! TTL passed: it claims such a key with a compare-and-set (so one gateway
//! publishes its removal) and publishes the removal, as centrifuge's map
//! broker does when a key expires. When a gateway dies, its clients' keys
//! stop being renewed, expire, and their removals reach the observers
//! through the gateways still running.

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::options::MapMode;
use super::Change;
use crate::broker::{now_ms, BrokerError, MapEntry, Message};
use crate::channels::{ChannelOptions, Namespace, SubscriptionType};
use crate::context::AppContext;
use crate::protocol::ClientInfo;

/// Keys renewed or swept at once (each is a few broker round trips).
const CONCURRENCY: usize = 16;
/// Bounds on how often the background task runs (a quarter of the
/// shortest `map.key_ttl`).
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_secs(5);

/// Which presence map a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Keyed by client id, with the client's info.
    Clients,
    /// Keyed by user id, no info.
    Users,
}

/// The keys this gateway's connections hold in presence maps, which it
/// renews until they are let go: `(map channel, key)` -> holder.
#[derive(Default)]
pub(crate) struct Registry {
    held: Mutex<HashMap<(String, String), Held>>,
    started: AtomicBool,
}

struct Held {
    info: Option<ClientInfo>,
    /// Local subscriptions holding the key (one user, many connections).
    holders: usize,
}

fn is_presence(kind: SubscriptionType) -> bool {
    matches!(kind, SubscriptionType::MapClients | SubscriptionType::MapUsers)
}

/// Checks a map-kind namespace's own options: presence maps need keys
/// that expire (Centrifugo refuses `persistent` for them).
pub(crate) fn validate(options: &ChannelOptions) -> Result<(), String> {
    if is_presence(options.subscription_type) && options.map.mode == MapMode::Persistent {
        return Err("map.mode \"persistent\" is not allowed with subscription_type map_clients or map_users \
                    (presence entries require TTL-based cleanup; use \"ephemeral\" or \"recoverable\")"
            .into());
    }
    Ok(())
}

/// Checks that every presence prefix names an existing namespace of the
/// matching kind (Centrifugo's `validatePresenceChannelPrefix`).
pub(crate) fn validate_prefixes(list: &[Namespace]) -> Result<(), String> {
    for ns in list {
        check_prefixes(&ns.options, list).map_err(|e| format!("namespace {:?}: {e}", ns.name))?;
    }
    Ok(())
}

/// [`validate_prefixes`] for one set of options (a namespace's, or the
/// top level's).
pub(crate) fn check_prefixes(options: &ChannelOptions, list: &[Namespace]) -> Result<(), String> {
    let o = options;
    for (field, prefix, kind) in [
        ("map_clients_presence_channel_prefix", &o.map_clients_presence_channel_prefix, SubscriptionType::MapClients),
        ("map_users_presence_channel_prefix", &o.map_users_presence_channel_prefix, SubscriptionType::MapUsers),
    ] {
        if prefix.is_empty() {
            continue;
        }
        let target = crate::channels::namespace_of(&format!("{prefix}x")).to_string();
        let Some(found) = list.iter().find(|n| n.name == target) else {
            return Err(format!("{field} {prefix:?}: namespace {target:?} does not exist"));
        };
        if found.options.subscription_type != kind {
            let want = if kind == SubscriptionType::MapClients { "map_clients" } else { "map_users" };
            return Err(format!("{field} {prefix:?}: target namespace {target:?} must have subscription_type {want}"));
        }
    }
    Ok(())
}

/// The presence maps a subscriber of `channel` is kept in.
fn targets(app: &AppContext, channel: &str) -> Vec<(Kind, String)> {
    let Ok(resolved) = app.rules.resolve(channel) else { return Vec::new() };
    let o = resolved.options;
    let mut out = Vec::new();
    if !o.map_clients_presence_channel_prefix.is_empty() {
        out.push((Kind::Clients, format!("{}{channel}", o.map_clients_presence_channel_prefix)));
    }
    if !o.map_users_presence_channel_prefix.is_empty() {
        out.push((Kind::Users, format!("{}{channel}", o.map_users_presence_channel_prefix)));
    }
    out
}

/// The key and the entry's info of a subscriber in a presence map; None
/// for anonymous clients in user maps.
fn key_of(kind: Kind, info: &ClientInfo) -> Option<(String, Option<ClientInfo>)> {
    match kind {
        Kind::Clients => Some((info.client.clone(), Some(info.clone()))),
        Kind::Users if info.user.is_empty() => None,
        Kind::Users => Some((info.user.clone(), None)),
    }
}

/// A client subscribed to `channel`: its keys are written (or renewed) in
/// the presence maps of the channel's namespace before the subscribe is
/// answered, as centrifuge's `setupMapPresenceAndJoin` does; failures are
/// logged, not the client's concern.
pub(crate) async fn joined(app: &Arc<AppContext>, channel: &str, info: &ClientInfo) {
    for (kind, target) in targets(app, channel) {
        let Some((key, info)) = key_of(kind, info) else { continue };
        {
            let mut held = app.map_presence.held.lock();
            let entry = held.entry((target.clone(), key.clone())).or_insert(Held { info: None, holders: 0 });
            entry.holders += 1;
            entry.info = info.clone();
        }
        if let Err(e) = add(app, &target, &key, info).await {
            tracing::debug!("cannot add presence key to {target}: {e}");
        }
    }
}

/// A client left `channel` (unsubscribe, expiry or disconnect): this
/// gateway stops renewing its keys; its client key is removed in the
/// background (a user key is left to expire, as in centrifuge). A map
/// channel with `map.remove_client_on_unsubscribe` also loses the key of
/// the client's id.
pub(crate) fn left(app: &Arc<AppContext>, channel: &str, info: &ClientInfo) {
    for (kind, target) in targets(app, channel) {
        let Some((key, _)) = key_of(kind, info) else { continue };
        {
            let mut held = app.map_presence.held.lock();
            let id = (target.clone(), key.clone());
            if let Some(entry) = held.get_mut(&id) {
                entry.holders = entry.holders.saturating_sub(1);
                if entry.holders == 0 {
                    held.remove(&id);
                }
            }
        }
        if kind == Kind::Clients {
            spawn_remove(app, target, key);
        }
    }
    let cleanup = app
        .rules
        .resolve(channel)
        .is_ok_and(|r| r.options.subscription_type.is_map() && r.options.map.remove_client_on_unsubscribe);
    if cleanup {
        spawn_remove(app, channel.to_string(), info.client.clone());
    }
}

fn spawn_remove(app: &Arc<AppContext>, channel: String, key: String) {
    let app = app.clone();
    tokio::spawn(async move {
        let Ok(resolved) = app.rules.resolve(&channel) else { return };
        if !resolved.options.subscription_type.is_map() {
            return;
        }
        let change =
            Change { key, data: Bytes::new(), tags: Default::default(), info: None, removed: true, delta: false };
        if let Err(e) = super::apply(app.broker.as_ref(), &resolved.options.map, &channel, change).await {
            tracing::debug!("cannot remove presence key from {channel}: {e}");
        }
    });
}

/// Writes `key` if it is missing (publishing the join) or renews its time
/// (publishing nothing): centrifuge's `KeyModeIfNew` with
/// `RefreshTTLOnSuppress`.
async fn add(app: &AppContext, channel: &str, key: &str, info: Option<ClientInfo>) -> Result<(), BrokerError> {
    let Ok(resolved) = app.rules.resolve(channel) else { return Ok(()) };
    if !is_presence(resolved.options.subscription_type) {
        return Ok(());
    }
    let options = &resolved.options.map;
    let ttl = options.key_ttl.filter(|t| !t.is_zero());
    let broker = app.broker.as_ref();
    // A lost compare-and-set means another writer renewed or removed the
    // key in between: read it again.
    for _ in 0..4 {
        match broker.map_read(channel, Some(key), ttl).await?.pop() {
            Some((_, held)) => {
                let renewed = MapEntry { time_ms: now_ms(), ..held.clone() };
                if broker.map_replace(channel, key, &held, renewed, ttl).await? {
                    return Ok(());
                }
            }
            None => {
                let change = Change {
                    key: key.to_string(),
                    data: Bytes::new(),
                    tags: Default::default(),
                    info,
                    removed: false,
                    delta: false,
                };
                super::apply(broker, options, channel, change).await?;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Starts this gateway's background work for presence maps, if the
/// configuration has map namespaces whose keys expire: renewing the keys of
/// its own connections every third of `map.key_ttl`, and sweeping expired
/// keys. The task ends with the application context.
pub(crate) fn start(app: &Arc<AppContext>) {
    let namespaces: Vec<(String, Duration)> = app
        .rules
        .namespaces()
        .filter(|(_, o)| o.subscription_type.is_map())
        .filter_map(|(name, o)| Some((name.to_string(), o.map.key_ttl.filter(|t| !t.is_zero())?)))
        .collect();
    let Some(shortest) = namespaces.iter().map(|(_, t)| *t).min() else { return };
    if app.map_presence.started.swap(true, Ordering::SeqCst) {
        return;
    }
    let tick = (shortest / 4).clamp(MIN_TICK, MAX_TICK);
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed: HashMap<String, Instant> = HashMap::new();
        loop {
            interval.tick().await;
            let Some(app) = weak.upgrade() else { break };
            let now = Instant::now();
            let due: Vec<&str> = namespaces
                .iter()
                .filter(|(ns, ttl)| renewed.get(ns).is_none_or(|at| now.duration_since(*at) >= *ttl / 3))
                .map(|(ns, _)| ns.as_str())
                .collect();
            for ns in &due {
                renewed.insert(ns.to_string(), now);
            }
            renew(&app, &due).await;
            for (ns, ttl) in &namespaces {
                if let Err(e) = sweep(&app, ns, *ttl).await {
                    tracing::debug!("cannot sweep expired map keys of {ns}: {e}");
                }
            }
        }
    });
}

/// Renews the held keys of the namespaces in `due`.
async fn renew(app: &Arc<AppContext>, due: &[&str]) {
    if due.is_empty() {
        return;
    }
    let keys: Vec<(String, String, Option<ClientInfo>)> = app
        .map_presence
        .held
        .lock()
        .iter()
        .filter(|((channel, _), _)| due.contains(&crate::channels::namespace_of(channel)))
        .map(|((channel, key), held)| (channel.clone(), key.clone(), held.info.clone()))
        .collect();
    futures_util::stream::iter(keys)
        .for_each_concurrent(CONCURRENCY, |(channel, key, info)| async move {
            if let Err(e) = add(app, &channel, &key, info).await {
                tracing::debug!("cannot renew presence key in {channel}: {e}");
            }
        })
        .await;
}

/// Publishes the removal of every key of `namespace` whose TTL passed.
async fn sweep(app: &Arc<AppContext>, namespace: &str, ttl: Duration) -> Result<(), BrokerError> {
    let now = now_ms();
    let expired: Vec<(String, String, MapEntry)> = app
        .broker
        .map_scan(namespace, Some(ttl))
        .await?
        .into_iter()
        .filter(|(_, _, e)| e.expired(Some(ttl), now))
        .collect();
    futures_util::stream::iter(expired)
        .for_each_concurrent(CONCURRENCY, |(channel, key, entry)| async move {
            if let Err(e) = expire(app, &channel, &key, entry, ttl).await {
                tracing::debug!("cannot expire map key in {channel}: {e}");
            }
        })
        .await;
    Ok(())
}

/// Claims an expired key (compare-and-set of the entry seen against a
/// pending removal) and, if this gateway won, publishes its removal, then
/// records the removal's offset (as [`super::apply`] orders its writes).
async fn expire(app: &AppContext, channel: &str, key: &str, seen: MapEntry, ttl: Duration) -> Result<(), BrokerError> {
    let broker = app.broker.as_ref();
    let pending = MapEntry {
        data: Bytes::new(),
        tags: seen.tags.clone(),
        offset: 0,
        time_ms: now_ms(),
        removed: true,
        ..Default::default()
    };
    if !broker.map_replace(channel, key, &seen, pending.clone(), Some(ttl)).await? {
        return Ok(());
    }
    let message = Message {
        tags: seen.tags,
        time_ms: Some(pending.time_ms),
        key: Some(key.to_string()),
        removed: true,
        ..Default::default()
    };
    if let Some(position) = broker.publish(channel, message).await? {
        broker.map_write(channel, key, MapEntry { offset: position.offset, ..pending }, Some(ttl)).await?;
    }
    Ok(())
}
