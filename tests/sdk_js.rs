//! The official JavaScript SDK (centrifuge-js, JSON and Protobuf builds)
//! against real gateways: runs `node --test` on `tests/js/*.test.mjs`.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

mod common;

use common::{Gateway, NatsServer, SECRET};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole node run; each JS test bounds itself to 10 s.
const NODE_TIMEOUT: Duration = Duration::from_secs(180);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

/// Runs node's test runner on every `*.test.mjs` in tests/js against
/// `gateways`, and panics with node's output unless all tests pass.
fn run_node_tests(gateways: &[&Gateway]) {
    let dir = js_dir();
    assert!(
        dir.join("node_modules").join("centrifuge").is_dir(),
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read tests/js")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.test.mjs files in {}",
        dir.display()
    );

    let urls: Vec<String> = gateways.iter().map(|g| g.ws_url()).collect();
    let log = tempfile::NamedTempFile::new().expect("temp file for node output");
    let mut child = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-force-exit",
            "--test-timeout=30000",
        ])
        .args(&files)
        .current_dir(&dir)
        .env("GATEWAY_URLS", urls.join(","))
        .env("TOKEN_SECRET", SECRET)
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
    println!(
        "----- node --test {} (GATEWAY_URLS={}) -----\n{output}",
        files.join(" "),
        urls.join(",")
    );
    match status {
        None => panic!("node tests did not finish within {NODE_TIMEOUT:?}; output above"),
        Some(status) => assert!(
            status.success(),
            "centrifuge-js tests failed ({status}); output above"
        ),
    }
}

/// Two gateways sharing one nats-server: client A on the first, B on the
/// second, so publications must cross NATS.
#[test]
fn centrifuge_js_across_two_gateways_on_nats_server() {
    let nats = NatsServer::start();
    let first = Gateway::builder()
        .permissive()
        .nats(&nats)
        .env("NATSGATE_NAME", "gw-1")
        .start();
    let second = Gateway::builder()
        .permissive()
        .nats(&nats)
        .env("NATSGATE_NAME", "gw-2")
        .start();
    run_node_tests(&[&first, &second]);
}

/// One gateway with its embedded in-process broker (no NATSGATE_NATS_URL).
#[test]
fn centrifuge_js_on_embedded_broker() {
    let gateway = Gateway::builder().permissive().start();
    run_node_tests(&[&gateway]);
}
