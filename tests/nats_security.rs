//! A secured NATS (credentials file, NKey, token, user and password, TLS with
//! a private CA and a client certificate), a 3-node NATS cluster losing the
//! node a gateway is connected to, and TLS on the client port: real
//! `nats-server` processes and real clients (centrifuge-js over `wss://`).
//!
//! Certificates come from a CA each test makes (rcgen); operator, account
//! and user JWTs for the `.creds` test are signed here with NKeys (the `nsc`
//! tool is not needed), exactly as `nsc` would encode them.

use natsgate_test_support as common;

use base64::Engine;
use common::node::run_node_tests;
use common::pair::api_call;
use common::{free_port, hs256_token, Gateway, GatewayBuilder, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const API_KEY: &str = "nats-security-api-key";

/// A CA, a server certificate for 127.0.0.1 / localhost, a client
/// certificate, and an unrelated CA, as PEM files in a temporary directory.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = tempfile::Builder::new().prefix("natsgate-pki-").tempdir().expect("tempdir");
        let write = |name: &str, pem: &str| std::fs::write(dir.path().join(name), pem).expect("write PEM");
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, cn);
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate")
        };
        let authority = ca("natsgate test CA");
        write("ca.pem", &authority.pem());
        write("other-ca.pem", &ca("some other CA").pem());
        for (name, sans) in [("server", vec!["127.0.0.1".to_string(), "localhost".into()]), ("client", vec![])] {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, format!("natsgate test {name}"));
            let cert = params.signed_by(&key, &authority).expect("leaf certificate");
            write(&format!("{name}.pem"), &cert.pem());
            write(&format!("{name}-key.pem"), &key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).expect("read PEM")
    }
}

/// A `nats-server` (no JetStream) with `conf` as its config file.
fn nats_with_config(conf: &str) -> NatsServer {
    let dir = tempfile::Builder::new().prefix("natsgate-nats-").tempdir().expect("tempdir");
    std::fs::write(dir.path().join("nats.conf"), conf).expect("write nats.conf");
    NatsServer::start_with(free_port(), dir, &["-c".into(), "{dir}/nats.conf".into()])
}

fn gateway(nats: &NatsServer) -> GatewayBuilder {
    Gateway::builder().permissive().nats(nats).env("NATSGATE_API_KEY", API_KEY)
}

/// The gateway is ready (so connected to NATS), and a publication sent
/// through its API reaches a client subscribed on it, through NATS.
async fn assert_round_trip(gw: &Gateway) {
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    client.connect_token(&hs256_token(SECRET, "alice", Some(3600), json!({}))).await;
    client.subscribe("secured").await;
    let http = reqwest::Client::new();
    let reply = api_call(&http, gw, API_KEY, "publish", &json!({"channel": "secured", "data": {"via": "nats"}})).await;
    assert!(reply.get("error").is_none(), "publish failed: {reply}");
    let publication = client.recv_publication("secured", TIMEOUT).await;
    assert_eq!(publication["data"], json!({"via": "nats"}));
}

