//! The per-client session: Centrifugo's command state machine, apart from
//! any transport.
//!
//! A transport feeds whole frames in with [`Session::handle_frame`]; replies
//! and pushes leave through the client's [`Outbox`]. The session answers
//! `Err(Disconnect)` when the connection must close. One file per group of
//! commands: `connect.rs` (connect, refresh), `subscribe.rs` (subscribe,
//! unsubscribe, server-side subscriptions), `publish.rs`.

mod cache_recovery;
mod connect;
pub(crate) mod driver;
pub(crate) mod error;
mod map;
mod map_catch_up;
mod map_proxy;
mod personal;
mod proxy;
mod publish;
mod shared_poll;
mod subscribe;
#[cfg(test)]
mod tests;
mod user_command;

use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::channels::Access;
use crate::context::AppContext;
use crate::hub::ClientHandle;
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::{Command, PingResult, Protocol, Reply};
use crate::user_command::UserCommand;
use error::CommandError;
use tokio::sync::mpsc;

/// The connection-level facts the transport needs from the session.
pub(crate) struct Liveness {
    /// Set when the client answers a ping; cleared when a ping is sent.
    pub(crate) pong_received: AtomicBool,
    /// Pings start once the client is connected.
    pub(crate) connected: AtomicBool,
}

/// User commands a connection may have waiting; more are dropped. The
/// commands are boxed so the channel's preallocated slots stay small.
const COMMAND_QUEUE: usize = 16;

pub(crate) struct Session {
    commands_tx: mpsc::Sender<Box<UserCommand>>,
    commands_rx: Option<mpsc::Receiver<Box<UserCommand>>>,
    app: Arc<AppContext>,
    protocol: Protocol,
    outbox: Arc<Outbox>,
    liveness: Arc<Liveness>,
    conn: Option<Connected>,
    /// A connect was answered with an error; nothing more is accepted.
    connect_refused: bool,
    /// New subscriptions whose pushes the hub holds until the reply that
    /// announces them is queued: (channel, last history offset the reply
    /// carried or stood for, 0 if none).
    activations: Vec<(String, u64)>,
    /// The transport, and the session id announced to emulation and
    /// unidirectional clients (empty over WebSocket).
    transport: crate::transport::Kind,
    session_id: String,
    /// Who the client is to the backend proxy (forwarded headers,
    /// transport, protocol); set by the transport.
    origin: Arc<crate::proxy::ClientOrigin>,
    /// Shared poll tracks whose replies are being queued (issue #20).
    shared_poll_pending: Vec<shared_poll::PendingTrack>,
    /// Map subscriptions the subscribe proxy granted whose state pages are
    /// still being read (`map_proxy.rs`): later pages use the grant.
    map_grants: HashMap<String, proxy::SubscribeGrant>,
    /// Map subscriptions being paged and the deadline of each
    /// (`map.subscribe_catch_up_timeout`; `None`: none), `map_catch_up.rs`.
    map_catch_ups: HashMap<String, Option<std::time::Instant>>,
}

/// One subscription of the connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct SubState {
    /// Unix seconds when a token-granted subscription expires.
    pub(crate) expire_at: Option<i64>,
    /// Made by the server (token claims, API), not by a client command.
    pub(crate) server_side: bool,
    /// `chan_info` from the subscription token.
    pub(crate) info: bytes::Bytes,
    /// The client asked for join/leave pushes (or the namespace forces them).
    pub(crate) join_leave: bool,
    /// Told when publications were missed (2500, or 3010 if server-side).
    pub(crate) positioned: bool,
}

/// State that exists once `connect` succeeded.
struct Connected {
    handle: Arc<ClientHandle>,
    channels: HashMap<String, SubState>,
    /// Unix seconds when the connection's credentials expire.
    expire_at: Option<i64>,
    info: bytes::Bytes,
    /// `meta` from the connect (or refresh) proxy: sent with later proxy
    /// requests when `proxy_include_connection_meta`; never shown to clients.
    meta: Option<bytes::Bytes>,
}

