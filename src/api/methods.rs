//! The server API methods, one implementation for every transport: a typed
//! [`Command`] (the request shapes of `request.rs`) in, a typed [`Reply`] or
//! an [`ApiError`] out. The HTTP (JSON, `json.rs`) and GRPC (protobuf,
//! `grpc/convert.rs`) layers only convert.

use base64::Engine;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::error::ApiError;
pub use super::request::Command;
use super::request::StreamPosition;
use super::survey::{ChannelCounts, NodeInfo, Question};
use crate::broker::{now_ms, Message, Page, Position, Query};
use crate::control::Control;
use crate::gateway::Gateway;
use crate::metrics::{method_label, metrics};
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::ClientInfo;

/// Most commands one `batch` call may hold.
pub const MAX_BATCH: usize = 1000;

fn bad_request() -> ApiError {
    ApiError(ErrorCode::BAD_REQUEST)
}

/// The result of a [`Command`], variant for variant.
#[derive(Debug)]
pub enum Reply {
    /// The publication's position when the channel keeps history.
    Publish(Option<Position>),
    /// One outcome per channel, in the request's order.
    Broadcast(Vec<Result<Option<Position>, ApiError>>),
    Subscribe,
    Unsubscribe,
    Disconnect,
    Refresh,
    /// Channel -> subscribers on all gateways.
    Channels(HashMap<String, u64>),
    /// One entry per live gateway, sorted by name then uid.
    Info(Vec<NodeInfo>),
    /// Client id -> client, on all gateways.
    Presence(HashMap<String, ClientInfo>),
    PresenceStats {
        num_clients: u32,
        num_users: u32,
    },
    History(Page),
    HistoryRemove,
}

impl Reply {
    /// The method this replies to (the key of a JSON batch reply).
    pub fn method(&self) -> &'static str {
        match self {
            Reply::Publish(_) => "publish",
            Reply::Broadcast(_) => "broadcast",
            Reply::Subscribe => "subscribe",
            Reply::Unsubscribe => "unsubscribe",
            Reply::Disconnect => "disconnect",
            Reply::Refresh => "refresh",
            Reply::Channels(_) => "channels",
            Reply::Info(_) => "info",
            Reply::Presence(_) => "presence",
            Reply::PresenceStats { .. } => "presence_stats",
            Reply::History(_) => "history",
            Reply::HistoryRemove => "history_remove",
        }
    }
}

/// Runs one command and records its latency under its method name.
pub async fn execute(gateway: &Arc<Gateway>, command: Command) -> Result<Reply, ApiError> {
    let started = Instant::now();
    let method = command.method();
    let outcome = run(gateway, command).await;
    metrics().api_command_duration.with_label_values(&[method_label(method)]).observe(started.elapsed().as_secs_f64());
    outcome
}

/// `batch`: each command (or the error met while reading it) answered in
/// order; `parallel` runs them concurrently. More than [`MAX_BATCH`] commands
/// get error 106 for the whole call.
pub async fn batch(
    gateway: &Arc<Gateway>,
    commands: Vec<Result<Command, ApiError>>,
    parallel: bool,
) -> Result<Vec<Result<Reply, ApiError>>, ApiError> {
    if commands.len() > MAX_BATCH {
        return Err(ApiError(ErrorCode::LIMIT_EXCEEDED));
    }
    let started = Instant::now();
    let one = |command: Result<Command, ApiError>| async move {
        match command {
            Ok(command) => execute(gateway, command).await,
            Err(e) => Err(e),
        }
    };
    let replies = if parallel {
        futures_util::future::join_all(commands.into_iter().map(one)).await
    } else {
        let mut out = Vec::with_capacity(commands.len());
        for command in commands {
            out.push(one(command).await);
        }
        out
    };
    metrics().api_command_duration.with_label_values(&["batch"]).observe(started.elapsed().as_secs_f64());
    Ok(replies)
}

