//! Shared poll subscriptions' raw wire against Centrifugo v6.9.1 (issue
//! #20): `subscribe` with `type: 4`; `sub_refresh` track (type 1) with
//! valid, forged, expired and misdirected HMAC signatures, over the key
//! limit, and untrack (type 2); the data the refresh proxy answers pushed
//! to trackers (versionless and versioned, removed keys); and the HTTP
//! API's `shared_poll_publish`. The refresh proxy is a loopback HTTP
//! backend both servers call, answering from the request alone.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::{Node, Scenario};
use super::{token, API_KEY};
use crate::common::{Protocol, SECRET};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use natsgate::shared_poll::signature::sign;
use serde_json::{json, Value};

/// The secret track signatures are made with.
const SP_SECRET: &str = "differential-shared-poll-secret";

/// The previous secret (a rotation), accepted for signatures issued before
/// the test started.
const SP_PREVIOUS: &str = "differential-shared-poll-previous";

/// The version the backend gives every key of a versioned channel.
const BACKEND_VERSION: u64 = 3;

/// The backend's answer to a `shared_poll_refresh` request: a pure
/// function of it, so that all three servers, polling at their own times,
/// get the same. Keys named `gone*` are removed, `missing*` unknown;
/// versioned channels (`spv:`) give version 3 to a poller older than it.
fn refresh(body: &Value) -> Value {
    let channel = body["channel"].as_str().unwrap_or_default();
    let versioned = channel.starts_with("spv:");
    let mut items = Vec::new();
    for item in body["items"].as_array().into_iter().flatten() {
        let key = item["key"].as_str().unwrap_or_default();
        if key.starts_with("missing") {
            continue;
        }
        if key.starts_with("gone") {
            items.push(json!({"key": key, "removed": true}));
        } else if versioned {
            if item["version"].as_u64().unwrap_or(0) < BACKEND_VERSION {
                items.push(json!({"key": key, "data": {"key": key, "v": BACKEND_VERSION}, "version": BACKEND_VERSION}));
            }
        } else {
            items.push(json!({"key": key, "data": {"key": key}}));
        }
    }
    // `spv:epoch-*` channels name an epoch: e2 once a key `epoch2*` is asked.
    if channel.starts_with("spv:epoch-") {
        let asked = |prefix: &str| {
            body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["key"].as_str().is_some_and(|k| k.starts_with(prefix)))
        };
        let epoch = if asked("epoch2") { "e2" } else { "e1" };
        return json!({"result": {"items": items, "epoch": epoch}});
    }
    json!({"result": {"items": items}})
}

/// Starts the backend on a free loopback port; returns its base URL. It
/// lives as long as the test's runtime.
async fn backend() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let reply = refresh(&body).to_string();
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(reply))))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    format!("http://{addr}")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

fn connect(s: Scenario, conn: &str, user: &str) -> Scenario {
    s.call(conn, json!({"id": 1, "connect": {"token": token(user)}}))
}

fn sp_sub(id: u32, ch: &str) -> Value {
    json!({"id": id, "subscribe": {"channel": ch, "type": 4}})
}

/// A track batch of `keys` (each at `version`) signed for `user` and `ch`
/// with `secret`, expiring at `expiry` (0: never).
fn batch(secret: &str, ch: &str, user: &str, keys: &[&str], version: u64, expiry: i64) -> Value {
    batch_at(secret, ch, user, keys, version, now(), expiry)
}

/// `batch` issued at `iat`.
fn batch_at(secret: &str, ch: &str, user: &str, keys: &[&str], version: u64, iat: i64, expiry: i64) -> Value {
    let signature = sign(secret, ch, keys, user, iat, expiry);
    let items: Vec<Value> = keys.iter().map(|k| json!({"key": k, "version": version})).collect();
    json!({"signature": signature, "items": items})
}

