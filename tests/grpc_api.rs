//! The GRPC server API, called by a client generated in another language
//! (Python grpcio, `tests/grpc/client.py`) from `proto/api.proto`: the same
//! results as the HTTP API across two gateways, the same results as the real
//! Centrifugo's GRPC API, delivery to centrifuge-js on another gateway,
//! grpcurl through reflection, and refusals.
//!
//! Needs a Python with grpcio and grpcio-tools in `target/grpc-venv` and
//! grpcurl (`bash .ci/run` installs both), node with `npm ci --prefix
//! tests/js`, and Centrifugo for the differential test. Without them the
//! tests say so and pass, except under `CI=true`, where they fail.

use natsgate_test_support as common;

use common::grpc_python::GrpcPython;
use common::node::run_node_tests;

use common::{free_port, hs256_token, Gateway, GatewayBuilder, NatsServer, Protocol, WsClient, SECRET};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "grpc-test-key";
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);
/// A presence channel the scenario reads; `u1` has a connection in it.
const PRESENCE_CHANNEL: &str = "pres:room";
const NAMESPACES: &str = r#"[{"name":"hist","history_size":10,"history_ttl":"300s"},
    {"name":"pres","presence":true,"allow_subscribe_for_client":true}]"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A missing tool fails under CI and skips (loudly) elsewhere.
fn missing(what: &str) -> Option<()> {
    let hint = "run `bash .ci/run`, which installs it";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} is missing under CI=true: {hint}");
    eprintln!("SKIPPED: {what} is missing ({hint})");
    None
}

/// The Python with grpcio, and a directory with stubs generated from
/// `proto/api.proto` by grpcio-tools.
struct Python(GrpcPython);

impl Python {
    fn find() -> Option<Python> {
        GrpcPython::find("grpc, grpc_tools", "proto/api.proto").map(Python)
    }

    fn client() -> PathBuf {
        root().join("tests/grpc/client.py")
    }

    /// Runs `client.py args` with `env`; its stdout parsed as JSON. Bounded
    /// by [`PYTHON_TIMEOUT`]; fails with the output on a non-zero exit.
    fn run(&self, args: &[&str], env: &[(&str, String)]) -> Value {
        let log = tempfile::NamedTempFile::new().expect("temp file");
        let mut child = Command::new(&self.0.python)
            .arg(Self::client())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("PYTHONPATH", self.0.stubs())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.as_file().try_clone().expect("clone log handle"))
            .spawn()
            .expect("run client.py");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut out).map(|_| out)
        });
        let deadline = Instant::now() + PYTHON_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for python") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("client.py {args:?} did not finish within {PYTHON_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = reader.join().expect("reader thread").unwrap_or_default();
        let err = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert!(status.success(), "client.py {args:?} failed ({status}):\n{out}\n{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("client.py {args:?} printed no JSON ({e}):\n{out}\n{err}"))
    }
}

/// A gateway with the HTTP and GRPC APIs on, reflection included.
fn grpc_gateway(name: &str, grpc_port: u16) -> GatewayBuilder {
    Gateway::builder().permissive().envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", KEY),
        ("NATSGATE_GRPC_API", "true"),
        ("NATSGATE_GRPC_API_PORT", &grpc_port.to_string()),
        ("NATSGATE_GRPC_API_KEY", KEY),
        ("NATSGATE_GRPC_API_REFLECTION", "true"),
        ("NATSGATE_GRPC_API_MAX_RECEIVE_MESSAGE_SIZE", "65536"),
        ("NATSGATE_NAMESPACES", NAMESPACES),
    ])
}

/// A connection of `u1` subscribed to [`PRESENCE_CHANNEL`] (kept open by
/// the caller), on natsgate or Centrifugo alike.
async fn presence_client(ws_url: &str) -> WsClient {
    let mut client = WsClient::connect(ws_url, Protocol::Json).await;
    let token = hs256_token(SECRET, "u1", Some(3600), json!({}));
    let reply = client.connect_token(&token).await;
    assert!(reply.get("error").is_none(), "connect: {reply}");
    let reply = client.subscribe(PRESENCE_CHANNEL).await;
    assert!(reply.get("error").is_none(), "subscribe: {reply}");
    client
}

fn env(grpc_port: u16, http_api: &str, suffix: &str, max_receive: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GRPC_TARGET", format!("127.0.0.1:{grpc_port}")),
        ("GRPC_KEY", KEY.into()),
        ("HTTP_API", http_api.into()),
        ("HTTP_KEY", KEY.into()),
        ("SUFFIX", suffix.into()),
        ("PRESENCE_CHANNEL", PRESENCE_CHANNEL.into()),
        ("MAX_RECEIVE", max_receive.into()),
    ]
}

