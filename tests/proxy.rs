//! The backend proxy (connect, subscribe, publish, rpc) against real test
//! backends that answer as an application backend would and record every
//! request: over HTTP a small hyper server in this file, over GRPC a Python
//! grpcio server (`tests/grpc/proxy_backend.py`) generated from
//! `proto/proxy.proto`.
//!
//! The GRPC tests need `target/grpc-venv` with grpcio and grpcio-tools
//! (`bash .ci/run` makes it); without it they say so and pass, except under
//! `CI=true`.

use natsgate_test_support as common;

use bytes::Bytes;
use common::{Gateway, Protocol, WsClient};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod proxy_support;
use proxy_support::GrpcBackend;

const TIMEOUT: Duration = Duration::from_secs(5);

/// What the backend received: (path, JSON body).
type Log = Arc<Mutex<Vec<(String, Value)>>>;

/// The backend's decisions, by path and request.
async fn answer(path: &str, body: &Value) -> Value {
    match path {
        "/connect" if body["data"]["short"] == true => json!({"result": {
            "user": "bob",
            "expire_at": now() + 2,
            "meta": {"tenant": 8}
        }}),
        "/refresh" => json!({"result": {"expire_at": now() + 3600}}),
        "/connect" => json!({"result": {
            "user": "alice",
            "info": {"name": "Alice"},
            "data": {"welcome": true},
            "channels": ["news"],
            "meta": {"tenant": 7}
        }}),
        "/subscribe" => match body["channel"].as_str().unwrap_or("") {
            "px:refused" => json!({"error": {"code": 4001, "message": "not for you"}}),
            "px:gone" => json!({"disconnect": {"code": 4501, "reason": "go away"}}),
            _ => json!({"result": {"data": {"granted": true}}}),
        },
        "/publish" => json!({"result": {"data": {"rewritten": body["data"].clone()}}}),
        "/rpc" => {
            if body["method"] == "slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            json!({"result": {"data": {"method": body["method"].clone(), "echo": body["data"].clone()}}})
        }
        _ => json!({}),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

/// Starts the backend on a free loopback port; returns its base URL.
async fn start_backend(log: Log) -> String {
    start_backend_with_headers(log, Arc::default()).await
}

/// The backend, also recording each request's headers (name -> value).
async fn start_backend_with_headers(log: Log, headers: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let log = log.clone();
            let headers = headers.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    let headers = headers.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let seen: serde_json::Map<String, Value> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                            .collect();
                        headers.lock().unwrap().push(Value::Object(seen));
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        log.lock().unwrap().push((path.clone(), body.clone()));
                        let reply = answer(&path, &body).await;
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(reply.to_string()))))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    format!("http://{addr}")
}

/// Where each proxy sends: HTTP paths under one base, or one GRPC address.
fn endpoints(base: &str) -> [String; 4] {
    if base.starts_with("grpc://") {
        return [base.to_string(), base.to_string(), base.to_string(), base.to_string()];
    }
    ["connect", "subscribe", "publish", "rpc"].map(|p| format!("{base}/{p}"))
}

fn gateway(base: &str) -> Gateway {
    let namespaces = json!([
        {"name": "px", "proxy_subscribe": true, "proxy_publish": true},
        {"name": "news"}
    ]);
    let [connect, subscribe, publish, rpc] = endpoints(base);
    let refresh = if base.starts_with("grpc://") { base.to_string() } else { format!("{base}/refresh") };
    Gateway::builder()
        .permissive()
        .env("NATSGATE_PROXY_CONNECT_ENDPOINT", &connect)
        .env("NATSGATE_PROXY_SUBSCRIBE_ENDPOINT", &subscribe)
        .env("NATSGATE_PROXY_PUBLISH_ENDPOINT", &publish)
        .env("NATSGATE_PROXY_RPC_ENDPOINT", &rpc)
        .env("NATSGATE_PROXY_RPC_TIMEOUT", "500ms")
        .env("NATSGATE_PROXY_REFRESH_ENDPOINT", &refresh)
        .env("NATSGATE_PROXY_INCLUDE_CONNECTION_META", "true")
        .env("NATSGATE_NAMESPACES", &namespaces.to_string())
        .start()
}

fn requests(log: &Log, path: &str) -> Vec<Value> {
    log.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
}

/// A client without a token is authenticated by the connect proxy, gets
/// its server-side subscription, subscribes through the subscribe proxy
/// (allowed, refused with the backend's error, refused with its
/// disconnect), publishes data the backend rewrites, and calls an RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_decides_connect_subscribe_publish_and_rpc() {
    let log: Log = Arc::default();
    let base = start_backend(log.clone()).await;
    let gw = gateway(&base);
    proxied_session(&gw, |path| requests(&log, path)).await;
}