fn track(id: u32, ch: &str, batches: Vec<Value>) -> Value {
    json!({"id": id, "sub_refresh": {"channel": ch, "type": 1, "track": batches}})
}

fn untrack(id: u32, ch: &str, keys: &[&str]) -> Value {
    json!({"id": id, "sub_refresh": {"channel": ch, "type": 2, "untrack": keys}})
}

/// Subscribe, track one key and get its data from the backend, track a
/// removed key and an unknown one, untrack; a second tracker of the same
/// key on node B.
fn versionless(p: Protocol) -> Scenario {
    let ch = format!("sp:items-{p:?}");
    let s = connect(Scenario::new(format!("shared poll versionless {p:?}")).open("a", p), "a", "tom");
    let s = s
        .call("a", sp_sub(2, &ch))
        .send("a", track(3, &ch, vec![batch(SP_SECRET, &ch, "tom", &["x"], 0, 0)]))
        .recv_n("a", 2)
        .send("a", track(4, &ch, vec![batch(SP_SECRET, &ch, "tom", &["gone1"], 0, 0)]))
        .recv_n("a", 2)
        .quiet("a")
        .call("a", track(5, &ch, vec![batch(SP_SECRET, &ch, "tom", &["missing1"], 0, 0)]))
        .quiet("a")
        .call("a", untrack(6, &ch, &["x", "never-tracked"]))
        .open_on("b", p, Node::B);
    connect(s, "b", "ann")
        .call("b", sp_sub(2, &ch))
        .send("b", track(3, &ch, vec![batch(SP_SECRET, &ch, "ann", &["x"], 0, 0)]))
        .recv_n("b", 2)
        .quiet("b")
        .quiet("a")
}

/// A versioned channel: the backend's version reaches a tracker with an
/// older one, not one that has it; `shared_poll_publish` pushes a newer
/// version at once and an older one not at all.
fn versioned(p: Protocol) -> Scenario {
    let ch = format!("spv:items-{p:?}");
    let s = connect(Scenario::new(format!("shared poll versioned {p:?}")).open("a", p), "a", "tom");
    s.call("a", sp_sub(2, &ch))
        .send("a", track(3, &ch, vec![batch(SP_SECRET, &ch, "tom", &["x"], 0, 0)]))
        .recv_n("a", 2)
        .call("a", track(4, &ch, vec![batch(SP_SECRET, &ch, "tom", &["y"], BACKEND_VERSION, 0)]))
        .quiet("a")
        .api("shared_poll_publish", json!({"channel": ch, "key": "x", "data": {"published": 5}, "version": 5}))
        .recv("a")
        .api("shared_poll_publish", json!({"channel": ch, "key": "x", "data": {"published": 4}, "version": 4}))
        .quiet("a")
        .api("shared_poll_publish", json!({"channel": ch, "key": "y", "b64data": "eyJiIjoxfQ==", "version": 6}))
        .recv("a")
        .quiet("a")
}

