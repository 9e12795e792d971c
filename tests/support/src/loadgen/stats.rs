//! Counters and the latency histogram shared by all clients of one run.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Error messages kept verbatim; the rest are only counted.
const KEPT_ERRORS: usize = 8;

pub struct Stats {
    ready: AtomicUsize,
    failed: AtomicUsize,
    closed_early: AtomicUsize,
    received: AtomicU64,
    frames: AtomicU64,
    out_of_order: AtomicU64,
    unexpected: AtomicU64,
    pings: AtomicU64,
    last_delivery_ns: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    connect_latency: Mutex<Histogram<u64>>,
    errors: Mutex<Vec<String>>,
    error_count: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            closed_early: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            // 1 ns .. 10 min at 3 significant figures.
            latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")),
            connect_latency: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds"),
            ),
            errors: Mutex::new(Vec::new()),
            error_count: AtomicU64::new(0),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Stats {
    /// A client is subscribed, `ns` after it started connecting.
    pub fn client_ready(&self, ns: u64) {
        self.connect_latency.lock().saturating_record(ns.max(1));
        self.ready.fetch_add(1, Ordering::Relaxed);
    }

    pub fn client_failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.error(error);
    }

    pub fn closed_early(&self, error: String) {
        self.closed_early.fetch_add(1, Ordering::Relaxed);
        self.error(error);
    }

    pub fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        self.error(format!("unexpected {what}"));
    }

    pub fn ping_answered(&self) {
        self.pings.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, error: String) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock();
        if errors.len() < KEPT_ERRORS {
            errors.push(error);
        }
    }

    /// Records the deliveries of one frame: those timed, and `untimed`
    /// ones (warm-up messages).
    pub fn deliveries(&self, latencies_ns: &[u64], untimed: u64, out_of_order: u64) {
        let count = latencies_ns.len() as u64 + untimed;
        if count > 0 {
            self.frames.fetch_add(1, Ordering::Relaxed);
            if !latencies_ns.is_empty() {
                let mut histogram = self.latency.lock();
                for &ns in latencies_ns {
                    histogram.saturating_record(ns.max(1));
                }
            }
            self.received.fetch_add(count, Ordering::Relaxed);
            self.last_delivery_ns.fetch_max(super::sys::now_ns(), Ordering::Relaxed);
        }
        self.out_of_order.fetch_add(out_of_order, Ordering::Relaxed);
    }

    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn closed_early_count(&self) -> usize {
        self.closed_early.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// WebSocket frames that carried deliveries.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.load(Ordering::Relaxed)
    }

    pub fn unexpected_count(&self) -> u64 {
        self.unexpected.load(Ordering::Relaxed)
    }

    pub fn pings(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }

    pub fn last_delivery_ns(&self) -> u64 {
        self.last_delivery_ns.load(Ordering::Relaxed)
    }

    pub fn error_count(&self) -> u64 {
        self.error_count.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().clone()
    }

    /// End-to-end delivery latency.
    pub fn latency(&self) -> Option<Latency> {
        percentiles(&self.latency.lock())
    }

    /// Per client: from the TCP connect to the subscribe reply.
    pub fn connect_latency(&self) -> Option<Latency> {
        percentiles(&self.connect_latency.lock())
    }
}

fn percentiles(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    Some(Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    })
}