/// The same over GRPC, against a backend in another language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_proxy_decides_connect_subscribe_publish_and_rpc() {
    let Some(backend) = GrpcBackend::start() else { return };
    let gw = gateway(&backend.endpoint());
    proxied_session(&gw, |path| backend.requests(path)).await;
}

/// The scenario both proxies must pass; `sent(path)` is what the backend
/// received for an event.
async fn proxied_session(gw: &Gateway, sent: impl Fn(&str) -> Vec<Value>) {
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let reply = client.request(json!({"connect": {"data": {"hello": 1}, "name": "test"}})).await;
    let connect = &reply["connect"];
    assert_eq!(connect["data"], json!({"welcome": true}), "connect data from the backend: {reply}");
    assert!(connect["subs"]["news"].is_object(), "server-side subscription from the backend: {reply}");
    let connects = sent("/connect");
    assert_eq!(connects.len(), 1);
    assert_eq!(connects[0]["data"], json!({"hello": 1}));
    assert_eq!(connects[0]["transport"], "websocket");
    assert_eq!(connects[0]["protocol"], "json");
    assert_eq!(connects[0]["encoding"], "json");
    assert_eq!(connects[0]["name"], "test");
    assert_eq!(connects[0]["client"], connect["client"]);

    let sub = client.request(json!({"subscribe": {"channel": "px:room", "data": {"want": 1}}})).await;
    assert_eq!(sub["subscribe"]["data"], json!({"granted": true}), "{sub}");
    let subscribed = sent("/subscribe");
    assert_eq!(subscribed[0]["user"], "alice");
    assert_eq!(subscribed[0]["channel"], "px:room");
    assert_eq!(subscribed[0]["data"], json!({"want": 1}));
    assert_eq!(subscribed[0]["meta"], json!({"tenant": 7}), "connection meta goes along");

    let refused = client.request(json!({"subscribe": {"channel": "px:refused"}})).await;
    assert_eq!(refused["error"], json!({"code": 4001, "message": "not for you"}), "{refused}");

    let published = client.request(json!({"publish": {"channel": "px:room", "data": {"text": "hi"}}})).await;
    assert!(published.get("publish").is_some(), "{published}");
    let publication = client.recv_publication("px:room", TIMEOUT).await;
    assert_eq!(publication["data"], json!({"rewritten": {"text": "hi"}}), "{publication}");
    assert_eq!(sent("/publish")[0]["meta"], json!({"tenant": 7}));

    let rpc = client.request(json!({"rpc": {"method": "sum", "data": [1, 2]}})).await;
    assert_eq!(rpc["rpc"]["data"], json!({"method": "sum", "echo": [1, 2]}), "{rpc}");

    // The backend's disconnect closes the connection with its code.
    client.send_json(&json!({"id": 99, "subscribe": {"channel": "px:gone"}}).to_string()).await;
    let (code, reason) = client.expect_close(TIMEOUT).await;
    assert_eq!((code, reason.as_str()), (4501, "go away"));
}

/// An RPC the backend answers too late gets internal error 100 at the
/// proxy's timeout, and a flood of them does not slow another client of
/// the same gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_times_out_without_slowing_other_clients() {
    let log: Log = Arc::default();
    let base = start_backend(log.clone()).await;
    let gw = gateway(&base);
    let mut slow = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    slow.request(json!({"connect": {}})).await;
    let started = Instant::now();
    let reply = slow.request(json!({"rpc": {"method": "slow"}})).await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered at the 500 ms timeout");

    // Many clients flood the slow method while another one publishes and
    // receives its own publications.
    let mut flooders = Vec::new();
    for _ in 0..20 {
        let url = gw.ws_url();
        flooders.push(tokio::spawn(async move {
            let mut c = WsClient::connect(&url, Protocol::Json).await;
            c.request(json!({"connect": {}})).await;
            for _ in 0..3 {
                c.request(json!({"rpc": {"method": "slow"}})).await;
            }
        }));
    }
    let mut other = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    other.request(json!({"connect": {}})).await;
    other.subscribe("px:other").await;
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        other.request(json!({"publish": {"channel": "px:other", "data": {"i": i}}})).await;
        other.recv_publication("px:other", TIMEOUT).await;
        worst = worst.max(t.elapsed());
    }
    assert!(worst < Duration::from_millis(400), "a publish round trip took {worst:?} during the flood");
    for f in flooders {
        f.await.expect("flooding client");
    }
}

