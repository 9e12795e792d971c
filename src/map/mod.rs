//! Map subscriptions (Centrifugo v6.8+, centrifuge `client_map.go`): a
//! channel whose subscribers share key-value state. A change (set or remove
//! one key) is a publication on the channel carrying `key` (and `removed`);
//! the state is kept by the broker ([`crate::broker::Broker::map_write`]:
//! a JetStream key-value bucket per namespace on NATS), the changes are the
//! channel's history, so recovery works as for any channel.
//!
//! A change is written in three steps so that a subscriber, which reads the
//! stream position first and the state second, never misses one: the state
//! entry is written first (offset 0, "pending"), then the change is
//! published (which gives it its offset), then the entry is written again
//! with that offset, unless a later change of the key already was. A change
//! the position counts was therefore in the state before the position was
//! read; a later one is in the stream the subscriber catches up on.
//!
//! Subscribing (`type: 1` in the subscribe request): phase 2 pages through
//! the state (the cursor carries the frozen position, so pages need no
//! server-side memory); its last page subscribes live and carries the
//! changes since the position (phase 0). Reconnecting clients send phase 1
//! (or 0) with `recover`, `offset` and `epoch` and get the missed changes,
//! or error 112 when they are gone (the SDK then loads the state again).

pub(crate) mod api;
pub mod catch_up;
pub mod options;
pub(crate) mod presence;

use bytes::Bytes;
use std::collections::HashMap;

use crate::broker::map_state::{PENDING, PENDING_PATIENCE};
use crate::broker::{now_ms, Broker, BrokerError, KeyMode, MapCondition, MapEntry, Message, Position, Query};
use crate::protocol::ClientInfo;
use options::MapOptions;

/// One change of a map channel: `key` set to `data`, or removed.
pub(crate) struct Change {
    pub(crate) key: String,
    pub(crate) data: Bytes,
    pub(crate) tags: HashMap<String, String>,
    pub(crate) info: Option<ClientInfo>,
    pub(crate) removed: bool,
    /// Published with the delta flag (the API's `delta`, or the namespace's
    /// `delta_publish`): delta subscribers get it as a fossil delta against
    /// the key's previous value (centrifuge's `MapPublishOptions.UseDelta`).
    pub(crate) delta: bool,
}

/// What became of a change.
pub(crate) enum Applied {
    /// Published; at this position in stream modes.
    Published(Option<Position>),
    /// Nothing to do (Centrifugo's `suppressed` with its reason), with the
    /// channel's current position in stream modes.
    Suppressed(&'static str, Option<Position>),
}

/// A key is usable when it is not empty and has no control characters (it
/// rides in a NATS header).
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(char::is_control)
}

/// Applies one change (see the module docs for the order of the writes).
pub(crate) async fn apply(
    broker: &dyn Broker,
    options: &MapOptions,
    channel: &str,
    change: Change,
) -> Result<Applied, BrokerError> {
    apply_with(broker, options, channel, change, &MapCondition::default(), "").await
}

