//! Delta compression of map subscriptions against Centrifugo v6.9.1 (issue
//! #20): `delta: "fossil"` in a map subscribe, live per-key deltas with
//! interleaved keys (against the key's previous value, a key's first value
//! whole, removals never deltas), state pages escaped for JSON, stream
//! catch-up and recovery with per-key deltas, `delta_publish` (API and
//! client writes), a delta type the namespace does not allow or that does not
//! exist, and an ephemeral map. Delta data is compared byte for byte.

use super::cases_delta::document;
use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::token;
use crate::common::{Protocol, SECRET};
use serde_json::{json, Value};

fn connect(s: Scenario, conn: &str) -> Scenario {
    s.call(conn, json!({"id": 1, "connect": {"token": token("tom")}}))
}

fn set(s: Scenario, ch: &str, key: &str, n: u64, delta: bool) -> Scenario {
    s.api("map_publish", json!({"channel": ch, "key": key, "data": document(n), "delta": delta}))
}

fn map_sub(id: u32, ch: &str, extra: Value) -> Value {
    let mut sub = json!({"channel": ch, "type": 1, "phase": 2, "delta": "fossil"});
    for (k, v) in extra.as_object().into_iter().flatten() {
        sub[k] = v.clone();
    }
    json!({"id": id, "subscribe": sub})
}

/// Keys `a` and `b` in the state, then live changes of both interleaved,
/// a new key, a removal, the removed key set again, and a change without
/// the delta flag.
fn live(p: Protocol) -> Scenario {
    let ch = format!("md:live-{p:?}");
    let s = Scenario::new(format!("map delta live {p:?}")).open("a", p);
    let s = connect(set(set(s, &ch, "a", 0, true), &ch, "b", 10, true), "a").call("a", map_sub(2, &ch, json!({})));
    let s = set(s, &ch, "a", 1, true).recv("a");
    let s = set(s, &ch, "b", 11, true).recv("a");
    let s = set(s, &ch, "a", 2, true).recv("a");
    let s = set(s, &ch, "c", 20, true).recv("a");
    let s = s.api("map_remove", json!({"channel": ch, "key": "b"})).recv("a");
    let s = set(s, &ch, "b", 12, true).recv("a");
    let s = set(s, &ch, "a", 3, false).recv("a");
    set(s, &ch, "a", 4, true).recv("a").quiet("a")
}

/// The state in pages of two, escaped for JSON on every page, then a live
/// delta.
fn pages(p: Protocol) -> Scenario {
    let ch = format!("mp:pages-{p:?}");
    let s = Scenario::new(format!("map delta pages {p:?}")).open("a", p);
    let s = ["k1", "k2", "k3"].iter().enumerate().fold(s, |s, (i, k)| set(s, &ch, k, i as u64, false));
    let save = [("/subscribe/cursor", "cursor"), ("/subscribe/offset", "offset"), ("/subscribe/epoch", "epoch")];
    let s = connect(s, "a")
        .send("a", map_sub(2, &ch, json!({})))
        .recv_save("a", &save)
        .call("a", map_sub(3, &ch, json!({"cursor": "$cursor", "offset": "$offset", "epoch": "$epoch"})));
    set(s, &ch, "k1", 5, true).recv("a").quiet("a")
}

/// Changes between the first state page and the last come in the catch-up:
/// per key, the first whole and the next ones deltas; a removal whole.
fn catch_up(p: Protocol) -> Scenario {
    let ch = format!("mp:catchup-{p:?}");
    let s = Scenario::new(format!("map delta catch-up {p:?}")).open("a", p);
    let s = ["k1", "k2", "k3"].iter().enumerate().fold(s, |s, (i, k)| set(s, &ch, k, i as u64, false));
    let save = [("/subscribe/cursor", "cursor"), ("/subscribe/offset", "offset"), ("/subscribe/epoch", "epoch")];
    let s = connect(s, "a").send("a", map_sub(2, &ch, json!({}))).recv_save("a", &save);
    let s = set(set(set(s, &ch, "k1", 6, true), &ch, "k2", 7, true), &ch, "k1", 8, false);
    let s = s.api("map_remove", json!({"channel": ch, "key": "k3"}));
    let s = set(s, &ch, "k2", 9, true);
    // `limit` 10 on the last page: Centrifugo goes live when the stream is
    // within one page of the position (else it pages the stream, which
    // natsgate does not: README Deviations).
    let last = json!({"cursor": "$cursor", "offset": "$offset", "epoch": "$epoch", "limit": 10});
    s.call("a", map_sub(3, &ch, last)).quiet("a")
}

