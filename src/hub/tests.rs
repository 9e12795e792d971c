//! In-process tests of the hub over the in-memory broker: pushes held until
//! activation, the recovery filter, gaps, the broker subscription's
//! lifetime, and concurrent subscribers.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

use super::channel::MAX_PENDING;
use super::{ClientHandle, Hub};
use crate::broker::memory::MemoryBroker;
use crate::broker::{BrokerError, HistoryConfig, Message, PresenceEvent, SubscriptionGuard};
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ClientInfo, Protocol};
use crate::user_command::UserCommand;

fn hub() -> Arc<Hub> {
    Hub::new(Arc::new(MemoryBroker::new(HistoryConfig::default())))
}

struct Client {
    handle: Arc<ClientHandle>,
    commands: tokio::sync::mpsc::Receiver<Box<UserCommand>>,
}

fn client(hub: &Hub, name: &str) -> Client {
    let (tx, commands) = tokio::sync::mpsc::channel(4);
    let handle = Arc::new(ClientHandle {
        key: hub.next_key(),
        client_id: name.to_string(),
        user: name.to_string(),
        protocol: Protocol::Json,
        conn_info: Bytes::new(),
        outbox: Arc::new(Outbox::new(1 << 20)),
        commands: tx,
    });
    Client { handle, commands }
}

/// Publishes through the broker with the given history position (the
/// in-memory broker keeps no history here, so it delivers them as they are).
async fn publish(hub: &Hub, channel: &str, offset: u64, prev: u64) {
    let data = Bytes::from(format!("{{\"o\":{offset}}}"));
    let prev_offset = (prev > 0).then_some(prev);
    let message = Message { data, offset, prev_offset, ..Default::default() };
    hub.broker().publish(channel, message).await.expect("published");
}

async fn announce(hub: &Hub, channel: &str, event: PresenceEvent, user: &str) {
    let info = ClientInfo { user: user.into(), client: user.into(), ..Default::default() };
    let message = Message { event: Some(event), info: Some(info), ..Default::default() };
    hub.broker().publish(channel, message).await.expect("published");
}

/// What the client's queue holds, parsed, and emptied.
async fn received(client: &Client) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut batch = VecDeque::new();
    while client.handle.outbox.queued_bytes() > 0 {
        assert_eq!(client.handle.outbox.next(&mut batch).await, None);
        out.extend(batch.drain(..).map(|b| serde_json::from_slice(&b).expect("JSON push")));
    }
    out
}

fn offsets(pushes: &[serde_json::Value]) -> Vec<u64> {
    pushes.iter().map(|p| p["push"]["pub"]["offset"].as_u64().unwrap_or(0)).collect()
}

#[tokio::test]
async fn pushes_wait_for_activation_in_order() {
    let hub = hub();
    let c = client(&hub, "ann");
    hub.subscribe("ch", &c.handle, Bytes::new(), true, false).await.unwrap();
    announce(&hub, "ch", PresenceEvent::Join, "ann").await;
    publish(&hub, "ch", 0, 0).await;
    announce(&hub, "ch", PresenceEvent::Leave, "bob").await;
    assert!(received(&c).await.is_empty(), "nothing before activation");
    hub.activate("ch", c.handle.key, 0);
    let pushes = received(&c).await;
    assert_eq!(pushes.len(), 3, "{pushes:?}");
    assert_eq!(pushes[0]["push"]["join"]["info"]["user"], "ann");
    assert!(pushes[1]["push"]["pub"].is_object());
    assert_eq!(pushes[2]["push"]["leave"]["info"]["user"], "bob");
    // Live from now on.
    publish(&hub, "ch", 0, 0).await;
    assert_eq!(received(&c).await.len(), 1);
}

/// A stored publication delivered twice (overlapping NATS subscriptions)
/// reaches a subscriber once.
#[tokio::test]
async fn a_repeated_publication_is_pushed_once() {
    let hub = hub();
    let c = client(&hub, "ann");
    hub.subscribe("ch", &c.handle, Bytes::new(), false, true).await.unwrap();
    hub.activate("ch", c.handle.key, 0);
    publish(&hub, "ch", 5, 4).await;
    publish(&hub, "ch", 5, 4).await;
    publish(&hub, "ch", 6, 5).await;
    assert_eq!(offsets(&received(&c).await), [5, 6]);
}

