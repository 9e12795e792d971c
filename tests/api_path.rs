//! The HTTP API's publication path on NATS (issue 14): concurrent
//! publications confirmed by shared round trips (group commit) are all
//! delivered, in order per channel; `broadcast` and parallel `batch`
//! publish concurrently and still answer in the request's order; the
//! history epoch a gateway caches follows a stream that another gateway
//! made again after it was deleted.
//!
//! Two gateways share one nats-server: the API is called on A, subscribers
//! sit on B, so every publication crosses NATS. Every wait is bounded.

use natsgate_test_support as common;

use common::pair::{api_call, api_result};
use common::{hs256_token, Gateway, GatewayBuilder, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use natsgate::broker::subject::SubjectMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const API_KEY: &str = "api-path-key";

/// `hist`: history kept (100 per channel for 60 s), clients may subscribe.
const NAMESPACES: &str = r#"[
  {"name":"hist","history_size":100,"history_ttl":"60s","allow_subscribe_for_client":true}
]"#;

fn gateway(name: &str, nats: &NatsServer) -> GatewayBuilder {
    Gateway::builder().permissive().nats(nats).envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", NAMESPACES),
        ("NATSGATE_CLIENT_CHANNEL_LIMIT", "1000"),
    ])
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("reqwest client")
}

async fn subscriber(gw: &Gateway, channels: &[String]) -> WsClient {
    let mut ws = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    ws.connect_token(&hs256_token(SECRET, "watcher", None, json!({}))).await;
    for channel in channels {
        ws.subscribe(channel).await;
    }
    ws
}

/// Reads pushes until `expected` publications arrived per channel; returns
/// the `n` of each, in arrival order, per channel.
async fn collect(ws: &mut WsClient, expected: usize, channels: usize) -> HashMap<String, Vec<u64>> {
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let total = expected * channels;
    let mut got = 0;
    while got < total {
        let message = ws.next(Duration::from_secs(10)).await.unwrap_or_else(|e| {
            panic!("{got} of {total} publications arrived ({e:?}); per channel: {:?}", counts(&seen))
        });
        let Some(publication) = message["push"].get("pub") else { continue };
        let channel = message["push"]["channel"].as_str().expect("channel").to_string();
        seen.entry(channel).or_default().push(publication["data"]["n"].as_u64().expect("n"));
        got += 1;
    }
    seen
}

fn counts(seen: &HashMap<String, Vec<u64>>) -> HashMap<&String, usize> {
    seen.iter().map(|(c, v)| (c, v.len())).collect()
}

/// 16 API clients each publish 100 publications one after another to their
/// own channel, all at once (so round trips are shared); a subscriber on
/// the other gateway receives every one, in order per channel, and nothing
/// else. The same for history channels, whose offsets must also grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_api_publishes_all_arrive_in_order() {
    const CLIENTS: usize = 16;
    const EACH: u64 = 100;
    let nats = NatsServer::start();
    let a = gateway("gw-a", &nats).start();
    let b = gateway("gw-b", &nats).start();
    for prefix in ["gc", "hist:gc"] {
        let channels: Vec<String> = (0..CLIENTS).map(|i| format!("{prefix}{i}")).collect();
        let mut ws = subscriber(&b, &channels).await;
        let http = http_client();
        let mut tasks = Vec::new();
        for channel in channels.clone() {
            let (http, port) = (http.clone(), a.port());
            tasks.push(tokio::spawn(async move {
                let mut offsets = Vec::new();
                for n in 0..EACH {
                    let body = json!({"channel": channel, "data": {"n": n}}).to_string();
                    let url = format!("http://127.0.0.1:{port}/api/publish");
                    let reply: Value = http
                        .post(url)
                        .header("X-API-Key", API_KEY)
                        .body(body)
                        .send()
                        .await
                        .expect("POST")
                        .json()
                        .await
                        .expect("JSON");
                    assert!(reply.get("result").is_some(), "publish {n} to {channel}: {reply}");
                    offsets.push(reply["result"]["offset"].as_u64().unwrap_or(0));
                }
                offsets
            }));
        }
        for task in tasks {
            let offsets = task.await.expect("publisher task");
            if prefix.starts_with("hist") {
                assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets grow per channel: {offsets:?}");
            }
        }
        let seen = collect(&mut ws, EACH as usize, CLIENTS).await;
        for channel in &channels {
            let expected: Vec<u64> = (0..EACH).collect();
            assert_eq!(seen.get(channel), Some(&expected), "{channel}: every publication, in order");
        }
        ws.expect_silence(Duration::from_millis(200)).await;
    }
}

