//! Prometheus metrics, typed: call sites use these fields and never format
//! metric names. Gauges that mirror hub state are set at scrape time from a
//! [`Gauges`] reading the caller takes, so they are exact and cost nothing on
//! the hot path. A leaf: other modules write here, it reads none of them.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;

/// The connections gauge; autoscaling (HPA, KEDA) targets this name.
pub(crate) const CONNECTIONS: &str = "natsgate_client_connections";

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: IntGauge,
    pub(crate) users: IntGauge,
    pub(crate) subscriptions: IntGauge,
    pub(crate) channels: IntGauge,
    pub(crate) messages_sent: IntCounterVec,
    pub(crate) messages_received: IntCounterVec,
    pub(crate) command_duration: HistogramVec,
    pub(crate) api_command_duration: HistogramVec,
    pub(crate) disconnects: IntCounterVec,
    pub(crate) slow_disconnects: IntCounter,
    pub(crate) nats_connected: IntGauge,
    pub(crate) nats_reconnects: IntCounter,
    pub(crate) dropped_publications: IntCounterVec,
    pub(crate) delivery_lag: Histogram,
    /// Proxy calls to the application backend, by event (`crate::proxy`).
    pub(crate) proxy_duration: HistogramVec,
    pub(crate) proxy_errors: IntCounterVec,
}

fn new_metrics() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
        let g = IntGauge::new(name, help)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let counter_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let histogram_vec = |name: &str, help: &str| -> Result<HistogramVec, prometheus::Error> {
        let buckets = vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
        let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["method"])?;
        registry.register(Box::new(h.clone()))?;
        Ok(h)
    };
    let slow_disconnects = IntCounter::new(
        "natsgate_client_slow_disconnects_total",
        "Clients disconnected because their outbound queue overflowed (3008).",
    )?;
    registry.register(Box::new(slow_disconnects.clone()))?;
    let nats_reconnects = IntCounter::new("natsgate_nats_reconnects_total", "Reconnections to NATS.")?;
    registry.register(Box::new(nats_reconnects.clone()))?;
    let delivery_lag = Histogram::with_opts(
        HistogramOpts::new(
            "natsgate_publication_delivery_lag_seconds",
            "Time from publish (API or client) to the queueing of the publication for local subscribers.",
        )
        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0]),
    )?;
    registry.register(Box::new(delivery_lag.clone()))?;
    Ok(Metrics {
        connections: gauge(CONNECTIONS, "Client connections on this gateway.")?,
        users: gauge("natsgate_client_users", "Distinct users connected to this gateway.")?,
        subscriptions: gauge("natsgate_client_subscriptions", "Channel subscriptions of clients on this gateway.")?,
        channels: gauge("natsgate_channels", "Channels with at least one subscriber on this gateway.")?,
        messages_sent: counter_vec(
            "natsgate_transport_messages_sent_total",
            "Protocol messages sent to clients.",
            &["transport"],
        )?,
        messages_received: counter_vec(
            "natsgate_transport_messages_received_total",
            "Protocol messages (commands) received from clients.",
            &["transport"],
        )?,
        command_duration: histogram_vec(
            "natsgate_client_command_duration_seconds",
            "Time to handle a client command, by method.",
        )?,
        api_command_duration: histogram_vec(
            "natsgate_api_command_duration_seconds",
            "Time to handle a server API command, by method.",
        )?,
        disconnects: counter_vec("natsgate_client_disconnects_total", "Client disconnections by code.", &["code"])?,
        slow_disconnects,
        nats_connected: gauge("natsgate_nats_connected", "1 when the broker is connected, else 0.")?,
        nats_reconnects,
        dropped_publications: counter_vec(
            "natsgate_publications_dropped_total",
            "Publications not delivered to some clients, by reason.",
            &["reason"],
        )?,
        delivery_lag,
        proxy_duration: histogram_vec(
            "natsgate_proxy_duration_seconds",
            "Time of proxy calls to the application backend, by event (label `method`).",
        )?,
        proxy_errors: counter_vec(
            "natsgate_proxy_errors_total",
            "Proxy calls that got no answer (timeout, unreachable, bad status or body), by event.",
            &["method"],
        )?,
        registry,
    })
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| new_metrics().expect("metric definitions are valid"));

/// The process-wide metrics.
pub(crate) fn metrics() -> &'static Metrics {
    &METRICS
}

/// The gauges that mirror this gateway's state, read at scrape time.
pub(crate) struct Gauges {
    pub(crate) connections: usize,
    pub(crate) users: usize,
    pub(crate) subscriptions: usize,
    pub(crate) channels: usize,
    pub(crate) broker_connected: bool,
}

/// Renders every metric in the Prometheus text format, with the gauges
/// set from `gauges`.
pub(crate) fn render(gauges: &Gauges) -> String {
    let m = metrics();
    m.connections.set(gauges.connections as i64);
    m.users.set(gauges.users as i64);
    m.subscriptions.set(gauges.subscriptions as i64);
    m.channels.set(gauges.channels as i64);
    m.nats_connected.set(gauges.broker_connected as i64);
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::warn!("cannot encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Totals since start that the admin cluster page turns into rates.
pub(crate) struct Totals {
    pub(crate) messages_sent: u64,
    pub(crate) messages_received: u64,
    pub(crate) delivery_lag_sum: f64,
    pub(crate) delivery_lag_count: u64,
}

/// The current [`Totals`] (every transport label summed).
pub(crate) fn totals() -> Totals {
    use prometheus::core::Collector;
    let sum = |counter: &IntCounterVec| -> u64 {
        counter
            .collect()
            .iter()
            .flat_map(|family| family.get_metric().iter().map(|m| m.get_counter().get_value() as u64))
            .sum()
    };
    let m = metrics();
    Totals {
        messages_sent: sum(&m.messages_sent),
        messages_received: sum(&m.messages_received),
        delivery_lag_sum: m.delivery_lag.get_sample_sum(),
        delivery_lag_count: m.delivery_lag.get_sample_count(),
    }
}

/// Known method names for latency labels; anything else is "unknown", so a
/// client cannot grow the label set.
pub(crate) fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "connect",
        "subscribe",
        "unsubscribe",
        "publish",
        "presence",
        "presence_stats",
        "history",
        "ping",
        "send",
        "rpc",
        "refresh",
        "sub_refresh",
        "broadcast",
        "disconnect",
        "channels",
        "info",
        "batch",
        "history_remove",
        "map_publish",
        "map_remove",
        "map_read_state",
        "map_read_stream",
        "map_stats",
        "map_clear",
        "shared_poll_publish",
    ];
    KNOWN.iter().find(|k| **k == method).copied().unwrap_or("unknown")
}
