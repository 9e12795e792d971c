//! Presence maps' raw wire against Centrifugo v6.9.1 (issue #20): the
//! `map_clients` (`type: 2`) and `map_users` (`type: 3`) channels a
//! namespace's prefixes name, their state pages and live changes as
//! clients of the room subscribe, unsubscribe and disconnect; regular maps
//! with `client_key` and `remove_client_on_unsubscribe`; and what is
//! refused (the wrong subscription type, client writes into a presence map).

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::{Node, Scenario};
use super::{token, API_KEY};
use crate::common::{hs256_token, Protocol, SECRET};
use serde_json::{json, Value};

fn connect(s: Scenario, conn: &str, user: &str) -> Scenario {
    s.call(conn, json!({"id": 1, "connect": {"token": token(user)}}))
}

/// A connection token with connection info.
fn connect_with_info(s: Scenario, conn: &str, user: &str) -> Scenario {
    let token = hs256_token(SECRET, user, Some(3600), json!({"info": {"name": user}}));
    s.call(conn, json!({"id": 1, "connect": {"token": token}}))
}

fn map_sub(id: u32, ch: &str, kind: i32) -> Value {
    json!({"id": id, "subscribe": {"channel": ch, "type": kind, "phase": 2}})
}

/// An observer of `pc:<room>`; a member (with connection info) joins the
/// room on node B, is pushed to the observer as a key with its info, and
/// is removed when it unsubscribes; it joins again and is removed when it
/// disconnects. A later observer sees the member in the state.
fn clients(p: Protocol) -> Scenario {
    let room = format!("room:clients-{p:?}");
    let map = format!("pc:{room}");
    let s = Scenario::new(format!("map presence clients {p:?}")).open("obs", p);
    let s = connect(s, "obs", "watcher").call("obs", map_sub(2, &map, 2)).open_on("m", p, Node::B);
    let s = connect_with_info(s, "m", "tom")
        .call("m", json!({"id": 2, "subscribe": {"channel": room}}))
        .recv("obs")
        .call("m", json!({"id": 3, "unsubscribe": {"channel": room}}))
        .recv("obs")
        .call("m", json!({"id": 4, "subscribe": {"channel": room}}))
        .recv("obs")
        .open("late", p);
    connect(s, "late", "late").call("late", map_sub(2, &map, 2)).drop_conn("m").recv("obs").quiet("late").quiet("obs")
}

/// An observer of `pu:<room>`: a user's first connection adds the user
/// key (no info); a second connection of the user adds nothing; leaving
/// does not remove it (it expires after `key_ttl`). A later observer sees
/// the user in the state; anonymous members are left out.
fn users(p: Protocol) -> Scenario {
    let room = format!("room:users-{p:?}");
    let map = format!("pu:{room}");
    let s = Scenario::new(format!("map presence users {p:?}")).open("obs", p);
    let s = connect(s, "obs", "watcher").call("obs", map_sub(2, &map, 3)).open_on("m1", p, Node::B);
    let s = connect_with_info(s, "m1", "tom")
        .call("m1", json!({"id": 2, "subscribe": {"channel": room}}))
        .recv("obs")
        .open("m2", p);
    let s = connect(s, "m2", "tom")
        .call("m2", json!({"id": 2, "subscribe": {"channel": room}}))
        .quiet("obs")
        .call("m1", json!({"id": 3, "unsubscribe": {"channel": room}}))
        .drop_conn("m2")
        .quiet("obs")
        .open("anon", p);
    let s =
        s.call("anon", json!({"id": 1, "connect": {}})).call("anon", json!({"id": 2, "subscribe": {"channel": room}}));
    connect(s.quiet("obs").open("late", p), "late", "late").call("late", map_sub(2, &map, 3)).quiet("obs")
}

