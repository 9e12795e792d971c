//! What a gateway answers when another asks about its state (`info`,
//! `channels`), and how answers from all gateways are merged.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

use crate::broker::{Answer, BrokerError};
use crate::gateway::{Gateway, VERSION};
use crate::protocol::ClientInfo;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    Info,
    Channels,
    /// Clients subscribed to a channel on each gateway.
    Presence {
        channel: String,
    },
}

/// One gateway's entry in the `info` result (Centrifugo's node shape).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub uid: String,
    pub name: String,
    pub version: String,
    pub num_clients: u64,
    pub num_users: u64,
    pub num_channels: u64,
    pub num_subs: u64,
    pub uptime: u64,
}

/// One gateway's channels and local subscriber counts.
#[derive(Serialize, Deserialize, Default)]
pub struct ChannelCounts {
    pub channels: HashMap<String, u64>,
}

pub struct Answerer(pub Arc<Gateway>);

/// Presence of a channel on every live gateway: gateways that died do not
/// answer, so their clients vanish from presence at once.
pub async fn presence(gateway: &Gateway, channel: &str) -> Result<HashMap<String, ClientInfo>, BrokerError> {
    let mut all = HashMap::new();
    for answer in ask(gateway, &Question::Presence { channel: channel.to_string() }).await? {
        if let Ok(part) = serde_json::from_slice::<HashMap<String, ClientInfo>>(&answer) {
            all.extend(part);
        }
    }
    Ok(all)
}

/// Asks every live gateway `question`; the raw answers.
pub async fn ask(gateway: &Gateway, question: &Question) -> Result<Vec<Bytes>, BrokerError> {
    // A unit or string-carrying enum always serializes.
    let request = serde_json::to_vec(question).unwrap_or_default();
    gateway.hub.broker().survey(request.into()).await
}

/// `num_clients` and `num_users` of a presence map.
pub fn presence_stats(presence: &HashMap<String, ClientInfo>) -> (u32, u32) {
    let users: std::collections::HashSet<&str> = presence.values().map(|i| i.user.as_str()).collect();
    (presence.len() as u32, users.len() as u32)
}

impl Answer for Answerer {
    fn answer(&self, request: &[u8]) -> Bytes {
        let gateway = &self.0;
        let hub = &gateway.hub;
        let answer = match serde_json::from_slice::<Question>(request) {
            Ok(Question::Info) => serde_json::to_vec(&NodeInfo {
                uid: gateway.uid.clone(),
                name: gateway.config.name.clone(),
                version: VERSION.to_string(),
                num_clients: hub.num_clients() as u64,
                num_users: hub.num_users() as u64,
                num_channels: hub.num_channels() as u64,
                num_subs: hub.num_subscriptions() as u64,
                uptime: gateway.started.elapsed().as_secs(),
            }),
            Ok(Question::Channels) => serde_json::to_vec(&ChannelCounts {
                channels: hub.channel_counts().into_iter().map(|(c, n)| (c, n as u64)).collect(),
            }),
            Ok(Question::Presence { channel }) => serde_json::to_vec(&hub.local_presence(&channel)),
            Err(_) => Ok(Vec::new()),
        };
        answer.map(Bytes::from).unwrap_or_default()
    }
}
