//! What every connection of this gateway shares: config, hub, token verifier.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::TokenVerifier;
use crate::channels::ChannelRules;
use crate::config::Config;
use crate::hub::Hub;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Gateway {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub verifier: TokenVerifier,
    /// Namespaces and channel permissions.
    pub rules: ChannelRules,
    pub started: Instant,
    /// Unique per process, so `info` can tell two gateways of one name apart.
    pub uid: String,
}

impl Gateway {
    pub fn new(config: Arc<Config>, hub: Arc<Hub>, verifier: TokenVerifier, rules: ChannelRules) -> Arc<Self> {
        Arc::new(Gateway {
            config,
            hub,
            verifier,
            rules,
            started: Instant::now(),
            uid: uuid::Uuid::new_v4().to_string(),
        })
    }
}
