//! `shared_poll_publish` of the server API (Centrifugo v6.9 `api.proto`
//! `SharedPollPublishRequest`: channel, key, data or b64data, version,
//! epoch; an empty result). Served wherever Centrifugo v6.9.1 serves it:
//! `POST /api/shared_poll_publish`, in `batch` (command field 42), in the
//! legacy `/api` (method `shared_poll_publish` or number 39) and as the
//! GRPC `SharedPollPublish` (see `crate::api::request::Command`).

use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;

use super::options::SharedPollMode;
use super::SharedPoll;
use crate::api::error::ApiError;
use crate::api::request::{or_zero, raw_bytes};
use crate::channels::SubscriptionType;
use crate::context::AppContext;
use crate::protocol::codes::ErrorCode;

/// `shared_poll_publish`: Centrifugo's `SharedPollPublishRequest`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct Publish {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) key: String,
    /// JSON's raw text, or GRPC's bytes when not empty.
    #[serde(deserialize_with = "raw_bytes")]
    pub(crate) data: Option<Bytes>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) b64data: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) version: u64,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) epoch: String,
}

/// Centrifugo's `Executor.SharedPollPublish`: 107 without channel, key or
/// version or for another kind of channel, 102 for an unknown namespace,
/// 108 unless `publish_enabled`; then through the broker to every gateway.
pub(crate) async fn run(app: &Arc<AppContext>, req: Publish) -> Result<(), ApiError> {
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
    // Centrifugo: b64data when not empty, else data (none publishes empty).
    let data = if req.b64data.is_empty() {
        req.data.unwrap_or_default()
    } else {
        crate::api::methods::payload(None, &req.b64data)?
    };
    let message = SharedPoll::publish_message(req.key, req.version, req.epoch, data);
    app.broker.publish(&req.channel, message).await?;
    Ok(())
}