impl Session {
    pub(crate) fn new(app: Arc<AppContext>, protocol: Protocol, outbox: Arc<Outbox>) -> Self {
        let liveness = Arc::new(Liveness { pong_received: AtomicBool::new(true), connected: AtomicBool::new(false) });
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        Session {
            commands_tx,
            commands_rx: Some(commands_rx),
            app,
            protocol,
            outbox,
            liveness,
            conn: None,
            connect_refused: false,
            activations: Vec::new(),
            transport: crate::transport::Kind::WebSocket,
            session_id: String::new(),
            shared_poll_pending: Vec::new(),
            origin: Arc::new(crate::proxy::ClientOrigin {
                protocol: match protocol {
                    Protocol::Json => "json",
                    Protocol::Protobuf => "protobuf",
                },
                transport: "websocket",
                headers: Vec::new(),
            }),
            map_grants: HashMap::new(),
            map_catch_ups: HashMap::new(),
        }
    }

    /// Runs the session over another transport than WebSocket; `session_id`
    /// is what the connect reply announces as `session` (the emulation
    /// endpoint finds the session by it, so it must be unguessable).
    pub(crate) fn with_transport(mut self, transport: crate::transport::Kind, session_id: String) -> Self {
        self.transport = transport;
        self.session_id = session_id;
        let origin = crate::proxy::ClientOrigin {
            headers: self.origin.headers.clone(),
            transport: transport.name(),
            protocol: self.origin.protocol,
        };
        self.origin = Arc::new(origin);
        self
    }

    /// Keeps the upgrade request's headers that a proxy forwards (only
    /// those: the rest is dropped here) for the connection's life.
    pub(crate) fn set_request_headers(&mut self, headers: &http::HeaderMap) {
        let mut origin = self.app.proxies.origin(headers, self.origin.protocol);
        origin.transport = self.origin.transport;
        self.origin = Arc::new(origin);
    }

    /// The queue of user commands; the transport takes it
    /// once and feeds each command to [`Session::handle_user_command`].
    pub(crate) fn take_command_receiver(&mut self) -> Option<mpsc::Receiver<Box<UserCommand>>> {
        self.commands_rx.take()
    }

