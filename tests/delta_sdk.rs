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

use common::centrifugo::{centrifugo_or_skip, Centrifugo, ServerConfig};
use common::node::run_node_tests;
use common::pair::{Backend, Pair};
use common::{hs256_token, repo_root, Gateway, SECRET};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// The server's client URLs (publisher side, subscriber side; the same for
/// one server) and the publisher side's HTTP base URL.
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
    run_node_tests(&["scenarios/delta.mjs"], &env, what);
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
    let suffix = format!("{}-{}", std::process::id(), what.len());
    let mut child = Command::new(&python)
        .arg(repo_root().join("tests/chanfeat/delta_flows.py"))
        .env("URL", &target.urls[1])
        .env("TOKEN", hs256_token(SECRET, "py-delta", Some(3600), Value::Null))
        .env("API_URL", &target.http)
        .env("API_KEY", API_KEY)
        .env("SUFFIX", suffix)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let deadline = Instant::now() + Duration::from_secs(100);
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

fn natsgate_target(backend: Backend) -> (Pair, Target) {
    let config = config();
    let pair = Pair::start(backend, |name| config.apply_to(Gateway::builder().env("NATSGATE_NAME", name)));
    let target = Target { urls: [pair.a.ws_url(), pair.b().ws_url()], http: pair.a.http_url() };
    (pair, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_delta_and_tags_on_two_gateways_on_nats() {
    let (_pair, target) = natsgate_target(Backend::Nats);
    run_js(&target, "centrifuge-js delta and tags filter on NATS");
    run_python(&target, "centrifuge-python delta and tags filter on NATS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_delta_and_tags_on_the_embedded_broker() {
    let (_pair, target) = natsgate_target(Backend::Embedded);
    run_js(&target, "centrifuge-js delta and tags filter, embedded broker");
    run_python(&target, "centrifuge-python delta and tags filter, embedded broker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_delta_and_tags_against_centrifugo() {
    let Some(bin) = centrifugo_or_skip("delta_sdk") else { return };
    let centrifugo = Centrifugo::start(&bin, &config().centrifugo_json());
    let target = Target { urls: [centrifugo.ws_url(), centrifugo.ws_url()], http: centrifugo.http_url() };
    run_js(&target, "centrifuge-js delta and tags filter against Centrifugo");
    run_python(&target, "centrifuge-python delta and tags filter against Centrifugo").await;
}
