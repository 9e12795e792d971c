//! `cargo bench --bench soak -- [--duration 30m]`: the soak benchmark.
//!
//! Two gateways on one nats-server (started here, monitoring on), for
//! `--duration` (default 30 minutes) under, all at once:
//! - publishing through both gateways' HTTP API at half the capacity
//!   measured first (or `--rate`), round robin over history channels;
//! - stable clients on both gateways subscribed to every history channel;
//! - recovering clients that disconnect every few seconds and come back on
//!   the other gateway with `recover` from the last offset they saw;
//! - connect/disconnect and subscribe/unsubscribe churn on channels with
//!   and without history (some connections dropped without a close frame).
//!
//! It samples each gateway's RSS, open file descriptors and threads (the
//! gateway exports no tokio task count; its client and subscription gauges
//! from `/metrics` stand in for the tasks they own) and nats-server's
//! subscription count (`/subsz`), and compares the sample after warm-up with
//! the last one, taken under the same load: each must be within 10%. Then it
//! checks that no publication acknowledged by the API was lost: every stable
//! client received each once and in order, every recovering client recovered
//! every one in the spans it was away, and history holds them all.
//! Exit status 0 only when both hold. See benches/README.md ("Soak").

use natsgate_test_support as common;

use clap::Parser;
use common::{hs256_token, Gateway, NatsServer, Protocol, WsClient, SECRET};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const API_KEY: &str = "soak-api-key";

#[derive(Parser, Debug, Clone)]
#[command(about = "natsgate soak: churn and steady publishing across two gateways (benches/README.md)")]
struct Options {
    /// How long the load runs (humantime: 30m, 5m, 90s).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Publications a second; default: half the capacity measured first.
    #[arg(long)]
    rate: Option<u64>,
    /// History channels published to.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Clients subscribed to every history channel for the whole run.
    #[arg(long, default_value_t = 8)]
    stable: usize,
    /// Clients leaving and recovering on the other gateway.
    #[arg(long, default_value_t = 8)]
    recovering: usize,
    /// Clients in connect/subscribe/unsubscribe/disconnect loops.
    #[arg(long, default_value_t = 16)]
    churn: usize,
    /// The first ("start") sample is taken after this warm-up.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Time between samples (printed as they are taken).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sample_every: Duration,
}

/// Acknowledged offsets per history channel.
type Acked = Arc<Mutex<BTreeMap<String, BTreeSet<u64>>>>;

fn main() -> ExitCode {
    let args = std::env::args().filter(|a| a != "--bench");
    let opts = Options::parse_from(args);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let ok = runtime.block_on(run(opts));
    runtime.shutdown_background();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn gateway(nats: &NatsServer, name: &str) -> Gateway {
    // History must hold every publication of the run for the loss check:
    // on a quiet machine a 30-minute run acknowledges ~1.5 million per
    // channel, so the cap is far above that (JetStream's per-subject
    // limit; the stream lives in the run's temporary directory).
    let namespaces = r#"[{"name":"soak","history_size":100000000,"history_ttl":"2h","allow_recovery":true,
        "allow_subscribe_for_client":true,"allow_history_for_subscriber":true},
        {"name":"live","allow_subscribe_for_client":true}]"#;
    Gateway::builder()
        .permissive()
        .nats(nats)
        .envs(&[
            ("NATSGATE_NAME", name),
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_NAMESPACES", namespaces),
            ("NATSGATE_HISTORY_MAX_PUBLICATION_LIMIT", "1000"),
            ("NATSGATE_LOG_LEVEL", "warn"),
        ])
        .start()
}

