//! Every API method's request shape, decided once ([`Command`], fed by the
//! HTTP API here and by the GRPC API from protobuf in `grpc/convert.rs`),
//! and its decoding from JSON with the rules of Centrifugo's Go decoder
//! (`encoding/json` into the `internal/apiproto` request structs), so a body
//! is accepted or refused exactly where Centrifugo's is:
//!
//! - the body must be one JSON object, or `null` (every field unset); an
//!   array, a number, a string, an empty body or trailing data is malformed;
//! - unknown fields are ignored; `null` leaves a field unset;
//! - a field of the wrong type (`"channel": 5`, `"tags": {"a": 1}`, a limit
//!   that is no 32-bit integer) makes the whole body malformed, and so does a
//!   nested object (`since`, `disconnect`) that is not an object or `null`.
//!
//! Malformed bodies get HTTP 400 on `/api/<method>` and for a whole `batch`
//! (see [`super::routes`]); in the legacy `/api` a command's malformed
//! params get error 107 in its reply line. Two differences from Go remain:
//! field names are case-sensitive (Go matches `"Channel"` too), and a field
//! given twice is malformed (Go keeps the last).

use bytes::Bytes;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::collections::HashMap;

use super::error::ApiError;
use crate::protocol::codes::ErrorCode;

/// A body that does not decode into the method's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One API call, whatever transport it came by: what `methods::execute` runs.
#[derive(Debug)]
pub(crate) enum Command {
    Publish(Publish),
    Broadcast(Broadcast),
    Subscribe(UserChannel),
    Unsubscribe(UserChannel),
    Disconnect(Disconnect),
    Refresh(Refresh),
    Presence(ChannelOnly),
    PresenceStats(ChannelOnly),
    History(History),
    HistoryRemove(ChannelOnly),
    Channels(Channels),
    Info,
    /// The map methods (see `crate::map::api`).
    Map(crate::map::api::MapRequest),
    /// `shared_poll_publish` (see `crate::shared_poll::api`).
    SharedPollPublish(crate::shared_poll::api::Publish),
}

/// The methods natsgate serves besides `batch`, by URL name.
pub(crate) const METHODS: [&str; 19] = [
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "map_publish",
    "map_remove",
    "map_read_state",
    "map_read_stream",
    "map_stats",
    "map_clear",
    "shared_poll_publish",
];

impl Command {
    /// Centrifugo's method name (HTTP path, batch key, metric label).
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Command::Publish(_) => "publish",
            Command::Broadcast(_) => "broadcast",
            Command::Subscribe(_) => "subscribe",
            Command::Unsubscribe(_) => "unsubscribe",
            Command::Disconnect(_) => "disconnect",
            Command::Refresh(_) => "refresh",
            Command::Presence(_) => "presence",
            Command::PresenceStats(_) => "presence_stats",
            Command::History(_) => "history",
            Command::HistoryRemove(_) => "history_remove",
            Command::Channels(_) => "channels",
            Command::Info => "info",
            Command::Map(request) => request.method(),
            Command::SharedPollPublish(_) => "shared_poll_publish",
        }
    }

    /// Decodes `body` as the JSON request of `method`: `Ok(None)` when
    /// natsgate has no such method (whatever the body).
    pub(crate) fn decode(method: &str, body: &str) -> Result<Option<Command>, Malformed> {
        Ok(Some(match method {
            "publish" => Command::Publish(object(body)?),
            "broadcast" => Command::Broadcast(object(body)?),
            "subscribe" => Command::Subscribe(object(body)?),
            "unsubscribe" => Command::Unsubscribe(object(body)?),
            "disconnect" => Command::Disconnect(object(body)?),
            "refresh" => Command::Refresh(object(body)?),
            "presence" => Command::Presence(object(body)?),
            "presence_stats" => Command::PresenceStats(object(body)?),
            "history" => Command::History(object(body)?),
            "history_remove" => Command::HistoryRemove(object(body)?),
            "channels" => Command::Channels(object(body)?),
            "info" => {
                object::<Empty>(body)?;
                Command::Info
            }
            "shared_poll_publish" => Command::SharedPollPublish(object(body)?),
            _ => return Ok(crate::map::api::MapRequest::decode(method, body)?.map(Command::Map)),
        }))
    }
}

/// Decodes a JSON object (or `null`, all fields unset) into `T`. serde's
/// derived structs would also take an array of field values, which Go's
/// decoder refuses: so the first token decides.
pub(crate) fn object<T: DeserializeOwned + Default>(text: &str) -> Result<T, Malformed> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') | Some(b'n') => {
            serde_json::from_str::<Option<T>>(text).map(Option::unwrap_or_default).map_err(|_| Malformed)
        }
        _ => Err(Malformed),
    }
}

