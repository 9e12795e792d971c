//! The client protocol end to end, against real `natsgate` processes: every
//! command over JSON and Protobuf, batching, tokens and expiry, ping/pong and
//! stale connections, bad input, channel-to-subject safety on NATS, slow
//! consumers, several gateways on one NATS, graceful shutdown and origins.
//!
//! Every wait is bounded. Short sleeps (<= 500 ms) appear only to show that
//! something does NOT happen.

use natsgate_test_support as common;

use base64::Engine as _;
use common::{
    eventually, free_port, hs256_token, now_secs, Gateway, NatsServer, Protocol, WsClient, WsError, SECRET, TIMEOUT,
};
use futures_util::{SinkExt, StreamExt};
use natsgate::broker::subject::SubjectMap;
use natsgate::protocol::{Command, PingRequest};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const BOTH: [Protocol; 2] = [Protocol::Json, Protocol::Protobuf];

/// A connection token for `user` that never expires.
fn token(user: &str) -> String {
    hs256_token(SECRET, user, None, Value::Null)
}

fn permissive() -> common::GatewayBuilder {
    Gateway::builder().permissive()
}

/// A WebSocket connected (Centrifugo `connect`) as `user`.
async fn connected(gw: &Gateway, protocol: Protocol, user: &str) -> WsClient {
    let mut c = WsClient::connect(&gw.ws_url(), protocol).await;
    c.connect_token(&token(user)).await;
    c
}

/// The error code of an error reply; panics on a non-error reply.
#[track_caller]
fn error_code(reply: &Value) -> u64 {
    reply["error"]["code"].as_u64().unwrap_or_else(|| panic!("expected an error reply, got {reply}"))
}

/// Sends `command` (no id) and asserts the reply is error `code`.
async fn expect_error(c: &mut WsClient, command: Value, code: u64) -> Value {
    let reply = c.request(command.clone()).await;
    assert_eq!(reply["error"]["code"], json!(code), "{:?}: {command} -> {reply}", c.protocol());
    assert!(
        reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error replies need a message (centrifuge-python): {reply}"
    );
    reply
}

/// Sends `text` as one frame and asserts the server closes with `code`.
async fn expect_close_after(c: &mut WsClient, text: &str, code: u16) {
    let protocol = c.protocol();
    c.send_json(text).await;
    let (got, reason) = c.expect_close(TIMEOUT).await;
    assert_eq!(got, code, "{protocol:?}: after {text}: closed with {got} {reason:?}");
}

/// Publishes `data` to `channel` and asserts a successful reply.
async fn publish(c: &mut WsClient, channel: &str, data: Value) {
    let reply = c.request(json!({"publish": {"channel": channel, "data": data}})).await;
    assert!(reply.get("publish").is_some() && reply.get("error").is_none(), "publish to {channel} failed: {reply}");
}

/// The next message must be a publication push on `channel`; returns `pub`.
async fn next_publication(c: &mut WsClient, channel: &str) -> Value {
    let m = c.next(TIMEOUT).await.unwrap_or_else(|e| panic!("expected a publication on {channel}: {e:?}"));
    assert_eq!(m["push"]["channel"], json!(channel), "expected a publication on {channel}, got {m}");
    assert!(m["push"]["pub"].is_object(), "expected a publication on {channel}, got {m}");
    m["push"]["pub"].clone()
}

/// `GET url` with a bounded wait; (status, body).
async fn http(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("reqwest client");
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A sample's value in a Prometheus text page (`name` includes labels).
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn gateway_metric(gw: &Gateway, name: &str) -> Option<f64> {
    let (status, page) = http(&format!("{}/metrics", gw.http_url())).await;
    assert_eq!(status, 200, "{page}");
    metric(&page, name)
}

/// A raw WebSocket (no Centrifugo framing help), to check exact bytes.
type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_connect(gw: &Gateway, protocol: Protocol, origin: Option<&str>) -> Result<RawWs, u16> {
    let mut request = gw.ws_url().into_client_request().expect("request");
    if protocol == Protocol::Protobuf {
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("centrifuge-protobuf"));
    }
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", HeaderValue::from_str(origin).expect("origin header"));
    }
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => panic!("handshake timed out"),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(response.status().as_u16()),
        Ok(Err(e)) => panic!("handshake failed: {e}"),
    }
}

/// Like `raw_connect`, with `extra` filler headers: more than the gateway's
/// fast path looks at (32) send the upgrade through the warp route instead.
async fn raw_connect_padded(
    gw: &Gateway,
    protocol: Protocol,
    origin: Option<&str>,
    extra: usize,
) -> Result<RawWs, u16> {
    let mut request = gw.ws_url().into_client_request().expect("request");
    if protocol == Protocol::Protobuf {
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("centrifuge-protobuf"));
    }
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", HeaderValue::from_str(origin).expect("origin header"));
    }
    for i in 0..extra {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes());
        request.headers_mut().insert(name.expect("header name"), HeaderValue::from_static("1"));
    }
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => panic!("handshake timed out"),
        Ok(Ok((ws, response))) => {
            let echoed = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap_or("").to_string());
            let expected = (protocol == Protocol::Protobuf).then(|| "centrifuge-protobuf".to_string());
            assert_eq!(echoed, expected, "subprotocol echo with {extra} filler headers");
            Ok(ws)
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(response.status().as_u16()),
        Ok(Err(e)) => panic!("handshake failed: {e}"),
    }
}

/// Upgrades take a direct path (raw socket to tungstenite) unless their
/// head is unusual, then warp's route: both must admit, refuse and serve
/// alike.
#[tokio::test]
async fn both_upgrade_paths_behave_alike() {
    let gw = permissive().env("NATSGATE_ALLOWED_ORIGINS", "http://good.example").start();
    for extra in [0, 40] {
        for protocol in [Protocol::Json, Protocol::Protobuf] {
            let mut ws = raw_connect_padded(&gw, protocol, None, extra).await.expect("upgrade");
            raw_connect_command(&mut ws, protocol, "alice").await;
        }
        let ws = raw_connect_padded(&gw, Protocol::Json, Some("http://good.example"), extra).await;
        assert!(ws.is_ok(), "allowed origin with {extra} filler headers");
        let refused = raw_connect_padded(&gw, Protocol::Json, Some("http://evil.example"), extra).await;
        assert_eq!(refused.err(), Some(403), "foreign origin with {extra} filler headers");
    }
    // A plain GET of the WebSocket path is not an upgrade: 400 from the route.
    let (status, _) = http(&format!("http://127.0.0.1:{}/connection/websocket", gw.port())).await;
    assert_eq!(status, 400);
}

/// The next data message of a raw socket (control frames skipped).
async fn raw_next(ws: &mut RawWs, timeout: Duration) -> Message {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("nothing within {timeout:?}"))
            .expect("stream ended")
            .expect("read");
        match m {
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            other => return other,
        }
    }
}

async fn raw_connect_command(ws: &mut RawWs, protocol: Protocol, user: &str) {
    let command = Command {
        id: 1,
        connect: Some(natsgate::protocol::ConnectRequest { token: token(user), ..Default::default() }),
        ..Default::default()
    };
    let message = match protocol {
        Protocol::Json => Message::text(serde_json::to_string(&command).unwrap()),
        Protocol::Protobuf => {
            let mut buf = Vec::new();
            prost::Message::encode_length_delimited(&command, &mut buf).unwrap();
            Message::binary(buf)
        }
    };
    ws.send(message).await.expect("send connect");
    let reply = raw_next(ws, TIMEOUT).await;
    let ok = match (protocol, &reply) {
        (Protocol::Json, Message::Text(t)) => t.as_str().contains("\"connect\""),
        (Protocol::Protobuf, Message::Binary(b)) => b.len() > 8,
        _ => false,
    };
    assert!(ok, "unexpected connect reply {reply:?}");
}

