//! `publish` from a client into a channel.

use super::error::CommandError;
use super::Session;
use crate::broker::{now_ms, Message};
use crate::protocol::codes::ErrorCode;
use crate::protocol::{ClientInfo, PublishRequest, PublishResult, Reply};

impl Session {
    pub(super) async fn publish(&mut self, req: PublishRequest) -> Result<Reply, CommandError> {
        self.check_channel_name(&req.channel)?;
        let config = &self.gateway.config;
        let conn = self.conn.as_ref().ok_or(ErrorCode::UNAUTHORIZED)?;
        let anonymous = conn.handle.user.is_empty();
        if !config.allow_publish_for_client || (anonymous && !config.allow_publish_for_anonymous) {
            return Err(ErrorCode::PERMISSION_DENIED.into());
        }
        if req.data.is_empty() {
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        let info = ClientInfo {
            user: conn.handle.user.clone(),
            client: conn.handle.client_id.clone(),
            conn_info: conn.info.clone(),
            chan_info: Default::default(),
        };
        let message = Message { data: req.data, info: Some(info), tags: Default::default(), time_ms: Some(now_ms()) };
        self.gateway.hub.broker().publish(&req.channel, message).await?;
        Ok(Reply { publish: Some(PublishResult {}), ..Default::default() })
    }
}
