//! The time between opening the ports and reaching NATS: the gateway answers
//! `/health` (200) and `/ready` (503) while it retries NATS, and stops at once
//! on SIGTERM/SIGINT.
//!
//! Why: in Kubernetes the gateway often starts before NATS (both in one
//! release, or NATS restarting). Exiting would put the pod in a restart loop
//! with growing back-off; an unready pod that stays alive instead joins the
//! Service as soon as NATS answers.

use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::broker::nats::connect::NatsConnect;
use crate::broker::nats::NatsBroker;
use crate::broker::subject::SubjectMap;
use crate::broker::HistoryConfig;
use crate::transport::listener;

/// First wait between two attempts; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest wait between two attempts, so a gateway is ready at most this long
/// after NATS comes up.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Connects to NATS (and sets up the JetStream streams), retrying until it
/// succeeds, while `listeners` answer `/health` 200, `/ready` 503 and every
/// other request 503. `Ok(None)` if `stop` is cancelled first; the listeners
/// are left open for the gateway either way. Each listener comes with its
/// TLS acceptor, if it serves TLS. Connection errors never hold secrets
/// ([`crate::broker::nats::connect`]).
pub(crate) async fn connect_nats(
    connect: &NatsConnect,
    subjects: &SubjectMap,
    history: &HistoryConfig,
    listeners: &[(&TcpListener, Option<TlsAcceptor>)],
    stop: &CancellationToken,
) -> Result<Option<NatsBroker>, String> {
    let connected = CancellationToken::new();
    let serving = futures_util::future::join_all(listeners.iter().map(|(l, tls)| {
        listener::serve(*l, crate::ops::connecting_routes(), None, tls.clone(), connected.cancelled())
    }));
    let connecting = async {
        let mut delay = RETRY_FIRST;
        let mut attempts = 0u32;
        let broker = loop {
            attempts += 1;
            match NatsBroker::connect(connect, subjects.clone(), history.clone()).await {
                Ok(broker) => break broker,
                Err(e) => {
                    tracing::warn!(
                        "NATS not reachable ({e}); attempt {attempts}, retrying in {delay:?}. \
                         /health answers 200 and /ready 503 until then"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        };
        if attempts > 1 {
            tracing::info!("NATS reached after {attempts} attempts");
        }
        broker
    };
    let outcome = async {
        let outcome = tokio::select! {
            broker = connecting => Some(broker),
            _ = stop.cancelled() => None,
        };
        connected.cancel();
        outcome
    };
    let (outcome, _) = tokio::join!(outcome, serving);
    Ok(outcome)
}
