//! Hub contention benchmark: fan-out on one busy channel while other tasks
//! subscribe and unsubscribe on other channels, over the in-memory broker.
//!
//! Four figures, meant to be read in pairs:
//! - `fanout/quiet` vs `fanout/churn`: time to fan one publication out to
//!   [`HOT_SUBSCRIBERS`] subscribers, alone and while [`CHURNERS`] threads
//!   subscribe and unsubscribe on other channels without pause;
//! - `subscribe/quiet` vs `subscribe/fanout`: one subscribe plus unsubscribe
//!   on a cold channel, alone and while a thread publishes to the hot channel
//!   without pause.
//!
//! A hub that holds one lock over a whole fan-out makes the second figure of
//! each pair grow with the fan-out's length; a hub whose fan-out holds
//! nothing the other channels need keeps them close (on a machine with a
//! free core for the background thread: on fewer cores they also share CPU).
//!
//! Run: `cargo bench --bench hub -- --measurement-time 3`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use natsgate::broker::memory::MemoryBroker;
use natsgate::broker::{Broker, HistoryConfig, Message};
use natsgate::hub::{ClientHandle, Hub};
use natsgate::outbox::Outbox;
use natsgate::protocol::Protocol;

/// Subscribers of the busy channel: enough that one fan-out takes a while.
const HOT_SUBSCRIBERS: u64 = 5_000;
/// Threads subscribing and unsubscribing on other channels.
const CHURNERS: usize = 1;
/// Publications between two drains of the hot subscribers' queues.
const DRAIN_EVERY: u64 = 32;
const HOT: &str = "hot";

fn client(hub: &Hub, i: u64) -> Arc<ClientHandle> {
    let (commands, _) = tokio::sync::mpsc::channel(1);
    Arc::new(ClientHandle {
        key: hub.next_key(),
        client_id: format!("client-{i}"),
        user: format!("user-{i}"),
        protocol: if i.is_multiple_of(2) { Protocol::Json } else { Protocol::Protobuf },
        conn_info: Bytes::new(),
        // Large enough that the drains below keep every client connected.
        outbox: Arc::new(Outbox::new(1 << 30)),
        commands,
    })
}

/// Subscribes `client` to `channel` so that it receives publications at once.
async fn join(hub: &Hub, channel: &str, client: &Arc<ClientHandle>) {
    hub.subscribe(channel, client, Bytes::new(), false, false).await.expect("memory broker subscribes");
    hub.activate(channel, client.key, 0);
}

struct Setup {
    hub: Arc<Hub>,
    /// The hub's broker, which publications go through as they would from NATS.
    broker: Arc<dyn Broker>,
    hot: Arc<Vec<Arc<ClientHandle>>>,
    /// Set while a publication to the hot channel is being fanned out.
    fanning: Arc<AtomicBool>,
}

fn setup(rt: &tokio::runtime::Runtime) -> Setup {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(HistoryConfig::default()));
    let hub = Hub::new(broker.clone());
    let hot: Vec<_> = (0..HOT_SUBSCRIBERS).map(|i| client(&hub, i)).collect();
    rt.block_on(async {
        for c in &hot {
            join(&hub, HOT, c).await;
        }
    });
    Setup { hub, broker, hot: Arc::new(hot), fanning: Arc::default() }
}

fn message() -> Message {
    Message { data: Bytes::from_static(br#"{"text":"hello everyone","n":1}"#), ..Default::default() }
}

/// Empties every hot subscriber's queue, as their socket writers would.
async fn drain(hot: &[Arc<ClientHandle>]) {
    let mut batch = VecDeque::new();
    for c in hot {
        if c.outbox.queued_bytes() > 0 {
            c.outbox.next(&mut batch).await;
            batch.clear();
        }
    }
}

async fn publish(broker: &dyn Broker, hot: &[Arc<ClientHandle>], fanning: &AtomicBool, n: u64) {
    fanning.store(true, Ordering::Relaxed);
    broker.publish(HOT, message()).await.expect("memory broker publishes");
    fanning.store(false, Ordering::Relaxed);
    if n % DRAIN_EVERY == DRAIN_EVERY - 1 {
        drain(hot).await;
    }
}

/// Times this thread has slept so far (voluntary context switches): a
/// thread that waits for a lock sleeps, one merely preempted by the
/// scheduler does not, so this counts lock waits apart from CPU sharing.
fn sleeps() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage.ru_nvcsw
    }
}

