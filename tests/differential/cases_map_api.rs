//! The map server API against Centrifugo v6.9.1: every map method
//! (`map_publish` with `key_mode`, `version`/`version_epoch` and
//! `idempotency_key`, `map_remove`, `map_read_state` with paging and
//! revisions, `map_read_stream`, `map_stats`, `map_clear`), their error
//! answers, and the same methods in `batch` and the legacy `/api`. Writes on
//! one gateway, reads on the other.

use super::group::run_group;
use super::scenario::{Node, Scenario};
use super::API_KEY;
use crate::common::SECRET;
use serde_json::{json, Value};

/// `POST /api/<method>` on gateway B (Centrifugo has one node: the same).
fn api_b(s: Scenario, method: &str, body: Value) -> Scenario {
    s.api_raw(Node::B, &format!("/api/{method}"), Some(API_KEY), &body.to_string())
}

/// `key_mode`: only-if-absent and only-if-present, and a mode Centrifugo
/// does not know (107).
fn key_modes() -> Scenario {
    let ch = "mp:key-modes";
    Scenario::new("map key modes")
        .api("map_publish", json!({"channel": ch, "key": "a", "data": {"v": 1}, "key_mode": "if_new"}))
        .api("map_publish", json!({"channel": ch, "key": "a", "data": {"v": 2}, "key_mode": "if_new"}))
        .api("map_publish", json!({"channel": ch, "key": "b", "data": {"v": 1}, "key_mode": "if_exists"}))
        .api("map_publish", json!({"channel": ch, "key": "a", "data": {"v": 3}, "key_mode": "if_exists"}))
        .api("map_publish", json!({"channel": ch, "key": "a", "data": {"v": 4}, "key_mode": "sometimes"}))
        .api("map_read_state", json!({"channel": ch, "limit": -1}))
}

/// Versions: a version not above the key's is suppressed; another
/// `version_epoch` resets the comparison; an unversioned write keeps the
/// key's version.
fn versions() -> Scenario {
    let ch = "mp:versions";
    let s = Scenario::new("map versions")
        .api("map_publish", json!({"channel": ch, "key": "k", "data": 1, "version": 5}))
        .api("map_publish", json!({"channel": ch, "key": "k", "data": 2, "version": 5}))
        .api("map_publish", json!({"channel": ch, "key": "k", "data": 3, "version": 4}))
        .api("map_publish", json!({"channel": ch, "key": "k", "data": 4, "version": 6, "version_epoch": ""}))
        .api("map_publish", json!({"channel": ch, "key": "k", "data": 5, "version": 2, "version_epoch": "e2"}))
        .api("map_publish", json!({"channel": ch, "key": "k", "data": 6}));
    let s = api_b(s, "map_publish", json!({"channel": ch, "key": "k", "data": 7, "version": 2, "version_epoch": "e2"}));
    api_b(s, "map_publish", json!({"channel": ch, "key": "k", "data": 8, "version": 3, "version_epoch": "e2"}))
        .api("map_read_state", json!({"channel": ch, "key": "k"}))
        .api("map_publish", json!({"channel": "ep:versions", "key": "k", "data": 1, "version": 1}))
}

/// Idempotency keys: a repeated key answers the first write's position,
/// suppressed, for publishes and removals alike (one cache per channel).
fn idempotency() -> Scenario {
    let ch = "mp:idem";
    let s = Scenario::new("map idempotency")
        .api("map_publish", json!({"channel": ch, "key": "a", "data": 1, "idempotency_key": "i1"}))
        .api("map_publish", json!({"channel": ch, "key": "b", "data": 2, "idempotency_key": "i1"}));
    api_b(s, "map_publish", json!({"channel": ch, "key": "c", "data": 3, "idempotency_key": "i1"}))
        .api("map_remove", json!({"channel": ch, "key": "a", "idempotency_key": "i1"}))
        .api("map_remove", json!({"channel": ch, "key": "a", "idempotency_key": "i2"}))
        .api("map_remove", json!({"channel": ch, "key": "a", "idempotency_key": "i2"}))
        .api("map_publish", json!({"channel": ch, "key": "a", "data": 4, "idempotency_key": "i3"}))
        .api("map_stats", json!({"channel": ch}))
        .api("map_read_stream", json!({"channel": ch, "limit": -1}))
}

/// Removal: a missing key is suppressed, a present one removed (with a
/// stream entry), then missing again.
fn removals() -> Scenario {
    let ch = "mp:removals";
    Scenario::new("map removals")
        .api("map_publish", json!({"channel": ch, "key": "x", "data": {"a": 1}, "tags": {"t": "1"}}))
        .api("map_remove", json!({"channel": ch, "key": "y"}))
        .api("map_remove", json!({"channel": ch, "key": "x"}))
        .api("map_remove", json!({"channel": ch, "key": "x"}))
        .api("map_read_state", json!({"channel": ch, "limit": -1}))
}

