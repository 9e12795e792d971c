//! Delta compression of map subscriptions (issue #20) with centrifuge-js
//! 5.8.0 (JSON and Protobuf, `tests/js/scenarios/map_delta.mjs`): across
//! two gateways on NATS (the HTTP API on the first, the subscribers on the
//! second), on the embedded broker, and against Centrifugo v6.9.1 with the
//! same configuration and assertions: every map value the SDK holds equals
//! the one published (state, live per-key deltas of interleaved keys, a new
//! key, a removal, recovery after a reconnect), deltas are really used
//! (counted by the SDK), and the WebSocket bytes with and without delta are
//! printed as `MAP-DELTA-BYTES` lines. centrifuge-python 0.7.0 has no map
//! subscriptions.

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo, ServerConfig};
use common::node::run_node_tests;
use common::pair::{Backend, Pair};
use common::{Gateway, SECRET};
use serde_json::json;

const API_KEY: &str = "map-delta-sdk-api-key";

/// `mdl`: a persistent map namespace allowing fossil deltas.
fn config() -> ServerConfig {
    ServerConfig(json!({
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "namespaces": [{"name": "mdl", "subscription_type": "map", "allow_subscribe_for_client": true,
            "allowed_delta_types": ["fossil"], "map": {"mode": "persistent"}}],
    }))
}

/// Runs the scenario with the clients' URLs (publisher side, subscriber
/// side) and the publisher side's HTTP base URL.
fn run_js(urls: [String; 2], http: String, what: &str) {
    let env = [
        ("GATEWAY_URLS", urls.join(",")),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("API_URL", http),
        ("API_KEY", API_KEY.to_string()),
    ];
    run_node_tests(&["scenarios/map_delta.mjs"], &env, what);
}

fn on_natsgate(backend: Backend, what: &str) {
    let config = config();
    let pair = Pair::start(backend, |name| config.apply_to(Gateway::builder().env("NATSGATE_NAME", name)));
    run_js([pair.a.ws_url(), pair.b().ws_url()], pair.a.http_url(), what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_map_delta_on_two_gateways_on_nats() {
    on_natsgate(Backend::Nats, "centrifuge-js map delta on NATS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_map_delta_on_the_embedded_broker() {
    on_natsgate(Backend::Embedded, "centrifuge-js map delta, embedded broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_map_delta_against_centrifugo() {
    let Some(bin) = centrifugo_or_skip("map_delta_sdk") else { return };
    let centrifugo = Centrifugo::start(&bin, &config().centrifugo_json());
    run_js(
        [centrifugo.ws_url(), centrifugo.ws_url()],
        centrifugo.http_url(),
        "centrifuge-js map delta against Centrifugo",
    );
}
