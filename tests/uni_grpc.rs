//! The unidirectional GRPC transport (`NATSGATE_UNI_GRPC`) with a client
//! generated in another language (Python grpcio, `tests/grpc/uni_client.py`)
//! from `proto/unistream.proto`: the connect push, server-side
//! subscriptions from the token's `channels` and `subs` claims and from the
//! server API, API publications, the disconnect push and the stream's end;
//! a refused token; and the same flow against the real Centrifugo v6.9.1's
//! uni_grpc, compared push by push.
//!
//! Needs `target/grpc-venv` with grpcio and grpcio-tools, and Centrifugo for
//! the differential test (`bash .ci/run` installs both). Without them the
//! tests say so and pass, except under `CI=true`, where they fail.

use natsgate_test_support as common;

use common::centrifugo::{centrifugo_or_skip, Centrifugo};
use common::grpc_python::GrpcPython;
use common::{free_port, hs256_token, Gateway, SECRET, TIMEOUT};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tokio::sync::mpsc;
use tokio::time::timeout;

const API_KEY: &str = "uni-grpc-key";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn namespaces() -> Value {
    json!([{"name": "ug", "allow_subscribe_for_client": true}])
}

/// The venv's Python and stubs generated from `proto/unistream.proto`.
struct Python(GrpcPython);

impl Python {
    fn find() -> Option<Python> {
        GrpcPython::find("grpc, grpc_tools", "proto/unistream.proto").map(Python)
    }

    /// Starts `uni_client.py`; its pushes arrive as JSON values.
    fn consume(&self, target: &str, token: &str) -> Consumer {
        let mut child = Command::new(&self.0.python)
            .arg(root().join("tests/grpc/uni_client.py"))
            .args([target, token])
            .env("PYTHONPATH", self.0.stubs())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run uni_client.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Consumer { child, pushes: rx }
    }
}

/// A running Python consumer.
struct Consumer {
    child: Child,
    pushes: mpsc::UnboundedReceiver<Value>,
}

