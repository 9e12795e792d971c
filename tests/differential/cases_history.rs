//! History, recovery and positioning.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::token;
use crate::common::{Protocol, SECRET};
use serde_json::json;

fn connected(name: String, p: Protocol) -> Scenario {
    Scenario::new(name).open("a", p).call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
}

/// Publishes `n` publications to `ch` through the API, recording replies.
fn publish_n(mut s: Scenario, ch: &str, n: usize) -> Scenario {
    for i in 1..=n {
        s = s.api("publish", json!({"channel": ch, "data": {"i": i}}));
    }
    s
}

fn history(p: Protocol) -> Scenario {
    let ch = format!("hist:h-{p:?}");
    let s = connected(format!("history {p:?}"), p)
        .call("a", json!({"id": 2, "history": {"channel": ch, "limit": 0}}))
        .call("a", json!({"id": 3, "history": {"channel": ch, "limit": -1}}));
    publish_n(s, &ch, 5)
        .send("a", json!({"id": 4, "history": {"channel": ch, "limit": 0}}))
        .recv_save("a", &[("/history/epoch", "epoch"), ("/history/offset", "top")])
        .call("a", json!({"id": 5, "history": {"channel": ch, "limit": 2}}))
        .call("a", json!({"id": 6, "history": {"channel": ch, "limit": 2, "reverse": true}}))
        .call("a", json!({"id": 7, "history": {"channel": ch, "limit": -1}}))
        .call("a", json!({"id": 8, "history": {"channel": ch, "limit": 10, "since": {"offset": 0, "epoch": "$epoch"}}}))
        .call("a", json!({"id": 9, "history": {"channel": ch, "limit": 10, "since": {"offset": "$top", "epoch": "$epoch"}}}))
        .call("a", json!({"id": 10, "history": {"channel": ch, "limit": 10, "since": {"offset": "$top", "epoch": "$epoch"}, "reverse": true}}))
        .call("a", json!({"id": 11, "history": {"channel": ch, "limit": 10, "since": {"offset": 1, "epoch": "wrong"}}}))
        .call("a", json!({"id": 12, "history": {"channel": ch, "limit": 10, "since": {"offset": 1000000, "epoch": "$epoch"}}}))
        .call("a", json!({"id": 13, "history": {"channel": "hist:never-used", "limit": 10}}))
        .call("a", json!({"id": 14, "history": {"channel": "nohist:x", "limit": 10}}))
        .call("a", json!({"id": 15, "history": {"channel": ch, "limit": 301}}))
        .api("history", json!({"channel": ch, "limit": 2, "reverse": true}))
        .api("history", json!({"channel": ch, "limit": 10, "since": {"offset": 1, "epoch": "wrong"}}))
        .api("history_remove", json!({"channel": ch}))
        .call("a", json!({"id": 16, "history": {"channel": ch, "limit": 10}}))
}

/// Subscribe (recoverable), leave, miss `missed` publications, come back.
fn recovery(case: &str, missed: usize, p: Protocol) -> Scenario {
    let ch = format!("hist:r-{}-{p:?}", case.replace(' ', "-"));
    let s = connected(format!("recovery {case} {p:?}"), p);
    let s = publish_n(s, &ch, if case == "fresh channel" { 0 } else { 2 })
        .send("a", json!({"id": 2, "subscribe": {"channel": ch, "recoverable": true}}))
        .recv_save("a", &[("/subscribe/epoch", "epoch"), ("/subscribe/offset", "offset")])
        .send("a", json!({"id": 3, "unsubscribe": {"channel": ch}}))
        .recv("a");
    let s = publish_n(s, &ch, missed);
    let (offset, epoch) = match case {
        "wrong epoch" => (json!("$offset"), json!("nope")),
        "empty epoch" => (json!("$offset"), json!("")),
        "future offset" => (json!(1000000), json!("$epoch")),
        _ => (json!("$offset"), json!("$epoch")),
    };
    let sub = json!({"channel": ch, "recoverable": true, "recover": true, "offset": offset, "epoch": epoch});
    s.call("a", json!({"id": 4, "subscribe": sub}))
        .api("publish", json!({"channel": ch, "data": "live"}))
        .recv("a")
        .quiet("a")
}

/// Reject-unrecovered flag (2): error 112 instead of `recovered:false`.
fn reject_unrecovered(p: Protocol) -> Scenario {
    let ch = format!("hist:flag-{p:?}");
    let s = connected(format!("recovery flag reject unrecovered {p:?}"), p);
    publish_n(s, &ch, 5)
        .call("a", json!({"id": 2, "subscribe": {"channel": ch, "recoverable": true, "recover": true, "offset": 1, "epoch": "nope", "flag": 2}}))
        .quiet("a")
}

fn positioning(p: Protocol) -> Scenario {
    let ch = format!("hist:pos-{p:?}");
    let s = connected(format!("positioning {p:?}"), p);
    publish_n(s, &ch, 1)
        .call("a", json!({"id": 2, "subscribe": {"channel": ch, "positioned": true}}))
        .call("a", json!({"id": 3, "subscribe": {"channel": format!("nohist:pos-{p:?}"), "positioned": true, "recoverable": true}}))
        .api("publish", json!({"channel": ch, "data": "after"}))
        .recv("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_recovery_positioning() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "namespaces": [
            {"name": "hist", "history_size": 3, "history_ttl": "300s", "allow_subscribe_for_client": true,
             "allow_history_for_client": true, "allow_recovery": true, "allow_positioning": true},
            // natsgate refuses allow_recovery/allow_positioning without history at startup
            // (Centrifugo accepts and ignores them): a README deviation.
            {"name": "nohist", "allow_subscribe_for_client": true, "allow_history_for_client": true},
        ]
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(history(p));
        for (case, missed) in [
            ("exact", 0),
            ("some missed", 2),
            ("all kept", 3),
            ("too far", 5),
            ("wrong epoch", 1),
            ("empty epoch", 1),
            ("future offset", 1),
            ("fresh channel", 2),
        ] {
            scenarios.push(recovery(case, missed, p));
        }
        scenarios.push(reject_unrecovered(p));
        scenarios.push(positioning(p));
    }
    run_group("history", config, scenarios).await;
}
