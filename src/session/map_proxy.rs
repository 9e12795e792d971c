//! The backend proxies on map channels: the subscribe proxy deciding map
//! subscriptions (as Centrifugo's `OnSubscribe` consults it for every
//! subscription type), and the map publish and remove proxies deciding
//! client key writes (Centrifugo's `OnMapPublish`/`OnMapRemove` and
//! `internal/proxy/map_*_handler.go`).

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

use super::error::CommandError;
use super::proxy::{decoded, payload, SubscribeGrant};
use super::Session;
use crate::channels::{Actor, Resolved};
use crate::protocol::codes::ErrorCode;
use crate::protocol::SubscribeRequest;
use crate::proxy::map_proxies::MapEvent;
use crate::proxy::{pb, Event, Proxy};

/// A client key change as the backend left it.
pub(super) struct Decided {
    pub(super) key: String,
    pub(super) data: Bytes,
    pub(super) tags: HashMap<String, String>,
}

impl Session {
    /// Who grants a map subscribe without a token: the subscribe proxy when
    /// the namespace has one (not for private or user-limited channels, as
    /// for other subscriptions), else the namespace's permissions. The proxy
    /// is asked once per subscription: the pages after the first (with a
    /// cursor) use its grant, and without one are refused (103), as
    /// centrifuge refuses a cursor of a subscription it did not start.
    pub(super) async fn map_subscribe_grant(
        &mut self,
        resolved: &Resolved<'_>,
        req: &SubscribeRequest,
    ) -> Result<SubscribeGrant, CommandError> {
        let granular = self.app.config.granular_proxy_mode;
        let proxy = self.app.proxies.subscribe_for(resolved.options, granular);
        let proxied = !resolved.private && resolved.allowed_users.is_none() && proxy.is_some();
        let (true, Some(proxy)) = (proxied, proxy) else {
            let conn = self.conn.as_ref().ok_or(crate::protocol::codes::Disconnect::BAD_REQUEST)?;
            let actor = Actor { user: &conn.handle.user, subscribed: false };
            resolved.can_subscribe(actor, false)?;
            return Ok(SubscribeGrant::default());
        };
        if !req.cursor.is_empty() {
            return self.map_grants.get(&req.channel).cloned().ok_or_else(|| ErrorCode::PERMISSION_DENIED.into());
        }
        let grant = self.subscribe_proxy(&proxy, &req.channel, &req.token, &req.data).await?;
        // Kept while pages are read; at most one per channel the client
        // could still subscribe to.
        if !self.map_grants.contains_key(&req.channel) && self.map_grants.len() >= self.app.config.client_channel_limit
        {
            return Err(ErrorCode::LIMIT_EXCEEDED.into());
        }
        self.map_grants.insert(req.channel.clone(), grant.clone());
        Ok(grant)
    }

    /// Forgets a map subscription's grant once it is live or refused.
    pub(super) fn map_grant_done(&mut self, channel: &str) {
        self.map_grants.remove(channel);
    }

    /// Asks the map publish or remove proxy about a client key change.
    /// The backend's `error`/`disconnect` refuse it; its `result` may
    /// replace the key, the data (publish) and set tags.
    pub(super) async fn map_change_proxy(
        &self,
        proxy: &Arc<Proxy>,
        event: MapEvent,
        channel: &str,
        key: &str,
        data: &Bytes,
    ) -> Result<Decided, CommandError> {
        let (client, user) = (self.client_id(), self.user());
        let (transport, protocol) = (self.origin.transport.to_string(), self.protocol_name().to_string());
        let encoding = proxy.encoding().to_string();
        let meta = self.meta_for(proxy);
        let (channel, key) = (channel.to_string(), key.to_string());
        match event {
            MapEvent::Publish => {
                let (raw, b64data) = payload(proxy, data);
                let request = pb::MapPublishRequest {
                    client,
                    transport,
                    protocol,
                    encoding,
                    user,
                    channel,
                    key: key.clone(),
                    data: raw,
                    b64data,
                    meta,
                };
                let answer: pb::MapPublishResponse = proxy.call(Event::MapPublish, request, &self.origin).await?;
                CommandError::from_backend(answer.error, answer.disconnect)?;
                let Some(result) = answer.result else {
                    return Ok(Decided { key, data: data.clone(), tags: HashMap::new() });
                };
                // Centrifugo: `data` when set, else `b64data` when not empty.
                let data = if !result.data.is_empty() {
                    result.data
                } else if !result.b64data.is_empty() {
                    decoded(&result.b64data, Bytes::new())?
                } else {
                    data.clone()
                };
                let key = if result.key.is_empty() { key } else { result.key };
                Ok(Decided { key, data, tags: result.tags })
            }
            MapEvent::Remove => {
                let request = pb::MapRemoveRequest {
                    client,
                    transport,
                    protocol,
                    encoding,
                    user,
                    channel,
                    key: key.clone(),
                    meta,
                };
                let answer: pb::MapRemoveResponse = proxy.call(Event::MapRemove, request, &self.origin).await?;
                CommandError::from_backend(answer.error, answer.disconnect)?;
                let Some(result) = answer.result else {
                    return Ok(Decided { key, data: Bytes::new(), tags: HashMap::new() });
                };
                let key = if result.key.is_empty() { key } else { result.key };
                Ok(Decided { key, data: Bytes::new(), tags: result.tags })
            }
        }
    }
}
