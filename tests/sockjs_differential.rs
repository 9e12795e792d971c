//! SockJS against the real Centrifugo v5 (v6 has no SockJS): the same raw
//! SockJS requests (`info`, `xhr`, `xhr_send`) to both, and their answers
//! compared: HTTP statuses and bodies of the protocol's own answers, frame
//! types, the JSON client protocol inside the frames (reply ids, results'
//! presence, error codes, the publication push), close frames.
//!
//! Needs Centrifugo v5 at `CENTRIFUGO_V5_BIN` (`bash .ci/run` builds
//! v5.4.9 and sets it); without it the test says why and is skipped (fails
//! under `CI=true`). `go install github.com/centrifugal/centrifugo/v5@v5.4.9`
//! fails (the module proxy refuses v5's version list, which `go install`
//! reads for deprecation notices); `go mod download` of v5.4.9 works, and
//! `go build` in a copy of its source builds it.

use natsgate_test_support as common;

use common::{free_port, Gateway, SECRET};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Centrifugo v5's binary, from `CENTRIFUGO_V5_BIN` (`.ci/run` builds it
/// and sets it).
fn v5_bin() -> Option<PathBuf> {
    std::env::var_os("CENTRIFUGO_V5_BIN").map(PathBuf::from).filter(|p| p.is_file())
}