async fn run(opts: Options) -> bool {
    let monitor = common::free_port();
    let dir = tempfile::Builder::new().prefix("natsgate-soak-").tempdir().expect("tempdir");
    let nats = NatsServer::start_with(
        common::free_port(),
        dir,
        // Monitoring listens on the server's address (-a 127.0.0.1).
        &["-js".into(), "-m".into(), monitor.to_string()],
    );
    let gws = [gateway(&nats, "soak-a"), gateway(&nats, "soak-b")];
    let ws: Vec<String> = gws.iter().map(Gateway::ws_url).collect();
    let api: Vec<String> = gws.iter().map(|g| format!("{}/api", g.http_url())).collect();
    // Sampling gets a client of its own: the publishers' keep-alive pool
    // (up to 256 connections) must be gone before the idle fd count.
    let http = reqwest::Client::new();
    let api_http = reqwest::Client::new();
    let idle = sample(&http, &gws, monitor).await;
    let idle_subs = idle.nats_subscriptions;
    println!("soak: nats-server {} (monitoring :{monitor}), gateways {ws:?}", nats.url());

    let rate = match opts.rate {
        Some(rate) => rate,
        None => {
            let capacity = measure_capacity(&api_http, &api).await;
            println!("soak: measured API publish capacity {capacity}/s over both gateways; publishing at half");
            (capacity / 2).max(1)
        }
    };
    let channels: Vec<String> = (0..opts.channels).map(|i| format!("soak:ch{i}")).collect();
    let acked: Acked = Arc::new(Mutex::new(channels.iter().map(|c| (c.clone(), BTreeSet::new())).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());

    let mut stable = Vec::new();
    for i in 0..opts.stable {
        stable.push(tokio::spawn(stable_client(ws[i % 2].clone(), i, channels.clone(), stop.clone())));
    }
    let mut recovering = Vec::new();
    for i in 0..opts.recovering {
        let channel = channels[i % channels.len()].clone();
        recovering.push(tokio::spawn(recovering_client(ws.clone(), i, channel, stop.clone(), counters.clone())));
    }
    let mut churn = Vec::new();
    for i in 0..opts.churn {
        churn.push(tokio::spawn(churn_client(ws.clone(), i, channels.clone(), stop.clone(), counters.clone())));
    }
    // Everyone connected before the first publication.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let publisher = tokio::spawn(publish(
        api_http.clone(),
        api.clone(),
        channels.clone(),
        rate,
        acked.clone(),
        stop.clone(),
        counters.clone(),
    ));

    let started = Instant::now();
    // Samples are printed from the first `--sample-every` on, so the
    // warm-up's curve is visible too; the "start" the end is judged
    // against is the first sample at or after `--warmup`.
    let warmup = opts.warmup.min(opts.duration / 2);
    let mut first = None;
    while first.is_none() || started.elapsed() + opts.sample_every < opts.duration {
        let next = opts.sample_every.min(warmup.saturating_sub(started.elapsed()).max(Duration::from_millis(1)));
        tokio::time::sleep(if first.is_none() { next } else { opts.sample_every }).await;
        let now = sample(&http, &gws, monitor).await;
        let warm = started.elapsed() >= warmup;
        let mark = if first.is_none() && warm {
            " (start, after warm-up)"
        } else if warm {
            ""
        } else {
            " (warm-up)"
        };
        println!("soak: {:>6.0}s{mark} {} | {}", started.elapsed().as_secs_f64(), now.describe(), counters.describe());
        if first.is_none() && warm {
            first = Some(now);
        }
    }
    let first = first.expect("a start sample");
    tokio::time::sleep(opts.duration.saturating_sub(started.elapsed())).await;
    let last = sample(&http, &gws, monitor).await;
    println!("soak: end {}", last.describe());

    stop.store(true, Relaxed);
    let _ = publisher.await;
    let acked = acked.lock().clone();
    let total: usize = acked.values().map(BTreeSet::len).sum();
    println!("soak: {total} publications acknowledged at {rate}/s target; {}", counters.describe());

    let mut ok = true;
    // Stable clients: each acknowledged offset once, in order.
    for (i, handle) in stable.into_iter().enumerate() {
        let got = match handle.await {
            Ok(got) => got,
            Err(e) => {
                println!("FAIL stable client {i} died: {e}");
                ok = false;
                continue;
            }
        };
        for (channel, offsets) in &acked {
            let received = got.get(channel).cloned().unwrap_or_default();
            let dups = received.len() - received.iter().collect::<BTreeSet<_>>().len();
            let inversions: Vec<(usize, u64, u64)> =
                received.windows(2).enumerate().filter(|(_, w)| w[0] >= w[1]).map(|(k, w)| (k, w[0], w[1])).collect();
            let ordered = inversions.is_empty();
            if !ordered {
                println!(
                    "soak: stable client {i} on {channel}: {} inversions of {}, first (index, offset, next) {:?}",
                    inversions.len(),
                    received.len(),
                    &inversions[..inversions.len().min(3)]
                );
            }
            let set: BTreeSet<u64> = received.into_iter().collect();
            let lost = offsets.difference(&set).count();
            if lost > 0 || dups > 0 || !ordered {
                println!("FAIL stable client {i} on {channel}: {lost} lost, {dups} duplicates, in order: {ordered}");
                ok = false;
            }
        }
    }
    // Recovering clients: every acknowledged offset inside the spans they covered.
    for (i, handle) in recovering.into_iter().enumerate() {
        let Ok(cov) = handle.await else { continue };
        let set: BTreeSet<u64> = cov.got.iter().copied().collect();
        let dups = cov.got.len() - set.len();
        let expected: Vec<u64> = cov
            .spans
            .iter()
            .filter(|&&(from, to)| from < to)
            .flat_map(|&(from, to)| acked[&cov.channel].range(from + 1..=to).copied())
            .collect();
        let lost = expected.iter().filter(|o| !set.contains(o)).count();
        println!(
            "soak: recovering client {i}: {} spans, {} offsets checked, {} broken stays{}",
            cov.spans.len(),
            expected.len(),
            cov.broken.len(),
            cov.broken.first().map(|b| format!(" (first: {b})")).unwrap_or_default()
        );
        if lost > 0 || dups > 0 {
            println!("FAIL recovering client {i} on {}: {lost} lost, {dups} duplicates", cov.channel);
            ok = false;
        }
    }
    for handle in churn {
        let _ = handle.await;
    }
    // History holds every acknowledged publication: read from JetStream
    // itself (an ordered consumer over each history stream), because the
    // API's history reads one message per request and a 30-minute run
    // stores ~12 million. A stream sequence is a channel's offset, and it
    // is unique across the stream, so the subject holding a channel's
    // first acknowledged offset is that channel's subject.
    let read = Instant::now();
    let stored = stored_offsets(&nats.url()).await;
    println!(
        "soak: history: {} publications in {} subjects read from JetStream in {:.0?}",
        stored.values().map(Vec::len).sum::<usize>(),
        stored.len(),
        read.elapsed()
    );
    for (channel, offsets) in &acked {
        let Some(first) = offsets.first() else { continue };
        let held = stored.values().find(|seqs| seqs.binary_search(first).is_ok());
        let lost = match held {
            Some(seqs) => offsets.iter().filter(|o| seqs.binary_search(o).is_err()).count(),
            None => offsets.len(),
        };
        if lost > 0 {
            println!("FAIL history of {channel}: {lost} of {} acknowledged publications missing", offsets.len());
            ok = false;
        }
    }
    println!("soak: loss check {}", if ok { "passed: 0 lost, 0 duplicates" } else { "FAILED" });

    // Flat: RSS and threads under the same load at the start and at the
    // end; open fds and nats-server subscriptions, which follow how many
    // churning clients happen to be connected at the moment, are printed
    // under load but judged idle, before any client and after every client
    // left.
    let mut flat = true;
    let mut row = |what: &str, a: u64, b: u64, judged: bool| {
        let change = if a == 0 { 0.0 } else { (b as f64 - a as f64) / a as f64 * 100.0 };
        let within = change.abs() <= 10.0 || b.abs_diff(a) <= 2;
        let mark = if !judged {
            "  (not judged)"
        } else if within {
            ""
        } else {
            "  > 10%"
        };
        println!("soak: {what:<38} start {a:>10} end {b:>10} ({change:+.1}%){mark}");
        flat &= within || !judged;
    };
    for (g, name) in ["a", "b"].iter().enumerate() {
        row(&format!("gateway {name} RSS KiB, under load"), first.rss_kb[g], last.rss_kb[g], true);
        row(&format!("gateway {name} threads, under load"), first.threads[g], last.threads[g], true);
        row(&format!("gateway {name} open fds, under load"), first.fds[g], last.fds[g], false);
    }
    row("nats-server subscriptions, under load", first.nats_subscriptions, last.nats_subscriptions, false);
    drop(api_http);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sample(&http, &gws, monitor).await;
    for (g, name) in ["a", "b"].iter().enumerate() {
        row(&format!("gateway {name} open fds, idle"), idle.fds[g], after.fds[g], true);
        row(&format!("gateway {name} RSS KiB, idle (not judged)"), idle.rss_kb[g], after.rss_kb[g], false);
    }
    row("nats-server subscriptions, idle", idle_subs, after.nats_subscriptions, true);
    println!("soak: flat within 10% {}", if flat { "yes" } else { "NO" });
    ok && flat
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    publish_errors: AtomicU64,
    connects: AtomicU64,
    subscribes: AtomicU64,
    recoveries: AtomicU64,
    churn_failures: AtomicU64,
}

