//! Questions asked of every live gateway (`info`, `channels`, presence):
//! what a gateway answers about itself, and how the answers of all gateways
//! are merged. The server API and client sessions both ask through here.
//!
//! Nothing is shared between gateways, so nothing goes stale: a gateway that
//! died does not answer, and its clients and channels vanish at once.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::broker::{Answer, BrokerError};
use crate::context::AppContext;
use crate::protocol::ClientInfo;

/// A survey's request, as JSON on the wire.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Question {
    Info,
    Channels,
    /// Clients subscribed to a channel on each gateway.
    Presence {
        channel: String,
    },
    /// [`GatewayStats`] for the admin web interface. Added after `info`, so
    /// an older gateway does not understand it and its empty answer is
    /// skipped (it is missing from the admin's cluster page, nothing else).
    Stats,
}

/// One gateway's entry in the `info` result (Centrifugo's node shape).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct NodeInfo {
    pub(crate) uid: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) num_clients: u64,
    pub(crate) num_users: u64,
    pub(crate) num_channels: u64,
    pub(crate) num_subs: u64,
    /// Seconds since the gateway started.
    pub(crate) uptime: u64,
}

/// One gateway's entry on the admin cluster page: its `info` entry and what
/// an operator watches besides (Centrifugo puts some of it in `info`'s
/// `metrics` and `process`; natsgate keeps `info` as it was and asks this
/// separately). Counters are totals since the gateway started; the page
/// turns two readings into rates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct GatewayStats {
    #[serde(flatten)]
    pub(crate) node: NodeInfo,
    /// Whether the gateway's broker (NATS, or the embedded one) is connected.
    pub(crate) nats_connected: bool,
    /// Resident memory of the gateway process, bytes (0 where unknown).
    pub(crate) rss_bytes: u64,
    /// Protocol messages sent to clients since start.
    pub(crate) messages_sent: u64,
    /// Protocol messages (commands) received from clients since start.
    pub(crate) messages_received: u64,
    /// Sum, in seconds, and count of delivery lags measured since start
    /// (`natsgate_publication_delivery_lag_seconds`).
    pub(crate) delivery_lag_sum: f64,
    pub(crate) delivery_lag_count: u64,
}

/// One gateway's channels and local subscriber counts.
#[derive(Serialize, Deserialize, Default)]
struct ChannelCounts {
    channels: HashMap<String, u64>,
}

/// Answers the other gateways' questions from this process's state.
pub(crate) struct Answerer(pub(crate) Arc<AppContext>);

/// Every live gateway, sorted by name then uid.
pub(crate) async fn info(app: &AppContext) -> Result<Vec<NodeInfo>, BrokerError> {
    let mut nodes: Vec<NodeInfo> =
        ask(app, &Question::Info).await?.iter().filter_map(|a| serde_json::from_slice(a).ok()).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name).then(a.uid.cmp(&b.uid)));
    Ok(nodes)
}

/// [`GatewayStats`] of every live gateway that knows the question, sorted
/// by name then uid.
pub(crate) async fn stats(app: &AppContext) -> Result<Vec<GatewayStats>, BrokerError> {
    let mut all: Vec<GatewayStats> =
        ask(app, &Question::Stats).await?.iter().filter_map(|a| serde_json::from_slice(a).ok()).collect();
    all.sort_by(|a, b| a.node.name.cmp(&b.node.name).then(a.node.uid.cmp(&b.node.uid)));
    Ok(all)
}

/// Channels with subscribers on any gateway (those `matches` keeps), with
/// their subscriber counts summed over the gateways.
pub(crate) async fn channels(
    app: &AppContext,
    matches: impl Fn(&str) -> bool,
) -> Result<HashMap<String, u64>, BrokerError> {
    let mut totals: HashMap<String, u64> = HashMap::new();
    for answer in ask(app, &Question::Channels).await? {
        let Ok(counts) = serde_json::from_slice::<ChannelCounts>(&answer) else { continue };
        for (channel, n) in counts.channels {
            if matches(&channel) {
                *totals.entry(channel).or_default() += n;
            }
        }
    }
    Ok(totals)
}

/// Presence of a channel on every live gateway: client ID -> ClientInfo.
pub(crate) async fn presence(app: &AppContext, channel: &str) -> Result<HashMap<String, ClientInfo>, BrokerError> {
    let mut all = HashMap::new();
    for answer in ask(app, &Question::Presence { channel: channel.to_string() }).await? {
        if let Ok(part) = serde_json::from_slice::<HashMap<String, ClientInfo>>(&answer) {
            all.extend(part);
        }
    }
    Ok(all)
}

/// `num_clients` and `num_users` of a presence map.
pub(crate) fn presence_stats(presence: &HashMap<String, ClientInfo>) -> (u32, u32) {
    let users: HashSet<&str> = presence.values().map(|i| i.user.as_str()).collect();
    (presence.len() as u32, users.len() as u32)
}

/// Asks every live gateway `question`; the raw answers.
async fn ask(app: &AppContext, question: &Question) -> Result<Vec<Bytes>, BrokerError> {
    // A unit or string-carrying enum always serializes.
    let request = serde_json::to_vec(question).unwrap_or_default();
    app.broker.survey(request.into()).await
}

impl Answer for Answerer {
    fn answer(&self, request: &[u8]) -> Bytes {
        let app = &self.0;
        let hub = &app.hub;
        let answer = match serde_json::from_slice::<Question>(request) {
            Ok(Question::Info) => serde_json::to_vec(&local_info(app)),
            Ok(Question::Stats) => serde_json::to_vec(&local_stats(app)),
            Ok(Question::Channels) => serde_json::to_vec(&ChannelCounts {
                channels: hub.channel_counts().into_iter().map(|(c, n)| (c, n as u64)).collect(),
            }),
            Ok(Question::Presence { channel }) => serde_json::to_vec(&hub.local_presence(&channel)),
            Err(_) => Ok(Vec::new()),
        };
        answer.map(Bytes::from).unwrap_or_default()
    }
}

/// This gateway's `info` entry.
fn local_info(app: &AppContext) -> NodeInfo {
    let hub = &app.hub;
    NodeInfo {
        uid: app.uid.clone(),
        name: app.config.name.clone(),
        version: crate::VERSION.to_string(),
        num_clients: hub.num_clients() as u64,
        num_users: hub.num_users() as u64,
        num_channels: hub.num_channels() as u64,
        num_subs: hub.num_subscriptions() as u64,
        uptime: app.started.elapsed().as_secs(),
    }
}

/// This gateway's [`GatewayStats`], read from the metrics and the kernel.
fn local_stats(app: &AppContext) -> GatewayStats {
    let totals = crate::metrics::totals();
    GatewayStats {
        node: local_info(app),
        nats_connected: app.broker.is_connected(),
        rss_bytes: rss_bytes(),
        messages_sent: totals.messages_sent,
        messages_received: totals.messages_received,
        delivery_lag_sum: totals.delivery_lag_sum,
        delivery_lag_count: totals.delivery_lag_count,
    }
}

/// Resident set size from `/proc/self/statm` (Linux; 0 elsewhere). The
/// second field counts pages; pages are 4 KiB on every platform natsgate
/// ships for (x86_64, aarch64 Linux with 4 KiB pages).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}
