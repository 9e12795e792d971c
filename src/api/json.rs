//! The HTTP API's JSON shapes: params into a [`Command`], a [`Reply`] into
//! Centrifugo's JSON result. No method logic lives here.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;

use super::error::ApiError;
use super::methods::{Command, Reply};
use crate::broker::{Page, Position};
use crate::protocol::codes::ErrorCode;

fn parse<T: for<'de> Deserialize<'de>>(params: &RawValue) -> Result<T, ApiError> {
    serde_json::from_str(params.get()).map_err(|_| ApiError(ErrorCode::BAD_REQUEST))
}

/// The command `method` with JSON `params`; unknown methods get error 104.
pub fn command(method: &str, params: &RawValue) -> Result<Command, ApiError> {
    Ok(match method {
        "publish" => Command::Publish(parse(params)?),
        "broadcast" => Command::Broadcast(parse(params)?),
        "subscribe" => Command::Subscribe(parse(params)?),
        "unsubscribe" => Command::Unsubscribe(parse(params)?),
        "disconnect" => Command::Disconnect(parse(params)?),
        "refresh" => Command::Refresh(parse(params)?),
        "channels" if params.get().trim() == "null" => Command::Channels(Default::default()),
        "channels" => Command::Channels(parse(params)?),
        "info" => Command::Info,
        "presence" => Command::Presence(parse(params)?),
        "presence_stats" => Command::PresenceStats(parse(params)?),
        "history" => Command::History(parse(params)?),
        "history_remove" => Command::HistoryRemove(parse(params)?),
        _ => return Err(ApiError(ErrorCode::METHOD_NOT_FOUND)),
    })
}

#[derive(Deserialize)]
struct BatchParams {
    commands: Vec<HashMap<String, Box<RawValue>>>,
    #[serde(default)]
    parallel: bool,
}

/// `batch` params: each command is `{"<method>": params}`; one that is not,
/// or is a nested batch, is answered with error 107 in its place.
pub fn batch_commands(params: &RawValue) -> Result<(Vec<Result<Command, ApiError>>, bool), ApiError> {
    let p: BatchParams = parse(params)?;
    let commands = p
        .commands
        .iter()
        .map(|entry| {
            let mut entries = entry.iter();
            match (entries.next(), entries.next()) {
                (Some((method, params)), None) if method != "batch" => command(method, params),
                _ => Err(ApiError(ErrorCode::BAD_REQUEST)),
            }
        })
        .collect();
    Ok((commands, p.parallel))
}

/// `{"replies":[{"<method>":result} | {"error":..}, ...]}`.
pub fn batch_replies(replies: Vec<Result<Reply, ApiError>>) -> Value {
    let replies: Vec<Value> = replies
        .into_iter()
        .map(|reply| match reply.and_then(|r| Ok((r.method(), result(r)?))) {
            Ok((method, result)) => json!({ method: result }),
            Err(e) => json!({ "error": e.body() }),
        })
        .collect();
    json!({ "replies": replies })
}

/// A reply's `result` object as Centrifugo writes it.
pub fn result(reply: Reply) -> Result<Value, ApiError> {
    Ok(match reply {
        Reply::Publish(position) => position_json(position),
        Reply::Broadcast(outcomes) => {
            let responses: Vec<Value> = outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(position) => json!({ "result": position_json(position) }),
                    Err(e) => json!({ "error": e.body() }),
                })
                .collect();
            json!({ "responses": responses })
        }
        Reply::Subscribe | Reply::Unsubscribe | Reply::Disconnect | Reply::Refresh | Reply::HistoryRemove => json!({}),
        Reply::Channels(channels) => {
            let channels: serde_json::Map<String, Value> =
                channels.into_iter().map(|(c, n)| (c, json!({ "num_clients": n }))).collect();
            json!({ "channels": channels })
        }
        Reply::Info(nodes) => json!({ "nodes": nodes }),
        Reply::Presence(presence) => {
            // Binary (b64info) client info cannot be embedded in JSON.
            let presence = serde_json::to_value(&presence).map_err(|_| ApiError(ErrorCode::INTERNAL))?;
            json!({ "presence": presence })
        }
        Reply::PresenceStats { num_clients, num_users } => {
            json!({ "num_clients": num_clients, "num_users": num_users })
        }
        Reply::History(page) => history_json(page)?,
    })
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
