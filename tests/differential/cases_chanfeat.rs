//! Issue #20's channel features against Centrifugo v6.9.1: the personal
//! channel (with single-connection mode across two gateways) and cache
//! recovery (`force_recovery_mode: "cache"`, `auto_cache_recover`), for
//! client-side and server-side subscriptions.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::{Node, Scenario};
use super::token;
use crate::common::{hs256_token, Protocol, SECRET};
use serde_json::json;

fn connect(s: Scenario, conn: &str, user: &str) -> Scenario {
    s.call(conn, json!({"id": 1, "connect": {"token": token(user)}}))
}

/// Connected: the personal channel is in the connect reply, recoverable
/// and positioned (the namespace forces recovery); publications reach it.
fn personal_basics(p: Protocol) -> Scenario {
    let user = format!("pb-{p:?}");
    let ch = format!("personal:#{user}");
    let s = Scenario::new(format!("personal basics {p:?}")).open("a", p);
    connect(s, "a", &user)
        .api("publish", json!({"channel": ch, "data": {"n": 1}}))
        .recv("a")
        .call("a", json!({"id": 2, "subscribe": {"channel": ch}}))
        .quiet("a")
}

/// The personal channel recovers through the connect's `subs`.
fn personal_recovery(p: Protocol) -> Scenario {
    let user = format!("pr-{p:?}");
    let ch = format!("personal:#{user}");
    let s = Scenario::new(format!("personal recovery {p:?}")).open("a", p);
    let offset = format!("/connect/subs/personal:#{user}/offset");
    let epoch = format!("/connect/subs/personal:#{user}/epoch");
    let s = s
        .api("publish", json!({"channel": ch, "data": {"n": 0}}))
        .send("a", json!({"id": 1, "connect": {"token": token(&user)}}))
        .recv_save("a", &[(offset.as_str(), "offset"), (epoch.as_str(), "epoch")])
        .drop_conn("a")
        .api("publish", json!({"channel": ch, "data": {"n": 1}}))
        .api("publish", json!({"channel": ch, "data": {"n": 2}}))
        .open("b", p);
    let subs = json!({ch.clone(): {"recover": true, "offset": "$offset", "epoch": "$epoch"}});
    s.call("b", json!({"id": 1, "connect": {"token": token(&user), "subs": subs}})).quiet("b")
}

/// A second connection of the user, on the other gateway, closes the first
/// with 3504.
fn personal_single_connection(p: Protocol) -> Scenario {
    let user = format!("ps-{p:?}");
    let s = Scenario::new(format!("personal single connection {p:?}")).open("a", p);
    let s = connect(s, "a", &user).open_on("b", p, Node::B);
    connect(s, "b", &user)
        .recv("a")
        .api("publish", json!({"channel": format!("personal:#{user}"), "data": "to b"}))
        .recv("b")
}

/// Anonymous connections get no personal channel.
fn personal_anonymous(p: Protocol) -> Scenario {
    Scenario::new(format!("personal anonymous {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {}}))
        .quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_channel() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "allow_anonymous_connect_without_token": true,
        "user_subscribe_to_personal": true,
        "user_personal_channel_namespace": "personal",
        "user_personal_single_connection": true,
        "namespaces": [
            {"name": "personal", "presence": true, "history_size": 10, "history_ttl": "300s", "force_recovery": true},
        ]
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(personal_basics(p));
        scenarios.push(personal_recovery(p));
        scenarios.push(personal_single_connection(p));
        scenarios.push(personal_anonymous(p));
    }
    run_group("personal", config, scenarios).await;
}

fn publish_n(mut s: Scenario, ch: &str, n: usize) -> Scenario {
    for i in 1..=n {
        s = s.api("publish", json!({"channel": ch, "data": {"i": i}}));
    }
    s
}

/// Client-side cache recovery: `case` picks the position the client sends.
fn cache(case: &str, p: Protocol) -> Scenario {
    let ch = format!("cache:{}-{p:?}", case.replace(' ', "-"));
    let s = Scenario::new(format!("cache {case} {p:?}")).open("a", p);
    let s = connect(s, "a", "tom");
    let s = publish_n(s, &ch, if case == "empty channel" { 0 } else { 3 })
        .send("a", json!({"id": 2, "subscribe": {"channel": ch}}))
        .recv_save("a", &[("/subscribe/epoch", "epoch"), ("/subscribe/offset", "offset")])
        .call("a", json!({"id": 3, "unsubscribe": {"channel": ch}}));
    let s = publish_n(s, &ch, if case == "same position" { 0 } else { 2 });
    let sub = match case {
        "no position" | "empty channel" => json!({"channel": ch, "recover": true}),
        "wrong epoch" => json!({"channel": ch, "recover": true, "offset": "$offset", "epoch": "nope", "flag": 2}),
        "empty epoch" => json!({"channel": ch, "recover": true, "offset": "$offset", "epoch": ""}),
        "no recover" => json!({"channel": ch}),
        _ => json!({"channel": ch, "recover": true, "offset": "$offset", "epoch": "$epoch"}),
    };
    s.call("a", json!({"id": 4, "subscribe": sub}))
        .api("publish", json!({"channel": ch, "data": "live"}))
        .recv("a")
        .quiet("a")
}

/// `auto_cache_recover`: the latest publication without asking, also for
/// server-side subscriptions; server-side cache recovery through `subs`.
/// One channel per scenario: epochs are compared per scenario, and
/// natsgate's epoch belongs to a namespace (a listed deviation).
fn auto_cache(case: &str, p: Protocol) -> Scenario {
    let ch = format!("{}:{}-{p:?}", if case == "server side asked" { "cache" } else { "auto" }, case.replace(' ', "-"));
    let s = publish_n(Scenario::new(format!("auto cache {case} {p:?}")).open("a", p), &ch, 2);
    if case == "client" {
        return connect(s, "a", "tom").call("a", json!({"id": 2, "subscribe": {"channel": ch}})).quiet("a");
    }
    let channels = hs256_token(SECRET, "tom", Some(3600), json!({"channels": [ch.clone()]}));
    let subs = if case == "server side asked" { json!({ch.clone(): {"recover": true}}) } else { json!({}) };
    s.call("a", json!({"id": 1, "connect": {"token": channels, "subs": subs}})).quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_recovery() {
    let namespace = |name: &str, auto: bool| {
        json!({"name": name, "history_size": 10, "history_ttl": "300s", "allow_subscribe_for_client": true,
               "force_recovery": true, "force_recovery_mode": "cache", "auto_cache_recover": auto})
    };
    let config =
        json!({"token_hmac_secret_key": SECRET, "namespaces": [namespace("cache", false), namespace("auto", true)]});
    let mut scenarios = Vec::new();
    for p in BOTH {
        for case in [
            "no position",
            "stale position",
            "same position",
            "wrong epoch",
            "empty epoch",
            "empty channel",
            "no recover",
        ] {
            scenarios.push(cache(case, p));
        }
        for case in ["client", "server side", "server side asked"] {
            scenarios.push(auto_cache(case, p));
        }
    }
    run_group("cache_recovery", config, scenarios).await;
}