/// A reconnecting delta subscriber recovers its missed changes with per-key
/// deltas, then gets a live delta.
fn recovery(p: Protocol) -> Scenario {
    let ch = format!("md:recovery-{p:?}");
    let s = Scenario::new(format!("map delta recovery {p:?}")).open("a", p);
    let s = connect(set(set(s, &ch, "a", 0, true), &ch, "b", 10, true), "a")
        .send("a", map_sub(2, &ch, json!({})))
        .recv_save("a", &[("/subscribe/offset", "offset"), ("/subscribe/epoch", "epoch")])
        .drop_conn("a");
    let s = set(set(set(s, &ch, "a", 1, true), &ch, "b", 11, true), &ch, "a", 2, true).open("b", p);
    let sub = json!({"recover": true, "offset": "$offset", "epoch": "$epoch", "phase": 0});
    let s = connect(s, "b").call("b", map_sub(2, &ch, sub));
    set(s, &ch, "b", 12, true).recv("b").quiet("b")
}

/// `delta_publish`: API writes without the flag and client writes are deltas.
fn delta_publish(p: Protocol) -> Scenario {
    let ch = format!("mdp:pub-{p:?}");
    let s = Scenario::new(format!("map delta publish {p:?}")).open("a", p);
    let s = connect(set(s, &ch, "a", 0, false), "a").call("a", map_sub(2, &ch, json!({})));
    let s = set(s, &ch, "a", 1, false).recv("a");
    let publish = json!({"id": 3, "publish": {"channel": ch, "type": 1, "key": "a", "data": document(2)}});
    s.send("a", publish).recv_n("a", 2).quiet("a")
}

/// A namespace without `allowed_delta_types`, and a type that does not
/// exist: subscribed without delta (no disconnect), plain data.
fn refused(case: &str, p: Protocol) -> Scenario {
    let (ch, delta) = match case {
        "not allowed" => (format!("mn:refused-{p:?}"), "fossil"),
        _ => (format!("md:unknown-{p:?}"), "zstd"),
    };
    let s = Scenario::new(format!("map delta {case} {p:?}")).open("a", p);
    let s = connect(set(s, &ch, "a", 0, true), "a").call("a", map_sub(2, &ch, json!({"delta": delta})));
    set(set(s, &ch, "a", 1, true).recv("a"), &ch, "a", 2, true).recv("a").quiet("a")
}

/// An ephemeral map: delta granted, values escaped for JSON, never deltas.
fn ephemeral(p: Protocol) -> Scenario {
    let ch = format!("mde:eph-{p:?}");
    let s = Scenario::new(format!("map delta ephemeral {p:?}")).open("a", p);
    let s = connect(set(s, &ch, "a", 0, true), "a").call("a", map_sub(2, &ch, json!({})));
    set(set(s, &ch, "a", 1, true).recv("a"), &ch, "a", 2, true).recv("a").quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_delta() {
    let map = |name: &str, map: Value, extra: Value| {
        let mut ns = json!({"name": name, "subscription_type": "map", "allow_subscribe_for_client": true, "map": map});
        ns.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        ns
    };
    let fossil = json!({"allowed_delta_types": ["fossil"]});
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "namespaces": [
            map("md", json!({"mode": "persistent"}), fossil.clone()),
            map("mp", json!({"mode": "persistent", "default_page_size": 2, "min_page_size": 2, "max_page_size": 10}),
                fossil.clone()),
            map("mdp", json!({"mode": "persistent", "allow_publish_for_subscriber": true}),
                json!({"allowed_delta_types": ["fossil"], "delta_publish": true})),
            map("mn", json!({"mode": "persistent"}), json!({})),
            map("mde", json!({"mode": "ephemeral", "key_ttl": "60s"}), fossil),
        ]
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(live(p));
        scenarios.push(pages(p));
        scenarios.push(catch_up(p));
        scenarios.push(recovery(p));
        scenarios.push(delta_publish(p));
        scenarios.push(refused("not allowed", p));
        scenarios.push(refused("unknown type", p));
        scenarios.push(ephemeral(p));
    }
    run_group("map_delta", config, scenarios).await;
}
