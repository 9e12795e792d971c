//! Shared poll (Centrifugo v6.9, issue #20) beyond `tests/shared_poll.rs`:
//!
//! - `shared_poll_publish` on every way in Centrifugo v6.9.1 serves it:
//!   `/api/shared_poll_publish`, `batch`, the legacy `/api` by name and by
//!   number (39), GRPC `SharedPollPublish` and GRPC `Batch` (grpcio stubs of
//!   `proto/api.proto`, `tests/grpc/shared_poll_client.py`); each one's data
//!   reaches a raw JSON client tracking the key, and the replies (refusals
//!   included) and the pushes equal Centrifugo v6.9.1's, call for call;
//! - the `shared_poll_refresh` proxy over GRPC (`tests/grpc/shared_poll_backend.py`,
//!   which answers the same over HTTP): versioned and versionless keys reach
//!   the tracker, a removed key is pushed as removed, a backend error or a
//!   backend slower than the proxy timeout delivers nothing and is asked
//!   again at the next poll, exactly as over HTTP; the requests the backend
//!   receives and the pushes equal Centrifugo's with the same GRPC backend.

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo};
use common::grpc_python::{GrpcPython, PortProcess};
use common::pair::{Backend, Pair};
use common::{free_port, hs256_token, now_secs, Gateway, GatewayBuilder, Protocol, WsClient, WsError, SECRET};
use natsgate::shared_poll::signature;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

const KEY: &str = "shared-poll-api-key";
const SP_SECRET: &str = "shared-poll-api-hmac";
const USER: &str = "u1";
const WAIT: Duration = Duration::from_secs(10);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

/// The channel whose keys the API tests publish: versioned, publish enabled,
/// and quiet (the backend answers nothing for it).
const QUIET: &str = "spq:quiet";

/// Both servers' namespaces: `spq` versioned with publish, `spv` versioned
/// without, `sp` versionless, `plain` no shared poll.
fn namespaces() -> Value {
    json!([
        {"name": "spq", "subscription_type": "shared_poll", "allow_subscribe_for_client": true,
         "shared_poll": {"refresh_interval": "1s", "mode": "versioned", "publish_enabled": true}},
        {"name": "spv", "subscription_type": "shared_poll", "allow_subscribe_for_client": true,
         "shared_poll": {"refresh_interval": "1s", "mode": "versioned"}},
        {"name": "sp", "subscription_type": "shared_poll", "allow_subscribe_for_client": true,
         "shared_poll": {"refresh_interval": "1s"}},
        {"name": "plain"}
    ])
}

/// The Python backend: GRPC on `grpc` (its printed port), HTTP on `http`,
/// requests recorded in a temp file.
struct RefreshBackend {
    process: PortProcess,
    http: u16,
    record: tempfile::NamedTempFile,
    _python: GrpcPython,
}

impl RefreshBackend {
    fn start() -> Option<RefreshBackend> {
        let python = GrpcPython::find("grpc, grpc_tools", "proto/proxy.proto")?;
        let record = tempfile::NamedTempFile::new().expect("record file");
        let http = free_port();
        let mut command = python.command("tests/grpc/shared_poll_backend.py");
        command.env("RECORD", record.path()).env("HTTP_PORT", http.to_string());
        let process = PortProcess::start(command);
        Some(RefreshBackend { process, http, record, _python: python })
    }

