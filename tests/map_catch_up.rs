//! `map.subscribe_catch_up_timeout` over the raw client protocol (issue
//! #20; centrifuge's `isMapCatchUpExpired`): a map subscriber still paging
//! through the state when the timeout has passed is disconnected with 3008
//! at its next page request; fast paging goes live; a negative timeout
//! never expires; an unset one is 5 s. Plus the bookkeeping Centrifugo does
//! around it: a cursor of no paged subscription is 103, a second first page
//! 105, unsubscribing ends the paging, paged subscriptions count against
//! `client_channel_limit`, and an expired one is dropped when another map
//! subscribe arrives. Startup refuses what Centrifugo's duration parser
//! refuses.

use natsgate_test_support as common;

use common::pair::api_result;
use common::{hs256_token, Gateway, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::{json, Value};
use std::time::Duration;

const API_KEY: &str = "map-catch-up-key";
/// The `short` namespace's timeout; the waits that outlast it are bounded.
const SHORT: Duration = Duration::from_millis(300);

/// Map namespaces paging two keys at a time, differing only in their
/// catch-up timeout, and a plain stream namespace.
fn namespaces() -> Value {
    let map = |name: &str, timeout: Option<&str>| {
        let mut map = json!({"mode": "persistent", "default_page_size": 2, "min_page_size": 2, "max_page_size": 2});
        if let Some(timeout) = timeout {
            map["subscribe_catch_up_timeout"] = json!(timeout);
        }
        json!({"name": name, "subscription_type": "map", "allow_subscribe_for_client": true, "map": map})
    };
    json!([
        map("short", Some("300ms")),
        map("long", Some("30s")),
        map("off", Some("-1s")),
        map("dflt", None),
        {"name": "st", "allow_subscribe_for_client": true}
    ])
}

fn gateway(nats: Option<&NatsServer>) -> Gateway {
    let namespaces = namespaces().to_string();
    let builder = Gateway::builder().permissive().envs(&[
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", &namespaces),
        ("NATSGATE_CLIENT_CHANNEL_LIMIT", "3"),
    ]);
    match nats {
        Some(nats) => builder.nats(nats).start(),
        None => builder.start(),
    }
}

/// Five keys in `channel`: three pages of two.
async fn five_keys(gw: &Gateway, channel: &str) {
    let http = reqwest::Client::new();
    for i in 1..=5 {
        let body = json!({"channel": channel, "key": format!("k{i}"), "data": {"i": i}});
        api_result(&http, gw, API_KEY, "map_publish", &body).await;
    }
}

async fn client(gw: &Gateway) -> WsClient {
    let mut c = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    c.connect_token(&hs256_token(SECRET, "tom", None, json!({}))).await;
    c
}

/// The first state page; returns the `subscribe` result (with a cursor).
async fn first_page(c: &mut WsClient, channel: &str) -> Value {
    let reply = c.request(json!({"subscribe": {"channel": channel, "type": 1, "phase": 2}})).await;
    let result = reply.get("subscribe").unwrap_or_else(|| panic!("first page of {channel}: {reply}")).clone();
    assert!(result["cursor"].as_str().is_some_and(|c| !c.is_empty()), "more pages expected: {result}");
    result
}

/// The next state page after `page`: the whole reply.
async fn next_page(c: &mut WsClient, channel: &str, page: &Value) -> Value {
    let (cursor, offset, epoch) = (&page["cursor"], &page["offset"], &page["epoch"]);
    let sub = json!({"channel": channel, "type": 1, "phase": 2, "cursor": cursor, "offset": offset, "epoch": epoch});
    c.request(json!({"subscribe": sub})).await
}

/// Pages through the rest of the state; returns the live page.
async fn page_to_live(c: &mut WsClient, channel: &str, mut page: Value) -> Value {
    for _ in 0..5 {
        let reply = next_page(c, channel, &page).await;
        page = reply.get("subscribe").unwrap_or_else(|| panic!("page of {channel}: {reply}")).clone();
        if page["cursor"].as_str().is_none_or(str::is_empty) {
            return page;
        }
    }
    panic!("{channel} never went live: {page}");
}

/// Sends the next page request and returns the close it gets.
async fn page_closes(c: &mut WsClient, channel: &str, page: &Value) -> (u16, String) {
    let (cursor, offset, epoch) = (&page["cursor"], &page["offset"], &page["epoch"]);
    let sub = json!({"id": 99, "subscribe": {"channel": channel, "type": 1, "phase": 2, "cursor": cursor,
                     "offset": offset, "epoch": epoch}});
    c.send_json(&sub.to_string()).await;
    c.expect_close(TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_paging_past_the_timeout_is_disconnected_with_3008_on_both_brokers() {
    let nats = NatsServer::start();
    for gw in [gateway(None), gateway(Some(&nats))] {
        five_keys(&gw, "short:slow").await;
        let mut c = client(&gw).await;
        let page = first_page(&mut c, "short:slow").await;
        // The one deliberate wait: longer than the timeout.
        tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
        assert_eq!(page_closes(&mut c, "short:slow", &page).await, (3008, "slow".to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_paging_goes_live_and_gets_changes() {
    let gw = gateway(None);
    five_keys(&gw, "long:fast").await;
    let mut c = client(&gw).await;
    let page = first_page(&mut c, "long:fast").await;
    let live = page_to_live(&mut c, "long:fast", page).await;
    assert_eq!(live["type"], json!(1), "{live}");
    assert!(live.get("phase").is_none_or(|p| p == &json!(0)), "the last page is live: {live}");
    let http = reqwest::Client::new();
    api_result(&http, &gw, API_KEY, "map_publish", &json!({"channel": "long:fast", "key": "k9", "data": {"i": 9}}))
        .await;
    let publication = c.recv_publication("long:fast", TIMEOUT).await;
    assert_eq!(publication["key"], json!("k9"), "{publication}");
    // Live: the paging is over; a page request now is 105, as in Centrifugo.
    let stale = json!({"cursor": "0::k2", "offset": 0, "epoch": ""});
    let reply = next_page(&mut c, "long:fast", &stale).await;
    assert_eq!(reply["error"]["code"], json!(105), "already live: {reply}");
}

/// One wait past 5 s proves the default and the two overrides: the unset
/// timeout expired, a 30 s one and a negative one did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_five_seconds_and_a_negative_timeout_never_expires() {
    let gw = gateway(None);
    let mut clients = Vec::new();
    for ns in ["dflt", "long", "off"] {
        let channel = format!("{ns}:wait");
        five_keys(&gw, &channel).await;
        let mut c = client(&gw).await;
        let page = first_page(&mut c, &channel).await;
        clients.push((c, channel, page));
    }
    tokio::time::sleep(Duration::from_millis(5_300)).await;
    let mut results = Vec::new();
    for (c, channel, page) in &mut clients {
        if channel.starts_with("dflt") {
            assert_eq!(page_closes(c, channel, page).await, (3008, "slow".to_string()));
        } else {
            let reply = next_page(c, channel, page).await;
            assert!(reply.get("subscribe").is_some(), "{channel} still pages after 5.3 s: {reply}");
            results.push(reply);
        }
    }
    assert_eq!(results.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_subscriptions_are_tracked_as_centrifugo_tracks_them() {
    let gw = gateway(None);
    for ch in ["long:a", "long:b", "short:x", "short:y"] {
        five_keys(&gw, ch).await;
    }
    let mut c = client(&gw).await;
    // A cursor of a subscription that is not being paged: 103.
    let stranger = json!({"cursor": "0::k2", "offset": 0, "epoch": ""});
    let reply = next_page(&mut c, "long:a", &stranger).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    // A second first page while paging: 105.
    let page_a = first_page(&mut c, "long:a").await;
    let reply = c.request(json!({"subscribe": {"channel": "long:a", "type": 1, "phase": 2}})).await;
    assert_eq!(reply["error"]["code"], json!(105), "{reply}");
    // Paged subscriptions count against the limit (3): two paged, one
    // live, then a fourth is refused with 106.
    let page_b = first_page(&mut c, "long:b").await;
    c.subscribe("st:plain").await;
    let reply = c.request(json!({"subscribe": {"channel": "st:other"}})).await;
    assert_eq!(reply["error"]["code"], json!(106), "{reply}");
    // Unsubscribing ends the paging: its cursor is 103, and the slot is free.
    let reply = c.request(json!({"unsubscribe": {"channel": "long:b"}})).await;
    assert!(reply.get("unsubscribe").is_some(), "{reply}");
    let reply = next_page(&mut c, "long:b", &page_b).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    c.subscribe("st:other").await;
    // `long:a` pages on to live undisturbed.
    page_to_live(&mut c, "long:a", page_a).await;

    // An expired paging of another channel is dropped by the next map
    // subscribe (its cursor is then 103, not 3008), freeing its slot.
    let mut d = client(&gw).await;
    let page_x = first_page(&mut d, "short:x").await;
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    let page_y = first_page(&mut d, "short:y").await;
    let reply = next_page(&mut d, "short:x", &page_x).await;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    page_to_live(&mut d, "short:y", page_y).await;
}

/// Values Centrifugo's `time.ParseDuration` refuses stop the gateway at
/// startup; integer nanoseconds are accepted.
#[test]
fn startup_refuses_what_go_durations_refuse() {
    for bad in [json!("5d"), json!("10"), json!(""), json!(true)] {
        let ns = json!([{"name": "mm", "subscription_type": "map",
                         "map": {"mode": "persistent", "subscribe_catch_up_timeout": bad}}]);
        let refused = Gateway::builder()
            .permissive()
            .env("NATSGATE_NAMESPACES", &ns.to_string())
            .ready_timeout(Duration::from_secs(5))
            .try_start()
            .err();
        let log = refused.unwrap_or_else(|| panic!("{ns} was accepted"));
        assert!(log.contains("subscribe_catch_up_timeout") || log.contains("duration"), "{ns}: {log}");
    }
    let ns = json!([{"name": "mm", "subscription_type": "map",
                     "map": {"mode": "persistent", "subscribe_catch_up_timeout": 2_000_000_000u64}}]);
    Gateway::builder().permissive().env("NATSGATE_NAMESPACES", &ns.to_string()).start();
}