/// A backend that is down: the connect gets internal error 100 (as
/// Centrifugo answers a failed proxy call), not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_answers_internal_error() {
    let gw = gateway("http://127.0.0.1:9");
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let reply = client.request(json!({"connect": {}})).await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
}

/// centrifuge-js without a token through the HTTP proxy
/// (`tests/js/scenarios/proxy.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifuge_js_through_the_http_proxy() {
    let log: Log = Arc::default();
    let base = start_backend(log.clone()).await;
    let gw = gateway(&base);
    let env = [("GATEWAY_URLS", gw.ws_url()), ("TOKEN_SECRET", common::SECRET.to_string())];
    tokio::task::spawn_blocking(move || {
        common::node::run_node_tests(&["scenarios/proxy.mjs"], &env, "centrifuge-js through the backend proxy")
    })
    .await
    .expect("node run");
    assert!(!requests(&log, "/rpc").is_empty(), "the RPC reached the backend");
}

/// With a refresh proxy the server extends an expiring connection itself:
/// the client is not told it expires, the backend is asked at expiry (with
/// the connection's meta), and the connection lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_proxy_extends_the_connection_server_side() {
    let log: Log = Arc::default();
    let base = start_backend(log.clone()).await;
    let gw = gateway(&base);
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let reply = client.request(json!({"connect": {"data": {"short": true}}})).await;
    assert!(reply["connect"].get("expires").is_none(), "the server refreshes, not the client: {reply}");
    let deadline = Instant::now() + TIMEOUT;
    while requests(&log, "/refresh").is_empty() {
        assert!(Instant::now() < deadline, "the refresh proxy was not called");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refresh = &requests(&log, "/refresh")[0];
    assert_eq!(refresh["user"], "bob");
    assert_eq!(refresh["client"], reply["connect"]["client"]);
    assert_eq!(refresh["meta"], json!({"tenant": 8}));
    // Past the old expiry (and the grace delay a client refresh would get)
    // the connection still answers.
    let rpc = client.request(json!({"rpc": {"method": "after"}})).await;
    assert_eq!(rpc["rpc"]["data"]["method"], "after", "{rpc}");
}

/// Granular mode: named proxies picked per event and per namespace; the
/// client's upgrade request headers listed in a proxy's `http_headers`
/// reach the backend, others do not, and static headers are added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granular_mode_names_proxies_and_forwards_listed_headers() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let log: Log = Arc::default();
    let headers: Arc<Mutex<Vec<Value>>> = Arc::default();
    let base = start_backend_with_headers(log.clone(), headers.clone()).await;
    let proxies = json!([
        {"name": "auth", "endpoint": format!("{base}/connect"), "timeout": "1s",
         "http_headers": ["x-session"], "static_http_headers": {"x-static": "yes"}, "include_connection_meta": true},
        {"name": "rooms", "endpoint": format!("{base}/subscribe")},
        {"name": "calls", "endpoint": format!("{base}/rpc")}
    ]);
    let namespaces = json!([{"name": "px", "subscribe_proxy_name": "rooms"}, {"name": "news"}]);
    let gw = Gateway::builder()
        .permissive()
        .env("NATSGATE_GRANULAR_PROXY_MODE", "true")
        .env("NATSGATE_PROXIES", &proxies.to_string())
        .env("NATSGATE_CONNECT_PROXY_NAME", "auth")
        .env("NATSGATE_RPC_PROXY_NAME", "calls")
        .env("NATSGATE_NAMESPACES", &namespaces.to_string())
        .start();

    let mut request = gw.ws_url().into_client_request().expect("request");
    request.headers_mut().insert("x-session", "s-123".parse().expect("header"));
    request.headers_mut().insert("x-other", "hidden".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    use futures_util::{SinkExt, StreamExt};
    let mut replies = Vec::new();
    for command in [
        json!({"id": 1, "connect": {}}),
        json!({"id": 2, "subscribe": {"channel": "px:room"}}),
        json!({"id": 3, "rpc": {"method": "m", "data": {"x": 1}}}),
    ] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(command.to_string())).await.expect("send");
        let reply =
            tokio::time::timeout(TIMEOUT, ws.next()).await.expect("reply in time").expect("open").expect("frame");
        replies.push(serde_json::from_str::<Value>(reply.to_text().expect("text")).expect("JSON reply"));
    }
    assert!(replies[0]["connect"]["client"].is_string(), "{}", replies[0]);
    assert_eq!(replies[1]["subscribe"]["data"], json!({"granted": true}), "{}", replies[1]);
    assert_eq!(replies[2]["rpc"]["data"]["echo"], json!({"x": 1}), "{}", replies[2]);
    let seen = headers.lock().unwrap().clone();
    let connect = &seen[0];
    assert_eq!(connect["x-session"], "s-123", "listed header forwarded: {connect}");
    assert_eq!(connect["x-static"], "yes", "static header added: {connect}");
    assert!(connect.get("x-other").is_none(), "unlisted header kept back: {connect}");
    // The `rooms` proxy lists no headers and does not include meta.
    assert!(seen[1].get("x-session").is_none(), "{}", seen[1]);
    assert!(requests(&log, "/subscribe")[0].get("meta").is_none());
}

