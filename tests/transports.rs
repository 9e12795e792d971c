//! HTTP-streaming, SSE, emulation and the unidirectional transports with
//! raw HTTP clients: framing, status codes, server-side subscriptions from
//! token claims, API publications, CORS, and bad input (malformed connect,
//! oversized bodies, unknown sessions and nodes, another user's session,
//! floods), each answered as Centrifugo answers while other clients go on.

use natsgate_test_support as common;

use common::pair::api_result;
use common::{hs256_token, Gateway, NatsServer, SECRET, TIMEOUT};
use serde_json::{json, Value};
use tokio::time::timeout;

const API_KEY: &str = "transports-key";

fn gateway(nats: Option<&NatsServer>, name: &str) -> Gateway {
    let namespaces = r#"[{"name":"tr","history_size":10,"history_ttl":"60s","allow_recovery":true,
        "allow_subscribe_for_client":true,"allow_publish_for_client":true}]"#;
    let builder = Gateway::builder().permissive().envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", namespaces),
        ("NATSGATE_HTTP_STREAM", "true"),
        ("NATSGATE_SSE", "true"),
        ("NATSGATE_UNI_SSE", "true"),
        ("NATSGATE_UNI_HTTP_STREAM", "true"),
        ("NATSGATE_ALLOWED_ORIGINS", "https://ok.example"),
        ("NATSGATE_EMULATION_MAX_REQUEST_BODY_SIZE", "4096"),
        ("NATSGATE_HTTP_STREAM_MAX_REQUEST_BODY_SIZE", "4096"),
    ]);
    match nats {
        Some(nats) => builder.nats(nats).start(),
        None => builder.start(),
    }
}

fn token(user: &str, extra: Value) -> String {
    hs256_token(SECRET, user, Some(3600), extra)
}

/// A streaming response read message by message (lines, or SSE `data:`).
struct Stream {
    response: reqwest::Response,
    buffer: String,
    sse: bool,
}

impl Stream {
    fn new(response: reqwest::Response, sse: bool) -> Self {
        Stream { response, buffer: String::new(), sse }
    }

