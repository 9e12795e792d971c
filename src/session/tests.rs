//! In-process tests of the session's ordering and recovery-buffering rules:
//! a real session, hub and in-memory broker, frames in and the outbox read
//! back, no sockets.

use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::Session;
use crate::auth::TokenVerifier;
use crate::broker::memory::MemoryBroker;
use crate::broker::{HistoryConfig, Message, Query};
use crate::config::Config;
use crate::context::AppContext;
use crate::outbox::Outbox;
use crate::protocol::Protocol;

const SECRET: &str = "session-tests-secret";

/// An application context over the in-memory broker: clients may subscribe and publish
/// anywhere; namespace `room` pushes join/leave, `feed` keeps history with
/// recovery, `pos` keeps history with positioning only.
fn gateway() -> Arc<AppContext> {
    let namespaces = json!([
        {"name": "room", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
         "presence": true, "join_leave": true, "force_push_join_leave": true},
        {"name": "feed", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
         "history_size": 100, "history_ttl": "60s", "force_recovery": true},
        {"name": "pos", "allow_subscribe_for_client": true, "allow_publish_for_client": true,
         "history_size": 100, "history_ttl": "60s", "force_positioning": true},
    ]);
    let vars = [
        ("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET.to_string()),
        ("NATSGATE_ALLOW_SUBSCRIBE_FOR_CLIENT", "true".into()),
        ("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true".into()),
        ("NATSGATE_NAMESPACES", namespaces.to_string()),
    ];
    let config = Config::from_iter(vars.map(|(k, v)| (k.to_string(), v))).expect("valid test config");
    let config = Arc::new(config);
    let rules = config.rules.clone();
    let history = HistoryConfig::from_rules(&rules, config.history_meta_ttl);
    let broker = Arc::new(MemoryBroker::new(history));
    let verifier = TokenVerifier::from_config(&config).expect("valid keys");
    AppContext::new(config, broker, verifier, rules)
}

fn token(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token encodes")
}

/// One JSON client: its session and what it has received, in order.
struct Client {
    session: Session,
    outbox: Arc<Outbox>,
    received: Vec<Value>,
}

impl Client {
    fn new(gateway: &Arc<AppContext>) -> Client {
        let outbox = Arc::new(Outbox::new(1 << 20));
        Client { session: Session::new(gateway.clone(), Protocol::Json, outbox.clone()), outbox, received: Vec::new() }
    }

    /// Sends one frame made of `commands` and reads what is queued.
    async fn send(&mut self, commands: &[Value]) {
        let frame: Vec<String> = commands.iter().map(Value::to_string).collect();
        self.session.handle_frame(frame.join("\n").as_bytes()).await.expect("no disconnect");
        self.read_queued().await;
    }

    /// Moves everything queued so far into `received`.
    async fn read_queued(&mut self) {
        while self.outbox.queued_bytes() > 0 {
            self.read_next().await;
        }
    }

    /// Waits for the next batch the writer would get and parses it.
    async fn read_next(&mut self) {
        let mut batch = VecDeque::new();
        assert_eq!(self.outbox.next(&mut batch).await, None, "the client is not closed");
        for message in batch {
            for line in message.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                self.received.push(serde_json::from_slice(line).expect("replies are JSON"));
            }
        }
    }

    /// Waits (bounded) until `done` holds for what was received.
    async fn wait_for(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done(&self.received) {
            if tokio::time::timeout_at(deadline, self.read_next()).await.is_err() {
                panic!("timed out waiting for {what}: {:?}", self.received);
            }
        }
    }

    /// Index of the reply with `id`.
    fn reply(&self, id: u64) -> usize {
        self.received.iter().position(|m| m["id"] == id).unwrap_or_else(|| panic!("no reply {id}: {:?}", self.received))
    }

    /// Indexes of the pushes of `channel` that have `kind` (pub, join, leave).
    fn pushes(&self, channel: &str, kind: &str) -> Vec<usize> {
        let is = |m: &Value| m["push"]["channel"] == channel && !m["push"][kind].is_null();
        self.received.iter().enumerate().filter(|(_, m)| is(m)).map(|(i, _)| i).collect()
    }
}

async fn connected(gateway: &Arc<AppContext>, claims: Value) -> Client {
    let mut client = Client::new(gateway);
    client.send(&[json!({"id": 1, "connect": {"token": token(claims)}})]).await;
    assert!(client.received[0]["connect"].is_object(), "{:?}", client.received);
    client.received.clear();
    client
}

fn subscribe(id: u64, channel: &str) -> Value {
    json!({"id": id, "subscribe": {"channel": channel}})
}

fn publish(id: u64, channel: &str, data: Value) -> Value {
    json!({"id": id, "publish": {"channel": channel, "data": data}})
}