    pub(crate) fn liveness(&self) -> Arc<Liveness> {
        self.liveness.clone()
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The next Unix second at which [`Session::enforce_expiry`] has work:
    /// an expired connection or subscription plus its grace delay.
    pub(crate) fn next_expiry_check(&self) -> Option<i64> {
        let conn = self.conn.as_ref()?;
        let config = &self.app.config;
        // With a refresh proxy the server refreshes at expiry itself, with
        // no grace delay (centrifuge's scheduleOnConnectTimers).
        let delay = if self.app.proxies.refresh.is_some() { 0 } else { config.client_expired_close_delay.as_secs() };
        let conn_check = conn.expire_at.map(|at| at + delay as i64);
        let sub_delay = config.client_expired_sub_close_delay.as_secs() as i64;
        let sub_check = conn
            .channels
            .iter()
            .filter_map(|(c, s)| {
                Some(s.expire_at? + if self.sub_refresh_proxy_of(c).is_some() { 0 } else { sub_delay })
            })
            .min();
        match (conn_check, sub_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends what has expired and was not refreshed in time: the connection
    /// (3005), or client-side subscriptions (unsubscribe push 2501).
    pub(crate) async fn enforce_expiry(&mut self) -> Result<(), Disconnect> {
        self.refresh_by_proxies().await?;
        let now = now_unix();
        let Some(conn) = self.conn.as_ref() else { return Ok(()) };
        let config = &self.app.config;
        if conn.expire_at.is_some_and(|at| at + config.client_expired_close_delay.as_secs() as i64 <= now) {
            return Err(Disconnect::EXPIRED);
        }
        let sub_delay = config.client_expired_sub_close_delay.as_secs() as i64;
        let expired: Vec<(String, bool)> = conn
            .channels
            .iter()
            .filter(|(_, s)| s.expire_at.is_some_and(|at| at + sub_delay <= now))
            .map(|(c, s)| (c.clone(), s.server_side))
            .collect();
        for (channel, server_side) in expired {
            if server_side {
                return Err(Disconnect::SUBSCRIPTION_EXPIRED);
            }
            self.leave_channel(&channel);
            let (code, reason) = crate::protocol::codes::unsubscribe::EXPIRED;
            self.push(channel, |p| {
                p.unsubscribe = Some(crate::protocol::Unsubscribe { code, reason: reason.to_string() })
            });
        }
        Ok(())
    }

    /// The sub_refresh proxy of a subscribed channel's namespace, if any.
    fn sub_refresh_proxy_of(&self, channel: &str) -> Option<Arc<crate::proxy::Proxy>> {
        let options = self.app.rules.resolve(channel).ok()?.options;
        self.app.proxies.sub_refresh_for(options, self.app.config.granular_proxy_mode)
    }

    /// Server-side refresh: asks the refresh proxy about an expired
    /// connection and the sub_refresh proxy about expired subscriptions,
    /// and records the new expiries. A connection the backend lets expire
    /// ends (3005); such a subscription ends with unsubscribe 2501.
    async fn refresh_by_proxies(&mut self) -> Result<(), Disconnect> {
        let now = now_unix();
        let Some(conn) = self.conn.as_ref() else { return Ok(()) };
        if let (Some(proxy), true) = (self.app.proxies.refresh.clone(), conn.expire_at.is_some_and(|at| at <= now)) {
            match self.refresh_proxy(&proxy).await {
                Some(at) if at > now => {
                    if let Some(conn) = self.conn.as_mut() {
                        conn.expire_at = Some(at);
                    }
                }
                _ => return Err(Disconnect::EXPIRED),
            }
        }
        let Some(conn) = self.conn.as_ref() else { return Ok(()) };
        let due: Vec<String> = conn
            .channels
            .iter()
            .filter(|(_, s)| s.expire_at.is_some_and(|at| at <= now))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in due {
            let Some(proxy) = self.sub_refresh_proxy_of(&channel) else { continue };
            let at = self.sub_refresh_proxy(&proxy, &channel).await.filter(|at| *at > now);
            let Some(conn) = self.conn.as_mut() else { return Ok(()) };
            let Some(state) = conn.channels.get_mut(&channel) else { continue };
            match at {
                Some(at) => state.expire_at = Some(at),
                None if state.server_side => return Err(Disconnect::SUBSCRIPTION_EXPIRED),
                None => {
                    self.leave_channel(&channel);
                    let (code, reason) = crate::protocol::codes::unsubscribe::EXPIRED;
                    self.push(channel, |p| {
                        p.unsubscribe = Some(crate::protocol::Unsubscribe { code, reason: reason.to_string() })
                    });
                }
            }
        }
        Ok(())
    }

    /// Handles one frame from the client: every command in it, in order,
    /// with all replies queued as one batch.
    pub(crate) async fn handle_frame(&mut self, frame: &[u8]) -> Result<(), Disconnect> {
        let commands = match self.protocol.decode_commands(frame) {
            Ok(commands) => commands,
            Err(e) => {
                tracing::debug!("closing client: {e}");
                return Err(Disconnect::BAD_REQUEST);
            }
        };
        metrics().messages_received.with_label_values(&[self.transport.name()]).inc_by(commands.len() as u64);
        let mut batch = BytesMut::new();
        let mut result = Ok(());
        for command in commands {
            match self.handle_command(command).await {
                Ok(Some(reply)) => self.protocol.join_into(&mut batch, &self.encode(&reply)),
                Ok(None) => {}
                Err(disconnect) => {
                    result = Err(disconnect);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            self.outbox.push(batch.freeze());
        }
        self.release_subscriptions();
        result
    }

    /// Encodes a reply; one that cannot be encoded (non-JSON `data` for a
    /// JSON client) becomes an internal error reply with the same id.
    fn encode(&self, reply: &Reply) -> bytes::Bytes {
        self.protocol.encode_one(reply).unwrap_or_else(|e| {
            tracing::warn!("cannot encode reply: {e}");
            let error = Reply { id: reply.id, error: Some(ErrorCode::INTERNAL.to_message()), ..Default::default() };
            self.protocol.encode_one(&error).unwrap_or_default()
        })
    }

    /// Lets pushes flow to the subscriptions whose announcing replies are
    /// now queued (see [`crate::hub`]: never a push before that reply).
    fn release_subscriptions(&mut self) {
        self.release_tracks();
        let activations = std::mem::take(&mut self.activations);
        let Some(conn) = self.conn.as_ref() else { return };
        for (channel, sent) in activations {
            self.app.hub.activate(&channel, conn.handle.key, sent);
        }
    }

    /// Publishes a join or leave event for namespaces with `join_leave`, in
    /// the background: leaving must not wait for the broker.
    fn announce(&self, channel: &str, info: crate::protocol::ClientInfo, event: crate::broker::PresenceEvent) {
        let join_leave = self.app.rules.namespace(crate::channels::namespace_of(channel)).is_some_and(|o| o.join_leave);
        if !join_leave {
            return;
        }
        let message = crate::broker::Message { info: Some(info), event: Some(event), ..Default::default() };
        let broker = self.app.broker.clone();
        let channel = channel.to_string();
        tokio::spawn(async move {
            if let Err(e) = broker.publish(&channel, message).await {
                tracing::debug!("cannot announce {}: {e}", event.as_str());
            }
        });
    }

    async fn handle_command(&mut self, command: Command) -> Result<Option<Reply>, Disconnect> {
        let id = command.id;
        if id == 0 {
            return self.handle_async(command).map(|()| None);
        }
        // Before a successful connect only `connect` is allowed, and only
        // once: after a refused connect the connection is unusable.
        if self.conn.is_none() && (command.connect.is_none() || self.connect_refused) {
            return Err(Disconnect::BAD_REQUEST);
        }
        let method = method_name(&command);
        let started = std::time::Instant::now();
        let outcome = self.dispatch(command).await;
        metrics().command_duration.with_label_values(&[method]).observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(mut reply) => {
                reply.id = id;
                Ok(Some(reply))
            }
            Err(CommandError::Reply(code)) => {
                if self.conn.is_none() {
                    self.connect_refused = true;
                }
                Ok(Some(Reply { id, error: Some(code.to_message()), ..Default::default() }))
            }
            Err(CommandError::Backend(error)) => {
                if self.conn.is_none() {
                    self.connect_refused = true;
                }
                Ok(Some(Reply { id, error: Some(error), ..Default::default() }))
            }
            Err(CommandError::Disconnect(d)) => Err(d),
        }
    }

    /// Commands without an id: a pong (empty) or `send`; nothing else.
    fn handle_async(&mut self, command: Command) -> Result<(), Disconnect> {
        if command == Command::default() {
            // A pong answers the outstanding ping; one before connect, before
            // any ping or a second one for the same ping is a bad request
            // (centrifuge's dispatchCommand: "unnecessary pong").
            if self.conn.is_none() || self.liveness.pong_received.swap(true, Ordering::Relaxed) {
                return Err(Disconnect::BAD_REQUEST);
            }
            return Ok(());
        }
        if command.send.is_some() && self.conn.is_some() {
            // No send handler (no proxy): Centrifugo closes with "not available".
            return Err(Disconnect::NOT_AVAILABLE);
        }
        Err(Disconnect::BAD_REQUEST)
    }

    async fn dispatch(&mut self, command: Command) -> Result<Reply, CommandError> {
        if let Some(req) = command.connect {
            return self.connect(req).await;
        }
        if let Some(req) = command.subscribe {
            return self.subscribe(req).await;
        }
        if let Some(req) = command.unsubscribe {
            return Ok(self.unsubscribe(req));
        }
        if let Some(req) = command.publish {
            return self.publish(req).await;
        }
        if let Some(req) = command.refresh {
            return self.refresh(req).await;
        }
        if command.ping.is_some() {
            return Ok(Reply { ping: Some(PingResult {}), ..Default::default() });
        }
        if let Some(req) = command.presence {
            self.check_access(&req.channel, Access::Presence)?;
            let presence = crate::survey::presence(&self.app, &req.channel).await?;
            return Ok(Reply { presence: Some(crate::protocol::PresenceResult { presence }), ..Default::default() });
        }
        if let Some(req) = command.presence_stats {
            self.check_access(&req.channel, Access::Presence)?;
            let presence = crate::survey::presence(&self.app, &req.channel).await?;
            let (num_clients, num_users) = crate::survey::presence_stats(&presence);
            let stats = crate::protocol::PresenceStatsResult { num_clients, num_users };
            return Ok(Reply { presence_stats: Some(stats), ..Default::default() });
        }
        if let Some(req) = command.history {
            self.check_access(&req.channel, Access::History)?;
            let max = self.app.config.history_max_publication_limit;
            let limit = if req.limit < 0 || req.limit as usize > max { max } else { req.limit as usize };
            let since = req.since.map(|s| crate::broker::Position { offset: s.offset, epoch: s.epoch });
            let query = crate::broker::Query { since, limit, reverse: req.reverse };
            let page = self.app.broker.history(&req.channel, query).await?;
            let publications = page.publications.into_iter().map(crate::protocol::Publication::from).collect();
            let result = crate::protocol::HistoryResult {
                publications,
                epoch: page.position.epoch,
                offset: page.position.offset,
            };
            return Ok(Reply { history: Some(result), ..Default::default() });
        }
        if let Some(req) = command.sub_refresh {
            return self.sub_refresh(req).await;
        }
        if let Some(req) = command.rpc {
            return self.rpc(req).await;
        }
        if command.send.is_some() {
            return Err(Disconnect::NOT_AVAILABLE.into());
        }
        // A command of no known kind.
        Err(Disconnect::BAD_REQUEST.into())
    }

    /// Leaves every channel and forgets the client; the transport calls this
    /// once, when the connection ends.
    pub(crate) fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            for channel in conn.channels.keys() {
                if self.is_shared_poll_channel(channel) {
                    self.app.shared_poll.forget(channel, conn.handle.key);
                }
                let info = conn.client_info(channel);
                crate::map::presence::left(&self.app, channel, &info);
                self.announce(channel, info, crate::broker::PresenceEvent::Leave);
            }
            self.app.hub.remove_client(&conn.handle, conn.channels.into_keys());
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// The metric label of a command: the first request field set.
fn method_name(command: &Command) -> &'static str {
    let c = command;
    [
        (c.connect.is_some(), "connect"),
        (c.subscribe.is_some(), "subscribe"),
        (c.unsubscribe.is_some(), "unsubscribe"),
        (c.publish.is_some(), "publish"),
        (c.presence.is_some(), "presence"),
        (c.presence_stats.is_some(), "presence_stats"),
        (c.history.is_some(), "history"),
        (c.ping.is_some(), "ping"),
        (c.send.is_some(), "send"),
        (c.rpc.is_some(), "rpc"),
        (c.refresh.is_some(), "refresh"),
        (c.sub_refresh.is_some(), "sub_refresh"),
    ]
    .into_iter()
    .find_map(|(set, name)| set.then_some(name))
    .unwrap_or("unknown")
}

impl Connected {
    /// This client as publishers and presence show it in `channel`.
    fn client_info(&self, channel: &str) -> crate::protocol::ClientInfo {
        crate::protocol::ClientInfo {
            user: self.handle.user.clone(),
            client: self.handle.client_id.clone(),
            conn_info: self.info.clone(),
            chan_info: self.channels.get(channel).map(|s| s.info.clone()).unwrap_or_default(),
        }
    }
}

/// `expires` and `ttl` (seconds left, at least 1) for a reply.
pub(crate) fn ttl_of(expire_at: Option<i64>) -> (bool, u32) {
    match expire_at {
        Some(at) => (true, (at - now_unix()).clamp(1, u32::MAX as i64) as u32),
        None => (false, 0),
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
