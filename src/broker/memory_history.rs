//! The embedded broker's history: per-channel rings with offsets, trimmed by
//! size and age, plus idempotency keys. Gives one gateway the same history
//! semantics as JetStream gives many.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::history::{HistoryConfig, Position};
use super::Message;

/// How long an idempotency key is remembered, like JetStream's duplicate window.
pub(crate) const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(120);

pub(crate) struct MemoryHistory {
    config: HistoryConfig,
    /// Lost on restart, so a restart starts a new epoch.
    epoch: String,
    channels: HashMap<String, ChannelHistory>,
}

#[derive(Default)]
struct ChannelHistory {
    /// Kept after every publication aged out or was removed, for as long as
    /// the process (and so the epoch) lives: longer than any
    /// history_meta_ttl. Forgetting it earlier would need an epoch per
    /// channel, or a recreated channel's offsets would repeat old ones.
    top: u64,
    held: VecDeque<(Instant, Message)>,
    keys: HashMap<String, (Instant, u64)>,
}

impl MemoryHistory {
    pub(crate) fn new(config: HistoryConfig) -> Self {
        MemoryHistory {
            config,
            epoch: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            channels: HashMap::new(),
        }
    }

    pub(crate) fn keeps(&self, channel: &str) -> bool {
        self.config.for_channel(channel).is_some()
    }

    /// Stores a publication and gives it the next offset; a repeated
    /// idempotency key returns the first publication's position and `false`.
    pub(crate) fn append(&mut self, channel: &str, message: &mut Message) -> Option<(Position, bool)> {
        let (size, ttl) = self.config.for_channel(channel)?;
        let now = Instant::now();
        let ch = self.channels.entry(channel.to_string()).or_default();
        ch.keys.retain(|_, (at, _)| now.duration_since(*at) < IDEMPOTENCY_WINDOW);
        if let Some(key) = &message.idempotency_key {
            if let Some((_, offset)) = ch.keys.get(key) {
                return Some((Position { offset: *offset, epoch: self.epoch.clone() }, false));
            }
        }
        ch.top += 1;
        message.offset = ch.top;
        if let Some(key) = &message.idempotency_key {
            ch.keys.insert(key.clone(), (now, ch.top));
        }
        ch.held.push_back((now, message.clone()));
        trim(ch, size, ttl, now);
        Some((Position { offset: ch.top, epoch: self.epoch.clone() }, true))
    }

    /// Held publications (oldest first) and the current position.
    pub(crate) fn read(&mut self, channel: &str) -> Option<(Vec<Message>, Position)> {
        let (size, ttl) = self.config.for_channel(channel)?;
        let epoch = self.epoch.clone();
        let Some(ch) = self.channels.get_mut(channel) else {
            return Some((Vec::new(), Position { offset: 0, epoch }));
        };
        trim(ch, size, ttl, Instant::now());
        Some((ch.held.iter().map(|(_, m)| m.clone()).collect(), Position { offset: ch.top, epoch }))
    }

    pub(crate) fn remove(&mut self, channel: &str) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.held.clear();
        }
    }
}

fn trim(ch: &mut ChannelHistory, size: u32, ttl: Duration, now: Instant) {
    while ch.held.len() > size as usize {
        ch.held.pop_front();
    }
    while ch.held.front().is_some_and(|(at, _)| now.duration_since(*at) >= ttl) {
        ch.held.pop_front();
    }
}
