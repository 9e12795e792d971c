//! centrifuge-js (JSON and Protobuf builds) against natsgate's channel
//! model: runs `node --test tests/js/scenarios/channels.mjs` against a
//! gateway configured for it (private namespace, distinct subscription-token
//! key, HTTP API, short subscription expiry grace).
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

mod common;

use common::{Gateway, SECRET};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUB_SECRET: &str = "natsgate-js-subscription-secret";
const API_KEY: &str = "natsgate-js-api-key";
/// NATSGATE_CLIENT_EXPIRED_SUB_CLOSE_DELAY, also told to the scenario.
const SUB_CLOSE_DELAY_MS: u64 = 2000;
const SCENARIO: &str = "scenarios/channels.mjs";
/// The whole node run; each JS test bounds itself to 15 s.
const NODE_TIMEOUT: Duration = Duration::from_secs(120);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

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

    let log = tempfile::NamedTempFile::new().expect("temp file for node output");
    let mut child = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-force-exit",
            "--test-timeout=30000",
            SCENARIO,
        ])
        .current_dir(&dir)
        .env("GATEWAY_URLS", gateway.ws_url())
        .env("TOKEN_SECRET", SECRET)
        .env("SUB_TOKEN_SECRET", SUB_SECRET)
        .env("API_URL", gateway.http_url())
        .env("API_KEY", API_KEY)
        .env("SUB_CLOSE_DELAY_MS", SUB_CLOSE_DELAY_MS.to_string())
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
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
    println!("----- node --test {SCENARIO} (gateway {}) -----\n{output}", gateway.ws_url());
    match status {
        None => panic!("node did not finish within {NODE_TIMEOUT:?}; output above"),
        Some(status) => assert!(status.success(), "centrifuge-js channel scenarios failed ({status}); output above"),
    }
}