fn reply_at(transcript: &Value, i: usize) -> &Value {
    &transcript[i]["reply"]
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_gives_the_http_results_across_two_gateways() {
    let Some(python) = Python::find() else { return };
    let nats = NatsServer::start();
    let grpc_port = free_port();
    let a = grpc_gateway("gw-a", grpc_port).nats(&nats).start();
    let b = grpc_gateway("gw-b", free_port()).nats(&nats).start();
    let _u1 = presence_client(&b.ws_url()).await;

    let out = python.run(&["transcript"], &env(grpc_port, &format!("{}/api", a.http_url()), "-t1", "65536"));
    let (grpc, http) = (&out["grpc"], &out["http"]);
    assert_same_steps(grpc, http, "HTTP's");

    // The transcript shows the state, not just agreement.
    assert_eq!(reply_at(grpc, 0), &json!({"result": {"offset": 1, "epoch": "<epoch0>"}}));
    assert_eq!(reply_at(grpc, 2), &json!({"error": {"code": 102, "message": "unknown channel"}}));
    let presence = &reply_at(grpc, 11)["result"]["presence"];
    assert_eq!(presence.as_object().map(|p| p.len()), Some(1), "one client of u1 on B: {presence}");
    assert_eq!(presence["<client0>"]["user"], "u1");
    assert_eq!(reply_at(grpc, 12), &json!({"result": {"num_clients": 1, "num_users": 1}}));
    assert_eq!(reply_at(grpc, 15)["result"]["nodes"].as_array().map(Vec::len), Some(2), "info shows both gateways");
    let metrics = a.http_get("/metrics").expect("metrics").1;
    for method in ["publish", "presence_stats", "history", "batch"] {
        assert!(metrics.contains(&format!("natsgate_api_command_duration_seconds_count{{method=\"{method}\"}}")));
    }
}

#[test]
fn grpc_publish_on_a_reaches_centrifuge_js_on_b() {
    let Some(python) = Python::find() else { return };
    let nats = NatsServer::start();
    let grpc_port = free_port();
    let _a = grpc_gateway("gw-a", grpc_port).nats(&nats).start();
    let b = grpc_gateway("gw-b", free_port()).nats(&nats).start();
    let env = [
        ("GATEWAY_URLS", b.ws_url()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("GRPC_PYTHON", python.0.python.display().to_string()),
        ("GRPC_CLIENT", Python::client().display().to_string()),
        ("PYTHONPATH", python.0.stubs().display().to_string()),
        ("GRPC_TARGET", format!("127.0.0.1:{grpc_port}")),
        ("GRPC_KEY", KEY.to_string()),
    ];
    run_node_tests(&["scenarios/grpc.mjs"], &env, "GRPC publish and disconnect reaching centrifuge-js");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_get_their_statuses_and_nothing_else_is_affected() {
    let Some(python) = Python::find() else { return };
    let grpc_port = free_port();
    let gw = grpc_gateway("gw", grpc_port).start();
    let _u1 = presence_client(&gw.ws_url()).await;
    let out = python.run(&["refusals"], &env(grpc_port, "", "", "65536"));
    let status = |case: &str| out[case]["status"].as_str().unwrap_or_default().to_string();
    assert_eq!(status("wrong_key"), "UNAUTHENTICATED", "{out:#}");
    assert_eq!(status("no_key"), "UNAUTHENTICATED", "{out:#}");
    assert_eq!(status("oversized"), "RESOURCE_EXHAUSTED", "{out:#}");
    assert_eq!(status("malformed"), "INTERNAL", "{out:#}");
    assert_eq!(status("unknown_method"), "UNIMPLEMENTED", "{out:#}");
    assert_eq!(out["unsupported_method"], json!({"ok": {"error": {"code": 104, "message": "method not found"}}}));
    assert_eq!(out["transport_error"]["status"], "NOT_FOUND", "{out:#}");
    assert_eq!(out["transport_error"]["details"], "unknown channel", "{out:#}");
    assert_eq!(out["after"], json!({"ok": {"result": {"num_clients": 1, "num_users": 1}}}), "still serving");
    assert!(!gw.log().contains(KEY), "the key never reaches the log");
}

#[test]
fn grpcurl_lists_the_service_by_reflection_and_calls_info() {
    let Some(grpcurl) = go_tool("grpcurl") else { return };
    let grpc_port = free_port();
    let _gw = grpc_gateway("gw-grpcurl", grpc_port).start();
    let addr = format!("127.0.0.1:{grpc_port}");
    let run = |args: &[&str]| {
        let out = Command::new(&grpcurl).args(["-plaintext", "-max-time", "10"]).args(args).output().expect("grpcurl");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, listed) = run(&[&addr, "list"]);
    assert!(ok && listed.contains("centrifugal.centrifugo.api.CentrifugoApi"), "{listed}");
    let (ok, methods) = run(&[&addr, "list", "centrifugal.centrifugo.api.CentrifugoApi"]);
    assert!(ok && methods.contains("CentrifugoApi.Publish") && methods.contains("CentrifugoApi.Batch"), "{methods}");
    let auth = format!("authorization: apikey {KEY}");
    let (ok, info) = run(&["-H", &auth, "-d", "{}", &addr, "centrifugal.centrifugo.api.CentrifugoApi/Info"]);
    assert!(ok, "{info}");
    let info: Value = serde_json::from_str(&info).unwrap_or_else(|e| panic!("Info printed no JSON ({e}): {info}"));
    assert_eq!(info["result"]["nodes"][0]["name"], "gw-grpcurl", "{info}");
    let (ok, refused) = run(&["-d", "{}", &addr, "centrifugal.centrifugo.api.CentrifugoApi/Info"]);
    assert!(!ok && refused.contains("Unauthenticated"), "{refused}");
}

/// Step by step, so a failure names the first step that differs.
fn assert_same_steps(ours: &Value, theirs: &Value, whose: &str) {
    let (ours, theirs) = (ours.as_array().expect("steps"), theirs.as_array().expect("steps"));
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a, b, "step {i} differs from {whose} (ours left, {whose} right)");
    }
    assert_eq!(ours.len(), theirs.len(), "both ran every step");
}

/// `num_*` dropped from every `nodes` entry.
fn without_node_counts(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with("num_") || !map.contains_key("uid"))
                .map(|(k, v)| (k.clone(), without_node_counts(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_node_counts).collect()),
        other => other.clone(),
    }
}

