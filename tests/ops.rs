//! Operations: Prometheus metrics, JSON logs without secrets, and a drain
//! that moves centrifuge-js to another gateway.

use natsgate_test_support as common;

use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Parses Prometheus text format strictly enough to catch malformed output:
/// every non-comment line is `name{labels} value` with a float value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix('#') {
            let kind = rest.split_whitespace().next().unwrap_or("");
            assert!(kind == "HELP" || kind == "TYPE", "bad comment line: {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap_or("");
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        assert!(!series.contains('{') || series.ends_with('}'), "bad labels: {line}");
        out.insert(series.to_string(), value);
    }
    out
}

#[tokio::test]
async fn metrics_report_exact_counts_in_prometheus_format() {
    let gw = Gateway::builder().permissive().env("NATSGATE_INTERNAL_PORT", &free_port().to_string()).start();
    const N: usize = 5;
    let mut clients = Vec::new();
    for i in 0..N {
        let mut c = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
        c.set_auto_pong(true);
        c.connect_token(&hs256_token(SECRET, &format!("user{}", i % 3), None, json!(null))).await;
        c.subscribe("metrics_a").await;
        if i == 0 {
            c.subscribe("metrics_b").await;
        }
        clients.push(c);
    }
    let reply = clients[0].request(json!({"publish": {"channel": "metrics_a", "data": {"x": 1}}})).await;
    assert!(reply.get("publish").is_some(), "{reply}");

    let (status, body) =
        common::gateway::http_get(gw.internal_port(), "/metrics").expect("GET /metrics on the internal port");
    assert_eq!(status, 200, "{body}");
    let m = parse_metrics(&body);
    assert_eq!(m.get("natsgate_client_connections"), Some(&(N as f64)), "{body}");
    assert_eq!(m.get("natsgate_client_users"), Some(&3.0), "{body}");
    assert_eq!(m.get("natsgate_client_subscriptions"), Some(&((N + 1) as f64)), "{body}");
    assert_eq!(m.get("natsgate_channels"), Some(&2.0), "{body}");
    let received = m.get("natsgate_transport_messages_received_total{transport=\"websocket\"}").copied();
    assert!(received.is_some_and(|r| r >= (2 * N + 2) as f64), "{body}");
    assert!(body.contains("natsgate_client_command_duration_seconds_bucket"), "{body}");
    assert_eq!(m.get("natsgate_nats_connected"), Some(&1.0), "{body}");

    // One client leaves: the gauges follow exactly.
    let leaving = clients.pop().expect("a client");
    leaving.close(1000, "bye").await;
    let body = eventually("connections gauge drops to N-1", Duration::from_secs(5), || async {
        let (_, body) = common::gateway::http_get(gw.internal_port(), "/metrics").ok()?;
        (parse_metrics(&body).get("natsgate_client_connections") == Some(&((N - 1) as f64))).then_some(body)
    })
    .await;
    assert_eq!(parse_metrics(&body).get("natsgate_client_subscriptions"), Some(&(N as f64)), "{body}");
}

#[tokio::test]
async fn json_logs_never_show_secrets() {
    let secret = "s3cr3t-hmac-value-that-must-not-leak";
    let api_key = "api-key-that-must-not-leak";
    let mut gw = Gateway::builder()
        .env("NATSGATE_TOKEN_HMAC_SECRET_KEY", secret)
        .env("NATSGATE_API_KEY", api_key)
        .env("NATSGATE_LOG_FORMAT", "json")
        .env("NATSGATE_LOG_LEVEL", "trace")
        .start();
    // Traffic that logs: a bad token, a good one, API calls with right and wrong keys.
    let mut c = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    c.send_json(&format!(r#"{{"id":1,"connect":{{"token":"{}x"}}}}"#, hs256_token(secret, "u", None, json!(null))))
        .await;
    let _ = c.expect_close(TIMEOUT).await;
    let http = reqwest::Client::new();
    for key in [api_key, "wrong"] {
        let _ = http
            .post(format!("{}/api/info", gw.http_url()))
            .header("X-API-Key", key)
            .body("{}")
            .send()
            .await
            .expect("API call");
    }
    gw.sigterm();
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some(), "gateway exits on SIGTERM");
    let log = gw.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.trim_start().starts_with('{')).collect();
    assert!(lines.len() >= 3, "JSON log lines expected:\n{log}");
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
    assert!(!log.contains(secret), "HMAC secret in the log:\n{log}");
    assert!(!log.contains(api_key), "API key in the log:\n{log}");
}