/// A broadcast to 200 channels and a parallel batch of 200 publishes are
/// answered in the request's order (one reply per item, offsets of history
/// channels increasing in that order for the batch to one channel), and
/// every item reaches its subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_and_parallel_batch_answer_in_order() {
    const N: usize = 200;
    let nats = NatsServer::start();
    let a = gateway("gw-a", &nats).start();
    let b = gateway("gw-b", &nats).start();
    let http = http_client();
    let channels: Vec<String> = (0..N).map(|i| format!("bc{i}")).collect();
    let mut ws = subscriber(&b, &channels).await;
    let reply = api_result(&http, &a, API_KEY, "broadcast", &json!({"channels": channels, "data": {"n": 7}})).await;
    let responses = reply["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), N);
    assert!(responses.iter().all(|r| r == &json!({"result": {}})), "{reply}");
    let seen = collect(&mut ws, 1, N).await;
    assert!(channels.iter().all(|c| seen.get(c) == Some(&vec![7])), "one publication per channel");

    // History channels: each item's reply carries its own offset.
    let commands: Vec<Value> =
        (0..N).map(|i| json!({"publish": {"channel": format!("hist:b{}", i % 4), "data": {"n": i}}})).collect();
    let reply = api_call(&http, &a, API_KEY, "batch", &json!({"commands": commands, "parallel": true})).await;
    let replies = reply["replies"].as_array().unwrap_or_else(|| panic!("replies: {reply}"));
    assert_eq!(replies.len(), N);
    let mut offsets: Vec<Vec<u64>> = vec![Vec::new(); 4];
    for (i, r) in replies.iter().enumerate() {
        let offset = r["publish"]["offset"].as_u64().unwrap_or_else(|| panic!("item {i}: {r}"));
        offsets[i % 4].push(offset);
    }
    // Concurrent items of one channel may be stored in any order, but never
    // two at one offset.
    for list in &mut offsets {
        list.sort_unstable();
        list.dedup();
        assert_eq!(list.len(), N / 4, "distinct offsets");
    }
    // Every one is in history.
    for k in 0..4 {
        let page =
            api_result(&http, &b, API_KEY, "history", &json!({"channel": format!("hist:b{k}"), "limit": 100})).await;
        let mut held: Vec<u64> = page["publications"]
            .as_array()
            .expect("publications")
            .iter()
            .map(|p| p["data"]["n"].as_u64().expect("n"))
            .collect();
        held.sort_unstable();
        let expected: Vec<u64> = (0..N as u64).filter(|i| i % 4 == k).collect();
        assert_eq!(held, expected, "hist:b{k}");
    }
}

/// Gateway A caches the `hist` namespace's epoch. The stream is deleted
/// behind its back, gateway B makes it again by publishing (a new epoch),
/// and publishes more than A had seen, so sequence numbers alone would not
/// tell A. A's next publication must carry the new epoch, the one history
/// reports, not the cached one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn epoch_cache_follows_a_stream_made_again_by_another_gateway() {
    let nats = NatsServer::start();
    let a = gateway("gw-a", &nats).start();
    let b = gateway("gw-b", &nats).start();
    let http = http_client();
    async fn publish(http: &reqwest::Client, gw: &Gateway, n: u64) -> Value {
        api_result(http, gw, API_KEY, "publish", &json!({"channel": "hist:epoch", "data": {"n": n}})).await
    }
    // A learns the epoch (twice: the second comes from its cache).
    let first = publish(&http, &a, 0).await;
    let again = publish(&http, &a, 1).await;
    assert_eq!(first["epoch"], again["epoch"], "same stream, same epoch");
    assert!(first["epoch"].as_str().is_some_and(|e| !e.is_empty()));

    let client = tokio::time::timeout(TIMEOUT, async_nats::connect(nats.url())).await.expect("in time").expect("nats");
    let js = async_nats::jetstream::new(client);
    js.delete_stream(SubjectMap::new("natsgate").stream_name("hist")).await.expect("delete the history stream");

    // B makes the stream again on its next publish, and goes past A's
    // last sequence.
    let mut made_again = publish(&http, &b, 100).await;
    for n in 101..110 {
        made_again = publish(&http, &b, n).await;
    }
    assert_ne!(made_again["epoch"], first["epoch"], "a new stream is a new epoch");
    assert!(made_again["offset"].as_u64().unwrap() > again["offset"].as_u64().unwrap());

    let after = publish(&http, &a, 2).await;
    assert_eq!(after["epoch"], made_again["epoch"], "A's publication reports the stream's current epoch");
    let page = api_result(&http, &a, API_KEY, "history", &json!({"channel": "hist:epoch", "limit": 0})).await;
    assert_eq!(page["epoch"], after["epoch"], "history agrees");
    assert_eq!(page["offset"], after["offset"]);
}
