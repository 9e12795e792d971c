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
pub(crate) use super::request::Command;
use super::request::StreamPosition;
use crate::broker::{now_ms, Message, Page, Position, Query};
use crate::context::AppContext;
use crate::metrics::{method_label, metrics};
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::ClientInfo;
use crate::survey::{self, NodeInfo};
use crate::user_command::UserCommand;

/// Most commands one `batch` call may hold.
pub(crate) const MAX_BATCH: usize = 1000;

/// Most publications of one `broadcast` (or commands of one parallel
/// `batch`) in flight at once: enough to fill a group commit (see
/// `broker::nats::confirm`), bounded so one call cannot flood the broker.
const IN_FLIGHT: usize = 64;

fn bad_request() -> ApiError {
    ApiError(ErrorCode::BAD_REQUEST)
}

/// The result of a [`Command`], variant for variant.
#[derive(Debug)]
pub(crate) enum Reply {
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
    /// A map method's result (see `crate::map::api`).
    Map(crate::map::api::MapResult),
    /// `shared_poll_publish` done (an empty result).
    SharedPollPublish,
}

impl Reply {
    /// The method this replies to (the key of a JSON batch reply).
    pub(crate) fn method(&self) -> &'static str {
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
            Reply::Map(result) => result.method(),
            Reply::SharedPollPublish => "shared_poll_publish",
        }
    }
}

/// Runs one command and records its latency under its method name.
pub(crate) async fn execute(app: &Arc<AppContext>, command: Command) -> Result<Reply, ApiError> {
    let started = Instant::now();
    let method = command.method();
    let outcome = run(app, command).await;
    metrics().api_command_duration.with_label_values(&[method_label(method)]).observe(started.elapsed().as_secs_f64());
    outcome
}