    fn grpc_endpoint(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.process.port)
    }

    fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/shared_poll_refresh", self.http)
    }

    /// Every request so far: `{"transport", "body", "metadata"}`.
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.record.path()).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Empties the record between runs.
    fn clear(&self) {
        std::fs::write(self.record.path(), "").expect("clear the record");
    }

    /// Waits until `channel` was asked at least `n` times.
    async fn wait_asked(&self, channel: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let asked = self.requests().iter().filter(|r| r["body"]["channel"] == channel).count();
            if asked >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{channel} asked {asked} times, not {n}: {:?}", self.requests());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// natsgate configured as Centrifugo below: the API key for HTTP and GRPC
/// (GRPC on `grpc_port` when given), the shared poll secret, the proxy.
fn gateway(name: &str, grpc_port: Option<u16>, proxy: &str) -> GatewayBuilder {
    let mut b = Gateway::builder().permissive().envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", KEY),
        ("NATSGATE_NAMESPACES", &namespaces().to_string()),
        ("NATSGATE_SHARED_POLL_HMAC_SECRET_KEY", SP_SECRET),
        ("NATSGATE_PROXY_SHARED_POLL_REFRESH_ENDPOINT", proxy),
        ("NATSGATE_PROXY_SHARED_POLL_REFRESH_TIMEOUT", "1s"),
    ]);
    if let Some(port) = grpc_port {
        b = b.envs(&[
            ("NATSGATE_GRPC_API", "true"),
            ("NATSGATE_GRPC_API_PORT", &port.to_string()),
            ("NATSGATE_GRPC_API_KEY", KEY),
        ]);
    }
    b
}

fn centrifugo_config(proxy: &str, grpc_port: u16) -> Value {
    json!({
        "client": {"token": {"hmac_secret_key": SECRET}, "allowed_origins": ["*"]},
        "http_api": {"key": KEY},
        "grpc_api": {"enabled": true, "address": "127.0.0.1", "port": grpc_port, "key": KEY},
        "shared_poll": {"hmac_secret_key": SP_SECRET},
        "channel": {
            "namespaces": namespaces(),
            "proxy": {"shared_poll_refresh": {"endpoint": proxy, "timeout": "1s"}},
        },
    })
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A raw JSON client tracking shared poll keys; pushes it has read but not
/// yet claimed are kept in `pushes`.
struct Tracker {
    ws: WsClient,
    pushes: Vec<Value>,
}

impl Tracker {
    async fn connect(ws_url: &str) -> Tracker {
        let mut ws = WsClient::connect(ws_url, Protocol::Json).await;
        ws.connect_token(&hs256_token(SECRET, USER, None, json!({}))).await;
        Tracker { ws, pushes: Vec::new() }
    }

    /// Subscribes to `channel` as a shared poll (type 4) and tracks `keys`
    /// (version 0) in one batch signed as the backend would.
    async fn track(&mut self, channel: &str, keys: &[&str]) {
        let reply = self.ws.request(json!({"subscribe": {"channel": channel, "type": 4}})).await;
        assert!(reply.get("subscribe").is_some(), "subscribe {channel}: {reply}");
        let sig = signature::sign(SP_SECRET, channel, keys, USER, now_secs(), 0);
        let items: Vec<Value> = keys.iter().map(|k| json!({"key": k})).collect();
        let track =
            json!({"sub_refresh": {"channel": channel, "type": 1, "track": [{"signature": sig, "items": items}]}});
        let reply = self.ws.request(track).await;
        assert!(reply.get("sub_refresh").is_some(), "track {channel} {keys:?}: {reply}");
    }

    /// Reads what arrives for up to `within`, keeping publication pushes.
    async fn read(&mut self, within: Duration) -> Result<(), WsError> {
        let message = self.ws.next(within).await?;
        if message["push"].get("pub").is_some() {
            self.pushes.push(message["push"].clone());
        }
        Ok(())
    }

    /// The push `{"channel", "pub"}` of `key` on `channel`, removed from
    /// the kept ones; waits up to [`WAIT`].
    async fn take(&mut self, channel: &str, key: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.pushes.iter().position(|p| p["channel"] == channel && p["pub"]["key"] == key);
            if let Some(i) = found {
                return self.pushes.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = self.read(left).await {
                panic!("no push of {key} on {channel} ({e:?}); kept: {:?}", self.pushes);
            }
        }
    }

    /// Reads for `quiet` and returns every push not claimed yet.
    async fn rest(&mut self, quiet: Duration) -> Vec<Value> {
        let deadline = Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.read(left).await {
                Ok(()) => {}
                Err(WsError::Timeout(_)) => break,
                Err(e) => panic!("the connection failed: {e:?}"),
            }
        }
        std::mem::take(&mut self.pushes)
    }
}

