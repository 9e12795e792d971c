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
    /// The API's `version` of the key's last versioned write (0: none),
    /// carried over by unversioned writes as centrifuge's brokers do.
    pub version: u64,
    /// The API's `version_epoch` that `version` counts in.
    pub version_epoch: String,
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
        if self.version != 0 {
            meta["v"] = self.version.into();
            meta["ve"] = self.version_epoch.clone().into();
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
            version: meta["v"].as_u64().unwrap_or(0),
            version_epoch: meta["ve"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// `map_publish`'s `key_mode` (centrifuge `KeyMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyMode {
    /// Always write (`""`).
    #[default]
    Replace,
    /// Only when the key is not in the state (`"if_new"`), else `key_exists`.
    IfNew,
    /// Only when the key is in the state (`"if_exists"`), else `key_not_found`.
    IfExists,
}

/// What a conditional state write ([`crate::broker::Broker::map_write_if`])
/// requires of the key's live entry, checked in centrifuge's order
/// (version, then key mode) against the entry the compare-and-set replaces,
/// so two gateways writing one key never both pass.
#[derive(Clone, Debug, Default)]
pub struct MapCondition {
    pub key_mode: KeyMode,
    /// Suppress (`version`) unless greater than the held entry's version
    /// (0: no check). Compared only when `version_epoch` is empty or equals
    /// the held entry's.
    pub version: u64,
    pub version_epoch: String,
    /// Refuse ([`PENDING`]) while another change of the key is between its
    /// state pre-write and its publication (a live entry at offset 0 younger
    /// than [`PENDING_PATIENCE`]), so that changes of one key are published
    /// in the order their conditions were judged (stream modes; ephemeral
    /// entries stay at offset 0).
    pub serialize: bool,
}

/// [`MapCondition::admit`]'s answer while another change of the key is
/// being published: the caller waits and asks again.
pub const PENDING: &str = "pending";

/// How long a pending change may hold its key before others take over (a
/// gateway that died between the pre-write and the publication).
pub const PENDING_PATIENCE: Duration = Duration::from_secs(5);

impl MapCondition {
    /// Checks `held` (the key's live entry, None when absent, removed or
    /// expired): `Err(reason)` is centrifuge's `SuppressReason`. On success
    /// `entry` gets the version it is to carry (an unversioned write keeps
    /// the held one; a removal keeps none).
    pub fn admit(&self, held: Option<&MapEntry>, entry: &mut MapEntry) -> Result<(), &'static str> {
        if let Some(held) = held.filter(|_| self.serialize) {
            let patience = PENDING_PATIENCE.as_millis() as u64;
            if held.offset == 0 && super::now_ms() < held.time_ms.saturating_add(patience) {
                return Err(PENDING);
            }
        }
        if let Some(held) = held {
            let same_epoch = self.version_epoch.is_empty() || self.version_epoch == held.version_epoch;
            if self.version > 0 && same_epoch && self.version <= held.version {
                return Err("version");
            }
        }
        match (self.key_mode, held.is_some()) {
            (KeyMode::IfNew, true) => return Err("key_exists"),
            (KeyMode::IfExists, false) => return Err("key_not_found"),
            _ => {}
        }
        if entry.removed {
            (entry.version, entry.version_epoch) = (0, String::new());
        } else if self.version > 0 {
            (entry.version, entry.version_epoch) = (self.version, self.version_epoch.clone());
        } else if let Some(held) = held {
            (entry.version, entry.version_epoch) = (held.version, held.version_epoch.clone());
        }
        Ok(())
    }
}

/// How long an idempotent map write's result is remembered (centrifuge's
/// `defaultIdempotentResultExpireSeconds`, 300 s).
pub const IDEMPOTENT_RESULT_TTL: Duration = Duration::from_secs(300);

