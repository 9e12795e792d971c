//! The hub's channel index: name -> channel, split into shards.
//!
//! A shard's lock is held only to look a name up, add or remove it (never
//! across a fan-out, an await or another lock), so subscribes and
//! unsubscribes of different channels rarely meet, and a fan-out, which
//! reaches its channel through the broker's sink, takes none of them.
//! (centrifuge splits its hub the same way, 64 shards: hub.go.)

use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::channel::Channel;

const SHARDS: usize = 64;

pub(super) struct Index {
    shards: Vec<RwLock<HashMap<String, Arc<Channel>>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Index {
    pub(super) fn new() -> Self {
        Index { shards: (0..SHARDS).map(|_| RwLock::default()).collect(), hasher: Default::default() }
    }

    fn shard(&self, name: &str) -> &RwLock<HashMap<String, Arc<Channel>>> {
        &self.shards[self.hasher.hash_one(name) as usize % SHARDS]
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<Channel>> {
        self.shard(name).read().get(name).cloned()
    }

    pub(super) fn get_or_create(&self, name: &str) -> Arc<Channel> {
        if let Some(channel) = self.get(name) {
            return channel;
        }
        self.shard(name).write().entry(name.to_string()).or_insert_with(|| Channel::new(name)).clone()
    }

    /// Removes `channel` if the index still holds that very one under its name.
    pub(super) fn remove(&self, channel: &Arc<Channel>) {
        let mut shard = self.shard(&channel.name).write();
        if shard.get(&channel.name).is_some_and(|held| Arc::ptr_eq(held, channel)) {
            // Dropped after the lock: the last reference unsubscribes the broker.
            let removed = shard.remove(&channel.name);
            drop(shard);
            drop(removed);
        }
    }

    /// Every channel, one shard locked at a time.
    pub(super) fn all(&self) -> Vec<Arc<Channel>> {
        self.shards.iter().flat_map(|s| s.read().values().cloned().collect::<Vec<_>>()).collect()
    }
}
