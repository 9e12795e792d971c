//! centrifuge-js (JSON and Protobuf builds) against natsgate's channel
//! model: runs `node --test tests/js/scenarios/channels.mjs` against a
//! gateway configured for it (private namespace, distinct subscription-token
//! key, HTTP API, short subscription expiry grace).
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};

use common::{Gateway, SECRET};

const SUB_SECRET: &str = "natsgate-js-subscription-secret";
const API_KEY: &str = "natsgate-js-api-key";
/// NATSGATE_CLIENT_EXPIRED_SUB_CLOSE_DELAY, also told to the scenario.
const SUB_CLOSE_DELAY_MS: u64 = 2000;
const SCENARIO: &str = "scenarios/channels.mjs";

#[test]
fn centrifuge_js_private_channels_token_refresh_and_server_side_subscriptions() {
    let dir = js_dir();
    assert!(
        dir.join("node_modules").join("centrifuge").is_dir(),
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
    );
    assert!(dir.join(SCENARIO).is_file(), "missing tests/js/{SCENARIO}");

    let delay = format!("{SUB_CLOSE_DELAY_MS}ms");
    let gateway = Gateway::builder()
        .envs(&[
            ("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET),
            ("NATSGATE_SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY", SUB_SECRET),
            ("NATSGATE_API_KEY", API_KEY),
            // `news` and friends: clients publish, subscribing is server-side only.
            ("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true"),
            ("NATSGATE_NAMESPACES", r#"[{"name":"secret","allow_publish_for_subscriber":true}]"#),
            ("NATSGATE_CLIENT_EXPIRED_SUB_CLOSE_DELAY", &delay),
        ])
        .start();

    let env = [
        ("GATEWAY_URLS", gateway.ws_url()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("SUB_TOKEN_SECRET", SUB_SECRET.to_string()),
        ("API_URL", gateway.http_url()),
        ("API_KEY", API_KEY.to_string()),
        ("SUB_CLOSE_DELAY_MS", SUB_CLOSE_DELAY_MS.to_string()),
    ];
    run_node_tests(&[SCENARIO], &env, "centrifuge-js channel scenarios");
}