/// Starts a gateway that NATS refuses, waits until it has logged a failed
/// attempt, and checks it is unready and its log holds none of `secrets`.
fn assert_refused_without_leaking(builder: GatewayBuilder, secrets: &[&str]) -> String {
    let gw = builder.until_live().start();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.log().contains("NATS not reachable") {
        assert!(Instant::now() < deadline, "no failed NATS attempt logged:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = gw.http_get("/ready").expect("GET /ready");
    assert_eq!(status, 503, "a refused gateway is not ready");
    let log = gw.log();
    for secret in secrets {
        assert!(!log.contains(secret), "the log shows a secret ({secret}):\n{log}");
    }
    log
}

#[tokio::test]
async fn token_authentication() {
    let token = "tok-3f9a1c77-correct";
    let nats = nats_with_config(&format!("authorization {{ token: \"{token}\" }}"));
    let gw = gateway(&nats).env("NATSGATE_NATS_TOKEN", token).start();
    assert_round_trip(&gw).await;
    let log = assert_refused_without_leaking(gateway(&nats), &[token]);
    assert!(log.to_lowercase().contains("authorization"), "the refusal says why:\n{log}");
    assert_refused_without_leaking(
        gateway(&nats).env("NATSGATE_NATS_TOKEN", "tok-wrong-5521aa"),
        &[token, "tok-wrong-5521aa"],
    );
}

#[tokio::test]
async fn user_and_password_authentication() {
    let password = "pw-7d1e0b44-correct";
    let nats = nats_with_config(&format!("authorization {{ user: natsgate, password: \"{password}\" }}"));
    let gw =
        gateway(&nats).envs(&[("NATSGATE_NATS_USERNAME", "natsgate"), ("NATSGATE_NATS_PASSWORD", password)]).start();
    assert_round_trip(&gw).await;
    let wrong = "pw-wrong-90c2d1";
    let refused = gateway(&nats).envs(&[("NATSGATE_NATS_USERNAME", "natsgate"), ("NATSGATE_NATS_PASSWORD", wrong)]);
    assert_refused_without_leaking(refused, &[password, wrong]);
    // Credentials inside the URL work, and are not logged either.
    let url = format!("nats://natsgate:{password}@127.0.0.1:{}", nats.port());
    let gw = gateway(&nats).env("NATSGATE_NATS_URL", &url).start();
    assert_round_trip(&gw).await;
    assert!(!gw.log().contains(password), "the log shows the URL's password:\n{}", gw.log());
    let url = format!("nats://natsgate:{wrong}@127.0.0.1:{}", nats.port());
    assert_refused_without_leaking(gateway(&nats).env("NATSGATE_NATS_URL", &url), &[wrong]);
}

#[tokio::test]
async fn nkey_authentication_with_the_seed_or_a_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let nats = nats_with_config(&format!("authorization {{ users = [ {{ nkey: {} }} ] }}", user.public_key()));
    let gw = gateway(&nats).env("NATSGATE_NATS_NKEY", &seed).start();
    assert_round_trip(&gw).await;
    drop(gw);
    let dir = tempfile::tempdir().unwrap();
    let seed_file = dir.path().join("user.nk");
    std::fs::write(&seed_file, format!("{seed}\n")).unwrap();
    let gw = gateway(&nats).env("NATSGATE_NATS_NKEY", &seed_file.display().to_string()).start();
    assert_round_trip(&gw).await;
    // A user the server does not know: refused, and neither seed is logged.
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    assert_refused_without_leaking(gateway(&nats).env("NATSGATE_NATS_NKEY", &stranger), &[&seed, &stranger]);
}

/// A NATS JWT (`ed25519-nkey`) with `nats` claims, signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(json!({"typ": "JWT", "alg": "ed25519-nkey"}).to_string().as_bytes());
    let iat = common::now_secs();
    let claims = json!({
        "jti": format!("{}{}", subject.chars().skip(1).take(20).collect::<String>(), iat),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signing_input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let signature = issuer.sign(signing_input.as_bytes()).expect("sign JWT");
    format!("{signing_input}.{}", b64(&signature))
}

/// An operator, an account and a user, as `nsc` makes them: the server
/// trusts the operator and preloads the account; the gateway gets the
/// user's `.creds` file (user JWT plus seed).
#[tokio::test]
async fn credentials_file_authentication() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt =
        nats_jwt(&operator, &operator.public_key(), "natsgate-op", json!({"type": "operator", "version": 2}));
    let unlimited = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1});
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "natsgate-account",
        json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "natsgate-user",
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
    );
    let conf = format!(
        "operator: {operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt}\n}}\n",
        account.public_key()
    );
    let nats = nats_with_config(&conf);
    let dir = tempfile::tempdir().unwrap();
    let creds = |jwt: &str, seed: &str| {
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
    };
    let good = dir.path().join("natsgate.creds");
    let seed = user.seed().unwrap();
    std::fs::write(&good, creds(&user_jwt, &seed)).unwrap();
    let gw = gateway(&nats).env("NATSGATE_NATS_CREDENTIALS_FILE", &good.display().to_string()).start();
    assert_round_trip(&gw).await;
    // A user of an account the server does not know.
    let stranger_account = nkeys::KeyPair::new_account();
    let stranger = nkeys::KeyPair::new_user();
    let stranger_jwt = nats_jwt(
        &stranger_account,
        &stranger.public_key(),
        "stranger",
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
    );
    let bad = dir.path().join("stranger.creds");
    let stranger_seed = stranger.seed().unwrap();
    std::fs::write(&bad, creds(&stranger_jwt, &stranger_seed)).unwrap();
    let refused = gateway(&nats).env("NATSGATE_NATS_CREDENTIALS_FILE", &bad.display().to_string());
    assert_refused_without_leaking(refused, &[&seed, &stranger_seed, &stranger_jwt]);
    // A missing file is named, and retried (it may be mounted later).
    let missing = dir.path().join("missing.creds").display().to_string();
    let log = assert_refused_without_leaking(gateway(&nats).env("NATSGATE_NATS_CREDENTIALS_FILE", &missing), &[]);
    assert!(log.contains("missing.creds"), "the missing file is named:\n{log}");
}

