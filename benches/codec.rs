//! Codec micro-benchmarks: the publication fan-out fast path against the
//! generic reply encoder, and decoding a 10-command frame, for both protocols.
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use natsgate::protocol::{
    json, protobuf, ClientInfo, Command, ConnectRequest, HistoryRequest, Protocol, Publication, PublishRequest, Push,
    Reply, RpcRequest, StreamPosition, SubscribeRequest,
};

/// A typical chat message: ~100 bytes of data, publisher info, offset, one tag.
fn publication() -> Publication {
    Publication {
        data: Bytes::from_static(
            br#"{"text":"hello everyone, the meeting moves to 3pm","author":{"id":42,"name":"Ann"},"ts":1718000000}"#,
        ),
        info: Some(ClientInfo {
            user: "42".into(),
            client: "5f0c7a9e-1f42-4d2b-9a43-6f3e2b7c1d10".into(),
            conn_info: Bytes::from_static(br#"{"name":"Ann"}"#),
            chan_info: Bytes::new(),
        }),
        offset: 1234,
        tags: [("kind".to_string(), "chat".to_string())].into(),
        ..Default::default()
    }
}

/// The first frame centrifuge-js sends (connect then subscribes), plus a
/// few everyday commands: 10 in all.
fn commands() -> Vec<Command> {
    let subscribe = |id: u32, channel: &str| Command {
        id,
        subscribe: Some(SubscribeRequest {
            channel: channel.into(),
            recover: true,
            offset: 10,
            epoch: "xyz".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        Command {
            id: 1,
            connect: Some(ConnectRequest {
                token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiIsImV4cCI6MTcxODAwMDAwMH0.c2lnbmF0dXJlLXNpZ25hdHVyZQ".into(),
                name: "js".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        subscribe(2, "news"),
        subscribe(3, "chat:room-1"),
        subscribe(4, "chat:room-2"),
        subscribe(5, "presence:lobby"),
        Command {
            id: 6,
            publish: Some(PublishRequest {
                channel: "chat:room-1".into(),
                data: Bytes::from_static(br#"{"text":"hi all","n":[1,2,3]}"#),
                ..Default::default()
            }),
            ..Default::default()
        },
        Command {
            id: 7,
            rpc: Some(RpcRequest { method: "getProfile".into(), data: Bytes::from_static(br#"{"id":42}"#) }),
            ..Default::default()
        },
        Command {
            id: 8,
            history: Some(HistoryRequest {
                channel: "news".into(),
                limit: 10,
                since: Some(StreamPosition { offset: 5, epoch: "xyz".into() }),
                ..Default::default()
            }),
            ..Default::default()
        },
        Command { id: 9, ping: Some(Default::default()), ..Default::default() },
        Command::default(),
    ]
}

fn encode_push(c: &mut Criterion) {
    let channel = "chat:room-1";
    let publication = publication();
    let reply = Reply {
        push: Some(Push { channel: channel.into(), r#pub: Some(publication.clone()), ..Default::default() }),
        ..Default::default()
    };
    let mut out = BytesMut::with_capacity(1024);
    let mut group = c.benchmark_group("encode_publication_push");
    for protocol in [Protocol::Json, Protocol::Protobuf] {
        let name = format!("{protocol:?}").to_lowercase();
        group.bench_function(format!("{name}/fast_path"), |b| {
            b.iter(|| {
                out.clear();
                protocol.encode_publication_push(black_box(channel), black_box(&publication), &mut out).unwrap();
            })
        });
        // A Reply already built, so this measures the encoder alone; a caller
        // holding only a Publication would also pay for building the Reply.
        group.bench_function(format!("{name}/encode_reply"), |b| {
            b.iter(|| {
                out.clear();
                protocol.encode_reply(black_box(&reply), &mut out).unwrap();
            })
        });
        group.bench_function(format!("{name}/build_and_encode_reply"), |b| {
            b.iter(|| {
                out.clear();
                let reply = Reply {
                    push: Some(Push {
                        channel: black_box(channel).into(),
                        r#pub: Some(black_box(&publication).clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                protocol.encode_reply(&reply, &mut out).unwrap();
            })
        });
    }
    group.finish();
}

fn decode_batch(c: &mut Criterion) {
    let commands = commands();
    let json_frame =
        commands.iter().map(|command| serde_json::to_string(command).unwrap()).collect::<Vec<_>>().join("\n");
    let mut protobuf_frame = Vec::new();
    for command in &commands {
        prost::Message::encode_length_delimited(command, &mut protobuf_frame).unwrap();
    }
    assert_eq!(json::decode_commands(json_frame.as_bytes()).unwrap(), commands);
    assert_eq!(protobuf::decode_commands(&protobuf_frame).unwrap(), commands);

    let mut group = c.benchmark_group("decode_10_commands");
    group.bench_function("json", |b| b.iter(|| json::decode_commands(black_box(json_frame.as_bytes())).unwrap()));
    group.bench_function("protobuf", |b| b.iter(|| protobuf::decode_commands(black_box(&protobuf_frame)).unwrap()));
    group.finish();
}

/// The channel -> NATS subject mapping, for a plain and an escape-heavy name.
fn subject_mapping(c: &mut Criterion) {
    let map = natsgate::broker::subject::SubjectMap::new("natsgate");
    c.bench_function("subject: chat:room-42", |b| b.iter(|| map.channel_subject(black_box("chat:room-42"))));
    c.bench_function("subject: escape-heavy", |b| b.iter(|| map.channel_subject(black_box("chat:a.b c*>_ünï#42,43"))));
}

/// Connection token verification (HS256), as done on every connect.
fn jwt_verification(c: &mut Criterion) {
    let config = natsgate::config::Config::from_iter([(
        "NATSGATE_TOKEN_HMAC_SECRET_KEY".to_string(),
        "bench-secret".to_string(),
    )])
    .expect("config");
    let verifier = natsgate::auth::TokenVerifier::from_config(&config).expect("verifier");
    let token = natsgate::auth::mint_hs256("bench-secret", &serde_json::json!({"sub": "42", "info": {"name": "x"}}));
    c.bench_function("jwt: verify HS256 connection token", |b| {
        b.iter(|| verifier.verify_connect(black_box(&token)).expect("valid"))
    });
}

criterion_group!(benches, encode_push, decode_batch, subject_mapping, jwt_verification);
criterion_main!(benches);
