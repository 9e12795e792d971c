//! Centrifugo client protocol v2: message types, codes and the two codecs.
//!
//! The types are generated from `proto/client.proto` and carry serde
//! attributes, so one set of types serves both the Protobuf codec and the
//! JSON codec. The codecs are pure: bytes in, messages out, no I/O.

pub mod codes;
pub mod json;
pub mod protobuf;

#[allow(clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifuge.protocol.rs"));
}
pub use generated::*;

use bytes::{Bytes, BytesMut};

/// Which wire format a client speaks; chosen once at connection time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Json,
    Protobuf,
}

/// Why a frame from a client could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed JSON command: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed protobuf command: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("truncated length prefix")]
    Truncated,
    #[error("message shorter than its length prefix")]
    TruncatedMessage,
    #[error("JSON command is not an object")]
    NotObject,
    #[error("JSON frame is not valid UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
}

/// Why a reply could not be encoded. Only JSON can fail: a `bytes` field
/// (`data`, `info`, ...) that is not valid JSON cannot be embedded raw, for
/// example binary data published by a Protobuf client.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("a bytes field is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Protocol {
    /// Splits one WebSocket frame into the commands it holds.
    pub fn decode_commands(self, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
        match self {
            Protocol::Json => json::decode_commands(frame),
            Protocol::Protobuf => protobuf::decode_commands(frame),
        }
    }

    /// Appends one encoded reply to `out`: JSON without a separator (see
    /// `join_into`), Protobuf with its length prefix. On error `out` is left
    /// as it was.
    pub fn encode_reply(self, reply: &Reply, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Protocol::Json => json::encode_reply(reply, out),
            Protocol::Protobuf => {
                protobuf::encode_reply(reply, out);
                Ok(())
            }
        }
    }

    /// Encodes one reply as a standalone, frame-ready message.
    pub fn encode_one(self, reply: &Reply) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(64);
        self.encode_reply(reply, &mut out)?;
        Ok(out.freeze())
    }

    /// The fan-out fast path: appends exactly the bytes `encode_reply` would
    /// for `Reply { push: Push { channel, pub: publication } }`, without
    /// building (or cloning into) a `Reply`.
    pub fn encode_publication_push(
        self,
        channel: &str,
        publication: &Publication,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self {
            Protocol::Json => json::encode_publication_push(channel, publication, out),
            Protocol::Protobuf => {
                protobuf::encode_publication_push(channel, publication, out);
                Ok(())
            }
        }
    }

    /// Joins encoded messages into one frame. JSON messages are separated
    /// by a single `\n`; Protobuf messages already carry length prefixes.
    pub fn join_into(self, frame: &mut BytesMut, message: &[u8]) {
        if self == Protocol::Json && !frame.is_empty() {
            frame.extend_from_slice(b"\n");
        }
        frame.extend_from_slice(message);
    }
}

/// serde adapter for `repeated SubscribeResultEntry`: a JSON object keyed
/// by channel, as Centrifugo writes `subs`.
pub mod subs_map {
    use super::{SubscribeResult, SubscribeResultEntry};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(entries: &[SubscribeResultEntry], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(entries.len()))?;
        for e in entries {
            map.serialize_entry(&e.key, &e.value.clone().unwrap_or_default())?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SubscribeResultEntry>, D::Error> {
        let map = BTreeMap::<String, SubscribeResult>::deserialize(d)?;
        Ok(map.into_iter().map(|(key, value)| SubscribeResultEntry { key, value: Some(value) }).collect())
    }
}

/// serde helper: skip a field when it holds its default value, as
/// Centrifugo's JSON encoder omits empty fields.
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// serde adapter for `bytes` fields: Centrifugo embeds them in JSON as raw
/// JSON values, not as base64 strings.
pub mod raw_json {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(value: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(value).map_err(serde::ser::Error::custom)?;
        let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(Bytes::copy_from_slice(raw.get().as_bytes()))
    }
}
