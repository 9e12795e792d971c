//! The map methods of the HTTP server API (Centrifugo v6.8+ `map_publish`,
//! `map_remove`, `map_read_state`, `map_read_stream`, `map_stats`; request
//! and result shapes of its `api.proto`). `POST /api/<method>` only: not in
//! `batch`, the legacy `/api` nor GRPC.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

use super::{apply, options::MapOptions, Applied, Change};
use crate::api::error::ApiError;
use crate::api::request::{or_zero, raw_bytes, string_map};
use crate::broker::{MapEntry, Message, Position, Query};
use crate::context::AppContext;
use crate::protocol::codes::ErrorCode;

/// The body did not decode into the method's request (HTTP 400).
pub(crate) struct Malformed;

#[derive(Deserialize, Default)]
#[serde(default)]
struct MapPublish {
    #[serde(deserialize_with = "or_zero")]
    channel: String,
    #[serde(deserialize_with = "or_zero")]
    key: String,
    #[serde(deserialize_with = "raw_bytes")]
    data: Option<Bytes>,
    #[serde(deserialize_with = "or_zero")]
    b64data: String,
    #[serde(deserialize_with = "string_map")]
    tags: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MapRead {
    #[serde(deserialize_with = "or_zero")]
    channel: String,
    #[serde(deserialize_with = "or_zero")]
    key: String,
    #[serde(deserialize_with = "or_zero")]
    cursor: String,
    #[serde(deserialize_with = "or_zero")]
    limit: i64,
    #[serde(deserialize_with = "or_zero")]
    since_offset: u64,
    #[serde(deserialize_with = "or_zero")]
    since_epoch: String,
    #[serde(deserialize_with = "or_zero")]
    reverse: bool,
}

/// Runs `method` if it is a map method: None for any other method.
pub(crate) async fn call(
    app: &Arc<AppContext>,
    method: &str,
    body: &str,
) -> Option<Result<Result<Value, ApiError>, Malformed>> {
    if !matches!(method, "map_publish" | "map_remove" | "map_read_state" | "map_read_stream" | "map_stats") {
        return None;
    }
    if method == "map_publish" || method == "map_remove" {
        let Ok(req) = serde_json::from_str::<MapPublish>(body) else { return Some(Err(Malformed)) };
        return Some(Ok(publish(app, req, method == "map_remove").await));
    }
    let Ok(req) = serde_json::from_str::<MapRead>(body) else { return Some(Err(Malformed)) };
    Some(Ok(match method {
        "map_read_state" => read_state(app, req).await,
        "map_read_stream" => read_stream(app, req).await,
        _ => stats(app, req).await,
    }))
}

/// The map options of a channel's namespace: 107 for a channel of another
/// subscription type (as Centrifugo answers), 102 for an unknown namespace.
fn map_options<'a>(app: &'a AppContext, channel: &'a str) -> Result<&'a MapOptions, ApiError> {
    if channel.is_empty() || channel.len() > app.config.channel_max_length {
        return Err(ApiError(ErrorCode::BAD_REQUEST));
    }
    let options = app.rules.resolve(channel)?.options;
    if !options.subscription_type.is_map() {
        return Err(ApiError(ErrorCode::BAD_REQUEST));
    }
    Ok(&options.map)
}

fn position_fields(out: &mut Map<String, Value>, position: Option<Position>) {
    if let Some(p) = position {
        if p.offset != 0 {
            out.insert("offset".into(), json!(p.offset));
        }
        if !p.epoch.is_empty() {
            out.insert("epoch".into(), json!(p.epoch));
        }
    }
}

async fn publish(app: &Arc<AppContext>, req: MapPublish, removed: bool) -> Result<Value, ApiError> {
    let options = map_options(app, &req.channel)?;
    if !super::valid_key(&req.key) {
        return Err(ApiError(ErrorCode::BAD_REQUEST));
    }
    let data = if removed { Bytes::new() } else { crate::api::methods::payload(req.data, &req.b64data)? };
    let change = Change { key: req.key, data, tags: req.tags, info: None, removed };
    let mut out = Map::new();
    match apply(app.broker.as_ref(), options, &req.channel, change).await? {
        Applied::Published(position) => position_fields(&mut out, position),
        Applied::Suppressed(reason, position) => {
            position_fields(&mut out, position);
            out.insert("suppressed".into(), json!(true));
            out.insert("suppress_reason".into(), json!(reason));
        }
    }
    Ok(Value::Object(out))
}

/// Centrifugo's `MapEntry` in JSON: data embedded raw when it is JSON.
fn entry_json(
    key: &str,
    data: &Bytes,
    tags: &HashMap<String, String>,
    offset: u64,
    removed: bool,
    time_ms: u64,
) -> Value {
    let mut out = Map::new();
    out.insert("key".into(), json!(key));
    if !data.is_empty() {
        match serde_json::from_slice::<Value>(data) {
            Ok(v) => out.insert("data".into(), v),
            Err(_) => out.insert("b64data".into(), json!(base64::engine::general_purpose::STANDARD.encode(data))),
        };
    }
    if !tags.is_empty() {
        out.insert("tags".into(), json!(tags));
    }
    if offset != 0 {
        out.insert("offset".into(), json!(offset));
    }
    if removed {
        out.insert("removed".into(), json!(true));
    }
    if time_ms != 0 {
        out.insert("time".into(), json!(time_ms));
    }
    Value::Object(out)
}

async fn read_state(app: &Arc<AppContext>, req: MapRead) -> Result<Value, ApiError> {
    let options = map_options(app, &req.channel)?;
    let broker = app.broker.as_ref();
    let ttl = options.key_ttl.filter(|t| !t.is_zero());
    // Position first, state second (see the module docs of `crate::map`).
    let position = super::position(broker, options, &req.channel).await?;
    let key = (!req.key.is_empty()).then_some(req.key.as_str());
    let entries: Vec<(String, MapEntry)> = broker.map_read(&req.channel, key, ttl).await?;
    // Centrifugo: limit 0 answers the position only; below 0, everything.
    let limit = if key.is_some() || req.limit < 0 { usize::MAX } else { req.limit as usize };
    let mut page: Vec<&(String, MapEntry)> =
        entries.iter().filter(|(k, _)| req.cursor.is_empty() || *k > req.cursor).collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let mut out = Map::new();
    out.insert(
        "entries".into(),
        page.iter().map(|(k, e)| entry_json(k, &e.data, &e.tags, e.offset, false, e.time_ms)).collect(),
    );
    if page.is_empty() {
        out.remove("entries");
    }
    position_fields(&mut out, position);
    if more {
        if let Some((k, _)) = page.last() {
            out.insert("cursor".into(), json!(k));
        }
    }
    Ok(Value::Object(out))
}

async fn read_stream(app: &Arc<AppContext>, req: MapRead) -> Result<Value, ApiError> {
    let options = map_options(app, &req.channel)?;
    if !options.mode.has_stream() {
        return Err(ApiError(ErrorCode::NOT_AVAILABLE));
    }
    let since = (req.since_offset != 0 || !req.since_epoch.is_empty())
        .then(|| Position { offset: req.since_offset, epoch: req.since_epoch.clone() });
    let limit = if req.limit < 0 { usize::MAX } else { req.limit as usize };
    let page = app.broker.history(&req.channel, Query { since, limit, reverse: req.reverse }).await?;
    let mut out = Map::new();
    let entries: Vec<Value> = page
        .publications
        .iter()
        .map(|m: &Message| {
            entry_json(m.key.as_deref().unwrap_or(""), &m.data, &m.tags, m.offset, m.removed, m.time_ms.unwrap_or(0))
        })
        .collect();
    if !entries.is_empty() {
        out.insert("entries".into(), Value::Array(entries));
    }
    position_fields(&mut out, Some(page.position));
    Ok(Value::Object(out))
}

async fn stats(app: &Arc<AppContext>, req: MapRead) -> Result<Value, ApiError> {
    let options = map_options(app, &req.channel)?;
    let ttl = options.key_ttl.filter(|t| !t.is_zero());
    let keys = app.broker.map_read(&req.channel, None, ttl).await?.len();
    Ok(json!({ "num_keys": keys }))
}