/// Signatures refused: forged, for another channel, for another user, by
/// another secret, expired (109) and expiring (a ttl in the reply); one bad
/// batch among good ones refuses the request.
fn signatures(p: Protocol) -> Scenario {
    let ch = format!("sp:sigs-{p:?}");
    let other = format!("sp:other-{p:?}");
    let s = connect(Scenario::new(format!("shared poll signatures {p:?}")).open("a", p), "a", "tom");
    let good = batch(SP_SECRET, &ch, "tom", &["missing-a"], 0, 0);
    let forged = json!({"signature": format!("{}:0:{}", now(), "ab".repeat(32)), "items": [{"key": "missing-b"}]});
    s.call("a", sp_sub(2, &ch))
        .call("a", track(3, &ch, vec![forged]))
        .call("a", track(4, &ch, vec![batch(SP_SECRET, &other, "tom", &["missing-c"], 0, 0)]))
        .call("a", track(5, &ch, vec![batch(SP_SECRET, &ch, "ann", &["missing-d"], 0, 0)]))
        .call("a", track(6, &ch, vec![batch("another secret", &ch, "tom", &["missing-e"], 0, 0)]))
        .call("a", track(7, &ch, vec![batch(SP_SECRET, &ch, "tom", &["missing-f"], 0, now() - 60)]))
        .call("a", track(8, &ch, vec![good.clone(), json!({"signature": "garbage", "items": [{"key": "missing-g"}]})]))
        .call("a", track(9, &ch, vec![batch(SP_SECRET, &ch, "tom", &["missing-h"], 0, now() + 600)]))
        // Expired, but within the 5 s grace: accepted, a zero ttl.
        .call("a", track(13, &ch, vec![batch(SP_SECRET, &ch, "tom", &["missing-i"], 0, now() - 1)]))
        // The previous secret: before its valid_until, and after it.
        .call("a", track(14, &ch, vec![batch_at(SP_PREVIOUS, &ch, "tom", &["missing-j"], 0, now() - 600, 0)]))
        .call("a", track(15, &ch, vec![batch_at(SP_PREVIOUS, &ch, "tom", &["missing-k"], 0, now() + 600, 0)]))
        .call("a", json!({"id": 10, "sub_refresh": {"channel": ch, "type": 1, "track": [{"signature": "1:0:00"}]}}))
        .call("a", json!({"id": 11, "sub_refresh": {"channel": ch, "type": 1}}))
        .call("a", json!({"id": 12, "sub_refresh": {"channel": ch, "type": 2}}))
        .quiet("a")
}

/// `max_keys_per_connection` (2 in `spl`): a third key is 106, counting
/// keys already tracked and those untracked in the same request.
fn key_limit(p: Protocol) -> Scenario {
    let ch = format!("spl:limit-{p:?}");
    let s = connect(Scenario::new(format!("shared poll key limit {p:?}")).open("a", p), "a", "tom");
    let three = ["missing1", "missing2", "missing3"];
    s.call("a", sp_sub(2, &ch))
        .call("a", track(3, &ch, vec![batch(SP_SECRET, &ch, "tom", &three, 0, 0)]))
        .call("a", track(4, &ch, vec![batch(SP_SECRET, &ch, "tom", &three[..2], 0, 0)]))
        .call("a", track(5, &ch, vec![batch(SP_SECRET, &ch, "tom", &three[2..], 0, 0)]))
        .call("a", track(6, &ch, vec![batch(SP_SECRET, &ch, "tom", &three[1..], 0, 0)]))
        .call("a", untrack(7, &ch, &["missing1"]))
        .call("a", track(8, &ch, vec![batch(SP_SECRET, &ch, "tom", &three[2..], 0, 0)]))
        .quiet("a")
}

/// Requests of the wrong kind: type 4 on a stream channel, a plain
/// subscribe of a shared poll channel, a track before subscribing, a
/// track on a stream channel, publishing into a shared poll channel,
/// subscribing twice; `shared_poll_publish` refused (versionless channel,
/// missing key).
fn wrong_requests(p: Protocol) -> Scenario {
    let ch = format!("sp:wrong-{p:?}");
    let st = format!("st:wrong-{p:?}");
    let s = connect(Scenario::new(format!("shared poll wrong requests {p:?}")).open("a", p), "a", "tom");
    s.call("a", sp_sub(2, &st))
        .call("a", json!({"id": 3, "subscribe": {"channel": ch}}))
        .call("a", track(4, &ch, vec![batch(SP_SECRET, &ch, "tom", &["missing1"], 0, 0)]))
        .call("a", json!({"id": 5, "subscribe": {"channel": st}}))
        .call("a", track(6, &st, vec![batch(SP_SECRET, &st, "tom", &["missing1"], 0, 0)]))
        .call("a", sp_sub(7, &ch))
        .call("a", sp_sub(8, &ch))
        .call("a", json!({"id": 9, "publish": {"channel": ch, "data": {"v": 1}}}))
        .call("a", json!({"id": 10, "unsubscribe": {"channel": ch}}))
        .call("a", track(11, &ch, vec![batch(SP_SECRET, &ch, "tom", &["missing1"], 0, 0)]))
        .quiet("a")
        .api("shared_poll_publish", json!({"channel": ch, "key": "x", "data": {"v": 1}, "version": 1}))
        .api("shared_poll_publish", json!({"channel": format!("spv:wrong-{p:?}"), "data": {"v": 1}, "version": 1}))
        .api("shared_poll_publish", json!({"channel": format!("spv:wrong-{p:?}"), "key": "x", "version": 1}))
        .api("shared_poll_publish", json!({"channel": format!("spv:wrong-{p:?}"), "key": "x", "data": {}}))
        .api("shared_poll_publish", json!({"key": "x", "data": {}, "version": 1}))
        .api("shared_poll_publish", json!({"channel": st, "key": "x", "data": {}, "version": 1}))
        .api(
            "shared_poll_publish",
            json!({"channel": format!("nope:wrong-{p:?}"), "key": "x", "data": {}, "version": 1}),
        )
}

