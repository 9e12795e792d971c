//! Runs node's test runner on SDK scenario files in `tests/js`, bounded in
//! time, and fails the Rust test with node's output unless all pass.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole node run; each JS test bounds itself.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(180);

/// `tests/js` of the repository.
pub fn js_dir() -> PathBuf {
    crate::repo_root().join("tests").join("js")
}

/// `node --test <files>` in tests/js with `env`; `what` names the scenarios
/// in failure messages.
pub fn run_node_tests(files: &[&str], env: &[(&str, String)], what: &str) {
    let dir = js_dir();
    assert!(
        dir.join("node_modules").join("centrifuge").is_dir(),
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
    );
    let log = tempfile::NamedTempFile::new().expect("temp file for node output");
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-reporter=spec", "--test-force-exit", "--test-timeout=30000"])
        .args(files)
        .current_dir(&dir)
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        // Clones share one file offset, so the two streams interleave.
        .stdout(log.as_file().try_clone().expect("clone log handle"))
        .stderr(log.as_file().try_clone().expect("clone log handle"));
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child =
        command.spawn().unwrap_or_else(|e| panic!("cannot run node ({e}): install nodejs (bash .ci/run does)"));

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
    let shown: Vec<String> =
        env.iter().filter(|(k, _)| !k.contains("SECRET")).map(|(k, v)| format!("{k}={v}")).collect();
    println!("----- node --test {} ({}) -----\n{output}", files.join(" "), shown.join(" "));
    match status {
        None => panic!("{what}: node did not finish within {NODE_TIMEOUT:?}; output above"),
        Some(status) => assert!(status.success(), "{what} failed ({status}); output above"),
    }
}
