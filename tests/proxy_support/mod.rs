//! A recording application backend for the proxy tests that run the same
//! flow against natsgate and the real Centrifugo (`tests/proxy_differential.rs`)
//! and through the SDKs (`tests/proxy_sdk.rs`): a hyper HTTP server that
//! answers every proxy event as an application would and keeps what it
//! received (path, JSON body, headers) in arrival order.

#![allow(dead_code)]

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use natsgate_test_support::grpc_python::{GrpcPython, PortProcess};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the backend received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub body: Value,
    /// Lower-case header names.
    pub headers: serde_json::Map<String, Value>,
}

/// The backend: its base URL and what it received.
#[derive(Clone)]
pub struct Backend {
    pub base: String,
    log: Arc<Mutex<Vec<Received>>>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
}

/// The backend's decisions, by path and request body.
fn answer(path: &str, body: &Value) -> Value {
    let binary = body["encoding"] == "binary";
    match path {
        "/connect" if binary => json!({"result": {
            "user": "carol",
            "b64data": b64(&[0, 1, 2, 255]),
            "b64info": b64(b"\xffinfo"),
            "meta": {"tenant": 9}
        }}),
        "/connect" if body["data"]["short"] == true => json!({"result": {
            "user": "bob",
            "expire_at": now() + 1,
            "meta": {"tenant": 8}
        }}),
        "/connect" if body["data"]["anonymous"] == true => json!({}),
        "/connect" if body["data"]["refuse"] == true => json!({"error": {"code": 4003, "message": "who are you"}}),
        "/connect" => json!({"result": {
            "user": "alice",
            "info": {"name": "Alice"},
            "data": {"welcome": true},
            "channels": ["news"],
            "subs": {"px:personal": {"data": {"unread": 3}, "info": {"seat": 1}}},
            "meta": {"tenant": 7}
        }}),
        "/refresh" => json!({"result": {"expire_at": now() + 3600, "info": {"name": "Bob again"}}}),
        "/subscribe" => match body["channel"].as_str().unwrap_or("") {
            "px:refused" => json!({"error": {"code": 4001, "message": "not for you"}}),
            "px:gone" => json!({"disconnect": {"code": 4501, "reason": "go away"}}),
            "px:short" | "sr:short" => json!({"result": {"expire_at": now() + 1}}),
            "px:expiring" => json!({"result": {"expire_at": now() + 3600}}),
            "ms:refused" => json!({"error": {"code": 4001, "message": "not for you"}}),
            "ms:board" => json!({"result": {"data": {"map": true}, "info": {"seat": 2}}}),
            "px:opts" => json!({"result": {
                "info": {"role": "member"},
                "data": {"granted": "opts"},
                "override": {
                    "join_leave": {"value": true},
                    "force_push_join_leave": {"value": true},
                    "force_recovery": {"value": true},
                    "force_positioning": {"value": true}
                }
            }}),
            _ if binary => json!({"result": {"b64data": b64(b"\x00sub")}}),
            _ => json!({"result": {"data": {"granted": true}}}),
        },
        "/publish" if binary => {
            let mut data = unb64(body["b64data"].as_str().unwrap_or(""));
            data.push(0xfe);
            json!({"result": {"b64data": b64(&data)}})
        }
        "/publish" => match body["channel"].as_str().unwrap_or("") {
            "px:keep" => json!({"result": {}}),
            "px:denied" => json!({"error": {"code": 4002, "message": "read only"}}),
            _ => json!({"result": {"data": {"rewritten": body["data"].clone()}}}),
        },
        "/sub_refresh" => json!({"result": {"expire_at": now() + 3600, "info": {"role": "refreshed"}}}),
        // Map proxies (tests/map_proxy.rs): keys tell the backend's decision.
        "/map_publish" => match body["key"].as_str().unwrap_or("") {
            "keep" => json!({"result": {}}),
            "rekey" => json!({"result": {"key": "renamed", "tags": {"by": "backend"}}}),
            "denied" => json!({"error": {"code": 4002, "message": "read only"}}),
            "gone" => json!({"disconnect": {"code": 4503, "reason": "map bye"}}),
            _ if binary => json!({"result": {"b64data": b64(br#"{"b":1}"#)}}),
            _ => json!({"result": {"data": {"rewritten": body["data"].clone()}}}),
        },
        "/map_remove" => match body["key"].as_str().unwrap_or("") {
            "locked" => json!({"error": {"code": 4004, "message": "locked"}}),
            "alias" => json!({"result": {"key": "renamed"}}),
            _ => json!({"result": {}}),
        },
        "/rpc" | "/rpc_calc" if binary => {
            let mut data = unb64(body["b64data"].as_str().unwrap_or(""));
            data.reverse();
            json!({"result": {"b64data": b64(&data)}})
        }
        "/rpc" | "/rpc_calc" => match body["method"].as_str().unwrap_or("") {
            "fail" => json!({"error": {"code": 4100, "message": "nope"}}),
            "leave" => json!({"disconnect": {"code": 4502, "reason": "rpc says bye"}}),
            method => json!({"result": {"data": {"path": path, "method": method, "echo": body["data"].clone()}}}),
        },
        _ => json!({}),
    }
}

impl Backend {
    /// Starts the backend on a free loopback port.
    pub async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let shared = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let log = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let headers: serde_json::Map<String, Value> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                                .collect();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let reply = answer(&path, &body);
                            log.lock().unwrap().push(Received { path, body, headers });
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(reply.to_string()))))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Backend { base: format!("http://{addr}"), log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The bodies received on `path`.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.received().into_iter().filter(|r| r.path == path).map(|r| r.body).collect()
    }

    /// Waits (bounded) until `path` has been called `n` times.
    pub async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let bodies = self.bodies(path);
            if bodies.len() >= n {
                return bodies;
            }
            assert!(Instant::now() < deadline, "{path} was called {} times, not {n}, within {within:?}", bodies.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The Python GRPC backend (`tests/grpc/proxy_backend.py`, stubs generated
/// from `proto/proxy.proto`), recording what it received; killed on drop.
/// None (the test passes, saying so) without `target/grpc-venv`, except
/// under `CI=true`.
pub struct GrpcBackend {
    process: PortProcess,
    record: tempfile::NamedTempFile,
    _python: GrpcPython,
}

/// The venv's Python if it has grpcio and centrifuge-python.
pub fn venv_python() -> Option<std::path::PathBuf> {
    natsgate_test_support::grpc_python::venv_python("grpc, grpc_tools, centrifuge")
}

impl GrpcBackend {
    pub fn start() -> Option<GrpcBackend> {
        GrpcBackend::start_with("tests/grpc/proxy_backend.py", &[])
    }

    /// `script` (a backend built on `proxy_backend.py`, e.g. its TLS
    /// variant) with `env` added.
    pub fn start_with(script: &str, env: &[(&str, String)]) -> Option<GrpcBackend> {
        let python = GrpcPython::find("grpc, grpc_tools", "proto/proxy.proto")?;
        let record = tempfile::NamedTempFile::new().expect("record file");
        let mut command = python.command(script);
        command.env("RECORD", record.path()).envs(env.iter().map(|(k, v)| (k, v)));
        let process = PortProcess::start(command);
        Some(GrpcBackend { process, record, _python: python })
    }

    pub fn endpoint(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.process.port)
    }

    /// Every recorded request: `{"path", "body", "metadata"}`.
    pub fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.record.path()).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
    }

    /// The bodies of the requests to `path` (e.g. `/connect`).
    pub fn requests(&self, path: &str) -> Vec<Value> {
        self.received().into_iter().filter(|r| r["path"] == path).map(|r| r["body"].clone()).collect()
    }
}

/// Runs `tests/python/proxy_sdk.py` against `url` (at most 90 s); returns
/// its "OK ..." summary, panicking with its output on failure.
pub fn run_python_sdk(python: &std::path::Path, url: &str) -> Value {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new(python)
        .arg(root.join("tests/python/proxy_sdk.py"))
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start proxy_sdk.py");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait proxy_sdk.py").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("proxy_sdk.py did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("proxy_sdk.py output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "proxy_sdk.py failed:\n{stdout}\n{stderr}");
    let line = stdout.lines().find_map(|l| l.strip_prefix("OK ")).unwrap_or_else(|| panic!("no OK line: {stdout}"));
    serde_json::from_str(line).expect("OK summary is JSON")
}
