//! Real JavaScript clients of the server side: cent.js (a Centrifugo HTTP
//! API client from npm) and nats.js (publishing straight to a channel's
//! NATS subject), with centrifuge-js listening. Runs `node --test` on
//! `tests/js/scenarios/api.mjs` against two gateways sharing one
//! nats-server.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

mod common;

use common::{Gateway, NatsServer, SECRET};
use natsgate::broker::subject::SubjectMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "sdk-js-api-key";
/// The whole node run; each JS test bounds itself to 10 s.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);
/// The channel nats.js publishes to (its subject escapes `.` and `_`).
const NATS_CHANNEL: &str = "direct.nats_js";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

#[test]
fn cent_js_and_nats_js_against_two_gateways() {
    let dir = js_dir();
    for package in ["centrifuge", "cent.js", "nats", "ws"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "tests/js/node_modules/{package} is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
        );
    }
    let nats = NatsServer::start();
    let gateway = |name: &str| {
        Gateway::builder()
            .permissive()
            .nats(&nats)
            .env("NATSGATE_NAME", name)
            .env("NATSGATE_API_KEY", API_KEY)
            .start()
    };
    let (a, b) = (gateway("gw-a"), gateway("gw-b"));
    let ws_urls = [a.ws_url(), b.ws_url()].join(",");
    let api_urls = [
        format!("{}/api", a.http_url()),
        format!("{}/api", b.http_url()),
    ]
    .join(",");
    let subject = SubjectMap::new("natsgate").channel_subject(NATS_CHANNEL);

    let log = tempfile::NamedTempFile::new().expect("temp file for node output");
    let mut child = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-force-exit",
            "--test-timeout=30000",
            "scenarios/api.mjs",
        ])
        .current_dir(&dir)
        .env("GATEWAY_URLS", &ws_urls)
        .env("TOKEN_SECRET", SECRET)
        .env("API_URLS", &api_urls)
        .env("API_KEY", API_KEY)
        .env("NATS_URL", nats.url())
        .env("NATS_CHANNEL", NATS_CHANNEL)
        .env("NATS_SUBJECT", &subject)
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
    println!("----- node --test scenarios/api.mjs (GATEWAY_URLS={ws_urls}, API_URLS={api_urls}) -----\n{output}");
    match status {
        None => panic!("node did not finish within {NODE_TIMEOUT:?}; output above"),
        Some(status) => assert!(
            status.success(),
            "cent.js / nats.js scenarios failed ({status}); output above"
        ),
    }
}
