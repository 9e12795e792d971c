//! Map subscriptions (Centrifugo v6.8+, issue #20 item 5) with the real
//! centrifuge-js (JSON and Protobuf builds): `tests/js/scenarios/map.mjs`
//! run against natsgate on NATS (three gateways: clients on one, the HTTP
//! API on another, and a third SIGKILLed under a client that then resyncs
//! on the survivor), against the embedded broker (one gateway), and, as the
//! judge, against Centrifugo v6.9.1 with the same namespaces.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::run_node_tests;
use common::sdk_target::{scenario_centrifugo_config, scenario_env, scenario_gateway, SdkTarget};
use common::{GatewayBuilder, NatsServer};
use serde_json::json;
use std::time::Duration;

const API_KEY: &str = "map-subscriptions-key";
const SCENARIO: &str = "scenarios/map.mjs";

/// The namespaces, in the form both servers read: a persistent map whose
/// subscribers may set and remove keys, and an ephemeral one (keys live 60 s).
fn namespaces() -> serde_json::Value {
    json!([
        {"name": "mp", "subscription_type": "map", "allow_subscribe_for_client": true,
         "map": {"mode": "persistent", "allow_publish_for_subscriber": true, "allow_remove_for_subscriber": true}},
        {"name": "ep", "subscription_type": "map", "allow_subscribe_for_client": true,
         "map": {"mode": "ephemeral", "key_ttl": "60s"}}
    ])
}

fn gateway(name: &str) -> GatewayBuilder {
    scenario_gateway(name, API_KEY, &namespaces())
}

fn env(ws_url: String, api_url: String) -> Vec<(&'static str, String)> {
    let mut env = scenario_env(&[ws_url], format!("{api_url}/api"), API_KEY);
    env.extend([("MAP_NS", "mp".to_string()), ("EPH_NS", "ep".to_string())]);
    env
}

#[test]
fn centrifuge_js_map_subscriptions_across_gateways_on_nats_survive_a_sigkill() {
    let nats = NatsServer::start();
    let clients = gateway("gw-clients").nats(&nats).start();
    let survivor = gateway("gw-survivor").nats(&nats).start();
    let mut doomed = gateway("gw-doomed").nats(&nats).start();
    let mut env = env(clients.ws_url(), survivor.http_url());
    env.push(("KILL_ADDR", format!("127.0.0.1:{}", doomed.port())));
    env.push(("KILL_PID", doomed.pid().to_string()));
    env.push(("SURVIVOR_ADDR", format!("127.0.0.1:{}", survivor.port())));
    run_node_tests(&[SCENARIO], &env, "centrifuge-js map subscriptions on NATS");
    assert!(doomed.wait_exit(Duration::from_secs(2)).is_some(), "the scenario did not kill gw-doomed");
}

#[test]
fn centrifuge_js_map_subscriptions_on_the_embedded_broker() {
    let gw = gateway("gw-embedded").start();
    run_node_tests(&[SCENARIO], &env(gw.ws_url(), gw.http_url()), "centrifuge-js map subscriptions, embedded broker");
}

/// The judge: the same scenario against Centrifugo v6.9.1.
#[test]
fn the_same_map_flows_pass_against_centrifugo() {
    let config = scenario_centrifugo_config(API_KEY, &namespaces());
    let test = "the_same_map_flows_pass_against_centrifugo";
    let Some(centrifugo) = SdkTarget::centrifugo_or_skip(test, &config) else { return };
    let env = env(centrifugo.urls[0].clone(), centrifugo.http.clone());
    run_node_tests(&[SCENARIO], &env, "map subscriptions on Centrifugo");
}
