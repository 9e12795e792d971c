//! `publish` from a client into a channel.

use super::error::CommandError;
use super::Session;
use crate::broker::{now_ms, Message};
use crate::channels::Access;
use crate::protocol::codes::Disconnect;
use crate::protocol::{PublishRequest, PublishResult, Reply};

impl Session {
    pub(super) async fn publish(&mut self, req: PublishRequest) -> Result<Reply, CommandError> {
        if req.r#type != 0 || self.is_map_channel(&req.channel) {
            return self.map_publish(req).await;
        }
        // A namespace with a publish proxy lets the backend decide instead
        // of the permission options (Centrifugo's OnPublish), and publish
        // what it answers.
        let proxy = self.publish_proxy_of(&req.channel)?;
        let (data, skip_history) = match proxy {
            Some(proxy) => self.publish_proxy(&proxy, &req.channel, &req.data).await?,
            None => {
                self.check_access(&req.channel, Access::Publish)?;
                (req.data, false)
            }
        };
        let conn = self.conn.as_ref().ok_or(Disconnect::BAD_REQUEST)?;
        let info = conn.client_info(&req.channel);
        let delta = self.app.rules.resolve(&req.channel)?.options.delta_publish;
        let message =
            Message { data, info: Some(info), time_ms: Some(now_ms()), skip_history, delta, ..Default::default() };
        self.app.broker.publish(&req.channel, message).await?;
        Ok(Reply { publish: Some(PublishResult {}), ..Default::default() })
    }
}

impl Session {
    /// The publish proxy of the channel's namespace, if it has one; checks
    /// the channel exists and its name is valid first.
    fn publish_proxy_of(&self, channel: &str) -> Result<Option<std::sync::Arc<crate::proxy::Proxy>>, CommandError> {
        if channel.is_empty() {
            return Err(Disconnect::BAD_REQUEST.into());
        }
        let resolved = self.app.rules.resolve(channel)?;
        Ok(self.app.proxies.publish_for(resolved.options, self.app.config.granular_proxy_mode))
    }
}
