//! The Centrifugo-compatible server HTTP API end to end: two `natsgate`
//! processes (A and B) share one nats-server; the API is called on A and
//! its effect is checked on WebSocket clients held by B, so every command
//! must cross NATS. Also: every error path (and that it publishes nothing),
//! malformed bodies on every path, the legacy `/api`, transport error mode, and direct
//! publishing to a channel's NATS subject by a plain NATS client.
//!
//! Every wait is bounded; the only fixed waits are `expect_silence`, whose
//! point is to wait.

use natsgate_test_support as common;

use common::pair::{api_call, api_result};
use common::{hs256_token, now_secs, Gateway, GatewayBuilder, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use natsgate::broker::subject::SubjectMap;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const API_KEY: &str = "api-test-key";
/// `NATSGATE_API_MAX_BODY_SIZE` of the test gateways.
const MAX_BODY: usize = 2048;
/// `NATSGATE_CHANNEL_MAX_LENGTH` of the test gateways.
const MAX_CHANNEL: usize = 64;
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// A gateway with the API on (key `API_KEY`), permissive client rules,
/// a 1 s grace after expiry, short channel and body limits.
fn api_gateway(name: &str) -> GatewayBuilder {
    Gateway::builder().permissive().envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_CLIENT_EXPIRED_CLOSE_DELAY", "1s"),
        ("NATSGATE_CHANNEL_MAX_LENGTH", &MAX_CHANNEL.to_string()),
        ("NATSGATE_API_MAX_BODY_SIZE", &MAX_BODY.to_string()),
    ])
}

/// Two gateways on one nats-server. Field order is drop order: the
/// gateways go before the server they use.
struct Cluster {
    a: Gateway,
    b: Gateway,
    nats: NatsServer,
    http: reqwest::Client,
}

impl Cluster {
    fn start() -> Self {
        let nats = NatsServer::start();
        let a = api_gateway("gw-a").nats(&nats).start();
        let b = api_gateway("gw-b").nats(&nats).start();
        Cluster { a, b, nats, http: http_client() }
    }