/// Centrifugo v5 with SockJS on, killed on drop.
struct CentrifugoV5 {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl CentrifugoV5 {
    fn start(bin: &PathBuf) -> CentrifugoV5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = json!({
            "token_hmac_secret_key": SECRET,
            "api_key": "v5-key",
            "sockjs": true,
            "allow_subscribe_for_client": true,
            "allow_publish_for_client": true,
            "address": "127.0.0.1",
            "port": port.to_string(),
            "health": true,
            "usage_stats_disable": true,
        });
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).expect("write config");
        let log = std::fs::File::create(dir.path().join("centrifugo.log")).expect("log file");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start centrifugo v5");
        let server = CentrifugoV5 { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while common::gateway::http_get(port, "/health").map(|r| r.0).ok() != Some(200) {
            assert!(Instant::now() < deadline, "centrifugo v5 not ready on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for CentrifugoV5 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raw HTTP/1.0 request; (status, body).
fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the whole response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.get(9..12).and_then(|s| s.parse().ok()).expect("HTTP status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A SockJS frame with its protocol messages reduced to what must match:
/// reply ids, which result or error code, push channel and data.
fn describe_frame(frame: &str) -> String {
    let frame = frame.trim_end();
    let Some(array) = frame.strip_prefix('a') else { return frame.to_string() };
    let messages: Vec<String> = serde_json::from_str(array).expect("a[...] holds strings");
    let mut out = Vec::new();
    for message in messages {
        for line in message.lines() {
            let value: Value = serde_json::from_str(line).expect("JSON protocol message");
            out.push(describe_message(&value));
        }
    }
    format!("a{out:?}")
}

fn describe_message(value: &Value) -> String {
    if let Some(error) = value.get("error") {
        return format!("id={} error={}", value["id"], error["code"]);
    }
    if let Some(push) = value.get("push") {
        return format!("push channel={} pub={}", push["channel"], push["pub"]["data"]);
    }
    let results: Vec<&String> =
        value.as_object().map(|o| o.keys().filter(|k| *k != "id").collect()).unwrap_or_default();
    format!("id={} {results:?}", value["id"])
}

/// Runs the scripted SockJS exchange against a server on `port`.
fn transcript(port: u16) -> Vec<String> {
    let base = "/connection/sockjs";
    let session = format!("{base}/000/diffsess");
    let mut out = Vec::new();
    let mut note = |step: &str, (status, body): (u16, String)| out.push(format!("{step}: {status} {body:?}"));
    note("greeting", request(port, "GET", &format!("{base}/"), ""));
    let (status, info) = request(port, "GET", &format!("{base}/info"), "");
    let info: Value = serde_json::from_str(&info).expect("info JSON");
    let mut keys: Vec<&String> = info.as_object().expect("object").keys().collect();
    keys.sort();
    note("info", (status, format!("{keys:?} websocket={} cookie_needed={}", info["websocket"], info["cookie_needed"])));
    note("unknown session send", request(port, "POST", "/connection/sockjs/000/nosuch/xhr_send", "[\"x\"]"));
    note("open", request(port, "POST", &format!("{session}/xhr"), ""));
    note("empty send", request(port, "POST", &format!("{session}/xhr_send"), ""));
    note("broken send", request(port, "POST", &format!("{session}/xhr_send"), "[\"x\""));
    let token = common::hs256_token(SECRET, "diff", Some(3600), json!({}));
    let send = |messages: &[Value]| {
        let payload: Vec<String> = messages.iter().map(Value::to_string).collect();
        request(port, "POST", &format!("{session}/xhr_send"), &serde_json::to_string(&payload).expect("JSON"))
    };
    note("connect", send(&[json!({"id": 1, "connect": {"token": token}})]));
    let (status, frame) = request(port, "POST", &format!("{session}/xhr"), "");
    note("connect reply", (status, describe_frame(&frame)));
    note(
        "subscribe+publish",
        send(&[
            json!({"id": 2, "subscribe": {"channel": "news"}}),
            json!({"id": 3, "publish": {"channel": "news", "data": {"x": 1}}}),
            json!({"id": 4, "presence": {"channel": "news"}}),
        ]),
    );
    // Replies and the push may come in one poll or several.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let (status, frame) = request(port, "POST", &format!("{session}/xhr"), "");
        assert_eq!(status, 200);
        let described = describe_frame(&frame);
        let items: Vec<String> = serde_json::from_str::<Vec<String>>(&frame.trim_end()[1..])
            .map_or(Vec::new(), |m| m.iter().flat_map(|s| s.lines().map(String::from).collect::<Vec<_>>()).collect());
        assert!(!items.is_empty(), "expected messages, got {described}");
        seen.extend(items.iter().map(|l| describe_message(&serde_json::from_str(l).expect("JSON"))));
    }
    seen.sort();
    out.push(format!("replies: {seen:?}"));
    // A second receiving request while one waits.
    let waiting = std::thread::spawn(move || request(port, "POST", "/connection/sockjs/000/diffsess/xhr", ""));
    std::thread::sleep(Duration::from_millis(300));
    let (status, second) = request(port, "POST", &format!("{session}/xhr"), "");
    out.push(format!("second receiver: {status} {second:?}"));
    let send_bad = request(port, "POST", &format!("{session}/xhr_send"), "[\"not json\"]");
    out.push(format!("bad command: {} {:?}", send_bad.0, send_bad.1));
    let (status, closed) = waiting.join().expect("waiting poll");
    out.push(format!("waiting receiver: {status} {closed:?}"));
    let (status, after) = request(port, "POST", &format!("{session}/xhr"), "");
    out.push(format!("after close: {status} {after:?}"));
    out
}

#[test]
fn sockjs_transcript_matches_centrifugo_v5() {
    let Some(bin) = v5_bin() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true: CENTRIFUGO_V5_BIN must name Centrifugo v5 (bash .ci/run builds it)");
        println!("SKIPPED sockjs_transcript_matches_centrifugo_v5: set CENTRIFUGO_V5_BIN to a Centrifugo v5 binary");
        return;
    };
    let centrifugo = CentrifugoV5::start(&bin);
    let gateway = Gateway::builder().permissive().env("NATSGATE_SOCKJS", "true").start();
    let expected = transcript(centrifugo.port);
    let actual = transcript(gateway.port());
    for (e, a) in expected.iter().zip(&actual) {
        println!("centrifugo v5: {e}\nnatsgate:      {a}\n");
    }
    assert_eq!(actual, expected, "natsgate's SockJS answers differ from Centrifugo v5's (side by side above)");
}
