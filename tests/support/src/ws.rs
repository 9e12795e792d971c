//! A strict Centrifugo WebSocket test client.
//!
//! Speaks JSON (text frames, messages joined by `\n`) or Protobuf (binary
//! frames of uvarint-length-prefixed messages, subprotocol
//! `centrifuge-protobuf`). Either way, replies come back as
//! `serde_json::Value` in Centrifugo's JSON shape (Protobuf replies are
//! decoded into `natsgate::protocol::Reply` and serialised with its serde
//! attributes), so one test body serves both protocols.
//!
//! It is strict about framing the SDKs depend on and panics on: a binary
//! frame in JSON mode, a text frame in Protobuf mode, a blank line between
//! JSON messages, a truncated length prefix.

use super::{Protocol, TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use natsgate::protocol::{Command, Reply};
use prost::Message as _;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Subprotocol the SDKs request for Protobuf.
pub const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";

/// Why `next()` returned no message.
#[derive(Debug, Clone, PartialEq)]
pub enum WsError {
    /// Nothing arrived within the timeout.
    Timeout(Duration),
    /// The server sent a close frame (code, reason); 1006 if the TCP
    /// connection ended without one.
    Closed(u16, String),
    /// The socket failed.
    Transport(String),
}

/// One received message: its JSON shape, the prost `Reply` it was decoded
/// from (Protobuf only), and the number of the frame it came in.
struct Incoming {
    frame: u64,
    value: Value,
    reply: Option<Reply>,
}

pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: Protocol,
    /// Decoded messages not yet handed out, in arrival order.
    queue: VecDeque<Incoming>,
    frames: u64,
    next_id: u32,
    auto_pong: bool,
    closed: Option<(u16, String)>,
}

impl WsClient {
    /// Opens a WebSocket; for `Protocol::Protobuf` asks for the
    /// `centrifuge-protobuf` subprotocol (and fails if the server does not
    /// agree to it, as browsers and the `ws` package do). Panics on failure.
    pub async fn connect(url: &str, protocol: Protocol) -> Self {
        Self::try_connect(url, protocol)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {url} ({protocol:?}) failed: {e}"))
    }

    /// Like `connect`, returning the handshake error instead (for tests of
    /// rejected connections).
    pub async fn try_connect(url: &str, protocol: Protocol) -> Result<Self, String> {
        let subprotocol = (protocol == Protocol::Protobuf).then_some(PROTOBUF_SUBPROTOCOL);
        Self::connect_with(url, protocol, subprotocol).await
    }

    /// Full control: `subprotocol` is sent as `Sec-WebSocket-Protocol` if
    /// given (e.g. `None` with `?cf_protocol=protobuf` in the URL).
    pub async fn connect_with(url: &str, protocol: Protocol, subprotocol: Option<&str>) -> Result<Self, String> {
        Self::connect_with_headers(url, protocol, subprotocol, &[]).await
    }

