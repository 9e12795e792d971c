//! User commands applied to a session: subscribe, unsubscribe, disconnect and
//! refresh commands from the server API, delivered through the hub.

use super::Session;
use crate::protocol::codes::{unsubscribe, Disconnect};
use crate::protocol::{Push, Refresh, Reply, Subscribe, Unsubscribe};
use crate::user_command::UserCommand;

impl Session {
    /// Applies one user command; `Err` closes the connection.
    pub(crate) async fn handle_user_command(&mut self, command: UserCommand) -> Result<(), Disconnect> {
        if self.conn.is_none() {
            return Ok(());
        }
        match command {
            UserCommand::Subscribe { channel, .. } => {
                let already = self.conn.as_ref().is_some_and(|c| c.channels.contains_key(&channel));
                if already {
                    return Ok(());
                }
                if self.conn.as_ref().is_some_and(|c| c.channels.len() >= self.app.config.client_channel_limit) {
                    return Err(Disconnect::CHANNEL_LIMIT);
                }
                let state = super::SubState { server_side: true, ..Default::default() };
                if self.join_channel(&channel, state).await.is_err() {
                    tracing::warn!(channel, "server-side subscribe failed");
                    return Ok(());
                }
                self.push(channel, |p| p.subscribe = Some(Subscribe::default()));
                self.release_subscriptions();
            }
            UserCommand::Unsubscribe { channel, insufficient_state, .. } => {
                let server_side =
                    self.conn.as_ref().and_then(|c| c.channels.get(&channel)).is_some_and(|s| s.server_side);
                if insufficient_state && server_side {
                    // Server-side subscriptions cannot resubscribe on their own.
                    return Err(Disconnect::INSUFFICIENT_STATE);
                }
                if self.leave_channel(&channel) {
                    let (code, reason) =
                        if insufficient_state { unsubscribe::INSUFFICIENT_STATE } else { unsubscribe::SERVER };
                    self.push(channel, |p| p.unsubscribe = Some(Unsubscribe { code, reason: reason.to_string() }));
                }
            }
            UserCommand::Disconnect { code, reason, .. } => return Err(Disconnect::custom(code, &reason)),
            UserCommand::Refresh { expired, expire_at, .. } => {
                // The application says the connection is over: close at once, as Centrifugo does.
                if expired {
                    return Err(Disconnect::EXPIRED);
                }
                let now = super::now_unix();
                let at = (expire_at > 0).then_some(expire_at);
                if let Some(conn) = self.conn.as_mut() {
                    conn.expire_at = at;
                }
                let (expires, ttl) = match at {
                    Some(at) => (true, (at - now).clamp(0, u32::MAX as i64) as u32),
                    None => (false, 0),
                };
                self.push(String::new(), |p| p.refresh = Some(Refresh { expires, ttl }));
            }
        }
        Ok(())
    }

    pub(super) fn push(&self, channel: String, fill: impl FnOnce(&mut Push)) {
        let mut push = Push { channel, ..Default::default() };
        fill(&mut push);
        let reply = Reply { push: Some(push), ..Default::default() };
        self.outbox.push(self.encode(&reply));
    }
}
