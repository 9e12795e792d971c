//! Delta compression and tags filters (issue #20) across two gateways on
//! NATS: A takes the API calls, B holds the raw WebSocket clients, so every
//! publication crosses NATS and the history stream. Every publication a
//! delta subscriber rebuilds (fossil, as the SDKs apply it) equals the full
//! one, live and after recovery; the bytes on the wire with and without delta
//! are printed; tags filters deliver exactly the matching publications; bad
//! filters and delta types get Centrifugo's error and disconnect.

use natsgate_test_support as common;

use common::pair::{api_result, Backend, Pair};
use common::{hs256_token, Gateway, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::{json, Value};

const API_KEY: &str = "delta-test-key";
const NAMESPACES: &str = r#"[
  {"name":"dl","history_size":100,"history_ttl":"60s","allow_recovery":true,"allow_subscribe_for_client":true,
   "allowed_delta_types":["fossil"],"allow_tags_filter":true,"allow_history_for_subscriber":true},
  {"name":"plain","history_size":100,"history_ttl":"60s","allow_subscribe_for_client":true}
]"#;

fn start() -> (Pair, reqwest::Client) {
    let pair = Pair::start(Backend::Nats, |name| {
        Gateway::builder().permissive().envs(&[
            ("NATSGATE_NAME", name),
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_NAMESPACES", NAMESPACES),
        ])
    });
    (pair, reqwest::Client::new())
}

async fn client(gw: &Gateway) -> WsClient {
    let mut c = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    c.connect_token(&hs256_token(SECRET, "u", None, json!({}))).await;
    c
}

/// A publication of a growing document: each one changes a little.
fn document(n: u64) -> Value {
    let items: Vec<Value> =
        (0..40).map(|i| json!({"id": i, "name": format!("item {i}"), "price": i * 10 + n % 3})).collect();
    json!({"n": n, "title": "a document that changes a little with every publication", "items": items})
}

/// Rebuilds a delta subscriber's publication: `(full data, wire bytes)`.
fn rebuild(publication: &Value, previous: &mut Vec<u8>) -> (Value, usize) {
    let text = publication["data"].as_str().expect("delta subscribers get data as a JSON string");
    let bytes = if publication["delta"] == json!(true) {
        fossil_delta::apply(&previous[..], text.as_bytes()).expect("a delta that applies")
    } else {
        text.as_bytes().to_vec()
    };
    *previous = bytes.clone();
    (serde_json::from_slice(&bytes).expect("JSON data"), text.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_rebuild_every_publication_live_and_after_recovery() {
    let (pair, http) = start();
    let publish = |n: u64| {
        let (http, a) = (http.clone(), &pair.a);
        async move {
            api_result(&http, a, API_KEY, "publish", &json!({"channel": "dl:doc", "data": document(n), "delta": true}))
                .await
        }
    };
    let mut plain = client(pair.b()).await;
    plain.subscribe("dl:doc").await;
    // Neither positioned nor recoverable: delta granted, every publication
    // whole (as a JSON string), as from Centrifugo.
    let mut unpositioned = client(pair.b()).await;
    let reply = unpositioned.request(json!({"subscribe": {"channel": "dl:doc", "delta": "fossil"}})).await;
    assert_eq!(reply["subscribe"]["delta"], json!(true), "{reply}");
    let mut c = client(pair.b()).await;
    let reply = c.request(json!({"subscribe": {"channel": "dl:doc", "delta": "fossil", "recoverable": true}})).await;
    assert_eq!(reply["subscribe"]["delta"], json!(true), "{reply}");
    let (mut previous, mut wire, mut full, mut deltas) = (Vec::new(), 0, 0, 0);
    for n in 0..20 {
        publish(n).await;
        let p = c.recv_publication("dl:doc", TIMEOUT).await;
        deltas += usize::from(p["delta"] == json!(true));
        let (data, bytes) = rebuild(&p, &mut previous);
        assert_eq!(data, document(n));
        wire += bytes;
        let q = plain.recv_publication("dl:doc", TIMEOUT).await;
        assert_eq!(q["data"], document(n), "plain subscribers get plain data");
        assert!(q.get("delta").is_none());
        full += serde_json::to_vec(&q["data"]).unwrap().len();
        let u = unpositioned.recv_publication("dl:doc", TIMEOUT).await;
        assert_eq!(u.get("delta"), None, "whole to a subscriber without position: {u}");
        assert_eq!(rebuild(&u, &mut Vec::new()).0, document(n));
    }
    assert_eq!(deltas, 19, "all but the first publication are deltas");
    // Every item's price changes with n, so a delta is about a quarter of the data.
    assert!(wire * 2 < full, "deltas are much smaller: {wire} vs {full}");
    println!(
        "delta: 20 publications, {wire} bytes of data with delta, {full} without ({:.1}%)",
        wire as f64 * 100.0 / full as f64
    );

    // Away, then back with recovery: the missed ones come as deltas too.
    let offset = previous_offset(&mut c).await;
    drop(c);
    for n in 20..25 {
        publish(n).await;
    }
    let mut c = client(pair.b()).await;
    let epoch = reply["subscribe"]["epoch"].clone();
    let reply = c
        .request(json!({"subscribe": {"channel": "dl:doc", "delta": "fossil", "recoverable": true, "recover": true,
            "offset": offset, "epoch": epoch}}))
        .await;
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], json!(true), "{reply}");
    let recovered = result["publications"].as_array().unwrap();
    assert_eq!(recovered.len(), 5);
    assert_eq!(recovered[0].get("delta"), None, "the first recovered is whole");
    for (i, p) in recovered.iter().enumerate() {
        assert_eq!(rebuild(p, &mut previous).0, document(20 + i as u64));
    }
    publish(25).await;
    let p = c.recv_publication("dl:doc", TIMEOUT).await;
    assert_eq!(p["delta"], json!(true), "the next live one is a delta after a recovery");
    assert_eq!(rebuild(&p, &mut previous).0, document(25));
}

