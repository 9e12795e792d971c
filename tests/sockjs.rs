//! SockJS at `/connection/sockjs` (`NATSGATE_SOCKJS`): centrifuge-js with
//! sockjs-client over websocket, xhr-streaming and xhr-polling across two
//! gateways on one nats-server, and bad input on the SockJS endpoints
//! (runs `node --test` on `tests/js/scenarios/sockjs.mjs` and
//! `sockjs_bad_input.mjs`). Also: the endpoint
//! is off unless enabled.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};
use common::{Gateway, GatewayBuilder, NatsServer, SECRET};
use std::time::Duration;

const API_KEY: &str = "sockjs-test-key";
const SCENARIOS: [&str; 2] = ["scenarios/sockjs.mjs", "scenarios/sockjs_bad_input.mjs"];
const BODY_LIMIT: &str = "4096";

fn gateway(nats: &NatsServer, name: &str) -> GatewayBuilder {
    let namespaces = r#"[{"name":"sj","history_size":20,"history_ttl":"60s","allow_recovery":true,"presence":true,
        "allow_subscribe_for_client":true,"allow_publish_for_client":true,"allow_history_for_subscriber":true,
        "allow_presence_for_subscriber":true}]"#;
    Gateway::builder().permissive().nats(nats).envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_SOCKJS", "true"),
        ("NATSGATE_API_KEY", API_KEY),
        ("NATSGATE_NAMESPACES", namespaces),
        ("NATSGATE_WEBSOCKET_MESSAGE_SIZE_LIMIT", BODY_LIMIT),
        // A refresh that did not take would end the connection (3005) 1 s
        // after the short token expires, within the token test's wait.
        ("NATSGATE_CLIENT_EXPIRED_CLOSE_DELAY", "1s"),
    ])
}

#[test]
fn centrifuge_js_over_sockjs_transports_across_two_gateways() {
    let dir = js_dir();
    for package in ["centrifuge", "sockjs-client", "ws"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "tests/js/node_modules/{package} is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
        );
    }
    let nats = NatsServer::start();
    let a = gateway(&nats, "gw-a").start();
    let b = gateway(&nats, "gw-b").start();
    let sockjs = |g: &Gateway| format!("{}/connection/sockjs", g.http_url());
    let env = [
        ("GATEWAY_URLS", format!("{},{}", a.ws_url(), b.ws_url())),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("SOCKJS_URLS", format!("{},{}", sockjs(&a), sockjs(&b))),
        ("API_URL", format!("{}/api", b.http_url())),
        ("API_KEY", API_KEY.to_string()),
        ("CHANNEL_NS", "sj".to_string()),
        ("BODY_LIMIT", BODY_LIMIT.to_string()),
    ];
    run_node_tests(&SCENARIOS, &env, "centrifuge-js over SockJS");
    // The gateways lived through the bad input.
    for g in [&a, &b] {
        assert_eq!(g.http_get("/health").expect("health").0, 200);
    }
}

#[test]
fn sockjs_is_off_unless_enabled() {
    let gateway = Gateway::builder().permissive().start();
    let (status, _) = gateway.http_get("/connection/sockjs/info").expect("request");
    assert_eq!(status, 404);
    let enabled = Gateway::builder().permissive().env("NATSGATE_SOCKJS", "true").start();
    let (status, body) = enabled.http_get("/connection/sockjs/info").expect("request");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&body).expect("info is JSON");
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    let (status, body) = enabled.http_get("/connection/sockjs").expect("request");
    assert_eq!((status, body.as_str()), (200, "Welcome to SockJS!\n"));
}

/// Raw HTTP/1.0 `POST` on the gateway's port; returns (status, body). The
/// server closes the connection at the end of the response.
fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    write!(stream, "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the whole response");
    let status = response.get(9..12).and_then(|s| s.parse().ok()).expect("HTTP status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled or labelled sample in `/metrics` text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A SockJS session speaks the JSON protocol over `xhr`/`xhr_send`, counts
/// in `natsgate_client_connections` and under `transport="sockjs"`, and is
/// closed with `c[3001,"shutdown"]` on SIGTERM, its streaming response
/// ending so that the gateway exits.
#[test]
fn sockjs_session_counts_as_a_connection_and_drains_with_3001() {
    let mut gateway = Gateway::builder().permissive().env("NATSGATE_SOCKJS", "true").start();
    let port = gateway.port();
    let base = "/connection/sockjs/000/metricsess";
    assert_eq!(post(port, &format!("{base}/xhr"), ""), (200, "o\n".to_string()));
    let token = common::hs256_token(SECRET, "mia", Some(3600), serde_json::json!({}));
    let connect = serde_json::json!({"id": 1, "connect": {"token": token}}).to_string();
    let payload = serde_json::json!([connect]).to_string();
    assert_eq!(post(port, &format!("{base}/xhr_send"), &payload).0, 204);
    let (status, reply) = post(port, &format!("{base}/xhr"), "");
    assert_eq!(status, 200);
    let frame: Vec<String> = serde_json::from_str(reply.strip_prefix('a').expect("a message frame").trim_end())
        .expect("a JSON array of strings");
    let connect_reply: serde_json::Value = serde_json::from_str(&frame[0]).expect("the connect reply");
    assert_eq!(connect_reply["id"], 1);
    assert!(connect_reply["connect"]["client"].is_string(), "{connect_reply}");

    let (_, metrics) = gateway.http_get("/metrics").expect("metrics");
    assert_eq!(sample(&metrics, "natsgate_client_connections"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, r#"natsgate_transport_messages_received_total{transport="sockjs"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"natsgate_transport_messages_sent_total{transport="sockjs"}"#), Some(1.0));

    // A streaming receiver is attached when the gateway is told to stop.
    let streaming = std::thread::spawn(move || post(port, &format!("{base}/xhr_streaming"), ""));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gateway.log().contains("sockjs XhrStreaming receiver attached") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway.sigterm();
    let (status, body) = streaming.join().expect("streaming request");
    assert_eq!(status, 200);
    assert!(body.ends_with("\nc[3001,\"shutdown\"]\n"), "{body:?}");
    assert!(gateway.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "gateway exits cleanly");
}