/// Requests refused on presence maps: the wrong type (stream, map, the
/// other presence type), a client publish and removal into one; a presence
/// type on a regular map.
fn refusals(p: Protocol) -> Scenario {
    let pc = format!("pc:room:refused-{p:?}");
    let pu = format!("pu:room:refused-{p:?}");
    let mk = format!("mk:refused-{p:?}");
    let s = connect(Scenario::new(format!("map presence refusals {p:?}")).open("a", p), "a", "tom");
    s.call("a", json!({"id": 2, "subscribe": {"channel": pc}}))
        .call("a", map_sub(3, &pc, 1))
        .call("a", map_sub(4, &pc, 3))
        .call("a", map_sub(5, &pu, 2))
        .call("a", map_sub(6, &mk, 2))
        .call("a", map_sub(7, &pc, 2))
        .call("a", json!({"id": 8, "publish": {"channel": pc, "type": 1, "key": "x", "data": {"v": 1}}}))
        .call("a", json!({"id": 9, "publish": {"channel": pc, "type": 1, "key": "x", "removed": true}}))
        .call("a", json!({"id": 10, "publish": {"channel": pc, "data": {"v": 1}}}))
        .quiet("a")
}

/// A regular map with `client_key: client_id` and
/// `remove_client_on_unsubscribe`: a write under any key lands under the
/// writer's client id; unsubscribing and disconnecting remove it.
fn client_key(p: Protocol) -> Scenario {
    let ch = format!("mk:board-{p:?}");
    let s = Scenario::new(format!("map presence client key {p:?}")).open("obs", p);
    let s = connect(s, "obs", "watcher").call("obs", map_sub(2, &ch, 1)).open_on("w", p, Node::B);
    let write =
        |id: u32| json!({"id": id, "publish": {"channel": ch, "type": 1, "key": "anything", "data": {"at": id}}});
    let s = connect_with_info(s, "w", "tom")
        .call("w", map_sub(2, &ch, 1))
        .send("w", write(3))
        .recv_n("w", 2)
        .recv("obs")
        .call("w", json!({"id": 4, "unsubscribe": {"channel": ch}}))
        .recv("obs")
        .drop_conn("w")
        .open_on("w2", p, Node::B);
    connect_with_info(s, "w2", "tom")
        .call("w2", map_sub(2, &ch, 1))
        .send("w2", write(3))
        .recv_n("w2", 2)
        .recv("obs")
        .drop_conn("w2")
        .recv("obs")
        .quiet("obs")
}

/// `client_key: user_id`: a write lands under the user id; an anonymous
/// writer is refused.
fn user_key(p: Protocol) -> Scenario {
    let ch = format!("mu:board-{p:?}");
    let s = connect(Scenario::new(format!("map presence user key {p:?}")).open("w", p), "w", "tom");
    s.call("w", map_sub(2, &ch, 1))
        .send("w", json!({"id": 3, "publish": {"channel": ch, "type": 1, "key": "anything", "data": {"v": 1}}}))
        .recv_n("w", 2)
        .send("w", json!({"id": 4, "publish": {"channel": ch, "type": 1, "key": "other", "removed": true}}))
        .recv_n("w", 2)
        .quiet("w")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_presence_protocol() {
    let map = |name: &str, kind: &str, map: Value| json!({"name": name, "subscription_type": kind, "allow_subscribe_for_client": true, "map": map});
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "allow_anonymous_connect_without_token": true,
        "namespaces": [
            {"name": "room", "allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
             "map_clients_presence_channel_prefix": "pc:", "map_users_presence_channel_prefix": "pu:"},
            map("pc", "map_clients", json!({"mode": "ephemeral", "key_ttl": "60s"})),
            map("pu", "map_users", json!({"mode": "ephemeral", "key_ttl": "60s"})),
            map("mk", "map", json!({"mode": "ephemeral", "key_ttl": "60s", "client_key": "client_id",
                                    "remove_client_on_unsubscribe": true, "allow_publish_for_subscriber": true,
                                    "allow_remove_for_subscriber": true})),
            map("mu", "map", json!({"mode": "ephemeral", "key_ttl": "60s", "client_key": "user_id",
                                    "allow_publish_for_subscriber": true, "allow_remove_for_subscriber": true})),
        ]
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        scenarios.push(clients(p));
        scenarios.push(users(p));
        scenarios.push(refusals(p));
        scenarios.push(client_key(p));
        scenarios.push(user_key(p));
    }
    run_group("map_presence", config, scenarios).await;
}