/// Unsubscribing stops the keys: a publish after it reaches nobody.
fn unsubscribe_stops(p: Protocol) -> Scenario {
    let ch = format!("spv:unsub-{p:?}");
    let s = connect(Scenario::new(format!("shared poll unsubscribe stops {p:?}")).open("a", p), "a", "tom");
    s.call("a", sp_sub(2, &ch))
        .call("a", track(3, &ch, vec![batch(SP_SECRET, &ch, "tom", &["k"], BACKEND_VERSION, 0)]))
        .call("a", json!({"id": 4, "unsubscribe": {"channel": ch}}))
        .api("shared_poll_publish", json!({"channel": ch, "key": "k", "data": {"late": true}, "version": 9}))
        .quiet("a")
}

/// The backend's epoch of a versioned channel changes (e1, then e2).
fn epoch_change(p: Protocol) -> Scenario {
    let ch = format!("spv:epoch-{p:?}");
    let s = connect(Scenario::new(format!("shared poll epoch change {p:?}")).open("a", p), "a", "tom");
    s.call("a", sp_sub(2, &ch))
        .send("a", track(3, &ch, vec![batch(SP_SECRET, &ch, "tom", &["x"], 0, 0)]))
        .recv_n("a", 2)
        .send("a", track(4, &ch, vec![batch(SP_SECRET, &ch, "tom", &["epoch2"], 0, 0)]))
        .recv_n("a", 2)
        .quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_poll_protocol() {
    let url = backend().await;
    let sp = |name: &str, options: Value| {
        json!({"name": name, "subscription_type": "shared_poll", "allow_subscribe_for_client": true,
               "shared_poll": options})
    };
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "shared_poll_hmac_secret_key": SP_SECRET,
        "shared_poll_hmac_previous_secret_key": SP_PREVIOUS,
        "shared_poll_hmac_previous_secret_key_valid_until": now() + 300,
        "proxy_shared_poll_refresh_endpoint": format!("{url}/refresh"),
        "proxy_shared_poll_refresh_timeout": "1s",
        "namespaces": [
            sp("sp", json!({"refresh_interval": "60s"})),
            sp("spv", json!({"refresh_interval": "60s", "mode": "versioned", "publish_enabled": true})),
            sp("spl", json!({"refresh_interval": "60s", "max_keys_per_connection": 2})),
            {"name": "st", "allow_subscribe_for_client": true, "allow_publish_for_client": true},
        ]
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(versionless(p));
        scenarios.push(versioned(p));
        scenarios.push(signatures(p));
        scenarios.push(key_limit(p));
        scenarios.push(wrong_requests(p));
        scenarios.push(unsubscribe_stops(p));
        scenarios.push(epoch_change(p));
    }
    run_group("shared_poll", config, scenarios).await;
}
