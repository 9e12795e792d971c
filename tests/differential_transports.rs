//! Differential: the HTTP-streaming, SSE, emulation and unidirectional
//! flows against natsgate and the real Centrifugo v6.9.1 with the same
//! options, compared after normalising what differs by nature (client ids,
//! sessions, nodes, versions). Status codes, framing, content types,
//! replies and pushes must be equal.

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo};
use common::{hs256_token, Gateway, SECRET, TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const API_KEY: &str = "differential-transports-key";

fn namespaces() -> Value {
    json!([{"name": "tr", "allow_subscribe_for_client": true, "allow_publish_for_client": true}])
}

fn token(user: &str, extra: Value) -> String {
    hs256_token(SECRET, user, Some(3600), extra)
}

/// Replaces the values that differ between any two servers.
fn normalise(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if matches!(k.as_str(), "client" | "session" | "node" | "version") && child.is_string() {
                        *child = json!("*");
                    } else {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Reads messages from a streaming response (lines or SSE events).
struct Stream {
    response: reqwest::Response,
    buffer: String,
    sse: bool,
}

impl Stream {
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
            match timeout(TIMEOUT, self.response.chunk()).await.expect("a message in time").expect("read") {
                Some(chunk) => self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                None => return None,
            }
        }
    }
}

/// Everything observed on one server, in order, as (what, value).
async fn observe(base: &str) -> Vec<(String, Value)> {
    let http = reqwest::Client::new();
    let mut seen: Vec<(String, Value)> = Vec::new();
    let post = |path: &str, body: String| http.post(format!("{base}{path}")).body(body).send();

    // HTTP-streaming: connect, a command over emulation, its reply.
    let connect = json!({"id": 1, "connect": {"token": token("alice", json!({}))}}).to_string();
    let response = post("/connection/http_stream", connect.clone()).await.unwrap();
    seen.push(("http_stream status".into(), json!(response.status().as_u16())));
    let mut stream = Stream { response, buffer: String::new(), sse: false };
    let reply = stream.next().await.expect("connect reply");
    let (session, node) = (reply["connect"]["session"].clone(), reply["connect"]["node"].clone());
    seen.push(("http_stream connect".into(), normalise(reply)));
    let emulation =
        |session: &Value, node: &Value, data: &str| json!({"session": session, "node": node, "data": data}).to_string();
    let status = post("/emulation", emulation(&session, &node, r#"{"id":2,"subscribe":{"channel":"tr:a"}}"#))
        .await
        .unwrap()
        .status();
    seen.push(("emulation status".into(), json!(status.as_u16())));
    seen.push(("emulation reply".into(), normalise(stream.next().await.expect("subscribe reply"))));
    let status = post("/emulation", emulation(&json!("unknown"), &node, "{}")).await.unwrap().status();
    seen.push(("emulation unknown session".into(), json!(status.as_u16())));
    let status =
        post("/emulation", emulation(&session, &json!("00000000-0000-4000-8000-000000000000"), "{}")).await.unwrap();
    seen.push(("emulation unknown node".into(), json!(status.status().as_u16())));
    seen.push(("emulation garbage".into(), json!(post("/emulation", "x".into()).await.unwrap().status().as_u16())));
    seen.push((
        "emulation too large".into(),
        json!(post("/emulation", "x".repeat(70_000)).await.unwrap().status().as_u16()),
    ));
    seen.push((
        "http_stream GET".into(),
        json!(http.get(format!("{base}/connection/http_stream")).send().await.unwrap().status().as_u16()),
    ));
    let preflight =
        http.request(reqwest::Method::OPTIONS, format!("{base}/connection/http_stream")).send().await.unwrap();
    seen.push((
        "http_stream OPTIONS".into(),
        json!([
            preflight.status().as_u16(),
            preflight.headers().get("access-control-allow-methods").map(|v| v.to_str().unwrap().to_string()),
            preflight.headers().get("access-control-max-age").map(|v| v.to_str().unwrap().to_string()),
        ]),
    ));
    seen.push((
        "http_stream too large".into(),
        json!(post("/connection/http_stream", "x".repeat(70_000)).await.unwrap().status().as_u16()),
    ));
    let response = post("/connection/http_stream", "{oops".into()).await.unwrap();
    let mut bad = Stream { response, buffer: String::new(), sse: false };
    seen.push(("http_stream malformed connect".into(), json!([bad.next().await, bad.next().await])));

    // SSE.
    let url = reqwest::Url::parse_with_params(&format!("{base}/connection/sse"), &[("cf_connect", connect)]).unwrap();
    let response = http.get(url).send().await.unwrap();
    seen.push(("sse content type".into(), json!(response.headers()["content-type"].to_str().unwrap())));
    let mut sse = Stream { response, buffer: String::new(), sse: true };
    seen.push(("sse connect".into(), normalise(sse.next().await.expect("sse connect"))));
    seen.push((
        "sse without cf_connect".into(),
        json!(http.get(format!("{base}/connection/sse")).send().await.unwrap().status().as_u16()),
    ));

    // Unidirectional HTTP-streaming and SSE: token channels, an API publication.
    let uni = json!({"token": token("bob", json!({"channels": ["tr:u"]}))}).to_string();
    let response = post("/connection/uni_http_stream", uni.clone()).await.unwrap();
    let mut uhs = Stream { response, buffer: String::new(), sse: false };
    seen.push(("uni_http_stream connect".into(), normalise(uhs.next().await.expect("connect push"))));
    let url = reqwest::Url::parse_with_params(&format!("{base}/connection/uni_sse"), &[("cf_connect", uni)]).unwrap();
    let mut usse = Stream { response: http.get(url).send().await.unwrap(), buffer: String::new(), sse: true };
    seen.push(("uni_sse connect".into(), normalise(usse.next().await.expect("connect push"))));
    let ws_url = format!("{}/connection/uni_websocket", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("uni_websocket");
    let uni = json!({"token": token("bob", json!({"channels": ["tr:u"]}))}).to_string();
    ws.send(Message::text(uni)).await.unwrap();
    let first = timeout(TIMEOUT, ws.next()).await.expect("uni_websocket connect").unwrap().unwrap();
    seen.push(("uni_websocket connect".into(), normalise(serde_json::from_str(first.to_text().unwrap()).unwrap())));
    let published = http
        .post(format!("{base}/api/publish"))
        .header("X-API-Key", API_KEY)
        .json(&json!({"channel": "tr:u", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    seen.push(("uni_http_stream publication".into(), uhs.next().await.expect("publication")));
    seen.push(("uni_sse publication".into(), usse.next().await.expect("publication")));
    let frame = timeout(TIMEOUT, ws.next()).await.expect("uni_websocket publication").unwrap().unwrap();
    seen.push(("uni_websocket publication".into(), serde_json::from_str(frame.to_text().unwrap()).unwrap()));
    let bad = json!({"token": "bad"}).to_string();
    let mut refused =
        Stream { response: post("/connection/uni_http_stream", bad).await.unwrap(), buffer: String::new(), sse: false };
    seen.push(("uni_http_stream bad token".into(), json!([refused.next().await, refused.next().await])));
    seen.push((
        "uni_http_stream malformed".into(),
        json!(post("/connection/uni_http_stream", "{oops".into()).await.unwrap().status().as_u16()),
    ));
    seen
}

#[tokio::test]
async fn http_transports_match_centrifugo() {
    let Some(bin) = centrifugo_or_skip("http_transports_match_centrifugo") else { return };
    let config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "channel": {"namespaces": namespaces()},
        "http_api": {"key": API_KEY},
        "http_stream": {"enabled": true},
        "sse": {"enabled": true},
        "uni_http_stream": {"enabled": true},
        "uni_sse": {"enabled": true},
        "uni_websocket": {"enabled": true},
    });
    let centrifugo = Centrifugo::start(&bin, &config);
    let gateway = Gateway::builder()
        .envs(&[
            ("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET),
            ("NATSGATE_NAMESPACES", &namespaces().to_string()),
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_HTTP_STREAM", "true"),
            ("NATSGATE_SSE", "true"),
            ("NATSGATE_UNI_HTTP_STREAM", "true"),
            ("NATSGATE_UNI_SSE", "true"),
            ("NATSGATE_UNI_WEBSOCKET", "true"),
        ])
        .start();
    let expected = observe(&centrifugo.http_url()).await;
    let actual = observe(&gateway.http_url()).await;
    assert_eq!(expected.len(), actual.len());
    for (what, value) in &expected {
        println!("{what}: {value}");
    }
    let mut differences = Vec::new();
    for ((what, want), (_, got)) in expected.iter().zip(&actual) {
        if want != got {
            differences.push(format!("{what}:\n  centrifugo: {want}\n  natsgate:   {got}"));
        }
    }
    assert!(differences.is_empty(), "differences from Centrifugo:\n{}", differences.join("\n"));
}