impl Consumer {
    /// The next push that is not a ping (an empty push).
    async fn next(&mut self) -> Value {
        loop {
            let push = timeout(TIMEOUT * 2, self.pushes.recv())
                .await
                .expect("a push within the timeout")
                .expect("the client prints until the stream ends");
            if push != json!({}) {
                return push;
            }
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn api(http: &reqwest::Client, base: &str, method: &str, body: Value) {
    let response = http
        .post(format!("{base}/api/{method}"))
        .header("X-API-Key", API_KEY)
        .json(&body)
        .send()
        .await
        .expect("API request");
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.expect("API reply");
    assert!(reply.get("error").is_none(), "{method}: {reply}");
}

/// Client ids, sessions, nodes and versions differ between any two servers.
fn normalise(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if matches!(k.as_str(), "client" | "session" | "node" | "version") && child.is_string() {
                        *child = json!("*");
                    } else if k == "ttl" && child.as_u64().is_some_and(|ttl| (3590..=3600).contains(&ttl)) {
                        // The token expires in 3600 s; the servers read the
                        // clock in different seconds.
                        *child = json!("about 3600");
                    } else {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// The flow on one server: what the consumer received, push by push.
async fn observe(python: &Python, grpc: &str, base: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    // `subs` only: Centrifugo ignores a token's `channels` when it has `subs`.
    let claims = json!({"subs": {"ug:a": {}, "ug:b": {"data": {"welcome": true}}}});
    let token = hs256_token(SECRET, "bob", Some(3600), claims);
    let mut bob = python.consume(grpc, &token);
    let mut seen = vec![normalise(bob.next().await)];
    api(&http, base, "publish", json!({"channel": "ug:a", "data": {"n": 1}})).await;
    seen.push(bob.next().await);
    api(&http, base, "publish", json!({"channel": "ug:b", "data": {"n": 2}, "tags": {"t": "x"}})).await;
    seen.push(bob.next().await);
    api(&http, base, "subscribe", json!({"user": "bob", "channel": "ug:c"})).await;
    seen.push(normalise(bob.next().await));
    api(&http, base, "publish", json!({"channel": "ug:c", "data": {"n": 3}})).await;
    seen.push(bob.next().await);
    api(&http, base, "unsubscribe", json!({"user": "bob", "channel": "ug:c"})).await;
    seen.push(bob.next().await);
    api(&http, base, "disconnect", json!({"user": "bob", "disconnect": {"code": 4001, "reason": "bye"}})).await;
    seen.push(bob.next().await);
    seen.push(bob.next().await);
    let mut refused = python.consume(grpc, "not-a-token");
    seen.push(refused.next().await);
    seen.push(refused.next().await);
    seen
}

fn gateway(grpc_port: u16) -> Gateway {
    Gateway::builder()
        .envs(&[
            ("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET),
            ("NATSGATE_NAMESPACES", &namespaces().to_string()),
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_UNI_GRPC", "true"),
            ("NATSGATE_UNI_GRPC_ADDRESS", "127.0.0.1"),
            ("NATSGATE_UNI_GRPC_PORT", &grpc_port.to_string()),
        ])
        .start()
}

#[tokio::test]
async fn uni_grpc_streams_server_side_subscriptions_api_publications_and_the_disconnect() {
    let Some(python) = Python::find() else { return };
    let port = free_port();
    let gw = gateway(port);
    let seen = observe(&python, &format!("127.0.0.1:{port}"), &gw.http_url()).await;
    let connect = &seen[0]["connect"];
    assert_eq!(connect["subs"]["ug:a"], json!({}), "{connect}");
    assert_eq!(connect["subs"]["ug:b"]["data"], json!({"welcome": true}), "{connect}");
    assert!(connect.get("pong").is_none(), "no pong on a unidirectional transport: {connect}");
    assert_eq!(connect["session"], "*");
    assert_eq!(seen[1], json!({"channel": "ug:a", "pub": {"data": {"n": 1}}}));
    assert_eq!(seen[2], json!({"channel": "ug:b", "pub": {"data": {"n": 2}, "tags": {"t": "x"}}}));
    assert_eq!(seen[3], json!({"channel": "ug:c", "subscribe": {}}));
    assert_eq!(seen[4], json!({"channel": "ug:c", "pub": {"data": {"n": 3}}}));
    assert_eq!(seen[5], json!({"channel": "ug:c", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}));
    assert_eq!(seen[6], json!({"disconnect": {"code": 4001, "reason": "bye"}}));
    assert_eq!(seen[7], json!({"end": "OK"}), "the stream ends after the disconnect push");
    assert_eq!(seen[8], json!({"disconnect": {"code": 3500, "reason": "invalid token"}}));
    assert_eq!(seen[9], json!({"end": "OK"}));
}

#[tokio::test]
async fn uni_grpc_matches_centrifugo() {
    let Some(bin) = centrifugo_or_skip("uni_grpc_matches_centrifugo") else { return };
    let Some(python) = Python::find() else { return };
    let centrifugo_port = free_port();
    let config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}},
        "channel": {"namespaces": namespaces()},
        "http_api": {"key": API_KEY},
        "uni_grpc": {"enabled": true, "address": "127.0.0.1", "port": centrifugo_port},
    });
    let centrifugo = Centrifugo::start(&bin, &config);
    let port = free_port();
    let gw = gateway(port);
    let expected = observe(&python, &format!("127.0.0.1:{centrifugo_port}"), &centrifugo.http_url()).await;
    let actual = observe(&python, &format!("127.0.0.1:{port}"), &gw.http_url()).await;
    let mut differences = Vec::new();
    for (i, (want, got)) in expected.iter().zip(&actual).enumerate() {
        println!("{i}: {want}");
        if want != got {
            differences.push(format!("push {i}:\n  centrifugo: {want}\n  natsgate:   {got}"));
        }
    }
    assert!(differences.is_empty(), "differences from Centrifugo:\n{}", differences.join("\n"));
}
