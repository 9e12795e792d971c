//! Shared poll subscriptions (Centrifugo v6.9, issue #20) with the real
//! centrifuge-js (JSON and Protobuf builds): `tests/js/scenarios/shared_poll.mjs`
//! against natsgate on NATS (two gateways: clients on one, the HTTP API's
//! `shared_poll_publish` on the other), against the embedded broker, and, as
//! the judge, against Centrifugo v6.9.1 with the same namespaces. The
//! backend answering the `shared_poll_refresh` proxy is a real HTTP server
//! (`tests/js/shared_poll_backend.mjs`) started by each test.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo};
use common::node::{js_dir, run_node_tests};
use common::sdk_target::{scenario_centrifugo_config, scenario_env, scenario_gateway};
use common::{GatewayBuilder, NatsServer};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const API_KEY: &str = "shared-poll-key";
const SP_SECRET: &str = "shared-poll-hmac-secret";
const SCENARIO: &str = "scenarios/shared_poll.mjs";

/// The namespaces, in the form both servers read: a versionless one (the
/// gateway numbers the versions) and a versioned one that takes
/// `shared_poll_publish`; both polled every second.
fn namespaces() -> serde_json::Value {
    json!([
        {"name": "sp", "subscription_type": "shared_poll", "allow_subscribe_for_client": true,
         "shared_poll": {"refresh_interval": "1s"}},
        {"name": "spv", "subscription_type": "shared_poll", "allow_subscribe_for_client": true,
         "shared_poll": {"refresh_interval": "1s", "mode": "versioned", "publish_enabled": true}}
    ])
}

/// The backend process; killed when dropped.
struct Backend {
    child: Child,
    url: String,
}

impl Backend {
    fn start() -> Backend {
        let mut child = Command::new("node")
            .arg("shared_poll_backend.mjs")
            .current_dir(js_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node (install nodejs; bash .ci/run does)");
        let stdout = child.stdout.take().expect("backend stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("the backend printed no port within 10 s");
        let port: u16 = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("PORT <n> line");
        Backend { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(name: &str, backend: &Backend) -> GatewayBuilder {
    scenario_gateway(name, API_KEY, &namespaces()).envs(&[
        ("NATSGATE_SHARED_POLL_HMAC_SECRET_KEY", SP_SECRET),
        ("NATSGATE_PROXY_SHARED_POLL_REFRESH_ENDPOINT", &format!("{}/refresh", backend.url)),
    ])
}

fn env(ws_url: String, api_url: String, backend: &Backend) -> Vec<(&'static str, String)> {
    let mut env = scenario_env(&[ws_url], format!("{api_url}/api"), API_KEY);
    env.extend([
        ("BACKEND_URL", backend.url.clone()),
        ("SP_SECRET", SP_SECRET.to_string()),
        ("POLL_NS", "sp".to_string()),
        ("PUB_NS", "spv".to_string()),
    ]);
    env
}

#[test]
fn centrifuge_js_shared_poll_on_two_gateways_on_nats() {
    let backend = Backend::start();
    let nats = NatsServer::start();
    let clients = gateway("gw-clients", &backend).nats(&nats).start();
    let api = gateway("gw-api", &backend).nats(&nats).start();
    let env = env(clients.ws_url(), api.http_url(), &backend);
    run_node_tests(&[SCENARIO], &env, "centrifuge-js shared poll on NATS");
}

#[test]
fn centrifuge_js_shared_poll_on_the_embedded_broker() {
    let backend = Backend::start();
    let gw = gateway("gw-embedded", &backend).start();
    let env = env(gw.ws_url(), gw.http_url(), &backend);
    run_node_tests(&[SCENARIO], &env, "centrifuge-js shared poll, embedded broker");
}

/// The judge: the same scenario against Centrifugo v6.9.1.
#[test]
fn the_same_shared_poll_flows_pass_against_centrifugo() {
    let Some(bin) = centrifugo_or_skip("the_same_shared_poll_flows_pass_against_centrifugo") else { return };
    let backend = Backend::start();
    let mut config = scenario_centrifugo_config(API_KEY, &namespaces());
    config["shared_poll"] = json!({"hmac_secret_key": SP_SECRET});
    config["channel"]["proxy"] =
        json!({"shared_poll_refresh": {"endpoint": format!("{}/refresh", backend.url), "timeout": "1s"}});
    let centrifugo = Centrifugo::start(&bin, &config);
    let env = env(centrifugo.ws_url(), centrifugo.http_url(), &backend);
    run_node_tests(&[SCENARIO], &env, "shared poll on Centrifugo");
}
