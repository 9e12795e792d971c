//! The map server API (Centrifugo v6.8+ `map_*` methods) over every way in:
//! `/api/<method>`, `batch`, the legacy `/api` and GRPC (grpcio stubs of
//! `proto/api.proto`, `tests/grpc/map_client.py`, judged against Centrifugo
//! v6.9.1's GRPC API); the conditional writes (`key_mode`, `version`) and
//! idempotency keys raced from two gateways on one nats-server and from
//! concurrent calls on the embedded broker: exactly one claim wins, the
//! highest version ends in the state, a repeated idempotency key is
//! answered with the first write's position whichever gateway gets it.
//!
//! The wire-level comparison of every method and refusal with Centrifugo is
//! the differential group `map_api` (`tests/differential/cases_map_api.rs`).

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo};
use common::grpc_python::GrpcPython;
use common::pair::{api_call, api_result, Backend, Pair};
use common::{free_port, Gateway, GatewayBuilder};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

const KEY: &str = "map-api-key";
/// Concurrent writers in the race tests.
const RACERS: usize = 24;
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

fn namespaces() -> Value {
    json!([
        {"name": "mp", "subscription_type": "map", "map": {"mode": "persistent"}},
        {"name": "ep", "subscription_type": "map", "map": {"mode": "ephemeral", "key_ttl": "60s"}},
        {"name": "plain"}
    ])
}

fn builder(grpc_port: Option<u16>) -> impl Fn(&str) -> GatewayBuilder {
    move |name: &str| {
        let mut b = Gateway::builder().permissive().envs(&[
            ("NATSGATE_NAME", name),
            ("NATSGATE_API_KEY", KEY),
            ("NATSGATE_NAMESPACES", &namespaces().to_string()),
        ]);
        if let Some(port) = grpc_port.filter(|_| name != "gw-b") {
            b = b.envs(&[
                ("NATSGATE_GRPC_API", "true"),
                ("NATSGATE_GRPC_API_PORT", &port.to_string()),
                ("NATSGATE_GRPC_API_KEY", KEY),
            ]);
        }
        b
    }
}

async fn post(http: &reqwest::Client, gw: &Gateway, path: &str, body: &str) -> String {
    let response = http
        .post(format!("{}{path}", gw.http_url()))
        .header("X-API-Key", KEY)
        .body(body.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert_eq!(response.status().as_u16(), 200, "POST {path} {body}");
    response.text().await.expect("body")
}

/// Writes on A, reads on B; the same calls in `batch` and the legacy `/api`.
async fn http_batch_and_legacy(pair: &Pair) {
    let http = reqwest::Client::new();
    let (a, b) = (&pair.a, pair.b());
    let ch = "mp:http";
    let first = api_result(&http, a, KEY, "map_publish", &json!({"channel": ch, "key": "k1", "data": {"v": 1}})).await;
    // Offsets count per channel on the embedded broker, per namespace on NATS.
    let offset = first["offset"].as_u64().expect("an offset");
    let taken = json!({"channel": ch, "key": "k1", "data": 2, "key_mode": "if_new"});
    let taken = api_result(&http, b, KEY, "map_publish", &taken).await;
    assert_eq!((taken["suppressed"].clone(), taken["suppress_reason"].clone()), (json!(true), json!("key_exists")));
    let state = api_result(&http, b, KEY, "map_read_state", &json!({"channel": ch, "limit": -1})).await;
    assert_eq!(state["entries"][0]["data"], json!({"v": 1}), "{state}");

    let batch = json!({"commands": [
        {"map_publish": {"channel": ch, "key": "k2", "data": "two"}},
        {"map_stats": {"channel": ch}},
        {"map_remove": {"channel": ch, "key": "k1"}},
        {"map_read_stream": {"channel": ch, "limit": -1}},
        {"map_publish": {"channel": "plain:x", "key": "k"}},
        {"map_clear": {"channel": ch}},
        {"map_stats": {"channel": ch}}
    ]});
    let replies: Value = serde_json::from_str(&post(&http, b, "/api/batch", &batch.to_string()).await).expect("JSON");
    let replies = replies["replies"].as_array().expect("replies").clone();
    assert!(replies[0]["map_publish"]["offset"].as_u64() > Some(offset), "{replies:?}");
    assert_eq!(replies[1]["map_stats"]["num_keys"], 2, "{replies:?}");
    assert!(replies[2]["map_remove"]["offset"].as_u64() > replies[0]["map_publish"]["offset"].as_u64(), "{replies:?}");
    let stream = replies[3]["map_read_stream"]["entries"].as_array().expect("stream entries");
    assert_eq!(stream.len(), 3, "{replies:?}");
    assert_eq!(stream[2]["removed"], true, "{replies:?}");
    assert_eq!(replies[4]["error"]["code"], 107, "{replies:?}");
    assert_eq!(replies[5], json!({"map_clear": {}}), "{replies:?}");
    assert_eq!(replies[6], json!({"map_stats": {}}), "cleared: {replies:?}");

    let legacy = [
        json!({"id": 1, "method": "map_publish", "params": {"channel": ch, "key": "x", "data": 1}}),
        json!({"id": 2, "method": 37, "params": {"channel": ch}}),
        json!({"id": 3, "method": "map_remove", "params": {"channel": ch, "key": 5}}),
        json!({"id": 4, "method": 38, "params": {"channel": ch}}),
    ];
    let body: Vec<String> = legacy.iter().map(Value::to_string).collect();
    let lines = post(&http, a, "/api", &body.join("\n")).await;
    let lines: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0]["result"]["offset"].as_u64().is_some_and(|o| o >= 1), "{lines:?}");
    assert_eq!(lines[1], json!({"id": 2, "result": {"num_keys": 1}}));
    assert_eq!(lines[2], json!({"id": 3, "error": {"code": 107, "message": "bad request"}}));
    assert_eq!(lines[3], json!({"id": 4, "result": {}}));
}

