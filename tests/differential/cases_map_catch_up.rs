//! `map.subscribe_catch_up_timeout` against Centrifugo v6.9.1 (issue #20):
//! a map subscriber paging slower than the timeout is disconnected (3008)
//! at its next page; a negative timeout never expires; and the bookkeeping
//! of paged subscriptions (a cursor of none: 103, a second first page: 105,
//! an expired paging dropped by the next map subscribe). A `quiet` step
//! (300 ms) is the wait that outlasts the 100 ms timeout. Not compared:
//! unsubscribing while paging, which Centrifugo v6.9.1 holds for 5 s and
//! answers by closing the connection (README Deviations); natsgate ends the
//! paging at once (`tests/map_catch_up.rs`).

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::{token, API_KEY};
use crate::common::{Protocol, SECRET};
use serde_json::{json, Value};

fn connect(s: Scenario, conn: &str) -> Scenario {
    s.call(conn, json!({"id": 1, "connect": {"token": token("tom")}}))
}

/// Five keys: three pages of two.
fn keys(mut s: Scenario, ch: &str) -> Scenario {
    for i in 1..=5 {
        s = s.api("map_publish", json!({"channel": ch, "key": format!("k{i}"), "data": {"i": i}}));
    }
    s
}

fn first_page(id: u32, ch: &str) -> Value {
    json!({"id": id, "subscribe": {"channel": ch, "type": 1, "phase": 2}})
}

/// The next page with the values saved from the first under `name`.
fn next_page(id: u32, ch: &str, name: &str) -> Value {
    json!({"id": id, "subscribe": {"channel": ch, "type": 1, "phase": 2, "cursor": format!("${name}_cursor"),
                                   "offset": format!("${name}_offset"), "epoch": format!("${name}_epoch")}})
}

/// `send` the first page of `ch` and save its cursor and position as `name_*`.
fn page_saved(s: Scenario, id: u32, ch: &str, name: &str) -> Scenario {
    let (c, o, e) = (format!("{name}_cursor"), format!("{name}_offset"), format!("{name}_epoch"));
    let save = [("/subscribe/cursor", c.as_str()), ("/subscribe/offset", o.as_str()), ("/subscribe/epoch", e.as_str())];
    s.send("a", first_page(id, ch)).recv_save("a", &save)
}

/// Paging slower than the timeout: the next page closes with 3008.
fn too_slow(p: Protocol) -> Scenario {
    let ch = format!("ct:slow-{p:?}");
    let s = connect(keys(Scenario::new(format!("map catch-up too slow {p:?}")).open("a", p), &ch), "a");
    page_saved(s, 2, &ch, "p").quiet("a").call("a", next_page(3, &ch, "p"))
}

/// The same pace with no timeout (negative): pages on to live.
fn no_timeout(p: Protocol) -> Scenario {
    let ch = format!("cn:slow-{p:?}");
    let s = connect(keys(Scenario::new(format!("map catch-up no timeout {p:?}")).open("a", p), &ch), "a");
    let s = page_saved(s, 2, &ch, "p").quiet("a");
    let save = [("/subscribe/cursor", "q_cursor")];
    s.send("a", next_page(3, &ch, "p"))
        .recv_save("a", &save)
        .quiet("a")
        .call(
            "a",
            json!({"id": 4, "subscribe": {"channel": ch, "type": 1, "phase": 2, "cursor": "$q_cursor",
                                                  "offset": "$p_offset", "epoch": "$p_epoch"}}),
        )
        .quiet("a")
}

/// A cursor of no paged subscription (103), a second first page while
/// paging (105), an expired paging dropped by another map subscribe (its
/// cursor then 103, not 3008).
fn bookkeeping(p: Protocol) -> Scenario {
    let (x, y) = (format!("ct:x-{p:?}"), format!("ct:y-{p:?}"));
    let s = keys(keys(Scenario::new(format!("map catch-up bookkeeping {p:?}")).open("a", p), &x), &y);
    let s =
        connect(s, "a").call("a", json!({"id": 2, "subscribe": {"channel": x, "type": 1, "phase": 2, "cursor": "k2"}}));
    let s = page_saved(s, 3, &x, "x").call("a", first_page(4, &x)).quiet("a");
    let s = page_saved(s, 5, &y, "y");
    s.call("a", next_page(6, &x, "x")).quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_catch_up() {
    let map = |name: &str, timeout: &str| {
        json!({"name": name, "subscription_type": "map", "allow_subscribe_for_client": true,
               "map": {"mode": "persistent", "default_page_size": 2, "min_page_size": 2, "max_page_size": 2,
                       "subscribe_catch_up_timeout": timeout}})
    };
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "namespaces": [map("ct", "100ms"), map("cn", "-1s")]
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(too_slow(p));
        scenarios.push(no_timeout(p));
        scenarios.push(bookkeeping(p));
    }
    run_group("map_catch_up", config, scenarios).await;
}
