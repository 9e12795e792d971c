//! Entry points for the coverage-guided fuzz targets in `fuzz/`: one
//! function per parser that takes outside input and is private to the crate
//! (the HTTP API bodies, NATS messages). Public parsers (the client
//! protocol codecs, token verification, configuration) are fuzzed through
//! their own API. Compiled only with the `fuzzing` feature, which only the
//! fuzz crate turns on, so the normal build's public surface is unchanged.
//!
//! Each function runs the parser the way the gateway runs it on a request
//! or message and drops the result: a fuzz target fails only by a panic, an
//! overflow (fuzz builds keep debug assertions), a timeout or running out of
//! memory.

use crate::api::request::{decode_legacy, Batch, Command};
use crate::broker::subject::SubjectMap;

/// The names [`api`] picks a method from (by the selector byte): every
/// method `/api/<method>` serves, `batch`, the legacy `/api` body, and a
/// name natsgate does not serve.
pub const API_FORMS: [&str; 15] = [
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
    "batch",
    "legacy",
    "no_such_method",
];

/// Decodes `body` as the HTTP API does for `API_FORMS[selector % len]`:
/// `/api/<method>` (including `batch`, up to the gateway's batch limit) or
/// the legacy `/api` (`legacy`). The body arrives as bytes; not UTF-8 is a
/// 400, as in the handler.
pub fn api(selector: u8, body: &[u8]) {
    let Ok(body) = std::str::from_utf8(body) else { return };
    match API_FORMS[usize::from(selector) % API_FORMS.len()] {
        "batch" => {
            if let Ok(Ok(batch)) = Batch::decode(body, crate::api::methods::MAX_BATCH) {
                for item in batch.commands {
                    let _ = item.into_command().map(|command| command.method());
                }
            }
        }
        "legacy" => {
            for command in decode_legacy(body).unwrap_or_default() {
                let _ = command.id;
            }
        }
        method => {
            if let Ok(Some(command)) = Command::decode(method, body) {
                assert_eq!(command.method(), method, "decoded into another method");
            }
        }
    }
}

/// Reads a message published straight to NATS as a gateway's subscription
/// does: the channel its subject carries (prefix `natsgate`) and the
/// publication its headers and payload make. `headers` are `(name, value)`
/// pairs as async-nats parsed them; pairs that are no valid header are
/// skipped (async-nats never delivers them).
pub fn nats_message(subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
    use std::str::FromStr;
    let map = SubjectMap::new("natsgate");
    if let Some(channel) = map.channel_of(subject) {
        // What a gateway maps a channel to must be the subject it came from.
        assert_eq!(map.channel_subject(&channel), subject, "channel {channel:?} maps to another subject");
    }
    let _ = map.user_of(subject);
    let mut header_map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (async_nats::HeaderName::from_str(name), async_nats::HeaderValue::from_str(value))
        else {
            continue;
        };
        header_map.append(name, value);
    }
    let Ok(subject) = async_nats::Subject::from_utf8(subject.as_bytes().to_vec()) else { return };
    let message = async_nats::Message {
        subject,
        reply: None,
        payload: bytes::Bytes::copy_from_slice(payload),
        headers: (!header_map.is_empty()).then_some(header_map),
        status: None,
        description: None,
        length: payload.len(),
    };
    let _ = crate::broker::nats::headers::decode_message(message);
}
