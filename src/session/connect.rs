//! `connect` and `refresh`: authenticate the client and manage its expiry.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::CommandError;
use super::{ttl_of, Connected, Session, SubState};
use crate::auth::{Credentials, SubOptions};
use crate::hub::ClientHandle;
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::{
    ConnectRequest, ConnectResult, RefreshRequest, RefreshResult, Reply, SubscribeResult, SubscribeResultEntry,
};
use crate::VERSION;

impl Session {
    pub(super) async fn connect(&mut self, req: ConnectRequest) -> Result<Reply, CommandError> {
        if self.conn.is_some() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let app = self.app.clone();
        let client_id = uuid::Uuid::new_v4().to_string();
        // The connect proxy answers for clients without a token, as in
        // Centrifugo (a token, when given, is verified as usual).
        let mut connect_data = bytes::Bytes::new();
        let mut meta = None;
        let credentials = match (&app.proxies.connect, req.token.is_empty()) {
            (Some(proxy), true) => {
                let answer = self.connect_proxy(proxy, &client_id, &req).await?;
                connect_data = answer.data;
                meta = answer.meta;
                match answer.credentials {
                    Some(credentials) => credentials,
                    None if app.config.allow_anonymous_connect_without_token => Credentials::default(),
                    // centrifuge's connectCmd: "client credentials not found".
                    None => return Err(Disconnect::BAD_REQUEST.into()),
                }
            }
            (None, true) => {
                if !app.config.allow_anonymous_connect_without_token {
                    return Err(Disconnect::BAD_REQUEST.into());
                }
                Credentials::default()
            }
            (_, false) => {
                app.verifier.verify_connect_fetching(&req.token).await.map_err(CommandError::connect_token)?
            }
        };

        if credentials.expire_at.is_some_and(|at| at <= super::now_unix()) {
            return Err(ErrorCode::EXPIRED.into());
        }
        let limit = app.config.client_user_connection_limit;
        if limit > 0 && !credentials.user.is_empty() && app.hub.user_clients(&credentials.user).len() >= limit {
            return Err(Disconnect::CONNECTION_LIMIT.into());
        }
        self.close_other_connections(&credentials.user, &client_id).await?;
        let handle = Arc::new(ClientHandle {
            key: app.hub.next_key(),
            client_id,
            user: credentials.user.clone(),
            protocol: self.protocol,
            conn_info: credentials.info.clone(),
            outbox: self.outbox.clone(),
            commands: self.commands_tx.clone(),
        });
        let client_id = handle.client_id.clone();
        app.hub.add_client(&handle).await?;
        self.conn = Some(Connected {
            handle,
            channels: HashMap::new(),
            expire_at: credentials.expire_at,
            info: credentials.info.clone(),
            meta,
        });

        let subs = match self.server_side_subscribe(&credentials, &req.subs).await {
            Ok(subs) => subs,
            Err(e) => {
                // A refused connect leaves nothing behind: no registration,
                // no subscriptions.
                self.close();
                return Err(e);
            }
        };
        self.liveness.connected.store(true, std::sync::atomic::Ordering::Relaxed);
        // With a refresh proxy the server extends the connection itself, so
        // the client is not told it expires (centrifuge's connectCmd).
        let (expires, ttl) = if app.proxies.refresh.is_some() { (false, 0) } else { ttl_of(credentials.expire_at) };
        let mut result = ConnectResult {
            client: client_id,
            data: connect_data,
            version: VERSION.to_string(),
            expires,
            ttl,
            subs: subs.into_iter().map(|(key, value)| SubscribeResultEntry { key, value: Some(value) }).collect(),
            ping: app.config.ping_interval.as_secs().max(1) as u32,
            pong: true,
            node: app.config.name.clone(),
            ..Default::default()
        };
        // As centrifuge's connectCmd: emulation clients get the session and
        // the node to address `/emulation` to (here the gateway's unique id,
        // its NATS subject); unidirectional ones the session and no pong.
        if self.transport.emulation() {
            result.session = self.session_id.clone();
            result.node = app.uid.clone();
        }
        if self.transport.unidirectional() {
            result.session = self.session_id.clone();
            result.node = String::new();
            result.pong = false;
        }
        Ok(Reply { connect: Some(result), ..Default::default() })
    }

