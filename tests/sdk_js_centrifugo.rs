//! The centrifuge-js flows of `tests/sdk_js.rs` and `tests/sdk_js_channels.rs`,
//! with the same assertions, against the real Centrifugo v6.9.1: what the
//! SDK sees from natsgate it must see from Centrifugo too, so these prove
//! the scenarios test Centrifugo's behaviour and not natsgate's.
//!
//! Not run here: `scenarios/api.mjs` (publishes straight to natsgate's NATS
//! subjects), `scenarios/recovery.mjs` (kills one of several gateways
//! sharing history; Centrifugo's memory engine loses history with its
//! process) and `scenarios/drain.mjs` (natsgate's drain to another gateway).
//!
//! Needs node, `npm ci --prefix tests/js` and the Centrifugo binary (see
//! `tests/differential.rs`; skipped with a message without it, failing
//! when `CI=true`).

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo, ServerConfig};
use common::node::{js_dir, run_node_tests};
use common::SECRET;
use serde_json::json;

#[test]
fn centrifuge_js_interop_against_centrifugo() {
    let Some(bin) = centrifugo_or_skip("centrifuge_js_interop_against_centrifugo") else { return };
    // The same options as `GatewayBuilder::permissive()`.
    let config = ServerConfig(json!({
        "token_hmac_secret_key": SECRET,
        "allow_subscribe_for_client": true,
        "allow_publish_for_client": true,
    }));
    let server = Centrifugo::start(&bin, &config.centrifugo_json());
    let mut files: Vec<String> = std::fs::read_dir(js_dir())
        .expect("read tests/js")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let env = [("GATEWAY_URLS", server.ws_url()), ("TOKEN_SECRET", SECRET.to_string())];
    run_node_tests(&files, &env, "centrifuge-js tests against Centrifugo");
}

#[test]
fn centrifuge_js_channel_scenarios_against_centrifugo() {
    let Some(bin) = centrifugo_or_skip("centrifuge_js_channel_scenarios_against_centrifugo") else { return };
    const SUB_SECRET: &str = "natsgate-js-subscription-secret";
    const API_KEY: &str = "natsgate-js-api-key";
    const SUB_CLOSE_DELAY_MS: u64 = 2000;
    // The same options as tests/sdk_js_channels.rs gives its gateway.
    let config = ServerConfig(json!({
        "token_hmac_secret_key": SECRET,
        "subscription_token_hmac_secret_key": SUB_SECRET,
        "api_key": API_KEY,
        "allow_publish_for_client": true,
        "namespaces": [{"name": "secret", "allow_publish_for_subscriber": true}],
        "client_expired_sub_close_delay": format!("{SUB_CLOSE_DELAY_MS}ms"),
    }));
    let server = Centrifugo::start(&bin, &config.centrifugo_json());
    let env = [
        ("GATEWAY_URLS", server.ws_url()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("SUB_TOKEN_SECRET", SUB_SECRET.to_string()),
        ("API_URL", server.http_url()),
        ("API_KEY", API_KEY.to_string()),
        ("SUB_CLOSE_DELAY_MS", SUB_CLOSE_DELAY_MS.to_string()),
    ];
    run_node_tests(&["scenarios/channels.mjs"], &env, "centrifuge-js channel scenarios against Centrifugo");
}
