//! Connecting: every token case, refresh, and the basics after connecting.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::token;
use crate::common::{Protocol, SECRET};
use serde_json::json;

fn basics(p: Protocol) -> Scenario {
    Scenario::new(format!("basics {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("alice")}}))
        .call("a", json!({"id": 2, "subscribe": {"channel": "basics"}}))
        .call("a", json!({"id": 3, "publish": {"channel": "basics", "data": {"n": 1}}}))
        .recv("a")
        .call("a", json!({"id": 4, "unsubscribe": {"channel": "basics"}}))
        .quiet("a")
}

fn ping_command(p: Protocol) -> Scenario {
    Scenario::new(format!("ping command {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("alice")}}))
        .call("a", json!({"id": 2, "ping": {}}))
        .quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_basics() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "allow_subscribe_for_client": true,
        "allow_publish_for_client": true,
    });
    let scenarios = BOTH.iter().flat_map(|p| [basics(*p), ping_command(*p)]).collect();
    run_group("connect", config, scenarios).await;
}
