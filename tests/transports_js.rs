//! centrifuge-js over HTTP-streaming (JSON, Protobuf) and SSE across two
//! gateways: runs `node --test tests/js/scenarios/transports.mjs`, whose
//! round-robin balancer sends the stream and each emulation request to
//! either gateway, so commands travel over NATS to the gateway holding the
//! session; the last test kills gateway A and the client recovers on B.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::run_node_tests;
use common::{Gateway, GatewayBuilder, NatsServer, SECRET};
use std::time::Duration;

const API_KEY: &str = "transports-js-key";
const SCENARIO: &str = "scenarios/transports.mjs";

fn gateway(nats: &NatsServer, name: &str) -> GatewayBuilder {
    let namespaces = r#"[{"name":"tr","history_size":100,"history_ttl":"60s","allow_recovery":true,
        "presence":true,"allow_presence_for_subscriber":true,"allow_history_for_subscriber":true,
        "allow_subscribe_for_client":true,"allow_publish_for_client":true,"allow_publish_for_subscriber":true}]"#;
    Gateway::builder().permissive().nats(nats).envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", namespaces),
        ("NATSGATE_HTTP_STREAM", "true"),
        ("NATSGATE_SSE", "true"),
        // The token-refresh test's first token lives 2 s.
        ("NATSGATE_CLIENT_EXPIRED_CLOSE_DELAY", "1s"),
        ("NATSGATE_LOG_LEVEL", "natsgate=debug,info"),
    ])
}

#[test]
fn centrifuge_js_over_http_stream_and_sse_across_two_gateways() {
    let nats = NatsServer::start();
    let mut a = gateway(&nats, "gw-a").start();
    let b = gateway(&nats, "gw-b").start();
    let env = [
        ("GATEWAY_URLS", b.ws_url()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("HTTP_A", a.http_url()),
        ("HTTP_B", b.http_url()),
        ("PID_A", a.pid().to_string()),
        ("API_KEY", API_KEY.to_string()),
        ("CHANNEL_NS", "tr".to_string()),
    ];
    run_node_tests(&[SCENARIO], &env, "centrifuge-js transports scenarios");
    assert!(a.wait_exit(Duration::from_secs(2)).is_some(), "gateway A was not killed by the scenario");
}
