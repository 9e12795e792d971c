//! Channels: subscribe, publish, presence and history in every permission
//! combination of namespaces and top-level options, private channels and
//! subscription tokens, user-limited channels, join/leave, rpc and send.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::token;
use crate::common::{hs256_token, Protocol, SECRET};
use serde_json::{json, Value};

/// Namespaces covering the permission options one by one.
pub fn config() -> Value {
    json!({
        "token_hmac_secret_key": SECRET,
        "allow_anonymous_connect_without_token": true,
        "presence": true,
        "namespaces": [
            {"name": "open", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
             "allow_presence_for_client": true, "allow_history_for_client": true, "presence": true,
             "join_leave": true, "force_push_join_leave": true, "history_size": 10, "history_ttl": "300s",
             "allow_recovery": true, "allow_positioning": true},
            {"name": "sub", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
             "allow_presence_for_subscriber": true, "allow_history_for_subscriber": true, "presence": true,
             "history_size": 5, "history_ttl": "300s"},
            {"name": "anon", "allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
             "allow_publish_for_client": true, "allow_publish_for_anonymous": true,
             "allow_presence_for_client": true, "allow_presence_for_anonymous": true, "presence": true,
             "allow_history_for_client": true, "allow_history_for_anonymous": true},
            {"name": "closed"},
            {"name": "users", "allow_user_limited_channels": true, "allow_subscribe_for_client": true,
             "allow_publish_for_subscriber": true},
            {"name": "jl", "allow_subscribe_for_client": true, "presence": true, "join_leave": true,
             "allow_presence_for_subscriber": true},
        ]
    })
}

fn conn_token(user: &str) -> Value {
    if user.is_empty() {
        json!({})
    } else {
        json!({"token": token(user)})
    }
}

/// Every client command on `channel` before, while and after subscribing.
fn permissions(ns: &str, user: &str, p: Protocol) -> Scenario {
    let who = if user.is_empty() { "anonymous" } else { user };
    let ch = if ns.is_empty() { format!("perm-{who}-{p:?}") } else { format!("{ns}:perm-{who}-{p:?}") };
    let data = json!({"n": 1});
    Scenario::new(format!("permissions {} {who} {p:?}", if ns.is_empty() { "top-level" } else { ns }))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": conn_token(user)}))
        .call("a", json!({"id": 2, "publish": {"channel": ch, "data": data}}))
        .call("a", json!({"id": 3, "presence": {"channel": ch}}))
        .call("a", json!({"id": 4, "presence_stats": {"channel": ch}}))
        .call("a", json!({"id": 5, "history": {"channel": ch, "limit": 10}}))
        .call("a", json!({"id": 6, "subscribe": {"channel": ch}}))
        .quiet("a")
        .call("a", json!({"id": 7, "subscribe": {"channel": ch}}))
        .send("a", json!({"id": 8, "publish": {"channel": ch, "data": data}}))
        .recv_n("a", 2)
        .call("a", json!({"id": 9, "presence": {"channel": ch}}))
        .call("a", json!({"id": 10, "presence_stats": {"channel": ch}}))
        .call("a", json!({"id": 11, "history": {"channel": ch, "limit": 10}}))
        .call("a", json!({"id": 12, "unsubscribe": {"channel": ch}}))
        .call("a", json!({"id": 13, "unsubscribe": {"channel": ch}}))
        .quiet("a")
}

fn sub_token(user: &str, channel: &str, exp: i64, extra: Value) -> String {
    let mut claims = json!({"channel": channel});
    claims.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    hs256_token(SECRET, user, Some(exp), claims)
}

/// Private channels: no token, good, expired, wrong channel, other user,
/// wrong key, with info and data.
fn private(case: &str, p: Protocol) -> Scenario {
    let ch = format!("$sub:secret-{}-{p:?}", case.replace(' ', "-"));
    let token = match case {
        "no token" => None,
        "good" => Some(sub_token("tom", &ch, 3600, json!({}))),
        "with info and data" => Some(sub_token("tom", &ch, 3600, json!({"info": {"seat": 1}, "data": {"hi": 2}}))),
        "expired" => Some(sub_token("tom", &ch, -3600, json!({}))),
        "no exp" => Some(hs256_token(SECRET, "tom", None, json!({"channel": ch}))),
        "other channel" => Some(sub_token("tom", "$sub:else", 3600, json!({}))),
        "other user" => Some(sub_token("bob", &ch, 3600, json!({}))),
        "wrong key" => Some(hs256_token("nope", "tom", Some(3600), json!({"channel": ch}))),
        "expire_at" => Some(sub_token("tom", &ch, 3600, json!({"expire_at": crate::common::now_secs() + 600}))),
        "client mismatch" => Some(sub_token("tom", &ch, 3600, json!({"client": "someone-else"}))),
        other => panic!("unknown case {other}"),
    };
    let mut sub = json!({"channel": ch});
    if let Some(t) = token {
        sub["token"] = json!(t);
    }
    Scenario::new(format!("private {case} {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": super::token("tom")}}))
        .call("a", json!({"id": 2, "subscribe": sub}))
        .call("a", json!({"id": 3, "publish": {"channel": ch, "data": {"x": 1}}}))
        .quiet("a")
}