/// One HTTP call: `{"call", "status", "reply"}` (the reply parsed when JSON,
/// each line of a legacy answer parsed into a list).
async fn http_call(http: &reqwest::Client, base: &str, name: &str, path: &str, body: &str) -> Value {
    let response = http
        .post(format!("{base}{path}"))
        .header("X-API-Key", KEY)
        .body(body.to_string())
        .timeout(WAIT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let reply = if path == "/api" && status == 200 {
        Value::Array(text.lines().map(|l| serde_json::from_str(l).unwrap_or(json!(l))).collect())
    } else {
        serde_json::from_str(&text).unwrap_or(json!(text))
    };
    json!({"call": name, "status": status, "reply": reply})
}

/// The HTTP calls: each way in publishes one tracked key, then refusals.
/// No `epoch`: the backend's is empty, and Centrifugo unsubscribes every
/// tracker of a channel whose epoch a publication changes.
async fn http_calls(base: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let publish = |key: &str, via: &str| json!({"channel": QUIET, "key": key, "data": {"via": via}, "version": 1});
    let one = |body: Value| body.to_string();
    let mut out = Vec::new();
    let call = |name: &'static str, path: &'static str, body: String| {
        let http = http.clone();
        async move { http_call(&http, base, name, path, &body).await }
    };
    out.push(call("method", "/api/shared_poll_publish", one(publish("h1", "http"))).await);
    let batch = json!({"commands": [
        {"shared_poll_publish": publish("b1", "batch")},
        {"shared_poll_publish": {"channel": QUIET, "key": "b1"}},
    ]});
    out.push(call("batch", "/api/batch", batch.to_string()).await);
    let legacy = format!(
        "{}\n{}",
        json!({"id": 1, "method": "shared_poll_publish", "params": publish("l1", "legacy")}),
        json!({"id": 2, "method": "SHARED_POLL_PUBLISH", "params": {"channel": "nons:x", "key": "k", "version": 1}}),
    );
    out.push(call("legacy by name", "/api", legacy).await);
    let legacy = json!({"id": 3, "method": 39, "params": publish("n1", "legacy 39")});
    out.push(call("legacy by number", "/api", legacy.to_string()).await);
    let refusals = [
        ("no key", json!({"channel": QUIET, "data": 1, "version": 1})),
        ("no version", json!({"channel": QUIET, "key": "h1", "data": 1})),
        ("no channel", json!({"key": "h1", "data": 1, "version": 1})),
        ("unknown namespace", json!({"channel": "nons:x", "key": "h1", "data": 1, "version": 1})),
        ("versionless", json!({"channel": "sp:x", "key": "h1", "data": 1, "version": 1})),
        ("publish disabled", json!({"channel": "spv:x", "key": "h1", "data": 1, "version": 1})),
        ("not shared poll", json!({"channel": "plain:x", "key": "h1", "data": 1, "version": 1})),
        ("bad b64data", json!({"channel": QUIET, "key": "h1", "b64data": "***", "version": 2})),
    ];
    for (name, body) in refusals {
        out.push(call(name, "/api/shared_poll_publish", body.to_string()).await);
    }
    out.push(call("malformed", "/api/shared_poll_publish", r#"{"channel": 5}"#.into()).await);
    let bad_batch =
        r#"{"commands": [{"publish": {"channel": "plain:x", "data": 1}, "shared_poll_publish": {"key": 5}}]}"#;
    out.push(call("malformed in batch", "/api/batch", bad_batch.into()).await);
    let bad_legacy = json!({"id": 4, "method": 39, "params": {"version": "one"}});
    out.push(call("malformed legacy params", "/api", bad_legacy.to_string()).await);
    out
}

/// Runs `tests/grpc/shared_poll_client.py` against `grpc_port`.
fn grpc_calls(python: &GrpcPython, grpc_port: u16) -> Vec<Value> {
    let mut command = python.command("tests/grpc/shared_poll_client.py");
    command
        .env("GRPC_TARGET", format!("127.0.0.1:{grpc_port}"))
        .env("GRPC_KEY", KEY)
        .env("CHANNEL", QUIET)
        .env("VERSIONLESS", "sp:x")
        .env("CLOSED", "spv:x")
        .env("PLAIN", "plain:x")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run shared_poll_client.py");
    let deadline = Instant::now() + PYTHON_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shared_poll_client.py did not finish within {PYTHON_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "shared_poll_client.py failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"))
}

/// What one server did in the API flow.
#[derive(Debug)]
struct ApiRun {
    http: Vec<Value>,
    grpc: Vec<Value>,
    /// The pushes of the tracked keys, in key order.
    pushes: Vec<Value>,
    /// Pushes nothing asked for.
    extra: Vec<Value>,
}

/// A tracker on `ws_url` follows six keys of [`QUIET`]; the API calls go to
/// `api_url` and `grpc_port` (another gateway on NATS).
async fn api_run(backend: &RefreshBackend, python: &GrpcPython, ws_url: &str, api_url: &str, grpc_port: u16) -> ApiRun {
    let keys = ["h1", "b1", "l1", "n1", "g1", "g2"];
    backend.clear();
    let mut tracker = Tracker::connect(ws_url).await;
    tracker.track(QUIET, &keys).await;
    // The first poll of new keys comes once the server receives the
    // channel's shared_poll_publish messages (natsgate subscribes first).
    backend.wait_asked(QUIET, 1).await;
    let http = http_calls(api_url).await;
    let grpc = tokio::task::block_in_place(|| grpc_calls(python, grpc_port));
    eprintln!("HTTP calls: {http:#?}\nGRPC calls: {grpc:#?}");
    let mut pushes = Vec::new();
    for key in keys {
        pushes.push(tracker.take(QUIET, key).await);
    }
    let extra = tracker.rest(Duration::from_millis(500)).await;
    ApiRun { http, grpc, pushes, extra }
}

fn call<'a>(calls: &'a [Value], name: &str) -> &'a Value {
    calls.iter().find(|c| c["call"] == name).unwrap_or_else(|| panic!("no call {name}: {calls:?}"))
}