/// nats-server requires TLS and a client certificate from the test CA.
#[tokio::test]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let pki = Pki::new();
    let conf = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 2\n}}\n",
        pki.path("server.pem"),
        pki.path("server-key.pem"),
        pki.path("ca.pem")
    );
    let nats = nats_with_config(&conf);
    // The CA as a file path, the client certificate and key as PEM text.
    let (cert, key) = (pki.read("client.pem"), pki.read("client-key.pem"));
    let secured = |ca: &str| {
        gateway(&nats).envs(&[
            ("NATSGATE_NATS_TLS", "true"),
            ("NATSGATE_NATS_TLS_SERVER_CA_PEM", ca),
            ("NATSGATE_NATS_TLS_CERT_PEM", &cert),
            ("NATSGATE_NATS_TLS_KEY_PEM", &key),
        ])
    };
    let gw = secured(&pki.path("ca.pem")).start();
    assert_round_trip(&gw).await;
    drop(gw);
    // A tls:// URL alone is enough to ask for TLS.
    let url = format!("tls://127.0.0.1:{}", nats.port());
    let gw = secured(&pki.path("ca.pem")).env("NATSGATE_NATS_TLS", "false").env("NATSGATE_NATS_URL", &url).start();
    assert_round_trip(&gw).await;
    drop(gw);
    let key_body = key.lines().nth(1).expect("a key line").to_string();
    // The server is not trusted with another CA.
    assert_refused_without_leaking(secured(&pki.path("other-ca.pem")), &[&key_body]);
    // Without a client certificate the server refuses the gateway.
    let no_cert =
        gateway(&nats).envs(&[("NATSGATE_NATS_TLS", "true"), ("NATSGATE_NATS_TLS_SERVER_CA_PEM", &pki.path("ca.pem"))]);
    assert_refused_without_leaking(no_cert, &[]);
}

/// Bad settings stop the gateway at once with the config exit code, naming
/// the option but not the value.
#[test]
fn unusable_security_settings_are_refused_at_startup() {
    let nats_url = "nats://127.0.0.1:4222";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("NATSGATE_NATS_NKEY", "SUnotaseed-hunter2")], "NATSGATE_NATS_NKEY"),
        (
            &[("NATSGATE_NATS_TOKEN", "hunter2"), ("NATSGATE_NATS_USERNAME", "u"), ("NATSGATE_NATS_PASSWORD", "p")],
            "one NATS authentication",
        ),
        (&[("NATSGATE_NATS_USERNAME", "u")], "NATSGATE_NATS_PASSWORD"),
        (&[("NATSGATE_NATS_TLS_SERVER_CA_PEM", "/nonexistent/ca.pem")], "NATSGATE_NATS_TLS_SERVER_CA_PEM"),
        (&[("NATSGATE_NATS_HISTORY_REPLICAS", "7")], "NATSGATE_NATS_HISTORY_REPLICAS"),
        (&[("NATSGATE_TLS", "true")], "NATSGATE_TLS_CERT"),
        (&[("NATSGATE_TLS_CERT", "/x.pem"), ("NATSGATE_TLS_KEY", "/y.pem")], "NATSGATE_TLS=true"),
        (
            &[("NATSGATE_TLS", "true"), ("NATSGATE_TLS_CERT", "/nonexistent.pem"), ("NATSGATE_TLS_KEY", "/k.pem")],
            "NATSGATE_TLS_CERT",
        ),
    ];
    for (env, expected) in cases {
        let mut gw = Gateway::builder().env("NATSGATE_NATS_URL", nats_url).envs(env).until_live().try_start();
        let log = match &mut gw {
            Ok(gw) => panic!("started with {env:?}:\n{}", gw.log()),
            Err(report) => report.clone(),
        };
        assert!(log.contains("exit status: 78"), "{env:?}: exits with the config code:\n{log}");
        assert!(log.contains(expected), "{env:?}: names {expected}:\n{log}");
        let logged = log.split("----- natsgate log").nth(1).unwrap_or_default();
        assert!(!logged.contains("hunter2"), "{env:?}: the value is not shown:\n{logged}");
    }
}