fn sub_refresh(p: Protocol) -> Scenario {
    let ch = format!("$sub:refresh-{p:?}");
    Scenario::new(format!("sub_refresh {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
        .call("a", json!({"id": 2, "subscribe": {"channel": ch, "token": sub_token("tom", &ch, 3600, json!({}))}}))
        .call("a", json!({"id": 3, "sub_refresh": {"channel": ch, "token": sub_token("tom", &ch, 7200, json!({}))}}))
        .call(
            "a",
            json!({"id": 4, "sub_refresh": {"channel": ch, "token": sub_token("tom", "$sub:x", 7200, json!({}))}}),
        )
        .quiet("a")
}

fn user_limited(channel: &str, p: Protocol) -> Scenario {
    Scenario::new(format!("user-limited {channel} {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
        .call("a", json!({"id": 2, "subscribe": {"channel": channel}}))
        .quiet("a")
}

fn odd_channel(name: &str, channel: &str, p: Protocol) -> Scenario {
    Scenario::new(format!("channel {name} {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
        .call("a", json!({"id": 2, "subscribe": {"channel": channel}}))
        .call("a", json!({"id": 3, "publish": {"channel": channel, "data": 1}}))
        .quiet("a")
}

/// Two clients: presence contents and join/leave pushes.
fn presence_and_join_leave(ns: &str, p: Protocol) -> Scenario {
    let ch = format!("{ns}:room-{p:?}");
    let t = hs256_token(SECRET, "bob", Some(3600), json!({"info": {"name": "Bob"}}));
    Scenario::new(format!("presence and join/leave {ns} {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
        .call("a", json!({"id": 2, "subscribe": {"channel": ch, "join_leave": true}}))
        .open_on("b", p, super::scenario::Node::B)
        .call("b", json!({"id": 1, "connect": {"token": t}}))
        .call("b", json!({"id": 2, "subscribe": {"channel": ch}}))
        .recv("a")
        .call("b", json!({"id": 3, "presence": {"channel": ch}}))
        .call("b", json!({"id": 4, "presence_stats": {"channel": ch}}))
        .call("b", json!({"id": 5, "unsubscribe": {"channel": ch}}))
        .recv("a")
        .quiet("a")
}

/// A `subs` claim's `info` is the subscription's channel info (presence, publications).
fn subs_info(p: Protocol) -> Scenario {
    let ch = format!("jl:srvinfo-{p:?}");
    let t = hs256_token(SECRET, "tom", Some(3600), json!({"subs": {ch.clone(): {"info": {"seat": 3}}}}));
    Scenario::new(format!("subs claim info {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": t}}))
        .call("a", json!({"id": 2, "presence": {"channel": ch}}))
}

fn rpc_and_send(p: Protocol) -> Scenario {
    Scenario::new(format!("rpc and send without proxy {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
        .call("a", json!({"id": 2, "rpc": {"method": "m", "data": {"x": 1}}}))
        .send("a", json!({"send": {"data": {"x": 1}}}))
        .quiet("a")
        .call("a", json!({"id": 3, "presence": {"channel": "closed:x"}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_permissions() {
    let mut scenarios = Vec::new();
    for p in BOTH {
        for ns in ["", "open", "sub", "anon", "closed", "users", "nope"] {
            for user in ["tom", ""] {
                scenarios.push(permissions(ns, user, p));
            }
        }
        for case in [
            "no token",
            "good",
            "with info and data",
            "expired",
            "no exp",
            "other channel",
            "other user",
            "wrong key",
            "expire_at",
            "client mismatch",
        ] {
            scenarios.push(private(case, p));
        }
        scenarios.push(sub_refresh(p));
        for ch in ["users:dialog#tom,bob", "users:dialog#bob", "users:solo#tom", "open:dialog#tom", "dialog#tom"] {
            scenarios.push(user_limited(&format!("{ch}-{p:?}"), p));
        }
        for (name, ch) in [
            ("too long", format!("open:{p:?}{}", "x".repeat(251 - format!("{p:?}").len()))),
            ("longest", format!("open:{p:?}{}", "y".repeat(250 - format!("{p:?}").len()))),
            ("empty", String::new()),
            ("with dots and stars", "open:a.*.>".into()),
            ("unicode", "open:ключ".into()),
            ("empty namespace name", ":x".into()),
        ] {
            let ch = if ch.is_empty() || name.contains("long") { ch } else { format!("{ch}-{p:?}") };
            scenarios.push(odd_channel(name, &ch, p));
        }
        scenarios.push(presence_and_join_leave("jl", p));
        scenarios.push(presence_and_join_leave("open", p));
        scenarios.push(rpc_and_send(p));
        scenarios.push(subs_info(p));
    }
    run_group("channels", config(), scenarios).await;
}
