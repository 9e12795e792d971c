//! Bad input (malformed JSON and Protobuf, wrong frame types, unknown
//! commands, commands without ids, oversized frames) and ping/pong.

use super::group::run_group;
use super::runner::BOTH;
use super::scenario::Scenario;
use super::token;
use crate::common::{Protocol, SECRET};
use serde_json::json;

fn opened(name: String, p: Protocol, connect_first: bool) -> Scenario {
    let s = Scenario::new(name).open("a", p);
    if connect_first {
        s.call("a", json!({"id": 1, "connect": {"token": token("tom")}}))
    } else {
        s
    }
}

fn bad_input_cases(p: Protocol, connect_first: bool) -> Vec<Scenario> {
    let tag = if connect_first { "after connect" } else { "before connect" };
    let mut out = Vec::new();
    match p {
        Protocol::Json => {
            for (i, text) in
                [r#"{"id":1,"#, "not json", "[1,2,3]", "42", r#"{"id":"x"}"#, "", "{}\n\n{}"].iter().enumerate()
            {
                out.push(opened(format!("bad json {i} {text:?} {tag}"), p, connect_first).text("a", text).recv("a"));
            }
            out.push(
                opened(format!("binary frame on json {tag}"), p, connect_first)
                    .binary("a", br#"{"id":2,"presence":{"channel":"x"}}"#)
                    .recv("a"),
            );
        }
        Protocol::Protobuf => {
            let cases: [(&str, Vec<u8>); 4] = [
                ("length beyond the frame", vec![0x05, 0x08, 0x01]),
                ("garbage message", vec![0x03, 0xff, 0xff, 0xff]),
                ("truncated varint", vec![0xff]),
                ("wrong wire type", vec![0x02, 0x0a, 0x05]),
            ];
            for (what, bytes) in cases {
                out.push(opened(format!("bad protobuf {what} {tag}"), p, connect_first).binary("a", &bytes).recv("a"));
            }
            out.push(
                opened(format!("text frame on protobuf {tag}"), p, connect_first)
                    .text("a", r#"{"id":2,"presence":{"channel":"x"}}"#)
                    .recv("a"),
            );
        }
    }
    let commands = [
        ("unknown method", json!({"id": 2, "frobnicate": {}})),
        ("empty command", json!({"id": 2})),
        ("no id", json!({"presence": {"channel": "x"}})),
        ("unneeded pong", json!({})),
    ];
    for (what, command) in commands {
        out.push(opened(format!("{what} {p:?} {tag}"), p, connect_first).send("a", command).recv("a"));
    }
    let big = json!({"id": 3, "publish": {"channel": "big", "data": {"pad": "x".repeat(8192)}}});
    out.push(opened(format!("oversized frame {p:?} {tag}"), p, connect_first).send("a", big).recv("a"));
    let fits = json!({"id": 3, "publish": {"channel": "big", "data": {"pad": "x".repeat(3500)}}});
    out.push(opened(format!("frame under the limit {p:?} {tag}"), p, connect_first).send("a", fits).recv("a"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "allow_publish_for_client": true,
        "websocket_message_size_limit": 4096,
    });
    let mut scenarios = Vec::new();
    for p in BOTH {
        for connect_first in [false, true] {
            scenarios.extend(bad_input_cases(p, connect_first));
        }
    }
    run_group("bad_input", config, scenarios).await;
}

fn pong(s: Scenario, p: Protocol) -> Scenario {
    match p {
        Protocol::Json => s.text("a", "{}"),
        Protocol::Protobuf => s.binary("a", &[0]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong() {
    let config = json!({"token_hmac_secret_key": SECRET, "ping_interval": "2s", "pong_timeout": "1s"});
    let mut scenarios = Vec::new();
    for p in BOTH {
        let s = opened(format!("pings answered {p:?}"), p, true).recv("a");
        scenarios.push(pong(s, p).recv("a"));
        scenarios.push(opened(format!("pings unanswered {p:?}"), p, true).recv("a").recv("a"));
    }
    run_group("ping_pong", config, scenarios).await;
}
