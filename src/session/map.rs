//! Map subscriptions on the client side: `subscribe` with `type: 1` (state
//! pages, then live with the changes since) and `publish` with `type: 1`
//! (set or remove a key). See [`crate::map`] for the protocol.

use std::collections::HashSet;

use super::error::CommandError;
use super::subscribe::FLAG_REJECT_UNRECOVERED;
use super::{Session, SubState};
use crate::broker::Position;
use crate::channels::{allowed, Actor};
use crate::map::{self, Change};
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::{PublishRequest, PublishResult, Reply, SubscribeRequest, SubscribeResult};
use crate::proxy::map_proxies::MapEvent;

/// `SubscribeRequest.type` and `SubscribeResult.type` of map subscriptions.
pub(super) const TYPE_MAP: i32 = 1;
/// Map subscribe phases (centrifuge `MapPhaseLive`, `MapPhaseStream`, `MapPhaseState`).
const PHASE_LIVE: i32 = 0;
const PHASE_STREAM: i32 = 1;
const PHASE_STATE: i32 = 2;

impl Session {
    /// Whether a channel's namespace is a map namespace (false for unknown
    /// namespaces, which the regular path refuses).
    pub(super) fn is_map_channel(&self, channel: &str) -> bool {
        self.app.rules.resolve(channel).is_ok_and(|r| r.options.subscription_type.is_map())
    }

    pub(super) async fn map_subscribe(&mut self, req: SubscribeRequest) -> Result<Reply, CommandError> {
        self.channel_name_checks(&req.channel)?;
        // The catch-up timeout and the pages' bookkeeping (map_catch_up.rs).
        let started = std::time::Instant::now();
        let continuing = self.map_catch_up_enter(&req)?;
        let channel = req.channel.clone();
        let outcome = self.map_subscribe_phase(req, continuing).await;
        self.map_catch_up_after(&channel, started, &outcome);
        outcome
    }

