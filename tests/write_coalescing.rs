//! Write coalescing (`NATSGATE_CLIENT_WRITE_DELAY`,
//! `NATSGATE_CLIENT_MAX_MESSAGES_IN_FRAME`): with a delay, pushes that
//! arrive within it share one WebSocket frame, at most the maximum per
//! frame, in order; the SDK (centrifuge-js, JSON and Protobuf) decodes
//! them all in order. Real gateway, embedded broker, real SDK.

use natsgate_test_support as common;

use common::node::run_node_tests;
use common::{hs256_token, Gateway, Protocol, WsClient, SECRET};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

const API_KEY: &str = "coalescing-api-key";

/// A gateway with the API key and `env`.
fn gateway(env: &[(&str, &str)]) -> Gateway {
    Gateway::builder().permissive().env("NATSGATE_API_KEY", API_KEY).envs(env).start()
}

/// A subscriber on `channel`; then `count` publications through the HTTP
/// API (not a client connection: its replies would be delayed too), one
/// request at a time, `gap` apart. Returns the subscriber's frames as they
/// arrived, each a list of `seq` numbers.
async fn frames_for(gateway: &Gateway, channel: &str, count: u64, gap: Duration) -> Vec<Vec<u64>> {
    let mut subscriber = WsClient::connect(&gateway.ws_url(), Protocol::Json).await;
    subscriber.connect_token(&hs256_token(SECRET, "sub", None, json!({}))).await;
    subscriber.subscribe(channel).await;
    let http = reqwest::Client::builder().no_proxy().timeout(WAIT).build().expect("HTTP client");
    for seq in 0..count {
        let response = http
            .post(format!("{}/api/publish", gateway.http_url()))
            .header("X-API-Key", API_KEY)
            .json(&json!({"channel": channel, "data": {"seq": seq}}))
            .send()
            .await
            .expect("publish request");
        let reply: Value = response.json().await.expect("JSON reply");
        assert!(reply.get("error").is_none(), "publish {seq}: {reply}");
        tokio::time::sleep(gap).await;
    }
    let mut frames = Vec::new();
    let mut received = 0;
    while received < count {
        let frame = subscriber.recv_frame(WAIT).await;
        let seqs: Vec<u64> =
            frame.iter().map(|m: &Value| m["push"]["pub"]["data"]["seq"].as_u64().expect("a publication")).collect();
        received += seqs.len() as u64;
        frames.push(seqs);
    }
    frames
}

fn in_order(frames: &[Vec<u64>], count: u64) {
    let all: Vec<u64> = frames.iter().flatten().copied().collect();
    assert_eq!(all, (0..count).collect::<Vec<_>>(), "frames {frames:?}");
}

#[tokio::test]
async fn pushes_within_the_delay_share_one_frame() {
    let gateway = gateway(&[("NATSGATE_CLIENT_WRITE_DELAY", "300ms")]);
    // Five publications 10 ms apart: all inside the 300 ms the writer waits.
    let frames = frames_for(&gateway, "coalesced", 5, Duration::from_millis(10)).await;
    in_order(&frames, 5);
    assert_eq!(frames.len(), 1, "one frame expected: {frames:?}");
}

#[tokio::test]
async fn without_a_delay_spaced_pushes_go_out_one_by_one() {
    // The control for the test above: the same publications, no delay.
    let gateway = gateway(&[]);
    let frames = frames_for(&gateway, "immediate", 5, Duration::from_millis(10)).await;
    in_order(&frames, 5);
    assert!(frames.len() >= 3, "pushes 10 ms apart should not wait for each other: {frames:?}");
}

#[tokio::test]
async fn frames_hold_at_most_the_maximum() {
    let gateway = gateway(&[("NATSGATE_CLIENT_WRITE_DELAY", "300ms"), ("NATSGATE_CLIENT_MAX_MESSAGES_IN_FRAME", "2")]);
    let frames = frames_for(&gateway, "bounded", 5, Duration::from_millis(10)).await;
    in_order(&frames, 5);
    assert!(frames.iter().all(|f| f.len() <= 2), "at most 2 per frame: {frames:?}");
    assert!(frames.iter().any(|f| f.len() == 2), "the delay still coalesced: {frames:?}");
}

#[test]
fn centrifuge_js_decodes_coalesced_frames_in_order() {
    let gateway = Gateway::builder().permissive().env("NATSGATE_CLIENT_WRITE_DELAY", "50ms").start();
    let env = [("GATEWAY_URLS", gateway.ws_url()), ("TOKEN_SECRET", SECRET.to_string())];
    run_node_tests(&["scenarios/coalescing.mjs"], &env, "centrifuge-js with write coalescing");
}
