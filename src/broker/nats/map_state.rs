//! Map channel state on NATS: one JetStream key-value bucket per map
//! namespace (`<history stream name>_map`, `max_age` = twice `map.key_ttl`:
//! reads leave keys out once their TTL passed, and the second TTL lets the
//! expiry sweep of `crate::map::presence` see them to publish their
//! removal), one
//! key per channel key (`<channel token>.<key token>`, both encoded as
//! subject tokens), so every gateway reads the same state and none keeps it.
//! Conditional writes (`key_mode`, `version`) are compare-and-sets on the
//! key's revision. Idempotent writes' results live in a second bucket
//! (`<history stream name>_mapres`, `max_age` 300 s, same key scheme).

use async_nats::jetstream;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::time::Duration;

use super::{unavailable, NatsBroker};
use crate::broker::map_state::IDEMPOTENT_RESULT_TTL;
use crate::broker::subject::encode_token;
use crate::broker::{BrokerError, MapCondition, MapEntry, Position};

/// Compare-and-set attempts before a write gives up (each lost race means
/// another gateway wrote the key in between; a few suffice).
const CAS_ATTEMPTS: usize = 8;
/// Bound on reading a channel's state (one ordered consumer).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl NatsBroker {
    /// The namespace's state bucket, made on first use.
    async fn map_store(&self, channel: &str, key_ttl: Option<Duration>) -> Result<kv::Store, BrokerError> {
        self.namespace_map_store(crate::channels::namespace_of(channel), key_ttl).await
    }

    /// [`Self::map_store`] by namespace name.
    async fn namespace_map_store(&self, namespace: &str, key_ttl: Option<Duration>) -> Result<kv::Store, BrokerError> {
        self.map_bucket(namespace, "map", key_ttl).await
    }

    /// The namespace's bucket of idempotent results, made on first use.
    async fn result_store(&self, channel: &str) -> Result<kv::Store, BrokerError> {
        self.map_bucket(crate::channels::namespace_of(channel), "mapres", Some(IDEMPOTENT_RESULT_TTL)).await
    }

    /// A bucket `<history stream name>_<suffix>` of a namespace; the state
    /// bucket keeps entries twice `key_ttl` (see the module doc), the
    /// results bucket `key_ttl`.
    async fn map_bucket(
        &self,
        namespace: &str,
        suffix: &str,
        key_ttl: Option<Duration>,
    ) -> Result<kv::Store, BrokerError> {
        let bucket = format!("{}_{suffix}", self.subjects.stream_name(namespace));
        if let Some(store) = self.map_stores.lock().get(&bucket) {
            return Ok(store.clone());
        }
        let store = match self.jetstream.get_key_value(bucket.clone()).await {
            Ok(store) => store,
            Err(_) => {
                // The bucket's stream made directly: async-nats'
                // `create_key_value` first asks for the account info, whose
                // reply it cannot parse from nats-server 2.9. Same settings
                // as a KV bucket (one value per key, rollups, direct gets).
                let max_age = key_ttl.map(|t| if suffix == "map" { t * 2 } else { t }).unwrap_or_default();
                let config = jetstream::stream::Config {
                    name: format!("KV_{bucket}"),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 1,
                    max_age,
                    duplicate_window: if max_age.is_zero() {
                        Duration::from_secs(120)
                    } else {
                        max_age.min(Duration::from_secs(120))
                    },
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: self.replicas,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: jetstream::stream::DiscardPolicy::New,
                    ..Default::default()
                };
                self.jetstream.get_or_create_stream(config).await.map_err(unavailable)?;
                self.jetstream.get_key_value(bucket.clone()).await.map_err(unavailable)?
            }
        };
        self.map_stores.lock().insert(bucket, store.clone());
        Ok(store)
    }

    pub(super) async fn write_map_entry(
        &self,
        channel: &str,
        key: &str,
        entry: MapEntry,
        key_ttl: Option<Duration>,
    ) -> Result<(), BrokerError> {
        let written = self.compare_and_set(channel, key, key_ttl, |held| {
            held.is_none_or(|h| entry.supersedes(&h)).then(|| entry.clone()).ok_or("superseded")
        });
        written.await.map(|_| ())
    }

    pub(super) async fn write_map_entry_if(
        &self,
        channel: &str,
        key: &str,
        entry: &mut MapEntry,
        key_ttl: Option<Duration>,
        condition: &MapCondition,
    ) -> Result<Result<u64, &'static str>, BrokerError> {
        let now = crate::broker::now_ms();
        let proposed = entry.clone();
        // The offset of the live entry the last attempt judged against: the
        // one the successful compare-and-set replaced.
        let mut replaced = 0;
        let written = self
            .compare_and_set(channel, key, key_ttl, |held| {
                let live = held.filter(|h| !h.removed && !h.expired(key_ttl, now));
                replaced = live.as_ref().map_or(0, |h| h.offset);
                let mut next = proposed.clone();
                condition.admit(live.as_ref(), &mut next).map(|()| next)
            })
            .await?;
        Ok(written.map(|next| {
            *entry = next;
            replaced
        }))
    }

    /// Reads the key, asks `decide` (given the held entry, None when there
    /// is none or it is not an entry) for the entry to write or a reason not
    /// to, and writes it against the read revision; a lost race reads again.
    async fn compare_and_set(
        &self,
        channel: &str,
        key: &str,
        key_ttl: Option<Duration>,
        mut decide: impl FnMut(Option<MapEntry>) -> Result<MapEntry, &'static str>,
    ) -> Result<Result<MapEntry, &'static str>, BrokerError> {
        let store = self.map_store(channel, key_ttl).await?;
        let name = format!("{}.{}", encode_token(channel), encode_token(key));
        for _ in 0..CAS_ATTEMPTS {
            let held = store.entry(name.clone()).await.map_err(unavailable)?;
            let (held_entry, revision) = match held {
                Some(held) if held.operation == kv::Operation::Put => {
                    (MapEntry::decode(held.value), Some(held.revision))
                }
                _ => (None, None),
            };
            let next = match decide(held_entry) {
                Ok(next) => next,
                Err(reason) => return Ok(Err(reason)),
            };
            let value = next.encode();
            let written = match revision {
                Some(revision) => store.update(&name, value, revision).await.map(|_| ()).map_err(|e| {
                    (e.kind() == kv::UpdateErrorKind::WrongLastRevision).then_some(()).ok_or_else(|| unavailable(e))
                }),
                None => store.create(&name, value).await.map(|_| ()).map_err(|e| {
                    (e.kind() == kv::CreateErrorKind::AlreadyExists).then_some(()).ok_or_else(|| unavailable(e))
                }),
            };
            match written {
                Ok(()) => return Ok(Ok(next)),
                // Lost a race: read the key again.
                Err(Ok(())) => continue,
                Err(Err(e)) => return Err(e),
            }
        }
        Err(BrokerError::Unavailable(format!("map key kept changing while writing it ({CAS_ATTEMPTS} attempts)")))
    }

    /// Replaces a key's entry only if it still is `expected` (compare-and-set
    /// on the bucket revision).
    pub(super) async fn replace_map_entry(
        &self,
        channel: &str,
        key: &str,
        expected: &MapEntry,
        entry: MapEntry,
        key_ttl: Option<Duration>,
    ) -> Result<bool, BrokerError> {
        let store = self.map_store(channel, key_ttl).await?;
        let name = format!("{}.{}", encode_token(channel), encode_token(key));
        let Some(held) = store.entry(name.clone()).await.map_err(unavailable)? else { return Ok(false) };
        if held.operation != kv::Operation::Put || MapEntry::decode(held.value).as_ref() != Some(expected) {
            return Ok(false);
        }
        match store.update(&name, entry.encode(), held.revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// `map_clear`: purges the channel's keys from the state bucket and its
    /// results from the results bucket.
    pub(super) async fn clear_map_state(&self, channel: &str, key_ttl: Option<Duration>) -> Result<(), BrokerError> {
        for store in [self.map_store(channel, key_ttl).await?, self.result_store(channel).await?] {
            let filter = format!("{}{}.>", store.prefix, encode_token(channel));
            store.stream.purge().filter(filter).await.map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn read_map_result(
        &self,
        channel: &str,
        idempotency_key: &str,
    ) -> Result<Option<Position>, BrokerError> {
        let store = self.result_store(channel).await?;
        let name = format!("{}.{}", encode_token(channel), encode_token(idempotency_key));
        let Some(value) = store.get(name).await.map_err(unavailable)? else { return Ok(None) };
        let text = String::from_utf8_lossy(&value);
        let (offset, epoch) = text.split_once(':').unwrap_or(("0", ""));
        Ok(Some(Position { offset: offset.parse().unwrap_or(0), epoch: epoch.to_string() }))
    }

    pub(super) async fn write_map_result(
        &self,
        channel: &str,
        idempotency_key: &str,
        position: Position,
    ) -> Result<(), BrokerError> {
        let store = self.result_store(channel).await?;
        let name = format!("{}.{}", encode_token(channel), encode_token(idempotency_key));
        let value = format!("{}:{}", position.offset, position.epoch);
        store.put(name, value.into()).await.map(|_| ()).map_err(unavailable)
    }

    pub(super) async fn read_map_state(
        &self,
        channel: &str,
        key: Option<&str>,
        key_ttl: Option<Duration>,
    ) -> Result<Vec<(String, MapEntry)>, BrokerError> {
        let store = self.map_store(channel, key_ttl).await?;
        let prefix = format!("{}{}.", store.prefix, encode_token(channel));
        let filter = match key {
            Some(key) => format!("{prefix}{}", encode_token(key)),
            None => format!("{prefix}>"),
        };
        let now = crate::broker::now_ms();
        let entries = self.read_bucket(&store, filter).await?;
        let mut out: Vec<(String, MapEntry)> = entries
            .into_iter()
            .filter(|(_, e)| !e.expired(key_ttl, now))
            .filter_map(|(name, e)| {
                Some((name.strip_prefix(&prefix).and_then(crate::broker::subject::decode_token)?, e))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every entry of a namespace's bucket, expired ones too.
    pub(super) async fn scan_map_state(
        &self,
        namespace: &str,
        key_ttl: Option<Duration>,
    ) -> Result<Vec<(String, String, MapEntry)>, BrokerError> {
        let store = self.namespace_map_store(namespace, key_ttl).await?;
        let entries = self.read_bucket(&store, format!("{}>", store.prefix)).await?;
        let decode = |name: &str| {
            let (channel, key) = name.strip_prefix(store.prefix.as_str())?.split_once('.')?;
            let decode = crate::broker::subject::decode_token;
            Some((decode(channel)?, decode(key)?))
        };
        Ok(entries.into_iter().filter_map(|(name, e)| decode(&name).map(|(c, k)| (c, k, e))).collect())
    }

    /// The latest entry of every bucket key matching `filter`, as `(subject,
    /// entry)`, removals and undecodable values left out.
    async fn read_bucket(&self, store: &kv::Store, filter: String) -> Result<Vec<(String, MapEntry)>, BrokerError> {
        let read = async {
            // The last message of each key: an ordered consumer told how
            // many there are when it was made, read until none is pending.
            let consumer = store
                .stream
                .create_consumer(jetstream::consumer::push::OrderedConfig {
                    deliver_subject: self.client.new_inbox(),
                    filter_subject: filter,
                    deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                    replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            let mut out = Vec::new();
            if consumer.cached_info().num_pending == 0 {
                return Ok(out);
            }
            let mut messages = consumer.messages().await.map_err(unavailable)?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(unavailable)?;
                let pending = message.info().map_err(unavailable)?.pending;
                let is_put = message.headers.as_ref().and_then(|h| h.get("KV-Operation")).is_none();
                if let (true, Some(entry)) = (is_put, MapEntry::decode(message.payload.clone())) {
                    if !entry.removed {
                        out.push((message.subject.to_string(), entry));
                    }
                }
                if pending == 0 {
                    break;
                }
            }
            Ok(out)
        };
        tokio::time::timeout(READ_TIMEOUT, read).await.map_err(|_| unavailable("map state read timed out"))?
    }
}
