//! Shared poll subscriptions on the client side (centrifuge
//! `client_shared_poll.go`, `client_keyed.go`; Centrifugo v6.9 `OnTrack`):
//! `subscribe` with `type: 4`, and `sub_refresh` with `type: 1` (track
//! signed key batches) or `type: 2` (untrack). See [`crate::shared_poll`].

use super::error::CommandError;
use super::{Session, SubState};
use crate::channels::{Actor, SubscriptionType};
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::{Reply, SubRefreshRequest, SubRefreshResult, SubscribeRequest, SubscribeResult};
use crate::shared_poll::{signature, SUBSCRIPTION_TYPE, TRACK, UNTRACK};

/// A track whose reply is being queued: its keys start flowing after it
/// (no push may precede the reply, as in centrifuge's `handleTrack`).
pub(super) struct PendingTrack {
    channel: String,
    items: Vec<(String, u64)>,
    /// Keys untracked in the same request (signed earlier, dropped since).
    untrack: Vec<String>,
}

impl Session {
    /// Whether a channel's namespace is a shared poll namespace.
    pub(super) fn is_shared_poll_channel(&self, channel: &str) -> bool {
        self.app.rules.resolve(channel).is_ok_and(|r| r.options.subscription_type == SubscriptionType::SharedPoll)
    }

    /// `subscribe` of a shared poll channel (or with type 4): no broker, no
    /// history; the reply carries the type and the channel's epoch.
    pub(super) async fn shared_poll_subscribe(&mut self, req: SubscribeRequest) -> Result<Reply, CommandError> {
        let channel = req.channel.clone();
        let app = self.app.clone();
        // centrifuge's handleSubscribe: type 4 elsewhere is 108, another
        // type here is 107.
        let refused = if !self.is_shared_poll_channel(&channel) {
            Some(ErrorCode::NOT_AVAILABLE)
        } else if req.r#type != SUBSCRIPTION_TYPE {
            Some(ErrorCode::BAD_REQUEST)
        } else {
            None
        };
        let conn = self.subscribe_preamble(&channel, refused)?;
        let resolved = app.rules.resolve(&channel)?;
        let (expire_at, info, data) = if req.token.is_empty() {
            let actor = Actor { user: &conn.handle.user, subscribed: false };
            resolved.can_subscribe(actor, false)?;
            (None, bytes::Bytes::new(), bytes::Bytes::new())
        } else {
            let claims = self.subscription_claims(&req.token, &channel).await?;
            (claims.expire_at, claims.info, claims.data)
        };
        let mut result = SubscribeResult { r#type: SUBSCRIPTION_TYPE, data, ..Default::default() };
        (result.expires, result.ttl) = super::ttl_of(expire_at);
        result.epoch = app.shared_poll.epoch(&channel, &resolved.options.shared_poll);
        let state = SubState { expire_at, server_side: false, info, join_leave: false, positioned: false };
        // Not in the hub: the channel's broker messages are shared_poll_publish
        // ones, which reach trackers through `crate::shared_poll` only.
        if let Some(conn) = self.conn.as_mut() {
            conn.channels.insert(channel, state);
        }
        Ok(Reply { subscribe: Some(result), ..Default::default() })
    }

    /// `sub_refresh` of a shared poll subscription: track (type 1) or
    /// untrack (type 2). None for a plain sub_refresh.
    pub(super) fn shared_poll_sub_refresh(&mut self, req: &SubRefreshRequest) -> Option<Result<Reply, CommandError>> {
        if req.r#type != TRACK && req.r#type != UNTRACK {
            return None;
        }
        let conn = self.conn.as_ref()?;
        if !conn.channels.contains_key(&req.channel) || !self.is_shared_poll_channel(&req.channel) {
            return None;
        }
        Some(if req.r#type == TRACK { self.track(req) } else { self.untrack(req) })
    }