/// A nested object field (`since`, `disconnect`): an object or `null`.
fn nested<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(d: D) -> Result<Option<T>, D::Error> {
    let raw = Box::<RawValue>::deserialize(d)?;
    if raw.get() == "null" {
        return Ok(None);
    }
    object(raw.get()).map(Some).map_err(|_| D::Error::custom("not an object"))
}

/// A raw JSON field: present as whatever JSON it holds, `null` included
/// (Go keeps the raw bytes `null`).
fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// A JSON payload field as its raw text, the bytes published as they are;
/// `null` included, as [`raw`]. Copied once from the body (into the boxed
/// raw value, whose allocation becomes the `Bytes`): from here to the NATS
/// connection's buffer it is only reference-counted.
pub(crate) fn raw_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
    let raw = Box::<RawValue>::deserialize(d)?;
    let text: Box<str> = raw.into();
    Ok(Some(Bytes::from(text.into_boxed_bytes())))
}

/// `map<string,string>` where a `null` value reads as "".
pub(crate) fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    let map = Option::<HashMap<String, Option<String>>>::deserialize(d)?.unwrap_or_default();
    Ok(map.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

/// `repeated string` where a `null` element reads as "".
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Option::<Vec<Option<String>>>::deserialize(d)?.unwrap_or_default();
    Ok(list.into_iter().map(Option::unwrap_or_default).collect())
}

/// Any scalar where `null` reads as the zero value.
pub(crate) fn or_zero<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[derive(Deserialize, Default)]
struct Empty {}

/// `publish`: Centrifugo's `PublishRequest`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct Publish {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    /// The payload as is: JSON's raw text, or GRPC's bytes when not empty.
    /// `b64data`, when not empty, wins over it (as in Centrifugo).
    #[serde(deserialize_with = "raw_bytes")]
    pub(crate) data: Option<Bytes>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) b64data: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) skip_history: bool,
    #[serde(deserialize_with = "string_map")]
    pub(crate) tags: HashMap<String, String>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) idempotency_key: String,
    /// Delta compression for subscribers that asked for it (issue #20).
    #[serde(deserialize_with = "or_zero")]
    pub(crate) delta: bool,
}

/// `broadcast`: Centrifugo's `BroadcastRequest`; one publication to each of
/// `channels`, answered per channel (`idempotency_key` applies to each
/// channel on its own, as in Centrifugo).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct Broadcast {
    #[serde(deserialize_with = "string_list")]
    pub(crate) channels: Vec<String>,
    /// The payload as is: JSON's raw text, or GRPC's bytes when not empty.
    /// `b64data`, when not empty, wins over it (as in Centrifugo).
    #[serde(deserialize_with = "raw_bytes")]
    pub(crate) data: Option<Bytes>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) b64data: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) skip_history: bool,
    #[serde(deserialize_with = "string_map")]
    pub(crate) tags: HashMap<String, String>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) idempotency_key: String,
    /// Delta compression for subscribers that asked for it (issue #20).
    #[serde(deserialize_with = "or_zero")]
    pub(crate) delta: bool,
}

/// `subscribe` / `unsubscribe`: the fields natsgate uses.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct UserChannel {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) user: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) client: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) session: String,
}

/// `disconnect`: Centrifugo's `DisconnectRequest`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct Disconnect {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) user: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) client: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) session: String,
    #[serde(deserialize_with = "string_list")]
    pub(crate) whitelist: Vec<String>,
    #[serde(deserialize_with = "nested")]
    pub(crate) disconnect: Option<DisconnectCode>,
}

/// `disconnect.disconnect`: `{code, reason}`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct DisconnectCode {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) code: u32,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) reason: String,
}

/// `refresh`: Centrifugo's `RefreshRequest`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct Refresh {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) user: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) client: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) session: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) expired: bool,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) expire_at: i64,
}

/// `presence`, `presence_stats`, `history_remove`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct ChannelOnly {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
}

/// `history`: Centrifugo's `HistoryRequest` (`limit` is an int32).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct History {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) channel: String,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) limit: i32,
    #[serde(deserialize_with = "nested")]
    pub(crate) since: Option<StreamPosition>,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) reverse: bool,
}

/// `history.since`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct StreamPosition {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) offset: u64,
    #[serde(deserialize_with = "or_zero")]
    pub(crate) epoch: String,
}

