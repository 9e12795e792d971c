//! The backend proxy with real SDKs and real backends beyond
//! `tests/proxy.rs`: centrifuge-python without a token through the HTTP and
//! the GRPC proxy (connect, server-side subscription, subscribe allowed and
//! refused, publish rewritten, rpc); headers forwarded as GRPC metadata
//! (`proxy_http_headers` and `proxy_grpc_metadata`) with the connection
//! meta round trip over GRPC; granular `rpc_namespaces`.

use natsgate_test_support as common;

mod proxy_support;

use common::{Gateway, Protocol, WsClient};
use proxy_support::{run_python_sdk, venv_python, Backend, GrpcBackend};
use serde_json::{json, Value};

fn namespaces() -> String {
    json!([{"name": "px", "proxy_subscribe": true, "proxy_publish": true}]).to_string()
}

/// A gateway whose every proxy is `endpoint(event)`.
fn gateway(endpoint: impl Fn(&str) -> String, extra: &[(&str, &str)]) -> Gateway {
    Gateway::builder()
        .permissive()
        .env("NATSGATE_PROXY_CONNECT_ENDPOINT", &endpoint("connect"))
        .env("NATSGATE_PROXY_SUBSCRIBE_ENDPOINT", &endpoint("subscribe"))
        .env("NATSGATE_PROXY_PUBLISH_ENDPOINT", &endpoint("publish"))
        .env("NATSGATE_PROXY_RPC_ENDPOINT", &endpoint("rpc"))
        .env("NATSGATE_PROXY_INCLUDE_CONNECTION_META", "true")
        .env("NATSGATE_NAMESPACES", &namespaces())
        .envs(extra)
        .start()
}

/// centrifuge-python over the HTTP proxy: the SDK's flows pass, and the
/// backend saw the SDK's connect (name, data) and the listed header only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifuge_python_through_the_http_proxy() {
    let Some(python) = venv_python() else { return };
    let backend = Backend::start().await;
    let gw = gateway(
        |e| backend.url(e),
        &[("NATSGATE_PROXY_GRPC_METADATA", "x-grpc-only"), ("NATSGATE_PROXY_HTTP_HEADERS", "x-forward")],
    );
    let url = gw.ws_url();
    let summary = tokio::task::spawn_blocking(move || run_python_sdk(&python, &url)).await.expect("python run");
    let connect = backend.received().into_iter().find(|r| r.path == "/connect").expect("a connect request");
    assert_eq!(connect.body["name"], "python-sdk");
    assert_eq!(connect.body["data"], json!({"hello": "python"}));
    assert_eq!(connect.body["client"], summary["client"]);
    assert_eq!(connect.headers["x-forward"], "fwd-value", "listed header forwarded");
    assert!(connect.headers.get("x-grpc-only").is_none(), "grpc_metadata names reach GRPC proxies only");
    assert_eq!(backend.bodies("/publish")[0]["meta"], json!({"tenant": 7}), "connection meta goes along");
    assert_eq!(summary["rpc"]["path"], "/rpc");
}

