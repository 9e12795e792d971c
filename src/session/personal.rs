//! The user's personal channel (`user_subscribe_to_personal`): its name, and
//! the single-connection mode that closes a user's other connections on
//! every gateway (Centrifugo v6 `internal/client/handler.go`, OnConnecting).

use super::error::CommandError;
use super::Session;
use crate::config::Config;
use crate::protocol::codes::Disconnect;
use crate::user_command::UserCommand;

/// The personal channel of `user`, when the feature is on and the user is
/// not anonymous: `<namespace>:#<user>`, or `#<user>` without a namespace
/// (Centrifugo's `PersonalChannel`, with its default boundaries `:` and `#`).
pub(super) fn personal_channel(config: &Config, user: &str) -> Option<String> {
    if !config.user_subscribe_to_personal || user.is_empty() {
        return None;
    }
    Some(match config.user_personal_channel_namespace.as_str() {
        "" => format!("#{user}"),
        namespace => format!("{namespace}:#{user}"),
    })
}

impl Session {
    /// Single-connection mode: before `client_id` of `user` is registered,
    /// every other connection of the user, on any gateway, is closed with
    /// 3504 `connection limit`, through the user command the API's
    /// `disconnect` sends (whitelisting the new client).
    ///
    /// Centrifugo first asks presence of the personal channel and
    /// disconnects only if someone is there; every connection of the user
    /// is in that channel, so sending the command unconditionally closes the
    /// same connections without a presence survey per connect (a command to
    /// a user with no other connection reaches no one). A failure to send
    /// refuses the connect with 3004, as Centrifugo's `DisconnectServerError`.
    pub(super) async fn close_other_connections(&self, user: &str, client_id: &str) -> Result<(), CommandError> {
        let config = &self.app.config;
        if !config.user_subscribe_to_personal || !config.user_personal_single_connection || user.is_empty() {
            return Ok(());
        }
        let limit = Disconnect::CONNECTION_LIMIT;
        let command = UserCommand::Disconnect {
            client: String::new(),
            whitelist: vec![client_id.to_string()],
            code: limit.code,
            reason: limit.reason.into_owned(),
        };
        let payload = serde_json::to_vec(&command).map_err(|_| Disconnect::SERVER_ERROR)?;
        if let Err(e) = self.app.broker.publish_user_command(user, payload.into()).await {
            tracing::warn!("cannot close the user's other connections: {e}");
            return Err(Disconnect::SERVER_ERROR.into());
        }
        Ok(())
    }
}