/// State pages: limit 0 (position only), paging by cursor, one key, a
/// revision of the current epoch and of another (112); data absent, raw
/// JSON and base64.
fn state_pages() -> Scenario {
    let ch = "mp:pages";
    let mut s = Scenario::new("map state pages");
    for (i, key) in ["k1", "k2", "k3", "k4", "k5"].iter().enumerate() {
        s = s.api("map_publish", json!({"channel": ch, "key": key, "data": {"i": i}}));
    }
    let s = s
        .api("map_publish", json!({"channel": ch, "key": "k6"}))
        .api("map_publish", json!({"channel": ch, "key": "k7", "b64data": "eyJiIjoxfQ=="}))
        .api("map_read_state", json!({"channel": ch, "limit": 0}))
        .api("map_read_state", json!({"channel": ch, "limit": 3}))
        .api("map_read_state", json!({"channel": ch, "limit": 3, "cursor": "k3"}))
        .api("map_read_state", json!({"channel": ch, "limit": 3, "cursor": "k6"}))
        .api("map_read_state", json!({"channel": ch, "key": "k2", "limit": 1}))
        .api("map_read_state", json!({"channel": ch, "key": "nope"}))
        .api_save("map_read_state", json!({"channel": ch, "limit": 0}), &[("/result/epoch", "epoch")]);
    api_b(s, "map_read_state", json!({"channel": ch, "limit": 1, "revision_offset": 3, "revision_epoch": "$epoch"}))
        .api("map_read_state", json!({"channel": ch, "limit": 1, "revision_offset": 3, "revision_epoch": "other"}))
        .api("map_read_state", json!({"channel": ch, "limit": 1, "revision_offset": 3}))
        .api("map_read_state", json!({"channel": "mp:pages-none", "limit": -1}))
}

/// The stream: everything, since a position, limited, reversed; an
/// ephemeral map has none.
fn stream_reads() -> Scenario {
    let ch = "mp:stream";
    let s = Scenario::new("map stream reads")
        .api_save("map_publish", json!({"channel": ch, "key": "a", "data": 1}), &[("/result/offset", "first")])
        .api("map_publish", json!({"channel": ch, "key": "b", "data": 2}))
        .api("map_remove", json!({"channel": ch, "key": "a"}))
        .api_save("map_read_stream", json!({"channel": ch, "limit": -1}), &[("/result/epoch", "epoch")])
        .api("map_read_stream", json!({"channel": ch, "limit": 2}))
        .api("map_read_stream", json!({"channel": ch, "limit": 0}))
        .api("map_read_stream", json!({"channel": ch, "limit": -1, "reverse": true}));
    api_b(s, "map_read_stream", json!({"channel": ch, "limit": -1, "since_offset": "$first", "since_epoch": "$epoch"}))
        .api("map_stats", json!({"channel": ch}))
        .api("map_stats", json!({"channel": "mp:stream-none"}))
}

/// `map_clear`: state and stream gone (a new epoch), idempotency forgotten.
fn clear() -> Scenario {
    let ch = "mp:clear";
    let s = Scenario::new("map clear")
        .api("map_publish", json!({"channel": ch, "key": "a", "data": 1, "idempotency_key": "c1"}))
        .api("map_publish", json!({"channel": ch, "key": "b", "data": 2}))
        .api("map_clear", json!({"channel": ch}));
    api_b(s, "map_stats", json!({"channel": ch}))
        .api("map_read_state", json!({"channel": ch, "limit": -1}))
        .api("map_publish", json!({"channel": ch, "key": "a", "data": 3, "idempotency_key": "c1"}))
        .api("map_read_stream", json!({"channel": ch, "limit": -1}))
        .api("map_clear", json!({"channel": "mp:clear-none"}))
        .api("map_clear", json!({"channel": "ep:clear"}))
}

