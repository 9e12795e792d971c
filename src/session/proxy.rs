//! The session's side of the backend proxy (`crate::proxy`): fills each
//! request from the connection's state and turns the backend's answer into
//! credentials, subscription options, publication data or an RPC result,
//! as Centrifugo's `internal/proxy/*_handler.go` do.

use base64::Engine;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

use super::error::CommandError;
use super::Session;
use crate::auth::{Credentials, SubOptions};
use crate::protocol::codes::ErrorCode;
use crate::protocol::{ConnectRequest, Reply, RpcRequest, RpcResult};
use crate::proxy::{pb, Event, Proxy};

/// What the connect proxy decided.
pub(super) struct ConnectAnswer {
    /// None: the backend returned no `result` (anonymous, if allowed).
    pub(super) credentials: Option<Credentials>,
    /// `data` for the connect reply.
    pub(super) data: Bytes,
    /// The connection's `meta`, kept for its life.
    pub(super) meta: Option<Bytes>,
}

/// What the subscribe proxy granted.
#[derive(Clone, Default)]
pub(super) struct SubscribeGrant {
    pub(super) expire_at: Option<i64>,
    pub(super) info: Bytes,
    pub(super) data: Bytes,
    pub(super) overrides: pb::SubscribeOptionOverride,
}

/// `data` as the proxy sends it: raw JSON, or base64 in `b64data`.
pub(super) fn payload(proxy: &Proxy, data: &Bytes) -> (Bytes, String) {
    if proxy.binary {
        (Bytes::new(), base64::engine::general_purpose::STANDARD.encode(data))
    } else {
        (data.clone(), String::new())
    }
}

/// A payload from the backend: `b64*` wins when set, as in Centrifugo.
pub(super) fn decoded(b64: &str, raw: Bytes) -> Result<Bytes, CommandError> {
    if b64.is_empty() {
        return Ok(raw);
    }
    base64::engine::general_purpose::STANDARD.decode(b64).map(Bytes::from).map_err(|_| {
        tracing::warn!("proxy answer has invalid base64");
        ErrorCode::INTERNAL.into()
    })
}

/// Unix seconds, or None for 0 (never).
fn expiry(at: i64) -> Option<i64> {
    (at > 0).then_some(at)
}

impl Session {
    /// The `meta` to send along, if the proxy wants it.
    pub(super) fn meta_for(&self, proxy: &Proxy) -> Bytes {
        match self.conn.as_ref().and_then(|c| c.meta.clone()) {
            Some(meta) if proxy.include_meta => meta,
            _ => Bytes::new(),
        }
    }

    pub(super) fn user(&self) -> String {
        self.conn.as_ref().map(|c| c.handle.user.clone()).unwrap_or_default()
    }

    pub(super) fn client_id(&self) -> String {
        self.conn.as_ref().map(|c| c.handle.client_id.clone()).unwrap_or_default()
    }

