//! The map methods of the server API (Centrifugo v6.8+ `map_publish`,
//! `map_remove`, `map_read_state`, `map_read_stream`, `map_stats`,
//! `map_clear`; request and result shapes of its `api.proto`, semantics of
//! its `internal/api/api.go` over centrifuge's memory map broker). One typed
//! [`MapRequest`] in, one [`MapResult`] out, whatever the transport: HTTP
//! (`/api/<method>`, `batch`, the legacy `/api`) and GRPC only convert.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

use super::{apply_with, options::MapOptions, Applied, Change};
use crate::api::error::ApiError;
use crate::api::request::{object, or_zero, raw_bytes, string_map, Malformed};
use crate::broker::{KeyMode, MapCondition, MapEntry, Message, Position, Query};
use crate::context::AppContext;
use crate::protocol::codes::ErrorCode;

/// `map_publish`: Centrifugo's `MapPublishRequest`. `stream_data`,
/// `b64stream_data` and `score` are read and not used, as Centrifugo v6.9.1's
/// API does not use them either; `delta` publishes with the delta flag.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct MapPublish {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) key: String,
    /// JSON's raw text, or GRPC's bytes when not empty.
    #[serde(deserialize_with = "raw_bytes")]
    pub(crate) data: Option<Bytes>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) b64data: String,
    #[serde(deserialize_with = "raw_bytes")]
    pub(crate) stream_data: Option<Bytes>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) b64stream_data: String,
    #[serde(deserialize_with = "string_map")]
    pub(crate) tags: HashMap<String, String>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) idempotency_key: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) delta: bool,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) version: u64,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) version_epoch: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) score: i64,
    /// `""`, `"if_new"` or `"if_exists"`; anything else is error 107.
    #[serde(deserialize_with = "or_zero")]
    pub(crate) key_mode: String,
}

/// `map_remove`: Centrifugo's `MapRemoveRequest`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct MapRemove {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) key: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) idempotency_key: String,
}

/// `map_read_state`: Centrifugo's `MapReadStateRequest` (`asc` orders
/// ordered maps, which natsgate does not have: read and not used).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct MapReadState {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) cursor: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) limit: i32,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) key: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) asc: bool,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) revision_offset: u64,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) revision_epoch: String,
}

/// `map_read_stream`: Centrifugo's `MapReadStreamRequest`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct MapReadStream {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) since_offset: u64,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) since_epoch: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) limit: i32,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) reverse: bool,
}

/// `map_stats`, `map_clear`: a channel.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct MapChannel {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
}

/// One map method call.
#[derive(Debug)]
pub(crate) enum MapRequest {
    /// Boxed: the largest request by far.
    Publish(Box<MapPublish>),
    Remove(MapRemove),
    ReadState(MapReadState),
    ReadStream(MapReadStream),
    Stats(MapChannel),
    Clear(MapChannel),
}

impl MapRequest {
    /// Decodes `body` as `method`'s JSON request (Go decoder rules, as
    /// `crate::api::request`): `Ok(None)` when `method` is no map method.
    pub(crate) fn decode(method: &str, body: &str) -> Result<Option<MapRequest>, Malformed> {
        Ok(Some(match method {
            "map_publish" => MapRequest::Publish(Box::new(object(body)?)),
            "map_remove" => MapRequest::Remove(object(body)?),
            "map_read_state" => MapRequest::ReadState(object(body)?),
            "map_read_stream" => MapRequest::ReadStream(object(body)?),
            "map_stats" => MapRequest::Stats(object(body)?),
            "map_clear" => MapRequest::Clear(object(body)?),
            _ => return Ok(None),
        }))
    }

    /// The method's name.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            MapRequest::Publish(_) => "map_publish",
            MapRequest::Remove(_) => "map_remove",
            MapRequest::ReadState(_) => "map_read_state",
            MapRequest::ReadStream(_) => "map_read_stream",
            MapRequest::Stats(_) => "map_stats",
            MapRequest::Clear(_) => "map_clear",
        }
    }
}