/// A background thread running `work` in a loop until the returned guard drops.
struct Background {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    started: Instant,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    fn spawn<F, Fut>(work: F) -> Background
    where
        F: Fn(u64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ops.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let mut n = 0;
                while !s.load(Ordering::Relaxed) {
                    work(n).await;
                    n += 1;
                    o.store(n, Ordering::Relaxed);
                }
            });
        });
        Background { stop, ops, started: Instant::now(), thread: Some(thread) }
    }
}

impl Background {
    /// Loops done per second since the start.
    fn rate(&self) -> f64 {
        self.ops.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Subscribes and unsubscribes one client on 64 cold channels in turn.
fn churner(hub: &Arc<Hub>, id: u64) -> Background {
    let hub = hub.clone();
    let me = client(&hub, 1_000_000 + id);
    Background::spawn(move |n| {
        let (hub, me) = (hub.clone(), me.clone());
        async move {
            let channel = format!("cold-{id}-{}", n % 64);
            join(&hub, &channel, &me).await;
            hub.unsubscribe(&channel, me.key);
        }
    })
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let s = setup(&rt);
    let mut group = c.benchmark_group("fanout");
    group.sample_size(10);
    group.throughput(criterion::Throughput::Elements(HOT_SUBSCRIBERS));
    let measure = |group: &mut criterion::BenchmarkGroup<_>, name: &str| {
        let (mut publications, mut slept) = (0, 0);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let before = sleeps();
                    let started = Instant::now();
                    for n in 0..iters {
                        publish(&*s.broker, &s.hot, &s.fanning, n).await;
                    }
                    let took = started.elapsed();
                    publications += iters;
                    slept += sleeps() - before;
                    took
                })
            })
        });
        eprintln!("fanout/{name}: the publishing thread slept {slept} times in {publications} publications");
    };
    measure(&mut group, "quiet");
    let churners: Vec<_> = (0..CHURNERS as u64).map(|i| churner(&s.hub, i)).collect();
    measure(&mut group, "churn");
    group.finish();
    let rate: f64 = churners.iter().map(Background::rate).sum();
    drop(churners);
    eprintln!("fanout: meanwhile the churners made {rate:.0} subscribe+unsubscribe pairs/s");
}

fn subscribe(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let s = setup(&rt);
    let me = client(&s.hub, 2_000_000);
    let mut group = c.benchmark_group("subscribe");
    group.sample_size(10);
    let mut measure = |name: &str| {
        // The mean hides a subscribe that waited for a whole fan-out among
        // thousands that did not: the tail shows it.
        // Subscribes that started while a fan-out ran are kept apart: with a
        // lock shared with the fan-out they wait for its end.
        let mut latencies = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        let mut overlapped = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        let mut slept = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for n in 0..iters {
                        let channel = format!("cold-{}", n % 64);
                        let during = s.fanning.load(Ordering::Relaxed);
                        let before = sleeps();
                        let started = Instant::now();
                        join(&s.hub, &channel, &me).await;
                        s.hub.unsubscribe(&channel, me.key);
                        let took = started.elapsed();
                        slept += (sleeps() > before) as u64;
                        spent += took;
                        let _ = latencies.record(took.as_nanos() as u64);
                        if during {
                            let _ = overlapped.record(took.as_nanos() as u64);
                        }
                    }
                    spent
                })
            })
        });
        let q = |p: f64| latencies.value_at_quantile(p) as f64 / 1000.0;
        eprintln!(
            "subscribe/{name}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, p99.99 {:.1} µs, max {:.1} µs over {} subscribes",
            q(0.5),
            q(0.99),
            q(0.999),
            q(0.9999),
            latencies.max() as f64 / 1000.0,
            latencies.len()
        );
        eprintln!("subscribe/{name}: {slept} of {} subscribes slept (waited for a lock)", latencies.len());
        if !overlapped.is_empty() {
            let q = |p: f64| overlapped.value_at_quantile(p) as f64 / 1000.0;
            eprintln!(
                "subscribe/{name}: of those, {} started during a fan-out: p10 {:.1} µs, p50 {:.1} µs, p90 {:.1} µs",
                overlapped.len(),
                q(0.1),
                q(0.5),
                q(0.9)
            );
        }
    };
    measure("quiet");
    let (broker, hot, fanning) = (s.broker.clone(), s.hot.clone(), s.fanning.clone());
    let publisher = Background::spawn(move |n| {
        let (broker, hot, fanning) = (broker.clone(), hot.clone(), fanning.clone());
        async move { publish(&*broker, &hot, &fanning, n).await }
    });
    measure("fanout");
    group.finish();
    let rate = publisher.rate();
    drop(publisher);
    eprintln!("subscribe: meanwhile the publisher fanned out {rate:.0} publications/s");
}

criterion_group!(benches, fanout, subscribe);
criterion_main!(benches);