    /// Subscribes the `subs` claim, or without one the `channels` claim, and
    /// the user's personal channel (`user_subscribe_to_personal`), without
    /// permission checks: the application granted them by signing the token
    /// (or by configuration). Each gets its namespace's forced options, as
    /// Centrifugo gives server-side subscriptions (`force_recovery`,
    /// `force_positioning`, `force_push_join_leave`, `force_recovery_mode`),
    /// and recovers from the position the client sent for it in the
    /// connect's `subs` (centrifuge's connectCmd).
    async fn server_side_subscribe(
        &mut self,
        credentials: &Credentials,
        positions: &HashMap<String, crate::protocol::SubscribeRequest>,
    ) -> Result<HashMap<String, SubscribeResult>, CommandError> {
        let mut results = HashMap::new();
        // `subs` wins: Centrifugo reads `channels` only when a token has no
        // `subs` (jwtverify's VerifyConnectToken), never both. A `subs`
        // entry's `info` becomes the channel info (`chan_info`) of this
        // client in the channel, as Centrifugo's `ChannelInfo` option.
        let no_options = SubOptions::default();
        let channels = if credentials.subs.is_empty() { &credentials.channels[..] } else { &[] };
        let personal = super::personal::personal_channel(&self.app.config, &credentials.user);
        // The personal channel replaces a token entry of the same name, as
        // it replaces it in Centrifugo's map of subscriptions.
        let wanted = channels
            .iter()
            .map(|c| (c, &no_options))
            .chain(credentials.subs.iter())
            .filter(|(c, _)| personal.as_ref() != Some(*c))
            .chain(personal.as_ref().map(|c| (c, &no_options)));
        for (channel, options) in wanted {
            if results.contains_key(channel) {
                continue;
            }
            if results.len() >= self.app.config.client_channel_limit {
                return Err(Disconnect::CHANNEL_LIMIT.into());
            }
            // The application granted these by signing the token: only the
            // namespace must exist.
            if channel.is_empty() {
                return Err(Disconnect::BAD_REQUEST.into());
            }
            let app = self.app.clone();
            let Some(namespace) = app.rules.namespace(crate::channels::namespace_of(channel)) else {
                return Err(ErrorCode::UNKNOWN_CHANNEL.into());
            };
            let recoverable = namespace.history_enabled() && namespace.force_recovery;
            let positioned = namespace.history_enabled() && (namespace.force_positioning || recoverable);
            let state = SubState {
                server_side: true,
                info: options.info.clone(),
                join_leave: namespace.force_push_join_leave,
                positioned,
                ..Default::default()
            };
            self.join_channel(channel, state).await?;
            // Only the position travels from the connect's `subs` (not the
            // reject-unrecovered flag), as in centrifuge's connectCmd.
            let asked = positions.get(channel);
            let request = crate::protocol::SubscribeRequest {
                channel: channel.clone(),
                recover: asked.is_some_and(|r| r.recover),
                offset: asked.map_or(0, |r| r.offset),
                epoch: asked.map(|r| r.epoch.clone()).unwrap_or_default(),
                ..Default::default()
            };
            let mut result = self
                .position(channel, namespace, recoverable, positioned, &request, &crate::hub::Delivery::default())
                .await?;
            result.data = options.data.clone();
            results.insert(channel.clone(), result);
        }
        Ok(results)
    }

    /// The connect of a unidirectional transport: the result goes out as a
    /// bare `connect` push; an error closes the connection instead of being
    /// answered (centrifuge's `unidirectionalConnect`; the mapping is
    /// [`Disconnect::for_unidirectional_error`]).
    pub(crate) async fn connect_unidirectional(&mut self, req: ConnectRequest) -> Result<(), Disconnect> {
        let outcome = self.connect(req).await;
        let result = match outcome {
            Ok(reply) => reply.connect,
            Err(CommandError::Disconnect(d)) => return Err(d),
            Err(CommandError::Reply(code)) => return Err(Disconnect::for_unidirectional_error(code.code)),
            Err(CommandError::Backend(error)) => return Err(Disconnect::for_unidirectional_error(error.code)),
        };
        let connect = result.map(|r| crate::protocol::Connect {
            client: r.client,
            version: r.version,
            data: r.data,
            subs: r.subs,
            expires: r.expires,
            ttl: r.ttl,
            ping: r.ping,
            pong: r.pong,
            session: r.session,
            node: r.node,
        });
        let push = crate::protocol::Push { connect, ..Default::default() };
        let reply = Reply { push: Some(push), ..Default::default() };
        self.outbox.push(self.encode(&reply));
        self.release_subscriptions();
        Ok(())
    }

    pub(super) async fn refresh(&mut self, req: RefreshRequest) -> Result<Reply, CommandError> {
        let app = self.app.clone();
        if self.conn.is_none() || req.token.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let credentials =
            app.verifier.verify_connect_fetching(&req.token).await.map_err(CommandError::refresh_token)?;
        let conn = self.conn.as_mut().ok_or(Disconnect::BAD_REQUEST)?;
        if credentials.user != conn.handle.user {
            return Err(Disconnect::INVALID_TOKEN.into());
        }
        if credentials.expire_at.is_some_and(|at| at <= super::now_unix()) {
            return Err(ErrorCode::EXPIRED.into());
        }
        conn.expire_at = credentials.expire_at;
        if !credentials.info.is_empty() {
            conn.info = credentials.info;
        }
        let (expires, ttl) = ttl_of(conn.expire_at);
        Ok(Reply {
            // Centrifugo answers only `expires` and `ttl` (centrifuge's handleRefresh).
            refresh: Some(RefreshResult { expires, ttl, ..Default::default() }),
            ..Default::default()
        })
    }
}
