//! The server API methods, independent of HTTP: a decoded request (see
//! [`super::request`]) in, result out.

use base64::Engine;
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

use super::error::ApiError;
use super::request::{Batch, BatchItem, Request, StreamPosition};
use super::survey::{ChannelCounts, NodeInfo, Question};
use crate::broker::{now_ms, Message, Page, Position, Query};
use crate::control::Control;
use crate::gateway::Gateway;
use crate::protocol::codes::{Disconnect, ErrorCode};
use crate::protocol::ClientInfo;

/// Most commands one `batch` call may hold.
pub const MAX_BATCH: usize = 1000;

fn bad_request() -> ApiError {
    ApiError(ErrorCode::BAD_REQUEST)
}

/// Centrifugo's limits: 0 asks only for the position, a negative limit or
/// one above the maximum gets the maximum.
fn history_query(gateway: &Gateway, limit: i32, since: Option<StreamPosition>, reverse: bool) -> Query {
    let max = gateway.config.history_max_publication_limit as i64;
    let limit = i64::from(limit);
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

/// Runs one decoded API call.
pub async fn call(gateway: &Arc<Gateway>, request: Request) -> Result<Value, ApiError> {
    match request {
        Request::Publish(p) => {
            let data = payload(p.data, &p.b64data)?;
            let key = (!p.idempotency_key.is_empty()).then_some(p.idempotency_key);
            let position = publish(gateway, &p.channel, data, p.tags, p.skip_history, key).await?;
            Ok(position_json(position))
        }
        Request::Broadcast(p) => {
            let data = payload(p.data, &p.b64data)?;
            if p.channels.is_empty() {
                return Err(bad_request());
            }
            let mut responses = Vec::with_capacity(p.channels.len());
            for channel in &p.channels {
                let published = publish(gateway, channel, data.clone(), p.tags.clone(), p.skip_history, None).await;
                responses.push(match published {
                    Ok(position) => json!({ "result": position_json(position) }),
                    Err(e) => json!({"error": e.body()}),
                });
            }
            Ok(json!({ "responses": responses }))
        }
        Request::Subscribe(p) => {
            check_channel(gateway, &p.channel)?;
            control(gateway, &p.user, Control::Subscribe { channel: p.channel, client: p.client }).await
        }
        Request::Unsubscribe(p) => {
            check_channel(gateway, &p.channel)?;
            control(
                gateway,
                &p.user,
                Control::Unsubscribe { channel: p.channel, client: p.client, insufficient_state: false },
            )
            .await
        }
        Request::Disconnect(p) => {
            let (code, reason) = match p.disconnect {
                Some(d) if (3000..5000).contains(&d.code) => (d.code as u16, d.reason),
                Some(_) => return Err(bad_request()),
                None => {
                    let d = Disconnect::FORCE_NO_RECONNECT;
                    (d.code, d.reason.into_owned())
                }
            };
            control(gateway, &p.user, Control::Disconnect { client: p.client, whitelist: p.whitelist, code, reason })
                .await
        }
        Request::Refresh(p) => {
            control(gateway, &p.user, Control::Refresh { client: p.client, expired: p.expired, expire_at: p.expire_at })
                .await
        }
        Request::Channels(p) => channels(gateway, &p.pattern).await,
        Request::Info => info(gateway).await,
        Request::Presence(p) => {
            let presence = presence(gateway, &p.channel).await?;
            // Binary (b64info) client info cannot be embedded in JSON.
            let presence = serde_json::to_value(&presence).map_err(|_| ApiError(ErrorCode::INTERNAL))?;
            Ok(json!({ "presence": presence }))
        }
        Request::PresenceStats(p) => {
            let presence = presence(gateway, &p.channel).await?;
            let (num_clients, num_users) = super::survey::presence_stats(&presence);
            Ok(json!({ "num_clients": num_clients, "num_users": num_users }))
        }
        Request::History(p) => {
            check_channel(gateway, &p.channel)?;
            let query = history_query(gateway, p.limit, p.since, p.reverse);
            let page = gateway.hub.broker().history(&p.channel, query).await?;
            history_json(page)
        }
        Request::HistoryRemove(p) => {
            check_channel(gateway, &p.channel)?;
            gateway.hub.broker().remove_history(&p.channel).await?;
            Ok(json!({}))
        }
    }
}

/// `batch`: `{"replies":[{"<method>":result} | {"error":..}, ...]}`, or
/// `{}` for no commands (Centrifugo leaves out an empty list).
pub async fn call_batch(gateway: &Arc<Gateway>, batch: Batch) -> Value {
    let replies: Vec<Value> = if batch.parallel {
        futures_util::future::join_all(batch.commands.into_iter().map(|c| batch_one(gateway, c))).await
    } else {
        let mut out = Vec::with_capacity(batch.commands.len());
        for command in batch.commands {
            out.push(batch_one(gateway, command).await);
        }
        out
    };
    if replies.is_empty() {
        return json!({});
    }
    json!({ "replies": replies })
}

async fn batch_one(gateway: &Arc<Gateway>, command: BatchItem) -> Value {
    match command {
        BatchItem::Run(method, request) => match call(gateway, request).await {
            Ok(result) => json!({ method: result }),
            Err(e) => json!({"error": e.body()}),
        },
        BatchItem::Null => json!({"error": bad_request().body()}),
        BatchItem::NotFound => json!({"error": ApiError(ErrorCode::METHOD_NOT_FOUND).body()}),
    }
}

/// The clients present in `channel` on every gateway.
async fn presence(gateway: &Gateway, channel: &str) -> Result<HashMap<String, ClientInfo>, ApiError> {
    check_channel(gateway, channel)?;
    let options = gateway.rules.resolve(channel).map_err(ApiError)?.options;
    if !options.presence {
        return Err(ApiError(ErrorCode::NOT_AVAILABLE));
    }
    Ok(super::survey::presence(gateway, channel).await?)
}

/// `b64data` (any bytes) wins when not empty, as in Centrifugo; otherwise
/// `data` (raw JSON, `null` included); neither is a bad request.
fn payload(data: Option<Box<RawValue>>, b64data: &str) -> Result<Bytes, ApiError> {
    if !b64data.is_empty() {
        return base64::engine::general_purpose::STANDARD.decode(b64data).map(Bytes::from).map_err(|_| bad_request());
    }
    match data {
        Some(raw) => Ok(Bytes::copy_from_slice(raw.get().as_bytes())),
        None => Err(bad_request()),
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
