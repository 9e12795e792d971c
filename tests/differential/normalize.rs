//! Replaces what legitimately differs between two servers (client ids,
//! epochs, node ids and names, versions, times) with placeholders, keeping
//! identity: the second distinct client id of a transcript is `<client 2>`
//! wherever it appears, on either server.

use super::runner::Kind;
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
/// Offsets: Centrifugo's memory engine and natsgate's embedded broker
/// count per channel from 1; on NATS an offset is the JetStream sequence,
/// shared by the channels of a namespace, so there (and only there) every
/// positive offset becomes its rank among the transcript's offsets
/// (listed in the README's Deviations).
pub fn normalize(kind: Kind, transcript: &[Value]) -> Vec<Value> {
    let mut names = Names::default();
    let mut out: Vec<Value> = transcript.iter().map(|e| walk(e, None, &mut names)).collect();
    if kind == Kind::Nats {
        let mut offsets = Vec::new();
        for e in &out {
            collect_offsets(e, &mut offsets);
        }
        offsets.sort_unstable();
        offsets.dedup();
        for e in &mut out {
            rank_offsets(e, &offsets);
        }
    }
    out
}

fn walk(value: &Value, key: Option<&str>, names: &mut Names) -> Value {
    match (key, value) {
        (Some(k), Value::String(s)) if IDENTITIES.contains(&k) && !s.is_empty() => names.name(k, s),
        (Some(k), v) if OPAQUE.contains(&k) && !v.is_null() => json!(format!("<{k}>")),
        // Seconds until expiry: a second may tick between two servers.
        (Some("ttl"), Value::Number(n)) => json!(format!("<ttl ~{}>", (n.as_u64().unwrap_or(0) + 5) / 10 * 10)),
        (Some("expire_at" | "expires_at"), Value::Number(_)) => json!("<time>"),
        (_, Value::Array(items)) => Value::Array(items.iter().map(|v| walk(v, None, names)).collect()),
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

fn rank_offsets(value: &mut Value, ranks: &[u64]) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), v.as_u64()) {
                    ("offset", Some(n)) if n > 0 => {
                        *v = json!(ranks.binary_search(&n).expect("collected") as u64 + 1);
                    }
                    _ => rank_offsets(v, ranks),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rank_offsets(v, ranks)),
        _ => {}
    }
}
