//! The header codec: how a publication's metadata rides in NATS headers, so
//! that direct NATS publishers and the HTTP API produce the same messages.

use async_nats::jetstream;
use async_nats::HeaderMap;

use crate::broker::{Message, PresenceEvent};
use crate::protocol::ClientInfo;

/// Header with the publication tags as a JSON object of strings.
pub(super) const HEADER_TAGS: &str = "Natsgate-Tags";
/// Header with the publisher's ClientInfo as JSON (client publications).
pub(super) const HEADER_INFO: &str = "Natsgate-Info";
/// Header marking a join or leave event (`join`, `leave`); the body is empty.
pub(super) const HEADER_EVENT: &str = "Natsgate-Event";
/// Header with the publish time in Unix milliseconds (for the delivery lag metric).
pub(super) const HEADER_TIME: &str = "Natsgate-Time";
/// Header of a position marker: a message with an empty body that a gateway
/// stores on a channel's subject, standing for the channel position in the
/// header's value (see [`NatsBroker::write_marker`]). Never delivered nor
/// returned; it only anchors recovery, like the oldest held publication.
pub(super) const HEADER_POSITION: &str = "Natsgate-Position";
/// Header with a map channel publication's key (see [`crate::map`]).
pub(super) const HEADER_MAP_KEY: &str = "Natsgate-Map-Key";
/// Header marking a map publication that removes its key (value `1`).
pub(super) const HEADER_MAP_REMOVED: &str = "Natsgate-Map-Removed";
/// `true` on a publication made with the delta flag (issue #20); a direct
/// NATS publisher may set it too.
pub(super) const HEADER_DELTA: &str = "Natsgate-Delta";
/// A map publication's delta base: the offset of the publication that set
/// the key's previous value (see [`Message::key_base`]).
pub(super) const HEADER_MAP_BASE: &str = "Natsgate-Map-Base";

/// Builds the NATS headers for a publication; None when there is no metadata.
pub(super) fn encode_headers(message: &Message) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    if !message.tags.is_empty() {
        if let Ok(tags) = serde_json::to_string(&message.tags) {
            headers.insert(HEADER_TAGS, tags.as_str());
        }
    }
    if let Some(info) = &message.info {
        if let Ok(info) = serde_json::to_string(info) {
            headers.insert(HEADER_INFO, info.as_str());
        }
    }
    if let Some(event) = message.event {
        headers.insert(HEADER_EVENT, event.as_str());
    }
    if let Some(time) = message.time_ms {
        headers.insert(HEADER_TIME, time.to_string().as_str());
    }
    if let Some(key) = &message.key {
        // Map keys are checked to be header-safe where they enter (see `crate::map::valid_key`).
        headers.insert(HEADER_MAP_KEY, key.as_str());
    }
    if message.removed {
        headers.insert(HEADER_MAP_REMOVED, "1");
    }
    if message.delta {
        headers.insert(HEADER_DELTA, "true");
    }
    if message.key_base != 0 {
        headers.insert(HEADER_MAP_BASE, message.key_base.to_string().as_str());
    }
    (!headers.is_empty()).then_some(headers)
}

/// Reads a NATS message back into a publication. Malformed metadata is
/// dropped (with a log line), the data itself is kept.
pub(crate) fn decode_message(msg: async_nats::Message) -> Message {
    let mut out = Message { data: msg.payload, ..Default::default() };
    if let Some(headers) = &msg.headers {
        read_headers(&mut out, headers, &msg.subject);
    }
    out
}

pub(super) fn read_headers(out: &mut Message, headers: &HeaderMap, subject: &async_nats::Subject) {
    // Set on messages a history stream republishes: the stream sequence.
    out.offset = headers.get("Nats-Sequence").and_then(|s| s.as_str().parse().ok()).unwrap_or(0);
    out.prev_offset = headers.get("Nats-Last-Sequence").and_then(|s| s.as_str().parse().ok());
    out.delta = headers.get(HEADER_DELTA).is_some_and(|v| v.as_str() == "true");
    if let Some(tags) = headers.get(HEADER_TAGS) {
        match serde_json::from_str(tags.as_str()) {
            Ok(tags) => out.tags = tags,
            Err(e) => tracing::warn!(subject = %subject, "ignoring malformed {HEADER_TAGS} header: {e}"),
        }
    }
    out.event = headers.get(HEADER_EVENT).and_then(|e| PresenceEvent::parse(e.as_str()));
    out.marker = marker_of(headers);
    out.time_ms = headers.get(HEADER_TIME).and_then(|t| t.as_str().parse().ok());
    out.key = headers.get(HEADER_MAP_KEY).map(|k| k.as_str().to_string());
    out.removed = headers.get(HEADER_MAP_REMOVED).is_some_and(|v| v.as_str() == "1");
    out.key_base = headers.get(HEADER_MAP_BASE).and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
    if let Some(info) = headers.get(HEADER_INFO) {
        match serde_json::from_str::<ClientInfo>(info.as_str()) {
            Ok(info) => out.info = Some(info),
            Err(e) => tracing::warn!(subject = %subject, "ignoring malformed {HEADER_INFO} header: {e}"),
        }
    }
}

/// The position a stored message stands for when it is a marker.
pub(super) fn marker_of(headers: &HeaderMap) -> Option<u64> {
    headers.get(HEADER_POSITION).and_then(|v| v.as_str().parse().ok())
}

/// The JetStream message id for an idempotency key: Centrifugo applies a
/// key per channel, while JetStream deduplicates ids across the whole
/// stream (every channel of a namespace), so the id names the channel too.
/// Both parts are subject tokens (no `:`, no control characters), so the id
/// is unambiguous and a valid header value. Direct NATS publishers can send
/// the same form to be deduplicated with API publishes.
pub(super) fn msg_id(channel: &str, key: &str) -> String {
    format!("{}:{}", crate::broker::subject::encode_token(channel), crate::broker::subject::encode_token(key))
}

/// Reads a stored message back into a publication.
pub(super) fn from_stored(msg: jetstream::message::StreamMessage) -> Message {
    let mut out = Message { data: msg.payload, ..Default::default() };
    read_headers(&mut out, &msg.headers, &msg.subject);
    out.offset = msg.sequence;
    out
}