async fn run(gateway: &Arc<Gateway>, command: Command) -> Result<Reply, ApiError> {
    match command {
        Command::Publish(p) => {
            let data = payload(p.data, &p.b64data)?;
            let key = (!p.idempotency_key.is_empty()).then_some(p.idempotency_key);
            Ok(Reply::Publish(publish(gateway, &p.channel, data, p.tags, p.skip_history, key).await?))
        }
        Command::Broadcast(p) => {
            let data = payload(p.data, &p.b64data)?;
            if p.channels.is_empty() {
                return Err(bad_request());
            }
            let key = (!p.idempotency_key.is_empty()).then_some(p.idempotency_key);
            let mut responses = Vec::with_capacity(p.channels.len());
            for channel in &p.channels {
                responses
                    .push(publish(gateway, channel, data.clone(), p.tags.clone(), p.skip_history, key.clone()).await);
            }
            Ok(Reply::Broadcast(responses))
        }
        Command::Subscribe(p) => {
            check_channel(gateway, &p.channel)?;
            control(gateway, &p.user, Control::Subscribe { channel: p.channel, client: p.client }).await?;
            Ok(Reply::Subscribe)
        }
        Command::Unsubscribe(p) => {
            check_channel(gateway, &p.channel)?;
            let command = Control::Unsubscribe { channel: p.channel, client: p.client, insufficient_state: false };
            control(gateway, &p.user, command).await?;
            Ok(Reply::Unsubscribe)
        }
        Command::Disconnect(p) => {
            let (code, reason) = match p.disconnect {
                Some(d) if (3000..5000).contains(&d.code) => (d.code as u16, d.reason),
                Some(_) => return Err(bad_request()),
                None => {
                    let d = Disconnect::FORCE_NO_RECONNECT;
                    (d.code, d.reason.into_owned())
                }
            };
            let command = Control::Disconnect { client: p.client, whitelist: p.whitelist, code, reason };
            control(gateway, &p.user, command).await?;
            Ok(Reply::Disconnect)
        }
        Command::Refresh(p) => {
            let command = Control::Refresh { client: p.client, expired: p.expired, expire_at: p.expire_at };
            control(gateway, &p.user, command).await?;
            Ok(Reply::Refresh)
        }
        Command::Channels(p) => Ok(Reply::Channels(channels(gateway, &p.pattern).await?)),
        Command::Info => Ok(Reply::Info(info(gateway).await?)),
        Command::Presence(p) => Ok(Reply::Presence(presence(gateway, &p.channel).await?)),
        Command::PresenceStats(p) => {
            let (num_clients, num_users) = super::survey::presence_stats(&presence(gateway, &p.channel).await?);
            Ok(Reply::PresenceStats { num_clients, num_users })
        }
        Command::History(p) => {
            check_channel(gateway, &p.channel)?;
            let query = history_query(gateway, p.limit, p.since, p.reverse);
            Ok(Reply::History(gateway.hub.broker().history(&p.channel, query).await?))
        }
        Command::HistoryRemove(p) => {
            check_channel(gateway, &p.channel)?;
            gateway.hub.broker().remove_history(&p.channel).await?;
            Ok(Reply::HistoryRemove)
        }
    }
}

/// Centrifugo's limits: 0 asks only for the position, a negative limit or
/// one above the maximum gets the maximum.
fn history_query(gateway: &Gateway, limit: i32, since: Option<StreamPosition>, reverse: bool) -> Query {
    let max = gateway.config.history_max_publication_limit as i64;
    let limit = i64::from(limit);
    let limit = if limit < 0 || limit > max { max } else { limit } as usize;
    Query { since: since.map(|s| Position { offset: s.offset, epoch: s.epoch }), limit, reverse }
}

/// `b64data` (any bytes) wins when not empty, as in Centrifugo; otherwise
/// `data` (JSON's raw text, `null` included, or GRPC's bytes); neither is a
/// bad request.
fn payload(data: Option<Bytes>, b64data: &str) -> Result<Bytes, ApiError> {
    if !b64data.is_empty() {
        return base64::engine::general_purpose::STANDARD.decode(b64data).map(Bytes::from).map_err(|_| bad_request());
    }
    data.ok_or_else(bad_request)
}

fn check_channel(gateway: &Gateway, channel: &str) -> Result<(), ApiError> {
    if channel.is_empty() || channel.len() > gateway.config.channel_max_length {
        return Err(bad_request());
    }
    if gateway.rules.namespace(crate::broker::subject::namespace_of(channel)).is_none() {
        return Err(ApiError(ErrorCode::UNKNOWN_CHANNEL));
    }
    Ok(())
}

/// Publishes; the position is set when the channel keeps history.
async fn publish(
    gateway: &Gateway,
    channel: &str,
    data: Bytes,
    tags: HashMap<String, String>,
    skip_history: bool,
    idempotency_key: Option<String>,
) -> Result<Option<Position>, ApiError> {
    check_channel(gateway, channel)?;
    let message = Message { data, tags, time_ms: Some(now_ms()), idempotency_key, skip_history, ..Default::default() };
    Ok(gateway.hub.broker().publish(channel, message).await?)
}

async fn control(gateway: &Gateway, user: &str, command: Control) -> Result<(), ApiError> {
    let payload = serde_json::to_vec(&command).map_err(|_| ApiError(ErrorCode::INTERNAL))?;
    gateway.hub.broker().publish_user(user, payload.into()).await?;
    Ok(())
}

/// Presence on every gateway; error 108 when the channel has no presence.
async fn presence(gateway: &Gateway, channel: &str) -> Result<HashMap<String, ClientInfo>, ApiError> {
    check_channel(gateway, channel)?;
    let options = gateway.rules.resolve(channel).map_err(ApiError)?.options;
    if !options.presence {
        return Err(ApiError(ErrorCode::NOT_AVAILABLE));
    }
    Ok(super::survey::presence(gateway, channel).await?)
}

async fn info(gateway: &Gateway) -> Result<Vec<NodeInfo>, ApiError> {
    let mut nodes: Vec<NodeInfo> = super::survey::ask(gateway, &Question::Info)
        .await?
        .iter()
        .filter_map(|a| serde_json::from_slice(a).ok())
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name).then(a.uid.cmp(&b.uid)));
    Ok(nodes)
}

async fn channels(gateway: &Gateway, pattern: &str) -> Result<HashMap<String, u64>, ApiError> {
    let pattern = if pattern.is_empty() { None } else { Some(glob::Pattern::new(pattern).map_err(|_| bad_request())?) };
    let mut totals: HashMap<String, u64> = HashMap::new();
    for answer in super::survey::ask(gateway, &Question::Channels).await? {
        let Ok(counts) = serde_json::from_slice::<ChannelCounts>(&answer) else { continue };
        for (channel, n) in counts.channels {
            if pattern.as_ref().is_none_or(|p| p.matches(&channel)) {
                *totals.entry(channel).or_default() += n;
            }
        }
    }
    Ok(totals)
}
