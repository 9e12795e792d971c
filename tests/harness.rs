//! Tests of the test harness itself (`tests/support`, the `natsgate-test-support` crate): that nats-server
//! starts with JetStream and goes away, that tokens verify, and that the
//! WebSocket client frames and unframes like the SDKs. None of these need
//! a working gateway.

use natsgate_test_support as common;

use common::{hs256_token, now_secs, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use natsgate::protocol::{Command, Reply};
use prost::Message as _;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn nats_server_serves_jetstream_and_stops_on_drop() {
    let server = NatsServer::start();
    let (url, port, pid) = (server.url(), server.port(), server.pid());
    assert!(process_alive(pid));

    let client = tokio::time::timeout(TIMEOUT, async_nats::connect(url.as_str()))
        .await
        .expect("connect within timeout")
        .expect("connect to nats-server");
    let account = js_account_info(&client).await;
    assert_eq!(account["streams"], 0, "{account}");
    // A typed JetStream call too (stream management works with 2.9).
    let js = async_nats::jetstream::new(client.clone());
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "PING".into(),
            subjects: vec!["harness.js.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    assert_eq!(stream.cached_info().config.name, "PING");
    js.publish("harness.js.one", "x".into()).await.expect("publish").await.expect("ack");

    let mut sub = client.subscribe("harness.ping").await.expect("subscribe");
    client.publish("harness.ping", "hello".into()).await.expect("publish");
    let msg = tokio::time::timeout(TIMEOUT, sub.next()).await.expect("message within timeout").expect("message");
    assert_eq!(&msg.payload[..], b"hello");

    drop(server);
    assert!(!process_alive(pid), "nats-server {pid} still running after drop");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still accepts after drop");
}

#[tokio::test]
async fn nats_server_restart_keeps_port_and_streams() {
    let mut server = NatsServer::start();
    let url = server.url();
    {
        let client = async_nats::connect(url.as_str()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "HARNESS".into(),
            subjects: vec!["harness.stream.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    }
    let old_pid = server.pid();
    server.restart();
    assert_ne!(server.pid(), old_pid);
    assert_eq!(server.url(), url, "restart keeps the port");

    let client = async_nats::connect(url.as_str()).await.expect("connect after restart");
    assert_eq!(js_account_info(&client).await["streams"], 1, "the stream survives a restart (same store dir)");
    let js = async_nats::jetstream::new(client);
    js.get_stream("HARNESS").await.expect("stream HARNESS after restart");
}

/// JetStream account info as raw JSON. async-nats 0.51's typed
/// `query_account()` cannot parse the reply of Debian's nats-server 2.9
/// (it requires fields added in 2.10), so ask `$JS.API.INFO` directly.
async fn js_account_info(client: &async_nats::Client) -> Value {
    let reply = tokio::time::timeout(TIMEOUT, client.request("$JS.API.INFO", "".into()))
        .await
        .expect("JetStream answers within timeout")
        .expect("JetStream INFO request");
    let info: Value = serde_json::from_slice(&reply.payload).expect("JSON account info");
    assert_eq!(info["type"], "io.nats.jetstream.api.v1.account_info_response", "{info}");
    assert!(info.get("error").is_none(), "JetStream error: {info}");
    info
}

#[test]
fn hs256_token_carries_claims_and_expiry() {
    use jsonwebtoken::{decode, DecodingKey, Validation};
    let key = DecodingKey::from_secret(SECRET.as_bytes());
    let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 0;

    let token = hs256_token(SECRET, "42", Some(60), json!({"info": {"name": "x"}, "channels": ["a"]}));
    let claims = decode::<Value>(&token, &key, &validation).expect("valid token").claims;
    assert_eq!(claims["sub"], "42");
    assert_eq!(claims["info"], json!({"name": "x"}));
    let exp = claims["exp"].as_i64().expect("exp");
    assert!((now_secs() + 55..=now_secs() + 65).contains(&exp));

    let expired = hs256_token(SECRET, "42", Some(-60), Value::Null);
    let err = decode::<Value>(&expired, &key, &validation).expect_err("expired");
    assert_eq!(*err.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature);

    let forever = hs256_token(SECRET, "", None, json!({}));
    let mut no_exp = validation.clone();
    no_exp.required_spec_claims.clear();
    no_exp.validate_exp = false;
    let claims = decode::<Value>(&forever, &key, &no_exp).expect("valid").claims;
    assert_eq!(claims, json!({"sub": ""}));

    let wrong = hs256_token("other-secret", "42", Some(60), json!({}));
    assert!(decode::<Value>(&wrong, &key, &validation).is_err());
}

/// A one-connection WebSocket server that answers the subprotocol like the
/// gateway must, then runs `script` on the socket.
async fn fake_server<F, Fut>(script: F) -> String
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/connection/websocket", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
        let echo_subprotocol = |req: &Request, mut resp: Response| {
            if let Some(sp) = req.headers().get("Sec-WebSocket-Protocol") {
                assert_eq!(sp, "centrifuge-protobuf");
                resp.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("centrifuge-protobuf"));
            }
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, echo_subprotocol).await.expect("handshake");
        script(ws).await;
    });
    url
}

#[tokio::test]
async fn ws_client_json_splits_frames_matches_replies_and_reports_close() {
    let url = fake_server(|mut ws| async move {
        // Connect and subscribe in one frame, as centrifuge-js sends them.
        let Some(Ok(Message::Text(frame))) = ws.next().await else { panic!("expected a text frame") };
        let commands: Vec<Value> = frame.split('\n').map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(commands[0]["connect"]["token"], "t");
        assert_eq!(commands[1]["subscribe"]["channel"], "news");
        // A push before the replies, replies in one frame, trailing newline.
        ws.send(Message::text(r#"{"push":{"channel":"news","pub":{"data":{"n":1}}}}"#)).await.unwrap();
        let replies = r#"{"id":1,"connect":{"client":"c1","version":"0"}}
{"id":2,"subscribe":{}}
{}
"#;
        ws.send(Message::text(replies)).await.unwrap();
        let Some(Ok(Message::Text(pong))) = ws.next().await else { panic!("expected pong") };
        assert_eq!(pong.as_str(), "{}");
        let frame = CloseFrame { code: CloseCode::from(3500), reason: "invalid token".into() };
        ws.send(Message::Close(Some(frame))).await.unwrap();
        while ws.next().await.is_some() {}
    })
    .await;

    let mut client = WsClient::connect(&url, Protocol::Json).await;
    client.set_auto_pong(true);
    client.send_json("{\"id\":1,\"connect\":{\"token\":\"t\"}}\n{\"id\":2,\"subscribe\":{\"channel\":\"news\"}}").await;
    let connect = client.take_reply(1, TIMEOUT).await;
    assert_eq!(connect["connect"]["client"], "c1");
    // The push that came first stays queued ahead of the subscribe reply.
    assert_eq!(client.recv_json().await["push"]["pub"]["data"], json!({"n": 1}));
    assert_eq!(client.recv_json().await, json!({"id": 2, "subscribe": {}}));
    let (code, reason) = client.expect_close(TIMEOUT).await;
    assert_eq!((code, reason.as_str()), (3500, "invalid token"));
}

#[tokio::test]
async fn ws_client_protobuf_uses_subprotocol_and_length_prefixes() {
    let url = fake_server(|mut ws| async move {
        let Some(Ok(Message::Binary(frame))) = ws.next().await else { panic!("expected a binary frame") };
        let mut buf = &frame[..];
        let first = Command::decode_length_delimited(&mut buf).expect("first command");
        let second = Command::decode_length_delimited(&mut buf).expect("second command");
        assert!(buf.is_empty());
        assert_eq!(first.id, 1);
        assert_eq!(first.connect.as_ref().expect("connect").token, "t");
        assert_eq!(second.publish.as_ref().expect("publish").data.as_ref(), br#"{"x":true}"#);

        let mut out = Vec::new();
        let connect: Reply = serde_json::from_value(json!({"id": 1, "connect": {"client": "c2", "ping": 25}})).unwrap();
        connect.encode_length_delimited(&mut out).unwrap();
        Reply::default().encode_length_delimited(&mut out).unwrap(); // a ping: the single byte 0x00
        let publish: Reply = serde_json::from_value(json!({"id": 2, "publish": {}})).unwrap();
        publish.encode_length_delimited(&mut out).unwrap();
        ws.send(Message::binary(out)).await.unwrap();
        // A publication with a binary (non-JSON) payload, as Protobuf allows.
        let publication = natsgate::protocol::Publication { data: vec![0xff, 0x00].into(), ..Default::default() };
        let push = Reply {
            push: Some(natsgate::protocol::Push {
                channel: "c".into(),
                r#pub: Some(publication),
                ..Default::default()
            }),
            ..Default::default()
        };
        ws.send(Message::binary(push.encode_length_delimited_to_vec())).await.unwrap();
        let frame = CloseFrame { code: CloseCode::from(3012), reason: "no pong".into() };
        ws.send(Message::Close(Some(frame))).await.unwrap();
        while ws.next().await.is_some() {}
    })
    .await;

    let mut client = WsClient::connect(&url, Protocol::Protobuf).await;
    client
        .send_json("{\"id\":1,\"connect\":{\"token\":\"t\"}}\n{\"id\":2,\"publish\":{\"channel\":\"c\",\"data\":{\"x\":true}}}")
        .await;
    let frame = client.recv_frame(TIMEOUT).await;
    assert_eq!(frame.len(), 3);
    assert_eq!(frame[0]["connect"]["client"], "c2");
    assert_eq!(frame[1], json!({}), "an empty Reply reads as the JSON ping {{}}");
    assert_eq!(frame[2]["id"], 2);
    let push = client.recv_reply(TIMEOUT).await;
    let publication = push.push.expect("push").r#pub.expect("pub");
    assert_eq!(publication.data.as_ref(), &[0xff, 0x00]);
    assert_eq!(client.expect_close(Duration::from_secs(2)).await, (3012, "no pong".to_string()));
}

#[tokio::test]
async fn ws_client_times_out_instead_of_hanging() {
    let url = fake_server(|mut ws| async move { while ws.next().await.is_some() {} }).await;
    let mut client = WsClient::connect(&url, Protocol::Json).await;
    let started = std::time::Instant::now();
    assert!(matches!(client.next(Duration::from_millis(200)).await, Err(common::WsError::Timeout(_))));
    client.expect_silence(Duration::from_millis(100)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    client.close(1000, "bye").await;
}
