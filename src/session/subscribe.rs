//! `subscribe` and `unsubscribe`, and the channel checks they share.

use super::error::CommandError;
use super::Session;
use crate::protocol::codes::ErrorCode;
use crate::protocol::{Reply, SubscribeRequest, SubscribeResult, UnsubscribeRequest, UnsubscribeResult};

/// Channels starting with this need a subscription token.
pub const PRIVATE_PREFIX: char = '$';

impl Session {
    pub(super) async fn subscribe(&mut self, req: SubscribeRequest) -> Result<Reply, CommandError> {
        let channel = req.channel;
        self.check_channel_name(&channel)?;
        let config = self.gateway.config.clone();
        let conn = self.conn.as_ref().ok_or(ErrorCode::UNAUTHORIZED)?;
        if conn.channels.contains(&channel) {
            return Err(ErrorCode::ALREADY_SUBSCRIBED.into());
        }
        if conn.channels.len() >= config.client_channel_limit {
            return Err(ErrorCode::LIMIT_EXCEEDED.into());
        }
        // Private channels need subscription tokens, which come with namespaces.
        if channel.starts_with(PRIVATE_PREFIX) || !req.token.is_empty() {
            return Err(ErrorCode::PERMISSION_DENIED.into());
        }
        let anonymous = conn.handle.user.is_empty();
        if !config.allow_subscribe_for_client || (anonymous && !config.allow_subscribe_for_anonymous) {
            return Err(ErrorCode::PERMISSION_DENIED.into());
        }
        self.join_channel(&channel).await?;
        Ok(Reply { subscribe: Some(SubscribeResult::default()), ..Default::default() })
    }

    pub(super) fn unsubscribe(&mut self, req: UnsubscribeRequest) -> Reply {
        self.leave_channel(&req.channel);
        Reply { unsubscribe: Some(UnsubscribeResult {}), ..Default::default() }
    }

    /// Subscribes the connection through the hub and records it.
    pub(super) async fn join_channel(&mut self, channel: &str) -> Result<(), CommandError> {
        let conn = self.conn.as_mut().ok_or(ErrorCode::UNAUTHORIZED)?;
        self.gateway.hub.subscribe(channel, &conn.handle).await?;
        conn.channels.insert(channel.to_string());
        Ok(())
    }

    /// Unsubscribes the connection from a channel, if it was subscribed.
    pub(crate) fn leave_channel(&mut self, channel: &str) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        if conn.channels.remove(channel) {
            self.gateway.hub.unsubscribe(channel, conn.handle.key);
            return true;
        }
        false
    }

    pub(super) fn check_channel_name(&self, channel: &str) -> Result<(), CommandError> {
        if channel.is_empty() || channel.len() > self.gateway.config.channel_max_length {
            return Err(ErrorCode::BAD_REQUEST.into());
        }
        Ok(())
    }
}