    /// `connect_with`, adding `headers` to the upgrade request (for the
    /// headers a proxy forwards to the application backend).
    pub async fn connect_with_headers(
        url: &str,
        protocol: Protocol,
        subprotocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        for (name, value) in headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| e.to_string())?;
            request.headers_mut().insert(name, HeaderValue::from_str(value).map_err(|e| e.to_string())?);
        }
        if let Some(sp) = subprotocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(sp).map_err(|e| e.to_string())?);
        }
        let (ws, _response) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| format!("handshake timed out after {TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(Self { ws, protocol, queue: VecDeque::new(), frames: 0, next_id: 1, auto_pong: false, closed: None })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// When on, server pings (`{}`) are answered with a pong and not
    /// returned by the receive methods.
    pub fn set_auto_pong(&mut self, on: bool) {
        self.auto_pong = on;
    }

    /// Sends `text` as commands in one frame. JSON: exactly `text` as a text
    /// frame (so malformed input can be tested). Protobuf: each non-blank
    /// line is parsed as a JSON `Command` and the lot is encoded into one
    /// binary frame.
    pub async fn send_json(&mut self, text: &str) {
        match self.protocol {
            Protocol::Json => self.send_text(text).await,
            Protocol::Protobuf => {
                let commands: Vec<Command> = text
                    .split('\n')
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a Command: {l}: {e}")))
                    .collect();
                self.send_commands(&commands).await
            }
        }
    }

    /// Encodes `commands` into one frame in this client's protocol.
    pub async fn send_commands(&mut self, commands: &[Command]) {
        match self.protocol {
            Protocol::Json => {
                let lines: Vec<String> =
                    commands.iter().map(|c| serde_json::to_string(c).expect("encode Command")).collect();
                self.send_text(&lines.join("\n")).await
            }
            Protocol::Protobuf => {
                let mut frame = Vec::new();
                for c in commands {
                    c.encode_length_delimited(&mut frame).expect("encode Command");
                }
                self.send_binary(frame).await
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.send(Message::binary(bytes)).await
    }

    /// A pong: `{}` in JSON, an empty length-prefixed message in Protobuf.
    pub async fn send_pong(&mut self) {
        match self.protocol {
            Protocol::Json => self.send_text("{}").await,
            Protocol::Protobuf => self.send_binary(vec![0]).await,
        }
    }

    async fn send(&mut self, message: Message) {
        self.try_send(message).await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sends one frame; a failure (e.g. the server already closed) is
    /// returned instead of panicking, for tests where a close may race the
    /// next frame. JSON text goes as is; in Protobuf mode, see `send_json`.
    pub async fn try_send_json(&mut self, text: &str) -> Result<(), String> {
        match self.protocol {
            Protocol::Json => self.try_send(Message::text(text)).await,
            Protocol::Protobuf => {
                let mut frame = Vec::new();
                for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                    let command: Command =
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a Command: {line}: {e}"));
                    command.encode_length_delimited(&mut frame).expect("encode Command");
                }
                self.try_send(Message::binary(frame)).await
            }
        }
    }

    /// A text (`binary: false`) or binary frame exactly as given, failures returned.
    pub async fn try_send_raw(&mut self, bytes: Vec<u8>, binary: bool) -> Result<(), String> {
        let message = if binary {
            Message::binary(bytes)
        } else {
            Message::text(String::from_utf8(bytes).map_err(|e| e.to_string())?)
        };
        self.try_send(message).await
    }

    async fn try_send(&mut self, message: Message) -> Result<(), String> {
        tokio::time::timeout(TIMEOUT, self.ws.send(message))
            .await
            .map_err(|_| format!("send blocked for {TIMEOUT:?}"))?
            .map_err(|e| format!("send failed: {e}"))
    }

    /// Sends one command object (without `id`) with the next id, waits for
    /// the reply with that id and returns it whole (`{"id":..,"connect":..}`
    /// or `{"id":..,"error":..}`). Pushes arriving meanwhile stay queued.
    pub async fn request(&mut self, command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = command;
        command.as_object_mut().expect("command must be a JSON object").insert("id".into(), json!(id));
        self.send_json(&command.to_string()).await;
        self.take_reply(id, TIMEOUT).await
    }

    /// `request({"connect": {"token": token}})`, asserting success; returns
    /// the `connect` result object.
    pub async fn connect_token(&mut self, token: &str) -> Value {
        let reply = self.request(json!({"connect": {"token": token}})).await;
        match reply.get("connect") {
            Some(result) => result.clone(),
            None => panic!("connect failed: {reply}"),
        }
    }

    /// `request({"subscribe": {"channel": channel}})`, asserting success;
    /// returns the `subscribe` result object.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        let reply = self.request(json!({"subscribe": {"channel": channel}})).await;
        match reply.get("subscribe") {
            Some(result) => result.clone(),
            None => panic!("subscribe to {channel} failed: {reply}"),
        }
    }

    /// Waits for the reply with `id`, leaving other messages queued in order.
    pub async fn take_reply(&mut self, id: u32, timeout: Duration) -> Value {
        if let Some(pos) = self.queue.iter().position(|m| m.value["id"] == json!(id)) {
            return self.queue.remove(pos).expect("position in queue").value;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let before = self.queue.len();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(e) = self.read_frame(left).await {
                panic!("no reply to command {id}: {e:?}; unclaimed messages: {:?}", self.queued());
            }
            if let Some(pos) = self.queue.iter().skip(before).position(|m| m.value["id"] == json!(id)) {
                return self.queue.remove(before + pos).expect("position in queue").value;
            }
        }
    }

    /// The next message, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Value, WsError> {
        self.next_incoming(timeout).await.map(|m| m.value)
    }

    /// The next message as a prost `Reply`: as decoded in Protobuf mode
    /// (so binary payloads survive), parsed from JSON in JSON mode. Panics
    /// after `timeout`.
    pub async fn recv_reply(&mut self, timeout: Duration) -> Reply {
        let message = self.next_incoming(timeout).await.unwrap_or_else(|e| panic!("expected a reply: {e:?}"));
        match message.reply {
            Some(reply) => reply,
            None => serde_json::from_value(message.value.clone())
                .unwrap_or_else(|e| panic!("not a Reply: {}: {e}", message.value)),
        }
    }

    async fn next_incoming(&mut self, timeout: Duration) -> Result<Incoming, WsError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Ok(message);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.read_frame(left).await?;
        }
    }

    /// The next message; panics if none arrives within `TIMEOUT` (5 s).
    pub async fn recv_json(&mut self) -> Value {
        self.next(TIMEOUT).await.unwrap_or_else(|e| panic!("expected a message: {e:?}"))
    }

    /// All messages of the next frame (for framing tests); panics after
    /// `timeout`.
    pub async fn recv_frame(&mut self, timeout: Duration) -> Vec<Value> {
        if self.queue.is_empty() {
            if let Err(e) = self.read_frame(timeout).await {
                panic!("expected a frame: {e:?}");
            }
        }
        let frame = self.queue.front().map(|m| m.frame).expect("a frame with messages");
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|m| m.frame == frame) {
            out.push(self.queue.pop_front().expect("front").value);
        }
        out
    }

    /// Skips messages until one satisfies `predicate` and returns it; panics
    /// after `timeout`, listing what was skipped.
    pub async fn recv_until<P>(&mut self, mut predicate: P, timeout: Duration) -> Value
    where
        P: FnMut(&Value) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Ok(message) if predicate(&message) => return message,
                Ok(message) => skipped.push(message),
                Err(e) => panic!("no matching message ({e:?}); skipped: {skipped:?}"),
            }
        }
    }

    /// Waits for the next publication push on `channel`; returns the `pub`
    /// object (`{"data":..,"offset":..}`).
    pub async fn recv_publication(&mut self, channel: &str, timeout: Duration) -> Value {
        let push = self
            .recv_until(|m| m["push"]["channel"] == json!(channel) && m["push"].get("pub").is_some(), timeout)
            .await;
        push["push"]["pub"].clone()
    }

    /// Asserts that nothing arrives for `quiet` (pings excepted if
    /// auto-pong is on). Waiting out `quiet` is the point here.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        match self.next(quiet).await {
            Err(WsError::Timeout(_)) => {}
            Ok(message) => panic!("expected silence for {quiet:?}, got {message}"),
            Err(e) => panic!("expected silence for {quiet:?}, got {e:?}"),
        }
    }

    /// Waits for the server's close frame, discarding messages before it;
    /// returns (code, reason). A connection that ends without a close frame
    /// gives 1006. Panics after `timeout`.
    pub async fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.queue.clear();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await {
                Ok(()) => continue,
                Err(WsError::Closed(code, reason)) => return (code, reason),
                Err(WsError::Transport(e)) => return (1006, e),
                Err(WsError::Timeout(t)) => {
                    panic!("server did not close the connection within {t:?}")
                }
            }
        }
    }

    /// Closes from the client side with `code` and waits (bounded) for the
    /// server to answer the close.
    pub async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() };
        let _ = tokio::time::timeout(TIMEOUT, self.ws.close(Some(frame))).await;
        let _ = tokio::time::timeout(TIMEOUT, async { while self.ws.next().await.is_some() {} }).await;
    }

    /// Messages received but not yet handed out.
    pub fn queued(&self) -> Vec<Value> {
        self.queue.iter().map(|m| m.value.clone()).collect()
    }

    /// Reads one data frame into the queue (answering pings when asked).
    async fn read_frame(&mut self, timeout: Duration) -> Result<(), WsError> {
        if let Some((code, reason)) = &self.closed {
            return Err(WsError::Closed(*code, reason.clone()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next =
                tokio::time::timeout_at(deadline, self.ws.next()).await.map_err(|_| WsError::Timeout(timeout))?;
            let message = match next {
                None => return Err(self.closed_with(1006, "connection ended without a close frame")),
                Some(Err(e)) => return Err(WsError::Transport(e.to_string())),
                Some(Ok(m)) => m,
            };
            let decoded: Vec<(Value, Option<Reply>)> = match (message, self.protocol) {
                (Message::Text(text), Protocol::Json) => {
                    split_json(text.as_str()).into_iter().map(|v| (v, None)).collect()
                }
                (Message::Binary(bytes), Protocol::Protobuf) => split_protobuf(&bytes),
                (Message::Close(frame), _) => {
                    let (code, reason) =
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                    return Err(self.closed_with(code, &reason));
                }
                (Message::Ping(_) | Message::Pong(_) | Message::Frame(_), _) => continue,
                (Message::Binary(bytes), Protocol::Json) => {
                    panic!("binary frame in JSON mode (breaks the SDKs): {bytes:?}")
                }
                (Message::Text(text), Protocol::Protobuf) => {
                    panic!("text frame in Protobuf mode (breaks the SDKs): {text}")
                }
            };
            self.frames += 1;
            let mut got_any = false;
            for (value, reply) in decoded {
                if self.auto_pong && value == json!({}) {
                    self.send_pong().await;
                    continue;
                }
                self.queue.push_back(Incoming { frame: self.frames, value, reply });
                got_any = true;
            }
            if got_any {
                return Ok(());
            }
        }
    }

    fn closed_with(&mut self, code: u16, reason: &str) -> WsError {
        self.closed = Some((code, reason.to_string()));
        WsError::Closed(code, reason.to_string())
    }
}

/// One JSON frame: messages joined by exactly one `\n`, one trailing `\n`
/// allowed.
fn split_json(text: &str) -> Vec<Value> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .map(|line| {
            assert!(!line.trim().is_empty(), "blank line in JSON frame (breaks centrifuge-python): {text:?}");
            serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid JSON message {line:?}: {e}"))
        })
        .collect()
}

