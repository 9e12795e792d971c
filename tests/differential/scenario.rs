//! What a differential scenario is: the steps clients and an API caller
//! take, written once and played against every server.
//!
//! Commands are JSON (`json!`); on a Protobuf connection they are encoded
//! into Protobuf, so one scenario body serves both protocols. A string
//! value `"$name"` anywhere in a command or API body is replaced by the
//! JSON value saved earlier under `name` (an epoch, an offset, a client id)
//! from that same server's replies.

use crate::common::Protocol;
use serde_json::Value;

/// Which gateway a client or API call uses: on two gateways over NATS, `A`
/// and `B` are different processes; elsewhere the same server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    A,
    B,
}

/// One action, and so one entry in the transcript.
#[derive(Clone, Debug)]
pub enum Step {
    /// Opens WebSocket `conn` in `protocol`, with an extra query string
    /// (`?cf_protocol=protobuf` tests) if given.
    Open { conn: String, protocol: Protocol, node: Node },
    /// Sends commands (JSON values) in one frame.
    Send { conn: String, commands: Vec<Value> },
    /// Sends a text frame exactly as given (also on Protobuf connections).
    Text { conn: String, text: String },
    /// Sends a binary frame exactly as given.
    Binary { conn: String, bytes: Vec<u8> },
    /// Records the next message (or the close, or a timeout), saving
    /// values at JSON pointers under names for later `"$name"`s.
    Recv { conn: String, save: Vec<(String, String)> },
    /// Records that nothing arrives within a short wait (or what did).
    Quiet { conn: String },
    /// `POST path` with `body` and, if given, `X-API-Key: key`; records the
    /// HTTP status and the body.
    Api { node: Node, path: String, key: Option<String>, body: String, save: Vec<(String, String)> },
    /// Drops the connection from the client side.
    Drop { conn: String },
}

/// A named list of steps.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub steps: Vec<Step>,
}

impl Scenario {
    pub fn new(name: impl Into<String>) -> Scenario {
        Scenario { name: name.into(), steps: Vec::new() }
    }

    fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub fn open(self, conn: &str, protocol: Protocol) -> Self {
        self.open_on(conn, protocol, Node::A)
    }

    pub fn open_on(self, conn: &str, protocol: Protocol, node: Node) -> Self {
        self.step(Step::Open { conn: conn.into(), protocol, node })
    }

    /// One command in its own frame.
    pub fn send(self, conn: &str, command: Value) -> Self {
        self.step(Step::Send { conn: conn.into(), commands: vec![command] })
    }

    /// Several commands in one frame.
    pub fn send_batch(self, conn: &str, commands: Vec<Value>) -> Self {
        self.step(Step::Send { conn: conn.into(), commands })
    }

    pub fn text(self, conn: &str, text: &str) -> Self {
        self.step(Step::Text { conn: conn.into(), text: text.into() })
    }

    pub fn binary(self, conn: &str, bytes: &[u8]) -> Self {
        self.step(Step::Binary { conn: conn.into(), bytes: bytes.to_vec() })
    }

    pub fn recv(self, conn: &str) -> Self {
        self.step(Step::Recv { conn: conn.into(), save: Vec::new() })
    }

    /// `recv` `n` times.
    pub fn recv_n(mut self, conn: &str, n: usize) -> Self {
        for _ in 0..n {
            self = self.recv(conn);
        }
        self
    }

    /// `recv`, saving `(pointer, name)` pairs (`("/subscribe/epoch", "epoch")`).
    pub fn recv_save(self, conn: &str, save: &[(&str, &str)]) -> Self {
        let save = save.iter().map(|(p, n)| (p.to_string(), n.to_string())).collect();
        self.step(Step::Recv { conn: conn.into(), save })
    }

    pub fn quiet(self, conn: &str) -> Self {
        self.step(Step::Quiet { conn: conn.into() })
    }

    /// `send` then `recv`: a request and the next message.
    pub fn call(self, conn: &str, command: Value) -> Self {
        self.send(conn, command).recv(conn)
    }

    /// `POST /api/<method>` with the scenario's API key.
    pub fn api(self, method: &str, body: Value) -> Self {
        self.api_raw(Node::A, &format!("/api/{method}"), Some(super::API_KEY), &body.to_string())
    }

    /// `api`, saving values from the reply body.
    pub fn api_save(self, method: &str, body: Value, save: &[(&str, &str)]) -> Self {
        let save = save.iter().map(|(p, n)| (p.to_string(), n.to_string())).collect();
        let path = format!("/api/{method}");
        self.step(Step::Api { node: Node::A, path, key: Some(super::API_KEY.into()), body: body.to_string(), save })
    }

    /// Any `POST` to the HTTP server with any key and body.
    pub fn api_raw(self, node: Node, path: &str, key: Option<&str>, body: &str) -> Self {
        let key = key.map(str::to_string);
        self.step(Step::Api { node, path: path.into(), key, body: body.into(), save: Vec::new() })
    }

    pub fn drop_conn(self, conn: &str) -> Self {
        self.step(Step::Drop { conn: conn.into() })
    }
}

/// Short label of a step for diffs: `3 recv a`.
pub fn label(index: usize, step: &Step) -> String {
    match step {
        Step::Open { conn, protocol, node } => format!("{index} open {conn} ({protocol:?} on {node:?})"),
        Step::Send { conn, commands } => format!("{index} send {conn} {}", brief(&commands[0])),
        Step::Text { conn, .. } => format!("{index} text frame {conn}"),
        Step::Binary { conn, .. } => format!("{index} binary frame {conn}"),
        Step::Recv { conn, .. } => format!("{index} recv {conn}"),
        Step::Quiet { conn } => format!("{index} quiet {conn}"),
        Step::Api { path, .. } => format!("{index} POST {path}"),
        Step::Drop { conn } => format!("{index} drop {conn}"),
    }
}

fn brief(command: &Value) -> String {
    let text = command.to_string();
    if text.len() > 60 {
        format!("{}..", &text[..text.char_indices().nth(58).map(|(i, _)| i).unwrap_or(text.len())])
    } else {
        text
    }
}
