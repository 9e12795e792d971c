//! Issue #20's delta compression and tags filter on the raw wire against
//! Centrifugo v6.9.1: fossil delta subscriptions (the first live publication
//! whole, then deltas; positioned, recoverable or neither), recovery with
//! deltas, a delta type the namespace does not allow, an unknown one,
//! `delta_publish`; tags filters (`eq`, `in`, `and`/`or`/`not` ...) live and
//! in recovery, and bad filters. Delta data is compared byte for byte (over
//! Protobuf the harness shows it as a string).

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::token;
use crate::common::{Protocol, SECRET};
use serde_json::{json, Value};

/// A document that changes a little with every publication, so that its
/// fossil delta against the previous one is much smaller than it.
pub fn document(n: u64) -> Value {
    let items: Vec<Value> =
        (0..12).map(|i| json!({"id": i, "name": format!("item {i}"), "price": i * 10 + n % 3})).collect();
    json!({"n": n, "title": "a document that changes a little with every publication", "items": items})
}

fn connect(s: Scenario) -> Scenario {
    s.call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
}

fn publish(s: Scenario, ch: &str, n: u64, delta: bool) -> Scenario {
    s.api("publish", json!({"channel": ch, "data": document(n), "delta": delta}))
}

/// Subscribes with `sub` (plus channel and `delta: "fossil"`), then three
/// publications with the delta flag, each received.
fn live(case: &str, sub: Value, p: Protocol) -> Scenario {
    let ns = if case == "delta publish" { "dp" } else { "dl" };
    let ch = format!("{ns}:live-{}-{p:?}", case.replace(' ', "-"));
    let mut request = json!({"channel": ch, "delta": "fossil"});
    request.as_object_mut().unwrap().extend(sub.as_object().unwrap().clone());
    let mut s = connect(Scenario::new(format!("delta {case} {p:?}")).open("a", p))
        .call("a", json!({"id": 2, "subscribe": request}));
    for n in 0..3 {
        s = publish(s, &ch, n, case != "delta publish" && case != "no delta flag").recv("a");
    }
    s.quiet("a")
}

/// Recoverable delta subscription: away for three publications, back with
/// recovery (the first recovered whole, the others deltas), then a live
/// delta.
fn recovery(p: Protocol) -> Scenario {
    let ch = format!("dl:recovery-{p:?}");
    let sub = json!({"channel": ch, "delta": "fossil", "recoverable": true});
    let s = publish(connect(Scenario::new(format!("delta recovery {p:?}")).open("a", p)), &ch, 0, true)
        .send("a", json!({"id": 2, "subscribe": sub}))
        .recv_save("a", &[("/subscribe/epoch", "epoch"), ("/subscribe/offset", "offset")])
        .call("a", json!({"id": 3, "unsubscribe": {"channel": ch}}));
    let s = (1..4).fold(s, |s, n| publish(s, &ch, n, true));
    let again = json!({"channel": ch, "delta": "fossil", "recoverable": true, "recover": true,
        "offset": "$offset", "epoch": "$epoch"});
    publish(s.call("a", json!({"id": 4, "subscribe": again})), &ch, 4, true).recv("a").quiet("a")
}

/// A delta type the namespace does not allow: subscribed without delta,
/// plain publications. An unknown type: closed with 3501.
fn refused(case: &str, p: Protocol) -> Scenario {
    let (ch, delta) = match case {
        "not allowed" => (format!("plain:refused-{p:?}"), "fossil"),
        "no history" => (format!("nh:refused-{p:?}"), "fossil"),
        _ => (format!("dl:unknown-{p:?}"), "zstd"),
    };
    let s = connect(Scenario::new(format!("delta {case} {p:?}")).open("a", p))
        .call("a", json!({"id": 2, "subscribe": {"channel": ch, "delta": delta}}));
    publish(publish(s, &ch, 0, true).recv("a"), &ch, 1, true).recv("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta() {
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(live("recoverable", json!({"recoverable": true}), p));
        scenarios.push(live("positioned", json!({"positioned": true}), p));
        scenarios.push(live("not positioned", json!({}), p));
        scenarios.push(live("no delta flag", json!({"recoverable": true}), p));
        scenarios.push(live("delta publish", json!({"recoverable": true}), p));
        scenarios.push(recovery(p));
        for case in ["not allowed", "no history", "unknown type"] {
            scenarios.push(refused(case, p));
        }
    }
    run_group("delta", config(), scenarios).await;
}