/// `channels`.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(crate) struct Channels {
    #[serde(deserialize_with = "or_zero")]
    pub(crate) pattern: String,
}

/// One `batch` command.
#[derive(Debug)]
pub(crate) enum BatchItem {
    /// Runs this command; its reply is keyed by its method name.
    Run(Command),
    /// A `null` command: error 107.
    Null,
    /// No method natsgate serves (none, an unknown one, or `batch`): 104.
    NotFound,
}

impl BatchItem {
    /// The command to run, or the error that answers it in its place.
    pub(crate) fn into_command(self) -> Result<Command, ApiError> {
        match self {
            BatchItem::Run(command) => Ok(command),
            BatchItem::Null => Err(ApiError(ErrorCode::BAD_REQUEST)),
            BatchItem::NotFound => Err(ApiError(ErrorCode::METHOD_NOT_FOUND)),
        }
    }
}

/// Centrifugo's `Command` fields in the order its batch looks at them; the
/// first one present (not `null`) is the command. Those natsgate lacks
/// answer 104, like a command naming no method.
const BATCH_ORDER: [&str; 20] = [
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "history",
    "history_remove",
    "presence",
    "presence_stats",
    "info",
    "rpc",
    "refresh",
    "channels",
    "map_publish",
    "map_remove",
    "map_read_state",
    "map_read_stream",
    "map_stats",
    "map_clear",
    "shared_poll_publish",
];

