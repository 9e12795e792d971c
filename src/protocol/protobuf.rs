//! Protobuf codec: uvarint-length-prefixed messages in binary frames.
//!
//! Every message carries its length prefix, even alone in a frame, so the
//! empty ping reply is the single byte 0x00 and an empty frame holds no
//! commands.

use super::*;
use bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, message, WireType};
use prost::Message as _;

/// Splits a binary frame into its length-prefixed commands.
pub fn decode_commands(frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let mut rest = frame;
    let mut commands = Vec::new();
    while !rest.is_empty() {
        let len = decode_length(&mut rest)?;
        if len > rest.len() {
            return Err(DecodeError::TruncatedMessage);
        }
        let (body, tail) = rest.split_at(len);
        commands.push(Command::decode(body)?);
        rest = tail;
    }
    Ok(commands)
}

/// Reads one uvarint length prefix, telling a prefix cut short by the end
/// of the frame (`Truncated`) from a malformed one.
fn decode_length(rest: &mut &[u8]) -> Result<usize, DecodeError> {
    let before = *rest;
    match prost::decode_length_delimiter(&mut *rest) {
        Ok(len) => Ok(len),
        // A varint is at most 10 bytes, each but the last with the high bit set.
        Err(_) if before.len() < 10 && before.iter().all(|b| b & 0x80 != 0) => Err(DecodeError::Truncated),
        Err(err) => Err(err.into()),
    }
}

/// Appends one reply with its length prefix.
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    let len = reply.encoded_len();
    out.reserve(encoded_len_varint(len as u64) + len);
    // prost only fails when the buffer cannot grow; BytesMut always can.
    let _ = reply.encode_length_delimited(out);
}

/// Reply.push and Push.pub share field number 4; Push.channel is 2.
const REPLY_PUSH: u32 = 4;
const PUSH_CHANNEL: u32 = 2;
const PUSH_PUB: u32 = 4;

/// The fan-out fast path: the same bytes as `encode_reply` for
/// `Reply { push: Push { channel, pub: publication } }`, without building
/// (or cloning into) a `Reply`. prost writes fields in field-number order
/// and skips empty scalars, so this does too.
pub fn encode_publication_push(channel: &str, publication: &Publication, out: &mut BytesMut) {
    let pub_len = publication.encoded_len();
    let channel_len = if channel.is_empty() { 0 } else { 1 + delimited_len(channel.len()) };
    let push_len = channel_len + 1 + delimited_len(pub_len);
    let reply_len = 1 + delimited_len(push_len);
    out.reserve(delimited_len(reply_len));

    encode_varint(reply_len as u64, out);
    encode_key(REPLY_PUSH, WireType::LengthDelimited, out);
    encode_varint(push_len as u64, out);
    if !channel.is_empty() {
        encode_key(PUSH_CHANNEL, WireType::LengthDelimited, out);
        encode_varint(channel.len() as u64, out);
        out.put_slice(channel.as_bytes());
    }
    message::encode(PUSH_PUB, publication, out);
}

