//! Builds a gateway from config and serves it until shutdown.

use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use warp::Filter;

use crate::api;
use crate::api::survey::Answerer;
use crate::auth::TokenVerifier;
use crate::broker::memory::MemoryBroker;
use crate::broker::nats::NatsBroker;
use crate::broker::subject::SubjectMap;
use crate::broker::Broker;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::transport::websocket;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot connect to NATS: {0}")]
    Nats(String),
}

/// A gateway bound to its port, ready to run.
pub struct Server {
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: Shutdown,
    /// Keeps this gateway answering `info` and `channels` surveys.
    _surveys: crate::broker::SubscriptionGuard,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        let verifier = TokenVerifier::from_config(&config)?;
        let broker: Arc<dyn Broker> = match &config.nats_url {
            Some(url) => Arc::new(
                NatsBroker::connect(url, SubjectMap::new(&config.nats_prefix))
                    .await
                    .map_err(|e| StartError::Nats(e.to_string()))?,
            ),
            None => Arc::new(MemoryBroker::new()),
        };
        let hub = Hub::new(broker);
        let gateway = Gateway::new(config.clone(), hub.clone(), verifier);
        let surveys = hub
            .broker()
            .answer_surveys(Arc::new(Answerer(gateway.clone())))
            .await
            .map_err(|e| StartError::Nats(e.to_string()))?;
        if config.api_insecure {
            tracing::warn!("NATSGATE_API_INSECURE is on: the HTTP API accepts requests without a key");
        } else if config.api_key.as_deref().is_none_or(str::is_empty) {
            tracing::warn!("NATSGATE_API_KEY is not set: the HTTP API refuses every request");
        }
        let addr = config.listen_addr();
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
        Ok(Server { gateway, listener, shutdown: Shutdown::new(), _surveys: surveys })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves until `stop` resolves, then disconnects every client with
    /// 3001 and waits for them, at most the configured shutdown timeout.
    pub async fn run(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let Server { gateway, listener, shutdown, _surveys } = self;
        let health = warp::path!("health").and(warp::get()).map(|| warp::reply::json(&serde_json::json!({})));
        let routes = websocket::route(gateway.clone(), shutdown.clone())
            .or(health)
            .or(api::routes(gateway.clone()))
            .recover(api::recover);

        let draining = shutdown.clone();
        let server = warp::serve(routes).incoming(listener).graceful(async move {
            stop.await;
            draining.begin();
        });
        server.run().await;
        tracing::info!("stopped accepting; waiting for {} connections to close", gateway.hub.num_clients());
        let limit = gateway.config.shutdown_timeout;
        if !shutdown.wait(limit).await {
            tracing::warn!("shutdown timeout reached with connections still open");
        }
        // Give the OS a moment to flush close frames before the process exits.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
