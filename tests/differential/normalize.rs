//! Replaces what legitimately differs between two servers (client ids,
//! epochs, node ids and names, versions, times) with placeholders, keeping
//! identity: the second distinct client id of a transcript is `<client 2>`
//! wherever it appears, on either server.

use super::runner::Kind;
use super::scenario::Step;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Keys whose string values are identities, numbered by first appearance.
const IDENTITIES: &[&str] = &["client", "epoch", "uid", "session"];
/// Keys whose values only say "when" or "which build".
const OPAQUE: &[&str] = &["version", "uptime", "time", "timestamp"];

#[derive(Default)]
struct Names {
    seen: HashMap<(String, String), usize>,
    counts: HashMap<String, usize>,
}

impl Names {
    fn name(&mut self, kind: &str, value: &str) -> Value {
        let key = (kind.to_string(), value.to_string());
        let n = match self.seen.get(&key) {
            Some(n) => *n,
            None => {
                let count = self.counts.entry(kind.to_string()).or_insert(0);
                *count += 1;
                self.seen.insert(key, *count);
                *count
            }
        };
        json!(format!("<{kind} {n}>"))
    }
}

/// The normalised transcript of one server.
///
pub fn normalize(transcript: &[Value]) -> Vec<Value> {
    let mut names = Names::default();
    transcript.iter().map(|e| walk(e, None, &mut names)).collect()
}

/// Offsets: Centrifugo's memory engine and natsgate's embedded broker
/// count per channel from 1; on NATS an offset is the JetStream sequence,
/// shared by the channels of a namespace. So on NATS (only) offsets are
/// compared up to an order-preserving renaming: when both transcripts hold
/// as many distinct positive offsets, the i-th smallest of natsgate's
/// becomes the i-th smallest of Centrifugo's (listed in the README's
/// Deviations). Order and equality are still checked; values are not.
pub fn align_offsets(kind: Kind, centrifugo: &[Value], natsgate: &mut [Value]) {
    if kind != Kind::Nats {
        return;
    }
    let distinct = |t: &[Value]| {
        let mut offsets = Vec::new();
        t.iter().for_each(|e| collect_offsets(e, &mut offsets));
        offsets.sort_unstable();
        offsets.dedup();
        offsets
    };
    let (theirs, ours) = (distinct(centrifugo), distinct(natsgate));
    if theirs.len() != ours.len() {
        return;
    }
    for e in natsgate.iter_mut() {
        rank_offsets(e, &ours, &theirs);
    }
}

fn walk(value: &Value, key: Option<&str>, names: &mut Names) -> Value {
    match (key, value) {
        (Some(k), Value::String(s)) if IDENTITIES.contains(&k) && !s.is_empty() => names.name(k, s),
        // A presence map's key (`map_clients`, `client_key: client_id`) is a
        // client id seen before (in a connect reply): the same placeholder.
        (Some("key"), Value::String(s)) if names.seen.contains_key(&("client".to_string(), s.clone())) => {
            names.name("client", s)
        }
        // A publication's `version` (shared poll) is a number, compared as is.
        (Some("version"), Value::Number(_)) => value.clone(),
        (Some(k), v) if OPAQUE.contains(&k) && !v.is_null() => json!(format!("<{k}>")),
        // Seconds until expiry: a second may tick between two servers.
        (Some("ttl"), Value::Number(n)) => json!(format!("<ttl ~{}>", (n.as_u64().unwrap_or(0) + 5) / 10 * 10)),
        (Some("expire_at" | "expires_at"), Value::Number(_)) => json!("<time>"),
        (_, Value::Array(items)) => Value::Array(items.iter().map(|v| walk(v, None, names)).collect()),
        // Presence maps are keyed by client id: key them by the placeholder.
        (Some("presence"), Value::Object(map)) if map.values().all(|v| v.get("client").is_some()) => Value::Object(
            map.values()
                .map(|v| {
                    let v = walk(v, None, names);
                    (v["client"].as_str().unwrap_or_default().to_string(), v)
                })
                .collect(),
        ),
        (_, Value::Object(map)) => {
            // A node's `name` in `info` (Centrifugo: host_port; natsgate: NATSGATE_NAME).
            let is_node = map.contains_key("uid") && map.contains_key("num_clients");
            Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if is_node && k == "name" { json!("<node>") } else { walk(v, Some(k), names) };
                        (k.clone(), v)
                    })
                    .collect(),
            )
        }
        (_, other) => other.clone(),
    }
}

fn collect_offsets(value: &Value, out: &mut Vec<u64>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_u64()) {
                    ("offset", Some(n)) if n > 0 => out.push(n),
                    _ => collect_offsets(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_offsets(v, out)),
        _ => {}
    }
}

fn rank_offsets(value: &mut Value, ours: &[u64], theirs: &[u64]) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), v.as_u64()) {
                    ("offset", Some(n)) if n > 0 => {
                        *v = json!(theirs[ours.binary_search(&n).expect("collected")]);
                    }
                    _ => rank_offsets(v, ours, theirs),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rank_offsets(v, ours, theirs)),
        _ => {}
    }
}

/// A client that publishes into a channel it is subscribed to gets the
/// publish reply and the publication's push in either order once a broker
/// is in between (Centrifugo's memory engine pushes first; natsgate on NATS
/// may reply first, the push travelling through JetStream). When a `publish`
/// reply and a push arrive back to back on one connection, they are put in
/// one order (push first) so that only their contents are compared. Only
/// publish replies: a push before a subscribe reply stays a difference.
pub fn order_own_publications(steps: &[Step], transcript: &mut [Value]) {
    for i in 0..steps.len().saturating_sub(1) {
        let same_conn = match (&steps[i], &steps[i + 1]) {
            (Step::Recv { conn: a, .. }, Step::Recv { conn: b, .. } | Step::Quiet { conn: b }) => a == b,
            _ => false,
        };
        let is_publish_reply = transcript[i].pointer("/msg/publish").is_some();
        let next_is_push = transcript[i + 1].pointer("/msg/push").is_some();
        if same_conn && is_publish_reply && next_is_push {
            let reply = transcript[i]["msg"].take();
            transcript[i]["msg"] = transcript[i + 1]["msg"].take();
            transcript[i + 1]["msg"] = reply;
        }
    }
}
