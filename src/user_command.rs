//! User commands: server API calls that act on one user's connections
//! (subscribe, unsubscribe, disconnect, refresh), carried between gateways.
//!
//! The API on any gateway publishes these to the user's subject
//! (`<prefix>.user.<bucket>.<user>`); every gateway with connections of that
//! user receives them and hands them to the matching sessions' queues. The
//! hub also queues an `Unsubscribe` with `insufficient_state` itself when it
//! sees a publication gap.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserCommand {
    /// Subscribe the user's connections to a channel.
    Subscribe {
        channel: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        client: String,
    },
    /// Unsubscribe the user's connections from a channel.
    Unsubscribe {
        channel: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        client: String,
        /// Set when the gateway itself unsubscribes a positioned client that
        /// missed publications (2500: the SDK resubscribes and recovers).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        insufficient_state: bool,
    },
    /// Close the user's connections (except whitelisted client IDs).
    Disconnect {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        client: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        whitelist: Vec<String>,
        code: u16,
        reason: String,
    },
    /// Change the expiry of the user's connections.
    Refresh {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        client: String,
        /// Expire the connection now: it closes with 3005.
        #[serde(default)]
        expired: bool,
        /// New expiry in Unix seconds; 0 or absent: never expires.
        #[serde(default)]
        expire_at: i64,
    },
}

impl UserCommand {
    /// Whether this command applies to a connection with `client_id`.
    pub fn targets(&self, client_id: &str) -> bool {
        match self {
            UserCommand::Subscribe { client, .. }
            | UserCommand::Unsubscribe { client, .. }
            | UserCommand::Refresh { client, .. } => client.is_empty() || client == client_id,
            UserCommand::Disconnect { client, whitelist, .. } => {
                (client.is_empty() || client == client_id) && !whitelist.iter().any(|w| w == client_id)
            }
        }
    }
}
