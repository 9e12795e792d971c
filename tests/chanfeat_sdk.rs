//! Issue #20's personal channel and cache recovery with the real SDKs:
//! centrifuge-js (JSON and Protobuf, `tests/js/scenarios/chanfeat.mjs`) and
//! centrifuge-python 0.7.0 (`tests/chanfeat/flows.py`), across two gateways
//! on NATS, on the embedded broker, and against Centrifugo v6.9.1 with the
//! same configuration and the same assertions.

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo, ServerConfig};
use common::node::run_node_tests;
use common::pair::{Backend, Pair};
use common::{hs256_token, repo_root, Gateway, SECRET};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "chanfeat-api-key";

/// One configuration for every server.
fn config() -> ServerConfig {
    let stream = |name: &str| json!({"name": name, "presence": true, "history_size": 10, "history_ttl": "300s", "force_recovery": true});
    let cache = |name: &str, auto: bool| {
        json!({"name": name, "history_size": 10, "history_ttl": "300s", "allow_subscribe_for_client": true,
               "force_recovery": true, "force_recovery_mode": "cache", "auto_cache_recover": auto})
    };
    ServerConfig(json!({
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "user_subscribe_to_personal": true,
        "user_personal_channel_namespace": "personal",
        "user_personal_single_connection": true,
        "namespaces": [stream("personal"), cache("cache", false), cache("auto", true)],
    }))
}

/// The server's two client URLs (the same one twice for one server) and
/// its HTTP base URL.
struct Target {
    urls: [String; 2],
    http: String,
}

fn run_js(target: &Target, what: &str) {
    let env = [
        ("GATEWAY_URLS", target.urls.join(",")),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("API_URL", target.http.clone()),
        ("API_KEY", API_KEY.to_string()),
    ];
    run_node_tests(&["scenarios/chanfeat.mjs"], &env, what);
}

/// Runs the centrifuge-python flows; skips (saying why) when the venv is
/// missing outside CI.
async fn run_python(target: &Target, what: &str) {
    let python = repo_root().join("target/grpc-venv/bin/python");
    if !python.is_file() {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{what}: target/grpc-venv is missing");
        println!("SKIPPED {what}: target/grpc-venv with centrifuge-python is missing (bash .ci/run makes it)");
        return;
    }
    let http = reqwest::Client::new();
    let suffix = format!("{}-{}", std::process::id(), what.len());
    let channel = format!("cache:py-{suffix}");
    for i in 1..=3 {
        publish(&http, &target.http, &channel, json!({"i": i})).await;
    }
    let user = format!("py-{suffix}");
    let mut child = Command::new(&python)
        .arg(repo_root().join("tests/chanfeat/flows.py"))
        .env("URL_A", &target.urls[0])
        .env("URL_B", &target.urls[1])
        .env("USER_ID", &user)
        .env("TOKEN", hs256_token(SECRET, &user, Some(3600), Value::Null))
        .env("CACHE_TOKEN", hs256_token(SECRET, "py-cache", Some(3600), Value::Null))
        .env("CACHE_CHANNEL", &channel)
        .env("API_URL", &target.http)
        .env("API_KEY", API_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait python").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().expect("python output");
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && out.contains("ok"), "{what}: centrifuge-python flows failed\n{out}\n{err}");
}

async fn publish(http: &reqwest::Client, base: &str, channel: &str, data: Value) {
    let reply: Value = http
        .post(format!("{base}/api/publish"))
        .header("X-API-Key", API_KEY)
        .body(json!({"channel": channel, "data": data}).to_string())
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("publish reply");
    assert!(reply.get("result").is_some(), "publish to {channel}: {reply}");
}

fn natsgate_target(backend: Backend) -> (Pair, Target) {
    let config = config();
    let pair = Pair::start(backend, |name| config.apply_to(Gateway::builder().env("NATSGATE_NAME", name)));
    let target = Target { urls: [pair.a.ws_url(), pair.b().ws_url()], http: pair.b().http_url() };
    (pair, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_flows_on_two_gateways_on_nats() {
    let (_pair, target) = natsgate_target(Backend::Nats);
    run_js(&target, "centrifuge-js channel features on NATS");
    run_python(&target, "centrifuge-python channel features on NATS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_flows_on_the_embedded_broker() {
    let (_pair, target) = natsgate_target(Backend::Embedded);
    run_js(&target, "centrifuge-js channel features, embedded broker");
    run_python(&target, "centrifuge-python channel features, embedded broker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_flows_against_centrifugo() {
    let Some(bin) = centrifugo_or_skip("chanfeat_sdk") else { return };
    let centrifugo = Centrifugo::start(&bin, &config().centrifugo_json());
    let target = Target { urls: [centrifugo.ws_url(), centrifugo.ws_url()], http: centrifugo.http_url() };
    run_js(&target, "centrifuge-js channel features against Centrifugo");
    run_python(&target, "centrifuge-python channel features against Centrifugo").await;
}
