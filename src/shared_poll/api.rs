//! `shared_poll_publish` of the HTTP server API (Centrifugo v6.9 `api.proto`
//! `SharedPollPublishRequest`: channel, key, data or b64data, version,
//! epoch; an empty result). `POST /api/shared_poll_publish` only.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use super::options::SharedPollMode;
use super::SharedPoll;
use crate::api::error::ApiError;
use crate::api::request::{or_zero, raw_bytes};
use crate::channels::SubscriptionType;
use crate::context::AppContext;
use crate::protocol::codes::ErrorCode;

/// The body did not decode into the request (HTTP 400).
pub(crate) struct Malformed;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Publish {
    #[serde(deserialize_with = "or_zero")]
    channel: String,
    #[serde(deserialize_with = "or_zero")]
    key: String,
    #[serde(deserialize_with = "raw_bytes")]
    data: Option<Bytes>,
    #[serde(deserialize_with = "or_zero")]
    b64data: String,
    #[serde(deserialize_with = "or_zero")]
    version: u64,
    #[serde(deserialize_with = "or_zero")]
    epoch: String,
}

/// Runs `shared_poll_publish`: None for any other method.
pub(crate) async fn call(
    app: &Arc<AppContext>,
    method: &str,
    body: &str,
) -> Option<Result<Result<Value, ApiError>, Malformed>> {
    if method != "shared_poll_publish" {
        return None;
    }
    let Ok(req) = serde_json::from_str::<Publish>(body) else { return Some(Err(Malformed)) };
    Some(Ok(publish(app, req).await))
}

/// Centrifugo's `Executor.SharedPollPublish`: 107 without channel, key or
/// version or for another kind of channel, 102 for an unknown namespace,
/// 108 unless `publish_enabled`; then through the broker to every gateway.
async fn publish(app: &Arc<AppContext>, req: Publish) -> Result<Value, ApiError> {
    if req.channel.is_empty() || req.key.is_empty() || req.version == 0 {
        return Err(ApiError(ErrorCode::BAD_REQUEST));
    }
    if req.channel.len() > app.config.channel_max_length {
        return Err(ApiError(ErrorCode::BAD_REQUEST));
    }
    let options = app.rules.resolve(&req.channel)?.options;
    if options.subscription_type != SubscriptionType::SharedPoll {
        return Err(ApiError(ErrorCode::BAD_REQUEST));
    }
    // Validation refuses publish_enabled in versionless mode.
    if !options.shared_poll.publish_enabled || options.shared_poll.mode != SharedPollMode::Versioned {
        return Err(ApiError(ErrorCode::NOT_AVAILABLE));
    }
    let data = if req.b64data.is_empty() {
        req.data.unwrap_or_default()
    } else {
        crate::api::methods::payload(None, &req.b64data)?
    };
    let message = SharedPoll::publish_message(req.key, req.version, req.epoch, data);
    app.broker.publish(&req.channel, message).await?;
    Ok(json!({}))
}