    /// Checks every batch's signature (Centrifugo's `OnTrack`), then replies;
    /// the keys are registered once the reply is queued.
    fn track(&mut self, req: &SubRefreshRequest) -> Result<Reply, CommandError> {
        let app = self.app.clone();
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        let channel = &req.channel;
        // Keys once each, the last batch's version winning.
        let mut items: Vec<(String, u64)> = Vec::new();
        for batch in &req.track {
            for item in &batch.items {
                match items.iter_mut().find(|(k, _)| *k == item.key) {
                    Some(existing) => existing.1 = item.version,
                    None => items.push((item.key.clone(), item.version)),
                }
            }
        }
        if items.is_empty() {
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        let options = &app.rules.resolve(channel)?.options.shared_poll;
        let tracked = &app.shared_poll;
        let key = conn.handle.key;
        let new = items.iter().filter(|(k, _)| !req.untrack.contains(k) && !tracked.tracks(channel, key, k)).count();
        let dropped = req.untrack.iter().filter(|k| tracked.tracks(channel, key, k)).count();
        if (tracked.tracked_by(channel, key) + new).saturating_sub(dropped) > options.max_keys() {
            return Err(ErrorCode::LIMIT_EXCEEDED.into());
        }
        let config = &app.config;
        if config.shared_poll_hmac_secret_key.is_empty() {
            tracing::error!(channel, "shared_poll_hmac_secret_key is not configured");
            return Err(ErrorCode::INTERNAL.into());
        }
        let now = super::now_unix();
        let mut min_expiry: Option<i64> = None;
        for batch in &req.track {
            let keys: Vec<&str> = batch.items.iter().map(|i| i.key.as_str()).collect();
            let user = conn.handle.user.as_str();
            let mut valid =
                signature::verify(&config.shared_poll_hmac_secret_key, channel, &batch.signature, &keys, user);
            let previous = &config.shared_poll_hmac_previous_secret_key;
            if !valid && !previous.is_empty() {
                let (iat, _) = signature::timestamps(&batch.signature);
                let until = config.shared_poll_hmac_previous_secret_key_valid_until as i64;
                if until > 0 && iat > until {
                    return Err(ErrorCode::PERMISSION_DENIED.into());
                }
                valid = signature::verify(previous, channel, &batch.signature, &keys, user);
            }
            if !valid {
                tracing::info!(channel, "invalid track signature");
                return Err(ErrorCode::PERMISSION_DENIED.into());
            }
            let (_, expiry) = signature::timestamps(&batch.signature);
            if expiry > 0 && expiry + signature::GRACE_SECONDS < now {
                return Err(ErrorCode::TOKEN_EXPIRED.into());
            }
            if expiry > 0 {
                min_expiry = Some(min_expiry.map_or(expiry, |m| m.min(expiry)));
            }
        }
        let mut result = SubRefreshResult::default();
        if let Some(at) = min_expiry {
            result.expires = true;
            result.ttl = (at - now).clamp(0, u32::MAX as i64) as u32;
        }
        self.shared_poll_pending.push(PendingTrack { channel: channel.clone(), items, untrack: req.untrack.clone() });
        Ok(Reply { sub_refresh: Some(result), ..Default::default() })
    }

    /// Type 2: stops the keys (keys not tracked are ignored); 107 without keys.
    fn untrack(&mut self, req: &SubRefreshRequest) -> Result<Reply, CommandError> {
        if req.untrack.is_empty() {
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        self.app.shared_poll.untrack(&req.channel, conn.handle.key, &req.untrack);
        Ok(Reply { sub_refresh: Some(SubRefreshResult::default()), ..Default::default() })
    }

    /// Registers the tracks whose replies are now queued.
    pub(super) fn release_tracks(&mut self) {
        let pending = std::mem::take(&mut self.shared_poll_pending);
        let Some(conn) = self.conn.as_ref() else { return };
        for track in pending {
            // Unsubscribed in the same frame: nothing to start.
            if !conn.channels.contains_key(&track.channel) {
                continue;
            }
            let Ok(resolved) = self.app.rules.resolve(&track.channel) else { continue };
            let options = &resolved.options.shared_poll;
            let proxy = self.app.proxies.shared_poll_refresh_for(&options.proxy_name);
            self.app.shared_poll.track(&track.channel, options, proxy, &conn.handle, track.items);
            if !track.untrack.is_empty() {
                self.app.shared_poll.untrack(&track.channel, conn.handle.key, &track.untrack);
            }
        }
    }
}
