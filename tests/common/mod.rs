//! Shared harness for natsgate's integration tests (`mod common;`).
//!
//! Layout:
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
//!
//! Every helper panics with a message that says what it waited for, so a
//! failing test explains itself; nothing sleeps to synchronise.
#![allow(dead_code, unused_imports)]

pub mod centrifugo;
pub mod gateway;
pub mod nats;
pub mod node;
pub mod pair;
mod process;
pub mod token;
pub mod ws;

pub use gateway::{Gateway, GatewayBuilder};
pub use nats::NatsServer;
pub use natsgate::protocol::Protocol;
pub use token::{hs256_token, now_secs};
pub use ws::{WsClient, WsError};

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

/// Secret the tests give gateways as `NATSGATE_TOKEN_HMAC_SECRET_KEY`.
pub const SECRET: &str = "natsgate-test-secret";

/// Default patience for one expected event (a reply, a push, a close).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The listener is dropped before returning, so another process may take
/// the port in between; on a test machine that race is rare enough.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
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