async fn previous_offset(c: &mut WsClient) -> u64 {
    let reply = c.request(json!({"history": {"channel": "dl:doc", "limit": 0}})).await;
    reply["history"]["offset"].as_u64().unwrap_or_else(|| panic!("{reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_filters_deliver_exactly_the_matching_publications() {
    let (pair, http) = start();
    let mut c = client(pair.b()).await;
    let tf = json!({"op": "or", "nodes": [
        {"key": "kind", "cmp": "eq", "val": "trade"},
        {"op": "and", "nodes": [{"key": "price", "cmp": "gte", "val": "100.5"}, {"key": "sym", "cmp": "sw", "val": "BTC"}]}
    ]});
    let reply = c.request(json!({"subscribe": {"channel": "dl:t", "tf": tf}})).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let cases = [
        (json!({"kind": "trade"}), true),
        (json!({"kind": "quote"}), false),
        (json!({"price": "100.50", "sym": "BTCUSD"}), true),
        (json!({"price": "99", "sym": "BTCUSD"}), false),
        (json!({"price": "1000", "sym": "ETH"}), false),
        (json!({}), false),
    ];
    for (n, (tags, _)) in cases.iter().enumerate() {
        let params = json!({"channel": "dl:t", "data": {"n": n}, "tags": tags});
        api_result(&http, &pair.a, API_KEY, "publish", &params).await;
    }
    api_result(
        &http,
        &pair.a,
        API_KEY,
        "publish",
        &json!({"channel": "dl:t", "data": {"n": "end"}, "tags": {"kind": "trade"}}),
    )
    .await;
    let mut got = Vec::new();
    loop {
        let p = c.recv_publication("dl:t", TIMEOUT).await;
        if p["data"]["n"] == json!("end") {
            break;
        }
        got.push(p["data"]["n"].as_u64().unwrap());
    }
    let expected: Vec<u64> = cases.iter().enumerate().filter(|(_, (_, pass))| *pass).map(|(n, _)| n as u64).collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_and_delta_types_get_centrifugos_answers() {
    let (pair, _http) = start();
    let mut c = client(pair.b()).await;
    for tf in [
        json!({"key": "k", "cmp": "eq"}),
        json!({"op": "not", "nodes": []}),
        json!({"key": "k", "cmp": "like", "val": "x"}),
    ] {
        let reply = c.request(json!({"subscribe": {"channel": "dl:bad", "tf": tf}})).await;
        assert_eq!(reply["error"]["code"], json!(107), "{tf}: {reply}");
    }
    let reply = c.request(json!({"subscribe": {"channel": "plain:x", "tf": {"key": "k", "cmp": "ex"}}})).await;
    assert_eq!(reply["error"]["code"], json!(107), "tags filter not allowed: {reply}");
    let reply = c.request(json!({"subscribe": {"channel": "plain:x", "delta": "fossil"}})).await;
    assert_eq!(reply["subscribe"].get("delta"), None, "not allowed: subscribed without delta: {reply}");
    c.send_json(r#"{"id":99,"subscribe":{"channel":"dl:x","delta":"zstd"}}"#).await;
    assert_eq!(c.expect_close(TIMEOUT).await.0, 3501, "an unknown delta type closes the connection");
}