/// `checkconfig` lists the proxies without the credentials in their URLs,
/// and a bad endpoint is refused naming its option.
#[test]
fn checkconfig_lists_proxies_and_refuses_bad_endpoints() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_natsgate"));
        cmd.arg("checkconfig").env_clear().env("NATSGATE_TOKEN_HMAC_SECRET_KEY", "k").env("NATSGATE_API_KEY", "k");
        cmd.current_dir(std::env::temp_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run natsgate checkconfig")
    };
    let out = run(&[
        ("NATSGATE_PROXY_CONNECT_ENDPOINT", "http://user:s3cret@127.0.0.1:3000/connect"),
        ("NATSGATE_PROXY_RPC_ENDPOINT", "grpc://127.0.0.1:10001"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("proxy connect -> http://***@127.0.0.1:3000/connect"), "{stdout}");
    assert!(stdout.contains("proxy rpc -> grpc://127.0.0.1:10001"), "{stdout}");
    assert!(!stdout.contains("s3cret"));
    let out = run(&[("NATSGATE_PROXY_SUBSCRIBE_ENDPOINT", "ftp://example")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("NATSGATE_PROXY_SUBSCRIBE_ENDPOINT"), "{stderr}");
}

/// The first line of a streaming response (the connect reply or push).
async fn first_line(mut response: reqwest::Response) -> Value {
    let mut buffer = Vec::new();
    while !buffer.contains(&b'\n') {
        let chunk = tokio::time::timeout(TIMEOUT, response.chunk()).await.expect("a chunk in time").expect("body");
        buffer.extend_from_slice(&chunk.expect("the stream goes on"));
    }
    let end = buffer.iter().position(|&b| b == b'\n').expect("a line");
    serde_json::from_slice(&buffer[..end]).expect("a JSON line")
}

/// HTTP-streaming and uni_http_stream run on the same session driver as
/// WebSocket: the request headers listed in `proxy_http_headers` reach the
/// connect proxy (others do not), with the transport's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_streams_forward_listed_headers_to_the_connect_proxy() {
    let log: Log = Arc::default();
    let headers: Arc<Mutex<Vec<Value>>> = Arc::default();
    let base = start_backend_with_headers(log.clone(), headers.clone()).await;
    let gw = Gateway::builder()
        .permissive()
        .env("NATSGATE_PROXY_CONNECT_ENDPOINT", &format!("{base}/connect"))
        .env("NATSGATE_PROXY_HTTP_HEADERS", "x-session")
        .env("NATSGATE_HTTP_STREAM", "true")
        .env("NATSGATE_UNI_HTTP_STREAM", "true")
        .start();
    let http = reqwest::Client::new();
    let post = |path: &str, session: &str, body: Value| {
        http.post(format!("{}/connection/{path}", gw.http_url()))
            .header("x-session", session)
            .header("x-other", "hidden")
            .body(body.to_string())
            .send()
    };
    let response = post("http_stream", "s-1", json!({"id": 1, "connect": {}})).await.expect("http_stream");
    assert_eq!(response.status(), 200);
    let reply = first_line(response).await;
    assert_eq!(reply["connect"]["data"], json!({"welcome": true}), "{reply}");
    let response = post("uni_http_stream", "s-2", json!({})).await.expect("uni_http_stream");
    assert_eq!(response.status(), 200);
    let push = first_line(response).await;
    assert_eq!(push["connect"]["data"], json!({"welcome": true}), "{push}");

    let seen = headers.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["x-session"], "s-1", "listed header forwarded: {}", seen[0]);
    assert!(seen[0].get("x-other").is_none(), "unlisted header kept back: {}", seen[0]);
    assert_eq!(seen[1]["x-session"], "s-2", "listed header forwarded: {}", seen[1]);
    let connects = requests(&log, "/connect");
    assert_eq!(connects[0]["transport"], "http_stream", "{}", connects[0]);
    assert_eq!(connects[1]["transport"], "uni_http_stream", "{}", connects[1]);
}
