//! Map subscriptions' client protocol against Centrifugo v6.9.1 (issue
//! #20): `subscribe` with `type: 1` through its phases (state pages with
//! `cursor`/`limit`, stream catch-up, live), client key writes and removals
//! (`publish` with `type: 1`, allowed and refused), recovery of a map
//! subscription, requests of the wrong type, and the page size limits.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::{token, API_KEY};
use crate::common::{Protocol, SECRET};
use serde_json::{json, Value};

fn connect(s: Scenario, conn: &str, user: &str) -> Scenario {
    s.call(conn, json!({"id": 1, "connect": {"token": token(user)}}))
}

/// `n` keys `k1`..`kn` set through the API.
fn keys(mut s: Scenario, ch: &str, n: usize) -> Scenario {
    for i in 1..=n {
        s = s.api("map_publish", json!({"channel": ch, "key": format!("k{i}"), "data": {"i": i}}));
    }
    s
}

fn map_sub(id: u32, ch: &str, extra: Value) -> Value {
    let mut sub = json!({"channel": ch, "type": 1, "phase": 2});
    for (k, v) in extra.as_object().into_iter().flatten() {
        sub[k] = v.clone();
    }
    json!({"id": id, "subscribe": sub})
}

/// The state in pages of the default size (2), the later pages with the
/// first page's cursor and position, the last page going live; then a
/// live change.
fn state_pages(p: Protocol) -> Scenario {
    let ch = format!("mc:pages-{p:?}");
    let s = connect(keys(Scenario::new(format!("map state pages {p:?}")).open("a", p), &ch, 5), "a", "tom");
    let save = [("/subscribe/cursor", "cursor"), ("/subscribe/offset", "offset"), ("/subscribe/epoch", "epoch")];
    let next = json!({"cursor": "$cursor", "offset": "$offset", "epoch": "$epoch"});
    s.send("a", map_sub(2, &ch, json!({})))
        .recv_save("a", &save)
        .send("a", map_sub(3, &ch, next.clone()))
        .recv_save("a", &save[..1])
        .call("a", map_sub(4, &ch, next))
        .api("map_publish", json!({"channel": ch, "key": "k6", "data": {"i": 6}}))
        .recv("a")
        .quiet("a")
}

/// `limit` below `min_page_size` and above `max_page_size` (2 and 3).
fn page_limits(p: Protocol) -> Scenario {
    let ch = format!("mc:limits-{p:?}");
    let s = connect(keys(Scenario::new(format!("map page limits {p:?}")).open("a", p), &ch, 5), "a", "tom");
    let s = s.call("a", map_sub(2, &ch, json!({"limit": 1})));
    let s = s.open("b", p);
    connect(s, "b", "tom").call("b", map_sub(2, &ch, json!({"limit": 100}))).quiet("a")
}

/// Changes made between the first state page and the last are caught up
/// from the stream when the last page goes live.
fn stream_catch_up(p: Protocol) -> Scenario {
    let ch = format!("mc:catchup-{p:?}");
    let s = connect(keys(Scenario::new(format!("map stream catch-up {p:?}")).open("a", p), &ch, 3), "a", "tom");
    let save = [("/subscribe/cursor", "cursor"), ("/subscribe/offset", "offset"), ("/subscribe/epoch", "epoch")];
    s.send("a", map_sub(2, &ch, json!({})))
        .recv_save("a", &save)
        .api("map_publish", json!({"channel": ch, "key": "k1", "data": {"changed": true}}))
        .api("map_publish", json!({"channel": ch, "key": "k9", "data": {"new": true}}))
        .call("a", map_sub(3, &ch, json!({"cursor": "$cursor", "offset": "$offset", "epoch": "$epoch"})))
        .quiet("a")
}

/// Client key writes and removals by a subscriber (allowed), a removal of
/// a missing key, and writes by a client that is not subscribed (refused).
fn client_changes(p: Protocol) -> Scenario {
    let ch = format!("mc:changes-{p:?}");
    let s = connect(Scenario::new(format!("map client changes {p:?}")).open("a", p), "a", "tom");
    let s = s
        .call("a", map_sub(2, &ch, json!({})))
        .send("a", json!({"id": 3, "publish": {"channel": ch, "type": 1, "key": "x", "data": {"v": 1}}}))
        .recv_n("a", 2)
        .send("a", json!({"id": 4, "publish": {"channel": ch, "type": 1, "key": "x", "removed": true}}))
        .recv_n("a", 2)
        .call("a", json!({"id": 5, "publish": {"channel": ch, "type": 1, "key": "missing", "removed": true}}))
        .open("b", p);
    connect(s, "b", "ann")
        .call("b", json!({"id": 2, "publish": {"channel": ch, "type": 1, "key": "y", "data": {"v": 2}}}))
        .call("b", json!({"id": 3, "publish": {"channel": ch, "type": 1, "key": "x", "removed": true}}))
        .quiet("a")
}

