//! The server API methods, independent of HTTP: params in, result out.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

use super::error::ApiError;
use super::survey::{ChannelCounts, NodeInfo, Question};
use crate::broker::{now_ms, Message, Page, Position, Query};
use crate::control::Control;
use crate::gateway::Gateway;
use crate::protocol::codes::{Disconnect, ErrorCode};

/// Most commands one `batch` call may hold.
pub const MAX_BATCH: usize = 1000;

fn bad_request() -> ApiError {
    ApiError(ErrorCode::BAD_REQUEST)
}

fn parse<T: for<'de> Deserialize<'de>>(params: &RawValue) -> Result<T, ApiError> {
    serde_json::from_str(params.get()).map_err(|_| bad_request())
}

#[derive(Deserialize)]
struct PublishParams {
    channel: String,
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: String,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Deserialize)]
struct BroadcastParams {
    channels: Vec<String>,
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: String,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    skip_history: bool,
    /// Applied to each channel on its own, as Centrifugo does.
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Deserialize)]
struct UserChannelParams {
    user: String,
    channel: String,
    #[serde(default)]
    client: String,
}

#[derive(Deserialize, Default)]
struct DisconnectParams {
    user: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    whitelist: Vec<String>,
    disconnect: Option<CustomDisconnect>,
}

#[derive(Deserialize)]
struct CustomDisconnect {
    code: u16,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct RefreshParams {
    user: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    expire_at: i64,
}

#[derive(Deserialize)]
struct ChannelParams {
    channel: String,
}

#[derive(Deserialize)]
struct HistoryParams {
    channel: String,
    #[serde(default)]
    limit: i64,
    since: Option<SincePosition>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize)]
