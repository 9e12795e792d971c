//! `publish` from a client into a channel.

use super::error::CommandError;
use super::Session;
use crate::broker::{now_ms, Message};
use crate::channels::Access;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ClientInfo, PublishRequest, PublishResult, Reply};

impl Session {
    pub(super) async fn publish(&mut self, req: PublishRequest) -> Result<Reply, CommandError> {
        self.check_access(&req.channel, Access::Publish)?;
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        let info = ClientInfo {
            user: conn.handle.user.clone(),
            client: conn.handle.client_id.clone(),
            conn_info: conn.info.clone(),
            chan_info: conn.channels.get(&req.channel).map(|s| s.info.clone()).unwrap_or_default(),
        };
        let message = Message { data: req.data, info: Some(info), time_ms: Some(now_ms()), ..Default::default() };
        self.gateway.hub.broker().publish(&req.channel, message).await?;
        Ok(Reply { publish: Some(PublishResult {}), ..Default::default() })
    }
}
