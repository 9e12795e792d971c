//! Builds a gateway from config and serves it until shutdown.

use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use warp::Filter;

use crate::api;
use crate::auth::TokenVerifier;
use crate::broker::memory::MemoryBroker;
use crate::broker::nats::connect::NatsConnect;
use crate::broker::subject::SubjectMap;
use crate::broker::{Broker, HistoryConfig};
use crate::config::Config;
use crate::context::AppContext;
use crate::protocol::codes::Disconnect;
use crate::shutdown::Shutdown;
use crate::survey::Answerer;
use crate::transport::{listener, websocket};

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot connect to NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Grpc(#[from] api::grpc::GrpcError),
    /// A setting that parses but cannot be used: the NATS URL, an NKey
    /// seed, a TLS or credentials file (a configuration error).
    #[error("{0}")]
    BadSetting(String),
}

/// A gateway bound to its port, ready to run.
pub(crate) struct Server {
    app: Arc<AppContext>,
    listener: TcpListener,
    internal_listener: Option<TcpListener>,
    /// The GRPC API and its listener, when `NATSGATE_GRPC_API` is on.
    grpc: Option<(api::grpc::GrpcApi, TcpListener)>,
    /// TLS of the client port and of the internal port (`NATSGATE_TLS`).
    tls: Option<TlsAcceptor>,
    internal_tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
    /// Keeps this gateway answering `info` and `channels` surveys.
    _surveys: crate::broker::SubscriptionGuard,
    /// Keeps this gateway answering emulation requests for its sessions.
    _emulation: Option<crate::broker::SubscriptionGuard>,
    /// The uni_grpc transport's listener, when `NATSGATE_UNI_GRPC` is on.
    uni_grpc: Option<TcpListener>,
}