/// Tags of the six publications every tags scenario makes.
fn tagged() -> [Value; 6] {
    [
        json!({"kind": "trade", "sym": "BTCUSD", "price": "100.5"}),
        json!({"kind": "quote", "sym": "BTCUSD", "price": "99"}),
        json!({"kind": "trade", "sym": "ETHUSD", "price": "10"}),
        json!({"kind": "news"}),
        json!({}),
        json!({"kind": "quote", "sym": "ETHBTC", "price": "1000.25"}),
    ]
}

/// Filters, and which of `tagged()` each lets through.
pub fn filters() -> Vec<(&'static str, Value, Vec<u64>)> {
    let leaf = |key: &str, cmp: &str, val: &str| json!({"key": key, "cmp": cmp, "val": val});
    vec![
        ("eq", leaf("kind", "eq", "trade"), vec![0, 2]),
        ("in", json!({"key": "kind", "cmp": "in", "vals": ["quote", "news"]}), vec![1, 3, 5]),
        ("and", json!({"op": "and", "nodes": [leaf("kind", "eq", "trade"), leaf("sym", "sw", "BTC")]}), vec![0]),
        ("or", json!({"op": "or", "nodes": [leaf("kind", "eq", "news"), leaf("price", "gte", "100")]}), vec![0, 3, 5]),
        ("not", json!({"op": "not", "nodes": [{"key": "kind", "cmp": "ex"}]}), vec![4]),
        (
            "nested",
            json!({"op": "and", "nodes": [
                {"key": "kind", "cmp": "nin", "vals": ["trade"]},
                {"op": "not", "nodes": [{"op": "or", "nodes": [leaf("sym", "ct", "ETH"), leaf("price", "lt", "50")]}]}
            ]}),
            vec![1, 3, 4],
        ),
        ("neq", leaf("kind", "neq", "trade"), vec![1, 3, 4, 5]),
        ("ew lte", json!({"op": "and", "nodes": [leaf("sym", "ew", "USD"), leaf("price", "lte", "99.0")]}), vec![1, 2]),
        ("nex", json!({"key": "price", "cmp": "nex"}), vec![3, 4]),
    ]
}

fn publish_tagged(s: Scenario, ch: &str) -> Scenario {
    tagged()
        .into_iter()
        .enumerate()
        .fold(s, |s, (n, tags)| s.api("publish", json!({"channel": ch, "data": {"n": n}, "tags": tags})))
}

/// Live publications through a filter: exactly the matching ones.
fn tags_live(name: &str, tf: &Value, expected: usize, p: Protocol) -> Scenario {
    let ch = format!("dl:tf-{}-{p:?}", name.replace(' ', "-"));
    let s = connect(Scenario::new(format!("tags {name} {p:?}")).open("a", p))
        .call("a", json!({"id": 2, "subscribe": {"channel": ch, "tf": tf}}));
    publish_tagged(s, &ch).recv_n("a", expected).quiet("a")
}

