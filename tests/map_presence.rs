//! Presence-style map channels (`map_clients`, `map_users`; Centrifugo
//! v6.8+, issue #20 item 5) with the real centrifuge-js (JSON and Protobuf
//! builds): `tests/js/scenarios/map_presence.mjs` run against natsgate on
//! NATS (clients joining and leaving on two gateways, observed from one of
//! them, and a third gateway SIGKILLed under a client whose keys then
//! expire), against the embedded broker (one gateway), and, as the judge,
//! against Centrifugo v6.9.1 with the same namespaces. Plus startup
//! refusals of what Centrifugo refuses.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::run_node_tests;
use common::sdk_target::{scenario_centrifugo_config, scenario_env, scenario_gateway, SdkTarget};
use common::{Gateway, GatewayBuilder, NatsServer};
use serde_json::json;
use std::time::Duration;

const API_KEY: &str = "map-presence-key";
const SCENARIO: &str = "scenarios/map_presence.mjs";
/// The presence maps' `map.key_ttl`: short, so expiry is seen within a test.
const KEY_TTL_SECS: u64 = 3;

/// The namespaces, in the form both servers read: rooms whose subscribers
/// are kept in an ephemeral `map_clients` map and a recoverable `map_users` map.
fn namespaces() -> serde_json::Value {
    let ttl = format!("{KEY_TTL_SECS}s");
    json!([
        {"name": "room", "allow_subscribe_for_client": true,
         "map_clients_presence_channel_prefix": "pc:", "map_users_presence_channel_prefix": "pu:"},
        {"name": "pc", "subscription_type": "map_clients", "allow_subscribe_for_client": true,
         "map": {"mode": "ephemeral", "key_ttl": ttl}},
        {"name": "pu", "subscription_type": "map_users", "allow_subscribe_for_client": true,
         "map": {"mode": "recoverable", "key_ttl": ttl}}
    ])
}

fn gateway(name: &str) -> GatewayBuilder {
    scenario_gateway(name, API_KEY, &namespaces())
}

fn env(ws_urls: &[String], api_url: String) -> Vec<(&'static str, String)> {
    let mut env = scenario_env(ws_urls, format!("{api_url}/api"), API_KEY);
    env.extend([
        ("ROOM_NS", "room".to_string()),
        ("CLIENTS_PREFIX", "pc:".to_string()),
        ("USERS_PREFIX", "pu:".to_string()),
        ("KEY_TTL_MS", (KEY_TTL_SECS * 1000).to_string()),
    ]);
    env
}

#[test]
fn centrifuge_js_presence_maps_across_gateways_on_nats_and_a_sigkilled_gateways_clients_expire() {
    let nats = NatsServer::start();
    let first = gateway("gw-first").nats(&nats).start();
    let last = gateway("gw-last").nats(&nats).start();
    let mut doomed = gateway("gw-doomed").nats(&nats).start();
    let mut env = env(&[first.ws_url(), last.ws_url()], last.http_url());
    env.push(("KILL_URL", doomed.ws_url()));
    env.push(("KILL_PID", doomed.pid().to_string()));
    run_node_tests(&[SCENARIO], &env, "centrifuge-js presence maps on NATS");
    assert!(doomed.wait_exit(Duration::from_secs(2)).is_some(), "the scenario did not kill gw-doomed");
}

#[test]
fn centrifuge_js_presence_maps_on_the_embedded_broker() {
    let gw = gateway("gw-embedded").start();
    run_node_tests(&[SCENARIO], &env(&[gw.ws_url()], gw.http_url()), "centrifuge-js presence maps, embedded broker");
}

/// The judge: the same scenario against Centrifugo v6.9.1 (one node, so
/// no kill). Its presence keys are renewed every
/// `client.presence_update_interval`, set below the TTL here.
#[test]
fn the_same_presence_map_flows_pass_against_centrifugo() {
    let mut config = scenario_centrifugo_config(API_KEY, &namespaces());
    config["client"]["presence_update_interval"] = json!("1s");
    let test = "the_same_presence_map_flows_pass_against_centrifugo";
    let Some(centrifugo) = SdkTarget::centrifugo_or_skip(test, &config) else { return };
    run_node_tests(&[SCENARIO], &env(&centrifugo.urls[..1], centrifugo.http.clone()), "presence maps on Centrifugo");
}

/// What Centrifugo's config validation refuses, natsgate refuses at startup.
#[test]
fn invalid_presence_map_configurations_are_refused_at_startup() {
    let cases = [
        (json!([{"name": "pc", "subscription_type": "map_clients", "map": {"mode": "persistent"}}]), "persistent"),
        (json!([{"name": "room", "map_clients_presence_channel_prefix": "nope:"}]), "does not exist"),
        (
            json!([{"name": "room", "map_users_presence_channel_prefix": "pc:"},
                   {"name": "pc", "subscription_type": "map_clients", "map": {"mode": "ephemeral", "key_ttl": "5s"}}]),
            "map_users",
        ),
        (
            json!([{"name": "mp", "subscription_type": "map", "map": {"mode": "persistent", "client_key": "nobody"}}]),
            "client_key",
        ),
        (
            json!([{"name": "mp", "subscription_type": "map", "map": {"mode": "ephemeral", "key_ttl": "5s", "meta_ttl": "10s"}}]),
            "meta_ttl",
        ),
    ];
    for (namespaces, expected) in cases {
        let refused = Gateway::builder()
            .permissive()
            .env("NATSGATE_NAMESPACES", &namespaces.to_string())
            .ready_timeout(Duration::from_secs(5))
            .try_start()
            .err();
        let log = refused.unwrap_or_else(|| panic!("{namespaces} was accepted"));
        assert!(log.contains(expected), "{namespaces}: {log}");
    }
}
