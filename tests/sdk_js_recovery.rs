//! centrifuge-js (JSON and Protobuf builds) recovering across gateways:
//! runs `node --test tests/js/scenarios/recovery.mjs` against gateways on
//! one nats-server: B (where clients come back, and whose HTTP API
//! publishes) and one killable gateway per JS test, which the scenario
//! kills with SIGKILL (`process.kill(pid)`) while a client is subscribed.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};
use std::time::Duration;

use common::{Gateway, GatewayBuilder, NatsServer, SECRET};

const API_KEY: &str = "sdk-js-recovery-key";
const SCENARIO: &str = "scenarios/recovery.mjs";
/// Two tests per SDK build, each killing its own gateway.
const KILLABLE: usize = 4;
const HISTORY_SIZE: u32 = 10;

fn gateway(nats: &NatsServer, name: &str) -> GatewayBuilder {
    let namespaces = format!(
        r#"[{{"name":"hist","history_size":{HISTORY_SIZE},"history_ttl":"60s","allow_recovery":true,
             "allow_subscribe_for_client":true,"allow_history_for_subscriber":true}}]"#
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