/// Concurrent writers split over A and B (the same gateway on the embedded
/// broker): one `if_new` claim wins; versioned writes leave the highest
/// version, and the stream holds only increasing versions; an idempotency
/// key is written once whichever gateway sees it.
async fn races(pair: &Pair) {
    let http = reqwest::Client::new();
    let gw = |i: usize| if i.is_multiple_of(2) { &pair.a } else { pair.b() };
    let ch = "mp:race";

    let claims = (0..RACERS).map(|i| {
        let body = json!({"channel": ch, "key": "lock", "data": {"owner": i}, "key_mode": "if_new"});
        let http = http.clone();
        async move { api_result(&http, gw(i), KEY, "map_publish", &body).await }
    });
    let claims = join_all(claims).await;
    let won: Vec<&Value> = claims.iter().filter(|r| r.get("suppressed").is_none()).collect();
    assert_eq!(won.len(), 1, "exactly one if_new claim wins: {claims:?}");
    assert!(claims.iter().filter(|r| r.get("suppressed").is_some()).all(|r| r["suppress_reason"] == "key_exists"));
    let lock = api_result(&http, pair.b(), KEY, "map_read_state", &json!({"channel": ch, "key": "lock"})).await;
    assert_eq!(lock["entries"][0]["offset"], won[0]["offset"], "the winner's write is the state: {lock}");

    // Versions 1..=RACERS in a scrambled order, all at once.
    let versions: Vec<u64> = (0..RACERS as u64).map(|i| (i * 7) % RACERS as u64 + 1).collect();
    let writes = versions.iter().enumerate().map(|(i, v)| {
        let body = json!({"channel": ch, "key": "ver", "data": {"v": v}, "version": v, "version_epoch": "e"});
        let http = http.clone();
        async move { (*v, api_result(&http, gw(i), KEY, "map_publish", &body).await) }
    });
    let writes = join_all(writes).await;
    for (v, r) in &writes {
        assert!(r.get("suppressed").is_none() || r["suppress_reason"] == "version", "version {v}: {r}");
    }
    let state = api_result(&http, &pair.a, KEY, "map_read_state", &json!({"channel": ch, "key": "ver"})).await;
    assert_eq!(state["entries"][0]["data"], json!({"v": RACERS}), "the highest version is the state: {state}");
    let stream = api_result(&http, pair.b(), KEY, "map_read_stream", &json!({"channel": ch, "limit": -1})).await;
    let accepted: Vec<u64> = stream["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["key"] == "ver")
        .map(|e| e["data"]["v"].as_u64().expect("v"))
        .collect();
    assert!(accepted.windows(2).all(|w| w[0] < w[1]), "accepted versions increase in the stream: {accepted:?}");
    assert_eq!(accepted.last(), Some(&(RACERS as u64)));
    let published = writes.iter().filter(|(_, r)| r.get("suppressed").is_none()).count();
    assert_eq!(published, accepted.len(), "each accepted write is one stream entry");

    // An idempotency key seen on A answers B with A's position.
    let once = json!({"channel": ch, "key": "once", "data": 1, "idempotency_key": "op-1"});
    let first = api_result(&http, &pair.a, KEY, "map_publish", &once).await;
    let again = api_result(&http, pair.b(), KEY, "map_publish", &once).await;
    assert_eq!(again["offset"], first["offset"], "{first} / {again}");
    assert_eq!(again["suppress_reason"], "idempotency", "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_batch_legacy_and_races_on_two_gateways_on_nats() {
    let pair = Pair::start(Backend::Nats, builder(None));
    http_batch_and_legacy(&pair).await;
    races(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_batch_legacy_and_races_on_the_embedded_broker() {
    let pair = Pair::start(Backend::Embedded, builder(None));
    http_batch_and_legacy(&pair).await;
    races(&pair).await;
}

/// Runs `tests/grpc/map_client.py` against `grpc_port`; its transcript.
fn grpc_transcript(python: &GrpcPython, grpc_port: u16, suffix: &str) -> Vec<Value> {
    let mut command = python.command("tests/grpc/map_client.py");
    command
        .env("GRPC_TARGET", format!("127.0.0.1:{grpc_port}"))
        .env("GRPC_KEY", KEY)
        .env("MAP_CHANNEL", format!("mp:grpc{suffix}"))
        .env("EPH_CHANNEL", format!("ep:grpc{suffix}"))
        .env("PLAIN_CHANNEL", format!("plain:grpc{suffix}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run map_client.py");
    let deadline = Instant::now() + PYTHON_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("map_client.py did not finish within {PYTHON_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "map_client.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"))
}

/// Epochs named by order of appearance, times replaced: what may differ
/// between two servers.
fn normalize(value: &Value, epochs: &mut Vec<String>, offsets: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("epoch", Value::String(e)) => {
                            let i = epochs.iter().position(|x| x == e).unwrap_or_else(|| {
                                epochs.push(e.clone());
                                epochs.len() - 1
                            });
                            json!(format!("<epoch {i}>"))
                        }
                        ("time", _) => json!("<time>"),
                        ("offset", _) if !offsets => json!("<offset>"),
                        _ => normalize(v, epochs, offsets),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalize(v, epochs, offsets)).collect()),
        other => other.clone(),
    }
}

fn reply<'a>(transcript: &'a [Value], call: &str) -> &'a Value {
    &transcript.iter().find(|c| c["call"] == call).unwrap_or_else(|| panic!("no call {call}"))["reply"]
}

/// What natsgate's GRPC map methods must answer whatever Centrifugo does.
fn check_grpc(ours: &[Value]) {
    assert!(reply(ours, "publish a")["result"]["offset"].is_string(), "{ours:?}");
    assert_eq!(reply(ours, "if_new taken")["result"]["suppress_reason"], "key_exists");
    assert_eq!(reply(ours, "if_exists missing")["result"]["suppress_reason"], "key_not_found");
    assert_eq!(reply(ours, "bad key_mode")["error"]["code"], 107);
    assert_eq!(reply(ours, "version 2")["result"]["suppress_reason"], "version");
    assert_eq!(reply(ours, "idempotent again")["result"]["suppress_reason"], "idempotency");
    assert_eq!(reply(ours, "state bad revision")["error"]["code"], 112);
    assert_eq!(reply(ours, "ephemeral version")["error"]["code"], 100);
    assert_eq!(reply(ours, "unknown namespace")["error"]["code"], 102);
    assert_eq!(reply(ours, "state")["result"]["entries"][1]["data"], "AAE=", "binary data as bytes");
    assert_eq!(reply(ours, "stats after clear")["result"], json!({}));
}

fn assert_same(ours: &[Value], theirs: &[Value], offsets: bool, whose: &str) {
    let ours = normalize(&json!(ours), &mut Vec::new(), offsets);
    let theirs = normalize(&json!(theirs), &mut Vec::new(), offsets);
    for (o, t) in ours.as_array().expect("list").iter().zip(theirs.as_array().expect("list")) {
        assert_eq!(o, t, "natsgate {whose} (left) and Centrifugo (right) differ");
    }
    assert_eq!(ours.as_array().map(Vec::len), theirs.as_array().map(Vec::len));
}

/// GRPC's map methods on natsgate (embedded, and on NATS with the calls on
/// one of two gateways) give Centrifugo v6.9.1's replies, call for call
/// (the Python client is built from natsgate's proto, so equal replies
/// prove the field numbers and shapes). Offsets on NATS count per
/// namespace (see the README's deviations): there they are not compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_map_methods_give_centrifugos_replies() {
    let Some(python) = GrpcPython::find("grpc, grpc_tools", "proto/api.proto") else { return };
    let (embedded_port, nats_port) = (free_port(), free_port());
    let embedded = Pair::start(Backend::Embedded, builder(Some(embedded_port)));
    let on_embedded = grpc_transcript(&python, embedded_port, "");
    drop(embedded);
    let nats = Pair::start(Backend::Nats, builder(Some(nats_port)));
    let on_nats = grpc_transcript(&python, nats_port, "");
    drop(nats);
    check_grpc(&on_embedded);
    check_grpc(&on_nats);

    let Some(bin) = centrifugo_or_skip("grpc_map_methods_give_centrifugos_replies") else { return };
    let centrifugo_grpc = free_port();
    let config = json!({
        "http_api": {"key": KEY},
        "grpc_api": {"enabled": true, "address": "127.0.0.1", "port": centrifugo_grpc, "key": KEY},
        "channel": {"namespaces": namespaces()},
    });
    let centrifugo = Centrifugo::start(&bin, &config);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", centrifugo_grpc)).is_err() {
        assert!(Instant::now() < deadline, "Centrifugo's GRPC API did not listen: {}", centrifugo.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let theirs = grpc_transcript(&python, centrifugo_grpc, "");
    assert_same(&on_embedded, &theirs, true, "embedded");
    assert_same(&on_nats, &theirs, false, "on NATS");
}

/// The refusals of the HTTP API, checked on the embedded broker (the wire
/// comparison with Centrifugo is the differential group `map_api`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_the_embedded_broker() {
    let pair = Pair::start(Backend::Embedded, builder(None));
    let http = reqwest::Client::new();
    let code = |reply: Value| reply["error"]["code"].as_u64().unwrap_or(0);
    let cases = [
        ("map_publish", json!({"channel": "mp:r"}), 107),
        ("map_publish", json!({"channel": "mp:r", "key": "k", "key_mode": "x"}), 107),
        ("map_publish", json!({"channel": "ep:r", "key": "k", "version": 1}), 100),
        ("map_remove", json!({"channel": "nons:r", "key": "k"}), 102),
        ("map_read_state", json!({"channel": "plain:r"}), 107),
        ("map_read_state", json!({"channel": "mp:r", "revision_epoch": "zz"}), 112),
        ("map_clear", json!({"channel": ""}), 107),
    ];
    for (method, body, expected) in cases {
        assert_eq!(code(api_call(&http, &pair.a, KEY, method, &body).await), expected, "{method} {body}");
    }
}
