//! JSON codec: newline-delimited Command/Reply objects in text frames.
//!
//! A frame holds one or more JSON objects separated by `\n`. Decoding is
//! lenient (trailing newline, `\r\n`, blank lines); encoding writes one compact
//! object per reply and leaves joining to `Protocol::join_into`, because a
//! blank line between replies breaks centrifuge-python.
//!
//! `bytes` fields are embedded as raw JSON. Raw JSON may contain line breaks
//! (as whitespace between tokens), which would split a reply in two on the
//! wire; the encoder drops them. That is always safe: valid JSON cannot hold a
//! raw CR or LF inside a string, and whitespace is never needed between tokens.

use super::*;
use bytes::BufMut;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// Splits a text frame into commands, one JSON object per line.
pub fn decode_commands(frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let text = std::str::from_utf8(frame)?;
    let mut commands = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_matches(|c| matches!(c, ' ' | '\t' | '\r'));
        if line.is_empty() {
            continue;
        }
        // serde's derived structs also accept arrays (`[1]` would be a
        // command with id 1); Centrifugo only accepts objects.
        if !line.starts_with('{') {
            return Err(DecodeError::NotObject);
        }
        commands.push(serde_json::from_str(line)?);
    }
    Ok(commands)
}

/// Appends one reply as compact JSON, without a trailing newline. Fails only
/// when a `bytes` field is not valid JSON; `out` is then left unchanged.
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    if let Err(err) = serde_json::to_writer(out.writer(), reply) {
        out.truncate(start);
        return Err(err.into());
    }
    // serde_json escapes CR and LF in strings, so any left come from raw
    // JSON fields (see the module docs).
    if out[start..].iter().any(|&b| b == b'\n' || b == b'\r') {
        let stripped: Vec<u8> = out[start..].iter().copied().filter(|&b| b != b'\n' && b != b'\r').collect();
        out.truncate(start);
        out.extend_from_slice(&stripped);
    }
    Ok(())
}