/// centrifuge-python over the GRPC proxy (a Python grpcio backend): the
/// same flows; the connection meta from Connect comes back with Subscribe,
/// Publish and RPC; the headers named in `proxy_http_headers` and in
/// `proxy_grpc_metadata` arrive as GRPC metadata, others do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifuge_python_through_the_grpc_proxy_with_metadata() {
    let Some(python) = venv_python() else { return };
    let Some(backend) = GrpcBackend::start() else { return };
    let endpoint = backend.endpoint();
    let gw = gateway(
        |_| endpoint.clone(),
        &[("NATSGATE_PROXY_HTTP_HEADERS", "x-forward"), ("NATSGATE_PROXY_GRPC_METADATA", "x-grpc-only")],
    );
    let url = gw.ws_url();
    let summary = tokio::task::spawn_blocking(move || run_python_sdk(&python, &url)).await.expect("python run");
    let received = backend.received();
    let of = |path: &str| received.iter().filter(|r| r["path"] == path).cloned().collect::<Vec<Value>>();
    let connect = &of("/connect")[0];
    assert_eq!(connect["body"]["client"], summary["client"]);
    assert_eq!(connect["body"]["name"], "python-sdk");
    for r in &received {
        assert_eq!(r["metadata"]["x-forward"], "fwd-value", "http_headers as metadata: {r}");
        assert_eq!(r["metadata"]["x-grpc-only"], "grpc-value", "grpc_metadata as metadata: {r}");
    }
    for path in ["/subscribe", "/publish", "/rpc"] {
        let requests = of(path);
        assert!(!requests.is_empty(), "{path} reached the backend");
        for r in requests {
            assert_eq!(r["body"]["meta"], json!({"tenant": 7}), "meta round trip on {path}: {r}");
            assert_eq!(r["body"]["user"], "alice", "{r}");
        }
    }
    assert!(of("/connect")[0]["body"].get("meta").is_none(), "connect carries no meta");

    // Without the option the extra header stays back.
    drop(gw);
    let endpoint = backend.endpoint();
    let gw = gateway(|_| endpoint.clone(), &[("NATSGATE_PROXY_HTTP_HEADERS", "x-forward")]);
    let mut client =
        WsClient::connect_with_headers(&gw.ws_url(), Protocol::Json, None, &[("x-grpc-only", "v"), ("x-forward", "f")])
            .await
            .expect("WebSocket connect");
    client.request(json!({"connect": {}})).await;
    let last = backend.received().pop().expect("one more connect");
    assert_eq!(last["metadata"]["x-forward"], "f");
    assert!(last["metadata"].get("x-grpc-only").is_none(), "{last}");
}

/// Granular mode with `rpc_namespaces` (Centrifugo v5): `calc:...` goes to
/// the namespace's proxy, a method without a namespace to
/// `rpc_proxy_name`, a namespace without a proxy gets 108 and an unknown
/// namespace 104.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granular_rpc_namespaces_pick_their_proxy() {
    let backend = Backend::start().await;
    let proxies = json!([
        {"name": "auth", "endpoint": backend.url("connect")},
        {"name": "default_rpc", "endpoint": backend.url("rpc")},
        {"name": "calc_rpc", "endpoint": backend.url("rpc_calc")}
    ]);
    let rpc_namespaces = json!([{"name": "calc", "rpc_proxy_name": "calc_rpc"}, {"name": "off"}]);
    let gw = Gateway::builder()
        .permissive()
        .env("NATSGATE_GRANULAR_PROXY_MODE", "true")
        .env("NATSGATE_PROXIES", &proxies.to_string())
        .env("NATSGATE_CONNECT_PROXY_NAME", "auth")
        .env("NATSGATE_RPC_PROXY_NAME", "default_rpc")
        .env("NATSGATE_RPC_NAMESPACES", &rpc_namespaces.to_string())
        .env("NATSGATE_NAMESPACES", &namespaces())
        .start();
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let r = client.request(json!({"connect": {}})).await;
    assert!(r.get("connect").is_some(), "connect through the named proxy: {r}\n{}", gw.log());
    let r = client.request(json!({"rpc": {"method": "calc:sum", "data": [1, 2]}})).await;
    assert_eq!(r["rpc"]["data"]["path"], "/rpc_calc", "{r}");
    assert_eq!(r["rpc"]["data"]["method"], "calc:sum", "the full method name goes to the backend: {r}");
    let r = client.request(json!({"rpc": {"method": "plain"}})).await;
    assert_eq!(r["rpc"]["data"]["path"], "/rpc", "{r}");
    let r = client.request(json!({"rpc": {"method": "off:x"}})).await;
    assert_eq!(r["error"]["code"], 108, "namespace without a proxy: {r}");
    let r = client.request(json!({"rpc": {"method": "nowhere:x"}})).await;
    assert_eq!(r["error"]["code"], 104, "unknown namespace: {r}");
    assert_eq!(backend.bodies("/rpc_calc").len(), 1);
    assert_eq!(backend.bodies("/rpc").len(), 1);

    // A namespace naming an unknown proxy is refused at startup.
    let refused = Gateway::builder()
        .permissive()
        .env("NATSGATE_GRANULAR_PROXY_MODE", "true")
        .env("NATSGATE_PROXIES", &proxies.to_string())
        .env("NATSGATE_RPC_NAMESPACES", r#"[{"name":"calc","rpc_proxy_name":"missing"}]"#)
        .try_start();
    let Err(log) = refused else { panic!("an rpc namespace naming no proxy must be refused") };
    assert!(log.contains(r#"no proxy named "missing""#), "{log}");
}
