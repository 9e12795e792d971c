//! Presence across gateways: `presence` / `presence_stats` (client command
//! and server API) gather the subscribers of every live gateway; join and
//! leave pushes cross gateways; a gateway killed with SIGKILL takes its
//! clients out of presence at once (it no longer answers the survey).
//!
//! The main cases run on NATS with two gateways (clients spread over both)
//! and on the embedded broker (one gateway). Every wait is bounded; the
//! only fixed waits are `expect_silence`, whose point is to wait.

use natsgate_test_support as common;

use common::pair::{api_result, Backend, Pair};
use common::{eventually, hs256_token, Gateway, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const API_KEY: &str = "presence-test-key";

/// `room`: presence and join/leave on request. `forced`: join/leave pushed
/// to every subscriber. `quiet`: presence without join/leave.
const NAMESPACES: &str = r#"[
  {"name":"room","presence":true,"join_leave":true,"allow_subscribe_for_client":true,"allow_presence_for_subscriber":true},
  {"name":"forced","presence":true,"join_leave":true,"force_push_join_leave":true,"allow_subscribe_for_client":true,"allow_presence_for_subscriber":true},
  {"name":"quiet","presence":true,"allow_subscribe_for_client":true,"allow_presence_for_subscriber":true}
]"#;

/// Two gateways (or one on the embedded broker) and an HTTP client for their API.
struct Env {
    pair: Pair,
    http: reqwest::Client,
}

