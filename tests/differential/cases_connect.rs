//! Connecting: every token case, refresh, and the basics after connecting.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::token;
use crate::common::{hs256_token, now_secs, Protocol, SECRET};
use base64::Engine as _;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

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

/// Connects with `token`, records the reply (or close), then one more
/// command and what it gets.
fn connect_with(name: &str, p: Protocol, token: &str) -> Scenario {
    Scenario::new(format!("token {name} {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token}}))
        .call("a", json!({"id": 2, "subscribe": {"channel": format!("tok-{name}")}}))
        .quiet("a")
}

/// Invalid tokens of every kind, named.
fn token_cases() -> Vec<(&'static str, String)> {
    let good = token("tom");
    let other = hs256_token(SECRET, "jerry", None, Value::Null);
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, _sig) = rest.split_once('.').unwrap();
    let other_sig = other.rsplit('.').next().unwrap();
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let rs_header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let good_sig = good.rsplit('.').next().unwrap();
    vec![
        ("good", good.clone()),
        ("no exp", hs256_token(SECRET, "tom", None, Value::Null)),
        ("expired", hs256_token(SECRET, "tom", Some(-3600), Value::Null)),
        ("bad signature", format!("{head}.{payload}.{other_sig}")),
        ("alg none", format!("{none_header}.{payload}.")),
        ("alg none with signature", format!("{none_header}.{payload}.{other_sig}")),
        ("wrong algorithm", format!("{rs_header}.{payload}.{good_sig}")),
        ("wrong key", hs256_token("not-the-secret", "tom", None, Value::Null)),
        ("nbf in the future", hs256_token(SECRET, "tom", Some(7200), json!({"nbf": now_secs() + 3600}))),
        ("channel claim", hs256_token(SECRET, "tom", None, json!({"channel": "news"}))),
        ("malformed", "not-a-jwt".into()),
        ("three garbage parts", "a.b.c".into()),
        ("empty", String::new()),
        ("anonymous sub", hs256_token(SECRET, "", Some(3600), Value::Null)),
        ("info", hs256_token(SECRET, "tom", Some(3600), json!({"info": {"role": "admin"}}))),
        ("b64info", hs256_token(SECRET, "tom", Some(3600), json!({"b64info": "eyJ4IjoxfQ=="}))),
        ("b64info not standard base64", hs256_token(SECRET, "tom", Some(3600), json!({"b64info": b64(br#"{"x":1}"#)}))),
        ("channels", hs256_token(SECRET, "tom", Some(3600), json!({"channels": ["srv-a", "srv-b"]}))),
        (
            "subs",
            hs256_token(
                SECRET,
                "tom",
                Some(3600),
                json!({"subs": {"srv-c": {"data": {"hello": 1}, "info": {"ci": 2}}, "srv-d": {}}}),
            ),
        ),
        (
            "channels and subs",
            hs256_token(SECRET, "tom", Some(3600), json!({"channels": ["srv-e"], "subs": {"srv-f": {}}})),
        ),
        ("channels unknown namespace", hs256_token(SECRET, "tom", Some(3600), json!({"channels": ["nope:x"]}))),
        ("expire_at", hs256_token(SECRET, "tom", None, json!({"expire_at": now_secs() + 1800}))),
        ("expire_at zero", hs256_token(SECRET, "tom", Some(3600), json!({"expire_at": 0}))),
        ("expire_at past", hs256_token(SECRET, "tom", Some(3600), json!({"expire_at": now_secs() - 10}))),
        ("aud unchecked", hs256_token(SECRET, "tom", Some(3600), json!({"aud": "whatever", "iss": "anyone"}))),
        ("meta", hs256_token(SECRET, "tom", Some(3600), json!({"meta": {"secret": 1}}))),
    ]
}

/// Publishing to a channel from a token's `channels` claim shows the
/// `info` claim to subscribers.
fn info_in_publications(p: Protocol) -> Scenario {
    let t = hs256_token(SECRET, "tom", Some(3600), json!({"info": {"role": "admin"}, "channels": ["srv-info"]}));
    Scenario::new(format!("info claim reaches subscribers {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": t}}))
        .call("a", json!({"id": 2, "publish": {"channel": "srv-info", "data": {"n": 1}}}))
        .recv("a")
}

/// Refresh: good, expired (3005), invalid (3500), another user (3500).
fn refresh(name: &str, p: Protocol, with: &str) -> Scenario {
    Scenario::new(format!("refresh {name} {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
        .call("a", json!({"id": 2, "refresh": {"token": with}}))
        .quiet("a")
}

fn before_connect(p: Protocol) -> Scenario {
    Scenario::new(format!("command before connect {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "subscribe": {"channel": "early"}}))
        .quiet("a")
}

fn connect_twice(p: Protocol) -> Scenario {
    Scenario::new(format!("connect twice {p:?}"))
        .open("a", p)
        .call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
        .call("a", json!({"id": 2, "connect": {"token": token("tom")}}))
        .quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_tokens() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "allow_subscribe_for_client": true,
        "allow_publish_for_client": true,
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(basics(p));
        scenarios.push(ping_command(p));
        scenarios.push(info_in_publications(p));
        scenarios.push(before_connect(p));
        scenarios.push(connect_twice(p));
        for (name, t) in token_cases() {
            scenarios.push(connect_with(name, p, &t));
        }
        scenarios.push(refresh("good", p, &token("tom")));
        scenarios.push(refresh("expired", p, &hs256_token(SECRET, "tom", Some(-3600), Value::Null)));
        scenarios.push(refresh("invalid", p, &hs256_token("nope", "tom", Some(3600), Value::Null)));
        scenarios.push(refresh("other user", p, &token("jerry")));
        scenarios.push(refresh("no exp", p, &hs256_token(SECRET, "tom", None, Value::Null)));
    }
    run_group("connect", config, scenarios).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_and_issuer() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "token_audience": "app",
        "token_issuer": "backend",
        "allow_subscribe_for_client": true,
    });
    let claims = |extra: Value| hs256_token(SECRET, "tom", Some(3600), extra);
    let cases = [
        ("aud and iss", claims(json!({"aud": "app", "iss": "backend"}))),
        ("aud list", claims(json!({"aud": ["other", "app"], "iss": "backend"}))),
        ("no aud", claims(json!({"iss": "backend"}))),
        ("no iss", claims(json!({"aud": "app"}))),
        ("wrong aud", claims(json!({"aud": "other", "iss": "backend"}))),
        ("wrong iss", claims(json!({"aud": "app", "iss": "other"}))),
    ];
    let mut scenarios = Vec::new();
    for p in BOTH {
        for (name, t) in &cases {
            scenarios.push(connect_with(name, p, t));
        }
    }
    run_group("aud_iss", config, scenarios).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "allow_anonymous_connect_without_token": true,
        "allow_subscribe_for_client": true,
        "allow_subscribe_for_anonymous": true,
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(
            Scenario::new(format!("anonymous without token {p:?}"))
                .open("a", p)
                .call("a", json!({"id": 1, "connect": {}}))
                .call("a", json!({"id": 2, "subscribe": {"channel": "anon"}}))
                .quiet("a"),
        );
    }
    run_group("anonymous", config, scenarios).await;
}