/// The embedded broker's map state: channel -> key -> entry, and the
/// results of idempotent writes: (channel, idempotency key) -> (offset,
/// epoch, expiry in Unix ms).
#[derive(Default)]
pub(crate) struct MemoryMaps {
    channels: HashMap<String, BTreeMap<String, MapEntry>>,
    results: HashMap<(String, String), (u64, String, u64)>,
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

    /// [`MapCondition::admit`] and the write, under the caller's lock: the
    /// offset of the live entry replaced (0: none, or pending).
    pub(crate) fn write_if(
        &mut self,
        channel: &str,
        key: &str,
        entry: &mut MapEntry,
        key_ttl: Option<Duration>,
        condition: &MapCondition,
    ) -> Result<u64, &'static str> {
        let held = self.read(channel, Some(key), key_ttl).pop().map(|(_, e)| e);
        condition.admit(held.as_ref(), entry)?;
        self.write(channel, key, entry.clone(), key_ttl);
        Ok(held.map_or(0, |h| h.offset))
    }

    /// `map_clear`: the channel's keys and remembered results go.
    pub(crate) fn clear(&mut self, channel: &str) {
        self.channels.remove(channel);
        self.results.retain(|(c, _), _| c != channel);
    }

    /// A remembered idempotent write's (offset, epoch), if not expired.
    pub(crate) fn result(&self, channel: &str, idempotency_key: &str) -> Option<(u64, String)> {
        let now = super::now_ms();
        let (offset, epoch, expires) = self.results.get(&(channel.to_string(), idempotency_key.to_string()))?;
        (*expires > now).then(|| (*offset, epoch.clone()))
    }

    /// Remembers an idempotent write's result for [`IDEMPOTENT_RESULT_TTL`];
    /// expired results are dropped as new ones come, so the map holds at
    /// most the results of the last 300 s.
    pub(crate) fn remember(&mut self, channel: &str, idempotency_key: &str, offset: u64, epoch: String) {
        let now = super::now_ms();
        if self.results.len() >= 1024 {
            self.results.retain(|_, (_, _, expires)| *expires > now);
        }
        let expires = now + IDEMPOTENT_RESULT_TTL.as_millis() as u64;
        self.results.insert((channel.to_string(), idempotency_key.to_string()), (offset, epoch, expires));
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
            version: 3,
            version_epoch: "e".into(),
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

    #[test]
    fn conditions_judge_versions_then_key_modes_and_wait_for_pending_changes() {
        let held = MapEntry { offset: 3, version: 5, version_epoch: "e".into(), ..Default::default() };
        let versioned =
            |version, epoch: &str| MapCondition { version, version_epoch: epoch.into(), ..Default::default() };
        let mut entry = MapEntry::default();
        assert_eq!(versioned(5, "e").admit(Some(&held), &mut entry), Err("version"));
        assert_eq!(versioned(5, "").admit(Some(&held), &mut entry), Err("version"));
        assert_eq!(versioned(1, "other").admit(Some(&held), &mut entry), Ok(()));
        assert_eq!((entry.version, entry.version_epoch.as_str()), (1, "other"));
        let mut entry = MapEntry::default();
        assert_eq!(MapCondition::default().admit(Some(&held), &mut entry), Ok(()));
        assert_eq!(entry.version, 5, "an unversioned write keeps the key's version");
        let if_new = MapCondition { key_mode: KeyMode::IfNew, ..Default::default() };
        let if_exists = MapCondition { key_mode: KeyMode::IfExists, ..Default::default() };
        assert_eq!(if_new.admit(Some(&held), &mut entry), Err("key_exists"));
        assert_eq!(if_exists.admit(None, &mut entry), Err("key_not_found"));
        let pending = MapEntry { offset: 0, time_ms: super::super::now_ms(), ..Default::default() };
        let serialized = MapCondition { serialize: true, ..Default::default() };
        assert_eq!(serialized.admit(Some(&pending), &mut entry), Err(PENDING));
        let stale = MapEntry { time_ms: 1, ..pending };
        assert_eq!(serialized.admit(Some(&stale), &mut entry), Ok(()));
    }
}