/// One entry of a state page or of the stream (Centrifugo's `MapEntry`;
/// `score` is always 0: natsgate has no ordered maps).
#[derive(Debug, Default)]
pub(crate) struct MapEntryOut {
    pub(crate) key: String,
    pub(crate) data: Bytes,
    pub(crate) tags: HashMap<String, String>,
    pub(crate) offset: u64,
    pub(crate) removed: bool,
    /// Unix milliseconds.
    pub(crate) time: i64,
}

/// A map method's result.
#[derive(Debug)]
pub(crate) enum MapResult {
    /// `map_publish` / `map_remove`: the position (stream modes), and why
    /// nothing was written when nothing was (centrifuge's `SuppressReason`).
    Update {
        method: &'static str,
        position: Position,
        suppress_reason: Option<&'static str>,
    },
    State {
        entries: Vec<MapEntryOut>,
        position: Position,
        cursor: String,
    },
    Stream {
        entries: Vec<MapEntryOut>,
        position: Position,
    },
    Stats {
        num_keys: i32,
    },
    Clear,
}

impl MapResult {
    /// The method this answers (the key of a JSON batch reply).
    pub(crate) fn method(&self) -> &'static str {
        match self {
            MapResult::Update { method, .. } => method,
            MapResult::State { .. } => "map_read_state",
            MapResult::Stream { .. } => "map_read_stream",
            MapResult::Stats { .. } => "map_stats",
            MapResult::Clear => "map_clear",
        }
    }

    /// The JSON `result`, zero values left out as Go's `omitempty` does.
    pub(crate) fn to_json(&self) -> Value {
        let mut out = Map::new();
        match self {
            MapResult::Update { position, suppress_reason, .. } => {
                position_fields(&mut out, position);
                if let Some(reason) = suppress_reason {
                    out.insert("suppressed".into(), json!(true));
                    out.insert("suppress_reason".into(), json!(reason));
                }
            }
            MapResult::State { entries, position, cursor } => {
                if !entries.is_empty() {
                    out.insert("entries".into(), entries.iter().map(entry_json).collect());
                }
                position_fields(&mut out, position);
                if !cursor.is_empty() {
                    out.insert("cursor".into(), json!(cursor));
                }
            }
            MapResult::Stream { entries, position } => {
                if !entries.is_empty() {
                    out.insert("entries".into(), entries.iter().map(entry_json).collect());
                }
                position_fields(&mut out, position);
            }
            MapResult::Stats { num_keys } => {
                if *num_keys != 0 {
                    out.insert("num_keys".into(), json!(num_keys));
                }
            }
            MapResult::Clear => {}
        }
        Value::Object(out)
    }
}

fn position_fields(out: &mut Map<String, Value>, p: &Position) {
    if p.offset != 0 {
        out.insert("offset".into(), json!(p.offset));
    }
    if !p.epoch.is_empty() {
        out.insert("epoch".into(), json!(p.epoch));
    }
}

/// Centrifugo's `MapEntry` in JSON: data embedded raw when it is JSON
/// (binary data, which Centrifugo would write as broken JSON, as `b64data`).
fn entry_json(e: &MapEntryOut) -> Value {
    let mut out = Map::new();
    out.insert("key".into(), json!(e.key));
    if !e.data.is_empty() {
        match serde_json::from_slice::<Value>(&e.data) {
            Ok(v) => out.insert("data".into(), v),
            Err(_) => out.insert("b64data".into(), json!(base64::engine::general_purpose::STANDARD.encode(&e.data))),
        };
    }
    if !e.tags.is_empty() {
        out.insert("tags".into(), json!(e.tags));
    }
    if e.offset != 0 {
        out.insert("offset".into(), json!(e.offset));
    }
    if e.removed {
        out.insert("removed".into(), json!(true));
    }
    if e.time != 0 {
        out.insert("time".into(), json!(e.time));
    }
    Value::Object(out)
}