    pub(super) fn protocol_name(&self) -> &'static str {
        match self.protocol {
            crate::protocol::Protocol::Json => "json",
            crate::protocol::Protocol::Protobuf => "protobuf",
        }
    }

    pub(super) async fn connect_proxy(
        &self,
        proxy: &Arc<Proxy>,
        client_id: &str,
        req: &ConnectRequest,
    ) -> Result<ConnectAnswer, CommandError> {
        let (data, b64data) = payload(proxy, &req.data);
        let mut channels: Vec<String> = req.subs.keys().cloned().collect();
        channels.sort();
        let request = pb::ConnectRequest {
            client: client_id.to_string(),
            transport: self.origin.transport.to_string(),
            protocol: self.protocol_name().to_string(),
            encoding: proxy.encoding().to_string(),
            data,
            b64data,
            name: req.name.clone(),
            version: req.version.clone(),
            channels,
        };
        let answer: pb::ConnectResponse = proxy.call(Event::Connect, request, &self.origin).await?;
        CommandError::from_backend(answer.error, answer.disconnect)?;
        let Some(result) = answer.result else {
            return Ok(ConnectAnswer { credentials: None, data: Bytes::new(), meta: None });
        };
        let info = decoded(&result.b64info, result.info)?;
        let data = decoded(&result.b64data, result.data)?;
        // Both lists count (Centrifugo's connect handler): `channels` with
        // the namespace's options, `subs` with per-channel info and data.
        let mut subs: HashMap<String, SubOptions> =
            result.channels.into_iter().map(|c| (c, SubOptions::default())).collect();
        for (channel, o) in result.subs {
            let options = SubOptions { info: decoded(&o.b64info, o.info)?, data: decoded(&o.b64data, o.data)? };
            subs.insert(channel, options);
        }
        let credentials =
            Credentials { user: result.user, expire_at: expiry(result.expire_at), info, channels: Vec::new(), subs };
        let meta = (!result.meta.is_empty()).then_some(result.meta);
        Ok(ConnectAnswer { credentials: Some(credentials), data, meta })
    }

    pub(super) async fn subscribe_proxy(
        &self,
        proxy: &Arc<Proxy>,
        channel: &str,
        token: &str,
        data: &Bytes,
    ) -> Result<SubscribeGrant, CommandError> {
        let (data, b64data) = payload(proxy, data);
        let request = pb::SubscribeRequest {
            client: self.client_id(),
            transport: self.origin.transport.to_string(),
            protocol: self.protocol_name().to_string(),
            encoding: proxy.encoding().to_string(),
            user: self.user(),
            channel: channel.to_string(),
            token: token.to_string(),
            meta: self.meta_for(proxy),
            data,
            b64data,
        };
        let answer: pb::SubscribeResponse = proxy.call(Event::Subscribe, request, &self.origin).await?;
        CommandError::from_backend(answer.error, answer.disconnect)?;
        let Some(result) = answer.result else { return Ok(SubscribeGrant::default()) };
        Ok(SubscribeGrant {
            expire_at: expiry(result.expire_at),
            info: decoded(&result.b64info, result.info)?,
            data: decoded(&result.b64data, result.data)?,
            overrides: result.r#override.unwrap_or_default(),
        })
    }

    /// The publish proxy: the data to publish (the backend may rewrite it)
    /// and whether to skip history.
    pub(super) async fn publish_proxy(
        &self,
        proxy: &Arc<Proxy>,
        channel: &str,
        data: &Bytes,
    ) -> Result<(Bytes, bool), CommandError> {
        let (raw, b64data) = payload(proxy, data);
        let request = pb::PublishRequest {
            client: self.client_id(),
            transport: self.origin.transport.to_string(),
            protocol: self.protocol_name().to_string(),
            encoding: proxy.encoding().to_string(),
            user: self.user(),
            channel: channel.to_string(),
            data: raw,
            b64data,
            meta: self.meta_for(proxy),
        };
        let answer: pb::PublishResponse = proxy.call(Event::Publish, request, &self.origin).await?;
        CommandError::from_backend(answer.error, answer.disconnect)?;
        let Some(result) = answer.result else { return Ok((data.clone(), false)) };
        let rewritten = decoded(&result.b64data, result.data)?;
        let data = if rewritten.is_empty() { data.clone() } else { rewritten };
        Ok((data, result.skip_history))
    }

    /// `rpc`: answered by the RPC proxy; without one, 108 as before.
    pub(super) async fn rpc(&mut self, req: RpcRequest) -> Result<Reply, CommandError> {
        let proxy = match self.app.proxies.rpc_for(&req.method) {
            crate::proxy::RpcRoute::Proxy(proxy) => proxy,
            // No RPC proxy for the method: no RPC handler, so "not available".
            crate::proxy::RpcRoute::NotAvailable => return Err(ErrorCode::NOT_AVAILABLE.into()),
            crate::proxy::RpcRoute::MethodNotFound => return Err(ErrorCode::METHOD_NOT_FOUND.into()),
        };
        let (data, b64data) = payload(&proxy, &req.data);
        let request = pb::RpcRequest {
            client: self.client_id(),
            transport: self.origin.transport.to_string(),
            protocol: self.protocol_name().to_string(),
            encoding: proxy.encoding().to_string(),
            user: self.user(),
            method: req.method,
            data,
            b64data,
            meta: self.meta_for(&proxy),
        };
        let answer: pb::RpcResponse = proxy.call(Event::Rpc, request, &self.origin).await?;
        CommandError::from_backend(answer.error, answer.disconnect)?;
        let data = match answer.result {
            Some(result) => decoded(&result.b64data, result.data)?,
            None => Bytes::new(),
        };
        Ok(Reply { rpc: Some(RpcResult { data }), ..Default::default() })
    }

    /// Server-side refresh of the connection (Centrifugo calls the refresh
    /// proxy when the connection expires, instead of asking the client).
    /// Returns the new expiry; None: the connection is over.
    pub(super) async fn refresh_proxy(&mut self, proxy: &Arc<Proxy>) -> Option<i64> {
        let request = pb::RefreshRequest {
            client: self.client_id(),
            transport: self.origin.transport.to_string(),
            protocol: self.protocol_name().to_string(),
            encoding: proxy.encoding().to_string(),
            user: self.user(),
            meta: self.meta_for(proxy),
        };
        let answer: pb::RefreshResponse = match proxy.call(Event::Refresh, request, &self.origin).await {
            Ok(answer) => answer,
            // Centrifugo's refresh handler: try again in a minute.
            Err(_) => return Some(super::now_unix() + 60),
        };
        let result = answer.result?;
        if result.expired {
            return None;
        }
        let conn = self.conn.as_mut()?;
        if let Ok(info) = decoded(&result.b64info, result.info) {
            if !info.is_empty() {
                conn.info = info;
            }
        }
        if !result.meta.is_empty() {
            conn.meta = Some(result.meta);
        }
        expiry(result.expire_at)
    }

    /// Server-side refresh of a subscription through the sub_refresh proxy.
    /// Returns the new expiry; None: the subscription is over.
    pub(super) async fn sub_refresh_proxy(&mut self, proxy: &Arc<Proxy>, channel: &str) -> Option<i64> {
        let request = pb::SubRefreshRequest {
            client: self.client_id(),
            transport: self.origin.transport.to_string(),
            protocol: self.protocol_name().to_string(),
            encoding: proxy.encoding().to_string(),
            user: self.user(),
            channel: channel.to_string(),
            meta: self.meta_for(proxy),
        };
        let answer: pb::SubRefreshResponse = match proxy.call(Event::SubRefresh, request, &self.origin).await {
            Ok(answer) => answer,
            Err(_) => return Some(super::now_unix() + 60),
        };
        let result = answer.result?;
        if result.expired {
            return None;
        }
        let info = decoded(&result.b64info, result.info).unwrap_or_default();
        if let Some(state) = self.conn.as_mut().and_then(|c| c.channels.get_mut(channel)) {
            if !info.is_empty() {
                state.info = info;
            }
        }
        expiry(result.expire_at)
    }
}
