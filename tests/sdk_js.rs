//! The official JavaScript SDK (centrifuge-js, JSON and Protobuf builds)
//! against real gateways: runs `node --test` on `tests/js/*.test.mjs`.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};
use common::{Gateway, NatsServer, SECRET};

/// Runs node's test runner on every `*.test.mjs` in tests/js against
/// `gateways`, and panics with node's output unless all tests pass.
fn run_sdk_tests(gateways: &[&Gateway]) {
    let mut files: Vec<String> = std::fs::read_dir(js_dir())
        .expect("read tests/js")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs files in tests/js");
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let urls: Vec<String> = gateways.iter().map(|g| g.ws_url()).collect();
    let env = [("GATEWAY_URLS", urls.join(",")), ("TOKEN_SECRET", SECRET.to_string())];
    run_node_tests(&files, &env, "centrifuge-js tests");
}

/// Two gateways sharing one nats-server: client A on the first, B on the
/// second, so publications must cross NATS.
#[test]
fn centrifuge_js_across_two_gateways_on_nats_server() {
    let nats = NatsServer::start();
    let first = Gateway::builder().permissive().nats(&nats).env("NATSGATE_NAME", "gw-1").start();
    let second = Gateway::builder().permissive().nats(&nats).env("NATSGATE_NAME", "gw-2").start();
    run_sdk_tests(&[&first, &second]);
}

/// One gateway with its embedded in-process broker (no NATSGATE_NATS_URL).
#[test]
fn centrifuge_js_on_embedded_broker() {
    let gateway = Gateway::builder().permissive().start();
    run_sdk_tests(&[&gateway]);
}
