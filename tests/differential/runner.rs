//! Plays a scenario against one server and records what came back: one
//! transcript entry per step, as JSON.

use super::scenario::{Node, Scenario, Step};
use crate::common::{Protocol, WsClient, WsError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Patience for a message a step expects.
const RECV_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a `quiet` step listens: long enough for a reply on loopback.
const QUIET: Duration = Duration::from_millis(300);

/// The servers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Centrifugo,
    Embedded,
    Nats,
}

/// Where one server (or pair of gateways) listens.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: Kind,
    /// `http://127.0.0.1:PORT` of node A and node B (the same for one server).
    pub http: [String; 2],
}

impl Target {
    fn http(&self, node: Node) -> &str {
        &self.http[node as usize]
    }

    fn ws(&self, node: Node) -> String {
        format!("{}/connection/websocket", self.http(node).replacen("http://", "ws://", 1))
    }
}

/// Plays `scenario` on `target`; returns one raw (not yet normalised)
/// entry per step.
pub async fn play(target: &Target, scenario: &Scenario) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut conns: HashMap<String, WsClient> = HashMap::new();
    let mut vars: HashMap<String, Value> = HashMap::new();
    let mut transcript = Vec::new();
    for step in &scenario.steps {
        let entry = match step {
            Step::Open { conn, protocol, node } => match WsClient::try_connect(&target.ws(*node), *protocol).await {
                Ok(client) => {
                    conns.insert(conn.clone(), client);
                    json!({"open": "ok"})
                }
                Err(e) => json!({"open": format!("refused: {}", e.split(':').next().unwrap_or(&e))}),
            },
            Step::Send { conn, commands } => {
                let commands: Vec<Value> = commands.iter().map(|c| substitute(c, &vars)).collect();
                let text: Vec<String> = commands.iter().map(Value::to_string).collect();
                // The server may have closed already: what matters is what the client receives.
                let _ = client(&mut conns, conn).try_send_json(&text.join("\n")).await;
                Value::Null
            }
            Step::Text { conn, text } => {
                let _ = client(&mut conns, conn).try_send_raw(text.clone().into_bytes(), false).await;
                Value::Null
            }
            Step::Binary { conn, bytes } => {
                let _ = client(&mut conns, conn).try_send_raw(bytes.clone(), true).await;
                Value::Null
            }
            Step::Recv { conn, save } => {
                let entry = receive(client(&mut conns, conn), RECV_TIMEOUT).await;
                keep(&entry, "/msg", save, &mut vars);
                entry
            }
            Step::Quiet { conn } => match receive(client(&mut conns, conn), QUIET).await {
                entry if entry.get("timeout").is_some() => json!({"quiet": true}),
                entry => entry,
            },
            Step::Api { node, path, key, body, save } => {
                let body = substitute_text(body, &vars);
                let entry = api(&http, &format!("{}{path}", target.http(*node)), key.as_deref(), body).await;
                keep(&entry, "/body", save, &mut vars);
                entry
            }
            Step::Drop { conn } => {
                conns.remove(conn);
                Value::Null
            }
        };
        transcript.push(entry);
    }
    transcript
}

fn client<'a>(conns: &'a mut HashMap<String, WsClient>, conn: &str) -> &'a mut WsClient {
    conns.get_mut(conn).unwrap_or_else(|| panic!("scenario uses connection {conn} before opening it"))
}

/// `{"msg": ..}`, `{"close": {"code", "reason"}}` or `{"timeout": true}`.
async fn receive(client: &mut WsClient, timeout: Duration) -> Value {
    match client.next(timeout).await {
        Ok(message) => json!({"msg": message}),
        Err(WsError::Closed(code, reason)) => json!({"close": {"code": code, "reason": reason}}),
        Err(WsError::Timeout(_)) => json!({"timeout": true}),
        // A reset without a close frame: what the client sees is 1006.
        Err(WsError::Transport(_)) => json!({"close": {"code": 1006, "reason": ""}}),
    }
}

async fn api(http: &reqwest::Client, url: &str, key: Option<&str>, body: String) -> Value {
    let mut request = http.post(url).body(body).timeout(RECV_TIMEOUT);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str::<Value>(&text).unwrap_or_else(|_| json!(text.trim()));
    // Legacy `/api` answers several newline-separated replies.
    let body = match &body {
        Value::String(s) if s.lines().count() > 1 => {
            let lines: Option<Vec<Value>> = s.lines().map(|l| serde_json::from_str(l).ok()).collect();
            lines.map(Value::Array).unwrap_or(body)
        }
        _ => body,
    };
    json!({"status": status, "body": body})
}

fn keep(entry: &Value, base: &str, save: &[(String, String)], vars: &mut HashMap<String, Value>) {
    for (pointer, name) in save {
        // Zero values are left out of replies: an absent offset is 0.
        let value = match entry.pointer(&format!("{base}{pointer}")) {
            Some(value) => value.clone(),
            None if pointer.ends_with("offset") && entry.get("msg").is_some() => json!(0),
            None => panic!("nothing at {pointer} to save as ${name} in {entry}"),
        };
        vars.insert(name.clone(), value);
    }
}

/// Replaces every string `"$name"` with the saved value.
fn substitute(value: &Value, vars: &HashMap<String, Value>) -> Value {
    match value {
        Value::String(s) if s.starts_with('$') && vars.contains_key(&s[1..]) => vars[&s[1..]].clone(),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, vars)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), substitute(v, vars))).collect()),
        other => other.clone(),
    }
}

fn substitute_text(body: &str, vars: &HashMap<String, Value>) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(value) if !vars.is_empty() => substitute(&value, vars).to_string(),
        _ => body.to_string(),
    }
}

/// Protocols every ordinary scenario runs in.
pub const BOTH: [Protocol; 2] = [Protocol::Json, Protocol::Protobuf];