/// A publication that reaches the channel while the subscribe is being
/// handled (here: published by the next command of the same frame, which
/// the in-memory broker delivers at once) comes after the subscribe reply.
#[tokio::test]
async fn publication_in_the_subscribe_frame_follows_the_reply() {
    let gateway = gateway();
    let mut client = connected(&gateway, json!({"sub": "ann"})).await;
    client.send(&[subscribe(2, "news"), publish(3, "news", json!({"n": 1}))]).await;
    let pubs = client.pushes("news", "pub");
    assert_eq!(pubs.len(), 1, "{:?}", client.received);
    assert!(client.reply(2) < pubs[0], "a push before its subscribe reply: {:?}", client.received);
}

/// The same for a server-side subscription from the connection token: its
/// publications come after the connect reply that lists it.
#[tokio::test]
async fn publication_in_the_connect_frame_follows_the_connect_reply() {
    let gateway = gateway();
    let mut client = Client::new(&gateway);
    let connect = json!({"id": 1, "connect": {"token": token(json!({"sub": "ann", "channels": ["alerts"]}))}});
    client.send(&[connect, publish(2, "alerts", json!({"n": 1}))]).await;
    let pubs = client.pushes("alerts", "pub");
    assert_eq!(pubs.len(), 1, "{:?}", client.received);
    assert!(client.reply(1) < pubs[0], "a push before the connect reply: {:?}", client.received);
}

/// A client's own join is published while its subscribe is handled (in the
/// background, so on another worker thread it can arrive at any moment): it
/// comes after the subscribe reply. The commands after the subscribe give
/// the join time to arrive before the frame's replies are queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_join_follows_the_subscribe_reply() {
    let gateway = gateway();
    let mut client = connected(&gateway, json!({"sub": "ann"})).await;
    let mut frame = vec![subscribe(2, "room:a")];
    for id in 3..2000 {
        frame.push(json!({"id": id, "history": {"channel": "feed:none"}}));
    }
    client.send(&frame).await;
    client.wait_for("the own join", |r| r.iter().any(|m| !m["push"]["join"].is_null())).await;
    let joins = client.pushes("room:a", "join");
    assert_eq!(joins.len(), 1, "{:?}", client.received);
    assert_eq!(client.received[joins[0]]["push"]["join"]["info"]["user"], "ann");
    assert!(client.reply(2) < joins[0], "join before the subscribe reply at {}", joins[0]);
}

/// Recovery: the reply carries what was missed, a publication arriving
/// while the subscribe is handled follows the reply, and none comes twice.
#[tokio::test]
async fn recovery_then_live_without_loss_or_duplicate() {
    let gateway = gateway();
    let broker = gateway.broker.clone();
    for n in 1..=3 {
        let message = Message { data: Bytes::from(json!({"n": n}).to_string()), ..Default::default() };
        broker.publish("feed:a", message).await.expect("published");
    }
    let position = broker.history("feed:a", Query::default()).await.expect("history").position;
    assert_eq!(position.offset, 3);
    let mut client = connected(&gateway, json!({"sub": "ann"})).await;
    let sub =
        json!({"id": 2, "subscribe": {"channel": "feed:a", "recover": true, "offset": 1, "epoch": position.epoch}});
    client.send(&[sub, publish(3, "feed:a", json!({"n": 4}))]).await;
    let reply = &client.received[client.reply(2)]["subscribe"];
    assert_eq!(reply["recovered"], true, "{reply}");
    let recovered: Vec<&Value> = reply["publications"].as_array().expect("publications").iter().collect();
    assert_eq!(recovered.iter().map(|p| p["offset"].as_u64()).collect::<Vec<_>>(), [Some(2), Some(3)]);
    let pubs = client.pushes("feed:a", "pub");
    let offsets: Vec<_> = pubs.iter().map(|i| client.received[*i]["push"]["pub"]["offset"].as_u64()).collect();
    assert_eq!(offsets, [Some(4)], "{:?}", client.received);
    assert!(client.reply(2) < pubs[0]);
}

/// Subscribing, leaving and subscribing again in one frame: the publication
/// after that reaches the client once, after the last subscribe reply.
#[tokio::test]
async fn resubscribe_in_one_frame_delivers_once() {
    let gateway = gateway();
    let mut client = connected(&gateway, json!({"sub": "ann"})).await;
    let unsubscribe = json!({"id": 3, "unsubscribe": {"channel": "pos:a"}});
    let frame = [subscribe(2, "pos:a"), unsubscribe, subscribe(4, "pos:a"), publish(5, "pos:a", json!({"n": 1}))];
    client.send(&frame).await;
    let pubs = client.pushes("pos:a", "pub");
    assert_eq!(pubs.len(), 1, "{:?}", client.received);
    assert!(client.reply(4) < pubs[0], "{:?}", client.received);
    assert_eq!(client.received[pubs[0]]["push"]["pub"]["offset"], 1);
}
