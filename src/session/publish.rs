//! `publish` from a client into a channel.

use super::error::CommandError;
use super::Session;
use crate::broker::{now_ms, Message};
use crate::channels::Access;
use crate::protocol::codes::Disconnect;
use crate::protocol::{PublishRequest, PublishResult, Reply};

impl Session {
    pub(super) async fn publish(&mut self, req: PublishRequest) -> Result<Reply, CommandError> {
        self.check_access(&req.channel, Access::Publish)?;
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        let info = conn.client_info(&req.channel);
        let message = Message { data: req.data, info: Some(info), time_ms: Some(now_ms()), ..Default::default() };
        self.app.broker.publish(&req.channel, message).await?;
        Ok(Reply { publish: Some(PublishResult {}), ..Default::default() })
    }
}