/// What natsgate must answer whatever Centrifugo does.
fn check_api_run(run: &ApiRun) {
    let http = &run.http;
    assert_eq!(call(http, "method")["reply"], json!({"result": {}}), "{http:?}");
    assert_eq!(call(http, "batch")["reply"]["replies"][0], json!({"shared_poll_publish": {}}), "{http:?}");
    assert_eq!(call(http, "batch")["reply"]["replies"][1]["error"]["code"], 107, "{http:?}");
    assert_eq!(call(http, "legacy by name")["reply"][0], json!({"id": 1, "result": {}}), "{http:?}");
    assert_eq!(call(http, "legacy by name")["reply"][1]["error"]["code"], 102, "{http:?}");
    assert_eq!(call(http, "legacy by number")["reply"][0], json!({"id": 3, "result": {}}), "{http:?}");
    for (name, code) in [
        ("no key", 107),
        ("no version", 107),
        ("no channel", 107),
        ("unknown namespace", 102),
        ("versionless", 108),
        ("publish disabled", 108),
        ("not shared poll", 107),
        ("bad b64data", 107),
    ] {
        assert_eq!(call(http, name)["reply"]["error"]["code"], code, "{name}: {http:?}");
    }
    assert_eq!(call(http, "malformed")["status"], 400);
    assert_eq!(call(http, "malformed in batch")["status"], 400);
    assert_eq!(call(http, "malformed legacy params")["reply"][0]["error"]["code"], 107, "{http:?}");
    let grpc = &run.grpc;
    assert_eq!(call(grpc, "publish g1")["reply"], json!({"result": {}}), "{grpc:?}");
    assert_eq!(call(grpc, "batch")["reply"]["replies"][0], json!({"shared_poll_publish": {}}), "{grpc:?}");
    assert_eq!(call(grpc, "publish disabled")["reply"]["error"]["code"], 108, "{grpc:?}");
    let vias: Vec<Value> = run.pushes.iter().map(|p| p["pub"]["data"]["via"].clone()).collect();
    assert_eq!(
        vias,
        [json!("http"), json!("batch"), json!("legacy"), json!("legacy 39"), json!("grpc"), json!("grpc batch")]
    );
    assert!(run.pushes.iter().all(|p| p["pub"]["version"] == 1), "{:?}", run.pushes);
    assert!(run.extra.is_empty(), "pushes no call made: {:?}", run.extra);
}