impl Counters {
    fn describe(&self) -> String {
        format!(
            "published {}, publish errors {}, churn connects {} ({} cycles failed), subscribes {}, recoveries {}",
            self.published.load(Relaxed),
            self.publish_errors.load(Relaxed),
            self.connects.load(Relaxed),
            self.churn_failures.load(Relaxed),
            self.subscribes.load(Relaxed),
            self.recoveries.load(Relaxed)
        )
    }
}

/// One moment's figures: per gateway, and nats-server's subscriptions.
#[derive(Clone, Debug)]
struct Sample {
    rss_kb: [u64; 2],
    fds: [u64; 2],
    threads: [u64; 2],
    connections: [u64; 2],
    subscriptions: [u64; 2],
    nats_subscriptions: u64,
}

impl Sample {
    fn describe(&self) -> String {
        format!(
            "RSS {:?} KiB, fds {:?}, threads {:?}, clients {:?}, client subscriptions {:?}, nats subscriptions {}",
            self.rss_kb, self.fds, self.threads, self.connections, self.subscriptions, self.nats_subscriptions
        )
    }
}

async fn sample(http: &reqwest::Client, gws: &[Gateway; 2], monitor: u16) -> Sample {
    let mut s = Sample {
        rss_kb: [0; 2],
        fds: [0; 2],
        threads: [0; 2],
        connections: [0; 2],
        subscriptions: [0; 2],
        nats_subscriptions: nats_subscriptions(http, monitor).await,
    };
    for (g, gw) in gws.iter().enumerate() {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        s.rss_kb[g] = field("VmRSS:");
        s.threads[g] = field("Threads:");
        s.fds[g] = std::fs::read_dir(format!("/proc/{}/fd", gw.pid())).map(|d| d.count() as u64).unwrap_or(0);
        let metrics = match http.get(format!("{}/metrics", gw.http_url())).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let gauge = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        s.connections[g] = gauge("natsgate_client_connections");
        s.subscriptions[g] = gauge("natsgate_client_subscriptions");
    }
    s
}