impl Server {
    /// Validates the configuration, opens the ports, then reaches the
    /// broker. With NATS it retries until NATS answers, the ports meanwhile
    /// answering `/health` 200 and `/ready` 503 ([`crate::startup`]);
    /// `Ok(None)` when `stop` is cancelled before that.
    pub(crate) async fn bind(config: Config, stop: &CancellationToken) -> Result<Option<Server>, StartError> {
        let config = Arc::new(config);
        let verifier = TokenVerifier::from_config(&config)?;
        let rules = config.rules.clone();
        let history = HistoryConfig::from_rules(&rules, config.history_meta_ttl);
        let addr = config.listen_addr();
        let listener = listen(addr).map_err(|source| StartError::Listen { addr, source })?;
        let internal_listener = match config.internal_port {
            Some(port) => {
                let addr = std::net::SocketAddr::new(addr.ip(), port);
                Some(listen(addr).map_err(|source| StartError::Listen { addr, source })?)
            }
            None => None,
        };
        let (tls, internal_tls) = crate::transport::tls::acceptors(&config).map_err(StartError::BadSetting)?;
        let nats = NatsConnect::from_config(&config).map_err(StartError::BadSetting)?;
        let broker: Arc<dyn Broker> = match &nats {
            Some(nats) => {
                tracing::info!(nats = ?nats, "connecting to NATS");
                let listeners: Vec<(&TcpListener, Option<TlsAcceptor>)> = std::iter::once((&listener, tls.clone()))
                    .chain(internal_listener.as_ref().map(|l| (l, internal_tls.clone())))
                    .collect();
                let subjects = SubjectMap::new(&config.nats_prefix);
                match crate::startup::connect_nats(nats, &subjects, &history, &listeners, stop).await {
                    Ok(Some(broker)) => Arc::new(broker),
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(StartError::BadSetting(e)),
                }
            }
            None => Arc::new(MemoryBroker::new(history)),
        };
        let app = AppContext::new(config.clone(), broker, verifier, rules);
        crate::map::presence::start(&app);
        let surveys = app
            .broker
            .answer_surveys(Arc::new(Answerer(app.clone())))
            .await
            .map_err(|e| StartError::Nats(e.to_string()))?;
        // Emulation requests routed here by other gateways, on this
        // gateway's own subject.
        let emulation = if crate::transport::emulation::enabled(&app) {
            let answerer = Arc::new(crate::transport::emulation::Answerer(app.clone()));
            Some(app.broker.answer_node(&app.uid, answerer).await.map_err(|e| StartError::Nats(e.to_string()))?)
        } else {
            None
        };
        if config.api_insecure {
            tracing::warn!("NATSGATE_API_INSECURE is on: the HTTP API accepts requests without a key");
        } else if config.api_key.as_deref().is_none_or(str::is_empty) {
            tracing::warn!("NATSGATE_API_KEY is not set: the HTTP API refuses every request");
        }
        let grpc = match api::grpc::enabled(&config) {
            Some(addr) => {
                let grpc_listener = listen(addr).map_err(|source| StartError::Listen { addr, source })?;
                tracing::info!("serving the GRPC API on {addr}");
                Some((api::grpc::GrpcApi::new(app.clone())?, grpc_listener))
            }
            None => None,
        };
        let uni_grpc = match crate::transport::uni_grpc::enabled(&config) {
            Some(addr) => {
                tracing::info!("serving uni_grpc on {addr}");
                Some(listen(addr).map_err(|source| StartError::Listen { addr, source })?)
            }
            None => None,
        };
        Ok(Some(Server {
            app,
            listener,
            internal_listener,
            grpc,
            tls,
            internal_tls,
            shutdown: Shutdown::new(),
            _surveys: surveys,
            _emulation: emulation,
            uni_grpc,
        }))
    }

    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves until `stop` resolves, then drains: readiness turns false, no
    /// new connections are accepted, clients are closed with 3001 spread over
    /// the drain period, and the rest at its end; waits for them at most the
    /// shutdown timeout. The GRPC API stops accepting when draining begins
    /// and lets calls in flight finish within the same timeout.
    pub(crate) async fn run(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let Server {
            app,
            listener,
            internal_listener,
            grpc,
            tls,
            internal_tls,
            shutdown,
            _surveys,
            _emulation,
            uni_grpc,
        } = self;
        if let Some(uni_listener) = uni_grpc {
            let (app, shutdown) = (app.clone(), shutdown.clone());
            let draining = shutdown.clone();
            let stop = async move { draining.draining().await };
            tokio::spawn(crate::transport::uni_grpc::serve(app, shutdown, uni_listener, stop));
        }
        let grpc = grpc.map(|(grpc, grpc_listener)| {
            let draining = shutdown.clone();
            tokio::spawn(async move { grpc.serve(grpc_listener, async move { draining.draining().await }).await })
        });
        // The admin interface on the client port, or on the internal one.
        let admin = crate::admin::Admin::from_config(&app);
        let on_client_port = crate::admin::Admin::on_client_port(&app.config);
        let limit = app.config.api_max_body_size;
        let admin_internal = crate::admin::routes(admin.clone().filter(|_| !on_client_port), limit);
        let admin_client = crate::admin::routes(admin.filter(|_| on_client_port), limit);
        let ops = crate::ops::routes(app.clone(), shutdown.clone()).or(admin_internal);
        let clients = websocket::route(app.clone(), shutdown.clone())
            .or(crate::transport::routes(app.clone(), shutdown.clone()))
            .or(crate::transport::sockjs::route(app.clone(), shutdown.clone()))
            .or(api::routes(app.clone()))
            .or(admin_client);

        let draining = shutdown.clone();
        let stop_accepting = async move {
            stop.await;
            draining.begin_drain();
        };
        let websocket = Some((app.clone(), shutdown.clone()));
        match internal_listener {
            Some(internal) => {
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                // The internal port keeps answering /ready (false) while draining.
                let ops_task = tokio::spawn(listener::serve(
                    internal,
                    ops.recover(api::recover),
                    None,
                    internal_tls,
                    async move {
                        let _ = done_rx.await;
                    },
                ));
                listener::serve(listener, clients.recover(api::recover), websocket, tls, stop_accepting).await;
                drain(&app, &shutdown, grpc).await;
                let _ = done_tx.send(());
                let _ = ops_task.await;
            }
            None => {
                listener::serve(listener, clients.or(ops).recover(api::recover), websocket, tls, stop_accepting).await;
                drain(&app, &shutdown, grpc).await;
            }
        }
    }
}

/// Closes clients with 3001, one by one over the drain period, then the rest;
/// waits for them and for the GRPC API's calls in flight.
async fn drain(app: &AppContext, shutdown: &Shutdown, grpc: Option<tokio::task::JoinHandle<()>>) {
    let config = &app.config;
    let started = tokio::time::Instant::now();
    let clients = app.hub.all_clients();
    tracing::info!("draining {} connections over {:?}", clients.len(), config.drain_period);
    let n = clients.len().max(1) as u32;
    for (i, client) in clients.iter().enumerate() {
        tokio::time::sleep_until(started + config.drain_period * i as u32 / n).await;
        client.outbox.close(Disconnect::SHUTDOWN);
    }
    shutdown.force();
    let left = config.shutdown_timeout.saturating_sub(started.elapsed());
    if !shutdown.wait(left).await {
        tracing::warn!("shutdown timeout reached with connections still open");
    }
    if let Some(grpc) = grpc {
        let left = config.shutdown_timeout.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, grpc).await.is_err() {
            tracing::warn!("shutdown timeout reached with GRPC API calls still in flight");
        }
    }
    // Give the OS a moment to flush close frames before the process exits.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Pending connections the kernel queues before we accept them. The default
/// (128) makes reconnect waves hit SYN retransmits (1 s stalls); nats-server
/// uses 4096 too.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    // Accepted sockets inherit it on Linux, which saves a syscall per
    // connection: a push written while the client's ACK of the previous
    // one is pending must not wait for that ACK (Nagle).
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn termination_signal() {
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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = super::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is inherited from the listener");
    }
}