/// Runs one map method.
pub(crate) async fn run(app: &Arc<AppContext>, request: MapRequest) -> Result<MapResult, ApiError> {
    match request {
        MapRequest::Publish(req) => publish(app, *req).await,
        MapRequest::Remove(req) => remove(app, req).await,
        MapRequest::ReadState(req) => read_state(app, req).await,
        MapRequest::ReadStream(req) => read_stream(app, req).await,
        MapRequest::Stats(req) => stats(app, req).await,
        MapRequest::Clear(req) => clear(app, req).await,
    }
}

fn bad_request() -> ApiError {
    ApiError(ErrorCode::BAD_REQUEST)
}

/// The map options of a channel's namespace: 107 for an empty channel or
/// one of another subscription type (as Centrifugo answers), 102 for an
/// unknown namespace.
fn map_options<'a>(app: &'a AppContext, channel: &'a str) -> Result<&'a MapOptions, ApiError> {
    if channel.is_empty() || channel.len() > app.config.channel_max_length {
        return Err(bad_request());
    }
    let options = app.rules.resolve(channel)?.options;
    if !options.subscription_type.is_map() {
        return Err(bad_request());
    }
    Ok(&options.map)
}

fn updated(method: &'static str, applied: Applied) -> MapResult {
    let (position, suppress_reason) = match applied {
        Applied::Published(position) => (position, None),
        Applied::Suppressed(reason, position) => (position, Some(reason)),
    };
    MapResult::Update { method, position: position.unwrap_or_default(), suppress_reason }
}

async fn publish(app: &Arc<AppContext>, req: MapPublish) -> Result<MapResult, ApiError> {
    // Centrifugo: an empty channel or key is 107 before anything is looked up.
    if req.channel.is_empty() || req.key.is_empty() {
        return Err(bad_request());
    }
    let options = map_options(app, &req.channel)?;
    if !super::valid_key(&req.key) {
        return Err(bad_request());
    }
    let data = if req.b64data.is_empty() {
        req.data.unwrap_or_default()
    } else {
        base64::engine::general_purpose::STANDARD.decode(&req.b64data).map(Bytes::from).map_err(|_| bad_request())?
    };
    let key_mode = match req.key_mode.as_str() {
        "" => KeyMode::Replace,
        "if_new" => KeyMode::IfNew,
        "if_exists" => KeyMode::IfExists,
        _ => return Err(bad_request()),
    };
    // centrifuge's memory broker refuses versions without a stream (an
    // error, which Centrifugo answers 100).
    if req.version > 0 && !options.mode.has_stream() {
        return Err(ApiError(ErrorCode::INTERNAL));
    }
    let condition =
        MapCondition { key_mode, version: req.version, version_epoch: req.version_epoch, ..Default::default() };
    // Centrifugo's api.go: `delta` or the namespace's `delta_publish`.
    let delta = req.delta || app.rules.resolve(&req.channel)?.options.delta_publish;
    let change = Change { key: req.key, data, tags: req.tags, info: None, removed: false, delta };
    let applied = apply_with(app.broker.as_ref(), options, &req.channel, change, &condition, &req.idempotency_key);
    Ok(updated("map_publish", applied.await?))
}

async fn remove(app: &Arc<AppContext>, req: MapRemove) -> Result<MapResult, ApiError> {
    if req.channel.is_empty() || req.key.is_empty() {
        return Err(bad_request());
    }
    let options = map_options(app, &req.channel)?;
    if !super::valid_key(&req.key) {
        return Err(bad_request());
    }
    let change =
        Change { key: req.key, data: Bytes::new(), tags: HashMap::new(), info: None, removed: true, delta: false };
    let condition = MapCondition::default();
    let applied = apply_with(app.broker.as_ref(), options, &req.channel, change, &condition, &req.idempotency_key);
    Ok(updated("map_remove", applied.await?))
}

