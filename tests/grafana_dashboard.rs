//! The Grafana dashboard (deploy/grafana/natsgate-dashboard.json) queries
//! only what gateways export: every metric name in its PromQL expressions
//! (panel targets and template variable queries) appears on a live
//! gateway's `/metrics`, as the exact sample name Prometheus would store
//! (`_bucket`, `_sum`, `_count` for histograms).
//!
//! Labelled series appear only once something happened (a disconnect code, a
//! drop reason, a command method), so the test makes each happen first:
//! a client connects and subscribes, the API publishes, a non-JSON body is
//! published straight to NATS (dropped for JSON clients), the client leaves.

use natsgate_test_support as common;

use common::pair::api_result;
use common::{free_port, hs256_token, Gateway, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

const API_KEY: &str = "dashboard-test-api-key";

fn dashboard() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/natsgate-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every PromQL expression in the dashboard, with where it is: panel
/// targets (nested rows included) and the metric selector inside template
/// variables' `label_values(<selector>, <label>)`.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("panel {title:?}"), expr.to_string()));
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let query = var["query"]["query"].as_str().or_else(|| var["query"].as_str()).unwrap_or("");
        if var["type"] == "query" {
            let selector = label_values_selector(query)
                .unwrap_or_else(|| panic!("variable {}: query {query:?} is not label_values(...)", var["name"]));
            out.push((format!("variable {}", var["name"]), selector.to_string()));
        }
    }
    out
}

/// `label_values(m{a="b"}, label)` -> `m{a="b"}`; `label_values(label)` has
/// no selector and is refused (it would not depend on natsgate's metrics).
fn label_values_selector(query: &str) -> Option<&str> {
    let inner = query.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim())
}

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// The metric names an expression selects. Drops, in order: string
/// literals (label values may hold anything, parentheses too), Grafana
/// variables (`$instance`, `${x}`, `$__rate_interval`), label matchers
/// `{...}`, ranges and subqueries `[...]`, grouping label lists
/// (`by (...)`, `on (...)`, ...); what is left are identifiers, numbers,
/// operators and parentheses, and an identifier not followed by `(` nor a
/// keyword nor part of a number or duration is a metric name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut chars = expr.chars().peekable();
    // Strings, then variables (they may sit inside braces or brackets).
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                text.push_str("\"\"");
            }
            '$' => {
                if chars.peek() == Some(&'{') {
                    for d in chars.by_ref() {
                        if d == '}' {
                            break;
                        }
                    }
                } else {
                    while chars.peek().is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_') {
                        chars.next();
                    }
                }
                text.push('1');
            }
            _ => text.push(c),
        }
    }
    let text = drop_enclosed(&text, '{', '}');
    let text = drop_enclosed(&text, '[', ']');
    let grouping = regex::Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)").unwrap();
    // Removed with their keyword, so `sum by (le) (x)` reads as the call `sum (x)`.
    let text = grouping.replace_all(&text, " ");

    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
                i += 1;
            }
            let word = &text[start..i];
            // `1e3`, `5m`, `0x1f`: part of a number or duration.
            let in_number = start > 0 && (bytes[start - 1].is_ascii_digit() || bytes[start - 1] == b'.');
            let rest = text[i..].trim_start();
            let is_call = rest.starts_with('(');
            if !in_number && !is_call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Removes every `open ... close` span (not nested in PromQL's grammar for
/// these two pairs), keeping a space so neighbours stay apart.
fn drop_enclosed(text: &str, open: char, close: char) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        if c == open {
            depth += 1;
        } else if c == close && depth > 0 {
            depth -= 1;
            if depth == 0 {
                out.push(' ');
            }
        } else if depth == 0 {
            out.push(c);
        }
    }
    out
}