/// Recovery: held publications the reply carried (offset <= sent) are not
/// sent again; the later ones follow, each once.
#[tokio::test]
async fn activation_drops_what_the_reply_carried() {
    let hub = hub();
    let c = client(&hub, "ann");
    hub.subscribe("ch", &c.handle, Bytes::new(), false, true).await.unwrap();
    for offset in 3..=6 {
        publish(&hub, "ch", offset, offset - 1).await;
    }
    hub.activate("ch", c.handle.key, 4);
    assert_eq!(offsets(&received(&c).await), [5, 6]);
    publish(&hub, "ch", 7, 6).await;
    assert_eq!(offsets(&received(&c).await), [7]);
}

/// Each subscriber is held on its own: one being answered does not hold
/// the others.
#[tokio::test]
async fn a_held_subscriber_does_not_hold_the_others() {
    let hub = hub();
    let (a, b) = (client(&hub, "a"), client(&hub, "b"));
    hub.subscribe("ch", &a.handle, Bytes::new(), false, false).await.unwrap();
    hub.activate("ch", a.handle.key, 0);
    hub.subscribe("ch", &b.handle, Bytes::new(), false, false).await.unwrap();
    publish(&hub, "ch", 0, 0).await;
    assert_eq!(received(&a).await.len(), 1);
    assert!(received(&b).await.is_empty());
    hub.activate("ch", b.handle.key, 0);
    assert_eq!(received(&b).await.len(), 1);
}

#[tokio::test]
async fn too_much_held_closes_with_insufficient_state() {
    let hub = hub();
    let c = client(&hub, "ann");
    hub.subscribe("ch", &c.handle, Bytes::new(), false, false).await.unwrap();
    for _ in 0..=MAX_PENDING {
        publish(&hub, "ch", 0, 0).await;
    }
    assert_eq!(c.handle.outbox.close_reason(), Some(Disconnect::INSUFFICIENT_STATE));
}

/// A gap stalls positioned subscribers (told to unsubscribe) and only them.
#[tokio::test]
async fn gap_stalls_positioned_subscribers() {
    let hub = hub();
    let (mut positioned, plain) = (client(&hub, "p"), client(&hub, "q"));
    for (c, is_positioned) in [(&positioned, true), (&plain, false)] {
        hub.subscribe("ch", &c.handle, Bytes::new(), false, is_positioned).await.unwrap();
        hub.activate("ch", c.handle.key, 0);
    }
    publish(&hub, "ch", 1, 0).await;
    publish(&hub, "ch", 3, 2).await;
    publish(&hub, "ch", 4, 3).await;
    assert_eq!(offsets(&received(&positioned).await), [1]);
    assert_eq!(offsets(&received(&plain).await), [1, 3, 4]);
    match positioned.commands.try_recv().map(|c| *c) {
        Ok(UserCommand::Unsubscribe { channel, insufficient_state: true, .. }) => assert_eq!(channel, "ch"),
        other => panic!("expected an insufficient-state unsubscribe, got {other:?}"),
    }
    assert!(positioned.commands.try_recv().is_err(), "told once");
}

/// The last subscriber out drops the channel and its broker subscription;
/// subscribing again makes a new one that delivers.
#[tokio::test]
async fn last_out_drops_the_channel_and_resubscribing_works() {
    let hub = hub();
    let (a, b) = (client(&hub, "a"), client(&hub, "b"));
    hub.subscribe("ch", &a.handle, Bytes::new(), false, false).await.unwrap();
    hub.subscribe("ch", &b.handle, Bytes::new(), false, false).await.unwrap();
    assert_eq!((hub.num_channels(), hub.num_subscriptions()), (1, 2));
    assert_eq!(hub.local_presence("ch").len(), 2);
    hub.unsubscribe("ch", a.handle.key);
    hub.unsubscribe("ch", b.handle.key);
    assert_eq!((hub.num_channels(), hub.num_subscriptions()), (0, 0));
    assert!(hub.channels.get("ch").is_none(), "the channel left the index");
    publish(&hub, "ch", 0, 0).await;
    hub.subscribe("ch", &a.handle, Bytes::new(), false, false).await.unwrap();
    hub.activate("ch", a.handle.key, 0);
    publish(&hub, "ch", 0, 0).await;
    assert_eq!(received(&a).await.len(), 1, "one delivery, from the new subscription only");
    assert!(received(&b).await.is_empty());
    assert_eq!(hub.channel_counts(), [("ch".to_string(), 1)]);
}