/// `num_subscriptions` from nats-server's `/subsz`.
async fn nats_subscriptions(http: &reqwest::Client, monitor: u16) -> u64 {
    let url = format!("http://127.0.0.1:{monitor}/subsz");
    match http.get(url).send().await {
        Ok(r) => r.json::<Value>().await.ok().and_then(|v| v["num_subscriptions"].as_u64()).unwrap_or(0),
        Err(_) => 0,
    }
}

/// POSTs `publish`; the offset on success.
async fn publish_once(http: &reqwest::Client, api: &str, channel: &str, data: Value) -> Option<u64> {
    let response = http
        .post(format!("{api}/publish"))
        .header("X-API-Key", API_KEY)
        .json(&json!({"channel": channel, "data": data}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    body["result"]["offset"].as_u64()
}

/// Acknowledged publishes a second, 32 at a time for 5 s through both gateways.
async fn measure_capacity(http: &reqwest::Client, api: &[String]) -> u64 {
    let window = Duration::from_secs(5);
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let (http, api, done) = (http.clone(), api[w % 2].clone(), done.clone());
            tokio::spawn(async move {
                while started.elapsed() < window {
                    if publish_once(&http, &api, &format!("soak:capacity{}", w % 8), json!({"w": w})).await.is_some() {
                        done.fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    (done.load(Relaxed) as f64 / started.elapsed().as_secs_f64()) as u64
}

/// Publishes `rate` a second on a fixed schedule (at most 256 in flight),
/// round robin over channels and gateways, recording acknowledged offsets.
async fn publish(
    http: reqwest::Client,
    api: Vec<String>,
    channels: Vec<String>,
    rate: u64,
    acked: Acked,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let inflight = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u64 = 0;
    while !stop.load(Relaxed) {
        tick.tick().await;
        let Ok(permit) = inflight.clone().acquire_owned().await else { break };
        let (http, acked, counters) = (http.clone(), acked.clone(), counters.clone());
        let api = api[(n % 2) as usize].clone();
        let channel = channels[(n as usize / 2) % channels.len()].clone();
        let seq = n;
        n += 1;
        tokio::spawn(async move {
            match publish_once(&http, &api, &channel, json!({"n": seq})).await {
                Some(offset) => {
                    acked.lock().get_mut(&channel).expect("channel").insert(offset);
                    counters.published.fetch_add(1, Relaxed);
                }
                None => {
                    counters.publish_errors.fetch_add(1, Relaxed);
                }
            }
            drop(permit);
        });
    }
    // Every publish in flight answered before the checks.
    let _ = inflight.acquire_many(256).await;
}

fn token(user: &str) -> String {
    hs256_token(SECRET, user, Some(86_400), json!({}))
}

/// Offsets received per channel by a client subscribed to every channel
/// until `stop`, then until it has caught up (quiet for 3 s).
async fn stable_client(
    url: String,
    i: usize,
    channels: Vec<String>,
    stop: Arc<AtomicBool>,
) -> BTreeMap<String, Vec<u64>> {
    let mut client = WsClient::connect(&url, Protocol::Json).await;
    client.set_auto_pong(true);
    client.connect_token(&token(&format!("stable-{i}"))).await;
    for channel in &channels {
        client.subscribe(channel).await;
    }
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    loop {
        match client.next(Duration::from_secs(3)).await {
            Ok(m) => {
                if let (Some(channel), Some(offset)) =
                    (m["push"]["channel"].as_str(), m["push"]["pub"]["offset"].as_u64())
                {
                    got.entry(channel.to_string()).or_default().push(offset);
                }
            }
            Err(common::WsError::Timeout(_)) if stop.load(Relaxed) => break,
            Err(common::WsError::Timeout(_)) => {}
            Err(e) => panic!("stable client {i} lost its connection: {e:?}"),
        }
    }
    got
}

/// One stay of a recovering client on a gateway.
struct Stay {
    /// `Some(recovered)` when it came back with a position.
    recovered: Option<bool>,
    /// The channel's position when it subscribed.
    top: u64,
    epoch: String,
    got: Vec<u64>,
}

/// Subscribes (recovering from `position` if any), follows the channel for
/// `stay` (until quiet for 3 s when `draining`), then leaves, every other
/// time without a close frame, as a crashed client would.
async fn stay_once(
    url: String,
    user: String,
    channel: String,
    position: Option<(u64, String)>,
    stay: Duration,
    draining: bool,
    abrupt: bool,
) -> Stay {
    let mut client = WsClient::connect(&url, Protocol::Json).await;
    client.set_auto_pong(true);
    client.connect_token(&token(&user)).await;
    let sub = match &position {
        None => json!({"subscribe": {"channel": channel, "recoverable": true}}),
        Some((offset, epoch)) => {
            json!({"subscribe": {"channel": channel, "recoverable": true, "recover": true, "offset": offset, "epoch": epoch}})
        }
    };
    let reply = client.request(sub).await;
    let result = reply.get("subscribe").unwrap_or_else(|| panic!("subscribe refused: {reply}")).clone();
    let mut out = Stay {
        recovered: position.as_ref().map(|_| result["recovered"] == json!(true)),
        top: result["offset"].as_u64().unwrap_or(0),
        epoch: result["epoch"].as_str().unwrap_or_default().to_string(),
        got: result["publications"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["offset"].as_u64().unwrap_or(0))
            .collect(),
    };
    let until = Instant::now() + stay;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() && !draining {
            break;
        }
        match client.next(if draining { Duration::from_secs(3) } else { left }).await {
            Ok(m) => out.got.extend(m["push"]["pub"]["offset"].as_u64()),
            Err(common::WsError::Timeout(_)) => break,
            Err(e) => panic!("connection lost: {e:?}"),
        }
    }
    if !abrupt {
        client.close(1000, "").await;
    }
    out
}

/// What a recovering client covered: spans (exclusive start, inclusive
/// end) in which it must have every acknowledged offset, and what it got.
struct Coverage {
    channel: String,
    spans: Vec<(u64, u64)>,
    got: Vec<u64>,
    /// Stays that failed (no reply in time on an overloaded machine) or
    /// came back with recovered: false (more missed than the recovery
    /// limit): each ends a span; the next starts afresh.
    broken: Vec<String>,
}

/// Follows one channel, leaving every 2-6 s and recovering on the other
/// gateway from the last offset seen.
async fn recovering_client(
    urls: Vec<String>,
    i: usize,
    channel: String,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> Coverage {
    let mut cov = Coverage { channel: channel.clone(), spans: Vec::new(), got: Vec::new(), broken: Vec::new() };
    let mut position: Option<(u64, String)> = None;
    let mut span_start: Option<u64> = None;
    let mut round = 0usize;
    loop {
        let draining = stop.load(Relaxed);
        let url = urls[(i + round) % 2].clone();
        round += 1;
        let stay = Duration::from_millis(2000 + (rand::random::<u64>() % 4000));
        let task = stay_once(
            url,
            format!("recovering-{i}"),
            channel.clone(),
            position.clone(),
            stay,
            draining,
            round % 2 == 1,
        );
        match tokio::spawn(task).await {
            Ok(s) if s.recovered == Some(false) => {
                cov.broken.push(format!("recovered: false after leaving at {position:?}, now at {}", s.top));
                if let (Some(from), Some((to, _))) = (span_start, &position) {
                    cov.spans.push((from, *to));
                }
                span_start = Some(s.top);
                let last = s.got.last().copied().unwrap_or(s.top);
                cov.got.extend(s.got);
                position = Some((last, s.epoch));
            }
            Ok(s) => {
                if s.recovered == Some(true) {
                    counters.recoveries.fetch_add(1, Relaxed);
                }
                span_start.get_or_insert(s.top);
                let last = s.got.last().copied().or(position.as_ref().map(|p| p.0)).unwrap_or(s.top);
                cov.got.extend(s.got);
                position = Some((last, s.epoch));
            }
            Err(e) => {
                cov.broken.push(format!("stay failed: {e}"));
                if let (Some(from), Some((to, _))) = (span_start.take(), position.take()) {
                    cov.spans.push((from, to));
                }
            }
        }
        if draining {
            if let (Some(from), Some((to, _))) = (span_start, &position) {
                cov.spans.push((from, *to));
            }
            return cov;
        }
    }
}

/// Connects, subscribes to a few channels (history and not), unsubscribes
/// some, disconnects (or drops the socket), again and again.
async fn churn_client(
    urls: Vec<String>,
    i: usize,
    channels: Vec<String>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut round = 0usize;
    while !stop.load(Relaxed) {
        round += 1;
        // A cycle whose reply does not come in time (the harness client
        // panics) is counted and the loop goes on.
        let cycle = churn_cycle(urls[(i + round) % 2].clone(), i, round, channels.clone(), counters.clone());
        if tokio::spawn(cycle).await.is_err() {
            counters.churn_failures.fetch_add(1, Relaxed);
        }
    }
}

async fn churn_cycle(url: String, i: usize, round: usize, channels: Vec<String>, counters: Arc<Counters>) {
    {
        let protocol = if round.is_multiple_of(2) { Protocol::Json } else { Protocol::Protobuf };
        let Ok(mut client) = WsClient::try_connect(&url, protocol).await else { return };
        client.set_auto_pong(true);
        client.connect_token(&token(&format!("churn-{i}"))).await;
        counters.connects.fetch_add(1, Relaxed);
        let mine = [
            format!("live:churn{}", rand::random::<u32>() % 64),
            format!("live:churn{}", rand::random::<u32>() % 64),
            channels[rand::random::<u32>() as usize % channels.len()].clone(),
        ];
        for channel in &mine {
            let reply = client.request(json!({"subscribe": {"channel": channel}})).await;
            if reply.get("subscribe").is_some() {
                counters.subscribes.fetch_add(1, Relaxed);
            }
        }
        for channel in &mine[..2] {
            client.request(json!({"unsubscribe": {"channel": channel}})).await;
        }
        // Read (and drop) whatever arrives for a moment.
        let _ = client.next(Duration::from_millis(200 + rand::random::<u64>() % 800)).await;
        if round.is_multiple_of(3) {
            drop(client);
        } else {
            client.close(1000, "").await;
        }
    }
}

/// Every stored stream sequence, by subject, of every history stream
/// (maps' key-value buckets left out), each list ascending.
async fn stored_offsets(url: &str) -> BTreeMap<String, Vec<u64>> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    use futures_util::StreamExt;
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let Ok(client) = async_nats::connect(url).await else { return out };
    let js = async_nats::jetstream::new(client);
    let names: Vec<String> = js.stream_names().filter_map(|n| async { n.ok() }).collect().await;
    for name in names.into_iter().filter(|n| !n.starts_with("KV_")) {
        let Ok(mut stream) = js.get_stream(&name).await else { continue };
        let Ok(info) = stream.info().await else { continue };
        let last = info.state.last_sequence;
        if info.state.messages == 0 {
            continue;
        }
        let Ok(consumer) = stream.create_consumer(OrderedConfig::default()).await else { continue };
        let Ok(mut messages) = consumer.messages().await else { continue };
        // Bounded: a read that stalls for 30 s ends the list (and so fails
        // the check) rather than hanging the run.
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(30), messages.next()).await {
            let Ok(meta) = message.info() else { continue };
            let seq = meta.stream_sequence;
            out.entry(message.subject.to_string()).or_default().push(seq);
            if seq >= last {
                break;
            }
        }
    }
    for seqs in out.values_mut() {
        seqs.sort_unstable();
    }
    out
}