/// natsgate on NATS: the tracker on one gateway, every API call (HTTP and
/// GRPC) on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_way_reaches_a_tracker_across_gateways_on_nats() {
    let Some(python) = GrpcPython::find("grpc, grpc_tools", "proto/api.proto") else { return };
    let Some(backend) = RefreshBackend::start() else { return };
    let grpc_port = free_port();
    let proxy = backend.http_endpoint();
    let pair = Pair::start(Backend::Nats, |name| gateway(name, (name == "gw-b").then_some(grpc_port), &proxy));
    let run = api_run(&backend, &python, &pair.a.ws_url(), &pair.b().http_url(), grpc_port).await;
    check_api_run(&run);
}

/// The embedded broker, and the judge: Centrifugo v6.9.1 with the same
/// calls gives the same replies and the same pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_way_gives_centrifugos_replies_and_pushes() {
    let Some(python) = GrpcPython::find("grpc, grpc_tools", "proto/api.proto") else { return };
    let Some(backend) = RefreshBackend::start() else { return };
    let grpc_port = free_port();
    let gw = gateway("gw", Some(grpc_port), &backend.http_endpoint()).start();
    let ours = api_run(&backend, &python, &gw.ws_url(), &gw.http_url(), grpc_port).await;
    drop(gw);
    check_api_run(&ours);

    let Some(bin) = centrifugo_or_skip("every_api_way_gives_centrifugos_replies_and_pushes") else { return };
    let grpc_port = free_port();
    let centrifugo = Centrifugo::start(&bin, &centrifugo_config(&backend.http_endpoint(), grpc_port));
    wait_listening(grpc_port, "Centrifugo's GRPC API");
    let theirs = api_run(&backend, &python, &centrifugo.ws_url(), &centrifugo.http_url(), grpc_port).await;
    assert_eq!(ours.http, theirs.http, "HTTP replies: natsgate (left), Centrifugo (right)");
    assert_eq!(ours.grpc, theirs.grpc, "GRPC replies: natsgate (left), Centrifugo (right)");
    assert_eq!(ours.pushes, theirs.pushes, "pushes: natsgate (left), Centrifugo (right)");
    assert_eq!(ours.extra, theirs.extra, "other pushes: natsgate (left), Centrifugo (right)");
}

/// What one server did in the proxy flow.
#[derive(Debug, PartialEq)]
struct ProxyRun {
    /// The pushes of the tracked keys, in the order asked for.
    pushes: Vec<Value>,
    /// Pushes left (on the error and slow channels above all).
    extra: Vec<Value>,
    /// The distinct `{channel, key, version}` asked for, sorted.
    requests: Vec<Value>,
    /// The metadata names of GRPC requests (user-agent left out).
    metadata: Vec<Value>,
}

