//! What a subscription asked of its publications beyond the plain stream
//! (issue #20): fossil deltas, and a tags filter. The per-publication work is
//! done once per channel, not once per subscriber: the delta against the
//! channel's previous publication once per wire form, each distinct filter
//! once.

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::delta;
use crate::protocol::{FilterNode, Protocol, Publication};
use crate::tags_filter;

/// The delivery options of one subscription.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// The client asked for fossil deltas and the namespace allows them: its
    /// publications go as deltas against its previous one when it is
    /// positioned (or recoverable), else whole, as from Centrifugo; JSON data
    /// as a JSON string (whole or delta).
    pub delta: bool,
    /// Only publications whose tags pass this (validated) filter reach it.
    /// Ignored with `delta`, as centrifuge ignores it for live publications
    /// of delta subscribers (a filtered-out publication would leave the
    /// client without the base of the next delta); the SDKs refuse both.
    pub filter: Option<FilterNode>,
    /// A map subscription: with `delta`, its publications are deltas
    /// against their key's previous value, the first live one included.
    pub keyed: bool,
}

/// A filter shared by the subscribers of a channel that gave the same one
/// (interned by its Protobuf encoding), so it is evaluated once per
/// publication however many subscribers hold it.
#[derive(Debug)]
pub(super) struct SharedFilter {
    node: FilterNode,
}

/// The channel's interned filters; entries go when their last holder does.
#[derive(Default)]
pub(super) struct Filters(Mutex<HashMap<Vec<u8>, Weak<SharedFilter>>>);

impl Filters {
    pub(super) fn intern(&self, node: FilterNode) -> Arc<SharedFilter> {
        let key = prost::Message::encode_to_vec(&node);
        let mut filters = self.0.lock();
        if let Some(shared) = filters.get(&key).and_then(Weak::upgrade) {
            return shared;
        }
        filters.retain(|_, weak| weak.strong_count() > 0);
        let shared = Arc::new(SharedFilter { node });
        filters.insert(key, Arc::downgrade(&shared));
        shared
    }
}

/// Each distinct filter's verdict on one publication, decided at first use.
#[derive(Default)]
pub(super) struct Verdicts(Vec<(*const SharedFilter, bool)>);

impl Verdicts {
    pub(super) fn passes(&mut self, filter: &Arc<SharedFilter>, publication: &Publication) -> bool {
        let key = Arc::as_ptr(filter);
        if let Some((_, pass)) = self.0.iter().find(|(k, _)| *k == key) {
            return *pass;
        }
        let pass = tags_filter::matches(&filter.node, &publication.tags);
        self.0.push((key, pass));
        pass
    }
}

/// The channel's previous publication (history channels): the base of the
/// next one's delta. Every gateway receiving the channel sees the same
/// ordered stream, and each publication names the offset before it, so a
/// delta is made only against the publication the stream says came right
/// before; otherwise (this gateway missed it, or just opened the channel)
/// the publication goes whole, which every subscriber can apply.
#[derive(Default)]
pub(super) struct Base(Mutex<Option<(u64, Bytes)>>);

impl Base {
    /// Records a publication as the new base and gives the data to make its
    /// delta against, when the stream says the previous base came right
    /// before it.
    pub(super) fn advance(&self, offset: u64, prev_offset: u64, data: &Bytes) -> Option<Bytes> {
        let mut base = self.0.lock();
        let previous = match base.as_ref() {
            // A late, older publication does not move the base back.
            Some((held, _)) if *held >= offset => return None,
            Some((held, data)) if *held == prev_offset => Some(data.clone()),
            _ => None,
        };
        *base = Some((offset, data.clone()));
        previous
    }

    /// A publication known to be the channel's latest at `offset` (the last
    /// one a recovery returned): the base, unless a later one is held.
    pub(super) fn seed(&self, offset: u64, data: Bytes) {
        let mut base = self.0.lock();
        if base.as_ref().is_none_or(|(held, _)| *held < offset) {
            *base = Some((offset, data));
        }
    }
}

/// The wire forms of one publication for delta subscribers, made lazily and
/// at most once each per protocol: the whole publication (JSON data as a
/// JSON string), and the delta against the previous one when there is a base
/// and the delta is smaller (else the whole form again).
pub(super) struct DeltaForms<'a> {
    channel: &'a str,
    publication: &'a Publication,
    base: Option<Bytes>,
    json_whole: Option<Option<Bytes>>,
    json_delta: Option<Option<Bytes>>,
    /// Some(None): no smaller delta, the plain encoding goes.
    protobuf_delta: Option<Option<Bytes>>,
}

impl<'a> DeltaForms<'a> {
    pub(super) fn new(channel: &'a str, publication: &'a Publication, base: Option<Bytes>) -> Self {
        DeltaForms { channel, publication, base, json_whole: None, json_delta: None, protobuf_delta: None }
    }

    /// The whole publication; Protobuf's is the plain encoding (`plain`).
    pub(super) fn whole(&mut self, protocol: Protocol, plain: impl FnOnce() -> Option<Bytes>) -> Option<Bytes> {
        match protocol {
            Protocol::Protobuf => plain(),
            Protocol::Json => {
                let (channel, publication) = (self.channel, self.publication);
                self.json_whole.get_or_insert_with(|| json_whole(channel, publication)).clone()
            }
        }
    }

