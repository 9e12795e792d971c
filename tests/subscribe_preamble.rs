//! The checks every kind of subscribe makes before anything else (stream,
//! map and shared poll subscriptions share them: `Session::subscribe_preamble`):
//! an empty channel disconnects with 3501, a channel too long is 107, the
//! shared poll type checks (108 for type 4 elsewhere, 107 for another type
//! on a shared poll channel) come next, then 105 for a channel already
//! subscribed and 106 past `client_channel_limit`. Each case is played over
//! JSON and Protobuf against natsgate and, as the judge, against Centrifugo
//! v6.9.1 with the same configuration; both must give the same code.
//!
//! Not played: a shared poll channel longer than `channel_max_length`,
//! where natsgate answers 107 and Centrifugo checks no length (README
//! Deviations).

use natsgate_test_support as common;

use common::sdk_target::{scenario_centrifugo_config, scenario_gateway, SdkTarget};
use common::{free_port, hs256_token, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::{json, Value};

const API_KEY: &str = "subscribe-preamble-key";
const SP_SECRET: &str = "subscribe-preamble-sp-secret";
/// `client_channel_limit`: two subscriptions, then 106.
const CHANNEL_LIMIT: usize = 2;
/// `channel_max_length`.
const MAX_LENGTH: usize = 32;

/// A stream namespace, a persistent map and a shared poll namespace.
fn namespaces() -> Value {
    json!([
        {"name": "st", "allow_subscribe_for_client": true},
        {"name": "mp", "subscription_type": "map", "allow_subscribe_for_client": true, "map": {"mode": "persistent"}},
        {"name": "sp", "subscription_type": "shared_poll", "allow_subscribe_for_client": true,
         "shared_poll": {"refresh_interval": "1s"}}
    ])
}

/// Where the shared poll refresh proxy would be: nothing listens there, and
/// no case tracks a key, so it is never called.
fn refresh_endpoint() -> String {
    format!("http://127.0.0.1:{}/refresh", free_port())
}

fn subscribe(channel: &str, kind: i32) -> Value {
    match kind {
        0 => json!({"subscribe": {"channel": channel}}),
        1 => json!({"subscribe": {"channel": channel, "type": 1, "phase": 2}}),
        _ => json!({"subscribe": {"channel": channel, "type": kind}}),
    }
}

async fn connected(url: &str, protocol: Protocol) -> WsClient {
    let mut client = WsClient::connect(url, protocol).await;
    client.connect_token(&hs256_token(SECRET, "preamble", None, json!({}))).await;
    client
}

/// Asserts `command` is answered with error `code`, or with 0 by a
/// subscribe result.
async fn expect(client: &mut WsClient, command: Value, code: u64, server: &str) {
    let reply = client.request(command.clone()).await;
    let got = match reply.get("subscribe") {
        Some(_) => 0,
        None => reply["error"]["code"].as_u64().unwrap_or(u64::MAX),
    };
    assert_eq!(got, code, "{server} {:?}: {command} -> {reply}", client.protocol());
}

/// Every case on the server at `url`; `server` names it in failures.
async fn cases(url: &str, server: &str) {
    let long = |ns: &str| format!("{ns}:{}", "x".repeat(MAX_LENGTH));
    for protocol in [Protocol::Json, Protocol::Protobuf] {
        // An empty channel closes the connection, whatever the type.
        for kind in [0, 1, 4] {
            let mut client = connected(url, protocol).await;
            client.send_json(&json!({"id": 9, "subscribe": {"channel": "", "type": kind}}).to_string()).await;
            let (code, reason) = client.expect_close(TIMEOUT).await;
            assert_eq!(code, 3501, "{server} {protocol:?}: empty channel, type {kind}: closed {code} {reason:?}");
        }

        let mut c = connected(url, protocol).await;
        // The shared poll type checks, before anything about the connection's channels.
        expect(&mut c, subscribe("st:a", 4), 108, server).await;
        expect(&mut c, subscribe("sp:a", 0), 107, server).await;
        expect(&mut c, subscribe("sp:a", 1), 107, server).await;
        // Too long, for a stream and a map channel.
        expect(&mut c, subscribe(&long("st"), 0), 107, server).await;
        expect(&mut c, subscribe(&long("mp"), 1), 107, server).await;
        // Subscribed, then already subscribed, for each kind.
        expect(&mut c, subscribe("st:a", 0), 0, server).await;
        expect(&mut c, subscribe("st:a", 0), 105, server).await;
        expect(&mut c, subscribe("mp:a", 1), 0, server).await;
        expect(&mut c, subscribe("mp:a", 1), 105, server).await;
        // At the limit (two channels): 106 for every kind, but the type
        // checks and the length still come first, and an already subscribed
        // channel is 105.
        expect(&mut c, subscribe("st:b", 0), 106, server).await;
        expect(&mut c, subscribe("mp:b", 1), 106, server).await;
        expect(&mut c, subscribe("sp:b", 4), 106, server).await;
        expect(&mut c, subscribe("st:a", 4), 108, server).await;
        expect(&mut c, subscribe("sp:b", 0), 107, server).await;
        expect(&mut c, subscribe(&long("st"), 0), 107, server).await;
        expect(&mut c, subscribe("st:a", 0), 105, server).await;

        let mut s = connected(url, protocol).await;
        expect(&mut s, subscribe("sp:a", 4), 0, server).await;
        expect(&mut s, subscribe("sp:a", 4), 105, server).await;
        expect(&mut s, subscribe("sp:a", 0), 107, server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_preamble_codes_and_order_on_natsgate() {
    let gw = scenario_gateway("gw-preamble", API_KEY, &namespaces())
        .envs(&[
            ("NATSGATE_CLIENT_CHANNEL_LIMIT", &CHANNEL_LIMIT.to_string()),
            ("NATSGATE_CHANNEL_MAX_LENGTH", &MAX_LENGTH.to_string()),
            ("NATSGATE_SHARED_POLL_HMAC_SECRET_KEY", SP_SECRET),
            ("NATSGATE_PROXY_SHARED_POLL_REFRESH_ENDPOINT", &refresh_endpoint()),
        ])
        .start();
    cases(&gw.ws_url(), "natsgate").await;
}

/// The judge: the same cases against Centrifugo v6.9.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_preamble_codes_and_order_on_centrifugo() {
    let mut config = scenario_centrifugo_config(API_KEY, &namespaces());
    config["client"]["channel_limit"] = json!(CHANNEL_LIMIT);
    config["channel"]["max_length"] = json!(MAX_LENGTH);
    config["shared_poll"] = json!({"hmac_secret_key": SP_SECRET});
    config["channel"]["proxy"] = json!({"shared_poll_refresh": {"endpoint": refresh_endpoint(), "timeout": "1s"}});
    let test = "subscribe_preamble_codes_and_order_on_centrifugo";
    let Some(centrifugo) = SdkTarget::centrifugo_or_skip(test, &config) else { return };
    cases(&centrifugo.urls[0], "Centrifugo").await;
}