/// centrifuge-js over `wss://` and the HTTP API over `https://`, trusting the
/// test CA through NODE_EXTRA_CA_CERTS; the internal port stays plain
/// (`NATSGATE_TLS_EXTERNAL`) and answers the probes.
#[test]
fn clients_connect_over_tls_with_centrifuge_js() {
    let pki = Pki::new();
    let internal = free_port().to_string();
    let gw = Gateway::builder()
        .permissive()
        .envs(&[
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_TLS", "true"),
            ("NATSGATE_TLS_CERT", &pki.path("server.pem")),
            ("NATSGATE_TLS_KEY", &pki.path("server-key.pem")),
            ("NATSGATE_INTERNAL_PORT", &internal),
            ("NATSGATE_TLS_EXTERNAL", "true"),
        ])
        .start();
    assert!(gw.log().contains(&format!("wss://127.0.0.1:{}", gw.port())), "the log gives a wss:// URL:\n{}", gw.log());
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(gw.http_get("/api/info").is_err(), "plain HTTP is not served on the TLS port");
    let env = [
        ("GATEWAY_URLS", format!("wss://127.0.0.1:{}/connection/websocket", gw.port())),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("API_URL", format!("https://127.0.0.1:{}/api", gw.port())),
        ("API_KEY", API_KEY.to_string()),
        ("NODE_EXTRA_CA_CERTS", pki.path("ca.pem")),
    ];
    run_node_tests(&["scenarios/tls.mjs"], &env, "centrifuge-js over wss:// and the API over https://");
}

/// Three nats-server processes routed together on loopback, JetStream on,
/// each with its own store.
struct Cluster {
    nodes: Vec<NatsServer>,
    monitors: Vec<u16>,
}

impl Cluster {
    fn start() -> Cluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let monitors: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|i| {
                let others: Vec<String> =
                    (0..3).filter(|j| *j != i).map(|j| format!("nats://127.0.0.1:{}", routes[j])).collect();
                let args: Vec<String> = [
                    "-js",
                    "--cluster_name",
                    "natsgate-test",
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes",
                    &others.join(","),
                    "-m",
                    &monitors[i].to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let dir = tempfile::Builder::new().prefix("natsgate-nats-").tempdir().expect("tempdir");
                NatsServer::start_with(ports[i], dir, &args)
            })
            .collect();
        Cluster { nodes, monitors }
    }

    fn urls(&self, except: Option<usize>) -> String {
        let urls: Vec<String> =
            self.nodes.iter().enumerate().filter(|(i, _)| Some(*i) != except).map(|(_, n)| n.url()).collect();
        urls.join(",")
    }

    /// The node holding the NATS connection named `name` (`/connz`).
    async fn node_of(&self, http: &reqwest::Client, name: &str) -> usize {
        for (i, port) in self.monitors.iter().enumerate() {
            let url = format!("http://127.0.0.1:{port}/connz");
            let Ok(reply) = http.get(&url).send().await else { continue };
            let connz: Value = reply.json().await.unwrap_or_default();
            let names = connz["connections"].as_array().cloned().unwrap_or_default();
            if names.iter().any(|c| c["name"] == json!(name)) {
                return i;
            }
        }
        panic!("no node has a connection named {name}");
    }
}

fn http_monitor() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("reqwest client")
}

fn cluster_gateway(name: &str, urls: &str) -> Gateway {
    Gateway::builder()
        .permissive()
        .envs(&[
            ("NATSGATE_NAME", name),
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_NATS_URL", urls),
            ("NATSGATE_NATS_HISTORY_REPLICAS", "3"),
            // A recovery may span the whole outage.
            ("NATSGATE_HISTORY_MAX_PUBLICATION_LIMIT", "1000"),
            (
                "NATSGATE_NAMESPACES",
                r#"[{"name":"hist","history_size":1000,"history_ttl":"300s","force_recovery":true,"force_positioning":true,"allow_subscribe_for_client":true}]"#,
            ),
        ])
        // A new cluster elects its JetStream meta leader first.
        .ready_timeout(Duration::from_secs(40))
        .start()
}

