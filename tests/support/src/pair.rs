//! Tests that run on both backends (two gateways on one nats-server, or one
//! gateway on the embedded broker playing both parts), and the server HTTP
//! API called from tests.

use serde_json::Value;

use super::{Gateway, GatewayBuilder, NatsServer};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Nats,
    Embedded,
}

/// The gateways of one test. Field order is drop order: gateways before
/// the nats-server they use.
pub struct Pair {
    pub a: Gateway,
    /// None on the embedded broker, where A plays B too.
    pub b_gw: Option<Gateway>,
    pub nats: Option<NatsServer>,
    pub backend: Backend,
}

impl Pair {
    /// Starts the gateways, each configured by `builder(name)`: `gw-a` and
    /// `gw-b` on NATS, `gw` alone on the embedded broker.
    pub fn start(backend: Backend, builder: impl Fn(&str) -> GatewayBuilder) -> Pair {
        match backend {
            Backend::Nats => {
                let nats = NatsServer::start();
                let a = builder("gw-a").nats(&nats).start();
                let b = builder("gw-b").nats(&nats).start();
                Pair { a, b_gw: Some(b), nats: Some(nats), backend }
            }
            Backend::Embedded => Pair { a: builder("gw").start(), b_gw: None, nats: None, backend },
        }
    }

    /// The second gateway (A itself on the embedded broker).
    pub fn b(&self) -> &Gateway {
        self.b_gw.as_ref().unwrap_or(&self.a)
    }

    pub fn nats(&self) -> &NatsServer {
        self.nats.as_ref().expect("a NATS test")
    }
}

/// `POST /api/<method>` on `gw` with `key`: asserts HTTP 200 and returns
/// the parsed reply (`{"result":..}` or `{"error":..}`).
pub async fn api_call(http: &reqwest::Client, gw: &Gateway, key: &str, method: &str, params: &Value) -> Value {
    let response = http
        .post(format!("{}/api/{method}", gw.http_url()))
        .header("X-API-Key", key)
        .body(params.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /api/{method} {params}: {e}"));
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{method} {params}: HTTP {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method}: reply is not JSON ({e}): {body:?}"))
}

/// Like [`api_call`], asserting a `result` and returning it.
pub async fn api_result(http: &reqwest::Client, gw: &Gateway, key: &str, method: &str, params: &Value) -> Value {
    let reply = api_call(http, gw, key, method, params).await;
    match reply.get("result") {
        Some(result) => result.clone(),
        None => panic!("{method} {params} failed: {reply}"),
    }
}