struct SincePosition {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

/// Centrifugo's limits: 0 asks only for the position, a negative limit or
/// one above the maximum gets the maximum.
fn history_query(gateway: &Gateway, limit: i64, since: Option<SincePosition>, reverse: bool) -> Query {
    let max = gateway.config.history_max_publication_limit as i64;
    let limit = if limit < 0 || limit > max { max } else { limit } as usize;
    Query { since: since.map(|s| Position { offset: s.offset, epoch: s.epoch }), limit, reverse }
}

fn position_json(position: Option<Position>) -> Value {
    match position {
        Some(p) => json!({ "offset": p.offset, "epoch": p.epoch }),
        None => json!({}),
    }
}

fn history_json(page: Page) -> Result<Value, ApiError> {
    let mut publications = Vec::with_capacity(page.publications.len());
    for m in page.publications {
        let publication = crate::protocol::Publication::from(m);
        // Data that is not JSON (a binary direct publish) cannot be shown here.
        publications.push(serde_json::to_value(&publication).map_err(|_| ApiError(ErrorCode::INTERNAL))?);
    }
    Ok(json!({ "publications": publications, "offset": page.position.offset, "epoch": page.position.epoch }))
}

#[derive(Deserialize, Default)]
struct ChannelsParams {
    #[serde(default)]
    pattern: String,
}

#[derive(Deserialize)]
struct BatchParams {
    commands: Vec<HashMap<String, Box<RawValue>>>,
    #[serde(default)]
    parallel: bool,
}

/// Calls one API method. `batch` answers with its own top-level shape; see
/// [`call_batch`].
pub async fn call(gateway: &Arc<Gateway>, method: &str, params: &RawValue) -> Result<Value, ApiError> {
    match method {
        "publish" => {
            let p: PublishParams = parse(params)?;
            let data = payload(p.data, &p.b64data)?;
            let key = (!p.idempotency_key.is_empty()).then_some(p.idempotency_key);
            let position = publish(gateway, &p.channel, data, p.tags, p.skip_history, key).await?;
            Ok(position_json(position))
        }
        "broadcast" => {
            let p: BroadcastParams = parse(params)?;
            let data = payload(p.data, &p.b64data)?;
            if p.channels.is_empty() {
                return Err(bad_request());
            }
            let key = (!p.idempotency_key.is_empty()).then_some(p.idempotency_key);
            let mut responses = Vec::with_capacity(p.channels.len());
            for channel in &p.channels {
                let published =
                    publish(gateway, channel, data.clone(), p.tags.clone(), p.skip_history, key.clone()).await;
                responses.push(match published {
                    Ok(position) => json!({ "result": position_json(position) }),
                    Err(e) => json!({"error": e.body()}),
                });
            }
            Ok(json!({ "responses": responses }))
        }
        "subscribe" => {
            let p: UserChannelParams = parse(params)?;
            check_channel(gateway, &p.channel)?;
            control(gateway, &p.user, Control::Subscribe { channel: p.channel, client: p.client }).await
        }
        "unsubscribe" => {
            let p: UserChannelParams = parse(params)?;
            check_channel(gateway, &p.channel)?;
            control(
                gateway,
                &p.user,
                Control::Unsubscribe { channel: p.channel, client: p.client, insufficient_state: false },
            )
            .await
        }
        "disconnect" => {
            let p: DisconnectParams = parse(params)?;
            let (code, reason) = match p.disconnect {
                Some(d) if d.code >= 3000 && d.code < 5000 => (d.code, d.reason),
                Some(_) => return Err(bad_request()),
                None => {
                    let d = Disconnect::FORCE_NO_RECONNECT;
                    (d.code, d.reason.into_owned())
                }
            };
            control(gateway, &p.user, Control::Disconnect { client: p.client, whitelist: p.whitelist, code, reason })
                .await
        }
        "refresh" => {
            let p: RefreshParams = parse(params)?;
            control(gateway, &p.user, Control::Refresh { client: p.client, expired: p.expired, expire_at: p.expire_at })
                .await
        }
        "channels" => {
            let p: ChannelsParams = if params.get().trim() == "null" { Default::default() } else { parse(params)? };
            channels(gateway, &p.pattern).await
        }
        "info" => info(gateway).await,
        "presence" | "presence_stats" => {
            let p: ChannelParams = parse(params)?;
            check_channel(gateway, &p.channel)?;
            let options = gateway.rules.resolve(&p.channel).map_err(ApiError)?.options;
            if !options.presence {
                return Err(ApiError(ErrorCode::NOT_AVAILABLE));
            }
            let presence = super::survey::presence(gateway, &p.channel).await?;
            if method == "presence" {
                // Binary (b64info) client info cannot be embedded in JSON.
                let presence = serde_json::to_value(&presence).map_err(|_| ApiError(ErrorCode::INTERNAL))?;
                Ok(json!({ "presence": presence }))
            } else {
                let (num_clients, num_users) = super::survey::presence_stats(&presence);
                Ok(json!({ "num_clients": num_clients, "num_users": num_users }))
            }
        }
        "history" => {
            let p: HistoryParams = parse(params)?;
            check_channel(gateway, &p.channel)?;
            let query = history_query(gateway, p.limit, p.since, p.reverse);
            let page = gateway.hub.broker().history(&p.channel, query).await?;
            history_json(page)
        }
        "history_remove" => {
            let p: ChannelParams = parse(params)?;
            check_channel(gateway, &p.channel)?;
            gateway.hub.broker().remove_history(&p.channel).await?;
            Ok(json!({}))
        }
        _ => Err(ApiError(ErrorCode::METHOD_NOT_FOUND)),
    }
}

/// `batch`: `{"replies":[{"<method>":result} | {"error":..}, ...]}`.
pub async fn call_batch(gateway: &Arc<Gateway>, params: &RawValue) -> Result<Value, ApiError> {
    let p: BatchParams = parse(params)?;
    if p.commands.len() > MAX_BATCH {
        return Err(ApiError(ErrorCode::LIMIT_EXCEEDED));
    }
    let mut calls = Vec::with_capacity(p.commands.len());
    for command in &p.commands {
        // Each command is `{"<method>": params}`; nested batches are refused.
        let mut entries = command.iter();
        match (entries.next(), entries.next()) {
            (Some((method, params)), None) if method != "batch" => calls.push(Some((method.as_str(), params.as_ref()))),
            _ => calls.push(None),
        }
    }
    let replies: Vec<Value> = if p.parallel {
        futures_util::future::join_all(calls.into_iter().map(|c| batch_one(gateway, c))).await
    } else {
        let mut out = Vec::with_capacity(calls.len());
        for call in calls {
            out.push(batch_one(gateway, call).await);
        }
        out
    };
    Ok(json!({ "replies": replies }))
}

async fn batch_one(gateway: &Arc<Gateway>, call: Option<(&str, &RawValue)>) -> Value {
    match call {
        Some((method, params)) => match self::call(gateway, method, params).await {
            Ok(result) => json!({ method: result }),
            Err(e) => json!({"error": e.body()}),
        },
        None => json!({"error": bad_request().body()}),
    }
}

/// `data` (raw JSON) or `b64data` (any bytes); exactly one is needed.
fn payload(data: Option<Box<RawValue>>, b64data: &str) -> Result<Bytes, ApiError> {
    match (data, b64data.is_empty()) {
        (Some(raw), true) => Ok(Bytes::copy_from_slice(raw.get().as_bytes())),
        (None, false) => {
            base64::engine::general_purpose::STANDARD.decode(b64data).map(Bytes::from).map_err(|_| bad_request())
        }
        _ => Err(bad_request()),
    }
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

/// Publishes; the result has `offset` and `epoch` when the channel keeps history.
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

async fn control(gateway: &Gateway, user: &str, command: Control) -> Result<Value, ApiError> {
    let payload = serde_json::to_vec(&command).map_err(|_| ApiError(ErrorCode::INTERNAL))?;
    gateway.hub.broker().publish_user(user, payload.into()).await?;
    Ok(json!({}))
}

async fn info(gateway: &Gateway) -> Result<Value, ApiError> {
    let mut nodes: Vec<NodeInfo> = super::survey::ask(gateway, &Question::Info)
        .await?
        .iter()
        .filter_map(|a| serde_json::from_slice(a).ok())
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name).then(a.uid.cmp(&b.uid)));
    Ok(json!({ "nodes": nodes }))
}

async fn channels(gateway: &Gateway, pattern: &str) -> Result<Value, ApiError> {
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
    let channels: serde_json::Map<String, Value> =
        totals.into_iter().map(|(c, n)| (c, json!({ "num_clients": n }))).collect();
    Ok(json!({ "channels": channels }))
}