/// [`apply`] with the API's options: the state pre-write is conditional
/// (`condition`: key mode and version, a compare-and-set, so two gateways
/// never both pass; a removal needs the key present), and a non-empty
/// `idempotency_key` already used on the channel in the last 300 s answers
/// that write's position, suppressed (`idempotency`), as centrifuge does.
pub(crate) async fn apply_with(
    broker: &dyn Broker,
    options: &MapOptions,
    channel: &str,
    change: Change,
    condition: &MapCondition,
    idempotency_key: &str,
) -> Result<Applied, BrokerError> {
    let ttl = options.key_ttl.filter(|t| !t.is_zero());
    if !idempotency_key.is_empty() {
        if let Some(position) = broker.map_result(channel, idempotency_key).await? {
            let position = options.mode.has_stream().then_some(position);
            return Ok(Applied::Suppressed("idempotency", position));
        }
    }
    let mut condition = match change.removed {
        true => MapCondition { key_mode: KeyMode::IfExists, ..Default::default() },
        false => condition.clone(),
    };
    // One change of a key at a time between pre-write and publication, so
    // the stream has a key's changes in the order they were judged.
    condition.serialize = options.mode.has_stream();
    let data = if change.removed { Bytes::new() } else { change.data };
    let started = tokio::time::Instant::now();
    let (time_ms, entry, replaced) = loop {
        let time_ms = now_ms();
        let tags = change.tags.clone();
        let mut entry = MapEntry {
            data: data.clone(),
            tags,
            time_ms,
            removed: change.removed,
            info: change.info.clone().filter(|_| !change.removed),
            ..Default::default()
        };
        match broker.map_write_if(channel, &change.key, &mut entry, ttl, &condition).await? {
            Ok(replaced) => break (time_ms, entry, replaced),
            Err(PENDING) if started.elapsed() < PENDING_PATIENCE => {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await
            }
            // The pending change's gateway is gone: judge against its entry.
            Err(PENDING) => condition.serialize = false,
            Err(reason) => return Ok(Applied::Suppressed(reason, position(broker, options, channel).await?)),
        }
    };
    let message = Message {
        data,
        info: change.info,
        tags: change.tags,
        time_ms: Some(time_ms),
        key: Some(change.key.clone()),
        removed: change.removed,
        // Removals are never deltas (centrifuge publishes them without);
        // a replaced entry still pending (offset 0) was maybe never
        // published, so no subscriber can be relied on to hold it.
        delta: change.delta && !change.removed,
        key_base: if change.delta && !change.removed { replaced } else { 0 },
        ..Default::default()
    };
    let position = broker.publish(channel, message).await?;
    if let Some(position) = &position {
        broker.map_write(channel, &change.key, MapEntry { offset: position.offset, ..entry }, ttl).await?;
    }
    if !idempotency_key.is_empty() {
        broker.map_remember(channel, idempotency_key, position.clone().unwrap_or_default()).await?;
    }
    Ok(Applied::Published(position))
}

/// The channel stream's current position (stream modes).
pub(crate) async fn position(
    broker: &dyn Broker,
    options: &MapOptions,
    channel: &str,
) -> Result<Option<Position>, BrokerError> {
    if !options.mode.has_stream() {
        return Ok(None);
    }
    Ok(Some(broker.history(channel, Query::default()).await?.position))
}

/// A state entry as subscribers see it.
pub(crate) fn state_publication(key: String, entry: MapEntry) -> crate::protocol::Publication {
    crate::protocol::Publication {
        data: entry.data,
        offset: entry.offset,
        tags: entry.tags,
        key,
        info: entry.info,
        ..Default::default()
    }
}

/// The state page cursor: the frozen position and the last key sent, so a
/// page request needs nothing remembered between requests.
pub(crate) fn encode_cursor(position: &Position, last_key: &str) -> String {
    format!("{}:{}:{}", position.offset, position.epoch, last_key)
}

/// Reads [`encode_cursor`]'s form.
pub(crate) fn decode_cursor(cursor: &str) -> Option<(Position, String)> {
    let mut parts = cursor.splitn(3, ':');
    let offset = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.to_string();
    let key = parts.next()?.to_string();
    Some((Position { offset, epoch }, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_keys_with_separators() {
        let position = Position { offset: 42, epoch: "ab".into() };
        let (p, k) = decode_cursor(&encode_cursor(&position, "a:b:c")).unwrap();
        assert_eq!((p.offset, p.epoch.as_str(), k.as_str()), (42, "ab", "a:b:c"));
        assert!(decode_cursor("x:y").is_none());
    }

    #[test]
    fn keys_with_control_characters_are_refused() {
        assert!(valid_key("user:42 é"));
        assert!(!valid_key(""));
        assert!(!valid_key("a\r\nb"));
    }
}