impl std::ops::Deref for Env {
    type Target = Pair;
    fn deref(&self) -> &Pair {
        &self.pair
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut Pair {
        &mut self.pair
    }
}

impl Env {
    fn start(backend: Backend) -> Env {
        let pair = Pair::start(backend, |name| {
            Gateway::builder().permissive().envs(&[
                ("NATSGATE_NAME", name),
                ("NATSGATE_API_KEY", API_KEY),
                ("NATSGATE_NAMESPACES", NAMESPACES),
            ])
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client");
        Env { pair, http }
    }

    /// An API call on `gw` that must succeed; its `result`.
    async fn api(&self, gw: &Gateway, method: &str, params: Value) -> Value {
        api_result(&self.http, gw, API_KEY, method, &params).await
    }

    /// API presence on `gw`: client id -> user.
    async fn presence(&self, gw: &Gateway, channel: &str) -> BTreeMap<String, String> {
        let result = self.api(gw, "presence", json!({ "channel": channel })).await;
        users_of(&result["presence"], &result)
    }

    /// API presence_stats on `gw`: (num_clients, num_users).
    async fn stats(&self, gw: &Gateway, channel: &str) -> (u64, u64) {
        let result = self.api(gw, "presence_stats", json!({ "channel": channel })).await;
        counts(&result)
    }
}

/// A connected client of `user` and its client id. Its token carries
/// `info` `{"name": user}`, which presence and join pushes must show.
async fn connect(gw: &Gateway, user: &str, protocol: Protocol) -> (WsClient, String) {
    let mut client = WsClient::connect(&gw.ws_url(), protocol).await;
    let token = hs256_token(SECRET, user, Some(3600), json!({"info": {"name": user}}));
    let result = client.connect_token(&token).await;
    let id = result["client"].as_str().unwrap_or_else(|| panic!("no client id: {result}")).to_string();
    (client, id)
}

/// Subscribes, asking for join/leave pushes when `join_leave`.
async fn subscribe(client: &mut WsClient, channel: &str, join_leave: bool) {
    let reply = client.request(json!({"subscribe": {"channel": channel, "join_leave": join_leave}})).await;
    assert!(reply.get("subscribe").is_some(), "subscribe to {channel} failed: {reply}");
}

/// A presence map (client id -> ClientInfo) as client id -> user, checking
/// each entry names its own client and carries the token's info.
fn users_of(map: &Value, whole: &Value) -> BTreeMap<String, String> {
    let map = map.as_object().unwrap_or_else(|| panic!("no presence map in {whole}"));
    map.iter()
        .map(|(id, info)| {
            assert_eq!(info["client"], json!(id), "presence entry keyed by its client id: {whole}");
            let user = info["user"].as_str().unwrap_or_default().to_string();
            assert_eq!(info["conn_info"], json!({ "name": user }), "conn_info from the token: {whole}");
            (id.clone(), user)
        })
        .collect()
}

fn counts(stats: &Value) -> (u64, u64) {
    (stats["num_clients"].as_u64().unwrap_or(0), stats["num_users"].as_u64().unwrap_or(0))
}

/// Client `presence` on `channel`: client id -> user.
async fn client_presence(client: &mut WsClient, channel: &str) -> BTreeMap<String, String> {
    let reply = client.request(json!({"presence": {"channel": channel}})).await;
    users_of(&reply["presence"]["presence"], &reply)
}

async fn client_stats(client: &mut WsClient, channel: &str) -> (u64, u64) {
    let reply = client.request(json!({"presence_stats": {"channel": channel}})).await;
    assert!(reply.get("presence_stats").is_some(), "{reply}");
    counts(&reply["presence_stats"])
}

fn expect(entries: &[(&String, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(id, user)| ((*id).clone(), user.to_string())).collect()
}

// ------------------------------------------------------------ presence

async fn presence_across_gateways(env: Env) {
    let ch = "room:presence";
    // alice (two connections) on A, bob on B (Protobuf), carol on B.
    let (mut alice1, a1) = connect(&env.a, "alice", Protocol::Json).await;
    let (mut alice2, a2) = connect(&env.a, "alice", Protocol::Json).await;
    let (mut bob, b) = connect(env.b(), "bob", Protocol::Protobuf).await;
    let (mut carol, c) = connect(env.b(), "carol", Protocol::Json).await;
    // dave is connected but not subscribed: not present.
    let (_dave, _) = connect(env.b(), "dave", Protocol::Json).await;
    for client in [&mut alice1, &mut alice2, &mut bob, &mut carol] {
        subscribe(client, ch, false).await;
    }
    let all = expect(&[(&a1, "alice"), (&a2, "alice"), (&b, "bob"), (&c, "carol")]);

    // The same answer from every gateway, by API and by client command.
    for gw in [&env.a, env.b()] {
        assert_eq!(env.presence(gw, ch).await, all, "API presence on {}", gw.port());
        assert_eq!(env.stats(gw, ch).await, (4, 3), "API presence_stats on {}", gw.port());
    }
    assert_eq!(client_presence(&mut alice1, ch).await, all, "client presence on A");
    assert_eq!(client_presence(&mut bob, ch).await, all, "client presence on B (Protobuf)");
    assert_eq!(client_stats(&mut carol, ch).await, (4, 3), "client presence_stats on B");
    assert_eq!(client_stats(&mut bob, ch).await, (4, 3), "client presence_stats on B (Protobuf)");

    // Leaving shows at once, wherever asked.
    let reply = bob.request(json!({"unsubscribe": {"channel": ch}})).await;
    assert!(reply.get("unsubscribe").is_some(), "{reply}");
    alice2.close(1000, "bye").await;
    let left = expect(&[(&a1, "alice"), (&c, "carol")]);
    let now = eventually("alice2's disconnect reflected in presence", TIMEOUT, || async {
        let p = env.presence(env.b(), ch).await;
        (p == left).then_some(p)
    })
    .await;
    assert_eq!(now, left);
    assert_eq!(env.stats(&env.a, ch).await, (2, 2));
    assert_eq!(client_presence(&mut carol, ch).await, left);
    // A channel nobody is in.
    assert_eq!(env.presence(&env.a, "room:empty").await, BTreeMap::new());
    assert_eq!(env.stats(env.b(), "room:empty").await, (0, 0));
}

#[tokio::test]
async fn presence_across_two_gateways_on_nats() {
    presence_across_gateways(Env::start(Backend::Nats)).await;
}

#[tokio::test]
async fn presence_on_embedded_broker() {
    presence_across_gateways(Env::start(Backend::Embedded)).await;
}

// ---------------------------------------------------------- join/leave

/// The next join or leave push on `channel`: ("join" | "leave", user, client).
async fn next_join_leave(client: &mut WsClient, channel: &str) -> (String, String, String) {
    let message = client
        .recv_until(
            |m| {
                m["push"]["channel"] == json!(channel)
                    && (m["push"].get("join").is_some() || m["push"].get("leave").is_some())
            },
            TIMEOUT,
        )
        .await;
    let push = &message["push"];
    let (kind, body) = if push.get("join").is_some() { ("join", &push["join"]) } else { ("leave", &push["leave"]) };
    let info = &body["info"];
    let user = info["user"].as_str().unwrap_or_default().to_string();
    assert_eq!(info["conn_info"], json!({ "name": user }), "join/leave info carries conn_info: {message}");
    (kind.to_string(), user, info["client"].as_str().unwrap_or_default().to_string())
}

fn jl(kind: &str, user: &str, client: &str) -> (String, String, String) {
    (kind.to_string(), user.to_string(), client.to_string())
}

async fn join_leave_across_gateways(env: Env) {
    let ch = "room:joins";
    let (mut alice, _) = connect(&env.a, "alice", Protocol::Json).await;
    subscribe(&mut alice, ch, true).await;
    // A subscriber that did not ask for join/leave gets none.
    let (mut watcher, _) = connect(&env.a, "watcher", Protocol::Json).await;
    subscribe(&mut watcher, ch, false).await;
    // alice may see her own join, and the watcher's: skip to bob's.
    let (mut bob, b) = connect(env.b(), "bob", Protocol::Protobuf).await;
    subscribe(&mut bob, ch, true).await;
    let bob_join = alice.recv_until(|m| m["push"]["join"]["info"]["user"] == json!("bob"), TIMEOUT).await;
    assert_eq!(bob_join["push"]["join"]["info"]["client"], json!(b), "{bob_join}");
    assert_eq!(bob_join["push"]["join"]["info"]["conn_info"], json!({"name": "bob"}), "{bob_join}");

    // carol joins on B: alice on A and bob on B both hear it.
    let (mut carol, c) = connect(env.b(), "carol", Protocol::Json).await;
    subscribe(&mut carol, ch, false).await;
    assert_eq!(next_join_leave(&mut alice, ch).await, jl("join", "carol", &c));
    // bob hears his own join first (as in Centrifugo), then carol's.
    let own = next_join_leave(&mut bob, ch).await;
    assert_eq!(own, jl("join", "bob", &b), "bob's own join");
    assert_eq!(next_join_leave(&mut bob, ch).await, jl("join", "carol", &c), "bob (Protobuf, on B)");
    // carol unsubscribes, then bob disconnects: both leaves reach alice.
    let reply = carol.request(json!({"unsubscribe": {"channel": ch}})).await;
    assert!(reply.get("unsubscribe").is_some(), "{reply}");
    assert_eq!(next_join_leave(&mut alice, ch).await, jl("leave", "carol", &c));
    bob.close(1000, "bye").await;
    assert_eq!(next_join_leave(&mut alice, ch).await, jl("leave", "bob", &b));

    // The watcher saw no join or leave: its next message on the channel is
    // a publication made after all of the above.
    env.api(&env.a, "publish", json!({"channel": ch, "data": {"after": "joins"}})).await;
    let next = watcher.recv_until(|m| m["push"]["channel"] == json!(ch), TIMEOUT).await;
    assert_eq!(
        next["push"]["pub"]["data"],
        json!({"after": "joins"}),
        "no join/leave for a subscriber that did not ask: {next}"
    );

    // force_push_join_leave: pushed without asking.
    let forced = "forced:joins";
    let (mut quiet_alice, _) = connect(&env.a, "alice", Protocol::Json).await;
    subscribe(&mut quiet_alice, forced, false).await;
    let (mut dave, d) = connect(env.b(), "dave", Protocol::Json).await;
    subscribe(&mut dave, forced, false).await;
    let dave_join = quiet_alice.recv_until(|m| m["push"]["join"]["info"]["user"] == json!("dave"), TIMEOUT).await;
    assert_eq!(dave_join["push"]["join"]["info"]["client"], json!(d), "{dave_join}");
    dave.close(1000, "bye").await;
    assert_eq!(next_join_leave(&mut quiet_alice, forced).await, jl("leave", "dave", &d));

    // A namespace without join_leave: asking gets nothing.
    let silent = "quiet:joins";
    let (mut asker, _) = connect(&env.a, "asker", Protocol::Json).await;
    subscribe(&mut asker, silent, true).await;
    let (mut eve, _) = connect(env.b(), "eve", Protocol::Json).await;
    subscribe(&mut eve, silent, true).await;
    env.api(&env.a, "publish", json!({"channel": silent, "data": {"after": "eve"}})).await;
    let next = asker.recv_until(|m| m["push"]["channel"] == json!(silent), TIMEOUT).await;
    assert_eq!(next["push"]["pub"]["data"], json!({"after": "eve"}), "no join/leave without join_leave: {next}");
}

#[tokio::test]
async fn join_leave_across_two_gateways_on_nats() {
    join_leave_across_gateways(Env::start(Backend::Nats)).await;
}

#[tokio::test]
async fn join_leave_on_embedded_broker() {
    join_leave_across_gateways(Env::start(Backend::Embedded)).await;
}

// ----------------------------------------------------------- SIGKILL

/// B is killed with SIGKILL: its clients leave presence at once, as seen
/// from A through the API and through a client command; A's stay.
#[tokio::test]
async fn killed_gateway_disappears_from_presence() {
    let mut env = Env::start(Backend::Nats);
    let ch = "room:kill";
    let (mut alice, a) = connect(&env.a, "alice", Protocol::Json).await;
    subscribe(&mut alice, ch, false).await;
    let mut on_b = Vec::new();
    for user in ["bob", "carol", "bob"] {
        let (mut client, _) = connect(env.b(), user, Protocol::Json).await;
        subscribe(&mut client, ch, false).await;
        on_b.push(client);
    }
    assert_eq!(env.stats(&env.a, ch).await, (4, 3), "before the kill");
    assert_eq!(client_stats(&mut alice, ch).await, (4, 3), "before the kill");

    let killed = Instant::now();
    env.b_gw.as_mut().expect("gateway B").kill();
    // The next survey gathers only live gateways: within one survey round
    // (about 100 ms of quiet), bounded here by 2 s.
    let only_alice = expect(&[(&a, "alice")]);
    let seen = eventually("B's clients gone from presence after SIGKILL", Duration::from_secs(2), || async {
        let p = env.presence(&env.a, ch).await;
        (p == only_alice).then_some(p)
    })
    .await;
    assert_eq!(seen, only_alice);
    assert!(killed.elapsed() < Duration::from_secs(2), "took {:?}", killed.elapsed());
    assert_eq!(env.stats(&env.a, ch).await, (1, 1));
    assert_eq!(client_presence(&mut alice, ch).await, only_alice);
    assert_eq!(client_stats(&mut alice, ch).await, (1, 1));
    // A's clients are unaffected: publications still reach alice.
    env.api(&env.a, "publish", json!({"channel": ch, "data": {"after": "kill"}})).await;
    let p = alice.recv_publication(ch, TIMEOUT).await;
    assert_eq!(p["data"], json!({"after": "kill"}));
    drop(on_b);
}

// --------------------------------------------------- subs claim info

/// A connection token's `subs` entry subscribes the client, and its `info`
/// (raw JSON) or `b64info` is the client's channel info (`chan_info`) there,
/// as Centrifugo's connect-token `subs` options set it: presence shows it
/// from either gateway.
#[tokio::test]
async fn subs_claim_info_is_the_channel_info() {
    let env = Env::start(Backend::Nats);
    let raw = "room:subs-raw";
    let b64 = "quiet:subs-b64";
    let subs = json!({
        raw: {"info": {"role": "moderator"}, "data": {"welcome": true}},
        // {"role":"guest"} in base64: the base64 form is decoded.
        b64: {"b64info": "eyJyb2xlIjoiZ3Vlc3QifQ=="},
    });
    let mut client = WsClient::connect(&env.a.ws_url(), Protocol::Json).await;
    let token = hs256_token(SECRET, "erin", Some(3600), json!({"info": {"name": "erin"}, "subs": subs}));
    let result = client.connect_token(&token).await;
    let id = result["client"].as_str().unwrap_or_else(|| panic!("no client id: {result}")).to_string();
    assert_eq!(result["subs"][raw]["data"], json!({"welcome": true}), "subs data in the connect reply: {result}");

    for (channel, role) in [(raw, "moderator"), (b64, "guest")] {
        for gw in [&env.a, env.b()] {
            let presence = env.api(gw, "presence", json!({ "channel": channel })).await;
            let entry = &presence["presence"][&id];
            assert_eq!(entry["user"], json!("erin"), "{channel} on {}: {presence}", gw.port());
            assert_eq!(entry["conn_info"], json!({"name": "erin"}), "{channel}: {presence}");
            assert_eq!(entry["chan_info"], json!({ "role": role }), "{channel} chan_info: {presence}");
        }
    }
    // A token `channels` entry has no channel info.
    let mut plain = WsClient::connect(&env.a.ws_url(), Protocol::Json).await;
    let token = hs256_token(SECRET, "fay", Some(3600), json!({"channels": [raw]}));
    let plain_id = plain.connect_token(&token).await["client"].as_str().unwrap_or_default().to_string();
    let presence = env.api(env.b(), "presence", json!({ "channel": raw })).await;
    assert!(presence["presence"][&plain_id].is_object(), "{presence}");
    assert!(presence["presence"][&plain_id].get("chan_info").is_none(), "no chan_info: {presence}");
}