/// `batch`: each command (or the error met while reading it) answered in
/// order; `parallel` runs them concurrently. More than [`MAX_BATCH`] commands
/// get error 106 for the whole call.
pub(crate) async fn batch(
    app: &Arc<AppContext>,
    commands: Vec<Result<Command, ApiError>>,
    parallel: bool,
) -> Result<Vec<Result<Reply, ApiError>>, ApiError> {
    if commands.len() > MAX_BATCH {
        return Err(ApiError(ErrorCode::LIMIT_EXCEEDED));
    }
    let started = Instant::now();
    let one = |command: Result<Command, ApiError>| async move {
        match command {
            Ok(command) => execute(app, command).await,
            Err(e) => Err(e),
        }
    };
    let replies = if parallel {
        use futures_util::StreamExt;
        futures_util::stream::iter(commands.into_iter().map(one)).buffered(IN_FLIGHT).collect().await
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

async fn run(app: &Arc<AppContext>, command: Command) -> Result<Reply, ApiError> {
    match command {
        Command::Map(request) => Ok(Reply::Map(crate::map::api::run(app, request).await?)),
        Command::SharedPollPublish(request) => {
            crate::shared_poll::api::run(app, request).await?;
            Ok(Reply::SharedPollPublish)
        }
        Command::Publish(p) => {
            let data = payload(p.data, &p.b64data)?;
            let key = (!p.idempotency_key.is_empty()).then_some(p.idempotency_key);
            let flags = Flags { skip_history: p.skip_history, delta: p.delta };
            Ok(Reply::Publish(publish(app, &p.channel, data, p.tags, flags, key).await?))
        }
        Command::Broadcast(p) => {
            let data = payload(p.data, &p.b64data)?;
            if p.channels.is_empty() {
                return Err(bad_request());
            }
            let key = (!p.idempotency_key.is_empty()).then_some(p.idempotency_key);
            // Concurrently (bounded), answered in the request's order.
            use futures_util::StreamExt;
            let (tags, flags) = (p.tags, Flags { skip_history: p.skip_history, delta: p.delta });
            let publishes = p.channels.into_iter().map(|channel| {
                let (data, tags, key) = (data.clone(), tags.clone(), key.clone());
                async move { publish(app, &channel, data, tags, flags, key).await }
            });
            let responses = futures_util::stream::iter(publishes).buffered(IN_FLIGHT).collect().await;
            Ok(Reply::Broadcast(responses))
        }
        Command::Subscribe(p) => {
            check_channel(app, &p.channel)?;
            send_user_command(app, &p.user, UserCommand::Subscribe { channel: p.channel, client: p.client }).await?;
            Ok(Reply::Subscribe)
        }
        Command::Unsubscribe(p) => {
            check_channel(app, &p.channel)?;
            let command = UserCommand::Unsubscribe { channel: p.channel, client: p.client, insufficient_state: false };
            send_user_command(app, &p.user, command).await?;
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
            let command = UserCommand::Disconnect { client: p.client, whitelist: p.whitelist, code, reason };
            send_user_command(app, &p.user, command).await?;
            Ok(Reply::Disconnect)
        }
        Command::Refresh(p) => {
            let command = UserCommand::Refresh { client: p.client, expired: p.expired, expire_at: p.expire_at };
            send_user_command(app, &p.user, command).await?;
            Ok(Reply::Refresh)
        }
        Command::Channels(p) => Ok(Reply::Channels(channels(app, &p.pattern).await?)),
        Command::Info => Ok(Reply::Info(survey::info(app).await?)),
        Command::Presence(p) => Ok(Reply::Presence(presence(app, &p.channel).await?)),
        Command::PresenceStats(p) => {
            let (num_clients, num_users) = survey::presence_stats(&presence(app, &p.channel).await?);
            Ok(Reply::PresenceStats { num_clients, num_users })
        }
        Command::History(p) => {
            check_channel(app, &p.channel)?;
            let query = history_query(app, p.limit, p.since, p.reverse);
            Ok(Reply::History(app.broker.history(&p.channel, query).await?))
        }
        Command::HistoryRemove(p) => {
            check_channel(app, &p.channel)?;
            app.broker.remove_history(&p.channel).await?;
            Ok(Reply::HistoryRemove)
        }
    }
}

/// Centrifugo's limits: 0 asks only for the position, a negative limit or
/// one above the maximum gets the maximum.
fn history_query(app: &AppContext, limit: i32, since: Option<StreamPosition>, reverse: bool) -> Query {
    let max = app.config.history_max_publication_limit as i64;
    let limit = i64::from(limit);
    let limit = if limit < 0 || limit > max { max } else { limit } as usize;
    Query { since: since.map(|s| Position { offset: s.offset, epoch: s.epoch }), limit, reverse }
}

/// `b64data` (any bytes) wins when not empty, as in Centrifugo; otherwise
/// `data` (JSON's raw text, `null` included, or GRPC's bytes); neither is a
/// bad request.
pub(crate) fn payload(data: Option<Bytes>, b64data: &str) -> Result<Bytes, ApiError> {
    if !b64data.is_empty() {
        return base64::engine::general_purpose::STANDARD.decode(b64data).map(Bytes::from).map_err(|_| bad_request());
    }
    data.ok_or_else(bad_request)
}

fn check_channel(app: &AppContext, channel: &str) -> Result<(), ApiError> {
    if channel.is_empty() || channel.len() > app.config.channel_max_length {
        return Err(bad_request());
    }
    if app.rules.namespace(crate::channels::namespace_of(channel)).is_none() {
        return Err(ApiError(ErrorCode::UNKNOWN_CHANNEL));
    }
    Ok(())
}

/// The flags of a `publish` or `broadcast`.
#[derive(Clone, Copy)]
struct Flags {
    skip_history: bool,
    /// Asked for, or the namespace's `delta_publish` (as Centrifugo's
    /// `internal/api` decides).
    delta: bool,
}

/// Publishes; the position is set when the channel keeps history.
async fn publish(
    app: &AppContext,
    channel: &str,
    data: Bytes,
    tags: HashMap<String, String>,
    flags: Flags,
    idempotency_key: Option<String>,
) -> Result<Option<Position>, ApiError> {
    check_channel(app, channel)?;
    // Centrifugo: shared poll channels take shared_poll_publish only.
    if app.rules.resolve(channel).map_err(ApiError)?.options.subscription_type
        == crate::channels::SubscriptionType::SharedPoll
    {
        return Err(bad_request());
    }
    let delta = flags.delta || app.rules.resolve(channel).map_err(ApiError)?.options.delta_publish;
    let skip_history = flags.skip_history;
    let message =
        Message { data, tags, time_ms: Some(now_ms()), idempotency_key, skip_history, delta, ..Default::default() };
    Ok(app.broker.publish(channel, message).await?)
}

/// Sends a command to every gateway serving `user`.
async fn send_user_command(app: &AppContext, user: &str, command: UserCommand) -> Result<(), ApiError> {
    let payload = serde_json::to_vec(&command).map_err(|_| ApiError(ErrorCode::INTERNAL))?;
    app.broker.publish_user_command(user, payload.into()).await?;
    Ok(())
}

/// Presence on every gateway; error 108 when the channel has no presence.
async fn presence(app: &AppContext, channel: &str) -> Result<HashMap<String, ClientInfo>, ApiError> {
    check_channel(app, channel)?;
    let options = app.rules.resolve(channel).map_err(ApiError)?.options;
    if !options.presence {
        return Err(ApiError(ErrorCode::NOT_AVAILABLE));
    }
    Ok(survey::presence(app, channel).await?)
}

async fn channels(app: &AppContext, pattern: &str) -> Result<HashMap<String, u64>, ApiError> {
    let pattern = if pattern.is_empty() { None } else { Some(glob::Pattern::new(pattern).map_err(|_| bad_request())?) };
    Ok(survey::channels(app, |channel| pattern.as_ref().is_none_or(|p| p.matches(channel))).await?)
}