    /// The next message as JSON; None when the stream ended.
    async fn next(&mut self) -> Option<Value> {
        let separator = if self.sse { "\n\n" } else { "\n" };
        loop {
            if let Some(end) = self.buffer.find(separator) {
                let message: String = self.buffer.drain(..end + separator.len()).collect();
                let message = message.trim();
                let message = if self.sse { message.strip_prefix("data: ").unwrap_or(message) } else { message };
                if message.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(message).unwrap_or_else(|e| panic!("{e}: {message:?}")));
            }
            let chunk = timeout(TIMEOUT, self.response.chunk())
                .await
                .expect("a message within the timeout")
                .expect("the stream reads");
            match chunk {
                Some(chunk) => self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                None => return None,
            }
        }
    }

    /// The next message that is not a ping (`{}`).
    async fn next_non_ping(&mut self) -> Option<Value> {
        loop {
            let message = self.next().await?;
            if message != json!({}) {
                return Some(message);
            }
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    http.post(url).body(body).send().await.expect("request")
}

/// An HTTP-streaming JSON client after its connect: (stream, session, node).
async fn http_stream(http: &reqwest::Client, gw: &Gateway, user: &str) -> (Stream, String, String) {
    let connect = json!({"id": 1, "connect": {"token": token(user, json!({}))}}).to_string();
    let response = post(http, &format!("{}/connection/http_stream", gw.http_url()), connect).await;
    assert_eq!(response.status(), 200);
    let mut stream = Stream::new(response, false);
    let reply = stream.next().await.expect("connect reply");
    let result = &reply["connect"];
    let session = result["session"].as_str().expect("session").to_string();
    let node = result["node"].as_str().expect("node").to_string();
    assert_eq!(session.len(), 36, "a UUID: {reply}");
    (stream, session, node)
}

async fn emulate(http: &reqwest::Client, gw: &Gateway, session: &str, node: &str, commands: &str) -> u16 {
    let body = json!({"session": session, "node": node, "data": commands}).to_string();
    post(http, &format!("{}/emulation", gw.http_url()), body).await.status().as_u16()
}

#[tokio::test]
async fn uni_http_stream_gets_connect_then_pushes_from_token_channels_and_the_api() {
    let gw = gateway(None, "gw");
    let http = reqwest::Client::new();
    let connect = json!({"token": token("alice", json!({"channels": ["tr:uni"]}))}).to_string();
    let response = post(&http, &format!("{}/connection/uni_http_stream", gw.http_url()), connect).await;
    assert_eq!(response.status(), 200);
    let mut stream = Stream::new(response, false);
    let first = stream.next().await.expect("connect push");
    let connect = &first["connect"];
    assert!(connect["client"].is_string(), "{first}");
    assert!(connect.get("pong").is_none(), "no pong over a unidirectional transport: {first}");
    assert!(connect["subs"]["tr:uni"].is_object(), "the token's channel: {first}");
    assert!(first.get("id").is_none() && first.get("push").is_none(), "a bare push: {first}");
    api_result(&http, &gw, API_KEY, "publish", &json!({"channel": "tr:uni", "data": {"n": 1}})).await;
    let push = stream.next_non_ping().await.expect("publication");
    assert_eq!(push["channel"], "tr:uni");
    assert_eq!(push["pub"]["data"], json!({"n": 1}));
    // Server-side subscribe through the API reaches the connection too.
    api_result(&http, &gw, API_KEY, "subscribe", &json!({"channel": "tr:later", "user": "alice"})).await;
    let push = stream.next_non_ping().await.expect("subscribe push");
    assert_eq!(push["channel"], "tr:later");
    assert!(push["subscribe"].is_object(), "{push}");
    api_result(&http, &gw, API_KEY, "disconnect", &json!({"user": "alice"})).await;
    let push = stream.next_non_ping().await.expect("disconnect push");
    assert_eq!(push["disconnect"]["code"], 3503, "{push}");
    assert!(stream.next().await.is_none(), "the stream ends after the disconnect push");
}

#[tokio::test]
async fn uni_sse_with_subs_claim_and_refused_tokens() {
    let gw = gateway(None, "gw");
    let http = reqwest::Client::new();
    let connect = json!({"token": token("bob", json!({"subs": {"tr:s": {}}}))}).to_string();
    let url =
        reqwest::Url::parse_with_params(&format!("{}/connection/uni_sse", gw.http_url()), &[("cf_connect", connect)])
            .expect("url");
    let response = http.get(url).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
    let mut stream = Stream::new(response, true);
    let first = stream.next().await.expect("connect push");
    assert!(first["connect"]["subs"]["tr:s"].is_object(), "{first}");
    api_result(&http, &gw, API_KEY, "publish", &json!({"channel": "tr:s", "data": "hi"})).await;
    let push = stream.next_non_ping().await.expect("publication");
    assert_eq!((push["channel"].clone(), push["pub"]["data"].clone()), (json!("tr:s"), json!("hi")));

    // A bad token: a disconnect push (3500), then the end.
    let bad = json!({"token": "not-a-token"}).to_string();
    let response = post(&http, &format!("{}/connection/uni_sse", gw.http_url()), bad).await;
    let mut stream = Stream::new(response, true);
    assert_eq!(stream.next().await.expect("disconnect")["disconnect"]["code"], 3500);
    assert!(stream.next().await.is_none());
    // An expired token: 3005, as centrifuge maps the error for unidirectional clients.
    let expired = json!({"token": hs256_token(SECRET, "bob", Some(-10), json!({}))}).to_string();
    let response = post(&http, &format!("{}/connection/uni_http_stream", gw.http_url()), expired).await;
    let mut stream = Stream::new(response, false);
    assert_eq!(stream.next().await.expect("disconnect")["disconnect"]["code"], 3005);
    // A malformed connect request: 400 before any stream.
    let response = post(&http, &format!("{}/connection/uni_http_stream", gw.http_url()), "{oops").await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn http_stream_and_sse_bad_input_gets_centrifugos_answers() {
    let gw = gateway(None, "gw");
    let http = reqwest::Client::new();
    let base = gw.http_url();
    // Oversized connect body: 413.
    let big = "x".repeat(5000);
    assert_eq!(post(&http, &format!("{base}/connection/http_stream"), big.clone()).await.status(), 413);
    assert_eq!(post(&http, &format!("{base}/emulation"), big).await.status(), 413);
    // Wrong methods: 405; SSE without cf_connect: 400.
    assert_eq!(http.get(format!("{base}/connection/http_stream")).send().await.unwrap().status(), 405);
    assert_eq!(http.get(format!("{base}/emulation")).send().await.unwrap().status(), 405);
    assert_eq!(http.get(format!("{base}/connection/sse")).send().await.unwrap().status(), 400);
    // A malformed connect command: the stream says 3501 and ends.
    let response = post(&http, &format!("{base}/connection/http_stream"), "{oops").await;
    assert_eq!(response.status(), 200);
    let mut stream = Stream::new(response, false);
    assert_eq!(stream.next().await.expect("disconnect")["push"]["disconnect"]["code"], 3501);
    assert!(stream.next().await.is_none());
    // Emulation: not an EmulationRequest 400, unknown node 404, a node that
    // is no plain token (a NATS wildcard) 404.
    assert_eq!(post(&http, &format!("{base}/emulation"), "nope").await.status(), 400);
    assert_eq!(emulate(&http, &gw, "s", "00000000-0000-4000-8000-000000000000", "{}").await, 404);
    assert_eq!(emulate(&http, &gw, "s", "a.>", "{}").await, 404);
    assert_eq!(emulate(&http, &gw, "s", "*", "{}").await, 404);
}

#[tokio::test]
async fn another_users_guess_of_a_session_reaches_nothing_and_floods_leave_clients_alone() {
    let nats = NatsServer::start();
    let a = gateway(Some(&nats), "gw-a");
    let b = gateway(Some(&nats), "gw-b");
    let http = reqwest::Client::new();
    let (mut alice, session, node) = http_stream(&http, &a, "alice").await;
    // Bob knows alice's node (it is in every connect reply of gateway A) but
    // not her session: his commands, on either gateway, reach no one.
    let (_bob, bob_session, _) = http_stream(&http, &a, "bob").await;
    assert_ne!(bob_session, session);
    let subscribe = r#"{"id":7,"subscribe":{"channel":"tr:bob"}}"#;
    for gw in [&a, &b] {
        for guess in [bob_session.as_str(), "", "00000000-0000-4000-8000-000000000000", &session[..35]] {
            if guess == bob_session {
                continue;
            }
            assert_eq!(emulate(&http, gw, guess, &node, subscribe).await, 204, "an unknown session: 204");
        }
    }
    // A flood of unknown-session requests through B (routed over NATS to A).
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let (http, b, node) = (http.clone(), &b, node.clone());
            async move { emulate(&http, b, &format!("guess-{i}"), &node, "{}").await }
        })
        .collect();
    let statuses = futures_util::future::join_all(flood).await;
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    // Alice got nothing from any of it, and her own commands through B work.
    assert_eq!(emulate(&http, &b, &session, &node, r#"{"id":2,"subscribe":{"channel":"tr:alice"}}"#).await, 204);
    let reply = alice.next_non_ping().await.expect("alice's reply");
    assert_eq!(reply["id"], 2, "alice's own reply, nothing injected before it: {reply}");
    assert!(reply["subscribe"].is_object(), "{reply}");
    // A JSON session's data must be a JSON string of commands.
    let body = json!({"session": session, "node": node, "data": {"id": 3}}).to_string();
    assert_eq!(post(&http, &format!("{}/emulation", b.http_url()), body).await.status(), 400);
}

#[tokio::test]
async fn cors_follows_allowed_origins() {
    let gw = gateway(None, "gw");
    let http = reqwest::Client::new();
    for path in ["/connection/http_stream", "/emulation", "/connection/uni_http_stream"] {
        let url = format!("{}{path}", gw.http_url());
        let preflight = http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", "https://ok.example")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204, "{path}");
        let h = preflight.headers();
        assert_eq!(h["access-control-allow-origin"], "https://ok.example", "{path}");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-headers"], "content-type");
        assert_eq!(h["access-control-allow-methods"], "POST, OPTIONS");
        let other =
            http.request(reqwest::Method::OPTIONS, &url).header("origin", "https://evil.example").send().await.unwrap();
        assert!(other.headers().get("access-control-allow-origin").is_none(), "{path}");
    }
}

#[tokio::test]
async fn streams_count_as_connections_with_their_transport_label() {
    let gw = gateway(None, "gw");
    let http = reqwest::Client::new();
    let (_stream, session, node) = http_stream(&http, &gw, "carol").await;
    assert_eq!(emulate(&http, &gw, &session, &node, r#"{"id":2,"ping":{}}"#).await, 204);
    let metrics = http.get(format!("{}/metrics", gw.http_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "natsgate_client_connections 1"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("natsgate_transport_messages_received_total{transport=\"http_stream\"}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn uni_websocket_connects_by_first_message_or_query_and_closes_with_the_disconnect_code() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let gw = Gateway::builder()
        .permissive()
        .envs(&[("NATSGATE_API_KEY", API_KEY), ("NATSGATE_UNI_WEBSOCKET", "true")])
        .start();
    let http = reqwest::Client::new();
    let url = format!("ws://127.0.0.1:{}/connection/uni_websocket", gw.port());
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    ws.send(Message::text(json!({"token": token("erin", json!({"channels": ["news"]}))}).to_string())).await.unwrap();
    let first: Value = serde_json::from_str(next_frame(&mut ws).await.to_text().unwrap()).unwrap();
    assert!(first["connect"]["subs"]["news"].is_object(), "{first}");
    api_result(&http, &gw, API_KEY, "publish", &json!({"channel": "news", "data": {"n": 5}})).await;
    let push: Value = serde_json::from_str(next_frame(&mut ws).await.to_text().unwrap()).unwrap();
    assert_eq!(push, json!({"channel": "news", "pub": {"data": {"n": 5}}}));
    api_result(&http, &gw, API_KEY, "disconnect", &json!({"user": "erin"})).await;
    let push: Value = serde_json::from_str(next_frame(&mut ws).await.to_text().unwrap()).unwrap();
    assert_eq!(push["disconnect"]["code"], 3503, "{push}");
    match next_frame(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 3503),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // A malformed first message: close 3501.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    ws.send(Message::text("{oops")).await.unwrap();
    match next_frame(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 3501),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Through the query, a malformed request is refused before the upgrade.
    let bad = format!("{url}?cf_connect=%7Boops");
    assert!(tokio_tungstenite::connect_async(&bad).await.is_err());
}

/// The next WebSocket frame, within the timeout.
async fn next_frame<S>(ws: &mut S) -> tokio_tungstenite::tungstenite::Message
where
    S: futures_util::Stream<
            Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin,
{
    use futures_util::StreamExt;
    timeout(TIMEOUT, ws.next()).await.expect("a frame in time").expect("open").expect("frame")
}

#[tokio::test]
async fn sigterm_ends_open_streams_with_3001_and_the_gateway_exits() {
    let mut gw = Gateway::builder()
        .permissive()
        .envs(&[
            ("NATSGATE_HTTP_STREAM", "true"),
            ("NATSGATE_UNI_HTTP_STREAM", "true"),
            ("NATSGATE_DRAIN_PERIOD", "1s"),
        ])
        .start();
    let http = reqwest::Client::new();
    let (mut stream, _, _) = http_stream(&http, &gw, "frank").await;
    let connect = json!({"token": token("frank", json!({}))}).to_string();
    let response = post(&http, &format!("{}/connection/uni_http_stream", gw.http_url()), connect).await;
    let mut uni = Stream::new(response, false);
    assert!(uni.next().await.expect("connect push")["connect"].is_object());
    gw.sigterm();
    let push = stream.next_non_ping().await.expect("disconnect push");
    assert_eq!(push["push"]["disconnect"]["code"], 3001, "{push}");
    assert!(stream.next().await.is_none());
    assert_eq!(uni.next_non_ping().await.expect("disconnect push")["disconnect"]["code"], 3001);
    let status = gw.wait_exit(std::time::Duration::from_secs(10)).expect("the gateway exits");
    assert!(status.success(), "{status:?}");
}

/// Server pings over HTTP-streaming, as centrifuge sends them on its
/// emulation transports: `{}` every ping interval, answered by a `{}` pong
/// through `/emulation`; a client that answers stays, one that does not is
/// closed with the `disconnect` push 3012 (no pong) and the stream ends.
#[tokio::test]
async fn http_stream_pings_and_closes_a_client_without_pong_with_3012() {
    let gw = Gateway::builder()
        .permissive()
        .envs(&[("NATSGATE_HTTP_STREAM", "true"), ("NATSGATE_PING_INTERVAL", "2s"), ("NATSGATE_PONG_TIMEOUT", "1s")])
        .start();
    let http = reqwest::Client::new();
    let (mut answering, session, node) = http_stream(&http, &gw, "alice").await;
    let (mut silent, _, _) = http_stream(&http, &gw, "bob").await;
    for _ in 0..2 {
        assert_eq!(answering.next().await, Some(json!({})), "a ping");
        assert_eq!(emulate(&http, &gw, &session, &node, "{}").await, 204, "the pong is taken");
    }
    assert_eq!(silent.next().await, Some(json!({})), "a ping");
    let disconnect = silent.next().await.expect("the disconnect push");
    assert_eq!(disconnect["push"]["disconnect"]["code"], 3012, "{disconnect}");
    assert_eq!(disconnect["push"]["disconnect"]["reason"], "no pong", "{disconnect}");
    assert_eq!(silent.next().await, None, "the stream ends");
    // The answering client is still there: a publication reaches it.
    let commands = json!({"id": 2, "publish": {"channel": "open", "data": {"still": "here"}}}).to_string();
    assert_eq!(emulate(&http, &gw, &session, &node, &commands).await, 204);
    assert_eq!(answering.next_non_ping().await, Some(json!({"id": 2, "publish": {}})));
}

/// A HTTP-streaming client that does not read its stream fills its bounded
/// outbox and is closed with the `disconnect` push 3008 (slow), as over
/// WebSocket; the publisher is not slowed down.
#[tokio::test]
async fn http_stream_client_that_does_not_read_is_closed_with_3008() {
    let gw = Gateway::builder()
        .permissive()
        .envs(&[
            ("NATSGATE_HTTP_STREAM", "true"),
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_CLIENT_QUEUE_MAX_SIZE", "65536"),
            ("NATSGATE_API_MAX_BODY_SIZE", "67108864"),
        ])
        .start();
    let http = reqwest::Client::new();
    let connect = json!({"id": 1, "connect": {"token": token("slow", json!({"channels": ["flood"]}))}}).to_string();
    let response = post(&http, &format!("{}/connection/http_stream", gw.http_url()), connect).await;
    assert_eq!(response.status(), 200);
    let mut stream = Stream::new(response, false);
    assert!(stream.next().await.expect("connect reply")["connect"].is_object());
    // 20 MB of publications at once, far beyond socket buffers and the
    // 64 KiB outbox, while the client reads nothing.
    let big = "x".repeat(20_000);
    let commands: Vec<Value> =
        (0..1000).map(|i| json!({"publish": {"channel": "flood", "data": {"i": i, "pad": big}}})).collect();
    let started = std::time::Instant::now();
    let reply: Value = http
        .post(format!("{}/api/batch", gw.http_url()))
        .header("X-API-Key", API_KEY)
        .json(&json!({"commands": commands}))
        .send()
        .await
        .expect("batch")
        .json()
        .await
        .expect("batch reply");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the publisher was not held up");
    assert_eq!(reply["replies"].as_array().map(Vec::len), Some(1000), "every publish answered");
    let mut received = 0;
    let last = loop {
        let message = stream.next_non_ping().await.expect("the stream ends with the disconnect push");
        if message["push"]["pub"].is_object() {
            received += 1;
            continue;
        }
        break message;
    };
    assert!(received < 1000, "the slow client did not get everything");
    assert_eq!(last["push"]["disconnect"]["code"], 3008, "{last}");
    assert_eq!(last["push"]["disconnect"]["reason"], "slow", "{last}");
    assert_eq!(stream.next().await, None, "the stream ends");
}