/// Size of a body of `len` bytes with its uvarint length prefix.
fn delimited_len(len: usize) -> usize {
    encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn frame_of(commands: &[Command]) -> Vec<u8> {
        let mut frame = Vec::new();
        for command in commands {
            command.encode_length_delimited(&mut frame).unwrap();
        }
        frame
    }

    fn decode_one(command: Command) -> Command {
        let mut decoded = decode_commands(&frame_of(&[command])).unwrap();
        assert_eq!(decoded.len(), 1);
        decoded.pop().unwrap()
    }

    fn encode(reply: &Reply) -> BytesMut {
        let mut out = BytesMut::new();
        encode_reply(reply, &mut out);
        out
    }

    /// Decodes one length-prefixed reply, checking that it fills `bytes`.
    fn decode_reply(bytes: &[u8]) -> Reply {
        let mut rest = bytes;
        let reply = Reply::decode_length_delimited(&mut rest).unwrap();
        assert!(rest.is_empty(), "one reply per encode");
        reply
    }

    fn push_pub(channel: &str, publication: Publication) -> Reply {
        Reply {
            push: Some(Push { channel: channel.into(), r#pub: Some(publication), ..Default::default() }),
            ..Default::default()
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn empty_frame_has_no_commands_and_zero_byte_is_a_pong() {
        assert!(decode_commands(b"").unwrap().is_empty());
        assert_eq!(decode_commands(&[0]).unwrap(), vec![Command::default()]);
        assert_eq!(decode_commands(&[0, 0]).unwrap().len(), 2);
    }

    #[test]
    fn ping_reply_is_a_single_zero_byte() {
        assert_eq!(&encode(&Reply::default())[..], &[0]);
    }

    #[test]
    fn decodes_every_command_kind() {
        let sub = SubscribeRequest {
            channel: "news".into(),
            recover: true,
            offset: 5,
            epoch: "e".into(),
            ..Default::default()
        };
        let commands = vec![
            Command {
                id: 1,
                connect: Some(ConnectRequest {
                    token: "t0k".into(),
                    name: "js".into(),
                    subs: [("news".into(), sub.clone())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Command { id: 2, subscribe: Some(sub), ..Default::default() },
            Command {
                id: 3,
                publish: Some(PublishRequest {
                    channel: "c".into(),
                    data: Bytes::from_static(b"\x00\xffbinary ok"),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Command { id: 4, refresh: Some(RefreshRequest { token: "new".into() }), ..Default::default() },
            Command { id: 5, ping: Some(PingRequest {}), ..Default::default() },
            Command::default(),
            Command {
                id: 6,
                rpc: Some(RpcRequest { method: "m".into(), data: Bytes::from_static(b"{}") }),
                ..Default::default()
            },
            Command { send: Some(SendRequest { data: Bytes::from_static(b"x") }), ..Default::default() },
            Command {
                id: 7,
                history: Some(HistoryRequest {
                    channel: "h".into(),
                    limit: 10,
                    since: Some(StreamPosition { offset: 7, epoch: "ep".into() }),
                    reverse: true,
                }),
                ..Default::default()
            },
        ];
        assert_eq!(decode_commands(&frame_of(&commands)).unwrap(), commands);
        assert_eq!(decode_one(commands[0].clone()).connect.unwrap().subs["news"].offset, 5);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        // Subscribe { channel: "c", field 99 (varint) = 1 } as sent by a newer SDK.
        let mut body = Vec::new();
        prost::encoding::string::encode(1, &"c".to_string(), &mut body);
        prost::encoding::uint32::encode(99, &1, &mut body);
        let mut command = Vec::new();
        prost::encoding::uint32::encode(1, &2, &mut command);
        prost::encoding::bytes::encode(5, &body, &mut command);
        let mut frame = vec![command.len() as u8];
        frame.extend_from_slice(&command);
        let decoded = decode_commands(&frame).unwrap();
        assert_eq!(decoded[0].subscribe.as_ref().unwrap().channel, "c");
    }

    #[test]
    fn rejects_truncated_frames() {
        let frame = frame_of(&[Command {
            id: 1,
            connect: Some(ConnectRequest { token: "t".repeat(200), ..Default::default() }),
            ..Default::default()
        }]);
        assert!(matches!(decode_commands(&frame[..1]), Err(DecodeError::Truncated)), "two-byte prefix cut");
        assert!(matches!(decode_commands(&frame[..5]), Err(DecodeError::TruncatedMessage)));
        assert!(matches!(decode_commands(&[0x80; 11]), Err(DecodeError::Protobuf(_))), "overlong varint");
        assert!(matches!(decode_commands(&[2, 0x08]), Err(DecodeError::TruncatedMessage)));
        assert!(matches!(decode_commands(&[1, 0x08]), Err(DecodeError::Protobuf(_))), "field cut inside the body");
    }

    #[test]
    fn replies_round_trip() {
        let replies = vec![
            Reply {
                id: 1,
                connect: Some(ConnectResult {
                    client: "c1".into(),
                    version: "0.1.0".into(),
                    expires: true,
                    ttl: 60,
                    subs: vec![SubscribeResultEntry {
                        key: "news".into(),
                        value: Some(SubscribeResult { recoverable: true, offset: 9, ..Default::default() }),
                    }],
                    ping: 25,
                    pong: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Reply {
                id: 2,
                subscribe: Some(SubscribeResult {
                    epoch: "ep".into(),
                    publications: vec![Publication { data: Bytes::from_static(b"1"), offset: 3, ..Default::default() }],
                    recovered: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Reply {
                id: 3,
                error: Some(Error { code: 103, message: "permission denied".into(), temporary: false }),
                ..Default::default()
            },
            push_pub("c", Publication { data: Bytes::from_static(b"\x00binary"), ..Default::default() }),
            Reply {
                push: Some(Push {
                    channel: "c".into(),
                    unsubscribe: Some(Unsubscribe { code: 2000, reason: "server unsubscribe".into() }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Reply {
                push: Some(Push {
                    disconnect: Some(Disconnect { code: 3001, reason: "shutdown".into(), reconnect: true }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let mut frame = BytesMut::new();
        for reply in &replies {
            let one = encode(reply);
            assert_eq!(&decode_reply(&one), reply);
            Protocol::Protobuf.join_into(&mut frame, &one);
        }
        let mut rest = &frame[..];
        for reply in &replies {
            assert_eq!(&Reply::decode_length_delimited(&mut rest).unwrap(), reply);
        }
    }

    #[test]
    fn error_reply_bytes() {
        let reply = Reply {
            id: 3,
            error: Some(Error { code: 103, message: "no".into(), temporary: false }),
            ..Default::default()
        };
        // len, id=3, error { code=103, message="no" }
        assert_eq!(&encode(&reply)[..], &[10, 0x08, 3, 0x12, 6, 0x08, 103, 0x12, 2, b'n', b'o']);
    }

    #[test]
    fn fast_path_matches_prost_path() {
        let info = ClientInfo {
            user: "42".into(),
            client: "abc".into(),
            conn_info: Bytes::from_static(b"{}"),
            chan_info: Bytes::new(),
        };
        let big = Bytes::from(vec![7u8; 300]);
        let publications = vec![
            Publication::default(),
            Publication { data: Bytes::from_static(br#"{"input":"hi"}"#), ..Default::default() },
            Publication { offset: u64::MAX, ..Default::default() },
            Publication { info: Some(ClientInfo::default()), ..Default::default() },
            Publication { data: big.clone(), info: Some(info.clone()), offset: 17, ..Default::default() },
            Publication {
                data: big,
                info: Some(info),
                offset: 1,
                tags: tags(&[("k1", "v1"), ("k2", ""), ("", "v")]),
                delta: true,
                ..Default::default()
            },
        ];
        let long_channel = "x".repeat(200);
        for channel in ["c", "", long_channel.as_str()] {
            for publication in &publications {
                let slow = encode(&push_pub(channel, publication.clone()));
                let mut fast = BytesMut::from(&b"prefix"[..]);
                encode_publication_push(channel, publication, &mut fast);
                assert_eq!(&fast[6..], &slow[..], "{channel:?} {publication:?}");
                assert_eq!(decode_reply(&fast[6..]).push.unwrap().r#pub.as_ref(), Some(publication));
            }
        }
    }

    #[test]
    fn random_input_never_panics() {
        let seed_frame = frame_of(&[
            Command {
                id: 1,
                connect: Some(ConnectRequest {
                    token: "t".into(),
                    subs: [("a".into(), SubscribeRequest::default())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Command {
                id: 2,
                history: Some(HistoryRequest {
                    channel: "h".into(),
                    since: Some(StreamPosition { offset: 1, epoch: "e".into() }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..5000 {
            let mut frame = if round % 2 == 0 {
                (0..next() % 96).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                seed_frame.clone()
            };
            for _ in 0..1 + next() % 4 {
                if frame.is_empty() {
                    break;
                }
                let at = (next() % frame.len() as u64) as usize;
                frame[at] = next() as u8;
            }
            let _ = decode_commands(&frame);
        }
        // Deeply nested groups must hit prost's recursion limit, not the stack.
        let deep: Vec<u8> = std::iter::repeat_n(0x0b_u8, 5000).collect(); // start-group, field 1
        let mut frame = Vec::new();
        encode_varint(deep.len() as u64, &mut frame);
        frame.extend_from_slice(&deep);
        assert!(decode_commands(&frame).is_err());
    }
}

#[cfg(test)]
mod subs_entry_tests {
    use super::*;
    use prost::Message;

    /// An empty server-side subscription result is still written as an
    /// (empty) value, as Go writes map values; centrifuge-js needs it.
    #[test]
    fn empty_subs_values_are_written() {
        let result = ConnectResult {
            subs: vec![SubscribeResultEntry { key: "news".into(), value: Some(SubscribeResult::default()) }],
            ..Default::default()
        };
        let bytes = result.encode_to_vec();
        // field 6, len 8: [key "news" (10,4,...), value (18,0)]
        assert_eq!(bytes, vec![50, 8, 10, 4, b'n', b'e', b'w', b's', 18, 0]);
    }
}
