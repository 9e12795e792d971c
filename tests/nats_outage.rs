//! nats-server killed and started again under load (issue 19): a success
//! reply from the API means NATS has the publication, replies during the
//! outage are Centrifugo's internal error (100, which clients treat as
//! temporary), client publishes too; and how long a gateway takes, once
//! nats-server accepts connections again, until every subscription is live.
//!
//! One nats-server (its JetStream store kept across the restart) and real
//! gateways; the outages are real SIGKILLs. Every wait is bounded.

use natsgate_test_support as common;

use common::pair::api_result;
use common::{hs256_token, Gateway, GatewayBuilder, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use natsgate::broker::subject::SubjectMap;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const API_KEY: &str = "outage-key";

/// `hist`: history kept (5000 per channel for 300 s).
const NAMESPACES: &str = r#"[
  {"name":"hist","history_size":5000,"history_ttl":"300s","allow_subscribe_for_client":true}
]"#;

fn gateway(name: &str, nats: &NatsServer) -> GatewayBuilder {
    Gateway::builder().permissive().nats(nats).envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", NAMESPACES),
        ("NATSGATE_CLIENT_CHANNEL_LIMIT", "1000"),
        ("NATSGATE_HISTORY_MAX_PUBLICATION_LIMIT", "5000"),
    ])
}

async fn client(gw: &Gateway, user: &str) -> WsClient {
    let mut ws = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    ws.connect_token(&hs256_token(SECRET, user, None, json!({}))).await;
    ws
}

/// What one publisher saw: the `n` of each publication answered with
/// success, and the error codes of the others.
#[derive(Default, Debug)]
struct Outcomes {
    acked: Vec<u64>,
    errors: HashMap<i64, usize>,
    /// The slowest reply (a reply must not hang while NATS is away).
    slowest: Duration,
}

/// Publishes `{"n":0,1,...}` to `channel` on `port`, one after another,
/// until `stop`; never more than 20,000.
async fn publish_until(http: reqwest::Client, port: u16, channel: String, stop: Arc<AtomicBool>) -> Outcomes {
    let mut out = Outcomes::default();
    let url = format!("http://127.0.0.1:{port}/api/publish");
    for n in 0..20_000u64 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let body = json!({"channel": channel, "data": {"n": n}}).to_string();
        let reply: Value = http
            .post(&url)
            .header("X-API-Key", API_KEY)
            .body(body)
            .send()
            .await
            .expect("the gateway answers during the outage")
            .json()
            .await
            .expect("JSON reply");
        out.slowest = out.slowest.max(started.elapsed());
        match (reply.get("result"), reply["error"]["code"].as_i64()) {
            (Some(_), _) => out.acked.push(n),
            (None, Some(code)) => *out.errors.entry(code).or_default() += 1,
            _ => panic!("neither result nor error: {reply}"),
        }
        // Keep the rate moderate during the outage (errors come back fast).
        if reply.get("error").is_some() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    out
}