/// Recovered publications through a filter; with `delta` too (the SDKs
/// refuse the two together, the server takes them).
fn tags_recovery(delta: bool, p: Protocol) -> Scenario {
    let name = if delta { "tags recovery with delta" } else { "tags recovery" };
    let ch = format!("dl:{}-{p:?}", name.replace(' ', "-"));
    let tf = json!({"key": "kind", "cmp": "in", "vals": ["quote", "news"]});
    let mut sub = json!({"channel": ch, "tf": tf, "recoverable": true});
    if delta {
        sub["delta"] = json!("fossil");
    }
    let s = connect(Scenario::new(format!("{name} {p:?}")).open("a", p))
        .send("a", json!({"id": 2, "subscribe": sub}))
        .recv_save("a", &[("/subscribe/epoch", "epoch"), ("/subscribe/offset", "offset")])
        .call("a", json!({"id": 3, "unsubscribe": {"channel": ch}}));
    let mut again = sub.clone();
    again
        .as_object_mut()
        .unwrap()
        .extend(json!({"recover": true, "offset": "$offset", "epoch": "$epoch"}).as_object().unwrap().clone());
    let s = publish_tagged(s, &ch).call("a", json!({"id": 4, "subscribe": again}));
    // Live: a delta subscriber's publications are not filtered (centrifuge).
    let s = s.api("publish", json!({"channel": ch, "data": {"n": "live"}, "tags": {"kind": "trade"}}));
    if delta {
        s.recv("a").quiet("a")
    } else {
        s.quiet("a")
    }
}

/// Bad filters: error 107 each, the connection stays.
fn bad_filters(p: Protocol) -> Scenario {
    let bad = [
        json!({}),
        json!({"key": "k", "cmp": "eq"}),
        json!({"key": "k", "cmp": "like", "val": "x"}),
        json!({"cmp": "eq", "val": "x"}),
        json!({"key": "k", "cmp": "in", "vals": []}),
        json!({"key": "k", "cmp": "in", "val": "x", "vals": ["x"]}),
        json!({"key": "k", "cmp": "eq", "val": "x", "vals": ["x"]}),
        json!({"key": "k", "cmp": "ex", "val": "x"}),
        json!({"op": "and", "nodes": []}),
        json!({"op": "not", "nodes": []}),
        json!({"op": "not", "nodes": [{"key": "k", "cmp": "ex"}, {"key": "k", "cmp": "nex"}]}),
        json!({"op": "xor", "nodes": [{"key": "k", "cmp": "ex"}]}),
        json!({"op": "or", "nodes": [{"key": "k", "cmp": "ex"}, {"key": "k", "cmp": "gt"}]}),
    ];
    let ch = format!("dl:bad-{p:?}");
    let mut s = connect(Scenario::new(format!("tags bad filters {p:?}")).open("a", p));
    for (i, tf) in bad.into_iter().enumerate() {
        s = s.call("a", json!({"id": 10 + i, "subscribe": {"channel": ch, "tf": tf}}));
    }
    // Not allowed in the namespace: 107 too.
    s = s.call(
        "a",
        json!({"id": 50, "subscribe": {"channel": format!("plain:bad-{p:?}"), "tf": {"key": "k", "cmp": "ex"}}}),
    );
    s.call("a", json!({"id": 51, "subscribe": {"channel": ch, "tf": {"key": "k", "cmp": "ex"}}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_filter() {
    let mut scenarios = Vec::new();
    for p in BOTH {
        for (name, tf, expected) in filters() {
            scenarios.push(tags_live(name, &tf, expected.len(), p));
        }
        scenarios.push(tags_recovery(false, p));
        scenarios.push(tags_recovery(true, p));
        scenarios.push(bad_filters(p));
    }
    run_group("tags_filter", config(), scenarios).await;
}

/// `dl` allows fossil deltas and tags filters, `dp` also deltas every
/// publication (`delta_publish`); `plain` allows neither; `nh` allows
/// deltas but keeps no history.
pub fn config() -> Value {
    let history = json!({"history_size": 100, "history_ttl": "300s", "allow_subscribe_for_client": true});
    let ns = |name: &str, extra: Value| {
        let mut n = history.clone();
        n.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        n["name"] = json!(name);
        n
    };
    let delta = json!({"allow_recovery": true, "allow_positioning": true, "allowed_delta_types": ["fossil"],
        "allow_tags_filter": true});
    let mut dp = delta.clone();
    dp["delta_publish"] = json!(true);
    json!({
        "token_hmac_secret_key": SECRET,
        "namespaces": [
            ns("dl", delta),
            ns("dp", dp),
            ns("plain", json!({})),
            {"name": "nh", "allow_subscribe_for_client": true, "allowed_delta_types": ["fossil"]},
        ]
    })
}
