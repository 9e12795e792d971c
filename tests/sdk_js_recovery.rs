//! centrifuge-js (JSON and Protobuf builds) recovering across gateways:
//! runs `node --test tests/js/scenarios/recovery.mjs` against gateways on
//! one nats-server: B (where clients come back, and whose HTTP API
//! publishes) and one killable gateway per JS test, which the scenario
//! kills with SIGKILL (`process.kill(pid)`) while a client is subscribed.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

mod common;

use common::{Gateway, GatewayBuilder, NatsServer, SECRET};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "sdk-js-recovery-key";
const SCENARIO: &str = "scenarios/recovery.mjs";
/// Two tests per SDK build, each killing its own gateway.
const KILLABLE: usize = 4;
const HISTORY_SIZE: u32 = 10;
/// The whole node run; each JS test bounds itself to 15 s.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

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
    let mut killable: Vec<Gateway> =
        (0..KILLABLE).map(|i| gateway(&nats, &format!("gw-a{i}")).start()).collect();
    let urls: Vec<String> = killable.iter().map(Gateway::ws_url).collect();
    let pids: Vec<String> = killable.iter().map(|g| g.pid().to_string()).collect();

    let log = tempfile::NamedTempFile::new().expect("temp file for node output");
    let mut child = Command::new("node")
        .args(["--test", "--test-reporter=spec", "--test-force-exit", "--test-timeout=30000", SCENARIO])
        .current_dir(&dir)
        .env("GATEWAY_URLS", b.ws_url())
        .env("TOKEN_SECRET", SECRET)
        .env("KILLABLE_URLS", urls.join(","))
        .env("KILLABLE_PIDS", pids.join(","))
        .env("API_URL", format!("{}/api", b.http_url()))
        .env("API_KEY", API_KEY)
        .env("CHANNEL_NS", "hist")
        .env("HISTORY_SIZE", HISTORY_SIZE.to_string())
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        // Clones share one file offset, so the two streams interleave.
        .stdout(log.as_file().try_clone().expect("clone log handle"))
        .stderr(log.as_file().try_clone().expect("clone log handle"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install nodejs (bash .ci/run does)"));

    let deadline = Instant::now() + NODE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    println!("----- node --test {SCENARIO} (B {}, killable {}) -----\n{output}", b.ws_url(), urls.join(","));
    match status {
        None => panic!("node did not finish within {NODE_TIMEOUT:?}; output above"),
        Some(status) => assert!(status.success(), "centrifuge-js recovery scenarios failed ({status}); output above"),
    }
    // Each test really killed its gateway.
    for (i, gw) in killable.iter_mut().enumerate() {
        assert!(
            gw.wait_exit(Duration::from_secs(2)).is_some(),
            "gateway gw-a{i} was not killed by the scenario"
        );
    }
}