/// nats-server is SIGKILLed under API load on history and plain channels
/// and started again. Every publication that got a success reply is in the
/// channel's history (history) or was delivered to a subscriber on the
/// publishing gateway (plain channels: a gateway's SUBs precede its PUBs on
/// every connection); every other reply is error 100, none hangs; a client
/// publish during the outage gets error 100 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_under_load_no_success_reply_for_a_lost_publication() {
    const CHANNELS: usize = 3;
    let mut nats = NatsServer::start();
    let a = gateway("gw-a", &nats).start();
    let plain: Vec<String> = (0..CHANNELS).map(|i| format!("plain{i}")).collect();
    let hist: Vec<String> = (0..CHANNELS).map(|i| format!("hist:c{i}")).collect();
    let mut watcher = client(&a, "watcher").await;
    for channel in &plain {
        watcher.subscribe(channel).await;
    }
    // Reads every push from here on, while publishers run.
    let (pushes_tx, mut pushes) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = tokio::spawn(async move {
        while let Ok(message) = watcher.next(Duration::from_secs(20)).await {
            if message["push"].get("pub").is_some() && pushes_tx.send(message).is_err() {
                break;
            }
        }
    });

    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("http");
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for channel in plain.iter().chain(&hist) {
        tasks.push((
            channel.clone(),
            tokio::spawn(publish_until(http.clone(), a.port(), channel.clone(), stop.clone())),
        ));
    }
    let mut publisher = client(&a, "publisher").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.stop();
    // A client publish while NATS is away: error 100, temporary.
    let reply = publisher.request(json!({"publish": {"channel": "plain-client", "data": {"x": 1}}})).await;
    assert_eq!(reply["error"]["code"], 100, "client publish during the outage: {reply}");
    assert_eq!(reply["error"]["temporary"], true, "{reply}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _nats = tokio::task::spawn_blocking(move || {
        nats.start_again();
        nats
    })
    .await
    .expect("restart nats-server");
    // Publish on until the gateway is back and a while more.
    let probe = http.clone();
    common::eventually("the API publishes again after the restart", Duration::from_secs(10), || {
        let probe = probe.clone();
        let port = a.port();
        async move {
            let reply: Value = probe
                .post(format!("http://127.0.0.1:{port}/api/publish"))
                .header("X-API-Key", API_KEY)
                .body(json!({"channel": "probe", "data": {}}).to_string())
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            reply.get("result").map(|_| ())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = HashMap::new();
    for (channel, task) in tasks {
        outcomes.insert(channel, task.await.expect("publisher"));
    }
    for (channel, out) in &outcomes {
        eprintln!("{channel}: {} acked, errors {:?}, slowest reply {:?}", out.acked.len(), out.errors, out.slowest);
        assert!(out.errors.keys().all(|code| *code == 100), "{channel}: only error 100: {:?}", out.errors);
        assert!(out.slowest < Duration::from_secs(3), "{channel}: a reply took {:?}", out.slowest);
    }
    let errors: usize = outcomes.values().map(|o| o.errors.values().sum::<usize>()).sum();
    assert!(errors > 0, "the outage was seen by the API");

    // History: every acked publication is held (nothing was trimmed: the
    // channels hold 5000).
    for channel in &hist {
        let out = &outcomes[channel];
        assert!(out.acked.len() < 5000);
        let page = api_result(&http, &a, API_KEY, "history", &json!({"channel": channel, "limit": 5000})).await;
        let held: BTreeSet<u64> = page["publications"]
            .as_array()
            .expect("publications")
            .iter()
            .map(|p| p["data"]["n"].as_u64().expect("n"))
            .collect();
        let lost: Vec<u64> = out.acked.iter().copied().filter(|n| !held.contains(n)).collect();
        assert!(lost.is_empty(), "{channel}: acknowledged but not in history: {lost:?}");
        assert!(out.acked.len() > 10, "{channel}: publishing resumed after the restart");
    }

    // Plain channels: every acked publication reached the subscriber on the
    // publishing gateway, in order.
    // (Publications answered with an error may have arrived too: an error
    // does not prove a loss.)
    let mut delivered: HashMap<String, Vec<u64>> = HashMap::new();
    let missing = |delivered: &HashMap<String, Vec<u64>>| {
        plain.iter().any(|c| {
            let got: BTreeSet<u64> = delivered.get(c).cloned().unwrap_or_default().into_iter().collect();
            outcomes[c].acked.iter().any(|n| !got.contains(n))
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while missing(&delivered) {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, pushes.recv()).await else { break };
        let channel = message["push"]["channel"].as_str().unwrap_or_default().to_string();
        if plain.contains(&channel) {
            delivered.entry(channel).or_default().push(message["push"]["pub"]["data"]["n"].as_u64().expect("n"));
        }
    }
    for channel in &plain {
        let received: BTreeSet<u64> = delivered.get(channel).cloned().unwrap_or_default().into_iter().collect();
        let lost: Vec<u64> = outcomes[channel].acked.iter().copied().filter(|n| !received.contains(n)).collect();
        assert!(lost.is_empty(), "{channel}: acknowledged but never delivered: {lost:?}");
        let order = delivered.get(channel).cloned().unwrap_or_default();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{channel}: in order");
        assert!(outcomes[channel].acked.len() > 10, "{channel}: publishing resumed after the restart");
    }
    reader.abort();
}

/// The reconnect window: a gateway with 200 subscribed channels, nats-server
/// killed for a second and started again; from the moment it accepts
/// connections, a plain NATS client publishes to every channel that has not
/// delivered yet, every 2 ms; the figure is the time until the last channel
/// delivered. Target 250 ms (issue 19); asserted under 1 s so that a busy CI
/// machine does not fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscription_is_live_soon_after_nats_returns() {
    const CHANNELS: usize = 200;
    let mut nats = NatsServer::start();
    let a = gateway("gw-a", &nats).start();
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("rc{i}")).collect();
    let mut ws = client(&a, "watcher").await;
    for channel in &channels {
        ws.subscribe(channel).await;
    }
    nats.stop();
    // Long enough for async-nats' default backoff (doubling up to 4 s) to
    // have grown past a second: what the delay option replaces.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let port = nats.port();
    let restart = tokio::task::spawn_blocking(move || {
        nats.start_again();
        nats
    });
    let accepting = accepting_since(port).await;
    let window_start = Instant::now();

    let publisher = tokio::time::timeout(TIMEOUT, async_nats::connect(format!("nats://127.0.0.1:{port}")))
        .await
        .expect("connect in time")
        .expect("connect");
    let subjects = SubjectMap::new("natsgate");
    let mut first: HashMap<String, Duration> = HashMap::new();
    let deadline = window_start + Duration::from_secs(10);
    let mut round = 0u64;
    while first.len() < CHANNELS && Instant::now() < deadline {
        for channel in channels.iter().filter(|c| !first.contains_key(*c)) {
            let payload = json!({"round": round}).to_string();
            publisher.publish(subjects.channel_subject(channel), payload.into()).await.expect("publish");
        }
        publisher.flush().await.expect("flush");
        round += 1;
        // Take what arrived meanwhile (2 ms at most).
        let until = tokio::time::Instant::now() + Duration::from_millis(2);
        while let Ok(Ok(message)) = tokio::time::timeout_at(until, ws.next(Duration::from_secs(1))).await {
            if let Some(channel) = message["push"]["channel"].as_str() {
                first.entry(channel.to_string()).or_insert_with(|| accepting.elapsed());
            }
        }
    }
    let nats = restart.await.expect("restart");
    let window = first.values().max().copied().unwrap_or_default();
    eprintln!(
        "reconnect window: all {} of {CHANNELS} subscriptions live {window:?} after nats-server accepted connections \
         (target 250 ms; {round} publish rounds)",
        first.len()
    );
    assert_eq!(first.len(), CHANNELS, "every channel delivered within 10 s");
    assert!(window < Duration::from_secs(1), "reconnect window {window:?}");
    drop(nats);
}

/// Polls `port` every millisecond until a TCP client is greeted with
/// `INFO`; returns that moment (at most 10 s).
async fn accepting_since(port: u16) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(("127.0.0.1", port))).await
        {
            let at = Instant::now();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(stream);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), reader.read_line(&mut line)).await {
                if line.starts_with("INFO ") {
                    return at;
                }
            }
        }
        assert!(Instant::now() < deadline, "nats-server did not come back on {port}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