/// A Go tool on PATH or in `$(go env GOPATH)/bin`.
fn go_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_default();
    let gopath = Command::new("go").args(["env", "GOPATH"]).output().ok().map(|o| {
        let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
        Path::new(&dir).join("bin").join(name)
    });
    match on_path.or(gopath.filter(|p| p.is_file())) {
        Some(tool) => Some(tool),
        None => missing(name).map(|_| PathBuf::new()),
    }
}

/// Centrifugo v6 with its HTTP and GRPC APIs on free loopback ports and the
/// same namespaces as the gateways; killed on drop.
struct Centrifugo {
    child: std::process::Child,
    port: u16,
    grpc_port: u16,
    _dir: tempfile::TempDir,
}

impl Centrifugo {
    fn start(binary: &Path) -> Centrifugo {
        let (port, grpc_port) = (free_port(), free_port());
        let dir = tempfile::tempdir().expect("temp dir");
        let config = json!({
            "http_server": {"address": "127.0.0.1", "port": port},
            "client": {"token": {"hmac_secret_key": SECRET}, "allowed_origins": ["*"]},
            "http_api": {"key": KEY},
            "grpc_api": {"enabled": true, "address": "127.0.0.1", "port": grpc_port, "key": KEY,
                         "max_receive_message_size": 65536},
            "usage_stats": {"disabled": true},
            "channel": {
                "without_namespace": {"allow_subscribe_for_client": true},
                "namespaces": serde_json::from_str::<Value>(NAMESPACES).expect("namespaces"),
            },
        });
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).expect("write centrifugo config");
        let log = std::fs::File::create(dir.path().join("centrifugo.log")).expect("log file");
        let child = Command::new(binary)
            .arg("--config")
            .arg(&path)
            .current_dir(dir.path())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start centrifugo");
        let server = Centrifugo { child, port, grpc_port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while [port, grpc_port].iter().any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err()) {
            assert!(Instant::now() < deadline, "centrifugo did not listen within 15 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Centrifugo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn centrifugo_binary() -> Option<PathBuf> {
    go_tool("centrifugo")
}

/// The same Python client and scenario against natsgate (one gateway on NATS)
/// and against Centrifugo v6: the same transcripts once ids and times are
/// normalised. This is what proves the field numbers.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_gives_centrifugos_results() {
    let Some(python) = Python::find() else { return };
    let Some(binary) = centrifugo_binary() else { return };
    let centrifugo = Centrifugo::start(&binary);
    let theirs = {
        let _u1 = presence_client(&format!("ws://127.0.0.1:{}/connection/websocket", centrifugo.port)).await;
        let api = format!("http://127.0.0.1:{}/api", centrifugo.port);
        let transcript = python.run(&["transcript"], &env(centrifugo.grpc_port, &api, "-c", "65536"));
        let refusals = python.run(&["refusals"], &env(centrifugo.grpc_port, "", "", "65536"));
        (transcript, refusals)
    };
    let nats = NatsServer::start();
    let grpc_port = free_port();
    let gw = grpc_gateway("gw", grpc_port).nats(&nats).start();
    let ours = {
        let _u1 = presence_client(&gw.ws_url()).await;
        let api = format!("{}/api", gw.http_url());
        let transcript = python.run(&["transcript"], &env(grpc_port, &api, "-n", "65536"));
        let refusals = python.run(&["refusals"], &env(grpc_port, "", "", "65536"));
        (transcript, refusals)
    };
    // Centrifugo refreshes the node counts in `info` every few seconds, so
    // right after a connect they may be 0 there: compare the nodes' shape.
    assert_same_steps(&without_node_counts(&ours.0["grpc"]), &without_node_counts(&theirs.0["grpc"]), "Centrifugo's");
    // Centrifugo implements `connections`; the rest must agree (messages
    // differ: tonic's and grpc-go's own words).
    for case in ["wrong_key", "no_key", "oversized", "malformed", "unknown_method", "after"] {
        assert_eq!(
            ours.1[case]["status"], theirs.1[case]["status"],
            "{case}: ours {:#}, Centrifugo's {:#}",
            ours.1, theirs.1
        );
    }
    // The transport-mode error, its `google.rpc.Status` detail byte for byte.
    assert!(theirs.1["transport_error"]["status_details"].is_string(), "{:#}", theirs.1);
    assert_eq!(ours.1["transport_error"], theirs.1["transport_error"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_error_mode_answers_with_statuses_except_in_batch() {
    let Some(python) = Python::find() else { return };
    let grpc_port = free_port();
    let gw = grpc_gateway("gw", grpc_port).env("NATSGATE_GRPC_API_ERROR_MODE", "transport").start();
    let _u1 = presence_client(&gw.ws_url()).await;
    let out = python.run(&["errors"], &env(grpc_port, "", "-e", "65536"));
    assert_eq!(out["publish"]["status"], "NOT_FOUND", "{out:#}");
    assert_eq!(out["publish"]["details"], "unknown channel", "{out:#}");
    assert!(out["publish"]["status_details"].is_string(), "the Error travels as a status detail: {out:#}");
    assert_eq!(out["history"]["status"], "OUT_OF_RANGE", "112 maps as Centrifugo maps it: {out:#}");
    assert_eq!(
        out["batch"],
        json!({"ok": {"replies": [
            {"error": {"code": 102, "message": "unknown channel"}},
            {"presence_stats": {"num_clients": 1, "num_users": 1}},
        ]}}),
        "batch replies keep their errors"
    );
    assert_eq!(out["info"]["ok"]["result"]["nodes"][0]["name"], "gw", "{out:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_only_tls() {
    let Some(python) = Python::find() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        let _ = missing("openssl");
        return;
    }
    let grpc_port = free_port();
    let _gw = grpc_gateway("gw-tls", grpc_port)
        .env("NATSGATE_GRPC_API_TLS_CERT", &cert.display().to_string())
        .env("NATSGATE_GRPC_API_TLS_KEY", &key.display().to_string())
        .start();
    let mut tls = env(grpc_port, "", "-tls", "65536");
    tls.push(("GRPC_TLS_CA", cert.display().to_string()));
    let out = python.run(&["errors"], &tls);
    assert_eq!(out["info"]["ok"]["result"]["nodes"][0]["name"], "gw-tls", "{out:#}");
    let plain = python.run(&["errors"], &env(grpc_port, "", "-plain", "65536"));
    assert_eq!(plain["info"]["status"], "UNAVAILABLE", "plaintext is refused: {plain:#}");
}

/// On SIGTERM the GRPC API stops accepting at once (like WebSocket upgrades)
/// while clients are still being drained, and the process then exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_the_grpc_port_while_draining() {
    let grpc_port = free_port();
    let mut gw = grpc_gateway("gw-drain", grpc_port)
        .envs(&[("NATSGATE_DRAIN_PERIOD", "3s"), ("NATSGATE_SHUTDOWN_TIMEOUT", "6s")])
        .start();
    // Three clients: the drain closes them 0, 1 and 2 s in.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(presence_client(&gw.ws_url()).await);
    }
    let grpc_open = || std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_ok();
    assert!(grpc_open(), "the GRPC API listens before SIGTERM");
    gw.sigterm();
    common::eventually("the GRPC port to close", Duration::from_secs(1), || async { (!grpc_open()).then_some(()) })
        .await;
    assert!(gw.try_exit_status().is_none(), "still draining the WebSocket client when the GRPC port closed");
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits within the shutdown timeout");
    assert!(status.success(), "clean exit: {status}");
}
