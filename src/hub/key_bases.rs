//! Per-key delta bases of a map channel (issue #20): the last value this
//! gateway saw of each key, with the offset of the publication that set it.
//!
//! Centrifugo makes a map publication's delta against the key's previous
//! state value (centrifuge `mapHub.add` hands it to the hub as `prevPub`).
//! Here the publishing gateway learns that value's offset from its
//! compare-and-set and sends only the offset along
//! ([`crate::broker::Message::key_base`]); each gateway makes the delta once
//! for the channel when it holds the value of exactly that offset, else the
//! publication goes whole, which every subscriber can apply. A value at an
//! offset never changes, so any fact learnt (a live publication, a state
//! entry, a recovered publication) is safe to keep; the cache only saves
//! bytes and is never needed for correctness, by this gateway or another.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;

/// The most key and value bytes kept per channel; keys beyond it are not
/// cached and their next publication goes whole.
const MAX_BYTES: usize = 8 << 20;

/// key -> (offset, value) of one map channel.
#[derive(Default)]
pub(super) struct KeyBases(Mutex<Bases>);

#[derive(Default)]
struct Bases {
    keys: HashMap<String, (u64, Bytes)>,
    bytes: usize,
}

impl Bases {
    /// Records `key` = `data` as set at `offset`, unless a later value is held.
    fn learn(&mut self, key: &str, offset: u64, data: &Bytes) {
        match self.keys.get_mut(key) {
            Some((held, _)) if *held >= offset => {}
            Some(slot) => {
                self.bytes = self.bytes + data.len() - slot.1.len();
                *slot = (offset, data.clone());
            }
            None if self.bytes + key.len() + data.len() > MAX_BYTES => {}
            None => {
                self.bytes += key.len() + data.len();
                self.keys.insert(key.to_string(), (offset, data.clone()));
            }
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some((_, data)) = self.keys.remove(key) {
            self.bytes -= key.len() + data.len();
        }
    }
}

impl KeyBases {
    /// A live map publication at `offset` (> 0): the value to make its delta
    /// against, when it has the delta flag and this gateway holds the value
    /// its `base` offset names; the publication then becomes the key's base
    /// (a removal forgets the key).
    pub(super) fn advance(
        &self,
        key: &str,
        offset: u64,
        base: u64,
        delta: bool,
        removed: bool,
        data: &Bytes,
    ) -> Option<Bytes> {
        let mut bases = self.0.lock();
        let previous = match bases.keys.get(key) {
            Some((held, value)) if delta && base != 0 && *held == base => Some(value.clone()),
            _ => None,
        };
        match removed {
            // A later value held: this one is late, the base stays.
            true if bases.keys.get(key).is_some_and(|(held, _)| *held > offset) => {}
            true => bases.forget(key),
            false => bases.learn(key, offset, data),
        }
        previous
    }

    /// Values read elsewhere (state entries, recovered publications):
    /// (key, offset, value), offsets 0 (pending or streamless) skipped.
    pub(super) fn seed<'a>(&self, values: impl IntoIterator<Item = (&'a str, u64, &'a Bytes)>) {
        let mut bases = self.0.lock();
        for (key, offset, data) in values.into_iter().filter(|(_, offset, _)| *offset > 0) {
            bases.learn(key, offset, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_is_made_only_against_the_value_the_publisher_named() {
        let bases = KeyBases::default();
        let v = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(bases.advance("a", 1, 0, true, false, &v("a1")), None, "a new key goes whole");
        assert_eq!(bases.advance("b", 2, 0, true, false, &v("b1")), None);
        assert_eq!(bases.advance("a", 3, 1, true, false, &v("a2")), Some(v("a1")));
        assert_eq!(bases.advance("b", 4, 2, false, false, &v("b2")), None, "no delta flag");
        assert_eq!(bases.advance("b", 6, 5, true, false, &v("b4")), None, "offset 5 was missed");
        assert_eq!(bases.advance("b", 7, 6, true, false, &v("b5")), Some(v("b4")));
        assert_eq!(bases.advance("b", 8, 0, true, true, &v("")), None);
        assert_eq!(bases.advance("b", 9, 7, true, false, &v("b6")), None, "removed keys hold no base");
        bases.seed([("c", 0, &v("pending")), ("c", 10, &v("c1")), ("a", 2, &v("old"))]);
        assert_eq!(bases.advance("c", 11, 10, true, false, &v("c2")), Some(v("c1")));
        assert_eq!(bases.advance("a", 12, 3, true, false, &v("a3")), Some(v("a2")), "an older seed is ignored");
    }

    #[test]
    fn the_cache_is_bounded() {
        let bases = KeyBases::default();
        let big = Bytes::from(vec![b'x'; MAX_BYTES / 2]);
        bases.seed([("a", 1, &big), ("b", 2, &big), ("c", 3, &big)]);
        let held = bases.0.lock();
        assert_eq!(held.keys.len(), 1);
        assert!(held.bytes <= MAX_BYTES);
    }
}
