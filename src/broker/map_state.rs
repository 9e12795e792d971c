//! Map channel state as brokers keep it: one entry per key, written in two
//! steps so that a state read never misses a change its stream position
//! already counts (see [`crate::map`] for the protocol), and the in-memory
//! store of the embedded broker.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One key's entry in a map channel's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapEntry {
    pub data: Bytes,
    pub tags: HashMap<String, String>,
    /// The change's position in the channel stream; 0 while the change is
    /// being published (the pre-write) and in ephemeral mode (no stream).
    pub offset: u64,
    /// When it was written (Unix milliseconds); key TTLs count from here.
    pub time_ms: u64,
    /// A removal: kept so that a late pre-write cannot bring the key back,
    /// never shown in the state.
    pub removed: bool,
    /// Who wrote it, shown with the entry in the state: the subscriber's
    /// client info in `map_clients` channels (centrifuge stores the
    /// publication's `ClientInfo` with the key).
    pub info: Option<crate::protocol::ClientInfo>,
}

impl MapEntry {
    /// Whether `self` may replace `held`: pre-writes (offset 0) always do; a
    /// change with an offset only replaces an older change, so two gateways
    /// writing one key end with the stream's last change.
    pub fn supersedes(&self, held: &MapEntry) -> bool {
        self.offset == 0 || held.offset < self.offset
    }

    /// Whether the entry's key outlived `key_ttl` at `now_ms`.
    pub fn expired(&self, key_ttl: Option<Duration>, now_ms: u64) -> bool {
        key_ttl.is_some_and(|ttl| self.time_ms.saturating_add(ttl.as_millis() as u64) <= now_ms)
    }

    /// The stored form: a 4-byte big-endian length, that many bytes of JSON
    /// metadata, then the data as is.
    pub fn encode(&self) -> Bytes {
        let mut meta = serde_json::json!({ "o": self.offset, "ms": self.time_ms, "r": self.removed, "t": self.tags });
        if let Some(info) = &self.info {
            use base64::Engine;
            let info = prost::Message::encode_to_vec(info);
            meta["i"] = base64::engine::general_purpose::STANDARD.encode(info).into();
        }
        let meta = meta.to_string();
        let mut out = BytesMut::with_capacity(4 + meta.len() + self.data.len());
        out.put_u32(meta.len() as u32);
        out.put_slice(meta.as_bytes());
        out.put_slice(&self.data);
        out.freeze()
    }

    /// Reads [`encode`](Self::encode)'s form; None for anything else.
    pub fn decode(mut stored: Bytes) -> Option<MapEntry> {
        if stored.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes(stored[..4].try_into().ok()?) as usize;
        let body = stored.split_off(4);
        if body.len() < len {
            return None;
        }
        let meta: serde_json::Value = serde_json::from_slice(&body[..len]).ok()?;
        Some(MapEntry {
            data: body.slice(len..),
            tags: serde_json::from_value(meta["t"].clone()).unwrap_or_default(),
            offset: meta["o"].as_u64()?,
            time_ms: meta["ms"].as_u64()?,
            removed: meta["r"].as_bool()?,
            info: match meta["i"].as_str() {
                Some(info) => {
                    use base64::Engine;
                    let info = base64::engine::general_purpose::STANDARD.decode(info).ok()?;
                    Some(prost::Message::decode(info.as_slice()).ok()?)
                }
                None => None,
            },
        })
    }
}

/// The embedded broker's map state: channel -> key -> entry.
#[derive(Default)]
pub(crate) struct MemoryMaps {
    channels: HashMap<String, BTreeMap<String, MapEntry>>,
}

impl MemoryMaps {
    pub(crate) fn write(&mut self, channel: &str, key: &str, entry: MapEntry, key_ttl: Option<Duration>) {
        let now = super::now_ms();
        let keys = self.channels.entry(channel.to_string()).or_default();
        // Keys expired for a second TTL go first (as the NATS bucket's
        // `max_age` of twice the TTL drops them), so the map holds live keys,
        // removals and keys expired so lately that the expiry sweep
        // (`crate::map::presence`) has yet to publish their removal.
        keys.retain(|_, e| !e.expired(key_ttl.map(|t| t * 2), now));
        match keys.get(key) {
            Some(held) if !entry.supersedes(held) => {}
            _ => {
                keys.insert(key.to_string(), entry);
            }
        }
    }

    /// Replaces `key`'s entry with `entry` only if it still is `expected`.
    pub(crate) fn replace(&mut self, channel: &str, key: &str, expected: &MapEntry, entry: MapEntry) -> bool {
        match self.channels.get_mut(channel).and_then(|keys| keys.get_mut(key)) {
            Some(held) if held == expected => {
                *held = entry;
                true
            }
            _ => false,
        }
    }

    /// Every entry (expired ones too, removals not) of the channels of `namespace`.
    pub(crate) fn scan(&self, namespace: &str) -> Vec<(String, String, MapEntry)> {
        let mut out = Vec::new();
        for (channel, keys) in self.channels.iter().filter(|(c, _)| crate::channels::namespace_of(c) == namespace) {
            let live = keys.iter().filter(|(_, e)| !e.removed);
            out.extend(live.map(|(k, e)| (channel.clone(), k.clone(), e.clone())));
        }
        out
    }

    pub(crate) fn read(&self, channel: &str, key: Option<&str>, key_ttl: Option<Duration>) -> Vec<(String, MapEntry)> {
        let now = super::now_ms();
        let Some(keys) = self.channels.get(channel) else { return Vec::new() };
        let live =
            |(k, e): (&String, &MapEntry)| (!e.removed && !e.expired(key_ttl, now)).then(|| (k.clone(), e.clone()));
        match key {
            Some(key) => keys.get_key_value(key).and_then(live).into_iter().collect(),
            None => keys.iter().filter_map(live).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let entry = MapEntry {
            data: Bytes::from_static(b"\x00binary"),
            tags: [("a".to_string(), "1".to_string())].into(),
            offset: 7,
            time_ms: 12,
            removed: true,
            info: Some(crate::protocol::ClientInfo { user: "u".into(), client: "c".into(), ..Default::default() }),
        };
        assert_eq!(MapEntry::decode(entry.encode()), Some(entry));
        assert_eq!(MapEntry::decode(Bytes::from_static(b"\x00\x00\x00\x09{}")), None);
        assert_eq!(MapEntry::decode(Bytes::from_static(b"ab")), None);
    }

    #[test]
    fn a_later_change_wins_whatever_order_the_writes_arrive_in() {
        let mut maps = MemoryMaps::default();
        let at = |offset, data: &'static [u8]| MapEntry {
            offset,
            data: Bytes::from_static(data),
            time_ms: super::super::now_ms(),
            ..Default::default()
        };
        maps.write("c", "k", at(0, b"pending"), None);
        maps.write("c", "k", at(5, b"five"), None);
        maps.write("c", "k", at(4, b"four"), None);
        assert_eq!(maps.read("c", None, None)[0].1.data, Bytes::from_static(b"five"));
        maps.write("c", "k", MapEntry { removed: true, ..at(6, b"") }, None);
        assert!(maps.read("c", Some("k"), None).is_empty(), "removed keys are not state");
    }
}
