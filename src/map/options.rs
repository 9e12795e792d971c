//! The `map` options of a namespace (Centrifugo v6.8+ `MapConfig`, in
//! `internal/configtypes/namespace.go`), and what they imply for its stream.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::channels::options::Lenient;

/// How a map channel keeps its keys (Centrifugo's `map.mode`; centrifuge
/// `MapMode` in `config.go`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MapMode {
    /// Not set: the namespace is no map namespace (a map one must set it).
    #[default]
    #[serde(rename = "")]
    Unset,
    /// Keys expire after `key_ttl`; no change stream, so no recovery: a
    /// reconnecting client loads the state again.
    Ephemeral,
    /// Keys expire after `key_ttl`; changes are kept in a stream for recovery.
    Recoverable,
    /// Keys never expire; changes are kept in a stream for recovery.
    Persistent,
}

impl MapMode {
    /// Changes are kept in a stream (offsets, recovery).
    pub fn has_stream(self) -> bool {
        matches!(self, MapMode::Recoverable | MapMode::Persistent)
    }

    /// Keys expire after `key_ttl`.
    pub fn has_expiry(self) -> bool {
        matches!(self, MapMode::Ephemeral | MapMode::Recoverable)
    }
}

/// A namespace's `map` object. Names and meanings are Centrifugo's; options
/// Centrifugo has that natsgate does not implement are refused rather than
/// silently ignored.
// Every number and boolean reads as itself or as text.
#[serde_with::apply(
    bool => #[serde_as(as = "Lenient")],
    u32 => #[serde_as(as = "Lenient")],
)]
#[serde_with::serde_as]
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MapOptions {
    /// `ephemeral`, `recoverable` or `persistent`; required for a map namespace.
    pub mode: MapMode,
    /// How long a key lives after its last update (ephemeral and recoverable
    /// modes: required; persistent: must be unset). Applied per namespace:
    /// on NATS it is the state bucket's `max_age`.
    #[serde(with = "humantime_serde")]
    pub key_ttl: Option<Duration>,
    /// Changes kept per channel for recovery (stream modes; default 100).
    pub stream_size: u32,
    /// How long changes are kept for recovery (stream modes; default 60 s).
    #[serde(with = "humantime_serde")]
    pub stream_ttl: Option<Duration>,
    /// Authenticated clients may set keys.
    pub allow_publish_for_client: bool,
    /// Subscribers of the channel may set keys.
    pub allow_publish_for_subscriber: bool,
    /// Anonymous clients may set keys (with one of the two above).
    pub allow_publish_for_anonymous: bool,
    /// Authenticated clients may remove keys.
    pub allow_remove_for_client: bool,
    /// Subscribers of the channel may remove keys.
    pub allow_remove_for_subscriber: bool,
    /// Anonymous clients may remove keys (with one of the two above).
    pub allow_remove_for_anonymous: bool,
    /// State entries per page when the client asks for none (default 100).
    pub default_page_size: u32,
    /// Smallest page a client may ask for (default 100).
    pub min_page_size: u32,
    /// Largest page a client may ask for (default 1000).
    pub max_page_size: u32,
    // Presence-style map channels (issue #20; see `crate::map::presence`).
    /// `client_id` or `user_id`: a client's `publish`/`remove` writes the key
    /// of its client id or user id whatever key it sent (Centrifugo's
    /// `OnMapPublish`; `user_id` refuses anonymous clients with 103).
    pub client_key: String,
    /// A client's unsubscribe (or disconnect) removes the key of its client
    /// id from this map channel (centrifuge `MapRemoveClientOnUnsubscribe`).
    pub remove_client_on_unsubscribe: bool,
    /// How long the stream's position (offset, epoch) outlives it
    /// (stream modes; at least `stream_ttl`). Checked as Centrifugo does;
    /// on NATS the position lives as long as the JetStream stream.
    #[serde(with = "humantime_serde")]
    pub meta_ttl: Option<Duration>,
    // Map proxies (Centrifugo's `map.publish_proxy_*`/`map.remove_proxy_*`;
    // `crate::proxy::map_proxies`): the backend decides client key writes
    // and removals instead of the `allow_*` options above.
    /// Client key writes go to the map publish proxy.
    pub publish_proxy_enabled: bool,
    /// Granular proxy mode: the `proxies` entry used for key writes.
    pub publish_proxy_name: String,
    /// Client key removals go to the map remove proxy.
    pub remove_proxy_enabled: bool,
    /// Granular proxy mode: the `proxies` entry used for key removals.
    pub remove_proxy_name: String,
    /// Most changes a subscriber going live may catch up on from the
    /// stream; beyond it the subscribe is refused with 112 and the SDK
    /// loads the state again (0: `max_page_size`; centrifuge's
    /// `LiveTransitionMaxPublicationLimit`).
    pub live_transition_max_publication_limit: u32,
    // Catch-up timeout (`crate::map::catch_up`).
    /// How long a subscriber may page through the state before it is live;
    /// past it the next page request is answered with disconnect 3008
    /// (`"10s"`, or integer nanoseconds; 0: 5 s; negative: no timeout).
    pub subscribe_catch_up_timeout: super::catch_up::CatchUpTimeout,
}

