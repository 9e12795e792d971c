//! `subscribe`, `unsubscribe` and `sub_refresh`, and the channel checks they share.

use super::error::CommandError;
use super::{now_unix, Session, SubState};
use crate::auth::TokenError;
use crate::broker::{Position, Query};
use crate::channels::options::RecoveryMode;
use crate::channels::{Access, Actor};
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::{
    Publication, Reply, SubRefreshRequest, SubRefreshResult, SubscribeRequest, SubscribeResult, UnsubscribeRequest,
    UnsubscribeResult,
};

/// `SubscribeRequest.flag` bit asking for error 112 when recovery fails
/// (centrifuge's `subscriptionFlagRejectUnrecovered`). Bit 0, channel
/// compaction, is left unset in every reply: Centrifugo v6 offers no option
/// that allows it, so it never assigns channel ids either.
pub(super) const FLAG_REJECT_UNRECOVERED: i64 = 1 << 1;

impl Session {
    pub(super) async fn subscribe(&mut self, req: SubscribeRequest) -> Result<Reply, CommandError> {
        if req.r#type == crate::shared_poll::SUBSCRIPTION_TYPE || self.is_shared_poll_channel(&req.channel) {
            return self.shared_poll_subscribe(req).await;
        }
        if req.r#type != 0 || self.is_map_channel(&req.channel) {
            return self.map_subscribe(req).await;
        }
        let channel = req.channel.clone();
        // An unknown delta type closes the connection, before any other
        // check (centrifuge: "unknown delta type in subscribe request"); an
        // empty channel would close it the same way.
        if !req.delta.is_empty() && req.delta != crate::delta::FOSSIL {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let conn = self.subscribe_preamble(&channel, None)?;
        let app = self.app.clone();
        let config = &app.config;
        let resolved = app.rules.resolve(&channel)?;
        let actor = Actor { user: &conn.handle.user, subscribed: false };

        let mut expire_at = None;
        let mut info = bytes::Bytes::new();
        let mut data = bytes::Bytes::new();
        if !req.token.is_empty() {
            let claims = self.subscription_claims(&req.token, &channel).await?;
            if claims.expire_at.is_some_and(|at| at <= now_unix()) {
                return Err(ErrorCode::EXPIRED.into());
            }
            expire_at = claims.expire_at;
            info = claims.info;
            // Centrifugo returns the token's `data` in the subscribe reply.
            data = claims.data;
        }
        let options = resolved.options;
        // Without a token, a namespace with a subscribe proxy lets the
        // backend decide (after private and user-limited channels, as in
        // Centrifugo's OnSubscribe); the client's flags then count for
        // nothing, only the namespace's forced options and the overrides.
        let granular = config.granular_proxy_mode;
        let proxy = app.proxies.subscribe_for(options, granular);
        let proxied = req.token.is_empty() && !resolved.private && resolved.allowed_users.is_none() && proxy.is_some();
        let (join_leave, recoverable, positioned) = if let (true, Some(proxy)) = (proxied, proxy) {
            let grant = self.subscribe_proxy(&proxy, &channel, &req.token, &req.data).await?;
            expire_at = grant.expire_at;
            info = grant.info;
            data = grant.data;
            let o = &grant.overrides;
            let flag = |v: &Option<crate::proxy::pb::BoolValue>, default: bool| v.as_ref().map_or(default, |b| b.value);
            let join_leave = flag(&o.join_leave, options.join_leave)
                && flag(&o.force_push_join_leave, options.force_push_join_leave);
            let recoverable = options.history_enabled() && flag(&o.force_recovery, options.force_recovery);
            let positioned =
                options.history_enabled() && (flag(&o.force_positioning, options.force_positioning) || recoverable);
            (join_leave, recoverable, positioned)
        } else {
            resolved.can_subscribe(actor, !req.token.is_empty())?;
            let join_leave = options.join_leave && (req.join_leave || options.force_push_join_leave);
            let recoverable =
                options.history_enabled() && (options.force_recovery || (options.allow_recovery && req.recoverable));
            let positioned = options.history_enabled()
                && (options.force_positioning || (options.allow_positioning && req.positioned) || recoverable);
            (join_leave, recoverable, positioned)
        };
        let delivery = delivery_of(&req, options)?;
        let delta = delivery.delta;
        let state = SubState { expire_at, server_side: false, info, join_leave, positioned };
        self.join_channel_with(&channel, state, delivery.clone()).await?;
        // With a sub_refresh proxy the server extends the subscription
        // itself, so the client is not told it expires.
        let server_refresh = app.proxies.sub_refresh_for(options, granular).is_some();
        let (expires, ttl) = if server_refresh { (false, 0) } else { super::ttl_of(expire_at) };
        let mut result = match self.position(&channel, options, recoverable, positioned, &req, &delivery).await {
            Ok(result) => result,
            Err(e) => {
                self.leave_channel(&channel);
                return Err(e);
            }
        };
        result.expires = expires;
        result.ttl = ttl;
        result.delta = delta;
        result.data = data;
        Ok(Reply { subscribe: Some(result), ..Default::default() })
    }

    /// The stream part of a subscribe reply, for client and server-side
    /// subscriptions alike: with `recoverable` the recovery the namespace's
    /// `force_recovery_mode` says, else with `positioned` the channel's
    /// current position (as Centrifugo answers: streamTop), so the client
    /// can detect gaps. The caller leaves the channel on error.
    pub(super) async fn position(
        &mut self,
        channel: &str,
        options: &crate::channels::ChannelOptions,
        recoverable: bool,
        positioned: bool,
        req: &SubscribeRequest,
        delivery: &crate::hub::Delivery,
    ) -> Result<SubscribeResult, CommandError> {
        if recoverable {
            let recovered = match options.force_recovery_mode {
                RecoveryMode::Cache => self.recover_cache(channel, req, options.auto_cache_recover).await?,
                RecoveryMode::Stream => self.recover(channel, req, delivery).await?,
            };
            return Ok(SubscribeResult { positioned, ..recovered });
        }
        let mut result = SubscribeResult { positioned, ..Default::default() };
        if positioned {
            let page = self.app.broker.history(channel, Query::default()).await?;
            result.epoch = page.position.epoch;
            result.offset = page.position.offset;
            // Publications up to here are behind the client's position.
            self.set_activation(channel, result.offset);
        }
        Ok(result)
    }

    /// The history part of a recoverable subscribe: the current position, and
    /// with `recover` the publications missed since the client's position.
    /// Live publications wait in the hub until the reply is queued.
    pub(super) async fn recover(
        &mut self,
        channel: &str,
        req: &SubscribeRequest,
        delivery: &crate::hub::Delivery,
    ) -> Result<SubscribeResult, CommandError> {
        let broker = self.app.broker.clone();
        let max = self.app.config.history_max_publication_limit;
        let mut result = SubscribeResult { recoverable: true, was_recovering: req.recover, ..Default::default() };
        let since = Position { offset: req.offset, epoch: req.epoch.clone() };
        let page = if req.recover {
            let query = Query { since: Some(since), limit: max + 1, reverse: false };
            match broker.history(channel, query).await {
                Ok(page) => Some(page),
                Err(crate::broker::BrokerError::UnrecoverablePosition) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let (position, publications) = match page {
            Some(page) if page.continuous && page.publications.len() <= max => {
                result.recovered = true;
                (page.position, page.publications)
            }
            // The SDK asked to be refused rather than subscribed unrecovered
            // (centrifuge-js and -python with getState): it then loads the
            // state from the application and subscribes again.
            _ if req.recover && req.flag & FLAG_REJECT_UNRECOVERED != 0 => {
                return Err(ErrorCode::UNRECOVERABLE_POSITION.into());
            }
            _ => {
                let page = broker.history(channel, Query::default()).await?;
                (page.position, Vec::new())
            }
        };
        let sent = publications.last().map(|p| p.offset).unwrap_or(position.offset);
        result.epoch = position.epoch;
        // Recovered: the client's own offset, which the publications then
        // advance (centrifuge: "attach stream offset from request").
        result.offset = if result.recovered { req.offset } else { position.offset };
        let mut publications: Vec<Publication> = publications.into_iter().map(Publication::from).collect();
        if let Some(filter) = &delivery.filter {
            // As centrifuge's isStreamRecovered; not for a delta subscriber,
            // whose live publications are not filtered either (see `Delivery`).
            if !delivery.delta {
                publications.retain(|p| crate::tags_filter::matches(filter, &p.tags));
            }
        }
        if delivery.delta && result.recovered {
            let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
            let latest =
                publications.last().filter(|p| p.offset == position.offset).map(|p| (p.offset, p.data.clone()));
            self.app.hub.delta_recovered(channel, conn.handle.key, latest);
            publications = crate::hub::recovered_deltas(conn.handle.protocol, publications);
        }
        result.publications = publications;
        self.set_activation(channel, sent.max(req.offset));
        Ok(result)
    }

    /// The checks stream and shared poll subscribes make first (a map
    /// subscribe makes only [`Self::channel_name_checks`], then its paging
    /// bookkeeping decides 105 and 106), in the order of centrifuge's `validateSubscribeRequest`: an
    /// empty channel disconnects (3501), one longer than `channel_max_length`
    /// is 107, then `refused` (the caller's verdict on the subscription
    /// type, which centrifuge gives before it looks at the connection's
    /// channels), a channel already subscribed is 105, and a connection
    /// that has `client_channel_limit` channels gets 106. Returns the
    /// connection (3501 before connect). Centrifugo checks no length for
    /// shared poll channels (README Deviations).
    pub(super) fn subscribe_preamble(
        &self,
        channel: &str,
        refused: Option<ErrorCode>,
    ) -> Result<&super::Connected, CommandError> {
        self.channel_name_checks(channel)?;
        if let Some(code) = refused {
            return Err(code.into());
        }
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        if conn.channels.contains_key(channel) {
            return Err(ErrorCode::ALREADY_SUBSCRIBED.into());
        }
        // Pagings of map subscriptions count too (map_catch_up.rs).
        if self.channels_in_use() >= self.app.config.client_channel_limit {
            return Err(ErrorCode::LIMIT_EXCEEDED.into());
        }
        Ok(conn)
    }

    /// The first checks of every subscribe, on the channel name alone: an
    /// empty channel disconnects with 3501, one longer than
    /// `channel_max_length` is 107 (centrifuge's handleSubscribe). A map
    /// subscribe runs only these before its paging bookkeeping, which
    /// decides 105 and 106 itself (a page of a paging is no second subscribe).
    pub(super) fn channel_name_checks(&self, channel: &str) -> Result<(), CommandError> {
        if channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        if channel.len() > self.app.config.channel_max_length {
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        Ok(())
    }

    /// A subscription token's claims for `channel`, as every kind of
    /// subscribe checks them (fetching the JWKS for an unknown `kid`): an
    /// expired token is 109, an invalid one 103, and a token for another
    /// channel, user or client disconnects with 3500 (centrifuge's
    /// handleSubscribe).
    pub(super) async fn subscription_claims(
        &self,
        token: &str,
        channel: &str,
    ) -> Result<crate::auth::SubscriptionClaims, CommandError> {
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        let claims = self.app.verifier.verify_subscription_fetching(token).await.map_err(|e| match e {
            TokenError::Expired => CommandError::from(ErrorCode::TOKEN_EXPIRED),
            TokenError::Invalid(_) => CommandError::from(ErrorCode::PERMISSION_DENIED),
        })?;
        let wrong_client = claims.client.as_ref().is_some_and(|c| *c != conn.handle.client_id);
        if claims.channel != channel || claims.user != conn.handle.user || wrong_client {
            return Err(Disconnect::INVALID_TOKEN.into());
        }
        Ok(claims)
    }

    /// Records the last history offset a pending subscribe reply carries or
    /// stands for: held publications up to it are not sent again.
    pub(super) fn set_activation(&mut self, channel: &str, sent: u64) {
        if let Some(activation) = self.activations.iter_mut().rev().find(|(c, _)| c == channel) {
            activation.1 = sent;
        }
    }

    pub(super) fn unsubscribe(&mut self, req: UnsubscribeRequest) -> Reply {
        self.leave_channel(&req.channel);
        self.map_catch_up_done(&req.channel);
        Reply { unsubscribe: Some(UnsubscribeResult {}), ..Default::default() }
    }

    pub(super) async fn sub_refresh(&mut self, req: SubRefreshRequest) -> Result<Reply, CommandError> {
        if req.channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        if let Some(outcome) = self.shared_poll_sub_refresh(&req) {
            return outcome;
        }
        let app = self.app.clone();
        let conn = self.conn.as_mut().ok_or(Disconnect::BAD_REQUEST)?;
        let client_id = conn.handle.client_id.clone();
        let user = conn.handle.user.clone();
        let Some(state) = conn.channels.get_mut(&req.channel) else {
            return Err(ErrorCode::PERMISSION_DENIED.into());
        };
        if req.token.is_empty() {
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        let claims = app.verifier.verify_subscription_fetching(&req.token).await.map_err(|e| match e {
            // Too late to refresh: the subscription is over, as Centrifugo intends.
            TokenError::Expired => CommandError::from(Disconnect::SUBSCRIPTION_EXPIRED),
            TokenError::Invalid(_) => CommandError::from(Disconnect::INVALID_TOKEN),
        })?;
        let wrong_client = claims.client.as_ref().is_some_and(|c| *c != client_id);
        if claims.channel != req.channel || claims.user != user || wrong_client {
            return Err(Disconnect::INVALID_TOKEN.into());
        }
        if claims.expire_at.is_some_and(|at| at <= now_unix()) {
            return Err(ErrorCode::EXPIRED.into());
        }
        state.expire_at = claims.expire_at;
        let (expires, ttl) = super::ttl_of(claims.expire_at);
        Ok(Reply { sub_refresh: Some(SubRefreshResult { expires, ttl, ..Default::default() }), ..Default::default() })
    }

    /// Subscribes the connection through the hub and records it.
    pub(super) async fn join_channel(&mut self, channel: &str, state: SubState) -> Result<(), CommandError> {
        self.join_channel_with(channel, state, crate::hub::Delivery::default()).await
    }

    /// [`Session::join_channel`] with delta compression or a tags filter.
    pub(super) async fn join_channel_with(
        &mut self,
        channel: &str,
        state: SubState,
        delivery: crate::hub::Delivery,
    ) -> Result<(), CommandError> {
        let conn = self.conn.as_mut().ok_or(Disconnect::BAD_REQUEST)?;
        let hub = &self.app.hub;
        let (info, join_leave, positioned) = (state.info.clone(), state.join_leave, state.positioned);
        hub.subscribe_with(channel, &conn.handle, info, join_leave, positioned, delivery).await?;
        conn.channels.insert(channel.to_string(), state);
        // Its pushes wait in the hub until the caller has queued the reply
        // that announces it and calls `release_subscriptions`.
        self.activations.push((channel.to_string(), 0));
        if let Some(conn) = self.conn.as_ref() {
            let info = conn.client_info(channel);
            crate::map::presence::joined(&self.app, channel, &info).await;
            self.announce(channel, info, crate::broker::PresenceEvent::Join);
        }
        Ok(())
    }

    /// Unsubscribes the connection from a channel, if it was subscribed.
    pub(crate) fn leave_channel(&mut self, channel: &str) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        if !conn.channels.contains_key(channel) {
            return false;
        }
        // Out of the hub before the leave is announced, so the client never
        // gets its own leave (Centrifugo removes the subscription first).
        let info = conn.client_info(channel);
        conn.channels.remove(channel);
        self.app.shared_poll.forget(channel, conn.handle.key);
        self.app.hub.unsubscribe(channel, conn.handle.key);
        self.activations.retain(|(c, _)| c != channel);
        crate::map::presence::left(&self.app, channel, &info);
        self.announce(channel, info, crate::broker::PresenceEvent::Leave);
        true
    }

    /// Whether the client may publish, read presence or history: resolves
    /// the channel and applies the namespace's rules.
    pub(super) fn check_access(&self, channel: &str, access: Access) -> Result<(), CommandError> {
        if channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        let resolved = self.app.rules.resolve(channel)?;
        let actor = Actor { user: &conn.handle.user, subscribed: conn.channels.contains_key(channel) };
        Ok(resolved.allows(access, actor)?)
    }
}

/// What the subscribe request asks of its publications, as centrifuge's
/// subscribeCmd decides it once the subscription is allowed: a tags filter
/// needs `allow_tags_filter` and must be well-formed (else error 107, the
/// connection stays); fossil deltas are granted when `allowed_delta_types`
/// has them (else the subscription goes on without, `delta` unset).
fn delivery_of(
    req: &SubscribeRequest,
    options: &crate::channels::ChannelOptions,
) -> Result<crate::hub::Delivery, CommandError> {
    if let Some(filter) = &req.tf {
        if !options.allow_tags_filter {
            tracing::info!(channel = req.channel, "tags filter not allowed");
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        if let Err(why) = crate::tags_filter::validate(filter) {
            tracing::info!(channel = req.channel, why, "invalid tags filter");
            return Err(ErrorCode::BAD_REQUEST.into());
        }
    }
    let delta =
        req.delta == crate::delta::FOSSIL && options.allowed_delta_types.iter().any(|t| t == crate::delta::FOSSIL);
    Ok(crate::hub::Delivery { delta, filter: req.tf.clone(), keyed: false })
}
