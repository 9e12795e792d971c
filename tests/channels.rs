//! The channel model end to end, against real `natsgate` processes:
//! namespaces, permissions, name rules, private channels and subscription
//! tokens (expiry, refresh), user-limited channels, server-side
//! subscriptions from connection token claims, connection and channel
//! limits, and configuration errors at startup.
//!
//! Every gateway here uses its embedded broker; every wait is bounded.

use natsgate_test_support as common;

use common::{
    eventually, free_port, hs256_token, now_secs, Gateway, GatewayBuilder, Protocol, WsClient, SECRET, TIMEOUT,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Subscription-token key, distinct from the connection key `SECRET`.
const SUB_SECRET: &str = "natsgate-subscription-secret";
const API_KEY: &str = "channels-test-api-key";

/// Namespaces of the main test gateway. The top level allows nothing.
fn namespaces() -> String {
    json!([
        // Authenticated clients subscribe; `dialog#42,43` style channels;
        // subscribers publish.
        {"name": "chat", "allow_subscribe_for_client": true, "allow_user_limited_channels": true,
         "allow_publish_for_subscriber": true},
        // Everything open, anonymous clients included.
        {"name": "open", "allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
         "allow_publish_for_client": true, "allow_publish_for_anonymous": true},
        // Private channels live here (`$secret:...`); subscribers publish.
        {"name": "secret", "allow_publish_for_subscriber": true},
        // Channel names after `re:` must match the regex.
        {"name": "re", "allow_subscribe_for_client": true, "channel_regex": "^[a-z0-9_]+$"},
        // Presence on, for authenticated clients.
        {"name": "pres", "presence": true, "allow_presence_for_client": true},
        // Presence permission given but presence off.
        {"name": "nopres", "allow_presence_for_client": true},
        // History for subscribers.
        {"name": "hist", "history_size": 10, "history_ttl": "60s", "allow_subscribe_for_client": true,
         "allow_history_for_subscriber": true},
    ])
    .to_string()
}

fn builder() -> GatewayBuilder {
    Gateway::builder().envs(&[
        ("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET),
        ("NATSGATE_SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY", SUB_SECRET),
        ("NATSGATE_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN", "true"),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", &namespaces()),
    ])
}

fn gateway() -> Gateway {
    builder().start()
}

/// A connection token for `user`, valid for an hour, with `extra` claims.
fn conn_token(user: &str, extra: Value) -> String {
    hs256_token(SECRET, user, Some(3600), extra)
}

/// A subscription token signed with the subscription key.
fn sub_token(user: &str, channel: &str, exp_in: i64) -> String {
    hs256_token(SUB_SECRET, user, Some(exp_in), json!({"channel": channel}))
}

/// A connected JSON client for `user`; returns it with its connect result.
async fn connect_as(gw: &Gateway, user: &str) -> (WsClient, Value) {
    connect_with(gw, Protocol::Json, &conn_token(user, json!({}))).await
}

async fn connect_with(gw: &Gateway, protocol: Protocol, token: &str) -> (WsClient, Value) {
    let mut client = WsClient::connect(&gw.ws_url(), protocol).await;
    let result = client.connect_token(token).await;
    (client, result)
}

async fn user(gw: &Gateway, name: &str) -> WsClient {
    connect_as(gw, name).await.0
}

/// A client connected without a token (anonymous).
async fn anonymous(gw: &Gateway) -> WsClient {
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let reply = client.request(json!({"connect": {}})).await;
    assert!(reply.get("connect").is_some(), "anonymous connect failed: {reply}");
    client
}

/// The error code of a reply, or `None` when it succeeded.
fn error_code(reply: &Value) -> Option<i64> {
    reply.get("error").map(|e| e["code"].as_i64().unwrap_or_else(|| panic!("error without code: {reply}")))
}

/// Sends `command` and asserts it is answered with error `code`.
async fn expect_error(client: &mut WsClient, command: Value, code: i64) {
    let reply = client.request(command.clone()).await;
    assert_eq!(error_code(&reply), Some(code), "{command} -> {reply}");
    assert!(reply["error"]["message"].is_string(), "SDKs need an error message: {reply}");
}

/// Sends a presence or history `command` the client is allowed to make:
/// answered with a result, or with 108 (not available) where the gateway
/// has no store for it yet.
async fn expect_permitted(client: &mut WsClient, command: Value) {
    let reply = client.request(command.clone()).await;
    match error_code(&reply) {
        None | Some(108) => {}
        Some(code) => panic!("{command} -> {code}, expected a result or 108: {reply}"),
    }
}

/// Sends `command` and asserts it succeeds; returns the reply.
async fn expect_ok(client: &mut WsClient, command: Value) -> Value {
    let reply = client.request(command.clone()).await;
    assert_eq!(error_code(&reply), None, "{command} -> {reply}");
    reply
}

async fn subscribe_with(client: &mut WsClient, channel: &str, token: &str) -> Value {
    client.request(json!({"subscribe": {"channel": channel, "token": token}})).await
}

/// Sends `command` (with an id no reply is awaited for) and asserts the
/// server closes the connection with `code`.
async fn expect_close_on(client: &mut WsClient, command: Value, code: u16) {
    let mut command = command;
    command.as_object_mut().expect("object").insert("id".into(), json!(900));
    client.send_json(&command.to_string()).await;
    let (got, reason) = client.expect_close(TIMEOUT).await;
    assert_eq!(got, code, "{command} -> close {got} {reason:?}");
}

/// The connection still answers commands (an error reply did not close it).
async fn assert_alive(client: &mut WsClient) {
    let reply = client.request(json!({"ping": {}})).await;
    assert_eq!(error_code(&reply), None, "ping -> {reply}");
}

fn b64_unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------
// Namespaces, permissions and names

#[tokio::test]
async fn unknown_namespace_is_102_for_every_channel_command() {
    let gw = gateway();
    let mut alice = user(&gw, "alice").await;
    for channel in ["nope:room", "$nope:room", "nope:dialog#42"] {
        expect_error(&mut alice, json!({"subscribe": {"channel": channel}}), 102).await;
        expect_error(&mut alice, json!({"publish": {"channel": channel, "data": {"x": 1}}}), 102).await;
        expect_error(&mut alice, json!({"presence": {"channel": channel}}), 102).await;
        expect_error(&mut alice, json!({"presence_stats": {"channel": channel}}), 102).await;
        expect_error(&mut alice, json!({"history": {"channel": channel, "limit": 10}}), 102).await;
    }
    // Even with a valid subscription token the namespace must exist.
    let token = sub_token("alice", "$nope:room", 60);
    let reply = subscribe_with(&mut alice, "$nope:room", &token).await;
    assert_eq!(error_code(&reply), Some(102), "{reply}");
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn namespace_allows_subscribe_where_the_top_level_denies_it() {
    let gw = gateway();
    let mut alice = user(&gw, "alice").await;
    // Top level: allow_subscribe_for_client is off.
    expect_error(&mut alice, json!({"subscribe": {"channel": "room"}}), 103).await;
    // `chat` allows authenticated clients, `open` anonymous ones too.
    alice.subscribe("chat:room").await;
    alice.subscribe("open:room").await;
    expect_error(&mut alice, json!({"subscribe": {"channel": "chat:room"}}), 105).await;

    let mut anon = anonymous(&gw).await;
    expect_error(&mut anon, json!({"subscribe": {"channel": "chat:room"}}), 103).await;
    expect_error(&mut anon, json!({"subscribe": {"channel": "room"}}), 103).await;
    anon.subscribe("open:room").await;

    // A private channel needs a token even where subscribing is open.
    expect_error(&mut alice, json!({"subscribe": {"channel": "$open:room"}}), 103).await;
    // In `chat`, `#` channels are limited to the listed users.
    expect_error(&mut alice, json!({"subscribe": {"channel": "chat:dm#42"}}), 103).await;
}

#[tokio::test]
async fn publish_permissions_follow_the_namespace() {
    let gw = gateway();
    let mut alice = user(&gw, "alice").await;
    let mut bob = user(&gw, "bob").await;
    let mut anon = anonymous(&gw).await;
    let data = json!({"text": "hi"});

    // Top level: nobody may publish.
    expect_error(&mut alice, json!({"publish": {"channel": "room", "data": data}}), 103).await;
    // `open`: clients and anonymous clients may publish without subscribing.
    bob.subscribe("open:room").await;
    expect_ok(&mut alice, json!({"publish": {"channel": "open:room", "data": {"from": "alice"}}})).await;
    expect_ok(&mut anon, json!({"publish": {"channel": "open:room", "data": {"from": "anon"}}})).await;
    assert_eq!(bob.recv_publication("open:room", TIMEOUT).await["data"], json!({"from": "alice"}));
    let anon_pub = bob.recv_publication("open:room", TIMEOUT).await;
    assert_eq!(anon_pub["data"], json!({"from": "anon"}));

    // `chat`: subscribers only.
    expect_error(&mut alice, json!({"publish": {"channel": "chat:room", "data": data}}), 103).await;
    alice.subscribe("chat:room").await;
    expect_ok(&mut alice, json!({"publish": {"channel": "chat:room", "data": data}})).await;
    let got = alice.recv_publication("chat:room", TIMEOUT).await;
    assert_eq!(got["data"], data);
    assert_eq!(got["info"]["user"], json!("alice"), "{got}");
    // Anonymous subscribers-only channels: the anonymous flag is missing.
    expect_error(&mut anon, json!({"publish": {"channel": "chat:room", "data": data}}), 103).await;
}

#[tokio::test]
async fn presence_and_history_permissions_then_not_available() {
    let gw = gateway();
    let mut alice = user(&gw, "alice").await;
    let mut anon = anonymous(&gw).await;

    // Presence on and allowed: passes the permission check, then 108 while
    // there is no presence store (a result once there is).
    expect_permitted(&mut alice, json!({"presence": {"channel": "pres:room"}})).await;
    expect_permitted(&mut alice, json!({"presence_stats": {"channel": "pres:room"}})).await;
    // Anonymous clients lack allow_presence_for_anonymous.
    expect_error(&mut anon, json!({"presence": {"channel": "pres:room"}}), 103).await;
    // Presence off: 108 whatever the permissions.
    expect_error(&mut alice, json!({"presence": {"channel": "nopres:room"}}), 108).await;
    expect_error(&mut alice, json!({"presence": {"channel": "room"}}), 108).await;
    // History off: 108.
    expect_error(&mut alice, json!({"history": {"channel": "room", "limit": 1}}), 108).await;
    expect_error(&mut alice, json!({"history": {"channel": "pres:room", "limit": 1}}), 108).await;
    // History on for subscribers: 103 before subscribing; after, 108 while
    // there is no history store (a result once there is).
    expect_error(&mut alice, json!({"history": {"channel": "hist:room", "limit": 1}}), 103).await;
    alice.subscribe("hist:room").await;
    expect_permitted(&mut alice, json!({"history": {"channel": "hist:room", "limit": 1}})).await;
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn channel_names_outside_the_rules_are_107() {
    let gw = gateway();
    let mut alice = user(&gw, "alice").await;
    // Non-ASCII without a regex.
    expect_error(&mut alice, json!({"subscribe": {"channel": "chat:héllo"}}), 107).await;
    // The regex applies to the name after the namespace.
    alice.subscribe("re:abc_123").await;
    expect_error(&mut alice, json!({"subscribe": {"channel": "re:ABC"}}), 107).await;
    expect_error(&mut alice, json!({"subscribe": {"channel": "re:a-b"}}), 107).await;
    // Longer than channel_max_length (255).
    let long = format!("chat:{}", "a".repeat(251));
    assert_eq!(long.len(), 256);
    expect_error(&mut alice, json!({"subscribe": {"channel": long}}), 107).await;
    let fits = format!("chat:{}", "a".repeat(250));
    alice.subscribe(&fits).await;
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn user_limited_channels_admit_only_listed_users() {
    let gw = gateway();
    let channel = "chat:dialog#42,43";
    let mut u42 = user(&gw, "42").await;
    let mut u43 = user(&gw, "43").await;
    let mut u44 = user(&gw, "44").await;
    let mut anon = anonymous(&gw).await;
    u42.subscribe(channel).await;
    u43.subscribe(channel).await;
    expect_error(&mut u44, json!({"subscribe": {"channel": channel}}), 103).await;
    expect_error(&mut anon, json!({"subscribe": {"channel": channel}}), 103).await;
    // A user whose ID merely contains a listed one is not listed.
    let mut u4 = user(&gw, "4").await;
    expect_error(&mut u4, json!({"subscribe": {"channel": channel}}), 103).await;

    expect_ok(&mut u42, json!({"publish": {"channel": channel, "data": {"m": 1}}})).await;
    assert_eq!(u43.recv_publication(channel, TIMEOUT).await["data"], json!({"m": 1}));
    // 44 was refused, so it is not subscribed and may not publish either.
    expect_error(&mut u44, json!({"publish": {"channel": channel, "data": {"m": 2}}}), 103).await;
}

// ---------------------------------------------------------------------------
// Private channels and subscription tokens

#[tokio::test]
async fn private_channel_with_subscription_tokens() {
    let gw = gateway();
    for protocol in [Protocol::Json, Protocol::Protobuf] {
        let channel = format!("$secret:{}", b64_unique("room"));
        let (mut alice, _) = connect_with(&gw, protocol, &conn_token("alice", json!({}))).await;

        // No token: permission denied.
        expect_error(&mut alice, json!({"subscribe": {"channel": channel}}), 103).await;
        // Signed with the connection key while a subscription key is set: 103.
        let wrong_key = hs256_token(SECRET, "alice", Some(60), json!({"channel": channel}));
        let reply = subscribe_with(&mut alice, &channel, &wrong_key).await;
        assert_eq!(error_code(&reply), Some(103), "{protocol:?}: {reply}");
        // Garbage: 103.
        let reply = subscribe_with(&mut alice, &channel, "not.a.jwt").await;
        assert_eq!(error_code(&reply), Some(103), "{protocol:?}: {reply}");
        // Expired: 109 (the SDK asks getToken for a new one).
        let expired = sub_token("alice", &channel, -120);
        let reply = subscribe_with(&mut alice, &channel, &expired).await;
        assert_eq!(error_code(&reply), Some(109), "{protocol:?}: {reply}");
        // None of those closed the connection.
        assert_alive(&mut alice).await;

        // Valid: subscribed, and told when the subscription expires.
        let token = sub_token("alice", &channel, 60);
        let reply = subscribe_with(&mut alice, &channel, &token).await;
        let result = reply.get("subscribe").unwrap_or_else(|| panic!("{protocol:?}: {reply}"));
        assert_eq!(result["expires"], json!(true), "{protocol:?}: {reply}");
        let ttl = result["ttl"].as_u64().unwrap_or(0);
        assert!((58..=60).contains(&ttl), "ttl {ttl}: {reply}");

        // Subscribed for real: publishes as a subscriber and gets it back.
        let data = json!({"secret": protocol == Protocol::Json});
        expect_ok(&mut alice, json!({"publish": {"channel": channel, "data": data}})).await;
        assert_eq!(alice.recv_publication(&channel, TIMEOUT).await["data"], data);

        // A token without exp: subscribed, no expiry.
        let channel2 = format!("$secret:{}", b64_unique("forever"));
        let forever = hs256_token(SUB_SECRET, "alice", None, json!({"channel": channel2}));
        let reply = subscribe_with(&mut alice, &channel2, &forever).await;
        let result = reply.get("subscribe").unwrap_or_else(|| panic!("{reply}"));
        assert!(result.get("expires").is_none() || result["expires"] == json!(false), "{reply}");
    }
}

#[tokio::test]
async fn subscription_token_bound_to_this_client_id() {
    let gw = gateway();
    let channel = "$secret:bound";
    let (mut alice, connected) = connect_as(&gw, "alice").await;
    let client_id = connected["client"].as_str().expect("client id").to_string();
    let token = hs256_token(SUB_SECRET, "alice", Some(60), json!({"channel": channel, "client": client_id}));
    let reply = subscribe_with(&mut alice, channel, &token).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");

    // The same token on another connection of the same user: 3500.
    let (mut other, _) = connect_as(&gw, "alice").await;
    expect_close_on(&mut other, json!({"subscribe": {"channel": channel, "token": token}}), 3500).await;
}

#[tokio::test]
async fn subscription_token_mismatch_closes_3500() {
    let gw = gateway();
    let channel = "$secret:mismatch";
    // Another user's token.
    let (mut alice, _) = connect_as(&gw, "alice").await;
    let bobs = sub_token("bob", channel, 60);
    expect_close_on(&mut alice, json!({"subscribe": {"channel": channel, "token": bobs}}), 3500).await;
    // A token for another channel.
    let (mut alice, _) = connect_as(&gw, "alice").await;
    let other_channel = sub_token("alice", "$secret:elsewhere", 60);
    expect_close_on(&mut alice, json!({"subscribe": {"channel": channel, "token": other_channel}}), 3500).await;
    // An anonymous client with a user's token.
    let mut anon = anonymous(&gw).await;
    let alices = sub_token("alice", channel, 60);
    expect_close_on(&mut anon, json!({"subscribe": {"channel": channel, "token": alices}}), 3500).await;
}

/// Centrifugo answers 110 ("expired") when a subscription token is valid
/// (`exp` in the future) but its `expire_at` is already past.
#[tokio::test]
async fn subscription_token_expire_at_in_the_past_is_110() {
    let gw = gateway();
    let channel = "$secret:expire_at";
    let (mut alice, _) = connect_as(&gw, "alice").await;
    let token = hs256_token(SUB_SECRET, "alice", Some(3600), json!({"channel": channel, "expire_at": now_secs() - 30}));
    let reply = subscribe_with(&mut alice, channel, &token).await;
    // Regression (was a bug): natsgate answers 109 (token expired): src/auth/claims.rs `expiry()`
    // turns an `expire_at` in the past into TokenError::Expired, so the 110
    // check in src/session/subscribe.rs only fires when expire_at == now.
    assert_eq!(error_code(&reply), Some(110), "{reply}");

    // expire_at in the future overrides exp for the reported ttl.
    let token = hs256_token(SUB_SECRET, "alice", Some(3600), json!({"channel": channel, "expire_at": now_secs() + 30}));
    let reply = subscribe_with(&mut alice, channel, &token).await;
    let ttl = reply["subscribe"]["ttl"].as_u64().unwrap_or_else(|| panic!("{reply}"));
    assert!((28..=30).contains(&ttl), "ttl {ttl}: {reply}");
}

#[tokio::test]
async fn subscription_token_grants_a_non_private_channel_the_namespace_denies() {
    let gw = gateway();
    let (mut alice, _) = connect_as(&gw, "alice").await;
    // `secret:` (no `$`) has no allow_subscribe_for_client ...
    expect_error(&mut alice, json!({"subscribe": {"channel": "secret:plain"}}), 103).await;
    // ... but the application may grant it with a token.
    let reply = subscribe_with(&mut alice, "secret:plain", &sub_token("alice", "secret:plain", 60)).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
}

#[tokio::test]
async fn unrefreshed_subscription_is_unsubscribed_with_2501() {
    let gw = builder().env("NATSGATE_CLIENT_EXPIRED_SUB_CLOSE_DELAY", "1s").start();
    let channel = "$secret:short";
    let (mut alice, _) = connect_as(&gw, "alice").await;
    let exp = now_secs() + 2;
    let token = hs256_token(SUB_SECRET, "alice", None, json!({"channel": channel, "exp": exp}));
    let reply = subscribe_with(&mut alice, channel, &token).await;
    assert_eq!(reply["subscribe"]["expires"], json!(true), "{reply}");
    let ttl = reply["subscribe"]["ttl"].as_u64().unwrap_or(0);
    assert!((1..=2).contains(&ttl), "ttl {ttl}: {reply}");

    let push = alice.recv_until(|m| m["push"].get("unsubscribe").is_some(), Duration::from_secs(8)).await;
    let at = now_secs();
    assert_eq!(push["push"]["channel"], json!(channel), "{push}");
    assert_eq!(push["push"]["unsubscribe"]["code"], json!(2501), "{push}");
    assert!(at > exp, "unsubscribed at {at}, before expiry {exp} + 1 s grace: {push}");

    // The server dropped the subscription: publishing as a subscriber fails,
    // and the connection itself stays.
    expect_error(&mut alice, json!({"publish": {"channel": channel, "data": {}}}), 103).await;
    // The SDK resubscribes (code >= 2500) with a fresh token: works.
    let reply = subscribe_with(&mut alice, channel, &sub_token("alice", channel, 60)).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
}

#[tokio::test]
async fn sub_refresh_before_expiry_keeps_the_subscription() {
    let gw = builder().env("NATSGATE_CLIENT_EXPIRED_SUB_CLOSE_DELAY", "1s").start();
    let channel = "$secret:refreshed";
    let (mut alice, _) = connect_as(&gw, "alice").await;
    let exp = now_secs() + 2;
    let token = hs256_token(SUB_SECRET, "alice", None, json!({"channel": channel, "exp": exp}));
    let reply = subscribe_with(&mut alice, channel, &token).await;
    assert_eq!(reply["subscribe"]["expires"], json!(true), "{reply}");

    let fresh = sub_token("alice", channel, 60);
    let reply = alice.request(json!({"sub_refresh": {"channel": channel, "token": fresh}})).await;
    let result = reply.get("sub_refresh").unwrap_or_else(|| panic!("sub_refresh failed: {reply}"));
    assert_eq!(result["expires"], json!(true), "{reply}");
    let ttl = result["ttl"].as_u64().unwrap_or(0);
    assert!((58..=60).contains(&ttl), "ttl {ttl}: {reply}");

    // Past the old expiry plus grace (and a second of slack): nothing
    // arrives, in particular no unsubscribe push.
    let quiet_until = exp + 1 + 1;
    let quiet = Duration::from_millis(((quiet_until - now_secs()).max(0) as u64 + 1) * 1000);
    alice.expect_silence(quiet).await;
    expect_ok(&mut alice, json!({"publish": {"channel": channel, "data": {"still": "here"}}})).await;
    assert_eq!(alice.recv_publication(channel, TIMEOUT).await["data"], json!({"still": "here"}));
}

#[tokio::test]
async fn sub_refresh_errors() {
    let gw = gateway();
    let channel = "$secret:refresh_errors";
    // Not subscribed: 103, connection stays.
    let (mut alice, _) = connect_as(&gw, "alice").await;
    let reply =
        alice.request(json!({"sub_refresh": {"channel": channel, "token": sub_token("alice", channel, 60)}})).await;
    assert_eq!(error_code(&reply), Some(103), "{reply}");
    assert_alive(&mut alice).await;

    // Subscribed, refreshed with an expired token: closed with 3006.
    let reply = subscribe_with(&mut alice, channel, &sub_token("alice", channel, 60)).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    expect_close_on(
        &mut alice,
        json!({"sub_refresh": {"channel": channel, "token": sub_token("alice", channel, -120)}}),
        3006,
    )
    .await;

    // Refreshed with a token signed by the wrong key: 3500.
    let (mut alice, _) = connect_as(&gw, "alice").await;
    subscribe_with(&mut alice, channel, &sub_token("alice", channel, 60)).await;
    let wrong_key = hs256_token(SECRET, "alice", Some(60), json!({"channel": channel}));
    expect_close_on(&mut alice, json!({"sub_refresh": {"channel": channel, "token": wrong_key}}), 3500).await;

    // Refreshed with another user's token: 3500.
    let (mut alice, _) = connect_as(&gw, "alice").await;
    subscribe_with(&mut alice, channel, &sub_token("alice", channel, 60)).await;
    expect_close_on(
        &mut alice,
        json!({"sub_refresh": {"channel": channel, "token": sub_token("bob", channel, 60)}}),
        3500,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Server-side subscriptions from connection token claims

#[tokio::test]
async fn channels_and_subs_claims_subscribe_at_connect() {
    // Top level: clients may publish but not subscribe on their own.
    let gw = builder().env("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true").start();
    let token =
        conn_token("alice", json!({"subs": {"news": {}, "alerts": {"data": {"welcome": true}}, "chat:lobby": {}}}));
    let (mut alice, connected) = connect_with(&gw, Protocol::Json, &token).await;
    let subs = connected["subs"].as_object().unwrap_or_else(|| panic!("connect reply lists no subs: {connected}"));
    let mut names: Vec<&str> = subs.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["alerts", "chat:lobby", "news"], "{connected}");
    assert_eq!(subs["alerts"]["data"], json!({"welcome": true}), "{connected}");
    // With both claims, `subs` wins and `channels` is ignored, as in Centrifugo.
    let both = conn_token("carol", json!({"channels": ["news"], "subs": {"alerts": {}}}));
    let (_carol, carol_connected) = connect_with(&gw, Protocol::Json, &both).await;
    let carol_subs: Vec<&String> = carol_connected["subs"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(carol_subs, ["alerts"], "{carol_connected}");

    // Already subscribed by the server.
    expect_error(&mut alice, json!({"subscribe": {"channel": "news"}}), 105).await;
    // Bob has no such claims and may not subscribe to `news` himself.
    let mut bob = user(&gw, "bob").await;
    expect_error(&mut bob, json!({"subscribe": {"channel": "news"}}), 103).await;

    // Publications arrive as pushes without any subscribe command.
    expect_ok(&mut bob, json!({"publish": {"channel": "news", "data": {"headline": 1}}})).await;
    assert_eq!(alice.recv_publication("news", TIMEOUT).await["data"], json!({"headline": 1}));

    // Through the HTTP API too.
    api_publish(&gw, "alerts", json!({"level": "high"})).await;
    assert_eq!(alice.recv_publication("alerts", TIMEOUT).await["data"], json!({"level": "high"}));

    // And a client publishing into the namespaced one (chat: subscribers may publish).
    expect_ok(&mut alice, json!({"publish": {"channel": "chat:lobby", "data": {"hello": "lobby"}}})).await;
    assert_eq!(alice.recv_publication("chat:lobby", TIMEOUT).await["data"], json!({"hello": "lobby"}));

    // Unsubscribing from a server-side subscription works like any other.
    expect_ok(&mut alice, json!({"unsubscribe": {"channel": "news"}})).await;
    expect_ok(&mut bob, json!({"publish": {"channel": "news", "data": {"headline": 2}}})).await;
    api_publish(&gw, "alerts", json!({"level": "low"})).await;
    // `alerts` still arrives; `news` (published first) must not.
    let next = alice.recv_until(|m| m["push"].get("pub").is_some(), TIMEOUT).await;
    assert_eq!(next["push"]["channel"], json!("alerts"), "news arrived after unsubscribe: {next}");
}

/// Protobuf: every `subs` map entry of the connect reply carries its value,
/// even an empty `SubscribeResult`. Go's protobuf (Centrifugo) always writes
/// it; protobufjs (centrifuge-js) decodes an entry without one as `null`,
/// and the SDK then fails on `null.offset` handling server-side subs.
#[tokio::test]
async fn protobuf_connect_reply_writes_empty_server_side_subscription_results() {
    use futures_util::{SinkExt, StreamExt};
    use prost::Message as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::Message;

    let gw = gateway();
    let token = conn_token("alice", json!({"subs": {"news": {}, "alerts": {"data": {"x": 1}}}}));
    let mut request = gw.ws_url().into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("centrifuge-protobuf"));
    let (mut ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let command = natsgate::protocol::Command {
        id: 1,
        connect: Some(natsgate::protocol::ConnectRequest { token, ..Default::default() }),
        ..Default::default()
    };
    let mut frame = Vec::new();
    command.encode_length_delimited(&mut frame).expect("encode");
    ws.send(Message::binary(frame)).await.expect("send connect");
    let bytes = loop {
        match tokio::time::timeout(TIMEOUT, ws.next()).await.expect("connect reply in time") {
            Some(Ok(Message::Binary(bytes))) => break bytes.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a binary connect reply, got {other:?}"),
        }
    };
    // Frame: uvarint length, then Reply { connect = 5: ConnectResult { subs = 6: entries } }.
    let (len, mut rest) = varint(&bytes);
    assert_eq!(rest.len(), len as usize, "one reply in the frame: {bytes:?}");
    let connect = field(&mut rest, 5).unwrap_or_else(|| panic!("no connect result: {bytes:?}"));
    let mut result = connect;
    let mut entries = Vec::new();
    while let Some(entry) = field(&mut result, 6) {
        entries.push(entry);
    }
    assert_eq!(entries.len(), 2, "two subs entries: {bytes:?}");
    for entry in entries {
        let mut e = entry;
        let key = field(&mut e, 1).map(|k| String::from_utf8_lossy(k).to_string()).unwrap_or_default();
        let mut e = entry;
        // Regression (was a bug): natsgate (prost's map encoding) leaves the value out when the
        // SubscribeResult is empty (a `channels` claim without data), so
        // centrifuge-js protobuf crashes handling the connect reply.
        assert!(field(&mut e, 2).is_some(), "subs entry {key:?} has no value (field 2): {entry:?}");
    }
}

/// Reads a uvarint; returns it and the rest.
fn varint(mut buf: &[u8]) -> (u64, &[u8]) {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let (&b, rest) = buf.split_first().expect("truncated varint");
        buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (value, buf);
        }
        shift += 7;
    }
}

/// Skips fields of `buf` until the next length-delimited field `number`;
/// returns its payload and leaves `buf` after it. `None` at the end.
fn field<'a>(buf: &mut &'a [u8], number: u64) -> Option<&'a [u8]> {
    while !buf.is_empty() {
        let (tag, rest) = varint(buf);
        *buf = rest;
        let payload: Option<&[u8]> = match tag & 7 {
            0 => {
                *buf = varint(buf).1;
                None
            }
            1 => {
                *buf = &buf[8..];
                None
            }
            5 => {
                *buf = &buf[4..];
                None
            }
            2 => {
                let (len, rest) = varint(buf);
                let (payload, rest) = rest.split_at(len as usize);
                *buf = rest;
                Some(payload)
            }
            other => panic!("unexpected wire type {other}"),
        };
        if tag >> 3 == number {
            if let Some(p) = payload {
                return Some(p);
            }
        }
    }
    None
}

#[tokio::test]
async fn too_many_claimed_channels_close_3505() {
    let gw = builder().env("NATSGATE_CLIENT_CHANNEL_LIMIT", "2").start();
    // Exactly the limit: fine.
    let token = conn_token("alice", json!({"channels": ["a1", "a2"]}));
    let (_ok, connected) = connect_with(&gw, Protocol::Json, &token).await;
    assert_eq!(connected["subs"].as_object().map(|m| m.len()), Some(2), "{connected}");
    // One over in `subs`: 3505.
    let token = conn_token("alice", json!({"subs": {"b1": {}, "b2": {}, "b3": {}}}));
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    expect_close_on(&mut client, json!({"connect": {"token": token}}), 3505).await;
    let token = conn_token("alice", json!({"channels": ["c1", "c2", "c3"]}));
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    expect_close_on(&mut client, json!({"connect": {"token": token}}), 3505).await;
}

#[tokio::test]
async fn claimed_channel_in_unknown_namespace_refuses_the_connect_with_102() {
    let gw = builder().env("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true").start();
    let channel = b64_unique("news");
    let token = conn_token("alice", json!({"channels": [channel, "nope:x"]}));
    let mut alice = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let reply = alice.request(json!({"connect": {"token": token}})).await;
    assert_eq!(error_code(&reply), Some(102), "{reply}");

    // The refused connection must not keep the subscriptions made before
    // the unknown one: publications into them must not reach it ...
    let mut bob = user(&gw, "bob").await;
    expect_ok(&mut bob, json!({"publish": {"channel": channel, "data": {"leak": true}}})).await;
    match alice.next(Duration::from_millis(500)).await {
        Err(_) => {}
        Ok(message) => panic!(
            // Regression (was a bug): src/session/connect.rs sets `self.conn` (and joins the
            // channels one by one) before the unknown namespace fails the
            // connect, and src/session/mod.rs only marks `connect_refused`
            // when `self.conn` is None: the refused client stays registered,
            // subscribed and usable.
            "a client whose connect was refused received {message}"
        ),
    }
    // ... and it may not go on as if connected.
    expect_close_on(&mut alice, json!({"subscribe": {"channel": "open:x"}}), 3501).await;
}

// ---------------------------------------------------------------------------
// Connection limits

#[tokio::test]
async fn user_connection_limit_closes_3504() {
    let gw = builder().env("NATSGATE_CLIENT_USER_CONNECTION_LIMIT", "1").start();
    let (first, _) = connect_as(&gw, "alice").await;
    let mut second = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    expect_close_on(&mut second, json!({"connect": {"token": conn_token("alice", json!({}))}}), 3504).await;
    // Other users are not limited by alice's connection.
    let (_bob, _) = connect_as(&gw, "bob").await;
    // Anonymous clients are not counted as one user.
    let _anon1 = anonymous(&gw).await;
    let _anon2 = anonymous(&gw).await;

    // Once the first connection is gone, alice may connect again.
    first.close(1000, "bye").await;
    let url = gw.ws_url();
    eventually("alice may reconnect after her only connection closed", Duration::from_secs(5), || {
        let url = url.clone();
        async move {
            let mut client = WsClient::connect(&url, Protocol::Json).await;
            let reply = tokio::time::timeout(
                Duration::from_secs(2),
                client.request(json!({"connect": {"token": conn_token("alice", json!({}))}})),
            )
            .await
            .ok()?;
            reply.get("connect").map(|_| client)
        }
    })
    .await;
}

#[tokio::test]
async fn gateway_connection_limit_refuses_the_upgrade_with_503() {
    let gw = builder().env("NATSGATE_CLIENT_CONNECTION_LIMIT", "1").start();
    let (first, _) = connect_as(&gw, "alice").await;
    let err = match WsClient::try_connect(&gw.ws_url(), Protocol::Json).await {
        Ok(_) => panic!("second WebSocket accepted despite NATSGATE_CLIENT_CONNECTION_LIMIT=1"),
        Err(e) => e,
    };
    assert!(err.contains("503"), "expected HTTP 503, got: {err}");
    // A plain HTTP request (health) still works.
    let (status, _) = gw.http_get("/health").expect("GET /health");
    assert_eq!(status, 200);

    first.close(1000, "bye").await;
    let url = gw.ws_url();
    eventually("a WebSocket is accepted after the only one closed", Duration::from_secs(5), || {
        let url = url.clone();
        async move { WsClient::try_connect(&url, Protocol::Json).await.ok() }
    })
    .await;
}

// ---------------------------------------------------------------------------
// HTTP API and channels

#[tokio::test]
async fn api_publish_into_unknown_namespace_is_102() {
    let gw = gateway();
    let body = api(&gw, "publish", json!({"channel": "nope:room", "data": {"x": 1}})).await;
    // Regression (was a bug): natsgate answers {"result":{}} and publishes: src/api/methods.rs
    // `check_channel` checks only the length, not the namespace; Centrifugo
    // answers 102 "unknown channel".
    assert_eq!(body["error"]["code"], json!(102), "{body}");
    let body = api(&gw, "publish", json!({"channel": "open:room", "data": {"x": 1}})).await;
    assert!(body.get("error").is_none(), "{body}");
}

async fn api(gw: &Gateway, method: &str, params: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/api/{method}", gw.http_url()))
        .header("X-API-Key", API_KEY)
        .json(&params)
        .timeout(TIMEOUT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /api/{method}: {e}"));
    let status = response.status();
    let text = response.text().await.expect("API response body");
    assert_eq!(status.as_u16(), 200, "POST /api/{method} {params}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("API reply is not JSON ({e}): {text}"))
}

async fn api_publish(gw: &Gateway, channel: &str, data: Value) {
    let body = api(gw, "publish", json!({"channel": channel, "data": data})).await;
    assert!(body.get("error").is_none(), "API publish into {channel}: {body}");
}

// ---------------------------------------------------------------------------
// Configuration errors

/// Runs the binary with only `env` as NATSGATE_* configuration; returns its
/// exit status (None if it was still running after `timeout`, then killed)
/// and its stderr.
fn run_natsgate(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (Option<ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natsgate"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("NATSGATE_") {
            cmd.env_remove(key);
        }
    }
    let port = free_port().to_string();
    cmd.args(args)
        .env("NATSGATE_ADDRESS", "127.0.0.1")
        .env("NATSGATE_PORT", &port)
        .env("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let mut child = cmd.spawn().expect("spawn natsgate");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait natsgate") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&stderr_path).unwrap_or_default())
}

/// Bad channel configurations, each with words its error message must contain.
fn bad_channel_configs() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        ("NATSGATE_NAMESPACES", r#"[{"name":"x"}]"#.into(), vec!["NAMESPACES", "\"x\""]),
        ("NATSGATE_NAMESPACES", r#"[{"name":"bad name"}]"#.into(), vec!["NAMESPACES", "bad name"]),
        (
            "NATSGATE_NAMESPACES",
            r#"[{"name":"chat","allow_subscribe":true}]"#.into(),
            vec!["NAMESPACES", "chat", "unknown", "allow_subscribe"],
        ),
        (
            "NATSGATE_NAMESPACES",
            r#"[{"name":"chat","channel_regex":"("}]"#.into(),
            vec!["NAMESPACES", "chat", "channel_regex"],
        ),
        (
            "NATSGATE_NAMESPACES",
            r#"[{"name":"chat","history_size":10}]"#.into(),
            vec!["NAMESPACES", "chat", "history_ttl"],
        ),
        (
            "NATSGATE_NAMESPACES",
            r#"[{"name":"chat","join_leave":true}]"#.into(),
            vec!["NAMESPACES", "chat", "presence"],
        ),
        ("NATSGATE_NAMESPACES", r#"[{"name":"chat"},{"name":"chat"}]"#.into(), vec!["NAMESPACES", "chat", "twice"]),
        ("NATSGATE_NAMESPACES", r#"[{"name":"chat""#.into(), vec!["NAMESPACES"]),
        ("NATSGATE_NAMESPACES", r#"{"name":"chat"}"#.into(), vec!["NAMESPACES"]),
        ("NATSGATE_CHANNEL_REGEX", "(".into(), vec!["channel_regex"]),
        ("NATSGATE_HISTORY_SIZE", "10".into(), vec!["history_ttl"]),
    ]
}

#[test]
fn bad_channel_config_fails_checkconfig_with_a_named_problem() {
    for (var, value, words) in bad_channel_configs() {
        let (status, stderr) = run_natsgate(&["checkconfig"], &[(var, &value)], Duration::from_secs(10));
        let status = status.unwrap_or_else(|| panic!("checkconfig with {var}={value} still running after 10 s"));
        assert_eq!(status.code(), Some(78), "checkconfig with {var}={value}: {status}; stderr: {stderr}");
        for word in words {
            assert!(stderr.contains(word), "{var}={value}: stderr does not name {word:?}: {stderr}");
        }
    }
    // The good configuration passes.
    let (status, stderr) =
        run_natsgate(&["checkconfig"], &[("NATSGATE_NAMESPACES", &namespaces())], Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "checkconfig on the test namespaces: {stderr}");
}

#[test]
fn bad_channel_config_stops_the_server_quickly() {
    for (var, value, words) in bad_channel_configs() {
        let started = Instant::now();
        let (status, stderr) = run_natsgate(&[], &[(var, &value)], Duration::from_secs(5));
        let status =
            status.unwrap_or_else(|| panic!("natsgate with {var}={value} still serving after 5 s; stderr: {stderr}"));
        assert!(!status.success(), "natsgate with {var}={value} exited successfully; stderr: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(5));
        for word in words {
            assert!(stderr.contains(word), "{var}={value}: stderr does not name {word:?}: {stderr}");
        }
    }
}

/// Namespaces from a JSON config file (`NATSGATE_CONFIG`), when the binary
/// supports one.
#[tokio::test]
async fn namespaces_from_a_config_file() {
    let help = Command::new(env!("CARGO_BIN_EXE_natsgate")).arg("--help").output().expect("natsgate --help");
    if !String::from_utf8_lossy(&help.stdout).contains("--config") {
        eprintln!("natsgate has no --config: skipping");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file: PathBuf = dir.path().join("natsgate.json");
    std::fs::write(
        &file,
        json!({
            "token_hmac_secret_key": SECRET,
            "namespaces": [{"name": "filens", "allow_subscribe_for_client": true}],
        })
        .to_string(),
    )
    .expect("write config file");
    let gw = Gateway::builder().env("NATSGATE_CONFIG", file.to_str().expect("utf-8 path")).start();
    let mut alice = user(&gw, "alice").await;
    alice.subscribe("filens:room").await;
    expect_error(&mut alice, json!({"subscribe": {"channel": "room"}}), 103).await;
    expect_error(&mut alice, json!({"subscribe": {"channel": "chat:room"}}), 102).await;

    // A bad namespace in the file: checkconfig names the problem.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, json!({"namespaces": [{"name": "chat", "channel_regex": "("}]}).to_string()).expect("write");
    let (status, stderr) =
        run_natsgate(&["checkconfig", "--config", bad.to_str().expect("utf-8")], &[], Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(78), "stderr: {stderr}");
    assert!(stderr.contains("channel_regex"), "{stderr}");
}