/// A tracker follows versioned keys (`spv:items`), versionless ones and a
/// key the backend removes (`sp:items`), and a key of a channel the backend
/// refuses (`sp:error`) and of one it answers too late (`sp:slow`).
async fn proxy_run(backend: &RefreshBackend, ws_url: &str) -> ProxyRun {
    backend.clear();
    let mut tracker = Tracker::connect(ws_url).await;
    tracker.track("spv:items", &["a", "b"]).await;
    tracker.track("sp:items", &["a", "gone"]).await;
    tracker.track("sp:error", &["a"]).await;
    tracker.track("sp:slow", &["a"]).await;
    let mut pushes = Vec::new();
    for (channel, key) in [("spv:items", "a"), ("spv:items", "b"), ("sp:items", "a"), ("sp:items", "gone")] {
        pushes.push(tracker.take(channel, key).await);
    }
    // Asked again at the next poll after the error and after the timeout.
    backend.wait_asked("sp:error", 2).await;
    backend.wait_asked("sp:slow", 2).await;
    // Past the slow answer of the first poll: nothing may come of it.
    let extra = tracker.rest(Duration::from_millis(1500)).await;
    drop(tracker);
    let all = backend.requests();
    // Each key asked for, with the version asked with, once: Centrifugo
    // polls each newly tracked key in a request of its own, natsgate the
    // keys of one track together (see the README's deviations).
    let mut requests: Vec<Value> = Vec::new();
    for r in &all {
        for item in r["body"]["items"].as_array().into_iter().flatten() {
            let asked = json!({"channel": r["body"]["channel"], "key": item["key"], "version": item["version"]});
            if !requests.contains(&asked) {
                requests.push(asked);
            }
        }
    }
    requests.sort_by_key(|b| b.to_string());
    let mut metadata: Vec<Value> = Vec::new();
    for r in all.iter().filter(|r| r["transport"] == "grpc") {
        if !metadata.contains(&r["metadata"]) {
            metadata.push(r["metadata"].clone());
        }
    }
    ProxyRun { pushes, extra, requests, metadata }
}

/// What natsgate must do whatever the transport.
fn check_proxy_run(run: &ProxyRun, transport: &str) {
    let pubs: Vec<&Value> = run.pushes.iter().map(|p| &p["pub"]).collect();
    assert_eq!(pubs[0], &json!({"key": "a", "data": {"key": "a", "v": 5}, "version": 5}), "{transport}: {run:?}");
    assert_eq!(pubs[1], &json!({"key": "b", "data": {"key": "b", "v": 5}, "version": 5}), "{transport}: {run:?}");
    assert_eq!(pubs[2]["data"], json!({"key": "a"}), "{transport}: {run:?}");
    assert!(pubs[2]["version"].as_u64().is_some_and(|v| v > 0), "{transport}: gateway-numbered version {run:?}");
    assert_eq!(pubs[3]["removed"], true, "{transport}: {run:?}");
    assert!(run.extra.is_empty(), "{transport}: nothing from an error or a late answer: {:?}", run.extra);
    // The second poll of spv:items asks with the versions the gateway holds.
    for key in ["a", "b"] {
        let asked = json!({"channel": "spv:items", "key": key, "version": 5});
        assert!(run.requests.contains(&asked), "{transport}: {:?}", run.requests);
    }
}

/// The GRPC proxy gives a tracker what the HTTP proxy gives it, with the
/// same backend decisions, and asks the backend the same; Centrifugo with
/// the same GRPC backend sends the same requests and pushes the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refresh_proxy_serves_trackers_as_http_and_as_centrifugo() {
    let Some(backend) = RefreshBackend::start() else { return };
    let on_grpc = gateway("gw-grpc", None, &backend.grpc_endpoint()).start();
    let over_grpc = proxy_run(&backend, &on_grpc.ws_url()).await;
    drop(on_grpc);
    check_proxy_run(&over_grpc, "GRPC");
    let on_http = gateway("gw-http", None, &backend.http_endpoint()).start();
    let over_http = proxy_run(&backend, &on_http.ws_url()).await;
    drop(on_http);
    check_proxy_run(&over_http, "HTTP");
    assert_eq!(over_grpc.pushes, over_http.pushes, "pushes: GRPC proxy (left), HTTP proxy (right)");
    assert_eq!(over_grpc.requests, over_http.requests, "requests: GRPC proxy (left), HTTP proxy (right)");

    let Some(bin) = centrifugo_or_skip("grpc_refresh_proxy_serves_trackers_as_http_and_as_centrifugo") else { return };
    let centrifugo = Centrifugo::start(&bin, &centrifugo_config(&backend.grpc_endpoint(), free_port()));
    let theirs = proxy_run(&backend, &centrifugo.ws_url()).await;
    assert_eq!(over_grpc, theirs, "natsgate's GRPC proxy (left), Centrifugo's (right)");
}
