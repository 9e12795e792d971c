//! Issue #20's personal channel and cache recovery with the real SDKs:
//! centrifuge-js (JSON and Protobuf, `tests/js/scenarios/chanfeat.mjs`) and
//! centrifuge-python 0.7.0 (`tests/chanfeat/flows.py`), across two gateways
//! on NATS, on the embedded broker, and against Centrifugo v6.9.1 with the
//! same configuration and the same assertions.

use natsgate_test_support as common;

use common::centrifugo::ServerConfig;
use common::node::run_node_tests;
use common::pair::Backend;
use common::sdk_target::{flows_python, run_python_flows, ApiOn, SdkTarget};
use common::{hs256_token, SECRET};
use serde_json::{json, Value};
use std::time::Duration;

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

fn run_js(target: &SdkTarget, what: &str) {
    run_node_tests(&["scenarios/chanfeat.mjs"], &target.node_env(API_KEY), what);
}

/// Runs the centrifuge-python flows; skips (saying why) when the venv is
/// missing outside CI.
async fn run_python(target: &SdkTarget, what: &str) {
    let Some(python) = flows_python(what) else { return };
    let http = reqwest::Client::new();
    let suffix = format!("{}-{}", std::process::id(), what.len());
    let channel = format!("cache:py-{suffix}");
    for i in 1..=3 {
        publish(&http, &target.http, &channel, json!({"i": i})).await;
    }
    let user = format!("py-{suffix}");
    let env = [
        ("URL_A", target.urls[0].clone()),
        ("URL_B", target.urls[1].clone()),
        ("USER_ID", user.clone()),
        ("TOKEN", hs256_token(SECRET, &user, Some(3600), Value::Null)),
        ("CACHE_TOKEN", hs256_token(SECRET, "py-cache", Some(3600), Value::Null)),
        ("CACHE_CHANNEL", channel),
        ("API_URL", target.http.clone()),
        ("API_KEY", API_KEY.to_string()),
    ];
    run_python_flows(&python, "tests/chanfeat/flows.py", &env, Duration::from_secs(90), what).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_flows_on_two_gateways_on_nats() {
    let target = SdkTarget::natsgate(Backend::Nats, &config(), ApiOn::Second);
    run_js(&target, "centrifuge-js channel features on NATS");
    run_python(&target, "centrifuge-python channel features on NATS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_flows_on_the_embedded_broker() {
    let target = SdkTarget::natsgate(Backend::Embedded, &config(), ApiOn::Second);
    run_js(&target, "centrifuge-js channel features, embedded broker");
    run_python(&target, "centrifuge-python channel features, embedded broker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_flows_against_centrifugo() {
    let Some(target) = SdkTarget::centrifugo_or_skip("chanfeat_sdk", &config().centrifugo_json()) else { return };
    run_js(&target, "centrifuge-js channel features against Centrifugo");
    run_python(&target, "centrifuge-python channel features against Centrifugo").await;
}