/// One Protobuf frame: uvarint-length-prefixed `Reply` messages, each with
/// its JSON shape. Publication data that is not JSON (binary payloads,
/// fossil deltas) reads as a JSON string of its bytes (lossy UTF-8), as a
/// JSON delta subscriber gets it; any other reply whose `bytes` fields are
/// not JSON reads as `{"id":N,"non_json_reply":"<Debug>"}`; use `recv_reply`
/// for those.
fn split_protobuf(mut bytes: &[u8]) -> Vec<(Value, Option<Reply>)> {
    let frame = bytes.to_vec();
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let reply = Reply::decode_length_delimited(&mut bytes)
            .unwrap_or_else(|e| panic!("invalid Protobuf frame {frame:?}: {e}"));
        let value = serde_json::to_value(&reply)
            .or_else(|_| serde_json::to_value(publication_data_as_strings(&reply)))
            .unwrap_or_else(|_| json!({"id": reply.id, "non_json_reply": format!("{reply:?}")}));
        out.push((value, Some(reply)));
    }
    out
}

/// `reply` with each publication's non-JSON data (pushes, subscribe and
/// history results) replaced by a JSON string of it.
fn publication_data_as_strings(reply: &Reply) -> Reply {
    let mut reply = reply.clone();
    let as_string = |p: &mut natsgate::protocol::Publication| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&p.data).is_err() {
            p.data = serde_json::to_vec(&String::from_utf8_lossy(&p.data)).expect("a string").into();
        }
    };
    if let Some(p) = reply.push.as_mut().and_then(|push| push.r#pub.as_mut()) {
        as_string(p);
    }
    if let Some(s) = reply.subscribe.as_mut() {
        s.publications.iter_mut().for_each(as_string);
    }
    if let Some(h) = reply.history.as_mut() {
        h.publications.iter_mut().for_each(as_string);
    }
    reply
}
