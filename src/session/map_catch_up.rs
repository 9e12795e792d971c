//! Map subscriptions still paging through the state (centrifuge's
//! `mapSubscribing` in `client_map.go`): each has a deadline set by the
//! namespace's `map.subscribe_catch_up_timeout`, checked when the client
//! asks for its next page. The session lives on one gateway for the whole
//! connection, so a per-channel entry here is all the server keeps; there
//! is at most one per channel the client may still subscribe to (they count
//! against `client_channel_limit`, as in centrifuge), and an entry goes when
//! the subscription is live, refused, unsubscribed, or expired.
//!
//! A connection's commands are handled one at a time, so two page requests
//! of one channel never run at once: centrifuge's pagination lock (error
//! 113) never has anything to refuse here.

use std::time::Instant;

use super::error::CommandError;
use super::Session;
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::{Reply, SubscribeRequest};

/// The state phase (centrifuge `MapPhaseState`).
const PHASE_STATE: i32 = 2;

impl Session {
    /// Decides what a map subscribe request is before it is served: the
    /// next request of a subscription being paged (`Ok(true)`), or a new
    /// one (`Ok(false)`). Past its deadline the paged subscription ends
    /// with disconnect 3008, as centrifuge's `isMapCatchUpExpired` check;
    /// a new request for a channel still being paged is 105; a cursor of a
    /// subscription not being paged is 103 (centrifuge
    /// `handleMapSubscribeCommand`). Expired entries of other channels are
    /// dropped first (centrifuge `sweepExpiredMapSubscribing`).
    pub(super) fn map_catch_up_enter(&mut self, req: &SubscribeRequest) -> Result<bool, CommandError> {
        let now = Instant::now();
        let channel = &req.channel;
        self.map_catch_ups.retain(|c, deadline| c == channel || deadline.is_none_or(|d| now <= d));
        let continuing = self
            .map_catch_ups
            .get(channel)
            .map(|deadline| (!req.cursor.is_empty() || req.phase != PHASE_STATE, *deadline));
        match continuing {
            Some((true, deadline)) => {
                if deadline.is_some_and(|d| now > d) {
                    self.map_catch_ups.remove(channel);
                    tracing::info!(channel = %channel, "map subscribe catch-up timeout");
                    return Err(Disconnect::SLOW.into());
                }
                Ok(true)
            }
            Some((false, _)) => Err(ErrorCode::ALREADY_SUBSCRIBED.into()),
            None => {
                let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
                if conn.channels.contains_key(channel) {
                    return Err(ErrorCode::ALREADY_SUBSCRIBED.into());
                }
                if self.channels_in_use() >= self.app.config.client_channel_limit {
                    return Err(ErrorCode::LIMIT_EXCEEDED.into());
                }
                if !req.cursor.is_empty() {
                    return Err(ErrorCode::PERMISSION_DENIED.into());
                }
                Ok(false)
            }
        }
    }

    /// After a map subscribe request was served: a page with a cursor keeps
    /// (or, for the first, starts) the subscription's catch-up, its deadline
    /// counted from `started`; anything else (live, or refused) ends it.
    pub(super) fn map_catch_up_after(
        &mut self,
        channel: &str,
        started: Instant,
        outcome: &Result<Reply, CommandError>,
    ) {
        let paging = matches!(outcome, Ok(Reply { subscribe: Some(s), .. }) if !s.cursor.is_empty());
        if !paging {
            self.map_catch_ups.remove(channel);
            return;
        }
        if !self.map_catch_ups.contains_key(channel) {
            let timeout =
                self.app.rules.resolve(channel).ok().and_then(|r| r.options.map.subscribe_catch_up_timeout.effective());
            self.map_catch_ups.insert(channel.to_string(), timeout.map(|t| started + t));
        }
    }

    /// Forgets a channel's catch-up (the client unsubscribed).
    pub(super) fn map_catch_up_done(&mut self, channel: &str) {
        self.map_catch_ups.remove(channel);
    }

    /// Channels the client holds against `client_channel_limit`: its
    /// subscriptions and the map subscriptions it is paging.
    pub(super) fn channels_in_use(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.channels.len()) + self.map_catch_ups.len()
    }
}