/// A decoded `batch` body.
pub(crate) struct Batch {
    pub(crate) commands: Vec<BatchItem>,
    pub(crate) parallel: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BatchShape {
    #[serde(deserialize_with = "or_zero")]
    commands: Vec<Box<RawValue>>,
    #[serde(deserialize_with = "or_zero")]
    parallel: bool,
}

impl Batch {
    /// Decodes a batch body: `Err(Malformed)` if the body, or any method
    /// field of any command, does not decode (Centrifugo then answers the
    /// whole batch with 400). `max` bounds the commands: more is `Ok(Err(n))`.
    pub(crate) fn decode(body: &str, max: usize) -> Result<Result<Batch, usize>, Malformed> {
        let shape: BatchShape = object(body)?;
        if shape.commands.len() > max {
            return Ok(Err(shape.commands.len()));
        }
        let mut commands = Vec::with_capacity(shape.commands.len());
        for raw in &shape.commands {
            commands.push(batch_item(raw.get())?);
        }
        Ok(Ok(Batch { commands, parallel: shape.parallel }))
    }
}

fn batch_item(text: &str) -> Result<BatchItem, Malformed> {
    let Some(fields) = object::<Option<HashMap<String, Box<RawValue>>>>(text)? else { return Ok(BatchItem::Null) };
    // Every method field must decode, chosen or not, as in Go.
    let mut decoded: HashMap<&str, Command> = HashMap::new();
    for (name, params) in &fields {
        if params.get() == "null" {
            continue;
        }
        if let Some(method) = METHODS.iter().find(|m| *m == name) {
            if let Some(request) = Command::decode(method, params.get())? {
                decoded.insert(method, request);
            }
        }
    }
    let chosen = BATCH_ORDER.iter().find(|m| fields.get(**m).is_some_and(|p| p.get() != "null"));
    Ok(match chosen.and_then(|method| decoded.remove(method)) {
        Some(command) => BatchItem::Run(command),
        None => BatchItem::NotFound,
    })
}

/// One command of the legacy `/api` body.
pub(crate) struct LegacyCommand {
    /// Echoed in the reply when not 0.
    pub(crate) id: u32,
    pub(crate) request: LegacyRequest,
}

/// What a legacy command asks for.
pub(crate) enum LegacyRequest {
    Run(Command),
    /// Its params do not decode into the method's request: error 107.
    BadParams,
    /// A method natsgate does not serve: error 104.
    NotFound,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LegacyShape {
    #[serde(deserialize_with = "or_zero")]
    id: u32,
    #[serde(deserialize_with = "raw")]
    method: Option<Box<RawValue>>,
    #[serde(deserialize_with = "raw")]
    params: Option<Box<RawValue>>,
}

/// Centrifugo's legacy method numbers (`Command.MethodType`) that natsgate
/// serves; any other number is "not found" (104).
const LEGACY_METHODS: [(i64, &str); 19] = [
    (0, "publish"),
    (1, "broadcast"),
    (2, "unsubscribe"),
    (3, "disconnect"),
    (4, "presence"),
    (5, "presence_stats"),
    (6, "history"),
    (7, "history_remove"),
    (8, "channels"),
    (9, "info"),
    (11, "subscribe"),
    (12, "refresh"),
    (33, "map_publish"),
    (34, "map_remove"),
    (35, "map_read_state"),
    (36, "map_read_stream"),
    (37, "map_stats"),
    (38, "map_clear"),
    (39, "shared_poll_publish"),
];

/// Method names Centrifugo's legacy API knows and natsgate does not serve.
const LEGACY_OTHER_NAMES: [&str; 20] = [
    "rpc",
    "connections",
    "update_user_status",
    "get_user_status",
    "delete_user_status",
    "block_user",
    "unblock_user",
    "revoke_token",
    "invalidate_user_tokens",
    "device_register",
    "device_update",
    "device_remove",
    "device_list",
    "device_topic_list",
    "device_topic_update",
    "user_topic_list",
    "user_topic_update",
    "send_push_notification",
    "update_push_status",
    "cancel_push",
];

/// Decodes a legacy `/api` body: JSON values one after another (any white
/// space between them, as Go's stream decoder reads them). `Err` when the
/// body is empty, or any command is not an object (or `null`), or names a
/// method Centrifugo does not know, or has an `id` that is no uint32: then
/// the whole request gets HTTP 400, and nothing is run.
pub(crate) fn decode_legacy(body: &str) -> Result<Vec<LegacyCommand>, Malformed> {
    if body.is_empty() {
        return Err(Malformed);
    }
    let mut commands = Vec::new();
    for value in serde_json::Deserializer::from_str(body).into_iter::<Box<RawValue>>() {
        let value = value.map_err(|_| Malformed)?;
        let shape: LegacyShape = object(value.get())?;
        // An absent method is 0, i.e. publish.
        let method = match &shape.method {
            None => Some("publish"),
            Some(raw) => legacy_method(raw.get())?,
        };
        let params = shape.params.as_ref().map(|p| p.get()).unwrap_or("");
        let request = match method {
            // Centrifugo never looks at info's params.
            Some("info") => LegacyRequest::Run(Command::Info),
            Some(method) => match Command::decode(method, params) {
                Ok(Some(request)) => LegacyRequest::Run(request),
                Ok(None) => LegacyRequest::NotFound,
                Err(Malformed) => LegacyRequest::BadParams,
            },
            None => LegacyRequest::NotFound,
        };
        commands.push(LegacyCommand { id: shape.id, request });
    }
    Ok(commands)
}

/// A legacy `method`: a name (any case) or its number. `Ok(None)` for one
/// natsgate does not serve; `Err` for one Centrifugo would refuse with 400.
fn legacy_method(raw: &str) -> Result<Option<&'static str>, Malformed> {
    if let Ok(name) = serde_json::from_str::<String>(raw) {
        let name = name.to_lowercase();
        if let Some((_, method)) = LEGACY_METHODS.iter().find(|(_, m)| *m == name) {
            return Ok(Some(method));
        }
        if LEGACY_OTHER_NAMES.contains(&name.as_str()) {
            return Ok(None);
        }
        return Err(Malformed);
    }
    // Go's strconv.Atoi on the raw token: an integer, nothing else.
    let number: i64 = raw.parse().map_err(|_| Malformed)?;
    Ok(LEGACY_METHODS.iter().find(|(n, _)| *n == number).map(|(_, m)| *m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(body: &str) -> Result<Publish, Malformed> {
        match Command::decode("publish", body)? {
            Some(Command::Publish(p)) => Ok(p),
            _ => panic!("not a publish"),
        }
    }

    /// The answers Centrifugo v6.9.1 gives (400 = malformed).
    #[test]
    fn shapes_as_centrifugo() {
        for bad in ["[]", "1", "\"x\"", "", "  ", "nonjson", "{\"channel\":5}", "{\"channel\":\"a\"} x", "{}{}", "true"]
        {
            assert!(publish(bad).is_err(), "{bad:?} is malformed");
            assert!(Command::decode("info", bad).is_err() || bad == "{\"channel\":5}", "info {bad:?}");
        }
        assert!(Command::decode("info", "{\"channel\":5}").is_ok(), "unknown fields are ignored");
        assert!(publish("null").unwrap().channel.is_empty(), "null is an empty request");
        let p = publish(r#"{"channel":"a","data":{"x":1},"zzz":[1],"tags":{"k":null},"skip_history":null}"#).unwrap();
        assert_eq!((p.channel.as_str(), &p.data.unwrap()[..]), ("a", br#"{"x":1}"#.as_slice()));
        assert_eq!(p.tags["k"], "");
        assert_eq!(publish(r#"{"channel":"a","data":null}"#).unwrap().data.unwrap(), "null");
        for bad in [r#"{"tags":{"a":1}}"#, r#"{"skip_history":1}"#, r#"{"channel":"a","channel":"b"}"#] {
            assert!(publish(bad).is_err(), "{bad}");
        }
        let history = |b: &str| Command::decode("history", b);
        assert!(history(r#"{"channel":"a","limit":3000000000}"#).is_err(), "limit is an int32");
        assert!(history(r#"{"channel":"a","since":[1,"e"]}"#).is_err(), "a nested object is an object");
        assert!(history(r#"{"channel":"a","since":null,"limit":null}"#).is_ok());
        assert!(Command::decode("disconnect", r#"{"user":"u","disconnect":"x"}"#).is_err());
        assert!(Command::decode("broadcast", r#"{"channels":"a"}"#).is_err());
        assert!(matches!(Command::decode("nosuch", "[]"), Ok(None)));
    }

    #[test]
    fn batch_items_as_centrifugo() {
        let decode = |b: &str| Batch::decode(b, 10).map(|r| r.ok().unwrap());
        for bad in [
            "[]",
            r#"{"commands":{}}"#,
            r#"{"commands":[[]]}"#,
            r#"{"commands":[1]}"#,
            r#"{"commands":[{"publish":[]}]}"#,
            r#"{"commands":[{"publish":{"channel":5}}]}"#,
            r#"{"commands":[{"info":1}]}"#,
            r#"{"parallel":"yes"}"#,
            r#"{"commands":[{"info":{},"publish":{"channel":5}}]}"#,
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        assert!(decode(r#"{"commands":null}"#).unwrap().commands.is_empty());
        let b = decode(r#"{"commands":[null,{},{"foo":{}},{"publish":null},{"batch":{}},{"rpc":{}}]}"#).unwrap();
        assert!(matches!(b.commands[0], BatchItem::Null));
        for item in &b.commands[1..] {
            assert!(matches!(item, BatchItem::NotFound));
        }
        // Two methods: Centrifugo's order picks publish.
        let b = decode(r#"{"commands":[{"info":{},"publish":{"channel":"a","data":1}}]}"#).unwrap();
        assert!(matches!(b.commands[0], BatchItem::Run(Command::Publish(_))));
        assert!(matches!(Batch::decode(r#"{"commands":[{},{},{}]}"#, 2), Ok(Err(3))));
    }

    #[test]
    fn legacy_as_centrifugo() {
        for bad in [
            "",
            "[]",
            "nonjson",
            r#"{"method":"nosuch","params":{}}"#,
            r#"{"method":"batch","params":{}}"#,
            r#"{"method":1.5}"#,
            r#"{"method":null}"#,
            r#"{"method":"5"}"#,
            r#"{"method":true}"#,
            r#"{"method":"info","id":-1}"#,
            r#"{"method":"info","id":"x"}"#,
            "{\"method\":\"info\"}\n[]",
        ] {
            assert!(decode_legacy(bad).is_err(), "{bad:?}");
        }
        assert!(decode_legacy("  \n").unwrap().is_empty(), "white space only: no commands");
        let commands = decode_legacy(
            r#"{"method":"PUBLISH","params":{"channel":"a","data":1},"id":7}{"method":"publish","params":{"channel":5}}
            null {"params":{"channel":"a","data":1}} {"method":5,"params":{"channel":"a"}} {"method":13}
            {"method":"info","params":[]} {"method":"channels"} {"method":"rpc","params":{}}"#,
        )
        .unwrap();
        assert_eq!(commands.len(), 9);
        assert_eq!(commands[0].id, 7);
        use LegacyRequest::{BadParams, NotFound, Run};
        assert!(matches!(commands[0].request, Run(Command::Publish(_))));
        assert!(matches!(commands[1].request, BadParams), "bad params: 107");
        assert!(matches!(commands[2].request, BadParams), "null: publish without params, 107");
        assert!(matches!(commands[3].request, Run(Command::Publish(_))), "no method is publish");
        assert!(matches!(commands[4].request, Run(Command::PresenceStats(_))));
        assert!(matches!(commands[5].request, NotFound), "unassigned number: 104");
        assert!(matches!(commands[6].request, Run(Command::Info)), "info ignores params");
        assert!(matches!(commands[7].request, BadParams), "channels needs params");
        assert!(matches!(commands[8].request, NotFound), "rpc: not served here, 104");
    }
}
