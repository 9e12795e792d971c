//! centrifuge-js (JSON and Protobuf builds) recovering across gateways:
//! runs `node --test tests/js/scenarios/recovery.mjs` against gateways on
//! one nats-server: B (where clients come back, and whose HTTP API
//! publishes) and one killable gateway per JS test, which the scenario
//! kills with SIGKILL (`process.kill(pid)`) while a client is subscribed.
//!
//! The second test is the shortened chaos test: a gateway SIGKILLed under a
//! steady publishing load, its centrifuge-js clients moving through a
//! balancer to the other gateway and recovering every acknowledged
//! publication once (`tests/js/scenarios/recovery_under_load.mjs`).
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};
use std::time::Duration;

use common::{Gateway, GatewayBuilder, NatsServer, SECRET};

const API_KEY: &str = "sdk-js-recovery-key";
const SCENARIO: &str = "scenarios/recovery.mjs";
const UNDER_LOAD: &str = "scenarios/recovery_under_load.mjs";
/// Two tests per SDK build, each killing its own gateway.
const KILLABLE: usize = 4;
const HISTORY_SIZE: u32 = 10;

fn gateway(nats: &NatsServer, name: &str) -> GatewayBuilder {
    let namespaces = format!(
        r#"[{{"name":"hist","history_size":{HISTORY_SIZE},"history_ttl":"60s","allow_recovery":true,
             "allow_subscribe_for_client":true,"allow_history_for_subscriber":true}},
            {{"name":"load","history_size":1000,"history_ttl":"60s","allow_recovery":true,
             "allow_subscribe_for_client":true}}]"#
    );
    Gateway::builder().permissive().nats(nats).envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", &namespaces),
        ("NATSGATE_LOG_LEVEL", "natsgate=debug,info"),
    ])
}

#[test]
fn centrifuge_js_recovers_on_another_gateway_after_a_sigkill() {
    let dir = js_dir();
    for package in ["centrifuge", "ws"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "tests/js/node_modules/{package} is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
        );
    }
    assert!(dir.join(SCENARIO).is_file(), "missing tests/js/{SCENARIO}");

    let nats = NatsServer::start();
    let b = gateway(&nats, "gw-b").start();
    let mut killable: Vec<Gateway> = (0..KILLABLE).map(|i| gateway(&nats, &format!("gw-a{i}")).start()).collect();
    let urls: Vec<String> = killable.iter().map(Gateway::ws_url).collect();
    let pids: Vec<String> = killable.iter().map(|g| g.pid().to_string()).collect();

    let env = [
        ("GATEWAY_URLS", b.ws_url()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("KILLABLE_URLS", urls.join(",")),
        ("KILLABLE_PIDS", pids.join(",")),
        ("API_URL", format!("{}/api", b.http_url())),
        ("API_KEY", API_KEY.to_string()),
        ("CHANNEL_NS", "hist".to_string()),
        ("HISTORY_SIZE", HISTORY_SIZE.to_string()),
    ];
    run_node_tests(&[SCENARIO], &env, "centrifuge-js recovery scenarios");
    // Each test really killed its gateway.
    for (i, gw) in killable.iter_mut().enumerate() {
        assert!(gw.wait_exit(Duration::from_secs(2)).is_some(), "gateway gw-a{i} was not killed by the scenario");
    }
}

#[test]
fn centrifuge_js_loses_and_duplicates_nothing_acknowledged_when_a_gateway_is_killed_under_load() {
    assert!(js_dir().join(UNDER_LOAD).is_file(), "missing tests/js/{UNDER_LOAD}");
    let nats = NatsServer::start();
    let mut a = gateway(&nats, "gw-a").start();
    let b = gateway(&nats, "gw-b").start();
    let env = [
        ("GATEWAY_URLS", b.ws_url()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("KILL_ADDR", format!("127.0.0.1:{}", a.port())),
        ("KILL_PID", a.pid().to_string()),
        ("SURVIVOR_ADDR", format!("127.0.0.1:{}", b.port())),
        ("API_URLS", format!("{}/api,{}/api", a.http_url(), b.http_url())),
        ("API_KEY", API_KEY.to_string()),
        ("CHANNEL_NS", "load".to_string()),
        ("LOAD_SECONDS", "6".to_string()),
    ];
    run_node_tests(&[UNDER_LOAD], &env, "centrifuge-js recovery under load");
    assert!(a.wait_exit(Duration::from_secs(2)).is_some(), "gateway gw-a was not killed by the scenario");
}