    /// Serves a map subscribe request's phase; `continuing`: the client is
    /// paging this subscription (its first page was served).
    async fn map_subscribe_phase(&mut self, req: SubscribeRequest, continuing: bool) -> Result<Reply, CommandError> {
        let channel = req.channel.clone();
        let app = self.app.clone();
        let resolved = app.rules.resolve(&channel)?;
        // A map request for another kind of channel, or the reverse: 103,
        // as Centrifugo's OnSubscribe answers a type the namespace does not
        // allow (isSubscriptionTypeAllowed; `map_clients` channels take
        // type 2, `map_users` 3).
        let kind = resolved.options.subscription_type;
        if !kind.is_map() || req.r#type != kind.request_type() {
            return Err(ErrorCode::PERMISSION_DENIED.into());
        }
        let (expire_at, info, data) = if req.token.is_empty() {
            // The subscribe proxy or the namespace's permissions (map_proxy.rs).
            let grant = self.map_subscribe_grant(&resolved, &req).await?;
            (grant.expire_at, grant.info, grant.data)
        } else {
            let claims = self.subscription_claims(&req.token, &channel).await?;
            (claims.expire_at, claims.info, claims.data)
        };
        let options = &resolved.options.map;
        let stream = options.mode.has_stream();
        let broker = app.broker.clone();
        // Delta negotiation (centrifuge client_map.go): granted when the
        // namespace's `allowed_delta_types` has the type asked for; any
        // other type is simply not granted (no disconnect, unlike streams).
        let delta = !req.delta.is_empty() && resolved.options.allowed_delta_types.contains(&req.delta);
        let protocol = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?.handle.protocol;
        // Stream modes with delta: the state's values this gateway read (its
        // delta bases), and the keys whose change was pending when read.
        let mut seeds = Vec::new();
        let mut result = SubscribeResult { r#type: TYPE_MAP, recoverable: stream, data, ..Default::default() };
        let (expires, ttl) = super::ttl_of(expire_at);
        (result.expires, result.ttl) = (expires, ttl);
        let since = match req.phase {
            PHASE_STATE => {
                // The position is frozen by the first page and carried in
                // the cursor; entries changed after it come from the stream.
                let (position, after) = if req.cursor.is_empty() {
                    (map::position(broker.as_ref(), options, &channel).await?, None)
                } else {
                    let (position, key) = map::decode_cursor(&req.cursor).ok_or(ErrorCode::BAD_REQUEST)?;
                    (stream.then_some(position), Some(key))
                };
                let ttl = options.key_ttl.filter(|t| !t.is_zero());
                let frozen = position.as_ref().map(|p| p.offset);
                let all = broker.map_read(&channel, None, ttl).await?;
                if delta && stream {
                    seeds = all.iter().map(|(k, e)| (k.clone(), e.offset, e.data.clone())).collect();
                }
                let mut entries: Vec<_> = all
                    .into_iter()
                    .filter(|(k, e)| {
                        after.as_ref().is_none_or(|a| k > a)
                            && (after.is_none() || frozen.is_none_or(|f| e.offset <= f))
                    })
                    .collect();
                let page = options.page_size(req.limit);
                if entries.len() > page {
                    entries.truncate(page);
                    let last = entries.last().map(|(k, _)| k.clone()).unwrap_or_default();
                    let position = position.unwrap_or_default();
                    result.phase = PHASE_STATE;
                    // Recoverable is announced by the page that goes live.
                    result.recoverable = false;
                    result.cursor = map::encode_cursor(&position, &last);
                    (result.epoch, result.offset) = (position.epoch, position.offset);
                    let state = entries.into_iter().map(|(k, e)| map::state_publication(k, e)).collect();
                    result.state = crate::hub::escaped_state(protocol, delta, state);
                    return Ok(Reply { subscribe: Some(result), ..Default::default() });
                }
                let state = entries.into_iter().map(|(k, e)| map::state_publication(k, e)).collect();
                result.state = crate::hub::escaped_state(protocol, delta, state);
                position.map(|p| (p, false))
            }
            PHASE_STREAM | PHASE_LIVE if stream => {
                // Without a paged subscription, only a recovery may start here.
                if !req.recover && req.phase == PHASE_STREAM && !continuing {
                    return Err(ErrorCode::PERMISSION_DENIED.into());
                }
                Some((Position { offset: req.offset, epoch: req.epoch.clone() }, req.recover))
            }
            PHASE_LIVE => None,
            _ => return Err(ErrorCode::BAD_REQUEST.into()),
        };
        let state = SubState { expire_at, server_side: false, info, join_leave: false, positioned: stream };
        self.map_grant_done(&channel);
        let delivery = crate::hub::Delivery { delta, keyed: true, filter: None };
        self.join_channel_with(&channel, state, delivery).await?;
        result.delta = delta;
        let client_key = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?.handle.key;
        app.hub.map_seed(&channel, seeds.iter().map(|(k, offset, data)| (k.as_str(), *offset, data)));
        if let Some((position, recovering)) = since {
            let catch_up = SubscribeRequest {
                channel: channel.clone(),
                recover: true,
                offset: position.offset,
                epoch: position.epoch.clone(),
                flag: FLAG_REJECT_UNRECOVERED,
                ..Default::default()
            };
            let recovered = match self.recover(&channel, &catch_up, &crate::hub::Delivery::default()).await {
                Ok(recovered) => recovered,
                Err(e) => {
                    self.leave_channel(&channel);
                    return Err(e);
                }
            };
            // Too far behind: the SDK loads the state again.
            if recovered.publications.len() > options.live_transition_limit() {
                self.leave_channel(&channel);
                return Err(ErrorCode::UNRECOVERABLE_POSITION.into());
            }
            let last = recovered.publications.last().map_or(0, |p| p.offset);
            result.epoch = recovered.epoch;
            result.offset = last.max(position.offset);
            let mut publications = recovered.publications;
            if delta {
                let values = publications.iter().filter(|p| !p.removed);
                app.hub.map_seed(&channel, values.map(|p| (p.key.as_str(), p.offset, &p.data)));
                // A state entry read while its change was pending holds a
                // value whose publication, should it come live, names a base
                // the client never had: that one goes whole (once it is in
                // the catch-up, it comes whole there anyway).
                let mut whole: HashSet<String> =
                    seeds.iter().filter(|(_, offset, _)| *offset == 0).map(|(k, _, _)| k.clone()).collect();
                for p in &publications {
                    whole.remove(&p.key);
                }
                if !whole.is_empty() {
                    app.hub.map_whole_keys(&channel, client_key, whole);
                }
                publications = crate::hub::recovered_map_deltas(protocol, publications);
            }
            result.publications = publications;
            if recovering {
                (result.recovered, result.was_recovering) = (true, true);
            }
        }
        Ok(Reply { subscribe: Some(result), ..Default::default() })
    }

