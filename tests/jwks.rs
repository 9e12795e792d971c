//! JWKS (`NATSGATE_TOKEN_JWKS_PUBLIC_ENDPOINT`) and TLS to backends
//! (`NATSGATE_PROXY_HTTP_TLS`, `NATSGATE_PROXY_GRPC_TLS`): a key server
//! written here serves RSA and EC keys this file generates, over HTTP or
//! over HTTPS with a CA made here (rcgen); it counts the fetches, can be
//! switched to hang, and also answers the RPC proxy. The GRPC-over-TLS test
//! runs `tests/grpc/proxy_backend_tls.py` (grpcio with the test CA's
//! certificate) and is skipped without `target/grpc-venv`, except under
//! `CI=true`.

use natsgate_test_support as common;

use bytes::Bytes;
use common::{Gateway, Protocol, WsClient};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod proxy_support;
use proxy_support::GrpcBackend;

const TIMEOUT: Duration = Duration::from_secs(5);
/// natsgate's least time between two fetches an unknown kid starts
/// (`src/auth/jwks.rs`, `COOLDOWN`).
const COOLDOWN: Duration = Duration::from_secs(5);

/// A private key the test signs with, and its public JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    /// The public JWK as the key server lists it.
    jwk: Value,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key (RS256); `alg` is written into the JWK.
    fn rsa(kid: &str) -> SigningKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
        let der = key.to_pkcs1_der().expect("PKCS#1 DER");
        SigningKey::new(kid, Algorithm::RS256, EncodingKey::from_rsa_der(der.as_bytes()), true)
    }

    /// A fresh P-256 (ES256) or P-384 (ES384) key; its JWK has no `alg`
    /// (optional in RFC 7517: the curve decides).
    fn ec(kid: &str, alg: Algorithm) -> SigningKey {
        let curve =
            if alg == Algorithm::ES384 { &rcgen::PKCS_ECDSA_P384_SHA384 } else { &rcgen::PKCS_ECDSA_P256_SHA256 };
        let key = rcgen::KeyPair::generate_for(curve).expect("EC key");
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("EC PEM");
        SigningKey::new(kid, alg, encoding, false)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey, with_alg: bool) -> SigningKey {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).expect("public JWK")).expect("JWK");
        let map = jwk.as_object_mut().expect("JWK object");
        if !with_alg {
            map.remove("alg");
        }
        map.insert("kid".into(), json!(kid));
        map.insert("use".into(), json!("sig"));
        SigningKey { kid: kid.to_string(), alg, encoding, jwk }
    }

    /// A connection token for `user`, valid for an hour, naming `kid`.
    fn token_with_kid(&self, user: &str, kid: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_string());
        let claims = json!({"sub": user, "exp": now() + 3600});
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign token")
    }

    fn token(&self, user: &str) -> String {
        self.token_with_kid(user, &self.kid)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

fn key_set(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// The key server (and RPC backend): `GET` any path answers the current key
/// set; `POST /rpc` answers an RPC proxy call. Counts `GET`s; while
/// `hang` is on, requests are held unanswered.
#[derive(Clone, Default)]
struct KeyServer {
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    hang: Arc<AtomicBool>,
}

impl KeyServer {
    fn new(set: Value) -> KeyServer {
        let server = KeyServer::default();
        *server.set.lock().unwrap() = set;
        server
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    async fn handle(self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() == hyper::Method::POST && req.uri().path() == "/rpc" {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let reply = json!({"result": {"data": {"method": body["method"].clone(), "secure": true}}});
            return Response::new(Full::new(Bytes::from(reply.to_string())));
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let set = self.set.lock().unwrap().to_string();
        Response::new(Full::new(Bytes::from(set)))
    }

    /// Serves on a free loopback port, over TLS with `tls`; returns the
    /// base URL (`http://` or `https://127.0.0.1:<port>`).
    async fn start(&self, tls: Option<tokio_rustls::TlsAcceptor>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind key server");
        let addr = listener.local_addr().expect("key server address");
        let server = self.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let server = server.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(server.handle(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else { return };
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        format!("{scheme}://{addr}")
    }
}

/// A gateway verifying connection tokens with the JWKS at `endpoint`.
fn gateway(endpoint: &str, extra: &[(&str, &str)]) -> Gateway {
    Gateway::builder()
        .env("NATSGATE_TOKEN_JWKS_PUBLIC_ENDPOINT", endpoint)
        .env("NATSGATE_ALLOW_SUBSCRIBE_FOR_CLIENT", "true")
        .env("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true")
        .envs(extra)
        .start()
}

/// Connects with `token` and expects a refusal: the close code.
async fn refused(gw: &Gateway, token: &str) -> u16 {
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    client.send_json(&json!({"id": 1, "connect": {"token": token}}).to_string()).await;
    client.expect_close(TIMEOUT).await.0
}

async fn connected(gw: &Gateway, token: &str) -> (WsClient, Value) {
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let reply = client.connect_token(token).await;
    (client, reply)
}

/// RSA (RS256, JWK with `alg`) and EC (ES256 and ES384, JWKs without `alg`)
/// tokens connect with keys from the endpoint, fetched once; a token whose
/// `alg` its key does not allow, or without `kid`, is refused with 3500 as
/// Centrifugo refuses invalid tokens; a rotated key (a new `kid`) is picked
/// up, and a key the endpoint no longer lists is no longer trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ec_keys_verify_tokens_and_rotation_is_picked_up() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1", Algorithm::ES256);
    let ec384 = SigningKey::ec("ec-384", Algorithm::ES384);
    let server = KeyServer::new(key_set(&[&rsa, &ec, &ec384]));
    let base = server.start(None).await;
    let gw = gateway(&format!("{base}/.well-known/jwks.json"), &[]);

    let (_a, reply) = connected(&gw, &rsa.token("alice")).await;
    assert!(reply["client"].is_string(), "RSA token connects: {reply}");
    let (_b, _) = connected(&gw, &ec.token("bob")).await;
    let (_c, _) = connected(&gw, &ec384.token("carol")).await;
    assert_eq!(server.fetches(), 1, "one fetch serves every key of the set");

    // An RSA-signed token naming the EC key: the key's kind decides the alg.
    assert_eq!(refused(&gw, &rsa.token_with_kid("mallory", "ec-1")).await, 3500);
    // No kid at all (Centrifugo: "kid is not provided").
    let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &json!({"sub": "x"}), &rsa.encoding).unwrap();
    assert_eq!(refused(&gw, &no_kid).await, 3500);

    // Rotation: the endpoint now lists ec-2 instead of ec-1. The first
    // token naming ec-2 fetches again once the cooldown since the last
    // fetch has passed; until then it is refused without a fetch.
    let ec2 = SigningKey::ec("ec-2", Algorithm::ES256);
    *server.set.lock().unwrap() = key_set(&[&rsa, &ec2]);
    let rotated_at = Instant::now();
    let deadline = rotated_at + COOLDOWN + TIMEOUT;
    loop {
        let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
        client.send_json(&json!({"id": 1, "connect": {"token": ec2.token("dave")}}).to_string()).await;
        match client.next(TIMEOUT).await {
            Ok(reply) if reply.get("connect").is_some() => break,
            Err(common::WsError::Closed(3500, _)) => {}
            other => panic!("neither connected nor refused with 3500: {other:?}"),
        }
        assert!(Instant::now() < deadline, "the rotated key was not picked up");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("rotated key picked up after {:?}; fetches: {}", rotated_at.elapsed(), server.fetches());
    assert_eq!(server.fetches(), 2, "the refusals within the cooldown fetched nothing");
    // ec-1 left the set: it verifies nothing any more.
    assert_eq!(refused(&gw, &ec.token("bob")).await, 3500);
    // Connected clients were never touched.
    assert_eq!(server.fetches(), 2);
}

/// 200 connects naming unknown kids (all at once, 20 in parallel) make the
/// gateway fetch the set at most once per cooldown, while a client with a
/// known key keeps connecting at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_flood_does_not_flood_the_endpoint() {
    let key = SigningKey::rsa("good");
    let server = KeyServer::new(key_set(&[&key]));
    let gw = gateway(&server.start(None).await, &[]);
    connected(&gw, &key.token("first")).await;
    assert_eq!(server.fetches(), 1);
    // Past the cooldown, so the flood's first unknown kid really fetches
    // and the rest meet a fetch in flight, then the cooldown.
    tokio::time::sleep(COOLDOWN).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..20 {
        let url = gw.ws_url();
        let tokens: Vec<String> =
            (0..10).map(|i| key.token_with_kid("flood", &format!("unknown-{worker}-{i}"))).collect();
        tasks.push(tokio::spawn(async move {
            for token in tokens {
                let mut client = WsClient::connect(&url, Protocol::Json).await;
                client.send_json(&json!({"id": 1, "connect": {"token": token}}).to_string()).await;
                assert_eq!(client.expect_close(TIMEOUT).await.0, 3500);
            }
        }));
    }
    // Meanwhile a known key connects without waiting for any fetch.
    let t = Instant::now();
    connected(&gw, &key.token("meanwhile")).await;
    let known_latency = t.elapsed();
    for task in tasks {
        task.await.expect("flood worker");
    }
    let elapsed = started.elapsed();
    let allowed = 1 + 1 + (elapsed.as_secs_f64() / COOLDOWN.as_secs_f64()).ceil() as usize;
    eprintln!(
        "200 unknown-kid connects in {elapsed:?}: {} fetches in all (allowed {allowed}); known key connected in {known_latency:?}",
        server.fetches()
    );
    assert!(server.fetches() <= allowed, "{} fetches for 200 unknown kids", server.fetches());
    assert!(server.fetches() >= 2, "the flood's first unknown kid fetched");
    assert!(known_latency < Duration::from_secs(1), "a known key waited {known_latency:?}");
}

/// An endpoint nothing listens on: a connect is refused with 3500 (as
/// Centrifugo refuses a token whose key cannot be fetched) within the
/// fetch's bounded time. An endpoint that hangs: a connect that needs a
/// fetch waits at most for its timeouts, then 3500, while a connected
/// client keeps publishing and receiving and a known key keeps connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_refuses_new_tokens_and_blocks_no_one_else() {
    let key = SigningKey::ec("k1", Algorithm::ES256);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let dead = gateway(&format!("http://127.0.0.1:{closed}/jwks"), &[]);
    let t = Instant::now();
    assert_eq!(refused(&dead, &key.token("alice")).await, 3500);
    assert!(t.elapsed() < Duration::from_secs(3), "refusal took {:?}", t.elapsed());
    drop(dead);

    let server = KeyServer::new(key_set(&[&key]));
    let gw = gateway(&server.start(None).await, &[]);
    let (mut alice, _) = connected(&gw, &key.token("alice")).await;
    alice.subscribe("news").await;
    server.hang.store(true, Ordering::SeqCst);
    // A connect with a new kid, once the cooldown allows a fetch, hangs on
    // the endpoint (two attempts of 1 s), then is refused.
    let url = gw.ws_url();
    let stranger = key.token_with_kid("stranger", "k2");
    let waiting = tokio::spawn(async move {
        let deadline = Instant::now() + COOLDOWN + TIMEOUT;
        loop {
            let mut client = WsClient::connect(&url, Protocol::Json).await;
            client.send_json(&json!({"id": 1, "connect": {"token": stranger}}).to_string()).await;
            let t = Instant::now();
            let (code, _) = client.expect_close(TIMEOUT).await;
            assert_eq!(code, 3500);
            if t.elapsed() > Duration::from_millis(900) || Instant::now() > deadline {
                return t.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // Alice keeps working all along: publish and receive, round after round.
    let mut worst = Duration::ZERO;
    let mut round = 0;
    while !waiting.is_finished() {
        round += 1;
        let t = Instant::now();
        let reply = alice.request(json!({"publish": {"channel": "news", "data": {"round": round}}})).await;
        assert!(reply.get("publish").is_some(), "publish failed: {reply}");
        let publication = alice.recv_publication("news", TIMEOUT).await;
        assert_eq!(publication["data"]["round"], round);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_after = waiting.await.expect("stranger");
    eprintln!(
        "hanging endpoint: refused after {refused_after:?}; alice's worst round trip {worst:?} over {round} rounds"
    );
    assert!(server.fetches() >= 2, "the hanging endpoint was asked");
    assert!(refused_after < Duration::from_secs(4), "the refusal took {refused_after:?}");
    assert!(worst < Duration::from_millis(500), "alice waited {worst:?}");
    // A known key still connects at once.
    let t = Instant::now();
    connected(&gw, &key.token("bob")).await;
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it,
/// as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = tempfile::Builder::new().prefix("natsgate-jwks-pki-").tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "natsgate backend test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).expect("params");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write certificate");
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).expect("write key");
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls;
        let chain = CertificateDer::pem_file_iter(self.path("server.pem")).unwrap().collect::<Result<Vec<_>, _>>();
        let key = PrivateKeyDer::from_pem_file(self.path("server-key.pem")).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain.expect("server chain"), key)
            .expect("server TLS config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// Over HTTPS with a CA of the test's (`NATSGATE_PROXY_HTTP_TLS`'s
/// `server_ca_pem_file`): the JWKS is fetched and an `https://` RPC proxy
/// answers. Without the CA the backend's certificate is not trusted: the
/// token's key cannot be fetched (3500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_jwks_and_https_proxy_trust_the_configured_ca() {
    let pki = Pki::new();
    let key = SigningKey::rsa("tls-key");
    let server = KeyServer::new(key_set(&[&key]));
    let base = server.start(Some(pki.acceptor())).await;
    assert!(base.starts_with("https://"));
    let tls = json!({"server_ca_pem_file": pki.path("ca.pem")}).to_string();
    let gw = gateway(
        &format!("{base}/jwks"),
        &[("NATSGATE_PROXY_HTTP_TLS", &tls), ("NATSGATE_PROXY_RPC_ENDPOINT", &format!("{base}/rpc"))],
    );
    let (mut client, _) = connected(&gw, &key.token("alice")).await;
    let reply = client.request(json!({"rpc": {"method": "hello", "data": {}}})).await;
    assert_eq!(reply["rpc"]["data"], json!({"method": "hello", "secure": true}), "{reply}");

    // The same endpoint, trusting only the system's roots.
    let untrusting = gateway(&format!("{base}/jwks"), &[]);
    assert_eq!(refused(&untrusting, &key.token("alice")).await, 3500);
    assert!(untrusting.log().contains("JWKS fetch failed"), "the failure is logged");
}

/// A GRPC proxy over TLS (`NATSGATE_PROXY_GRPC_TLS` with `enabled` and the
/// test CA) to a grpcio backend serving the test's certificate; with
/// `NATSGATE_PROXY_GRPC_CERT_FILE` (Centrifugo's older option) too; the
/// per-call credentials reach the backend as metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_proxy_over_tls() {
    let pki = Pki::new();
    let env = [("TLS_CERT", pki.path("server.pem")), ("TLS_KEY", pki.path("server-key.pem"))];
    let Some(backend) = GrpcBackend::start_with("tests/grpc/proxy_backend_tls.py", &env) else { return };
    let endpoint = backend.endpoint();

    let tls = json!({"enabled": true, "server_ca_pem_file": pki.path("ca.pem"), "server_name": "localhost"});
    let cert_file = pki.path("ca.pem");
    for settings in
        [vec![("NATSGATE_PROXY_GRPC_TLS", tls.to_string())], vec![("NATSGATE_PROXY_GRPC_CERT_FILE", cert_file.clone())]]
    {
        let mut builder = Gateway::builder()
            .permissive()
            .env("NATSGATE_PROXY_CONNECT_ENDPOINT", &endpoint)
            .env("NATSGATE_PROXY_RPC_ENDPOINT", &endpoint)
            .env("NATSGATE_PROXY_GRPC_CREDENTIALS_KEY", "x-backend-key")
            .env("NATSGATE_PROXY_GRPC_CREDENTIALS_VALUE", "backend-secret");
        for (name, value) in &settings {
            builder = builder.env(name, value);
        }
        let gw = builder.start();
        let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
        let reply = client.request(json!({"connect": {}})).await;
        assert!(reply["connect"]["client"].is_string(), "{settings:?}: {reply}");
        let reply = client.request(json!({"rpc": {"method": "over-tls", "data": {"n": 1}}})).await;
        assert_eq!(reply["rpc"]["data"]["method"], "over-tls", "{settings:?}: {reply}");
        assert!(!gw.log().contains("backend-secret"), "credentials never logged");
    }
    let calls = backend.received();
    assert_eq!(calls.iter().filter(|c| c["path"] == "/rpc").count(), 2);
    assert!(
        calls.iter().all(|c| c["metadata"]["x-backend-key"] == "backend-secret"),
        "per-call credentials on every call: {calls:?}"
    );

    // Without TLS settings the TLS backend is unreachable: error 100.
    let gw = Gateway::builder().permissive().env("NATSGATE_PROXY_RPC_ENDPOINT", &endpoint).start();
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    client.connect_token(&common::hs256_token(common::SECRET, "u", Some(3600), json!({}))).await;
    let reply = client.request(json!({"rpc": {"method": "plain"}})).await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
}