/// Refusals of every method: empty channel or key (107), an unknown
/// namespace (102), a channel that is no map (107), undecodable base64
/// (107), bodies that are no request (400).
fn refusals() -> Scenario {
    let mut s = Scenario::new("map refusals");
    for method in ["map_publish", "map_remove", "map_read_state", "map_read_stream", "map_stats", "map_clear"] {
        s = s
            .api(method, json!({"channel": "", "key": "k", "data": 1}))
            .api(method, json!({"channel": "zz:x", "key": "k", "data": 1}))
            .api(method, json!({"channel": "plain:x", "key": "k", "data": 1}))
            .api(method, json!({"channel": "x", "key": "k", "data": 1}))
            .api_raw(Node::A, &format!("/api/{method}"), Some(API_KEY), "[1]")
            .api_raw(Node::A, &format!("/api/{method}"), Some(API_KEY), r#"{"channel": 5}"#)
            .api_raw(Node::A, &format!("/api/{method}"), Some(API_KEY), "null");
    }
    s.api("map_publish", json!({"channel": "mp:refusals", "data": 1}))
        .api("map_remove", json!({"channel": "mp:refusals"}))
        .api("map_publish", json!({"channel": "mp:refusals", "key": "k", "b64data": "!!"}))
        .api_raw(Node::A, "/api/map_publish", Some(API_KEY), r#"{"channel":"mp:refusals","key":"k","version":-1}"#)
        .api_raw(Node::A, "/api/map_read_state", Some(API_KEY), r#"{"channel":"mp:refusals","limit":"1"}"#)
        .api_raw(Node::A, "/api/map_read_stream", Some(API_KEY), r#"{"channel":"mp:refusals","limit":4294967296}"#)
}

/// Map commands in `batch` (sequential and parallel) and in the legacy
/// `/api` (by name, by number, with an id, with bad params).
fn batch_and_legacy() -> Scenario {
    let ch = "mp:batch";
    let batch = json!({"commands": [
        {"map_publish": {"channel": ch, "key": "a", "data": {"n": 1}}},
        {"map_publish": {"channel": ch, "key": "a", "data": {"n": 2}, "key_mode": "if_new"}},
        {"map_read_state": {"channel": ch, "limit": -1}},
        {"map_read_stream": {"channel": ch, "limit": -1}},
        {"map_stats": {"channel": ch}},
        {"map_remove": {"channel": ch, "key": "a"}},
        {"map_publish": {"channel": "zz:x", "key": "a"}},
        {"map_clear": {"channel": ch}},
        {"map_stats": {"channel": ch}}
    ]});
    let parallel = json!({"parallel": true, "commands": [
        {"map_publish": {"channel": "mp:batch-p1", "key": "a", "data": 1}},
        {"map_publish": {"channel": "mp:batch-p2", "key": "a", "data": 1}},
        {"map_stats": {"channel": "mp:batch-p3"}}
    ]});
    let legacy = [
        json!({"id": 1, "method": "map_publish", "params": {"channel": "mp:legacy", "key": "a", "data": {"x": 1}}}),
        json!({"id": 2, "method": 33, "params": {"channel": "mp:legacy", "key": "b", "data": 2}}),
        json!({"method": "MAP_STATS", "params": {"channel": "mp:legacy"}}),
        json!({"id": 4, "method": 35, "params": {"channel": "mp:legacy", "limit": -1}}),
        json!({"id": 5, "method": 36, "params": {"channel": "mp:legacy", "limit": -1}}),
        json!({"id": 6, "method": 34, "params": {"channel": "mp:legacy", "key": "a"}}),
        json!({"id": 7, "method": 37, "params": {"channel": "mp:legacy"}}),
        json!({"id": 8, "method": "map_publish", "params": {"channel": 5}}),
        json!({"id": 9, "method": 38, "params": {"channel": "mp:legacy"}}),
        json!({"id": 10, "method": "map_stats", "params": {"channel": "mp:legacy"}}),
    ];
    let legacy: Vec<String> = legacy.iter().map(Value::to_string).collect();
    Scenario::new("map batch and legacy").api("batch", batch).api("batch", parallel).api_raw(
        Node::A,
        "/api",
        Some(API_KEY),
        &legacy.join("\n"),
    )
}

/// Ephemeral maps: no stream (no offsets), keys only.
fn ephemeral() -> Scenario {
    let ch = "ep:eph";
    Scenario::new("map ephemeral")
        .api("map_read_stream", json!({"channel": ch, "limit": -1}))
        .api("map_stats", json!({"channel": ch}))
}

/// `score` in `map_publish` (api.proto field 12): Centrifugo v6.9.1 reads
/// it but passes it to no broker (centrifuge keeps `score` and `ordered`
/// unexported), so the state is in key order with no scores, `asc` or not.
fn score_ignored() -> Scenario {
    let ch = "mp:scores";
    let mut s = Scenario::new("map score ignored");
    for (key, score) in [("k1", 10), ("k2", 30), ("k3", 20)] {
        s = s.api("map_publish", json!({"channel": ch, "key": key, "data": {"s": score}, "score": score}));
    }
    s.api("map_read_state", json!({"channel": ch, "limit": -1}))
        .api("map_read_state", json!({"channel": ch, "limit": -1, "asc": true}))
        .api("map_read_state", json!({"channel": ch, "limit": 2, "asc": true}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_api() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "namespaces": [
            {"name": "mp", "subscription_type": "map", "map": {"mode": "persistent"}},
            {"name": "ep", "subscription_type": "map", "map": {"mode": "ephemeral", "key_ttl": "60s"}},
            {"name": "plain"}
        ]
    });
    let scenarios = vec![
        key_modes(),
        versions(),
        idempotency(),
        removals(),
        state_pages(),
        stream_reads(),
        clear(),
        refusals(),
        batch_and_legacy(),
        ephemeral(),
        score_ignored(),
    ];
    run_group("map_api", config, scenarios).await;
}