/// `(offset, n)` of the publications in a subscribe result.
fn recovered(result: &Value) -> Vec<(u64, u64)> {
    let list = result["publications"].as_array().cloned().unwrap_or_default();
    list.iter().map(|p| (p["offset"].as_u64().unwrap_or(0), p["data"]["n"].as_u64().unwrap_or(u64::MAX))).collect()
}

/// A gateway keeps delivering when the NATS node it is connected to is
/// killed: it reconnects to another node, the history stream (3 replicas)
/// keeps every acknowledged publication, the publication gap sends the
/// client `unsubscribe` 2500, and its resubscription recovers the rest.
/// Prints the time to resume delivery and the count of lost publications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_keeps_delivering_and_recovering() {
    let mut cluster = Cluster::start();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let subscriber_side = cluster_gateway("gw-sub", &cluster.urls(None));
    let victim = cluster.node_of(&http, "natsgate gw-sub").await;
    // The publishing gateway is on the other nodes: only the subscriber's
    // connection is cut.
    let publisher_side = cluster_gateway("gw-pub", &cluster.urls(Some(victim)));
    assert_ne!(cluster.node_of(&http, "natsgate gw-pub").await, victim);

    // The streams were created with 3 replicas.
    let nc = async_nats::connect(cluster.nodes[(victim + 1) % 3].url()).await.unwrap();
    let js = async_nats::jetstream::new(nc.clone());
    let subjects = natsgate::broker::subject::SubjectMap::new("natsgate");
    // Their leaders move off the victim first, so that publishing goes on
    // while the subscriber's gateway loses its node: the test is about the
    // gateway's failover, not JetStream's leader election (which, when the
    // killed node led the stream, holds publications back for the election
    // and the client's publish timeout, about 10 s here, and loses nothing).
    let victim_name = format!("natsgate-test-{}", cluster.nodes[victim].port());
    for name in [subjects.stream_name("hist"), subjects.meta_stream_name("hist")] {
        let mut stream = js.get_stream(&name).await.unwrap_or_else(|e| panic!("stream {name}: {e}"));
        assert_eq!(stream.info().await.unwrap().config.num_replicas, 3, "{name}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = stream.info().await.unwrap_or_else(|e| panic!("stream {name}: {e}")).clone();
            let leader = info.cluster.and_then(|c| c.leader);
            if leader.as_ref().is_some_and(|l| *l != victim_name) {
                break;
            }
            assert!(Instant::now() < deadline, "stream {name} keeps its leader on {victim_name}");
            if leader.is_some() {
                let _ = nc.request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"), "".into()).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let channel = "hist:failover";
    let mut client = WsClient::connect(&subscriber_side.ws_url(), Protocol::Json).await;
    client.connect_token(&hs256_token(SECRET, "alice", Some(3600), json!({}))).await;
    let reply = client.request(json!({"subscribe": {"channel": channel, "recoverable": true}})).await;
    let mut epoch = reply["subscribe"]["epoch"].as_str().unwrap_or_else(|| panic!("no epoch: {reply}")).to_string();

    // The publisher: 400 publications, one every 10 ms, through gw-pub's
    // API; the node is killed after the 100th. Records which were accepted.
    const TOTAL: u64 = 400;
    const KILL_AFTER: u64 = 100;
    let (killed_tx, killed_rx) = tokio::sync::oneshot::channel::<()>();
    let publisher_url = publisher_side.http_url();
    let publisher = tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut accepted = Vec::new();
        let mut refused = 0u32;
        let mut killed_tx = Some(killed_tx);
        let mut kill_at = None;
        for n in 0..TOTAL {
            if n == KILL_AFTER {
                let _ = killed_tx.take().map(|tx| tx.send(()));
                kill_at = Some(Instant::now());
            }
            let body = json!({"channel": "hist:failover", "data": {"n": n}});
            let reply =
                http.post(format!("{publisher_url}/api/publish")).header("X-API-Key", API_KEY).json(&body).send().await;
            match reply {
                Ok(r) => match r.json::<Value>().await {
                    Ok(v) if v.get("error").is_none() => accepted.push(n),
                    _ => refused += 1,
                },
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (accepted, refused, kill_at)
    });

    let mut received: Vec<(u64, u64)> = Vec::new();
    let mut killed = Some(killed_rx);
    let mut kill_time: Option<Instant> = None;
    let mut resumed: Option<Duration> = None;
    let mut resubscribes = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_offset = 0;
    loop {
        assert!(Instant::now() < deadline, "delivery did not complete; received {} publications", received.len());
        if let Some(rx) = killed.as_mut() {
            if rx.try_recv().is_ok() {
                cluster.nodes[victim].stop();
                kill_time = Some(Instant::now());
                killed = None;
            }
        }
        let message = match client.next(Duration::from_millis(20)).await {
            Ok(m) => m,
            Err(common::WsError::Timeout(_)) => {
                if publisher.is_finished() && received.last().is_some_and(|(_, n)| *n == TOTAL - 1) {
                    break;
                }
                continue;
            }
            Err(e) => panic!("client connection lost: {e:?}"),
        };
        let push = &message["push"];
        if push["channel"] != json!(channel) {
            continue;
        }
        let mut batch = Vec::new();
        if let Some(p) = push.get("pub") {
            batch.push((p["offset"].as_u64().unwrap_or(0), p["data"]["n"].as_u64().unwrap_or(u64::MAX)));
        } else if let Some(unsubscribe) = push.get("unsubscribe") {
            assert_eq!(unsubscribe["code"], json!(2500), "insufficient state: {message}");
            resubscribes += 1;
            let since = json!({"channel": channel, "recoverable": true, "recover": true, "offset": last_offset, "epoch": epoch});
            let reply = client.request(json!({ "subscribe": since })).await;
            let result = reply.get("subscribe").unwrap_or_else(|| panic!("resubscribe failed: {reply}")).clone();
            assert_eq!(result["recovered"], json!(true), "recovered from {last_offset}: {result}");
            epoch = result["epoch"].as_str().unwrap_or_default().to_string();
            batch = recovered(&result);
        }
        for (offset, n) in batch {
            if offset <= last_offset {
                continue;
            }
            last_offset = offset;
            if resumed.is_none() && n >= KILL_AFTER {
                resumed = kill_time.map(|t| t.elapsed());
            }
            received.push((offset, n));
        }
        if publisher.is_finished() && received.last().is_some_and(|(_, n)| *n == TOTAL - 1) {
            break;
        }
    }
    let (accepted, refused, _) = publisher.await.unwrap();
    let got: Vec<u64> = received.iter().map(|(_, n)| *n).collect();
    let lost: Vec<u64> = accepted.iter().copied().filter(|n| !got.contains(n)).collect();
    let resumed = resumed.expect("delivery resumed after the kill");
    println!(
        "FAILOVER: node {victim} killed; delivery resumed after {resumed:?}; {} of {TOTAL} publications accepted \
         ({refused} refused by the API while the cluster moved), {} received, {} lost; {resubscribes} \
         resubscription(s) with recovery",
        accepted.len(),
        got.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "publications lost: {lost:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, once each: {got:?}");
    assert!(got.contains(&(KILL_AFTER - 1)) && got.contains(&(TOTAL - 1)), "before and after the kill");
    assert!(resumed < Duration::from_secs(20), "resumed within 20 s: {resumed:?}");
    // The subscriber's gateway moved to another node.
    assert_ne!(cluster.node_of(&http_monitor(), "natsgate gw-sub").await, victim, "gw-sub reconnected elsewhere");
    let (_, metrics) = subscriber_side.http_get("/metrics").expect("GET /metrics");
    assert!(metrics.contains("natsgate_nats_reconnects_total 1"), "one reconnection counted:\n{metrics}");
    // History agrees: every accepted publication is still held.
    let http = reqwest::Client::new();
    let history =
        api_call(&http, &publisher_side, API_KEY, "history", &json!({"channel": channel, "limit": 1000})).await;
    let held: Vec<u64> = history["result"]["publications"]
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["data"]["n"].as_u64()).collect())
        .unwrap_or_default();
    assert!(accepted.iter().all(|n| held.contains(n)), "history holds every accepted publication: {history}");
    drop(subscriber_side);
}