/// A namespace that allows no client changes: 103 even to subscribers.
fn refused_changes(p: Protocol) -> Scenario {
    let ch = format!("ro:refused-{p:?}");
    let s = connect(Scenario::new(format!("map refused changes {p:?}")).open("a", p), "a", "tom");
    s.call("a", map_sub(2, &ch, json!({})))
        .call("a", json!({"id": 3, "publish": {"channel": ch, "type": 1, "key": "x", "data": {"v": 1}}}))
        .call("a", json!({"id": 4, "publish": {"channel": ch, "type": 1, "key": "x", "removed": true}}))
        .quiet("a")
}

/// A map request on a stream channel and a stream request on a map channel.
fn wrong_types(p: Protocol) -> Scenario {
    let s = connect(Scenario::new(format!("map wrong types {p:?}")).open("a", p), "a", "tom");
    let (map, stream) = (format!("mc:types-{p:?}"), format!("st:types-{p:?}"));
    s.call("a", map_sub(2, &stream, json!({})))
        .call("a", json!({"id": 3, "subscribe": {"channel": map}}))
        .call("a", json!({"id": 4, "publish": {"channel": stream, "type": 1, "key": "x", "data": {"v": 1}}}))
        .call("a", json!({"id": 5, "publish": {"channel": map, "data": {"v": 1}}}))
        .quiet("a")
}

/// A reconnecting subscriber: recovery with its position (live phase and
/// stream phase), with a wrong epoch (112), and with more changes missed
/// than `live_transition_max_publication_limit` (112).
fn recovery(case: &str, p: Protocol) -> Scenario {
    // `ml` lets a subscriber catch up on one change only.
    let ns = if case == "too far behind" { "ml" } else { "mc" };
    let ch = format!("{ns}:recovery-{}-{p:?}", case.replace(' ', "-"));
    let s = Scenario::new(format!("map recovery {case} {p:?}")).open("a", p);
    let s = connect(keys(s, &ch, 2), "a", "tom")
        .send("a", map_sub(2, &ch, json!({})))
        .recv_save("a", &[("/subscribe/offset", "offset"), ("/subscribe/epoch", "epoch")])
        .drop_conn("a")
        .api("map_publish", json!({"channel": ch, "key": "k1", "data": {"again": true}}))
        .api("map_remove", json!({"channel": ch, "key": "k2"}))
        .open("b", p);
    let (phase, epoch) = match case {
        "live phase" => (0, json!("$epoch")),
        "stream phase" => (1, json!("$epoch")),
        _ => (0, json!("wrong")),
    };
    let sub = json!({"recover": true, "offset": "$offset", "epoch": epoch, "phase": phase});
    connect(s, "b", "tom")
        .call("b", map_sub(2, &ch, sub))
        .api("map_publish", json!({"channel": ch, "key": "k3", "data": {"live": true}}))
        .recv("b")
        .quiet("b")
}

/// An ephemeral map: no stream, so no offsets; a client write.
fn ephemeral(p: Protocol) -> Scenario {
    let ch = format!("me:eph-{p:?}");
    let s = connect(keys(Scenario::new(format!("map ephemeral {p:?}")).open("a", p), &ch, 1), "a", "tom");
    s.call("a", map_sub(2, &ch, json!({})))
        .send("a", json!({"id": 3, "publish": {"channel": ch, "type": 1, "key": "x", "data": {"v": 1}}}))
        .recv_n("a", 2)
        .quiet("a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_client_protocol() {
    let map = |name: &str, map: Value| json!({"name": name, "subscription_type": "map", "allow_subscribe_for_client": true, "map": map});
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "namespaces": [
            map("mc", json!({"mode": "persistent", "allow_publish_for_subscriber": true,
                             "allow_remove_for_subscriber": true,
                             "default_page_size": 2, "min_page_size": 2, "max_page_size": 3})),
            map("ro", json!({"mode": "persistent"})),
            map("ml", json!({"mode": "persistent", "live_transition_max_publication_limit": 1})),
            map("me", json!({"mode": "ephemeral", "key_ttl": "60s", "allow_publish_for_client": true})),
            {"name": "st", "allow_subscribe_for_client": true, "allow_publish_for_client": true},
        ]
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(state_pages(p));
        scenarios.push(page_limits(p));
        scenarios.push(stream_catch_up(p));
        scenarios.push(client_changes(p));
        scenarios.push(refused_changes(p));
        scenarios.push(wrong_types(p));
        for case in ["live phase", "stream phase", "wrong epoch", "too far behind"] {
            scenarios.push(recovery(case, p));
        }
        scenarios.push(ephemeral(p));
    }
    run_group("map_client", config, scenarios).await;
}
