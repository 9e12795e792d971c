//! The HTTP API's JSON shapes: a [`Reply`] into Centrifugo's JSON result
//! (bodies are decoded into a [`Command`] by `request.rs`, with Go's
//! decoder rules). No method logic lives here.

use serde_json::{json, Value};

use super::error::ApiError;
use super::methods::{Command, Reply};
use super::request::{Batch, BatchItem};
use crate::broker::{Page, Position};
use crate::protocol::codes::ErrorCode;

/// A decoded `batch` body's commands: each one to run, or the error that
/// answers it in its place (107 for `null`, 104 for no method natsgate
/// serves), as `methods::batch` takes them.
pub(crate) fn batch_commands(batch: Batch) -> Vec<Result<Command, ApiError>> {
    batch.commands.into_iter().map(BatchItem::into_command).collect()
}

/// `{"replies":[{"<method>":result} | {"error":..}, ...]}`, or `{}` for no
/// commands (Centrifugo leaves out an empty list).
pub(crate) fn batch_replies(replies: Vec<Result<Reply, ApiError>>) -> Value {
    if replies.is_empty() {
        return json!({});
    }
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
pub(crate) fn result(reply: Reply) -> Result<Value, ApiError> {
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
        Reply::Subscribe
        | Reply::Unsubscribe
        | Reply::Disconnect
        | Reply::Refresh
        | Reply::HistoryRemove
        | Reply::SharedPollPublish => json!({}),
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
        Reply::Map(result) => result.to_json(),
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