    /// `publish` with `type: 1`: sets `key` to `data`, or with `removed`
    /// removes it, under the namespace's `map.allow_publish_*` /
    /// `map.allow_remove_*` rules.
    pub(super) async fn map_publish(&mut self, mut req: PublishRequest) -> Result<Reply, CommandError> {
        if req.channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let app = self.app.clone();
        let channel = req.channel.clone();
        let resolved = app.rules.resolve(&channel)?;
        // The wrong kind of write for the channel: 103, as Centrifugo answers.
        if !resolved.options.subscription_type.is_map() || req.r#type != TYPE_MAP {
            return Err(ErrorCode::PERMISSION_DENIED.into());
        }
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        // `map.client_key`: the server decides the key (Centrifugo's OnMapPublish).
        match resolved.options.map.client_key.as_str() {
            "client_id" => req.key = conn.handle.client_id.clone(),
            "user_id" if conn.handle.user.is_empty() => return Err(ErrorCode::PERMISSION_DENIED.into()),
            "user_id" => req.key = conn.handle.user.clone(),
            _ => {}
        }
        let o = &resolved.options.map;
        // A namespace with a map proxy lets the backend decide instead of
        // the `allow_*` options, and may change key, data and tags.
        let event = if req.removed { MapEvent::Remove } else { MapEvent::Publish };
        let (key, data, tags) = match app.proxies.map_proxy_for(resolved.options, event, app.config.granular_proxy_mode)
        {
            Some(None) => return Err(ErrorCode::NOT_AVAILABLE.into()),
            Some(Some(proxy)) => {
                let d = self.map_change_proxy(&proxy, event, &req.channel, &req.key, &req.data).await?;
                (d.key, d.data, d.tags)
            }
            None => {
                let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
                let actor = Actor { user: &conn.handle.user, subscribed: conn.channels.contains_key(&req.channel) };
                let (c, s, a) = if req.removed {
                    (o.allow_remove_for_client, o.allow_remove_for_subscriber, o.allow_remove_for_anonymous)
                } else {
                    (o.allow_publish_for_client, o.allow_publish_for_subscriber, o.allow_publish_for_anonymous)
                };
                allowed(c, s, a, actor)?;
                (req.key, req.data, Default::default())
            }
        };
        if !map::valid_key(&key) {
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        // Centrifugo's key writes from clients carry the writer's client
        // info; its removals carry none.
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        let info = (!req.removed).then(|| conn.client_info(&req.channel));
        // Centrifugo's OnMapPublish: `delta_publish` publishes with the delta flag.
        let delta = resolved.options.delta_publish && !req.removed;
        let change = Change { key, data, tags, info, removed: req.removed, delta };
        map::apply(app.broker.as_ref(), o, &req.channel, change).await?;
        Ok(Reply { publish: Some(PublishResult {}), ..Default::default() })
    }
}