#[test]
fn drain_moves_centrifuge_js_to_another_gateway() {
    let nats = NatsServer::start();
    let mut a = Gateway::builder()
        .permissive()
        .nats(&nats)
        .env("NATSGATE_DRAIN_PERIOD", "200ms")
        .env("NATSGATE_SHUTDOWN_TIMEOUT", "3s")
        .start();
    let b = Gateway::builder().permissive().nats(&nats).start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js");
    assert!(dir.join("node_modules").join("centrifuge").is_dir(), "run `npm ci --prefix tests/js` first");
    let ready = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ready.path(), "").expect("clear ready file");
    let output = tempfile::NamedTempFile::new().expect("temp file");
    let mut node = Command::new("node")
        .args(["--test", "--test-reporter=spec", "--test-force-exit", "scenarios/drain.mjs"])
        .current_dir(&dir)
        .env("BACKENDS", format!("127.0.0.1:{},127.0.0.1:{}", a.port(), b.port()))
        .env("TOKEN_SECRET", SECRET)
        .env("READY_FILE", ready.path())
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(output.as_file().try_clone().expect("clone"))
        .stderr(output.as_file().try_clone().expect("clone"))
        .spawn()
        .expect("start node");

    // When node is connected to A, drain A.
    let started = Instant::now();
    while std::fs::read_to_string(ready.path()).unwrap_or_default().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "node never connected");
        if let Ok(Some(status)) = node.try_wait() {
            panic!("node ended early ({status}): {}", std::fs::read_to_string(output.path()).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = Instant::now();
    a.sigterm();
    let exit = a.wait_exit(Duration::from_secs(5));
    assert!(exit.is_some_and(|s| s.success()), "A exits cleanly within the shutdown timeout: {exit:?}");
    assert!(term.elapsed() < Duration::from_secs(4), "A took {:?}", term.elapsed());

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = node.try_wait().expect("node status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            panic!("node did not finish: {}", std::fs::read_to_string(output.path()).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(output.path()).unwrap_or_default();
    assert!(status.success(), "centrifuge-js drain scenario failed:\n{out}");
}

/// A gateway started before NATS opens its ports at once: `/health` 200,
/// `/ready` 503, clients refused, NATS retried; once a nats-server appears
/// on the configured port it becomes ready and serves clients. A second one
/// still waiting for NATS exits at once on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_started_before_nats_waits_unready_then_serves() {
    let nats_port = free_port();
    let internal = free_port();
    let mut gw = Gateway::builder()
        .permissive()
        // Comma-separated servers, the first one never up.
        .env("NATSGATE_NATS_URL", &format!("nats://127.0.0.1:{},nats://127.0.0.1:{nats_port}", free_port()))
        .env("NATSGATE_INTERNAL_PORT", &internal.to_string())
        .env(
            "NATSGATE_NAMESPACES",
            r#"[{"name":"hist","history_size":10,"history_ttl":"60s","allow_subscribe_for_client":true}]"#,
        )
        .until_live()
        .start();
    let (status, body) = common::gateway::http_get(internal, "/health").expect("GET /health");
    assert_eq!(status, 200, "{body}");
    let (status, body) = common::gateway::http_get(internal, "/ready").expect("GET /ready");
    assert_eq!((status, body.as_str()), (503, r#"{"ready":false,"reason":"connecting to NATS"}"#));
    let (status, _) = gw.http_get("/connection/websocket").expect("GET on the client port");
    assert_eq!(status, 503, "no clients before NATS");
    eventually("a logged retry", Duration::from_secs(5), || async {
        gw.log().contains("NATS not reachable").then_some(())
    })
    .await;

    // NATS appears on the port the gateway was given.
    let _nats = tokio::task::block_in_place(|| NatsServer::start_on(nats_port));
    let started = Instant::now();
    eventually("/ready 200 once NATS is up", Duration::from_secs(10), || async {
        let (status, _) = common::gateway::http_get(internal, "/ready").ok()?;
        (status == 200).then_some(())
    })
    .await;
    eprintln!("ready {:?} after NATS started", started.elapsed());
    let mut c = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    c.connect_token(&hs256_token(SECRET, "alice", None, json!(null))).await;
    c.subscribe("hist:news").await;
    assert!(gw.try_exit_status().is_none(), "still running");

    // Another gateway, NATS never coming: SIGTERM ends it at once.
    let mut waiting = Gateway::builder()
        .permissive()
        .env("NATSGATE_NATS_URL", &format!("nats://127.0.0.1:{}", free_port()))
        .env("NATSGATE_INTERNAL_PORT", &free_port().to_string())
        .until_live()
        .start();
    let (status, _) = waiting.http_get("/ready").expect("GET /ready on the client port");
    assert_eq!(status, 503);
    let signalled = Instant::now();
    waiting.sigterm();
    let exit = tokio::task::block_in_place(|| waiting.wait_exit(Duration::from_secs(3)));
    let exit = exit.unwrap_or_else(|| panic!("no exit within 3 s of SIGTERM:\n{}", waiting.log()));
    assert!(exit.success(), "{exit}");
    assert!(signalled.elapsed() < Duration::from_secs(2), "took {:?}", signalled.elapsed());
    gw.sigterm();

    // A URL that cannot parse is not retried: configuration error, at once,
    // without echoing the URL (it may hold a password).
    let err = Gateway::builder().env("NATSGATE_NATS_URL", "nats://user:pa55@[bad").try_start().err();
    let err = err.expect("an unparsable NATS URL stops startup");
    assert!(err.contains("exit status: 78"), "{err}");
    let log = err.split("----- natsgate log").nth(1).expect("the gateway's log");
    assert!(log.contains("NATSGATE_NATS_URL: NATS URL #1"), "{log}");
    assert!(!log.contains("pa55"), "password echoed in the log: {log}");
}
