//! History types shared by both brokers: positions, queries and pages.
//!
//! A channel's publications carry an `offset` that only grows within the
//! channel; `epoch` names the incarnation of the store, and changes only when
//! the history is lost (stream deleted or recreated, embedded broker restarted).

use std::collections::HashMap;
use std::time::Duration;

use super::Message;
use crate::channels::namespace_of;
use crate::channels::ChannelRules;

/// Where a channel's history stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// A history request, as Centrifugo's `history` command has it.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Only publications after this position; its epoch must match, unless
    /// empty (matches any).
    pub since: Option<Position>,
    /// At most this many; 0 asks only for the current position.
    pub limit: usize,
    /// Newest first.
    pub reverse: bool,
}

/// The answer: publications (with offsets) and the current position.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub publications: Vec<Message>,
    pub position: Position,
    /// With `since`: every publication after it is still held, so a client
    /// at that position can recover without loss.
    pub continuous: bool,
}

/// Which namespaces keep history, and how much.
#[derive(Clone, Debug, Default)]
pub struct HistoryConfig {
    namespaces: HashMap<String, (u32, Duration)>,
    /// How long a channel's position outlives its last publication
    /// (`history_meta_ttl`; config checks it is at least every history ttl).
    pub meta_ttl: Duration,
}

impl HistoryConfig {
    pub fn from_rules(rules: &ChannelRules, meta_ttl: Duration) -> Self {
        let namespaces = rules
            .namespaces()
            .filter(|(_, o)| o.history_enabled())
            .map(|(name, o)| (name.to_string(), (o.history_size, o.history_ttl.unwrap_or_default())))
            .collect();
        HistoryConfig { namespaces, meta_ttl }
    }

    /// `(history_size, history_ttl)` of the channel's namespace, if it keeps history.
    pub fn for_channel(&self, channel: &str) -> Option<(u32, Duration)> {
        self.namespaces.get(namespace_of(channel)).copied()
    }

    pub fn namespaces(&self) -> impl Iterator<Item = (&str, u32, Duration)> {
        self.namespaces.iter().map(|(n, (s, t))| (n.as_str(), *s, *t))
    }
}

/// Selects a page from a channel's held publications (oldest first).
/// Shared by both brokers so they answer identically.
/// `since_held`: the publication at `since.offset` is still held (brokers
/// know this in their own way); with it every later one is held too, since
/// both size and age trim the oldest first.
pub(crate) fn select(
    held: Vec<Message>,
    position: Position,
    query: &Query,
    since_held: bool,
) -> Result<Page, super::BrokerError> {
    if let Some(since) = &query.since {
        // An empty epoch matches any (centrifuge compares epochs only when
        // one was given): what an application's getState returns before it
        // knows the epoch.
        let other_epoch = !since.epoch.is_empty() && since.epoch != position.epoch;
        if other_epoch || since.offset > position.offset {
            return Err(super::BrokerError::UnrecoverablePosition);
        }
    }
    // Forward: after `since`, oldest first. Reverse: before `since` (or from
    // the newest), newest first.
    let mut publications: Vec<Message> = match (&query.since, query.reverse) {
        (Some(since), false) => held.into_iter().filter(|m| m.offset > since.offset).collect(),
        (Some(since), true) => held.into_iter().filter(|m| m.offset < since.offset).collect(),
        (None, _) => held,
    };
    if query.reverse {
        publications.reverse();
    }
    publications.truncate(query.limit);
    let continuous = match &query.since {
        Some(since) => since.offset == position.offset || since_held,
        None => true,
    };
    Ok(Page { publications, position, continuous })
}