/// Sample names on a `/metrics` page (the name before `{` or the value).
fn exported_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_promql_parser_finds_metric_names_and_nothing_else() {
    let cases: &[(&str, &[&str])] = &[
        ("up", &["up"]),
        (r#"sum(natsgate_client_connections{instance=~"$instance"})"#, &["natsgate_client_connections"]),
        (
            r#"histogram_quantile(0.99, sum by (le, method) (rate(x_bucket{a="b(c) d", b='e{f}'}[$__rate_interval])))"#,
            &["x_bucket"],
        ),
        ("sum(rate(a_sum[5m])) / sum(rate(a_count[5m]))", &["a_sum", "a_count"]),
        ("a / on(instance) group_left(job) b offset 5m", &["a", "b"]),
        ("sum without (code) (c) > bool 1e3 and d unless e", &["c", "d", "e"]),
        ("max_over_time(f[1h:5m]) or ${var} * g", &["f", "g"]),
        ("ns:rule:rate5m{x=\"\\\"}\"}", &["ns:rule:rate5m"]),
    ];
    for (expr, want) in cases {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(metric_names(expr), want, "{expr}");
    }
    assert_eq!(label_values_selector("label_values(m{a=\"b\"}, instance)"), Some("m{a=\"b\"}"));
    assert_eq!(label_values_selector("label_values(instance)"), None);
}

#[test]
fn the_dashboard_covers_the_operators_questions() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "natsgate-overview");
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 20, "only {} expressions", exprs.len());
    let all: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    // Connections, subscriptions, messages per second, delivery lag, API
    // latency, disconnects by code, NATS state.
    for name in [
        "natsgate_client_connections",
        "natsgate_client_subscriptions",
        "natsgate_transport_messages_sent_total",
        "natsgate_publication_delivery_lag_seconds_bucket",
        "natsgate_api_command_duration_seconds_bucket",
        "natsgate_client_disconnects_total",
        "natsgate_nats_connected",
        "natsgate_nats_reconnects_total",
    ] {
        assert!(all.contains(name), "the dashboard never queries {name}; it queries {all:?}");
    }
    assert!(
        exprs.iter().any(|(_, e)| e.contains("sum by (code)") && e.contains("natsgate_client_disconnects_total")),
        "no panel splits disconnects by code"
    );
    // Every panel has a data source and a unique id; every query names a metric.
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(ids.insert(panel["id"].as_i64().expect("panel id")), "duplicate panel id {}", panel["id"]);
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        }
    }
    for (place, expr) in &exprs {
        assert!(!metric_names(expr).is_empty(), "{place}: no metric name found in {expr}");
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let nats = NatsServer::start();
    let internal = free_port();
    let gw = Gateway::builder()
        .permissive()
        .nats(&nats)
        .env("NATSGATE_API_KEY", API_KEY)
        .env("NATSGATE_INTERNAL_PORT", &internal.to_string())
        .start();

    // Client commands, messages both ways, a delivery with its lag.
    let channel = "dashboard";
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    client.set_auto_pong(true);
    client.connect_token(&hs256_token(SECRET, "grafana", None, json!(null))).await;
    client.subscribe(channel).await;
    let http = reqwest::Client::new();
    api_result(&http, &gw, API_KEY, "publish", &json!({"channel": channel, "data": {"n": 1}})).await;
    let publication = client.recv_publication(channel, TIMEOUT).await;
    assert_eq!(publication["data"], json!({"n": 1}));

    // A body that is not JSON, straight to NATS: dropped for the JSON client.
    let nats_client = async_nats::connect(nats.url()).await.expect("connect to nats-server");
    let subject = natsgate::broker::subject::SubjectMap::new("natsgate").channel_subject(channel);
    nats_client.publish(subject, bytes::Bytes::from_static(b"\x00not json")).await.expect("publish");
    nats_client.flush().await.expect("flush");
    // Publications of a channel reach the gateway in order on one NATS
    // subscription: once this one arrives, the body before it was dropped.
    api_result(&http, &gw, API_KEY, "publish", &json!({"channel": channel, "data": {"n": 2}})).await;
    let publication = client.recv_publication(channel, TIMEOUT).await;
    assert_eq!(publication["data"], json!({"n": 2}), "the non-JSON body reached a JSON client");

    // A disconnect with its code.
    client.close(1000, "bye").await;

    let wanted: BTreeSet<(String, String)> = expressions(&dashboard())
        .into_iter()
        .flat_map(|(place, expr)| metric_names(&expr).into_iter().map(move |name| (name, place.clone())))
        .collect();
    assert!(wanted.len() >= 10, "only {} metric names in the dashboard", wanted.len());
    // The counters of the last steps may land a moment after the replies.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = common::gateway::http_get(internal, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        let exported = exported_names(&body);
        let missing: Vec<_> = wanted.iter().filter(|(name, _)| !exported.contains(name)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard queries metrics the gateway does not export: {missing:?}\n/metrics:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