/// Base64url without padding, for hand-made JWTs.
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------
// 1. Every command, over JSON and Protobuf
// ---------------------------------------------------------------------------

async fn commands_happy_path(gw: &Gateway, p: Protocol) {
    let other = if p == Protocol::Json { Protocol::Protobuf } else { Protocol::Json };

    // connect
    let mut sub = WsClient::connect(&gw.ws_url(), p).await;
    let result = sub.connect_token(&token("alice")).await;
    assert!(result["client"].as_str().is_some_and(|c| !c.is_empty()), "{result}");
    assert!(result["version"].as_str().is_some_and(|v| !v.is_empty()), "{result}");
    assert!(result["ping"].as_u64().is_some_and(|v| v > 0), "{result}");
    assert_eq!(result["pong"], json!(true), "{result}");
    assert!(result.get("expires").is_none_or(|e| e == &json!(false)), "{result}");

    // subscribe
    let channel = format!("news-{p:?}");
    let result = sub.subscribe(&channel).await;
    assert!(result.is_object(), "{result}");

    // publish from a client of the other protocol, and of the same one
    for publisher_protocol in [other, p] {
        let mut publisher = connected(gw, publisher_protocol, "bob").await;
        let data = json!({"text": "hello", "from": format!("{publisher_protocol:?}"), "n": [1, 2.5, null]});
        publish(&mut publisher, &channel, data.clone()).await;
        let publication = next_publication(&mut sub, &channel).await;
        assert_eq!(publication["data"], data, "{publication}");
        assert_eq!(publication["info"]["user"], json!("bob"), "{publication}");
        assert!(publication["info"]["client"].as_str().is_some_and(|c| !c.is_empty()), "{publication}");
    }

    // The subscriber publishing into its own channel gets its own publication.
    publish(&mut sub, &channel, json!({"self": true})).await;
    let publication = next_publication(&mut sub, &channel).await;
    assert_eq!(publication["data"], json!({"self": true}));
    assert_eq!(publication["info"]["user"], json!("alice"));

    // unsubscribe: no more pushes from that channel.
    let reply = sub.request(json!({"unsubscribe": {"channel": channel}})).await;
    assert!(reply.get("unsubscribe").is_some() && reply.get("error").is_none(), "{reply}");
    let sentinel = format!("sentinel-{p:?}");
    sub.subscribe(&sentinel).await;
    let mut publisher = connected(gw, other, "bob").await;
    publish(&mut publisher, &channel, json!({"after": "unsubscribe"})).await;
    publish(&mut publisher, &sentinel, json!({"sentinel": 1})).await;
    // The embedded broker delivers synchronously in publish order: the
    // sentinel comes first only if the unsubscribed channel sent nothing.
    let publication = next_publication(&mut sub, &sentinel).await;
    assert_eq!(publication["data"], json!({"sentinel": 1}));
    sub.expect_silence(Duration::from_millis(200)).await;

    // ping command
    let reply = sub.request(json!({"ping": {}})).await;
    assert!(reply["ping"].is_object() && reply.get("error").is_none(), "{reply}");

    // refresh with a new token
    let fresh = hs256_token(SECRET, "alice", Some(120), Value::Null);
    let reply = sub.request(json!({"refresh": {"token": fresh}})).await;
    let refresh = &reply["refresh"];
    assert!(refresh.is_object(), "{reply}");
    assert_eq!(refresh["expires"], json!(true), "{reply}");
    let ttl = refresh["ttl"].as_u64().unwrap_or(0);
    assert!((100..=120).contains(&ttl), "ttl {ttl}: {reply}");

    // rpc: no RPC handler -> 108
    expect_error(&mut sub, json!({"rpc": {"method": "sum", "data": {"a": 1}}}), 108).await;
    // presence, presence_stats, history: not enabled -> 108
    expect_error(&mut sub, json!({"presence": {"channel": sentinel}}), 108).await;
    expect_error(&mut sub, json!({"presence_stats": {"channel": sentinel}}), 108).await;
    expect_error(&mut sub, json!({"history": {"channel": sentinel, "limit": 10}}), 108).await;

    // The connection survives all of those.
    let reply = sub.request(json!({"ping": {}})).await;
    assert!(reply["ping"].is_object(), "{reply}");

    // send (async message, no id): no handler -> close 3508
    expect_close_after(&mut sub, &json!({"send": {"data": {"x": 1}}}).to_string(), 3508).await;
}