/// A broker whose subscriptions never become active.
struct Stalled;

#[async_trait::async_trait]
impl crate::broker::Broker for Stalled {
    async fn publish(&self, _: &str, _: Message) -> Result<Option<crate::broker::Position>, BrokerError> {
        Err(BrokerError::Unavailable("stalled".into()))
    }
    async fn history(&self, _: &str, _: crate::broker::Query) -> Result<crate::broker::Page, BrokerError> {
        Err(BrokerError::Unavailable("stalled".into()))
    }
    async fn remove_history(&self, _: &str) -> Result<(), BrokerError> {
        Err(BrokerError::Unavailable("stalled".into()))
    }
    async fn subscribe(&self, _: &str, _: Arc<dyn crate::broker::Deliver>) -> Result<SubscriptionGuard, BrokerError> {
        std::future::pending().await
    }
    async fn publish_user_command(&self, _: &str, _: Bytes) -> Result<(), BrokerError> {
        Err(BrokerError::Unavailable("stalled".into()))
    }
    async fn subscribe_user_bucket(
        &self,
        _: u32,
        _: Arc<dyn crate::broker::DeliverUserCommand>,
    ) -> Result<SubscriptionGuard, BrokerError> {
        std::future::pending().await
    }
    async fn survey(&self, _: Bytes) -> Result<Vec<Bytes>, BrokerError> {
        Err(BrokerError::Unavailable("stalled".into()))
    }
    async fn answer_surveys(&self, _: Arc<dyn crate::broker::Answer>) -> Result<SubscriptionGuard, BrokerError> {
        std::future::pending().await
    }
    async fn request_node(&self, _: &str, _: Bytes) -> Result<Option<Bytes>, BrokerError> {
        Err(BrokerError::Unavailable("stalled".into()))
    }
    async fn answer_node(
        &self,
        _: &str,
        _: Arc<dyn crate::broker::AnswerNode>,
    ) -> Result<SubscriptionGuard, BrokerError> {
        std::future::pending().await
    }
    fn is_connected(&self) -> bool {
        false
    }
}

/// A subscribe whose caller stops waiting (its connection closed while the
/// broker was slow) leaves nothing behind.
#[tokio::test]
async fn abandoned_subscribe_leaves_nothing() {
    let hub = Hub::new(Arc::new(Stalled));
    let c = client(&hub, "ann");
    let subscribe = hub.subscribe("ch", &c.handle, Bytes::new(), false, false);
    let waited = tokio::time::timeout(std::time::Duration::from_millis(20), subscribe).await;
    assert!(waited.is_err(), "the broker never answers");
    assert_eq!((hub.num_channels(), hub.num_subscriptions()), (0, 0));
    assert!(hub.channels.get("ch").is_none());
}

/// Many tasks join and leave the same few channels while another fans out:
/// in the end the hub holds exactly the subscribers that stayed, and each
/// of them receives a publication made afterwards exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_and_leaves_keep_the_books_right() {
    let hub = hub();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let c = client(&hub, &format!("c{t}"));
            for n in 0..300 {
                let channel = format!("ch{}", n % 3);
                hub.subscribe(&channel, &c.handle, Bytes::new(), false, false).await.unwrap();
                hub.activate(&channel, c.handle.key, 0);
                hub.unsubscribe(&channel, c.handle.key);
            }
            // Stays in ch0.
            hub.subscribe("ch0", &c.handle, Bytes::new(), false, false).await.unwrap();
            hub.activate("ch0", c.handle.key, 0);
            c
        }));
    }
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                publish(&hub, "ch1", 0, 0).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    publisher.await.unwrap();
    assert_eq!(hub.channel_counts(), [("ch0".to_string(), 8)]);
    for c in &clients {
        received(c).await;
    }
    publish(&hub, "ch0", 0, 0).await;
    for c in &clients {
        assert_eq!(received(c).await.len(), 1);
    }
}
