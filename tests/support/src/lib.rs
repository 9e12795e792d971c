//! natsgate's test support: the harness every integration test uses
//! (`use natsgate_test_support as common;`) and the load generator
//! (`loadgen`, driven by `benches/loadgen.rs` and `tests/loadgen_smoke.rs`).
//! A crate of its own, so it is compiled once, not into each test binary.
//!
//! Layout:
//! - `loadgen`: the load generator (see `benches/README.md`).
//! - `nats`: a real `nats-server` (JetStream on) on a free loopback port,
//!   killed on drop.
//! - `gateway`: the `natsgate` binary as a child process, configured by env,
//!   ready once `GET /health` answers; its log is printed if the test panics.
//! - `ws`: a small WebSocket client speaking Centrifugo's JSON or Protobuf
//!   framing, with every wait bounded by a timeout.
//! - `token`: HS256 connection and subscription tokens.
//! - `centrifugo`: the real Centrifugo and one config rendered for both
//!   servers (differential tests).
//! - `pair`: two gateways on one nats-server or one on the embedded broker,
//!   and calls to the server HTTP API.
//! - `sdk_target`: where an SDK scenario runs (two gateways on NATS, the
//!   embedded broker, or Centrifugo) and what it is handed.
//!
//! Every helper panics with a message that says what it waited for, so a
//! failing test explains itself; nothing sleeps to synchronise.
pub mod centrifugo;
pub mod gateway;
pub mod grpc_python;
pub mod loadgen;
pub mod nats;
pub mod node;
pub mod pair;
mod process;
pub mod sdk_target;
pub mod token;
pub mod ws;

pub use gateway::{Gateway, GatewayBuilder};
pub use nats::NatsServer;
pub use natsgate::protocol::Protocol;
pub use token::{hs256_token, now_secs};
pub use ws::{WsClient, WsError};

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Secret the tests give gateways as `NATSGATE_TOKEN_HMAC_SECRET_KEY`.
pub const SECRET: &str = "natsgate-test-secret";

/// Default patience for one expected event (a reply, a push, a close).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// The `natsgate` binary cargo built for the running test or benchmark:
/// `target/<profile>/natsgate`, beside the `deps/` directory that holds the
/// test executable (cargo builds a package's binaries before its
/// integration tests and benchmarks). `CARGO_BIN_EXE_natsgate` would say
/// the same, but cargo sets it only when compiling the tests themselves.
pub fn natsgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test executable lies in target/<profile>/deps");
    profile_dir.join(format!("natsgate{}", std::env::consts::EXE_SUFFIX))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The listener is dropped before returning, so another process may take
/// the port in between; on a test machine that race is rare enough.
pub fn free_port() -> u16 {
    // The kernel may hand the same port to two binds of port 0 in a row once
    // the first listener is closed, so a test asking for several ports (a
    // NATS cluster's client, route and monitor ports) could get one twice and
    // see `address already in use`. Never return a port twice per process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0 to find a free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no unused loopback port after 1000 tries");
}

/// Polls `check` until it returns `Some`, for at most `patience`.
///
/// For conditions with no event to wait on (a metric, a process state);
/// prefer waiting on a message when there is one. Panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {patience:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