/// The fan-out fast path: the same bytes as `encode_reply` for
/// `Reply { push: Push { channel, pub: publication } }`, written directly
/// instead of through serde, with no `Reply` to build. Field order and
/// omission rules mirror the serde attributes that build.rs generates.
pub fn encode_publication_push(
    channel: &str,
    publication: &Publication,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_publication_push(channel, publication, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_publication_push(channel: &str, publication: &Publication, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.reserve(48 + channel.len() + publication.data.len());
    out.put_slice(b"{\"push\":{");
    if !channel.is_empty() {
        out.put_slice(b"\"channel\":");
        write_str(out, channel)?;
        out.put_u8(b',');
    }
    out.put_slice(b"\"pub\":{");
    let mut fields = Fields::new();
    if !publication.data.is_empty() {
        fields.key(out, b"\"data\":");
        write_raw(out, &publication.data)?;
    }
    if let Some(info) = &publication.info {
        fields.key(out, b"\"info\":");
        write_client_info(out, info)?;
    }
    if publication.offset != 0 {
        fields.key(out, b"\"offset\":");
        serde_json::to_writer(out.writer(), &publication.offset)?;
    }
    if !publication.tags.is_empty() {
        fields.key(out, b"\"tags\":");
        write_tags(out, &publication.tags)?;
    }
    // The fields after `tags`, in the order serde writes them (field numbers).
    if publication.delta {
        fields.key(out, b"\"delta\":true");
    }
    if !publication.key.is_empty() {
        fields.key(out, b"\"key\":");
        write_str(out, &publication.key)?;
    }
    if publication.removed {
        fields.key(out, b"\"removed\":true");
    }
    if !publication.epoch.is_empty() {
        fields.key(out, b"\"epoch\":");
        write_str(out, &publication.epoch)?;
    }
    if publication.version != 0 {
        fields.key(out, b"\"version\":");
        serde_json::to_writer(out.writer(), &publication.version)?;
    }
    out.put_slice(b"}}}");
    Ok(())
}

/// Writes the separating commas between object fields.
struct Fields {
    first: bool,
}

impl Fields {
    fn new() -> Self {
        Fields { first: true }
    }

    fn key(&mut self, out: &mut BytesMut, key: &[u8]) {
        if !std::mem::take(&mut self.first) {
            out.put_u8(b',');
        }
        out.put_slice(key);
    }
}

/// `user` and `client` are always present (SDKs rely on them).
fn write_client_info(out: &mut BytesMut, info: &ClientInfo) -> Result<(), EncodeError> {
    out.put_slice(b"{\"user\":");
    write_str(out, &info.user)?;
    out.put_slice(b",\"client\":");
    write_str(out, &info.client)?;
    if !info.conn_info.is_empty() {
        out.put_slice(b",\"conn_info\":");
        write_raw(out, &info.conn_info)?;
    }
    if !info.chan_info.is_empty() {
        out.put_slice(b",\"chan_info\":");
        write_raw(out, &info.chan_info)?;
    }
    out.put_u8(b'}');
    Ok(())
}

/// Same iteration order as serde's map serializer, hence the same bytes.
fn write_tags(out: &mut BytesMut, tags: &HashMap<String, String>) -> Result<(), EncodeError> {
    out.put_u8(b'{');
    let mut fields = Fields::new();
    for (key, value) in tags {
        fields.key(out, b"");
        write_str(out, key)?;
        out.put_u8(b':');
        write_str(out, value)?;
    }
    out.put_u8(b'}');
    Ok(())
}

fn write_str(out: &mut BytesMut, value: &str) -> Result<(), EncodeError> {
    // Writing into a BytesMut cannot fail; the `?` is only for the types.
    serde_json::to_writer(out.writer(), value)?;
    Ok(())
}

/// Embeds a `bytes` field, validated exactly as `raw_json::serialize` does
/// (UTF-8, then one JSON value; surrounding whitespace dropped), minus line
/// breaks.
fn write_raw(out: &mut BytesMut, value: &[u8]) -> Result<(), EncodeError> {
    let text = std::str::from_utf8(value).map_err(<serde_json::Error as serde::ser::Error>::custom)?;
    let raw: &RawValue = serde_json::from_str(text)?;
    let raw = raw.get().as_bytes();
    if raw.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend(raw.iter().copied().filter(|&b| b != b'\n' && b != b'\r'));
    } else {
        out.put_slice(raw);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(line: &str) -> Command {
        let mut commands = decode_commands(line.as_bytes()).unwrap();
        assert_eq!(commands.len(), 1, "{line}");
        commands.pop().unwrap()
    }

    fn encode(reply: &Reply) -> String {
        let mut out = BytesMut::new();
        encode_reply(reply, &mut out).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
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
    fn decodes_connect_with_subs() {
        let cmd = decode_one(
            r#"{"id":1,"connect":{"token":"t0k","name":"js","subs":{"news":{"recover":true,"offset":5,"epoch":"e"}}}}"#,
        );
        assert_eq!(cmd.id, 1);
        let connect = cmd.connect.unwrap();
        assert_eq!(connect.token, "t0k");
        assert_eq!(connect.name, "js");
        let sub = &connect.subs["news"];
        assert!(sub.recover);
        assert_eq!((sub.offset, sub.epoch.as_str()), (5, "e"));
    }

    #[test]
    fn decodes_subscribe_ignoring_unknown_fields() {
        let cmd = decode_one(r#"{"id":2,"subscribe":{"channel":"chat","flag":1,"token":"x"},"extra":[1,{"a":2}]}"#);
        let sub = cmd.subscribe.unwrap();
        assert_eq!((cmd.id, sub.channel.as_str(), sub.token.as_str()), (2, "chat", "x"));
    }

    #[test]
    fn decodes_publish_data_as_raw_json() {
        let cmd = decode_one(r#"{"id":2,"publish":{"channel":"c","data":{"a":[1,2]}}}"#);
        let publish = cmd.publish.unwrap();
        assert_eq!(publish.channel, "c");
        assert_eq!(&publish.data[..], br#"{"a":[1,2]}"#);
        // Scalars and strings are raw JSON too, quotes included.
        assert_eq!(&decode_one(r#"{"send":{"data":"hi"}}"#).send.unwrap().data[..], br#""hi""#);
    }

    #[test]
    fn decodes_refresh_ping_rpc_send_history() {
        assert_eq!(decode_one(r#"{"id":3,"refresh":{"token":"new"}}"#).refresh.unwrap().token, "new");
        let ping = decode_one(r#"{"id":4,"ping":{}}"#);
        assert_eq!((ping.id, ping.ping), (4, Some(PingRequest {})));
        assert_eq!(decode_one("{}"), Command::default());
        let rpc = decode_one(r#"{"id":5,"rpc":{"method":"m","data":[true,null]}}"#).rpc.unwrap();
        assert_eq!((rpc.method.as_str(), &rpc.data[..]), ("m", &b"[true,null]"[..]));
        let send = decode_one(r#"{"send":{"data":{"k":"v"}}}"#);
        assert_eq!((send.id, &send.send.unwrap().data[..]), (0, &br#"{"k":"v"}"#[..]));
        let history = decode_one(
            r#"{"id":6,"history":{"channel":"h","limit":10,"since":{"offset":7,"epoch":"ep"},"reverse":true}}"#,
        )
        .history
        .unwrap();
        assert_eq!((history.channel.as_str(), history.limit, history.reverse), ("h", 10, true));
        assert_eq!(history.since, Some(StreamPosition { offset: 7, epoch: "ep".into() }));
    }

    #[test]
    fn decodes_multi_command_frames() {
        let frame = b"{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":\"a\"}}\n{\"id\":3,\"subscribe\":{\"channel\":\"b\"}}\n";
        let ids: Vec<u32> = decode_commands(frame).unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let lenient = b"\r\n{\"id\":1}\r\n\r\n  \n\t{\"id\":2} \r\n";
        assert_eq!(decode_commands(lenient).unwrap().len(), 2);
        assert!(decode_commands(b"").unwrap().is_empty());
        assert!(decode_commands(b"\n\r\n").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(matches!(decode_commands(b"[1]"), Err(DecodeError::NotObject)));
        assert!(matches!(decode_commands(b"{\"id\":1}\n42"), Err(DecodeError::NotObject)));
        assert!(matches!(decode_commands(b"null"), Err(DecodeError::NotObject)));
        assert!(matches!(decode_commands(b"{\"id\":\"x\"}"), Err(DecodeError::Json(_))));
        assert!(matches!(decode_commands(b"{\"id\":1}{\"id\":2}"), Err(DecodeError::Json(_))));
        assert!(matches!(decode_commands(b"{\"id\":1"), Err(DecodeError::Json(_))));
        assert!(matches!(decode_commands(b"{\"id\":1,\"connect\":{\"token\":\"\xff\"}}"), Err(DecodeError::Utf8(_))));
    }

    #[test]
    fn encodes_ping_and_errors() {
        assert_eq!(encode(&Reply::default()), "{}");
        let error = Reply {
            id: 3,
            error: Some(Error { code: 103, message: "permission denied".into(), temporary: false }),
            ..Default::default()
        };
        assert_eq!(encode(&error), r#"{"id":3,"error":{"code":103,"message":"permission denied"}}"#);
        let temporary = Reply {
            id: 4,
            error: Some(Error { code: 100, message: "internal server error".into(), temporary: true }),
            ..Default::default()
        };
        assert_eq!(
            encode(&temporary),
            r#"{"id":4,"error":{"code":100,"message":"internal server error","temporary":true}}"#
        );
    }

    #[test]
    fn encodes_connect_result() {
        let value = SubscribeResult { recoverable: true, epoch: "e".into(), offset: 9, ..Default::default() };
        let subs = vec![SubscribeResultEntry { key: "news".into(), value: Some(value) }];
        let reply = Reply {
            id: 1,
            connect: Some(ConnectResult {
                client: "c1".into(),
                version: "0.1.0".into(),
                expires: true,
                ttl: 60,
                data: Bytes::from_static(br#"{"hello":1}"#),
                subs,
                ping: 25,
                pong: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            encode(&reply),
            r#"{"id":1,"connect":{"client":"c1","version":"0.1.0","expires":true,"ttl":60,"data":{"hello":1},"subs":{"news":{"recoverable":true,"epoch":"e","offset":9}},"ping":25,"pong":true}}"#
        );
    }

    #[test]
    fn encodes_subscribe_result() {
        let reply = Reply {
            id: 2,
            subscribe: Some(SubscribeResult {
                recoverable: true,
                epoch: "ep".into(),
                offset: 3,
                publications: vec![Publication { data: Bytes::from_static(b"1"), offset: 3, ..Default::default() }],
                recovered: true,
                was_recovering: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            encode(&reply),
            r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"ep","publications":[{"data":1,"offset":3}],"recovered":true,"offset":3,"was_recovering":true}}"#
        );
        let empty = Reply { id: 5, subscribe: Some(SubscribeResult::default()), ..Default::default() };
        assert_eq!(encode(&empty), r#"{"id":5,"subscribe":{}}"#);
    }

    #[test]
    fn encodes_pushes() {
        let publication = Publication { data: Bytes::from_static(br#"{"x":1}"#), ..Default::default() };
        assert_eq!(encode(&push_pub("c", publication)), r#"{"push":{"channel":"c","pub":{"data":{"x":1}}}}"#);
        let unsubscribe = Reply {
            push: Some(Push {
                channel: "c".into(),
                unsubscribe: Some(Unsubscribe { code: 2000, reason: "server unsubscribe".into() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            encode(&unsubscribe),
            r#"{"push":{"channel":"c","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}"#
        );
        let disconnect = Reply {
            push: Some(Push {
                disconnect: Some(Disconnect { code: 3001, reason: "shutdown".into(), reconnect: true }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            encode(&disconnect),
            r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}}"#
        );
        let join = Reply {
            push: Some(Push {
                channel: "c".into(),
                join: Some(Join { info: Some(ClientInfo { user: "u".into(), ..Default::default() }) }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(encode(&join), r#"{"push":{"channel":"c","join":{"info":{"user":"u","client":""}}}}"#);
    }

    #[test]
    fn invalid_raw_json_is_an_error_not_a_panic() {
        for data in [&b"not json"[..], b"{\"a\":", b"\xff\xfe", b"1 2"] {
            let mut out = BytesMut::from(&b"keep"[..]);
            let publication = Publication { data: Bytes::copy_from_slice(data), ..Default::default() };
            assert!(encode_reply(&push_pub("c", publication.clone()), &mut out).is_err());
            assert!(encode_publication_push("c", &publication, &mut out).is_err());
            assert_eq!(&out[..], b"keep", "output rolled back");
        }
    }

    #[test]
    fn line_breaks_in_raw_json_do_not_split_the_reply() {
        let publication = Publication {
            data: Bytes::from_static(b" {\n  \"a\": \"x y\",\r\n  \"b\": [1,\n2]\n}\n"),
            info: Some(ClientInfo {
                user: "u\nv".into(),
                conn_info: Bytes::from_static(b"[\n1]"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let expected = r#"{"push":{"channel":"c","pub":{"data":{  "a": "x y",  "b": [1,2]},"info":{"user":"u\nv","client":"","conn_info":[1]}}}}"#;
        assert_eq!(encode(&push_pub("c", publication.clone())), expected);
        let mut fast = BytesMut::new();
        encode_publication_push("c", &publication, &mut fast).unwrap();
        assert_eq!(std::str::from_utf8(&fast).unwrap(), expected);
    }

    fn sample_publications() -> Vec<Publication> {
        let info = ClientInfo {
            user: "42".into(),
            client: "9f1c\"\\/\u{1}é".into(),
            conn_info: Bytes::from_static(br#"{"name":"Ann"}"#),
            chan_info: Bytes::from_static(b"\"vip\""),
        };
        vec![
            Publication::default(),
            Publication { data: Bytes::from_static(br#"{"input":"hi"}"#), ..Default::default() },
            Publication { offset: 17, ..Default::default() },
            Publication { info: Some(ClientInfo::default()), ..Default::default() },
            Publication {
                data: Bytes::from_static(b"[1,2,3]"),
                info: Some(info.clone()),
                offset: u64::MAX,
                ..Default::default()
            },
            Publication { tags: tags(&[("a", "1")]), ..Default::default() },
            Publication {
                data: Bytes::from_static(b"\"text\""),
                info: Some(ClientInfo { conn_info: Bytes::new(), ..info }),
                offset: 1,
                tags: tags(&[("k1", "v1"), ("quote\"", "line\nbreak"), ("", ""), ("ü", "☃")]),
                delta: true,
                ..Default::default()
            },
            Publication { key: "k\"ey".into(), removed: true, offset: 3, ..Default::default() },
        ]
    }

    #[test]
    fn fast_path_matches_serde_path() {
        for channel in ["c", "", "news:room\"1\"\\\u{7f}\u{2028}"] {
            for publication in sample_publications() {
                let mut slow = BytesMut::new();
                encode_reply(&push_pub(channel, publication.clone()), &mut slow).unwrap();
                let mut fast = BytesMut::from(&b"prefix"[..]);
                encode_publication_push(channel, &publication, &mut fast).unwrap();
                assert_eq!(&fast[6..], &slow[..], "{publication:?}");
                assert_eq!(decode_reply(&fast[6..]).push.unwrap().r#pub.unwrap(), publication);
            }
        }
    }

    /// Test helper: decodes our own output, for round trips.
    fn decode_reply(bytes: &[u8]) -> Reply {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn commands_round_trip() {
        let command = Command {
            id: 7,
            publish: Some(PublishRequest {
                channel: "c".into(),
                data: Bytes::from_static(br#"{"a":[1,{"b":null}]}"#),
                ..Default::default()
            }),
            ..Default::default()
        };
        let line = serde_json::to_string(&command).unwrap();
        assert_eq!(decode_one(&line), command);
    }

    /// xorshift64*: deterministic, dependency-free randomness for fuzzing.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_input_never_panics() {
        let seeds: &[&[u8]] = &[
            br#"{"id":1,"connect":{"token":"t","subs":{"a":{"recover":true}}}}"#,
            br#"{"id":2,"publish":{"channel":"c","data":{"a":[1,2,"x\u00e9"]}}}"#,
            br#"{"id":6,"history":{"channel":"h","since":{"offset":7,"epoch":"e"}}}"#,
        ];
        let alphabet = b"{}[]\":,0123456789.eE+-truefalsnl \n\r\t\\u\xff\xc3idpushchanneldata";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..5000 {
            let mut frame: Vec<u8> = seeds[rng.below(seeds.len())].to_vec();
            if round % 3 == 0 {
                frame = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            }
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(frame.len() + 1);
                match rng.below(3) {
                    0 => frame.insert(at, alphabet[rng.below(alphabet.len())]),
                    1 if at < frame.len() => {
                        frame.remove(at);
                    }
                    _ => frame.truncate(at),
                }
            }
            if let Ok(commands) = decode_commands(&frame) {
                for command in commands {
                    // Whatever was accepted must be re-encodable.
                    serde_json::to_vec(&command).unwrap();
                }
            }
        }
        let deep = format!("{{\"publish\":{{\"data\":{}}}}}", "[".repeat(100_000));
        assert!(decode_commands(deep.as_bytes()).is_err());
    }
}