async fn commands_refused(gw: &Gateway, p: Protocol) {
    let url = gw.ws_url();

    // Unknown command: an id and no method -> 3501.
    let mut c = connected(gw, p, "u1").await;
    expect_close_after(&mut c, r#"{"id":7}"#, 3501).await;

    // Any command before connect -> 3501.
    for command in [
        r#"{"id":1,"ping":{}}"#,
        r#"{"id":1,"subscribe":{"channel":"x"}}"#,
        r#"{"id":1,"publish":{"channel":"x","data":{}}}"#,
    ] {
        let mut c = WsClient::connect(&url, p).await;
        expect_close_after(&mut c, command, 3501).await;
    }

    // connect twice -> 3501
    let mut c = connected(gw, p, "u1").await;
    let text = json!({"id": 9, "connect": {"token": token("u1")}}).to_string();
    expect_close_after(&mut c, &text, 3501).await;

    // connect without a token, anonymous not allowed -> 3501
    let mut c = WsClient::connect(&url, p).await;
    expect_close_after(&mut c, r#"{"id":1,"connect":{}}"#, 3501).await;

    // subscribe twice -> 105
    let mut c = connected(gw, p, "u1").await;
    c.subscribe("twice").await;
    expect_error(&mut c, json!({"subscribe": {"channel": "twice"}}), 105).await;

    // channel limit (NATSGATE_CLIENT_CHANNEL_LIMIT=3) -> 106
    c.subscribe("limit-2").await;
    c.subscribe("limit-3").await;
    expect_error(&mut c, json!({"subscribe": {"channel": "limit-4"}}), 106).await;
    // Leaving one makes room again.
    c.request(json!({"unsubscribe": {"channel": "limit-2"}})).await;
    c.subscribe("limit-4").await;

    // over-long channel -> 107, for subscribe and publish
    let mut c = connected(gw, p, "u1").await;
    expect_error(&mut c, json!({"subscribe": {"channel": "x".repeat(256)}}), 107).await;
    expect_error(&mut c, json!({"publish": {"channel": "x".repeat(256), "data": {}}}), 107).await;
    // exactly at the limit is fine
    c.subscribe(&"y".repeat(255)).await;

    // Unicode channel names: Centrifugo without channel_regex takes ASCII only.
    for name in ["ключ", "频道", "emoji🎉", "caf\u{e9}"] {
        expect_error(&mut c, json!({"subscribe": {"channel": name}}), 107).await;
        expect_error(&mut c, json!({"publish": {"channel": name, "data": {}}}), 107).await;
    }

    // unknown namespace -> 102
    expect_error(&mut c, json!({"subscribe": {"channel": "nons:x"}}), 102).await;

    // private `$` channel without a subscription token -> 103
    expect_error(&mut c, json!({"subscribe": {"channel": "$secret"}}), 103).await;

    // The connection survived every error reply.
    let reply = c.request(json!({"ping": {}})).await;
    assert!(reply["ping"].is_object(), "{reply}");

    // empty channel -> 3501
    expect_close_after(&mut c, r#"{"id":50,"subscribe":{"channel":""}}"#, 3501).await;
    let mut c = connected(gw, p, "u1").await;
    expect_close_after(&mut c, r#"{"id":50,"publish":{"channel":"","data":{}}}"#, 3501).await;
}

async fn commands_permissions(restrictive: &Gateway, anonymous: &Gateway, p: Protocol) {
    // allow_subscribe_for_client / allow_publish_for_client off -> 103
    let mut c = connected(restrictive, p, "carol").await;
    expect_error(&mut c, json!({"subscribe": {"channel": "news"}}), 103).await;
    expect_error(&mut c, json!({"publish": {"channel": "news", "data": {"x": 1}}}), 103).await;
    let reply = c.request(json!({"ping": {}})).await;
    assert!(reply["ping"].is_object(), "{reply}");

    // ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN=true: connect without a token works.
    let mut anon = WsClient::connect(&anonymous.ws_url(), p).await;
    let reply = anon.request(json!({"connect": {}})).await;
    let result = &reply["connect"];
    assert!(result["client"].as_str().is_some_and(|c| !c.is_empty()), "{reply}");
    assert_eq!(result["pong"], json!(true), "{reply}");
    // ...but an anonymous client may not subscribe unless allowed for anonymous.
    expect_error(&mut anon, json!({"subscribe": {"channel": "news"}}), 103).await;
    // A client with a token still connects on that gateway.
    let mut named = connected(anonymous, p, "dave").await;
    named.subscribe("news").await;
}

async fn commands_suite(p: Protocol) {
    let gw = permissive().env("NATSGATE_CLIENT_CHANNEL_LIMIT", "3").start();
    commands_happy_path(&gw, p).await;
    commands_refused(&gw, p).await;

    let restrictive = Gateway::builder().env("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET).start();
    let anonymous = permissive().env("NATSGATE_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN", "true").start();
    commands_permissions(&restrictive, &anonymous, p).await;
}

#[tokio::test]
async fn commands_json() {
    commands_suite(Protocol::Json).await;
}

#[tokio::test]
async fn commands_protobuf() {
    commands_suite(Protocol::Protobuf).await;
}

/// Protobuf clients may publish binary data: Protobuf subscribers get the
/// exact bytes; JSON subscribers cannot (data is embedded as raw JSON) and
/// are skipped rather than sent a broken frame.
#[tokio::test]
async fn binary_data_reaches_protobuf_subscribers_only() {
    let gw = permissive().start();
    let mut pb = connected(&gw, Protocol::Protobuf, "pb").await;
    pb.subscribe("bin").await;
    let mut js = connected(&gw, Protocol::Json, "js").await;
    js.subscribe("bin").await;
    let mut publisher = connected(&gw, Protocol::Protobuf, "pub").await;
    let binary = vec![0xffu8, 0x00, 0x01, b'{'];
    publisher
        .send_commands(&[Command {
            id: 100,
            publish: Some(natsgate::protocol::PublishRequest {
                channel: "bin".into(),
                data: binary.clone().into(),
                ..Default::default()
            }),
            ..Default::default()
        }])
        .await;
    let reply = publisher.take_reply(100, TIMEOUT).await;
    assert!(reply["publish"].is_object(), "{reply}");
    let push = pb.recv_reply(TIMEOUT).await;
    let publication = push.push.and_then(|p| p.r#pub).expect("a publication push");
    assert_eq!(&publication.data[..], &binary[..]);
    assert_eq!(publication.info.map(|i| i.user).as_deref(), Some("pub"));
    // The JSON subscriber's next message is the next JSON publication.
    publish(&mut publisher, "bin", json!({"json": true})).await;
    assert_eq!(next_publication(&mut js, "bin").await["data"], json!({"json": true}));
    assert_eq!(next_publication(&mut pb, "bin").await["data"], json!({"json": true}));
}

// ---------------------------------------------------------------------------
// 2. Batching
// ---------------------------------------------------------------------------

#[tokio::test]
async fn batched_commands_get_batched_replies_in_order() {
    let gw = permissive().start();
    for p in BOTH {
        // As centrifuge-js does: connect and subscribes in one frame, then more.
        let mut c = WsClient::connect(&gw.ws_url(), p).await;
        let frame = [
            json!({"id": 1, "connect": {"token": token("batch")}}),
            json!({"id": 2, "subscribe": {"channel": "b1", "flag": 1}}),
            json!({"id": 3, "subscribe": {"channel": "b2"}}),
            json!({"id": 4, "ping": {}}),
            json!({"id": 5, "publish": {"channel": "elsewhere", "data": {"k": "v"}}}),
            json!({"id": 6, "rpc": {"method": "m"}}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        if p == Protocol::Json {
            // A trailing newline is allowed too.
            c.send_text(&format!("{frame}\n")).await;
        } else {
            c.send_json(&frame).await;
        }
        let replies = c.recv_frame(TIMEOUT).await;
        let ids: Vec<Value> = replies.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6].map(|i| json!(i)), "{p:?}: one frame, in order: {replies:?}");
        assert!(replies[0]["connect"]["client"].is_string(), "{replies:?}");
        assert!(replies[1]["subscribe"].is_object(), "{replies:?}");
        assert!(replies[2]["subscribe"].is_object(), "{replies:?}");
        assert!(replies[3]["ping"].is_object(), "{replies:?}");
        assert!(replies[4]["publish"].is_object(), "{replies:?}");
        assert_eq!(error_code(&replies[5]), 108, "{replies:?}");

        // A second batch on the connected client, built from typed commands
        // (several length-prefixed messages in one binary frame in Protobuf).
        let commands: Vec<Command> =
            (10..15).map(|id| Command { id, ping: Some(PingRequest {}), ..Default::default() }).collect();
        c.send_commands(&commands).await;
        let replies = c.recv_frame(TIMEOUT).await;
        let ids: Vec<Value> = replies.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, (10..15).map(|i| json!(i)).collect::<Vec<_>>(), "{p:?}: {replies:?}");
    }
}

// Replies queued just before a disconnect are written before the close frame
// (Centrifugo flushes queued messages before closing). Regression test: the
// writer in src/transport/websocket.rs once raced the pending write against
// the close with an unbiased `select!` and dropped about half of them.
// Ten rounds per protocol make a 50% race show up with near certainty.
#[tokio::test]
async fn replies_before_a_disconnect_in_the_same_frame_are_delivered() {
    let gw = permissive().start();
    let mut lost = Vec::new();
    for round in 0..10 {
        for p in BOTH {
            let mut c = connected(&gw, p, "batch").await;
            c.send_json(&format!(
                "{}\n{}\n{}",
                json!({"id": 20, "ping": {}}),
                json!({"id": 21}),
                json!({"id": 22, "ping": {}})
            ))
            .await;
            match c.next(TIMEOUT).await {
                Ok(reply) => {
                    assert_eq!(reply["id"], json!(20), "{reply}");
                    assert!(reply["ping"].is_object(), "{reply}");
                    let (code, _) = c.expect_close(TIMEOUT).await;
                    assert_eq!(code, 3501);
                }
                Err(WsError::Closed(code, _)) => {
                    assert_eq!(code, 3501);
                    lost.push((round, p));
                }
                Err(e) => panic!("{p:?}: {e:?}"),
            }
        }
    }
    assert!(lost.is_empty(), "reply to id 20 lost before close 3501 in (round, protocol): {lost:?}");
}

// ---------------------------------------------------------------------------
// 3. Tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_and_expired_tokens() {
    let gw = permissive().start();
    let good = token("tom");
    let other = hs256_token(SECRET, "jerry", None, Value::Null);
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, _sig) = rest.split_once('.').unwrap();
    let other_sig = other.rsplit('.').next().unwrap();
    let bad_signature = format!("{head}.{payload}.{other_sig}");
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{payload}.");
    let alg_none_with_sig = format!("{none_header}.{payload}.{other_sig}");
    let wrong_key = hs256_token("not-the-secret", "tom", None, Value::Null);
    let not_yet = hs256_token(SECRET, "tom", Some(7200), json!({"nbf": now_secs() + 3600}));
    let channel_claim = hs256_token(SECRET, "tom", None, json!({"channel": "news"}));
    let invalid = [
        ("channel claim in a connection token", channel_claim.as_str()),
        ("bad signature", bad_signature.as_str()),
        ("alg none", alg_none.as_str()),
        ("alg none with signature", alg_none_with_sig.as_str()),
        ("HS256 with wrong key", wrong_key.as_str()),
        ("malformed", "not-a-jwt"),
        ("malformed three parts", "a.b.c"),
        ("header only", head),
    ];

    for p in BOTH {
        // expired -> 109, and the connection is unusable afterwards.
        let mut c = WsClient::connect(&gw.ws_url(), p).await;
        let expired = hs256_token(SECRET, "tom", Some(-3600), Value::Null);
        expect_error(&mut c, json!({"connect": {"token": expired}}), 109).await;
        expect_close_after(&mut c, r#"{"id":5,"ping":{}}"#, 3501).await;

        // An expired token but a retry with a good one on the same connection
        // is also refused (Centrifugo: a new connection is needed).
        let mut c = WsClient::connect(&gw.ws_url(), p).await;
        let expired = hs256_token(SECRET, "tom", Some(-10), Value::Null);
        expect_error(&mut c, json!({"connect": {"token": expired}}), 109).await;
        let text = json!({"id": 6, "connect": {"token": good}}).to_string();
        expect_close_after(&mut c, &text, 3501).await;

        // nbf in the future: 109 like an expired token, as Centrifugo answers.
        let mut c = WsClient::connect(&gw.ws_url(), p).await;
        expect_error(&mut c, json!({"connect": {"token": not_yet}}), 109).await;

        for (what, bad) in invalid {
            let mut c = WsClient::connect(&gw.ws_url(), p).await;
            let text = json!({"id": 1, "connect": {"token": bad}}).to_string();
            c.send_json(&text).await;
            let (code, reason) = c.expect_close(TIMEOUT).await;
            assert_eq!(code, 3500, "{p:?} {what}: closed with {code} {reason:?}");
        }

        // Refresh: invalid -> 3500, expired -> 3005, another user -> 3500.
        let mut c = connected(&gw, p, "tom").await;
        let text = json!({"id": 10, "refresh": {"token": wrong_key}}).to_string();
        expect_close_after(&mut c, &text, 3500).await;
        let mut c = connected(&gw, p, "tom").await;
        let expired = hs256_token(SECRET, "tom", Some(-3600), Value::Null);
        let text = json!({"id": 10, "refresh": {"token": expired}}).to_string();
        expect_close_after(&mut c, &text, 3005).await;
        let mut c = connected(&gw, p, "tom").await;
        let text = json!({"id": 10, "refresh": {"token": other}}).to_string();
        expect_close_after(&mut c, &text, 3500).await;
    }

    // The gateway is unharmed.
    let mut c = connected(&gw, Protocol::Json, "tom").await;
    let reply = c.request(json!({"ping": {}})).await;
    assert!(reply["ping"].is_object(), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_connections_close_unless_refreshed() {
    let gw = permissive().env("NATSGATE_CLIENT_EXPIRED_CLOSE_DELAY", "1s").start();
    let exp = 2;
    let mut lapsing = Vec::new();
    let mut refreshed = Vec::new();
    for p in BOTH {
        for keep in [false, true] {
            let mut c = WsClient::connect(&gw.ws_url(), p).await;
            let t = hs256_token(SECRET, "eve", Some(exp), Value::Null);
            let result = c.connect_token(&t).await;
            assert_eq!(result["expires"], json!(true), "{result}");
            let ttl = result["ttl"].as_u64().unwrap_or(0);
            assert!((1..=exp as u64).contains(&ttl), "ttl {ttl}: {result}");
            if keep {
                let fresh = hs256_token(SECRET, "eve", Some(60), Value::Null);
                let reply = c.request(json!({"refresh": {"token": fresh}})).await;
                assert_eq!(reply["refresh"]["expires"], json!(true), "{reply}");
                assert!(reply["refresh"]["ttl"].as_u64().unwrap_or(0) >= 50, "{reply}");
                refreshed.push(c);
            } else {
                lapsing.push(c);
            }
        }
    }
    let started = Instant::now();
    // Without a refresh: 3005 after exp + the close delay.
    for c in &mut lapsing {
        let (code, reason) = c.expect_close(Duration::from_secs(exp as u64 + 4)).await;
        assert_eq!(code, 3005, "{:?}: {reason}", c.protocol());
    }
    assert!(started.elapsed() <= Duration::from_secs(exp as u64 + 3), "closed late: {:?}", started.elapsed());
    // The refreshed ones shared the old expiry and are past it now: alive.
    for c in &mut refreshed {
        let reply = c.request(json!({"ping": {}})).await;
        assert!(reply["ping"].is_object(), "{:?}: {reply}", c.protocol());
    }
    refreshed[0].expect_silence(Duration::from_millis(500)).await;
    for c in &mut refreshed {
        let reply = c.request(json!({"ping": {}})).await;
        assert!(reply["ping"].is_object(), "{:?}: {reply}", c.protocol());
    }
}

// ---------------------------------------------------------------------------
// 4. Ping/pong and stale connections
// ---------------------------------------------------------------------------

/// Reads `n` server pings on a raw socket, checking their exact bytes and
/// answering each with a pong.
async fn count_raw_pings(ws: &mut RawWs, p: Protocol, n: usize) {
    for i in 0..n {
        let m = raw_next(ws, Duration::from_secs(3)).await;
        match (p, &m) {
            (Protocol::Json, Message::Text(t)) => assert_eq!(t.as_str(), "{}", "ping {i}"),
            (Protocol::Protobuf, Message::Binary(b)) => assert_eq!(&b[..], &[0u8], "ping {i}"),
            _ => panic!("{p:?}: expected a ping, got {m:?}"),
        }
        let pong = match p {
            Protocol::Json => Message::text("{}"),
            Protocol::Protobuf => Message::binary(vec![0u8]),
        };
        ws.send(pong).await.expect("send pong");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_and_stale() {
    let gw = permissive()
        .envs(&[
            ("NATSGATE_PING_INTERVAL", "1s"),
            ("NATSGATE_PONG_TIMEOUT", "500ms"),
            ("NATSGATE_CLIENT_STALE_CLOSE_DELAY", "1s"),
        ])
        .start();

    // Connected, answering via WsClient's auto-pong.
    let mut answering = Vec::new();
    for p in BOTH {
        let mut c = WsClient::connect(&gw.ws_url(), p).await;
        let result = c.connect_token(&token("pinger")).await;
        assert_eq!(result["ping"], json!(1), "ping interval in seconds: {result}");
        assert_eq!(result["pong"], json!(true), "{result}");
        c.set_auto_pong(true);
        answering.push(c);
    }
    // Connected, never answering: 3012.
    let mut silent = Vec::new();
    for p in BOTH {
        silent.push(connected(&gw, p, "mute").await);
    }
    // Raw sockets that check the exact ping bytes and pong by hand; they
    // also serve as the clock for "several intervals".
    let mut raw = Vec::new();
    for p in BOTH {
        let mut ws = raw_connect(&gw, p, None).await.expect("upgrade");
        raw_connect_command(&mut ws, p, "clock").await;
        raw.push((p, ws));
    }
    // Never sends connect: 3502 after the stale delay.
    let mut stale = Vec::new();
    for p in BOTH {
        stale.push(WsClient::connect(&gw.ws_url(), p).await);
    }
    let started = Instant::now();

    let silent_task = async {
        for c in &mut silent {
            // The ping itself arrives first.
            let ping = c.next(Duration::from_secs(2)).await.expect("a ping");
            assert_eq!(ping, json!({}), "{:?}", c.protocol());
            let (code, reason) = c.expect_close(Duration::from_secs(3)).await;
            assert_eq!(code, 3012, "{:?}: {reason}", c.protocol());
        }
    };
    let stale_task = async {
        for c in &mut stale {
            let (code, reason) = c.expect_close(Duration::from_secs(4)).await;
            assert_eq!(code, 3502, "{:?}: {reason}", c.protocol());
        }
        assert!(started.elapsed() >= Duration::from_millis(900), "stale too early");
    };
    let clock = futures_util::future::join_all(raw.iter_mut().map(|(p, ws)| count_raw_pings(ws, *p, 3)));
    let [a, b] = &mut answering[..] else { unreachable!() };
    let readers = async {
        tokio::select! {
            m = a.next(Duration::from_secs(20)) => panic!("answering JSON client: {m:?}"),
            m = b.next(Duration::from_secs(20)) => panic!("answering Protobuf client: {m:?}"),
            _ = async { tokio::join!(clock, silent_task, stale_task) } => {}
        }
    };
    readers.await;
    assert!(started.elapsed() >= Duration::from_millis(2500), "3 pings at 1s need > 2.5 s");

    // The answering clients lived through several intervals.
    for c in &mut answering {
        let reply = c.request(json!({"ping": {}})).await;
        assert!(reply["ping"].is_object(), "{:?}: {reply}", c.protocol());
    }
}

// ---------------------------------------------------------------------------
// 5. Bad input, while a well-behaved client keeps receiving
// ---------------------------------------------------------------------------

struct Watch {
    watcher: WsClient,
    publisher: WsClient,
    n: u64,
}

impl Watch {
    async fn new(gw: &Gateway) -> Self {
        let mut watcher = connected(gw, Protocol::Json, "watcher").await;
        watcher.subscribe("watch").await;
        let publisher = connected(gw, Protocol::Protobuf, "publisher").await;
        Watch { watcher, publisher, n: 0 }
    }

    /// One more publication reaches the watcher.
    async fn check(&mut self, after: &str) {
        self.n += 1;
        publish(&mut self.publisher, "watch", json!({"n": self.n})).await;
        let publication = self.watcher.recv_publication("watch", TIMEOUT).await;
        assert_eq!(publication["data"], json!({"n": self.n}), "watcher after {after}");
    }
}

async fn open_client(gw: &Gateway, p: Protocol, connect_first: bool) -> WsClient {
    if connect_first {
        connected(gw, p, "bad").await
    } else {
        WsClient::connect(&gw.ws_url(), p).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_the_offender() {
    let gw = permissive().env("NATSGATE_WEBSOCKET_MESSAGE_SIZE_LIMIT", "4096").start();
    let mut watch = Watch::new(&gw).await;
    watch.check("start").await;

    for p in BOTH {
        for connect_first in [false, true] {
            let open = |p| open_client(&gw, p, connect_first);
            let label = format!("{p:?} connected={connect_first}");
            match p {
                Protocol::Json => {
                    for text in [r#"{"id":1,"#, "not json", "[1,2,3]", "42", r#"{"id":"x"}"#] {
                        let mut c = open(p).await;
                        c.send_text(text).await;
                        let (code, reason) = c.expect_close(TIMEOUT).await;
                        assert_eq!(code, 3501, "{label}: {text:?}: {reason}");
                        watch.check(&format!("{label} {text:?}")).await;
                    }
                    // A binary frame on a JSON connection.
                    let mut c = open(p).await;
                    c.send_binary(br#"{"id":1,"ping":{}}"#.to_vec()).await;
                    let (code, reason) = c.expect_close(TIMEOUT).await;
                    assert_eq!(code, 3501, "{label}: binary frame: {reason}");
                    watch.check(&format!("{label} binary frame")).await;
                }
                Protocol::Protobuf => {
                    let cases: [(&str, Vec<u8>); 4] = [
                        ("length beyond the frame", vec![0x05, 0x08, 0x01]),
                        ("garbage message", vec![0x03, 0xff, 0xff, 0xff]),
                        ("truncated varint", vec![0xff]),
                        ("wrong wire type", vec![0x02, 0x0a, 0x05]),
                    ];
                    for (what, bytes) in cases {
                        let mut c = open(p).await;
                        c.send_binary(bytes).await;
                        let (code, reason) = c.expect_close(TIMEOUT).await;
                        assert_eq!(code, 3501, "{label}: {what}: {reason}");
                        watch.check(&format!("{label} {what}")).await;
                    }
                    // A text frame on a Protobuf connection.
                    let mut c = open(p).await;
                    c.send_text(r#"{"id":1,"ping":{}}"#).await;
                    let (code, reason) = c.expect_close(TIMEOUT).await;
                    assert_eq!(code, 3501, "{label}: text frame: {reason}");
                    watch.check(&format!("{label} text frame")).await;
                }
            }
            // A frame just under NATSGATE_WEBSOCKET_MESSAGE_SIZE_LIMIT is fine.
            if connect_first {
                let mut c = open(p).await;
                publish(&mut c, "watch-big", json!({"pad": "x".repeat(3500)})).await;
            }
            // A frame over NATSGATE_WEBSOCKET_MESSAGE_SIZE_LIMIT -> 1009.
            let mut c = open(p).await;
            let big = json!({"id": 3, "publish": {"channel": "watch", "data": {"pad": "x".repeat(8192)}}});
            c.send_json(&big.to_string()).await;
            let (code, reason) = c.expect_close(TIMEOUT).await;
            assert_eq!(code, 1009, "{label}: oversized frame: {reason}");
            watch.check(&format!("{label} oversized")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_flood_does_not_starve_others() {
    const FLOOD: u32 = 5000;
    const PER_FRAME: u32 = 100;
    let gw = permissive().start();
    let mut watch = Watch::new(&gw).await;
    watch.check("start").await;

    // A well-behaved subscriber of the flooded channel, reading as it goes.
    let mut reader = connected(&gw, Protocol::Protobuf, "reader").await;
    reader.subscribe("flood").await;
    let reader_task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < FLOOD as usize {
            let publication = reader.recv_publication("flood", Duration::from_secs(10)).await;
            seen.push(publication["data"]["i"].as_u64().expect("i"));
        }
        seen
    });

    let mut flooder = connected(&gw, Protocol::Json, "flooder").await;
    for start in (0..FLOOD).step_by(PER_FRAME as usize) {
        let frame = (start..start + PER_FRAME)
            .map(|i| json!({"id": 100 + i, "publish": {"channel": "flood", "data": {"i": i}}}).to_string())
            .collect::<Vec<_>>()
            .join("\n");
        flooder.send_text(&frame).await;
    }
    // Meanwhile the watcher still gets its publications.
    watch.check("flood sent").await;

    // Every flood command is answered, in order.
    let mut next_id = 100;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while next_id < 100 + FLOOD {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = flooder.next(left).await.unwrap_or_else(|e| panic!("flooder: reply {next_id}: {e:?}"));
        assert_eq!(m["id"], json!(next_id), "flooder replies in order: {m}");
        assert!(m["publish"].is_object(), "{m}");
        next_id += 1;
    }
    let seen = tokio::time::timeout(Duration::from_secs(20), reader_task)
        .await
        .expect("reader done in time")
        .expect("reader task");
    assert_eq!(seen, (0..FLOOD as u64).collect::<Vec<_>>(), "all flood publications, in order");
    watch.check("flood done").await;
}

// ---------------------------------------------------------------------------
// 6. Channel -> subject safety on NATS
// ---------------------------------------------------------------------------

fn safe_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_cannot_reach_each_others_subjects() {
    let nats = NatsServer::start();
    let gw = permissive().nats(&nats).start();
    let snoop = tokio::time::timeout(TIMEOUT, async_nats::connect(nats.url()))
        .await
        .expect("nats connect in time")
        .expect("nats connect");
    let mut snooped = snoop.subscribe("natsgate.>").await.expect("snoop subscribe");
    // async-nats' flush() only writes the socket; a probe echoed back on the
    // same connection proves the server has registered the subscription.
    snoop.publish("natsgate.probe", "probe".into()).await.expect("probe");
    let probe = tokio::time::timeout(TIMEOUT, snooped.next()).await.expect("probe echoed in time").expect("snoop open");
    assert_eq!(probe.subject.as_str(), "natsgate.probe");

    let long: String = "ab.*>_ ".repeat(40).chars().take(255).collect();
    assert_eq!(long.len(), 255);
    let channels: Vec<String> =
        ["a.b", "a.*", "a.>", ">", "*", "a b", "a_2Eb", "a", "a.", ".a", "_", "a\tb", "a\nb", "a\u{0}b", "a\rb.>"]
            .iter()
            .map(|s| s.to_string())
            .chain([long.clone()])
            .collect();

    let mut subscribers = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let p = BOTH[i % 2];
        let mut c = connected(&gw, p, &format!("sub{i}")).await;
        c.subscribe(channel).await;
        c.subscribe("sentinel").await;
        subscribers.push(c);
    }
    // Unicode is refused for client subscribe and publish (107).
    let mut publisher = connected(&gw, Protocol::Json, "pub").await;
    for name in ["ключ", "a.ключ", "频道.>"] {
        expect_error(&mut publisher, json!({"subscribe": {"channel": name}}), 107).await;
        expect_error(&mut publisher, json!({"publish": {"channel": name, "data": {}}}), 107).await;
    }

    for channel in &channels {
        publish(&mut publisher, channel, json!({"ch": channel})).await;
    }
    publish(&mut publisher, "sentinel", json!({"sentinel": true})).await;

    // Each subscriber: its own publication, exactly once, then nothing else
    // before (or shortly after) the sentinel.
    let checks = subscribers.iter_mut().zip(&channels).map(|(c, channel)| async move {
        let mut own = 0;
        let mut sentinel = false;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while own == 0 || !sentinel {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = c
                .next(left)
                .await
                .unwrap_or_else(|e| panic!("subscriber of {channel:?}: {e:?} (own {own}, sentinel {sentinel})"));
            let push = &m["push"];
            if push["channel"] == json!("sentinel") {
                sentinel = true;
            } else {
                assert_eq!(push["channel"], json!(channel), "subscriber of {channel:?} got {m}");
                assert_eq!(push["pub"]["data"], json!({"ch": channel}), "{m}");
                own += 1;
            }
        }
        assert_eq!(own, 1);
        c.expect_silence(Duration::from_millis(300)).await;
    });
    futures_util::future::join_all(checks).await;

    // What went over NATS: every channel on its own subject, each subject
    // made of safe tokens only.
    let map = SubjectMap::new("natsgate");
    let mut expected: Vec<String> = channels.iter().map(|c| map.channel_subject(c)).collect();
    expected.push(map.channel_subject("sentinel"));
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !expected.iter().all(|s| seen.contains_key(s)) {
        let msg = tokio::time::timeout_at(deadline, snooped.next())
            .await
            .unwrap_or_else(|_| panic!("snooped only {seen:?}; expected {expected:?}"))
            .expect("snoop subscription open");
        let subject = msg.subject.to_string();
        let tokens: Vec<&str> = subject.split('.').collect();
        assert!(tokens.iter().all(|t| safe_token(t)), "unsafe subject {subject:?}");
        if subject.starts_with("natsgate.ch.") {
            assert_eq!(tokens.len(), 4, "channel subject {subject:?}");
            let channel = map.channel_of(&subject).expect("decodable channel subject");
            let data: Value = serde_json::from_slice(&msg.payload).expect("JSON payload");
            if channel != "sentinel" {
                assert_eq!(data, json!({"ch": channel}), "{subject}");
            }
        }
        *seen.entry(subject).or_default() += 1;
    }
    let distinct: std::collections::BTreeSet<&String> = expected.iter().collect();
    assert_eq!(distinct.len(), expected.len(), "subjects collide: {expected:?}");
    for s in &expected {
        assert_eq!(seen[s], 1, "{s} published once: {seen:?}");
    }
}

// ---------------------------------------------------------------------------
// 7. Slow consumer
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_3008() {
    const PAD: usize = 4096;
    const PER_BATCH: u64 = 4;
    const MAX: u64 = 10_000; // 40 MB: far beyond any socket buffers
    let gw = permissive()
        .envs(&[
            // Room for 64 publications: enough for a busy reader, far
            // less than what a client that stops reading falls behind.
            ("NATSGATE_CLIENT_QUEUE_MAX_SIZE", "262144"),
            ("NATSGATE_WEBSOCKET_MESSAGE_SIZE_LIMIT", "1048576"),
        ])
        .start();

    let mut slow = connected(&gw, Protocol::Json, "slow").await;
    slow.subscribe("firehose").await;

    // Normal clients read everything as it comes and report each sequence number.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64)>();
    let mut readers = Vec::new();
    for (k, p) in BOTH.into_iter().enumerate() {
        let mut c = connected(&gw, p, "fast").await;
        c.subscribe("firehose").await;
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            loop {
                match c.next(Duration::from_secs(10)).await {
                    Ok(m) => {
                        let seq = m["push"]["pub"]["data"]["seq"]
                            .as_u64()
                            .unwrap_or_else(|| panic!("fast reader {k}: unexpected {m}"));
                        if tx.send((k, seq)).is_err() {
                            return None;
                        }
                    }
                    Err(e) => {
                        // A fast client must never be closed: report it.
                        let _ = tx.send((k, u64::MAX));
                        return Some(e);
                    }
                }
            }
        }));
    }
    drop(tx);

    let mut publisher = connected(&gw, Protocol::Protobuf, "hose").await;
    let pad = "p".repeat(PAD);
    // Warm-up: publication 0 is written to all three subscribers (and the
    // publisher's reply) before the flood, so the slow client has queued
    // data to read later whatever the scheduling.
    const SENT: &str = "natsgate_transport_messages_sent_total{transport=\"websocket\"}";
    let sent_before = gateway_metric(&gw, SENT).await.unwrap_or(0.0);
    publish(&mut publisher, "firehose", json!({"seq": 0, "pad": pad})).await;
    eventually("publication 0 written to every subscriber", TIMEOUT, || async {
        (gateway_metric(&gw, SENT).await.unwrap_or(0.0) >= sent_before + 4.0).then_some(())
    })
    .await;
    let mut seq = 1u64;
    let mut next = [0u64; 2];
    let mut next_id = 1000u32;
    let mut slow_closed = false;
    while seq < MAX {
        let commands: Vec<Command> = (0..PER_BATCH)
            .map(|i| {
                let data = json!({"seq": seq + i, "pad": pad}).to_string();
                Command {
                    id: next_id + i as u32,
                    publish: Some(natsgate::protocol::PublishRequest {
                        channel: "firehose".into(),
                        data: data.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        publisher.send_commands(&commands).await;
        for i in 0..PER_BATCH as u32 {
            let reply = publisher.take_reply(next_id + i, TIMEOUT).await;
            assert!(reply["publish"].is_object(), "{reply}");
        }
        next_id += PER_BATCH as u32;
        seq += PER_BATCH;
        while let Ok((k, s)) = rx.try_recv() {
            assert_ne!(s, u64::MAX, "fast reader {k} was closed: {:?}", readers[k].is_finished());
            assert_eq!(s, next[k], "fast reader {k} in order");
            next[k] += 1;
        }
        if seq % 40 == 1 && gateway_metric(&gw, "natsgate_client_slow_disconnects_total").await.unwrap_or(0.0) >= 1.0 {
            slow_closed = true;
            break;
        }
    }
    assert!(slow_closed, "the slow client was not closed after {seq} publications of {PAD} bytes");

    // The slow client now reads: what was already in flight, then 3008.
    let mut got = Vec::new();
    let close = loop {
        match slow.next(Duration::from_secs(10)).await {
            Ok(m) => got.push(m["push"]["pub"]["data"]["seq"].as_u64().expect("seq")),
            Err(WsError::Closed(code, reason)) => break (code, reason),
            Err(e) => panic!("slow client after {} publications: {e:?}", got.len()),
        }
    };
    eprintln!("slow consumer: closed after {seq} publications; it had received {}", got.len());
    assert_eq!(close.0, 3008, "slow client closed with {close:?}");
    assert!(!got.is_empty(), "queued data arrives before the close frame");
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>(), "a prefix, in order");
    assert!((got.len() as u64) < seq, "the slow client cannot have everything");

    // The normal clients got every publication, in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while next.iter().any(|n| *n < seq) {
        let (k, s) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("fast readers stalled at {next:?} of {seq}"))
            .unwrap_or_else(|| panic!("fast readers ended at {next:?} of {seq}"));
        assert_ne!(s, u64::MAX, "fast reader {k} was closed after {} publications", next[k]);
        assert_eq!(s, next[k], "fast reader {k} in order");
        next[k] += 1;
    }
    for r in readers {
        r.abort();
    }
    assert_eq!(
        gateway_metric(&gw, "natsgate_client_disconnects_total{code=\"3008\"}").await,
        Some(1.0),
        "only the slow client was closed as slow"
    );
}

// ---------------------------------------------------------------------------
// 8. Two gateways on one NATS, and NATS subscriptions following local ones
// ---------------------------------------------------------------------------

/// A nats-server with the HTTP monitoring port on, killed on drop.
struct MonitoredNats {
    child: std::process::Child,
    port: u16,
    monitor: u16,
    _dir: tempfile::TempDir,
}

impl MonitoredNats {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let monitor = free_port();
        // As the harness: $NATS_SERVER_BIN, else Debian's path, else PATH.
        let bin = std::env::var_os("NATS_SERVER_BIN")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(["/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server"].map(Into::into))
            .find(|p| p.is_file())
            .unwrap_or_else(|| "nats-server".into());
        let log = std::fs::File::create(dir.path().join("nats.log")).expect("log file");
        let child = std::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-m", &monitor.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        let server = MonitoredNats { child, port, monitor, _dir: dir };
        let varz = format!("http://127.0.0.1:{}/varz", server.monitor);
        eventually("nats-server monitoring answers", Duration::from_secs(10), || {
            let varz = varz.clone();
            async move {
                let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().ok()?;
                let r = client.get(&varz).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Subjects of all subscriptions on the server.
    async fn subjects(&self) -> Vec<String> {
        let (status, body) = http(&format!("http://127.0.0.1:{}/subsz?subs=1", self.monitor)).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("subsz JSON");
        v["subscriptions_list"]
            .as_array()
            .map(|l| l.iter().filter_map(|s| s["subject"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }
}

impl Drop for MonitoredNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_nats_and_unsubscribe_from_it() {
    let nats = MonitoredNats::start().await;
    let a = permissive().env("NATSGATE_NATS_URL", &nats.url()).start();
    let b = permissive().env("NATSGATE_NATS_URL", &nats.url()).start();
    let channel = "room-1";
    let subject = SubjectMap::new("natsgate").channel_subject(channel);
    let other_subject = SubjectMap::new("natsgate").channel_subject("lobby");

    let count = |subjects: &[String], s: &str| subjects.iter().filter(|x| *x == s).count();
    // Waits until the server lists `n` subscriptions on `subject`. Needed
    // before publishing from the other gateway because of the BUG shown by
    // `subscribe_reply_means_publications_from_other_gateways_arrive`.
    let registered = |subject: String, n: usize| {
        let nats = &nats;
        async move {
            eventually(&format!("{n} NATS subscription(s) on {subject}"), TIMEOUT, || async {
                (count(&nats.subjects().await, &subject) == n).then_some(())
            })
            .await
        }
    };

    assert!(!nats.subjects().await.contains(&subject), "nobody subscribed yet");
    let mut on_a = connected(&a, Protocol::Json, "ann").await;
    on_a.subscribe(channel).await;
    on_a.subscribe("lobby").await;
    let mut on_a2 = connected(&a, Protocol::Protobuf, "ann2").await;
    on_a2.subscribe(channel).await;
    let mut on_b = connected(&b, Protocol::Protobuf, "ben").await;
    registered(subject.clone(), 1).await;

    // A publication on B reaches both clients on A.
    publish(&mut on_b, channel, json!({"from": "B"})).await;
    for c in [&mut on_a, &mut on_a2] {
        let publication = next_publication(c, channel).await;
        assert_eq!(publication["data"], json!({"from": "B"}));
        assert_eq!(publication["info"]["user"], json!("ben"));
    }
    // And the other way round.
    let mut on_b2 = connected(&b, Protocol::Json, "bea").await;
    on_b2.subscribe(channel).await;
    registered(subject.clone(), 2).await;
    publish(&mut on_a, channel, json!({"from": "A"})).await;
    let publication = next_publication(&mut on_b2, channel).await;
    assert_eq!(publication["data"], json!({"from": "A"}));
    assert_eq!(next_publication(&mut on_a, channel).await["data"], json!({"from": "A"}));
    assert_eq!(next_publication(&mut on_a2, channel).await["data"], json!({"from": "A"}));

    // One NATS subscription per gateway for the channel, not per client.
    let subjects = nats.subjects().await;
    assert_eq!(count(&subjects, &subject), 2, "A and B each subscribe once: {subjects:?}");
    assert_eq!(gateway_metric(&a, "natsgate_channels").await, Some(2.0));

    // The first of A's two subscribers leaves: A keeps its NATS subscription.
    on_a2.request(json!({"unsubscribe": {"channel": channel}})).await;
    assert_eq!(count(&nats.subjects().await, &subject), 2);
    // The last leaves: A's NATS subscription goes, B's stays.
    on_a.request(json!({"unsubscribe": {"channel": channel}})).await;
    eventually("A drops its NATS subscription", TIMEOUT, || async {
        let subjects = nats.subjects().await;
        (count(&subjects, &subject) == 1).then_some(())
    })
    .await;
    eventually("natsgate_channels on A back to 1", TIMEOUT, || async {
        (gateway_metric(&a, "natsgate_channels").await == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(count(&nats.subjects().await, &other_subject), 1, "lobby stays subscribed");

    // Publications no longer reach A's clients; B's subscriber still gets them.
    publish(&mut on_b, channel, json!({"after": "unsubscribe"})).await;
    publish(&mut on_b, "lobby", json!({"sentinel": true})).await;
    assert_eq!(next_publication(&mut on_b2, channel).await["data"], json!({"after": "unsubscribe"}));
    assert_eq!(next_publication(&mut on_a, "lobby").await["data"], json!({"sentinel": true}));
    on_a.expect_silence(Duration::from_millis(200)).await;
    on_a2.expect_silence(Duration::from_millis(50)).await;

    // Disconnecting (rather than unsubscribing) also releases the subscription.
    on_a.close(1000, "bye").await;
    eventually("A drops lobby after its last client left", TIMEOUT, || async {
        (count(&nats.subjects().await, &other_subject) == 0).then_some(())
    })
    .await;
    eventually("natsgate_channels on A is 0", TIMEOUT, || async {
        (gateway_metric(&a, "natsgate_channels").await == Some(0.0)).then_some(())
    })
    .await;
}

/// A TCP proxy to `upstream` that holds every chunk going towards upstream
/// for `delay` (the other direction is passed straight through): a gateway
/// a few milliseconds further from NATS than another one, made obvious.
async fn delaying_proxy(upstream: u16, delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("proxy address").port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match in_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tokio::time::sleep(delay).await;
                        if out_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = tokio::io::copy(&mut out_read, &mut in_write);
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    port
}

// Regression (was a bug): a subscribe reply did not mean the NATS subscription was active.
// src/broker/nats.rs `NatsBroker::listen` does `client.subscribe(..)` then
// `client.flush()` and documents "The SUB must reach the server before we
// report the subscription active"; src/hub.rs `Hub::subscribe` documents
// "Returns once publications of the channel reach this client". But
// async-nats 0.51 `Client::flush()` only flushes the socket write buffer (no
// PING/PONG round trip), so the subscribe reply can reach the client before
// nats-server has processed the SUB. A publication made through another
// gateway right after the reply is then silently lost for this client.
// Here gateway A reaches NATS through a proxy adding 150 ms towards NATS
// (think: another zone); B is direct. Expected: every publication made on B
// after A's subscribe reply reaches A's client. Actual: they are lost
// (the same race, with a narrower window, made
// `two_gateways_share_nats_and_unsubscribe_from_it` fail under load before
// it waited for /subsz). Fix idea: after SUB, do a real round trip on the
// same connection (e.g. a request to a private inbox the gateway itself
// subscribed, or any request/reply such as `$JS.API.INFO`), since the server
// processes one connection's protocol in order. The same applies to
// `publish` ("A flush round-trip means the server has the message" is not
// what flush() does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_reply_means_publications_from_other_gateways_arrive() {
    let nats = NatsServer::start();
    let proxy = delaying_proxy(nats.port(), Duration::from_millis(150)).await;
    let a = permissive().env("NATSGATE_NATS_URL", &format!("nats://127.0.0.1:{proxy}")).start();
    let b = permissive().nats(&nats).start();
    let mut on_a = connected(&a, Protocol::Json, "far").await;
    let mut on_b = connected(&b, Protocol::Json, "near").await;
    let mut lost = Vec::new();
    for i in 0..3 {
        let channel = format!("race-{i}");
        on_a.subscribe(&channel).await;
        publish(&mut on_b, &channel, json!({"i": i})).await;
        match on_a.next(Duration::from_secs(1)).await {
            Ok(m) => assert_eq!(m["push"]["pub"]["data"], json!({"i": i}), "{m}"),
            Err(WsError::Timeout(_)) => lost.push(channel),
            Err(e) => panic!("{e:?}"),
        }
    }
    // Once the SUB has surely arrived, delivery works: the gateway is fine
    // otherwise.
    publish(&mut on_b, "race-0", json!({"late": true})).await;
    assert_eq!(next_publication(&mut on_a, "race-0").await["data"], json!({"late": true}));
    assert!(lost.is_empty(), "publications made on B right after A's subscribe reply were lost on: {lost:?}");
}

// ---------------------------------------------------------------------------
// 9. Shutdown
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_3001_and_exits() {
    let internal = free_port();
    let mut gw = permissive()
        .envs(&[
            ("NATSGATE_DRAIN_PERIOD", "200ms"),
            ("NATSGATE_SHUTDOWN_TIMEOUT", "2s"),
            ("NATSGATE_INTERNAL_PORT", &internal.to_string()),
        ])
        .start();
    let ready_url = format!("http://127.0.0.1:{internal}/ready");
    assert_eq!(http(&ready_url).await.0, 200);

    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = connected(&gw, BOTH[i % 2], &format!("user{i}")).await;
        c.subscribe("shutdown").await;
        clients.push(c);
    }
    // And one that never sent connect.
    clients.push(WsClient::connect(&gw.ws_url(), Protocol::Json).await);

    let started = Instant::now();
    gw.sigterm();
    // Readiness turns false while draining (the internal port still answers).
    eventually("/ready answers 503 while draining", Duration::from_secs(2), || {
        let url = ready_url.clone();
        async move {
            let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().ok()?;
            let r = client.get(&url).send().await.ok()?;
            (r.status().as_u16() == 503).then_some(())
        }
    })
    .await;
    for (i, c) in clients.iter_mut().enumerate() {
        let (code, reason) = c.expect_close(Duration::from_secs(3)).await;
        assert_eq!(code, 3001, "client {i}: {reason}");
    }
    let status =
        gw.wait_exit(Duration::from_secs(3)).unwrap_or_else(|| panic!("natsgate still running 3 s after SIGTERM"));
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "exit after {:?}, shutdown timeout 2 s",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Protocol selection without the subprotocol
// ---------------------------------------------------------------------------

#[tokio::test]
async fn protobuf_selected_by_query_parameter() {
    let gw = permissive().start();
    for query in ["cf_protocol=protobuf", "format=protobuf"] {
        let url = format!("{}?{query}", gw.ws_url());
        let mut c =
            WsClient::connect_with(&url, Protocol::Protobuf, None).await.unwrap_or_else(|e| panic!("{query}: {e}"));
        let result = c.connect_token(&token("q")).await;
        assert!(result["client"].as_str().is_some_and(|c| !c.is_empty()), "{query}: {result}");
        c.subscribe("q").await;
        publish(&mut c, "q", json!({"q": query})).await;
        assert_eq!(next_publication(&mut c, "q").await["data"], json!({"q": query}));
    }
}

// ---------------------------------------------------------------------------
// 10. Origins
// ---------------------------------------------------------------------------

#[tokio::test]
async fn allowed_origins() {
    let gw = permissive().env("NATSGATE_ALLOWED_ORIGINS", "https://good.example").start();
    for p in BOTH {
        assert_eq!(raw_connect(&gw, p, Some("https://evil.example")).await.err(), Some(403));
        assert_eq!(raw_connect(&gw, p, Some("https://good.example.evil.example")).await.err(), Some(403));
        assert_eq!(raw_connect(&gw, p, Some("http://good.example")).await.err(), Some(403));
        for origin in [Some("https://good.example"), Some("HTTPS://GOOD.EXAMPLE"), None] {
            let mut ws = raw_connect(&gw, p, origin)
                .await
                .unwrap_or_else(|status| panic!("{p:?} origin {origin:?}: HTTP {status}"));
            raw_connect_command(&mut ws, p, "origin").await;
        }
    }

    // Entries are glob patterns, matched against the whole lower-cased
    // origin (checked against Centrifugo v6.9.1: the same answers).
    let gw = permissive().env("NATSGATE_ALLOWED_ORIGINS", "http://*.example.com https://{a,b}.example.org").start();
    for origin in
        ["http://app.example.com", "HTTP://APP.Example.com", "http://a.b.example.com", "https://b.example.org"]
    {
        assert!(raw_connect(&gw, Protocol::Json, Some(origin)).await.is_ok(), "{origin} is allowed");
    }
    for origin in
        ["http://example.com", "https://app.example.com", "http://app.example.com.evil.com", "https://c.example.org"]
    {
        assert_eq!(raw_connect(&gw, Protocol::Json, Some(origin)).await.err(), Some(403), "{origin} is refused");
    }

    // Without a list only requests without an Origin pass: Centrifugo v6
    // refuses even the gateway's own host (v6.9.1 answers 403 to it).
    let gw = permissive().start();
    let same = format!("http://127.0.0.1:{}", gw.port());
    assert_eq!(raw_connect(&gw, Protocol::Json, Some(&same)).await.err(), Some(403));
    assert!(raw_connect(&gw, Protocol::Json, None).await.is_ok());
    assert_eq!(raw_connect(&gw, Protocol::Json, Some("https://evil.example")).await.err(), Some(403));
    // `*` lets every origin in.
    let gw = permissive().env("NATSGATE_ALLOWED_ORIGINS", "*").start();
    assert!(raw_connect(&gw, Protocol::Json, Some("https://evil.example")).await.is_ok());
}