fn state_entry(key: &str, e: &MapEntry) -> MapEntryOut {
    MapEntryOut {
        key: key.to_string(),
        data: e.data.clone(),
        tags: e.tags.clone(),
        offset: e.offset,
        removed: false,
        time: e.time_ms as i64,
    }
}

async fn read_state(app: &Arc<AppContext>, req: MapReadState) -> Result<MapResult, ApiError> {
    let options = map_options(app, &req.channel)?;
    let broker = app.broker.as_ref();
    let ttl = options.key_ttl.filter(|t| !t.is_zero());
    // Position first, state second (see the module docs of `crate::map`).
    let position = super::position(broker, options, &req.channel).await?.unwrap_or_default();
    // A revision of another epoch: the state it paged through is gone (112).
    if (req.revision_offset > 0 || !req.revision_epoch.is_empty()) && req.revision_epoch != position.epoch {
        return Err(ApiError(ErrorCode::UNRECOVERABLE_POSITION));
    }
    let key = (!req.key.is_empty()).then_some(req.key.as_str());
    let entries: Vec<(String, MapEntry)> = broker.map_read(&req.channel, key, ttl).await?;
    // Centrifugo: limit 0 answers the position only; below 0, everything.
    let limit = if key.is_some() || req.limit < 0 { usize::MAX } else { req.limit as usize };
    let mut page: Vec<&(String, MapEntry)> =
        entries.iter().filter(|(k, _)| req.cursor.is_empty() || *k > req.cursor).collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let cursor = match page.last() {
        Some((k, _)) if more => k.clone(),
        _ => String::new(),
    };
    let entries = page.iter().map(|(k, e)| state_entry(k, e)).collect();
    Ok(MapResult::State { entries, position, cursor })
}

async fn read_stream(app: &Arc<AppContext>, req: MapReadStream) -> Result<MapResult, ApiError> {
    let options = map_options(app, &req.channel)?;
    // Ephemeral maps keep no stream: nothing to read (Centrifugo answers its
    // empty stream's epoch, which natsgate does not keep).
    if !options.mode.has_stream() {
        return Ok(MapResult::Stream { entries: Vec::new(), position: Position::default() });
    }
    let since = (req.since_offset != 0 || !req.since_epoch.is_empty())
        .then(|| Position { offset: req.since_offset, epoch: req.since_epoch.clone() });
    let limit = if req.limit < 0 { usize::MAX } else { req.limit as usize };
    let page = app.broker.history(&req.channel, Query { since, limit, reverse: req.reverse }).await?;
    let entries = page
        .publications
        .into_iter()
        .map(|m: Message| MapEntryOut {
            key: m.key.unwrap_or_default(),
            data: m.data,
            tags: m.tags,
            offset: m.offset,
            removed: m.removed,
            time: m.time_ms.unwrap_or(0) as i64,
        })
        .collect();
    Ok(MapResult::Stream { entries, position: page.position })
}

async fn stats(app: &Arc<AppContext>, req: MapChannel) -> Result<MapResult, ApiError> {
    let options = map_options(app, &req.channel)?;
    let ttl = options.key_ttl.filter(|t| !t.is_zero());
    let keys = app.broker.map_read(&req.channel, None, ttl).await?.len();
    Ok(MapResult::Stats { num_keys: keys.try_into().unwrap_or(i32::MAX) })
}

/// `map_clear`: the state and the stream go, nothing is published (as
/// centrifuge's `MapBroker.Clear`); subscribers learn it when they next
/// recover (the stream is gone) or load the state.
async fn clear(app: &Arc<AppContext>, req: MapChannel) -> Result<MapResult, ApiError> {
    let options = map_options(app, &req.channel)?;
    let ttl = options.key_ttl.filter(|t| !t.is_zero());
    app.broker.map_clear(&req.channel, ttl).await?;
    if options.mode.has_stream() {
        app.broker.remove_history(&req.channel).await?;
    }
    Ok(MapResult::Clear)
}