/// centrifuge's `defaultMapStreamSize`/`defaultMapStreamTTL` (map_broker.go,
/// `ResolveAndValidateMapChannelOptions`).
const DEFAULT_STREAM_SIZE: u32 = 100;
const DEFAULT_STREAM_TTL: Duration = Duration::from_secs(60);

impl MapOptions {
    /// Checks the options as centrifuge's `ResolveAndValidateMapChannelOptions` does.
    pub fn validate(&self) -> Result<(), String> {
        let ttl = self.key_ttl.filter(|t| !t.is_zero());
        match self.mode {
            MapMode::Unset => return Err("a map namespace needs map.mode: ephemeral, recoverable or persistent".into()),
            m if m.has_expiry() && ttl.is_none() => return Err("map.key_ttl is required in this map.mode".into()),
            MapMode::Persistent if ttl.is_some() => return Err("map.key_ttl must be unset in persistent mode".into()),
            MapMode::Ephemeral if self.stream_size > 0 || self.stream_ttl.is_some() => {
                return Err("map.stream_size and map.stream_ttl need recoverable or persistent mode".into())
            }
            _ => {}
        }
        // Centrifugo's validateChannelOptions.
        if !["", "client_id", "user_id"].contains(&self.client_key.as_str()) {
            return Err(format!("unknown map.client_key: {:?} (valid: \"client_id\", \"user_id\")", self.client_key));
        }
        if let Some(meta_ttl) = self.meta_ttl.filter(|t| !t.is_zero()) {
            let Some((_, stream_ttl)) = self.stream() else {
                return Err("map.meta_ttl must be 0 for map.mode \"ephemeral\"".into());
            };
            if meta_ttl < stream_ttl {
                return Err("map.meta_ttl must be >= map.stream_ttl (metadata must outlive stream)".into());
            }
        }
        Ok(())
    }

    /// `(history_size, history_ttl)` of the channel stream that carries the
    /// changes, for the stream modes.
    pub fn stream(&self) -> Option<(u32, Duration)> {
        self.mode.has_stream().then(|| {
            let size = if self.stream_size == 0 { DEFAULT_STREAM_SIZE } else { self.stream_size };
            (size, self.stream_ttl.filter(|t| !t.is_zero()).unwrap_or(DEFAULT_STREAM_TTL))
        })
    }

    /// The most changes a subscriber may catch up on when it goes live
    /// (`live_transition_max_publication_limit`, else `max_page_size`,
    /// else 1000; centrifuge `handleMapTransitionToLive`).
    pub fn live_transition_limit(&self) -> usize {
        match (self.live_transition_max_publication_limit, self.max_page_size) {
            (0, 0) => 1000,
            (0, max) => max as usize,
            (limit, _) => limit as usize,
        }
    }

    /// The page size for a client's `limit` (centrifuge `getMapPageSize`).
    pub fn page_size(&self, asked: i32) -> usize {
        let or = |v: u32, d: usize| if v == 0 { d } else { v as usize };
        let (default, min, max) =
            (or(self.default_page_size, 100), or(self.min_page_size, 100), or(self.max_page_size, 1000));
        let asked = if asked <= 0 { default } else { asked as usize };
        asked.max(min).min(max)
    }
}
