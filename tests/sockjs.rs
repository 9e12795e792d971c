//! SockJS at `/connection/sockjs` (`NATSGATE_SOCKJS`): centrifuge-js with
//! sockjs-client over websocket, xhr-streaming and xhr-polling across two
//! gateways on one nats-server, and bad input on the SockJS endpoints
//! (runs `node --test` on `tests/js/scenarios/sockjs.mjs` and
//! `sockjs_bad_input.mjs`). Also: the endpoint
//! is off unless enabled.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};
use common::{Gateway, GatewayBuilder, NatsServer, SECRET};

const API_KEY: &str = "sockjs-test-key";
const SCENARIOS: [&str; 2] = ["scenarios/sockjs.mjs", "scenarios/sockjs_bad_input.mjs"];
const BODY_LIMIT: &str = "4096";

fn gateway(nats: &NatsServer, name: &str) -> GatewayBuilder {
    let namespaces = r#"[{"name":"sj","history_size":20,"history_ttl":"60s","allow_recovery":true,"presence":true,
        "allow_subscribe_for_client":true,"allow_publish_for_client":true,"allow_history_for_subscriber":true,
        "allow_presence_for_subscriber":true}]"#;
    Gateway::builder().permissive().nats(nats).envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_SOCKJS", "true"),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", namespaces),
        ("NATSGATE_WEBSOCKET_MESSAGE_SIZE_LIMIT", BODY_LIMIT),
        // A refresh that did not take would end the connection (3005) 1 s
        // after the short token expires, within the token test's wait.
        ("NATSGATE_CLIENT_EXPIRED_CLOSE_DELAY", "1s"),
    ])
}

#[test]
fn centrifuge_js_over_sockjs_transports_across_two_gateways() {
    let dir = js_dir();
    for package in ["centrifuge", "sockjs-client", "ws"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "tests/js/node_modules/{package} is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
        );
    }
    let nats = NatsServer::start();
    let a = gateway(&nats, "gw-a").start();
    let b = gateway(&nats, "gw-b").start();
    let sockjs = |g: &Gateway| format!("{}/connection/sockjs", g.http_url());
    let env = [
        ("GATEWAY_URLS", format!("{},{}", a.ws_url(), b.ws_url())),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("SOCKJS_URLS", format!("{},{}", sockjs(&a), sockjs(&b))),
        ("API_URL", format!("{}/api", b.http_url())),
        ("API_KEY", API_KEY.to_string()),
        ("CHANNEL_NS", "sj".to_string()),
        ("BODY_LIMIT", BODY_LIMIT.to_string()),
    ];
    run_node_tests(&SCENARIOS, &env, "centrifuge-js over SockJS");
    // The gateways lived through the bad input.
    for g in [&a, &b] {
        assert_eq!(g.http_get("/health").expect("health").0, 200);
    }
}

#[test]
fn sockjs_is_off_unless_enabled() {
    let gateway = Gateway::builder().permissive().start();
    let (status, _) = gateway.http_get("/connection/sockjs/info").expect("request");
    assert_eq!(status, 404);
    let enabled = Gateway::builder().permissive().env("NATSGATE_SOCKJS", "true").start();
    let (status, body) = enabled.http_get("/connection/sockjs/info").expect("request");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&body).expect("info is JSON");
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    let (status, body) = enabled.http_get("/connection/sockjs").expect("request");
    assert_eq!((status, body.as_str()), (200, "Welcome to SockJS!\n"));
}
