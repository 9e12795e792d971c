//! Delta compression and tags filters (issue #20) with the real SDKs:
//! centrifuge-js (JSON and Protobuf, `tests/js/scenarios/delta.mjs`) and
//! centrifuge-python 0.7.0 (`tests/chanfeat/delta_flows.py`), across two
//! gateways on NATS (the HTTP API on the first, the subscribers on the
//! second), on the embedded broker, and against Centrifugo v6.9.1 with the
//! same configuration and the same assertions: every publication the SDK
//! hands over equals the document published, live and after a reconnect
//! with recovery, with deltas really used (counted by the SDKs, and the
//! WebSocket bytes with and without delta printed as `DELTA-BYTES` lines);
//! tags filters deliver exactly the matching publications; bad filters
//! unsubscribe with 107 as from Centrifugo.

use natsgate_test_support as common;

use common::centrifugo::ServerConfig;
use common::node::run_node_tests;
use common::pair::Backend;
use common::sdk_target::{flows_python, run_python_flows, ApiOn, SdkTarget};
use common::{hs256_token, SECRET};
use serde_json::{json, Value};
use std::time::Duration;

const API_KEY: &str = "delta-sdk-api-key";

/// One configuration for every server: `dl` allows fossil deltas, recovery
/// and tags filters; `plain` has history only.
fn config() -> ServerConfig {
    let history = |name: &str| {
        json!({"name": name, "history_size": 100, "history_ttl": "300s",
        "allow_subscribe_for_client": true})
    };
    let mut dl = history("dl");
    dl.as_object_mut().unwrap().extend(
        json!({"allow_recovery": true, "allowed_delta_types": ["fossil"], "allow_tags_filter": true})
            .as_object()
            .unwrap()
            .clone(),
    );
    ServerConfig(json!({
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "namespaces": [dl, history("plain")],
    }))
}

/// The publisher side is the first URL (and the HTTP API), the subscriber
/// side the second.
fn run_js(target: &SdkTarget, what: &str) {
    run_node_tests(&["scenarios/delta.mjs"], &target.node_env(API_KEY), what);
}

/// Runs the centrifuge-python flows; skips (saying why) when the venv is
/// missing outside CI.
async fn run_python(target: &SdkTarget, what: &str) {
    let Some(python) = flows_python(what) else { return };
    let suffix = format!("{}-{}", std::process::id(), what.len());
    let env = [
        ("URL", target.urls[1].clone()),
        ("TOKEN", hs256_token(SECRET, "py-delta", Some(3600), Value::Null)),
        ("API_URL", target.http.clone()),
        ("API_KEY", API_KEY.to_string()),
        ("SUFFIX", suffix),
    ];
    run_python_flows(&python, "tests/chanfeat/delta_flows.py", &env, Duration::from_secs(100), what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_delta_and_tags_on_two_gateways_on_nats() {
    let target = SdkTarget::natsgate(Backend::Nats, &config(), ApiOn::First);
    run_js(&target, "centrifuge-js delta and tags filter on NATS");
    run_python(&target, "centrifuge-python delta and tags filter on NATS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_delta_and_tags_on_the_embedded_broker() {
    let target = SdkTarget::natsgate(Backend::Embedded, &config(), ApiOn::First);
    run_js(&target, "centrifuge-js delta and tags filter, embedded broker");
    run_python(&target, "centrifuge-python delta and tags filter, embedded broker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_delta_and_tags_against_centrifugo() {
    let Some(target) = SdkTarget::centrifugo_or_skip("delta_sdk", &config().centrifugo_json()) else { return };
    run_js(&target, "centrifuge-js delta and tags filter against Centrifugo");
    run_python(&target, "centrifuge-python delta and tags filter against Centrifugo").await;
}
