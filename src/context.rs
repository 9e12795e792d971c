//! The application context: what every connection, API call and survey
//! answer of this process shares (configuration, channel rules, token
//! verifier, the hub of local clients, and the broker).

use std::sync::Arc;
use std::time::Instant;

use crate::auth::TokenVerifier;
use crate::broker::Broker;
use crate::channels::ChannelRules;
use crate::config::Config;
use crate::hub::Hub;

/// Built once at startup by [`crate::server::Server::bind`] and shared as
/// `Arc<AppContext>`; nothing in it is replaced while the process runs.
pub(crate) struct AppContext {
    pub(crate) config: Arc<Config>,
    /// Publishing, history, user commands and surveys go straight to the
    /// broker; the hub uses it only to (un)subscribe its channels.
    pub(crate) broker: Arc<dyn Broker>,
    /// This process's clients and channel subscribers.
    pub(crate) hub: Arc<Hub>,
    pub(crate) verifier: TokenVerifier,
    /// Namespaces and channel permissions.
    pub(crate) rules: ChannelRules,
    pub(crate) started: Instant,
    /// Unique per process, so `info` can tell two gateways of one name apart.
    pub(crate) uid: String,
    /// HTTP-streaming and SSE sessions, for `/emulation`.
    pub(crate) emulation: crate::transport::emulation::Sessions,
    /// Proxies to the application backend (none unless configured).
    pub(crate) proxies: crate::proxy::Proxies,
    /// Keys this gateway's connections hold in presence maps (see
    /// [`crate::map::presence`]).
    pub(crate) map_presence: crate::map::presence::Registry,
    /// Shared poll subscriptions: tracked keys and their pollers (issue #20).
    pub(crate) shared_poll: Arc<crate::shared_poll::SharedPoll>,
}

impl AppContext {
    pub(crate) fn new(
        config: Arc<Config>,
        broker: Arc<dyn Broker>,
        verifier: TokenVerifier,
        rules: ChannelRules,
    ) -> Arc<Self> {
        // Validation built them once already (`Config::load`), so an error
        // here means a configuration that skipped validation (unit tests).
        let proxies = crate::proxy::Proxies::from_config(&config).unwrap_or_else(|e| {
            tracing::error!("proxy configuration: {e}");
            crate::proxy::Proxies::default()
        });
        let shared_poll = crate::shared_poll::SharedPoll::new(broker.clone(), config.shared_poll_concurrency_limit);
        Arc::new(AppContext {
            shared_poll,
            proxies,
            config,
            hub: crate::hub::Hub::new(broker.clone()),
            broker,
            verifier,
            rules,
            started: Instant::now(),
            uid: uuid::Uuid::new_v4().to_string(),
            emulation: Default::default(),
            map_presence: Default::default(),
        })
    }
}