    /// The delta form, or the whole one when there is no (smaller) delta.
    pub(super) fn delta(&mut self, protocol: Protocol, plain: impl FnOnce() -> Option<Bytes>) -> Option<Bytes> {
        let (channel, publication) = (self.channel, self.publication);
        match protocol {
            Protocol::Protobuf => {
                let base = self.base.as_ref();
                let encoded = self.protobuf_delta.get_or_insert_with(|| {
                    let patch = base.and_then(|base| delta::fossil(base, &publication.data))?;
                    encode(Protocol::Protobuf, channel, &patched(publication, patch))
                });
                encoded.clone().or_else(plain)
            }
            Protocol::Json => {
                if self.json_delta.is_none() {
                    let patch = self.base.as_ref().and_then(|base| delta::fossil_for_json(base, &publication.data));
                    let encoded = match patch {
                        Some(patch) => {
                            encode(Protocol::Json, channel, &patched(publication, delta::json_string(&patch)))
                        }
                        None => self.whole(Protocol::Json, || None),
                    };
                    self.json_delta = Some(encoded);
                }
                self.json_delta.clone().flatten()
            }
        }
    }
}

/// The publication carrying `data` as a delta.
fn patched(publication: &Publication, data: Bytes) -> Publication {
    Publication { data, delta: true, ..publication.clone() }
}

/// A JSON delta subscriber's whole publication: data as a JSON string.
fn json_whole(channel: &str, publication: &Publication) -> Option<Bytes> {
    let whole = Publication { data: delta::json_string(&publication.data), ..publication.clone() };
    encode(Protocol::Json, channel, &whole)
}

pub(super) fn encode(protocol: Protocol, channel: &str, publication: &Publication) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(publication.data.len() + channel.len() + 48);
    protocol.encode_publication_push(channel, publication, &mut out).ok()?;
    Some(out.freeze())
}

/// Recovered publications for a delta subscriber, as centrifuge's
/// `makeRecoveredPubsDeltaFossil` makes them: the first whole, each next
/// one a delta against the one before it when that is smaller; JSON data as
/// JSON strings.
pub fn recovered_deltas(protocol: Protocol, publications: Vec<Publication>) -> Vec<Publication> {
    let mut out = Vec::with_capacity(publications.len());
    let mut previous: Option<Bytes> = None;
    for publication in publications {
        let patch = previous.as_ref().and_then(|base| match protocol {
            Protocol::Json => delta::fossil_for_json(base, &publication.data),
            Protocol::Protobuf => delta::fossil(base, &publication.data),
        });
        previous = Some(publication.data.clone());
        let (data, is_delta) = match patch {
            Some(patch) => (patch, true),
            None => (publication.data.clone(), false),
        };
        let data = if protocol == Protocol::Json { delta::json_string(&data) } else { data };
        out.push(Publication { data, delta: is_delta, ..publication });
    }
    out
}

/// Stream publications a map delta subscriber catches up on, as centrifuge's
/// `makeRecoveredMapPubsDeltaFossil` makes them: per key, the first one
/// whole and each next one a fossil delta against that key's previous one
/// when smaller; removals never deltas (they end the key's chain). Over JSON
/// the data is a JSON string (a removal's only when it has data).
pub fn recovered_map_deltas(protocol: Protocol, publications: Vec<Publication>) -> Vec<Publication> {
    let json = protocol == Protocol::Json;
    let mut previous: HashMap<String, Bytes> = HashMap::new();
    let mut out = Vec::with_capacity(publications.len());
    for publication in publications {
        if publication.removed {
            previous.remove(&publication.key);
            let data = match json && !publication.data.is_empty() {
                true => delta::json_string(&publication.data),
                false => publication.data.clone(),
            };
            out.push(Publication { data, ..publication });
            continue;
        }
        let base = previous.insert(publication.key.clone(), publication.data.clone());
        let patch = base.as_ref().and_then(|base| match protocol {
            Protocol::Json => delta::fossil_for_json(base, &publication.data),
            Protocol::Protobuf => delta::fossil(base, &publication.data),
        });
        let (data, is_delta) = match patch {
            Some(patch) => (patch, true),
            None => (publication.data.clone(), false),
        };
        let data = if json { delta::json_string(&data) } else { data };
        out.push(Publication { data, delta: is_delta, ..publication });
    }
    out
}

/// State entries for a JSON map subscriber that negotiates deltas: data as
/// JSON strings (empty data left as is), so the SDK holds the exact bytes
/// later deltas apply to (centrifuge's `escapeStateForDelta`).
pub fn escaped_state(protocol: Protocol, delta: bool, state: Vec<Publication>) -> Vec<Publication> {
    if !delta || protocol != Protocol::Json {
        return state;
    }
    let escape = |p: Publication| match p.data.is_empty() {
        true => p,
        false => Publication { data: delta::json_string(&p.data), ..p },
    };
    state.into_iter().map(escape).collect()
}