    /// Calls `method` on gateway A; see [`call`].
    async fn api(&self, method: &str, params: Value) -> Value {
        call(&self.http, &self.a, method, params).await
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("reqwest client")
}

/// `POST /api/<method>` with the right key; asserts HTTP 200 and returns
/// the parsed body (`{"result":..}` or `{"error":..}`).
async fn call(http: &reqwest::Client, gw: &Gateway, method: &str, params: Value) -> Value {
    api_call(http, gw, API_KEY, method, &params).await
}

/// Like [`call`], asserting a `result` and returning it.
async fn call_ok(http: &reqwest::Client, gw: &Gateway, method: &str, params: Value) -> Value {
    api_result(http, gw, API_KEY, method, &params).await
}

/// Any POST: returns (HTTP status, body text).
async fn post(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (u16, String) {
    let mut request = http.post(format!("{}{path}", gw.http_url())).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The `error.code` of a reply, panicking if there is none.
fn error_code(reply: &Value) -> u64 {
    reply["error"]["code"].as_u64().unwrap_or_else(|| panic!("expected an error reply, got {reply}"))
}

/// A connection token for `user`, valid for an hour.
fn token(user: &str) -> String {
    hs256_token(SECRET, user, Some(3600), json!({}))
}

/// A client of `user` connected to `gw`; returns it with its client id.
async fn connect(gw: &Gateway, user: &str, protocol: Protocol) -> (WsClient, String) {
    let mut client = WsClient::connect(&gw.ws_url(), protocol).await;
    let result = client.connect_token(&token(user)).await;
    let id =
        result["client"].as_str().unwrap_or_else(|| panic!("connect result without client id: {result}")).to_string();
    (client, id)
}

/// A JSON client of `user` on `gw`, subscribed to `channel`.
async fn subscriber(gw: &Gateway, user: &str, channel: &str) -> WsClient {
    subscriber_with(gw, user, channel, Protocol::Json).await
}

async fn subscriber_with(gw: &Gateway, user: &str, channel: &str, protocol: Protocol) -> WsClient {
    let (mut client, _) = connect(gw, user, protocol).await;
    client.subscribe(channel).await;
    client
}

/// One sample of a Prometheus counter/gauge line starting with `series`
/// (`name{labels}`); 0 when the series is absent.
fn metric(gw: &Gateway, series: &str) -> f64 {
    let (status, body) = common::gateway::http_get(gw.internal_port(), "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("metric {series} value {v:?}: {e}")))
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------- publish

#[tokio::test]
async fn publish_on_a_reaches_json_and_protobuf_subscribers_on_b_with_tags() {
    let c = Cluster::start();
    let channel = "news";
    let mut json_sub = subscriber_with(&c.b, "bob", channel, Protocol::Json).await;
    let mut proto_sub = subscriber_with(&c.b, "bob", channel, Protocol::Protobuf).await;

    let data = json!({"text": "hello", "n": 1, "nested": {"ok": true}});
    let result = c.api("publish", json!({"channel": channel, "data": data, "tags": {"kind": "greeting"}})).await;
    assert!(result["result"].is_object(), "publish result: {result}");

    for sub in [&mut json_sub, &mut proto_sub] {
        let publication = sub.recv_publication(channel, TIMEOUT).await;
        assert_eq!(publication["data"], data, "{:?}: {publication}", sub.protocol());
        assert_eq!(publication["tags"], json!({"kind": "greeting"}), "{:?}: {publication}", sub.protocol());
    }

    // `Authorization: apikey K` works like X-API-Key.
    let (status, body) = post(
        &c.http,
        &c.a,
        "/api/publish",
        &[("Authorization", &format!("apikey {API_KEY}"))],
        json!({"channel": channel, "data": {"via": "authorization"}}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"result":{}}"#));
    for sub in [&mut json_sub, &mut proto_sub] {
        assert_eq!(sub.recv_publication(channel, TIMEOUT).await["data"], json!({"via": "authorization"}));
    }
    // The scheme is case-insensitive.
    let (status, body) = post(
        &c.http,
        &c.a,
        "/api/publish",
        &[("Authorization", &format!("ApiKey {API_KEY}"))],
        json!({"channel": channel, "data": {"via": "ApiKey"}}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"result":{}}"#));
    for sub in [&mut json_sub, &mut proto_sub] {
        assert_eq!(sub.recv_publication(channel, TIMEOUT).await["data"], json!({"via": "ApiKey"}));
    }

    // A pretty-printed body: line breaks inside `data` must not split the
    // JSON client's newline-delimited frame.
    let pretty = format!(
        "{{\n  \"channel\": \"{channel}\",\n  \"data\": {{\n    \"pretty\": [\n      1,\n      2\n    ]\r\n  }}\n}}\n"
    );
    let (status, body) = post(&c.http, &c.a, "/api/publish", &[("X-API-Key", API_KEY)], pretty).await;
    assert_eq!((status, body.as_str()), (200, r#"{"result":{}}"#));
    for sub in [&mut json_sub, &mut proto_sub] {
        assert_eq!(sub.recv_publication(channel, TIMEOUT).await["data"], json!({"pretty": [1, 2]}));
    }

    // b64data carrying JSON reaches both; binary b64data only Protobuf.
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    c.api("publish", json!({"channel": channel, "b64data": b64(br#"{"from":"b64"}"#)})).await;
    for sub in [&mut json_sub, &mut proto_sub] {
        assert_eq!(sub.recv_publication(channel, TIMEOUT).await["data"], json!({"from": "b64"}));
    }
    let binary = [0u8, 159, 146, 150, 255];
    let reply = c.api("publish", json!({"channel": channel, "b64data": b64(&binary)})).await;
    assert_eq!(reply, json!({"result": {}}));
    let reply = proto_sub.recv_reply(TIMEOUT).await;
    let publication = reply.push.and_then(|p| p.r#pub).expect("a publication push");
    assert_eq!(publication.data.as_ref(), &binary[..]);
    json_sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn broadcast_reaches_every_channel_and_reports_per_channel_errors() {
    let c = Cluster::start();
    let mut one = subscriber(&c.b, "bob", "room_1").await;
    let mut two = subscriber(&c.a, "alice", "room_2").await;

    let data = json!({"msg": "to all"});
    let reply = c.api("broadcast", json!({"channels": ["room_1", "room_2"], "data": data, "tags": {"t": "1"}})).await;
    assert_eq!(reply, json!({"result": {"responses": [{"result": {}}, {"result": {}}]}}));
    let got = one.recv_publication("room_1", TIMEOUT).await;
    assert_eq!((&got["data"], &got["tags"]), (&data, &json!({"t": "1"})));
    assert_eq!(two.recv_publication("room_2", TIMEOUT).await["data"], data);

    // An invalid channel fails alone; the others are still published.
    let long = "x".repeat(MAX_CHANNEL + 1);
    let reply = c.api("broadcast", json!({"channels": ["", "room_1", long], "data": {"n": 2}})).await;
    let responses = reply["result"]["responses"].as_array().unwrap_or_else(|| panic!("responses: {reply}"));
    assert_eq!(responses.len(), 3, "{reply}");
    assert_eq!(error_code(&responses[0]), 107, "{reply}");
    assert_eq!(responses[1], json!({"result": {}}), "{reply}");
    assert_eq!(error_code(&responses[2]), 107, "{reply}");
    assert_eq!(one.recv_publication("room_1", TIMEOUT).await["data"], json!({"n": 2}));
    two.expect_silence(QUIET).await;

    // No channels at all is a bad request.
    assert_eq!(error_code(&c.api("broadcast", json!({"channels": [], "data": {}})).await), 107);
    one.expect_silence(Duration::ZERO).await;
}

// ------------------------------------------------ subscribe / unsubscribe

#[tokio::test]
async fn server_side_subscribe_then_publications_then_unsubscribe_push_2000() {
    let c = Cluster::start();
    let channel = "updates";
    let (mut carol, _) = connect(&c.b, "carol", Protocol::Json).await;
    let (mut carol_pb, _) = connect(&c.b, "carol", Protocol::Protobuf).await;
    let (mut dave, _) = connect(&c.b, "dave", Protocol::Json).await;

    assert_eq!(c.api("subscribe", json!({"user": "carol", "channel": channel})).await, json!({"result": {}}));
    for client in [&mut carol, &mut carol_pb] {
        let push = client.recv_json().await;
        assert_eq!(push["push"]["channel"], channel, "{:?}: {push}", client.protocol());
        assert!(push["push"]["subscribe"].is_object(), "subscribe push expected: {push}");
    }

    c.api("publish", json!({"channel": channel, "data": {"n": 1}})).await;
    for client in [&mut carol, &mut carol_pb] {
        assert_eq!(client.recv_publication(channel, TIMEOUT).await["data"], json!({"n": 1}));
    }
    dave.expect_silence(QUIET).await;

    assert_eq!(c.api("unsubscribe", json!({"user": "carol", "channel": channel})).await, json!({"result": {}}));
    for client in [&mut carol, &mut carol_pb] {
        let push = client.recv_json().await;
        assert_eq!(push["push"]["channel"], channel, "{push}");
        assert_eq!(push["push"]["unsubscribe"]["code"], 2000, "{:?}: {push}", client.protocol());
    }
    c.api("publish", json!({"channel": channel, "data": {"n": 2}})).await;
    carol.expect_silence(QUIET).await;
    carol_pb.expect_silence(Duration::ZERO).await;
}

#[tokio::test]
async fn server_side_subscribe_targets_one_client_id() {
    let c = Cluster::start();
    let (mut first, first_id) = connect(&c.b, "erin", Protocol::Json).await;
    let (mut second, _) = connect(&c.a, "erin", Protocol::Json).await;

    c.api("subscribe", json!({"user": "erin", "channel": "solo", "client": first_id})).await;
    let push = first.recv_json().await;
    assert!(push["push"]["subscribe"].is_object(), "{push}");
    c.api("publish", json!({"channel": "solo", "data": {"only": "first"}})).await;
    assert_eq!(first.recv_publication("solo", TIMEOUT).await["data"], json!({"only": "first"}));
    second.expect_silence(QUIET).await;
}

// ------------------------------------------------------------- disconnect

#[tokio::test]
async fn disconnect_on_a_closes_connections_on_b_with_custom_code_sparing_the_whitelist() {
    let c = Cluster::start();
    let (mut b1, _) = connect(&c.b, "frank", Protocol::Json).await;
    let (mut b2, b2_id) = connect(&c.b, "frank", Protocol::Json).await;
    let (mut b3, _) = connect(&c.b, "frank", Protocol::Protobuf).await;
    let (mut a1, _) = connect(&c.a, "frank", Protocol::Json).await;
    let (mut other, _) = connect(&c.b, "grace", Protocol::Json).await;

    let reply = c
        .api(
            "disconnect",
            json!({"user": "frank", "whitelist": [b2_id], "disconnect": {"code": 4001, "reason": "go away"}}),
        )
        .await;
    assert_eq!(reply, json!({"result": {}}));
    for client in [&mut b1, &mut b3, &mut a1] {
        let closed = client.expect_close(TIMEOUT).await;
        assert_eq!(closed, (4001, "go away".to_string()), "{:?}", client.protocol());
    }
    // The whitelisted connection and another user's stay usable.
    b2.expect_silence(QUIET).await;
    b2.subscribe("still_here").await;
    other.expect_silence(Duration::ZERO).await;

    // Targeting one client id; default code and reason.
    assert_eq!(c.api("disconnect", json!({"user": "frank", "client": b2_id})).await, json!({"result": {}}));
    assert_eq!(b2.expect_close(TIMEOUT).await, (3503, "force disconnect".to_string()));
    other.subscribe("also_here").await;
}

/// Users share NATS control subscriptions by bucket: when one user of a
/// bucket leaves a gateway, another user of the same bucket there still
/// receives API commands, and so does a user who joins the bucket later.
#[tokio::test]
async fn control_reaches_users_sharing_a_bucket_after_one_leaves() {
    use natsgate::broker::subject::user_bucket;
    let c = Cluster::start();
    let first = "bucket-0".to_string();
    let mut same = (1..100_000).map(|i| format!("bucket-{i}")).filter(|u| user_bucket(u) == user_bucket(&first));
    let (second, third) = (same.next().expect("a second user in the bucket"), same.next().expect("a third"));

    let (leaver, _) = connect(&c.b, &first, Protocol::Json).await;
    let (mut stayer, _) = connect(&c.b, &second, Protocol::Json).await;
    leaver.close(1000, "bye").await;
    // The leaver is gone from B once the API's info no longer counts it.
    common::eventually("B counts one client", TIMEOUT, || async {
        let info = c.api("info", json!({})).await;
        let nodes = info["result"]["nodes"].as_array().cloned().unwrap_or_default();
        let clients: u64 = nodes.iter().filter_map(|n| n["num_clients"].as_u64()).sum();
        (clients == 1).then_some(())
    })
    .await;
    let (mut later, _) = connect(&c.b, &third, Protocol::Json).await;

    for (user, client) in [(&second, &mut stayer), (&third, &mut later)] {
        let reply = c.api("disconnect", json!({"user": user, "disconnect": {"code": 4004, "reason": "bucket"}})).await;
        assert_eq!(reply, json!({"result": {}}));
        assert_eq!(client.expect_close(TIMEOUT).await, (4004, "bucket".to_string()), "{user}");
    }
}

/// A WebSocket close reason holds at most 123 bytes; a longer API reason
/// must still close the connection with the requested code, its reason cut
/// on a character boundary.
#[tokio::test]
async fn disconnect_with_an_overlong_reason_still_closes_with_the_code() {
    let c = Cluster::start();
    for (i, reason) in ["r".repeat(200), "é".repeat(100)].into_iter().enumerate() {
        let user = format!("verbose{i}");
        let (mut client, _) = connect(&c.b, &user, Protocol::Json).await;
        let reply = c.api("disconnect", json!({"user": user, "disconnect": {"code": 4003, "reason": reason}})).await;
        assert_eq!(reply, json!({"result": {}}));
        let (code, got) = client.expect_close(TIMEOUT).await;
        assert_eq!(code, 4003, "reason of {} bytes: closed with {code} {got:?}", reason.len());
        assert!(got.len() <= 123 && reason.starts_with(&got), "close reason {got:?}");
    }
}

#[tokio::test]
async fn disconnect_via_a_takes_effect_on_b_quickly() {
    let c = Cluster::start();
    // Warm up the HTTP connection and the API path.
    call_ok(&c.http, &c.a, "publish", json!({"channel": "warmup", "data": {}})).await;
    let mut samples = Vec::new();
    for i in 0..10 {
        let user = format!("latency{i}");
        let (mut client, _) = connect(&c.b, &user, Protocol::Json).await;
        let started = Instant::now();
        let request = call_ok(
            &c.http,
            &c.a,
            "disconnect",
            json!({"user": user, "disconnect": {"code": 4002, "reason": "timed"}}),
        );
        let closed = async {
            let closed = client.expect_close(TIMEOUT).await;
            (closed, started.elapsed())
        };
        let (_, (closed, elapsed)) = tokio::join!(request, closed);
        assert_eq!(closed, (4002, "timed".to_string()));
        samples.push(elapsed);
    }
    samples.sort();
    let (min, median, max) = (samples[0], samples[samples.len() / 2], samples[samples.len() - 1]);
    println!(
        "API disconnect on A -> close frame on B, {} runs: min {min:?}, median {median:?}, max {max:?}",
        samples.len()
    );
    assert!(max < Duration::from_millis(500), "API disconnect took {max:?} (samples {samples:?})");
}

// ---------------------------------------------------------------- refresh

#[tokio::test]
async fn refresh_expired_closes_with_3005_after_the_grace_delay() {
    let c = Cluster::start();
    let (mut doomed, _) = connect(&c.b, "heidi", Protocol::Json).await;
    let (mut extended, _) = connect(&c.b, "ivan", Protocol::Protobuf).await;

    // A new expiry in the future: a refresh push with its ttl, no close.
    let at = now_secs() + 3600;
    assert_eq!(c.api("refresh", json!({"user": "ivan", "expire_at": at})).await, json!({"result": {}}));
    let push = extended.recv_json().await;
    let ttl = push["push"]["refresh"]["ttl"].as_i64().unwrap_or_else(|| panic!("refresh push with ttl: {push}"));
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}: {push}");
    assert_eq!(push["push"]["refresh"]["expires"], true, "{push}");

    let started = Instant::now();
    assert_eq!(c.api("refresh", json!({"user": "heidi", "expired": true})).await, json!({"result": {}}));
    let closed = doomed.expect_close(Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    assert_eq!(closed.0, 3005, "close {closed:?}");
    // Grace 1 s on whole-second clocks: the close comes within ~2 s.
    assert!(elapsed < Duration::from_secs(3), "3005 after {elapsed:?}");
    println!("refresh expired -> 3005 after {elapsed:?}");
    extended.expect_silence(QUIET).await;
}

// Centrifugo closes a connection refreshed with `expired: true` at once
// with 3005 (no grace delay: the application said it is over).
#[tokio::test]
async fn refresh_expired_closes_at_once() {
    let c = Cluster::start();
    let (mut client, _) = connect(&c.b, "judy", Protocol::Json).await;
    let started = Instant::now();
    call_ok(&c.http, &c.a, "refresh", json!({"user": "judy", "expired": true})).await;
    let closed = client.expect_close(Duration::from_secs(5)).await;
    assert_eq!(closed.0, 3005, "{closed:?}");
    assert!(started.elapsed() < Duration::from_millis(900), "3005 took {:?}", started.elapsed());
}

// -------------------------------------------------------- channels / info

#[tokio::test]
async fn channels_and_info_aggregate_both_gateways() {
    let mut c = Cluster::start();
    let _a1 = subscriber(&c.a, "u1", "agg_shared").await;
    let _a2 = subscriber(&c.a, "u2", "agg_shared").await;
    let _b1 = subscriber(&c.b, "u3", "agg_shared").await;
    let _b2 = subscriber(&c.b, "u4", "agg_b_only").await;
    let _b3 = subscriber(&c.b, "u4", "agg_b_only").await;

    let result = call_ok(&c.http, &c.b, "channels", json!({})).await;
    assert_eq!(
        result,
        json!({"channels": {"agg_shared": {"num_clients": 3}, "agg_b_only": {"num_clients": 2}}}),
        "channels on B"
    );
    let result = c.api("channels", json!({"pattern": "agg_sh*"})).await;
    assert_eq!(
        result,
        json!({"result": {"channels": {"agg_shared": {"num_clients": 3}}}}),
        "channels with pattern on A"
    );
    // A `null` body is an empty request (Centrifugo's Go decoder); an empty
    // body is no JSON at all: 400 (see malformed_bodies_are_http_400_on_every_path).
    let (status, body) = post(&c.http, &c.a, "/api/channels", &[("X-API-Key", API_KEY)], "null".into()).await;
    assert_eq!(status, 200, "{body}");
    let result: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(result["result"]["channels"].as_object().map(|m| m.len()), Some(2), "{body}");

    let info = c.api("info", json!({})).await;
    let nodes = info["result"]["nodes"].as_array().unwrap_or_else(|| panic!("info: {info}"));
    assert_eq!(nodes.len(), 2, "one node per live gateway: {info}");
    let node = |name: &str| {
        nodes.iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name}: {info}")).clone()
    };
    let (a, b) = (node("gw-a"), node("gw-b"));
    for n in [&a, &b] {
        assert!(n["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid: {n}");
        assert!(n["version"].as_str().is_some_and(|v| !v.is_empty()), "version: {n}");
        assert!(n["uptime"].is_u64(), "uptime: {n}");
    }
    assert_ne!(a["uid"], b["uid"]);
    let counts = |n: &Value| {
        ["num_clients", "num_users", "num_channels", "num_subs"]
            .map(|k| n[k].as_u64().unwrap_or_else(|| panic!("{k}: {n}")))
    };
    assert_eq!(counts(&a), [2, 2, 1, 2], "gw-a: {a}");
    assert_eq!(counts(&b), [3, 2, 2, 3], "gw-b: {b}");
    let total: u64 = nodes.iter().map(|n| n["num_clients"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 5);
    // B sees the same nodes.
    let info_b = call_ok(&c.http, &c.b, "info", json!({})).await;
    assert_eq!(info_b["nodes"].as_array().map(Vec::len), Some(2), "{info_b}");

    // Only live gateways count: with B gone, A answers alone.
    c.b.kill();
    let info = call_ok(&c.http, &c.a, "info", json!({})).await;
    let names: Vec<&Value> =
        info["nodes"].as_array().map(|n| n.iter().map(|n| &n["name"]).collect()).unwrap_or_default();
    assert_eq!(names, [&json!("gw-a")], "{info}");
    let result = c.api("channels", json!({})).await;
    assert_eq!(result, json!({"result": {"channels": {"agg_shared": {"num_clients": 2}}}}), "channels without B");
}

// ------------------------------------------------------------------ batch

#[tokio::test]
async fn batch_answers_top_level_replies_in_order() {
    let c = Cluster::start();
    let mut sub = subscriber(&c.b, "bob", "batch_ch").await;
    for parallel in [false, true] {
        let body = json!({"parallel": parallel, "commands": [
            {"publish": {"channel": "batch_ch", "data": {"i": 1}}},
            {"publish": {"channel": "", "data": {"i": 0}}},
            {"broadcast": {"channels": ["batch_ch"], "data": {"i": 2}}},
            {"no_such_method": {}},
            {"batch": {"commands": []}},
            {"presence": {"channel": "batch_ch"}},
        ]});
        let (status, text) = post(&c.http, &c.a, "/api/batch", &[("X-API-Key", API_KEY)], body.to_string()).await;
        assert_eq!(status, 200, "{text}");
        let reply: Value = serde_json::from_str(&text).expect("batch reply JSON");
        let replies = reply["replies"].as_array().unwrap_or_else(|| panic!("top-level replies expected: {reply}"));
        assert!(reply.get("result").is_none(), "batch is not wrapped in result: {reply}");
        assert_eq!(replies.len(), 6, "{reply}");
        assert_eq!(replies[0], json!({"publish": {}}), "{reply}");
        assert_eq!(error_code(&replies[1]), 107, "{reply}");
        assert_eq!(replies[2], json!({"broadcast": {"responses": [{"result": {}}]}}), "{reply}");
        assert_eq!(error_code(&replies[3]), 104, "{reply}");
        assert_eq!(error_code(&replies[4]), 104, "batch is no command a batch can hold: {reply}");
        assert_eq!(error_code(&replies[5]), 108, "{reply}");

        let mut got = vec![
            sub.recv_publication("batch_ch", TIMEOUT).await["data"]["i"].clone(),
            sub.recv_publication("batch_ch", TIMEOUT).await["data"]["i"].clone(),
        ];
        if parallel {
            got.sort_by_key(|v| v.as_i64());
        }
        assert_eq!(got, vec![json!(1), json!(2)], "parallel: {parallel}");
        sub.expect_silence(QUIET).await;
    }
    // No commands: no replies, and Centrifugo leaves out the empty list.
    assert_eq!(c.api("batch", json!({"parallel": true})).await, json!({}));
}

// ------------------------------------------------------------ error paths

#[tokio::test]
async fn unknown_and_unavailable_methods() {
    let c = Cluster::start();
    for method in ["presence", "presence_stats", "history", "history_remove"] {
        let reply = c.api(method, json!({"channel": "x"})).await;
        assert_eq!(reply, json!({"error": {"code": 108, "message": "not available"}}), "{method}");
    }
    let reply = c.api("frobnicate", json!({})).await;
    assert_eq!(error_code(&reply), 104, "{reply}");
    assert_eq!(reply["error"]["message"], "method not found", "{reply}");
}

#[tokio::test]
async fn rejected_requests_publish_nothing() {
    let c = Cluster::start();
    let channel = "guarded";
    let mut sub = subscriber(&c.b, "bob", channel).await;
    let publish = |data: Value| json!({"channel": channel, "data": data}).to_string();
    let key = [("X-API-Key", API_KEY)];

    // Authentication: wrong or missing key -> 401, nothing else said.
    let auth_cases: [(&str, &[(&str, &str)]); 5] = [
        ("no key", &[]),
        ("wrong X-API-Key", &[("X-API-Key", "not-the-key")]),
        ("empty X-API-Key", &[("X-API-Key", "")]),
        ("wrong apikey", &[("Authorization", "apikey not-the-key")]),
        ("right key, wrong scheme", &[("Authorization", "Bearer api-test-key")]),
    ];
    for (what, headers) in auth_cases {
        let (status, body) = post(&c.http, &c.a, "/api/publish", headers, publish(json!({"case": what}))).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(!body.contains("result"), "{what}: {body}");
        let (status, _) = post(
            &c.http,
            &c.a,
            "/api",
            headers,
            format!(r#"{{"method":"publish","params":{}}}"#, publish(json!({"legacy": what}))),
        )
        .await;
        assert_eq!(status, 401, "legacy /api, {what}");
    }

    // Bodies over the limit: 413, with and without Content-Length.
    let oversized = publish(json!({"pad": "x".repeat(MAX_BODY)}));
    assert!(oversized.len() > MAX_BODY);
    let (status, body) = post(&c.http, &c.a, "/api/publish", &key, oversized.clone()).await;
    assert_eq!(status, 413, "oversized with Content-Length: {body}");
    let (status, head) = post_chunked(&c.a, "/api/publish", oversized.as_bytes()).await;
    assert_eq!(status, 413, "oversized, chunked: {head}");
    let (status, head) = post_chunked(&c.a, "/api/publish", r#"{"channel":"","data":{}}"#.as_bytes()).await;
    assert_eq!(status, 200, "small chunked body is read: {head}");
    assert!(head.contains(r#""code":107"#), "small chunked body is parsed: {head}");
    let (status, _) =
        post(&c.http, &c.a, "/api", &key, format!(r#"{{"method":"publish","params":{oversized}}}"#)).await;
    assert_eq!(status, 413, "oversized legacy");

    // Bodies that are not a publish request: HTTP 400, as Centrifugo.
    for (what, body) in [
        ("malformed JSON", format!(r#"{{"channel":"{channel}","data":{{"x":1}}"#)),
        ("not an object", "[1,2,3]".to_string()),
        ("tags not strings", json!({"channel": channel, "data": {}, "tags": {"n": 1}}).to_string()),
    ] {
        let (status, text) = post(&c.http, &c.a, "/api/publish", &key, body).await;
        assert_eq!((status, text.as_str()), (400, "Bad Request\n"), "{what}");
    }
    // Invalid params: 107, HTTP 200.
    let long = "c".repeat(MAX_CHANNEL + 1);
    let bad_params = [
        ("empty channel", json!({"channel": "", "data": {"x": 1}}).to_string()),
        ("channel too long", json!({"channel": long, "data": {"x": 1}}).to_string()),
        ("no data", json!({"channel": channel}).to_string()),
        ("bad base64", json!({"channel": channel, "b64data": "%%%"}).to_string()),
    ];
    for (what, body) in bad_params {
        let (status, text) = post(&c.http, &c.a, "/api/publish", &key, body).await;
        assert_eq!(status, 200, "{what}: {text}");
        let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert_eq!(reply, json!({"error": {"code": 107, "message": "bad request"}}), "{what}");
    }
    // Invalid channels and codes for the other methods, too.
    for (method, params) in [
        ("subscribe", json!({"user": "bob", "channel": ""})),
        ("subscribe", json!({"user": "bob", "channel": long})),
        ("unsubscribe", json!({"user": "bob", "channel": ""})),
        ("disconnect", json!({"user": "bob", "disconnect": {"code": 1000, "reason": "not a Centrifugo code"}})),
        ("channels", json!({"pattern": "[unclosed"})),
    ] {
        assert_eq!(error_code(&c.api(method, params.clone()).await), 107, "{method} {params}");
    }
    // The unknown method was not a publish either.
    assert_eq!(error_code(&c.api("publish_now", json!({"channel": channel, "data": {}})).await), 104);

    sub.expect_silence(QUIET).await;

    // The limit is inclusive, and the subscriber was listening all along.
    let mut exact = publish(json!({"pad": ""}));
    let pad = MAX_BODY - exact.len();
    exact = publish(json!({"pad": "y".repeat(pad)}));
    assert_eq!(exact.len(), MAX_BODY);
    let (status, body) = post(&c.http, &c.a, "/api/publish", &key, exact).await;
    assert_eq!((status, body.as_str()), (200, r#"{"result":{}}"#));
    let got = sub.recv_publication(channel, TIMEOUT).await;
    assert_eq!(got["data"]["pad"].as_str().map(str::len), Some(pad));
    sub.expect_silence(QUIET).await;
}

/// POST with `Transfer-Encoding: chunked` (no Content-Length) over a raw
/// socket; returns the status and the response head.
async fn post_chunked(gw: &Gateway, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.port())).await.expect("connect");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        gw.port()
    )
    .into_bytes();
    for chunk in body.chunks(500) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP reply: {text:?}"));
    (status, text)
}

// ------------------------------------------------------------- legacy /api

#[tokio::test]
async fn legacy_api_answers_each_command() {
    let c = Cluster::start();
    let mut sub = subscriber(&c.b, "bob", "legacy").await;
    // Commands one after another, on lines or not; a method by name (any
    // case) or number; `id` echoed. Answers as Centrifugo v6.9.1 gives them.
    let body = [
        json!({"method": "publish", "params": {"channel": "legacy", "data": {"line": 1}}}).to_string(),
        json!({"method": "PUBLISH", "params": {"channel": "legacy", "data": {"line": 2}}, "id": 7}).to_string(),
        String::new(),
        json!({"method": 1, "params": {"channels": ["legacy"], "data": {"line": 3}}}).to_string()
            + &json!({"method": "publish", "params": {"channel": "", "data": {}}}).to_string(),
        json!({"method": "publish", "params": [1]}).to_string(),
        json!({"method": "publish", "params": {"channel": 5}}).to_string(),
        json!({"method": 13, "params": {}}).to_string(),
        json!({"method": "rpc", "params": {}}).to_string(),
        json!({"method": "info", "params": []}).to_string(),
    ]
    .join("\n");
    let (status, text) = post(&c.http, &c.a, "/api", &[("Authorization", &format!("apikey {API_KEY}"))], body).await;
    assert_eq!(status, 200, "{text}");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("reply line {l:?}: {e}"))).collect();
    assert_eq!(lines.len(), 9, "one reply per command: {text}");
    assert_eq!(lines[0], json!({"result": {}}));
    assert_eq!(lines[1], json!({"id": 7, "result": {}}));
    assert_eq!(lines[2], json!({"result": {"responses": [{"result": {}}]}}));
    assert_eq!(error_code(&lines[3]), 107, "empty channel");
    assert_eq!(error_code(&lines[4]), 107, "params not an object");
    assert_eq!(error_code(&lines[5]), 107, "params of the wrong type");
    assert_eq!(error_code(&lines[6]), 104, "a method number Centrifugo does not use");
    assert_eq!(error_code(&lines[7]), 104, "a method natsgate does not serve");
    assert!(lines[8]["result"]["nodes"].is_array(), "info ignores its params: {}", lines[8]);
    for line in [1, 2, 3] {
        assert_eq!(sub.recv_publication("legacy", TIMEOUT).await["data"], json!({"line": line}));
    }
    sub.expect_silence(QUIET).await;

    // White space only: no commands, no replies.
    let (status, text) = post(&c.http, &c.a, "/api", &[("X-API-Key", API_KEY)], "\n\n".into()).await;
    assert_eq!((status, text.as_str()), (200, ""));
}

// ------------------------------------------------------ malformed bodies

/// What Centrifugo v6.9.1 answers (checked against the real server) to
/// bodies that do not decode into the method's request: HTTP 400 with Go's
/// `Bad Request` text on `/api/<method>`, for a whole `batch` when one
/// command's method field is malformed, and for a whole legacy `/api` body
/// when one command is; nothing of a refused request is run.
#[tokio::test]
async fn malformed_bodies_are_http_400_on_every_path() {
    let c = Cluster::start();
    let channel = "shapes";
    let mut sub = subscriber(&c.b, "bob", channel).await;
    let key = [("X-API-Key", API_KEY)];
    let publish = json!({"channel": channel, "data": {"ok": true}});

    let not_objects = ["[]", "1", "\"x\"", "true", "", "  ", "nonjson", "{\"channel\":\"a\"} x", "{}{}"];
    let methods = [
        "publish",
        "broadcast",
        "subscribe",
        "unsubscribe",
        "disconnect",
        "refresh",
        "presence",
        "presence_stats",
        "history",
        "history_remove",
        "channels",
        "info",
        "batch",
    ];
    for method in methods {
        for body in not_objects {
            let (status, text) = post(&c.http, &c.a, &format!("/api/{method}"), &key, body.into()).await;
            assert_eq!((status, text.as_str()), (400, "Bad Request\n"), "{method} with body {body:?}");
        }
    }
    // A field of the wrong type; a nested object that is not one.
    for (method, body) in [
        ("publish", json!({"channel": 5, "data": {}})),
        ("publish", json!({"channel": channel, "data": {}, "skip_history": 1})),
        ("broadcast", json!({"channels": channel, "data": {}})),
        ("history", json!({"channel": channel, "limit": 3_000_000_000_u64})),
        ("history", json!({"channel": channel, "since": [1, "epoch"]})),
        ("disconnect", json!({"user": "bob", "disconnect": "bye"})),
        ("subscribe", json!({"user": "bob", "channel": ["x"]})),
    ] {
        let (status, text) = post(&c.http, &c.a, &format!("/api/{method}"), &key, body.to_string()).await;
        assert_eq!((status, text.as_str()), (400, "Bad Request\n"), "{method} {body}");
    }
    // `null` is an empty request; unknown fields are ignored.
    assert!(c.api("info", Value::Null).await["result"]["nodes"].is_array());
    assert!(c.api("info", json!({"channel": 5})).await["result"]["nodes"].is_array());
    assert_eq!(error_code(&c.api("publish", Value::Null).await), 107);
    assert_eq!(c.api("publish", json!({"channel": channel, "data": 1, "zzz": [1]})).await, json!({"result": {}}));
    assert_eq!(sub.recv_publication(channel, TIMEOUT).await["data"], json!(1));
    // `b64data` wins over `data`, as in Centrifugo.
    let both = json!({"channel": channel, "data": {"x": 1}, "b64data": "eyJiNjQiOjF9"});
    assert_eq!(c.api("publish", both).await, json!({"result": {}}));
    assert_eq!(sub.recv_publication(channel, TIMEOUT).await["data"], json!({"b64": 1}));

    // Batch: one malformed method field refuses the whole batch ...
    for commands in [
        json!([{"publish": []}]),
        json!([{"publish": publish}, {"publish": {"channel": 5}}]),
        json!([{"publish": publish}, {"info": 1}]),
        json!([{"publish": publish}, 1]),
        json!([[]]),
        json!({}),
    ] {
        let body = json!({ "commands": commands }).to_string();
        let (status, text) = post(&c.http, &c.a, "/api/batch", &key, body).await;
        assert_eq!((status, text.as_str()), (400, "Bad Request\n"), "batch {commands}");
    }
    // ... while a `null` command is 107 and one naming no method 104.
    let body = json!({"commands": [null, {}, {"nope": {}}, {"publish": null}]}).to_string();
    let (status, text) = post(&c.http, &c.a, "/api/batch", &key, body).await;
    assert_eq!(status, 200, "{text}");
    let codes: Vec<u64> =
        serde_json::from_str::<Value>(&text).unwrap()["replies"].as_array().unwrap().iter().map(error_code).collect();
    assert_eq!(codes, [107, 104, 104, 104], "{text}");

    // Legacy /api: an empty body, a command that is not an object, a method
    // Centrifugo does not know or an `id` that is no uint32 refuse the whole
    // request, even after a good command.
    let good = json!({"method": "publish", "params": publish}).to_string();
    for bad in ["[]", "nonjson", r#"{"method":"nosuch"}"#, r#"{"method":"batch","params":{}}"#, r#"{"id":-1}"#] {
        let (status, text) = post(&c.http, &c.a, "/api", &key, format!("{good}\n{bad}")).await;
        assert_eq!((status, text.as_str()), (400, "Bad Request\n"), "legacy {bad:?}");
    }
    let (status, text) = post(&c.http, &c.a, "/api", &key, String::new()).await;
    assert_eq!((status, text.as_str()), (400, "Bad Request\n"), "legacy empty body");

    sub.expect_silence(QUIET).await;
}

// ------------------------------------------------- error mode and access

#[tokio::test]
async fn transport_error_mode_uses_http_statuses() {
    let gw = api_gateway("gw-transport").env("NATSGATE_API_ERROR_MODE", "transport").start();
    let http = http_client();
    let key = [("X-API-Key", API_KEY)];
    let cases = [
        ("publish", r#"{"channel":"ok","data":{}}"#.to_string(), 200, None),
        ("publish", json!({"channel": "", "data": {}}).to_string(), 400, Some(107)),
        ("nope", "{}".to_string(), 404, Some(104)),
        ("presence", json!({"channel": "ok"}).to_string(), 501, Some(108)),
        ("history", json!({"channel": "ok"}).to_string(), 501, Some(108)),
        ("batch", json!({"commands": [{"nope": {}}]}).to_string(), 200, None),
    ];
    for (method, body, want_status, want_code) in cases {
        let (status, text) = post(&http, &gw, &format!("/api/{method}"), &key, body.clone()).await;
        assert_eq!(status, want_status, "{method} {body}: {text}");
        let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method}: {e}: {text}"));
        match want_code {
            Some(code) => assert_eq!(error_code(&reply), code, "{method} {body}"),
            None => assert!(reply.get("error").is_none(), "{method}: {reply}"),
        }
    }
    // A malformed body is the same plain 400 in either mode.
    let (status, text) = post(&http, &gw, "/api/publish", &key, "{broken".into()).await;
    assert_eq!((status, text.as_str()), (400, "Bad Request\n"));
    let (status, _) = post(&http, &gw, "/api/publish", &[], r#"{"channel":"ok","data":{}}"#.into()).await;
    assert_eq!(status, 401);
    let (status, _) =
        post(&http, &gw, "/api/publish", &key, format!(r#"{{"channel":"ok","data":"{}"}}"#, "z".repeat(MAX_BODY)))
            .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn insecure_api_needs_no_key_and_an_unset_key_refuses_everyone() {
    let insecure = Gateway::builder().permissive().env("NATSGATE_API_INSECURE", "true").start();
    let keyless = Gateway::builder().permissive().start();
    let http = http_client();
    let body = || json!({"channel": "open", "data": {}}).to_string();
    assert_eq!(post(&http, &insecure, "/api/publish", &[], body()).await, (200, r#"{"result":{}}"#.to_string()));
    for headers in
        [&[][..], &[("X-API-Key", "")][..], &[("X-API-Key", "anything")][..], &[("Authorization", "apikey ")][..]]
    {
        let (status, text) = post(&http, &keyless, "/api/publish", headers, body()).await;
        assert_eq!(status, 401, "no API key configured, headers {headers:?}: {text}");
    }
}

// ---------------------------------------------------- direct NATS publish

#[tokio::test]
async fn direct_nats_publish_reaches_json_and_protobuf_clients() {
    let c = Cluster::start();
    // Dots and underscores must be escaped in the subject.
    let channel = "from.nats_1";
    let subject = SubjectMap::new("natsgate").channel_subject(channel);
    // The CLI agrees with the library.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natsgate"))
        .args(["subject", channel])
        .output()
        .expect("natsgate subject");
    assert!(out.status.success(), "natsgate subject: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), subject);

    let mut json_b = subscriber_with(&c.b, "bob", channel, Protocol::Json).await;
    let mut proto_b = subscriber_with(&c.b, "bob", channel, Protocol::Protobuf).await;
    let mut json_a = subscriber_with(&c.a, "alice", channel, Protocol::Json).await;
    let nats = async_nats::connect(c.nats.url()).await.expect("connect to nats-server");

    // Valid JSON with a tags header: everyone gets data and tags.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Natsgate-Tags", r#"{"origin":"nats","n":"1"}"#);
    nats.publish_with_headers(subject.clone(), headers, r#"{"direct":true}"#.into()).await.expect("publish");
    nats.flush().await.expect("flush");
    for sub in [&mut json_b, &mut proto_b, &mut json_a] {
        let got = sub.recv_publication(channel, TIMEOUT).await;
        assert_eq!(got["data"], json!({"direct": true}), "{:?}: {got}", sub.protocol());
        assert_eq!(got["tags"], json!({"origin": "nats", "n": "1"}), "{:?}: {got}", sub.protocol());
    }

    // Not JSON: Protobuf clients get the bytes, JSON clients nothing.
    let dropped_before = metric(&c.b, r#"natsgate_publications_dropped_total{reason="invalid_json"}"#);
    let binary: &[u8] = b"\x00\xffnot json\x01";
    nats.publish(subject.clone(), bytes::Bytes::from_static(binary)).await.expect("publish");
    nats.flush().await.expect("flush");
    let reply = proto_b.recv_reply(TIMEOUT).await;
    let publication = reply.push.and_then(|p| p.r#pub).expect("publication push to the Protobuf client");
    assert_eq!(publication.data.as_ref(), binary);
    json_b.expect_silence(QUIET).await;
    json_a.expect_silence(Duration::ZERO).await;
    let dropped_after = metric(&c.b, r#"natsgate_publications_dropped_total{reason="invalid_json"}"#);
    assert!(dropped_after > dropped_before, "invalid_json drops on B: {dropped_before} -> {dropped_after}");

    // A malformed tags header loses the tags, not the publication.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Natsgate-Tags", "not json");
    nats.publish_with_headers(subject.clone(), headers, "\"untagged\"".into()).await.expect("publish");
    nats.flush().await.expect("flush");
    for sub in [&mut json_b, &mut proto_b, &mut json_a] {
        let got = sub.recv_publication(channel, TIMEOUT).await;
        assert_eq!(got["data"], json!("untagged"), "{:?}: {got}", sub.protocol());
        assert!(got.get("tags").is_none(), "{:?}: {got}", sub.protocol());
    }

    // Still working: the next valid publication arrives everywhere.
    nats.publish(subject.clone(), r#"[1,2,3]"#.into()).await.expect("publish");
    nats.flush().await.expect("flush");
    for sub in [&mut json_b, &mut proto_b, &mut json_a] {
        assert_eq!(sub.recv_publication(channel, TIMEOUT).await["data"], json!([1, 2, 3]), "{:?}", sub.protocol());
    }
}
