//! The server HTTP API: every method with good and bad bodies, keys,
//! batch and the legacy `/api` endpoint.

use super::group::run_group;
use super::scenario::{Node, Scenario};
use super::{token, API_KEY};
use crate::common::{Protocol, SECRET};
use serde_json::{json, Value};

/// One API call, recorded.
fn call(name: &str, method: &str, body: Value) -> Scenario {
    Scenario::new(format!("api {name}")).api(method, body)
}

fn raw(name: &str, path: &str, key: Option<&str>, body: &str) -> Scenario {
    Scenario::new(format!("api {name}")).api_raw(Node::A, path, key, body)
}

/// A client of `user` subscribed to `ch`, then `method` on it through the API.
fn on_user(name: &str, user: &str, ch: &str, method: &str, body: Value) -> Scenario {
    Scenario::new(format!("api {name}"))
        .open("u", Protocol::Json)
        .call("u", json!({"id": 1, "connect": {"token": token(user)}}))
        .call("u", json!({"id": 2, "subscribe": {"channel": ch}}))
        .api(method, body)
        .recv("u")
        .quiet("u")
}

fn scenarios() -> Vec<Scenario> {
    let mut s = vec![
        call("publish", "publish", json!({"channel": "ap:pub-1", "data": {"x": 1}})),
        call("publish b64data", "publish", json!({"channel": "ap:pub-2", "b64data": "aGVsbG8="})),
        call("publish tags skip_history", "publish", json!({"channel": "ap:pub-3", "data": 1, "tags": {"k": "v"}, "skip_history": true})),
        call("publish no channel", "publish", json!({"data": 1})),
        call("publish no data", "publish", json!({"channel": "ap:pub-4"})),
        call("publish unknown namespace", "publish", json!({"channel": "nope:x", "data": 1})),
        call("publish channel not a string", "publish", json!({"channel": 5, "data": 1})),
        call("publish extra field", "publish", json!({"channel": "ap:pub-5", "data": 1, "whatever": true})),
        Scenario::new("api publish idempotency")
            .api("publish", json!({"channel": "ap:idem", "data": 1, "idempotency_key": "k1"}))
            .api("publish", json!({"channel": "ap:idem", "data": 1, "idempotency_key": "k1"}))
            .api("history", json!({"channel": "ap:idem", "limit": 10})),
        Scenario::new("api broadcast idempotency")
            .api("broadcast", json!({"channels": ["ap:bi1", "ap:bi2"], "data": 1, "idempotency_key": "k2"}))
            .api("broadcast", json!({"channels": ["ap:bi1", "ap:bi2"], "data": 1, "idempotency_key": "k2"}))
            .api("history", json!({"channel": "ap:bi1", "limit": 10})),
        call("broadcast", "broadcast", json!({"channels": ["ap:b1-1", "ap:b2"], "data": {"x": 1}})),
        call("broadcast empty", "broadcast", json!({"channels": [], "data": 1})),
        call("broadcast no data", "broadcast", json!({"channels": ["ap:b1-2"]})),
        call("broadcast bad channel", "broadcast", json!({"channels": ["ap:b1-3", "nope:x"], "data": 1})),
        call("presence", "presence", json!({"channel": "ap:empty"})),
        call("presence_stats", "presence_stats", json!({"channel": "ap:empty"})),
        call("presence no channel", "presence", json!({})),
        call("presence unavailable", "presence", json!({"channel": "plain"})),
        call("presence_stats unavailable", "presence_stats", json!({"channel": "plain"})),
        call("history unavailable", "history", json!({"channel": "plain"})),
        call("history no channel", "history", json!({})),
        call("history_remove", "history_remove", json!({"channel": "ap:pub-6"})),
        call("history_remove unavailable", "history_remove", json!({"channel": "plain"})),
        call("channels", "channels", json!({"pattern": "ap:none-*"})),
        call("info", "info", json!({})),
        call("subscribe no user", "subscribe", json!({"channel": "ap:x"})),
        call("subscribe no channel", "subscribe", json!({"user": "nobody"})),
        call("unsubscribe nobody", "unsubscribe", json!({"user": "nobody", "channel": "ap:x"})),
        call("disconnect nobody", "disconnect", json!({"user": "nobody"})),
        call("refresh nobody", "refresh", json!({"user": "nobody", "expire_at": 2000000000})),
        call("batch", "batch", json!({"commands": [
            {"publish": {"channel": "ap:batch-1", "data": 1}},
            {"publish": {"channel": "nope:x", "data": 2}},
            {"presence_stats": {"channel": "ap:batch-2"}},
        ]})),
        call("batch parallel", "batch", json!({"commands": [{"publish": {"channel": "ap:batch-3", "data": 1}}], "parallel": true})),
        call("batch empty", "batch", json!({"commands": []})),
        call("batch unknown command", "batch", json!({"commands": [{"frobnicate": {}}]})),
        raw("wrong key", "/api/publish", Some("wrong"), r#"{"channel":"ap:k","data":1}"#),
        raw("no key", "/api/publish", None, r#"{"channel":"ap:k","data":1}"#),
        raw("non-JSON", "/api/publish", Some(API_KEY), "not json"),
        raw("JSON array", "/api/publish", Some(API_KEY), "[1,2]"),
        raw("JSON number", "/api/info", Some(API_KEY), "42"),
        raw("JSON string", "/api/publish", Some(API_KEY), r#""x""#),
        raw("empty body", "/api/publish", Some(API_KEY), ""),
        raw("empty body info", "/api/info", Some(API_KEY), ""),
        raw("unknown method", "/api/frobnicate", Some(API_KEY), "{}"),
        raw("legacy", "/api", Some(API_KEY), r#"{"method":"publish","params":{"channel":"ap:l-1","data":1}}"#),
        raw(
            "legacy several",
            "/api",
            Some(API_KEY),
            "{\"method\":\"publish\",\"params\":{\"channel\":\"ap:l\",\"data\":1}}\n{\"method\":\"presence_stats\",\"params\":{\"channel\":\"ap:l\"}}",
        ),
        raw("legacy unknown method", "/api", Some(API_KEY), r#"{"method":"frobnicate","params":{}}"#),
        raw("legacy wrong key", "/api", Some("wrong"), r#"{"method":"info","params":{}}"#),
        raw("legacy non-JSON", "/api", Some(API_KEY), "nope"),
    ];
    s.push(on_user("subscribe user", "apiu1", "ap:u1", "subscribe", json!({"user": "apiu1", "channel": "ap:srv1"})));
    s.push(on_user("unsubscribe user", "apiu2", "ap:u2", "unsubscribe", json!({"user": "apiu2", "channel": "ap:u2"})));
    s.push(on_user("disconnect user", "apiu3", "ap:u3", "disconnect", json!({"user": "apiu3"})));
    s.push(on_user(
        "disconnect user with code",
        "apiu4",
        "ap:u4",
        "disconnect",
        json!({"user": "apiu4", "disconnect": {"code": 4000, "reason": "bye"}}),
    ));
    s.push(on_user("refresh user", "apiu5", "ap:u5", "refresh", json!({"user": "apiu5", "expire_at": 2000000000})));
    s.push(on_user(
        "publish to subscriber",
        "apiu6",
        "ap:u6",
        "publish",
        json!({"channel": "ap:u6", "data": {"x": 1}, "tags": {"t": "1"}}),
    ));
    s.push(
        on_user("presence of subscriber", "apiu7", "ap:u7", "presence", json!({"channel": "ap:u7"}))
            .api("presence_stats", json!({"channel": "ap:u7"}))
            .api("channels", json!({"pattern": "ap:u7"})),
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "namespaces": [
            {"name": "ap", "allow_subscribe_for_client": true, "presence": true, "history_size": 10,
             "history_ttl": "300s"},
        ]
    });
    run_group("api", config, scenarios()).await;
}
