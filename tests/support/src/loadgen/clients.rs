//! The subscribing clients: one task per WebSocket connection.
//!
//! Each client opens its socket from one of several loopback source
//! addresses, subscribes to one channel, reports ready, then reads until
//! told to stop: it answers server pings and records every delivered
//! publication (count, order, end-to-end latency) in the shared [`Stats`].
//!
//! Two dialects: Centrifugo protocol v2 (JSON or Protobuf) for natsgate,
//! Centrifugo and the floor, and the NATS text protocol over WebSocket for
//! nats-server's listener.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use natsgate::protocol::{Command, ConnectRequest, Reply, SubscribeRequest};
use prost::Message as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::options::{Proto, System};
use super::stats::Stats;
use super::Error;

type Ws = WebSocketStream<TcpStream>;

/// Largest frame a client accepts: the gateway coalesces a whole queue
/// (1 MiB by default) into one frame.
const MAX_MESSAGE: usize = 64 << 20;

/// What every client of one run shares.
pub struct Plan {
    pub system: System,
    pub protocol: Proto,
    pub ws_url: String,
    /// The server's socket address (checked to be loopback).
    pub server: SocketAddr,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1 + source_addrs); 0 = let the OS pick.
    pub source_addrs: u8,
    /// Messages with a lower sequence number count as delivered but stay
    /// out of the latency histogram.
    pub warmup: u64,
}

/// One client's identity and channel.
pub struct Seat {
    pub index: usize,
    pub token: String,
    pub channel: String,
    /// NATS subject of the channel (what nats-ws clients subscribe to).
    pub subject: String,
}

/// Small buffers so that 20,000 clients fit in the generator's memory:
/// tungstenite's defaults are 128 KiB for reading and writing each.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Runs one client: connect and subscribe (holding a permit of
/// `connecting`), then read until `stop`. Never panics; failures are
/// counted in `stats`.
pub async fn run(plan: Arc<Plan>, seat: Seat, stats: Arc<Stats>, connecting: Arc<Semaphore>, stop: CancellationToken) {
    let (began, opened) = {
        let Ok(_permit) = connecting.acquire().await else { return };
        let began = tokio::time::Instant::now();
        tokio::select! {
            _ = stop.cancelled() => return,
            opened = open_and_subscribe(&plan, &seat) => (began, opened),
        }
    };
    let ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            stats.client_failed(format!("client {}: {e}", seat.index));
            return;
        }
    };
    stats.client_ready(began.elapsed().as_nanos() as u64);
    let result = match plan.system {
        System::NatsWs => read_nats(ws, Batch::new(plan.warmup), &stats, &stop).await,
        _ => read_centrifugo(ws, plan.protocol, Batch::new(plan.warmup), &stats, &stop).await,
    };
    if let Err(e) = result {
        if !stop.is_cancelled() {
            stats.closed_early(format!("client {}: {e}", seat.index));
        }
    }
}

async fn open_and_subscribe(plan: &Plan, seat: &Seat) -> Result<Ws, Error> {
    let mut ws = open(plan, seat.index).await?;
    match plan.system {
        System::NatsWs => subscribe_nats(&mut ws, seat).await?,
        _ => subscribe_centrifugo(&mut ws, plan.protocol, seat).await?,
    }
    Ok(ws)
}

/// TCP from a spread source address, then the WebSocket handshake.
async fn open(plan: &Plan, index: usize) -> Result<Ws, Error> {
    let socket = TcpSocket::new_v4()?;
    if plan.source_addrs > 0 {
        // Let connect() pick the port, so the (source, destination) pair
        // rather than the source alone must be unique.
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let host = 2 + (index % plan.source_addrs as usize) as u8;
        socket.bind(SocketAddr::new(Ipv4Addr::new(127, 0, 0, host).into(), 0))?;
    }
    let stream = socket.connect(plan.server).await?;
    stream.set_nodelay(true)?;
    let mut request = plan.ws_url.as_str().into_client_request()?;
    if plan.system.speaks_centrifugo() && plan.protocol == Proto::Protobuf {
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("centrifuge-protobuf"));
    }
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config())).await?;
    Ok(ws)
}

// ---------------------------------------------------------------- Centrifugo

/// Sends connect and subscribe in one frame (as centrifuge-js does) and
/// waits for both replies.
async fn subscribe_centrifugo(ws: &mut Ws, protocol: Proto, seat: &Seat) -> Result<(), Error> {
    let connect = Command {
        id: 1,
        connect: Some(ConnectRequest { token: seat.token.clone(), name: "loadgen".into(), ..Default::default() }),
        ..Default::default()
    };
    let subscribe = Command {
        id: 2,
        subscribe: Some(SubscribeRequest { channel: seat.channel.clone(), ..Default::default() }),
        ..Default::default()
    };
    let frame = match protocol {
        Proto::Json => {
            let text = format!("{}\n{}", serde_json::to_string(&connect)?, serde_json::to_string(&subscribe)?);
            Message::text(text)
        }
        Proto::Protobuf => {
            let mut buf = BytesMut::new();
            connect.encode_length_delimited(&mut buf)?;
            subscribe.encode_length_delimited(&mut buf)?;
            Message::Binary(buf.freeze())
        }
    };
    ws.send(frame).await?;
    let (mut connected, mut subscribed) = (false, false);
    while !(connected && subscribed) {
        let replies = match ws.next().await {
            Some(Ok(Message::Text(text))) if protocol == Proto::Json => text
                .as_str()
                .split('\n')
                .filter(|line| !line.is_empty())
                .map(serde_json::from_str::<Reply>)
                .collect::<Result<Vec<_>, _>>()?,
            Some(Ok(Message::Binary(data))) if protocol == Proto::Protobuf => decode_protobuf_frame(&data)?,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(close))) => return Err(format!("closed during connect: {close:?}").into()),
            Some(Ok(other)) => return Err(format!("unexpected frame during connect: {other:?}").into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("connection ended during connect".into()),
        };
        for reply in replies {
            if let Some(error) = &reply.error {
                return Err(format!("reply {} error {} {}", reply.id, error.code, error.message).into());
            }
            match reply.id {
                1 if reply.connect.is_some() => connected = true,
                2 if reply.subscribe.is_some() => subscribed = true,
                _ => {}
            }
        }
    }
    Ok(())
}

fn decode_protobuf_frame(mut data: &[u8]) -> Result<Vec<Reply>, Error> {
    let mut replies = Vec::new();
    while !data.is_empty() {
        let len = prost::encoding::decode_varint(&mut data)? as usize;
        if len > data.len() {
            return Err("protobuf message shorter than its length prefix".into());
        }
        replies.push(Reply::decode(&data[..len])?);
        data = &data[len..];
    }
    Ok(replies)
}

/// Reads pushes until `stop`; answers pings with pongs.
async fn read_centrifugo(
    mut ws: Ws,
    protocol: Proto,
    mut batch: Batch,
    stats: &Stats,
    stop: &CancellationToken,
) -> Result<(), Error> {
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            frame = ws.next() => frame,
        };
        batch.begin();
        let pings = match frame {
            Some(Ok(Message::Text(text))) if protocol == Proto::Json => handle_json(text.as_bytes(), &mut batch, stats),
            Some(Ok(Message::Binary(data))) if protocol == Proto::Protobuf => {
                handle_protobuf(&data, &mut batch, stats)?
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => 0,
            Some(Ok(Message::Close(close))) => return Err(format!("server closed: {close:?}").into()),
            Some(Ok(other)) => return Err(format!("unexpected frame: {other:?}").into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("connection ended".into()),
        };
        batch.flush(stats);
        for _ in 0..pings {
            let pong = match protocol {
                Proto::Json => Message::text("{}"),
                Proto::Protobuf => Message::Binary(Bytes::from_static(&[0])),
            };
            ws.send(pong).await?;
            stats.ping_answered();
        }
    }
}

/// Handles one JSON frame; returns how many pings it held.
fn handle_json(frame: &[u8], batch: &mut Batch, stats: &Stats) -> usize {
    let mut pings = 0;
    let mut start = 0;
    while start < frame.len() {
        let end = memchr::memchr(b'\n', &frame[start..]).map_or(frame.len(), |i| start + i);
        let line = &frame[start..end];
        start = end + 1;
        if line.is_empty() {
            continue;
        }
        if line == b"{}" {
            pings += 1;
        } else if line.starts_with(b"{\"push\"") {
            if !batch.delivery(line) {
                stats.unexpected(format!("push: {}", String::from_utf8_lossy(&line[..line.len().min(200)])));
            }
        } else {
            stats.unexpected(format!("reply: {}", String::from_utf8_lossy(&line[..line.len().min(200)])));
        }
    }
    pings
}

/// Handles one Protobuf frame; returns how many pings it held.
fn handle_protobuf(mut data: &[u8], batch: &mut Batch, stats: &Stats) -> Result<usize, Error> {
    let mut pings = 0;
    while !data.is_empty() {
        let len = prost::encoding::decode_varint(&mut data)? as usize;
        if len > data.len() {
            return Err("protobuf message shorter than its length prefix".into());
        }
        let (message, rest) = data.split_at(len);
        data = rest;
        if message.is_empty() {
            pings += 1;
            continue;
        }
        let reply = Reply::decode(message)?;
        match reply.push.as_ref().and_then(|p| p.r#pub.as_ref()) {
            Some(publication) if batch.delivery(&publication.data) => {}
            _ => stats.unexpected(format!("{reply:?}").chars().take(200).collect()),
        }
    }
    Ok(pings)
}

// ---------------------------------------------------------------- NATS over WebSocket

/// CONNECT, SUB and a PING in one frame; the PONG proves the SUB is active.
async fn subscribe_nats(ws: &mut Ws, seat: &Seat) -> Result<(), Error> {
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"name\":\"loadgen\"}}\r\nSUB {} 1\r\nPING\r\n",
        seat.subject
    );
    ws.send(Message::Binary(Bytes::from(hello))).await?;
    let mut parser = NatsParser::default();
    loop {
        let data = next_nats_frame(ws).await?;
        parser.push(&data);
        let (mut pong, mut error) = (false, None);
        parser.drain(|op| match op {
            NatsOp::Pong => pong = true,
            NatsOp::Err(e) => error = Some(e),
            _ => {}
        });
        if let Some(e) = error {
            return Err(format!("nats-server: {e}").into());
        }
        if pong {
            return Ok(());
        }
    }
}

async fn next_nats_frame(ws: &mut Ws) -> Result<Bytes, Error> {
    loop {
        return match ws.next().await {
            Some(Ok(Message::Binary(data))) => Ok(data),
            Some(Ok(Message::Text(text))) => Ok(Bytes::from(text)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(close))) => Err(format!("server closed: {close:?}").into()),
            Some(Err(e)) => Err(e.into()),
            None => Err("connection ended".into()),
        };
    }
}

async fn read_nats(mut ws: Ws, mut batch: Batch, stats: &Stats, stop: &CancellationToken) -> Result<(), Error> {
    let mut parser = NatsParser::default();
    loop {
        let data = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            data = next_nats_frame(&mut ws) => data?,
        };
        parser.push(&data);
        batch.begin();
        let mut pings = 0;
        parser.drain(|op| match op {
            NatsOp::Msg(payload) => {
                if !batch.delivery(payload) {
                    stats.unexpected(format!(
                        "MSG payload: {}",
                        String::from_utf8_lossy(&payload[..payload.len().min(200)])
                    ));
                }
            }
            NatsOp::Ping => pings += 1,
            NatsOp::Err(e) => stats.unexpected(format!("-ERR {e}")),
            NatsOp::Pong | NatsOp::Other => {}
        });
        batch.flush(stats);
        for _ in 0..pings {
            ws.send(Message::Binary(Bytes::from_static(b"PONG\r\n"))).await?;
            stats.ping_answered();
        }
    }
}

pub enum NatsOp<'a> {
    Msg(&'a [u8]),
    Ping,
    Pong,
    Err(String),
    /// INFO, +OK.
    Other,
}

/// An incremental parser for what nats-server sends: operations may be
/// split across WebSocket frames or share one.
#[derive(Default)]
pub struct NatsParser {
    buf: Vec<u8>,
    pos: usize,
}

impl NatsParser {
    pub fn push(&mut self, data: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Hands every complete operation to `f`; keeps an incomplete tail.
    pub fn drain(&mut self, mut f: impl FnMut(NatsOp<'_>)) {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(eol) = find(rest, b"\r\n") else { return };
            let line = &rest[..eol];
            if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"MSG ") {
                let size = line
                    .rsplit(|&b| b == b' ')
                    .next()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<usize>().ok());
                let Some(size) = size else {
                    f(NatsOp::Err(format!("bad MSG line {:?}", String::from_utf8_lossy(line))));
                    self.pos += eol + 2;
                    continue;
                };
                let need = eol + 2 + size + 2;
                if rest.len() < need {
                    return;
                }
                f(NatsOp::Msg(&rest[eol + 2..eol + 2 + size]));
                self.pos += need;
            } else {
                let op = if line.eq_ignore_ascii_case(b"PING") {
                    NatsOp::Ping
                } else if line.eq_ignore_ascii_case(b"PONG") {
                    NatsOp::Pong
                } else if line.starts_with(b"-ERR") {
                    NatsOp::Err(String::from_utf8_lossy(&line[4..]).trim().to_string())
                } else {
                    NatsOp::Other
                };
                f(op);
                self.pos += eol + 2;
            }
        }
    }
}

// ---------------------------------------------------------------- deliveries

/// Deliveries of one frame, recorded into the shared stats at once.
pub struct Batch {
    latencies_ns: Vec<u64>,
    /// Highest sequence number seen by this client (all of a client's
    /// messages come from one channel, in publishing order).
    last_seq: Option<u64>,
    out_of_order: u64,
    now_ns: u64,
    ts_key: memchr::memmem::Finder<'static>,
    warmup: u64,
    /// Deliveries of warm-up messages in this frame.
    warm: u64,
}

const TS_KEY: &[u8] = b"\"ts\":";
const SEQ_KEY: &[u8] = b",\"seq\":";

impl Batch {
    pub fn new(warmup: u64) -> Batch {
        Batch {
            latencies_ns: Vec::new(),
            last_seq: None,
            out_of_order: 0,
            now_ns: 0,
            ts_key: memchr::memmem::Finder::new(TS_KEY),
            warmup,
            warm: 0,
        }
    }

    /// Starts a frame: its deliveries all arrived now.
    pub fn begin(&mut self) {
        self.now_ns = super::sys::now_ns();
    }

    /// Records one delivered payload (`{"ts":N,"seq":M,...}`, possibly
    /// inside a push); false if it is not one of ours.
    pub fn delivery(&mut self, payload: &[u8]) -> bool {
        let Some(at) = self.ts_key.find(payload) else { return false };
        let rest = &payload[at + TS_KEY.len()..];
        let Some((ts, used)) = leading_u64(rest) else { return false };
        let Some(after) = rest[used..].strip_prefix(SEQ_KEY) else { return false };
        let Some((seq, _)) = leading_u64(after) else { return false };
        if self.last_seq.is_some_and(|last| seq <= last) {
            self.out_of_order += 1;
        } else {
            self.last_seq = Some(seq);
        }
        if seq < self.warmup {
            self.warm += 1;
        } else {
            self.latencies_ns.push(self.now_ns.saturating_sub(ts));
        }
        true
    }

    pub fn flush(&mut self, stats: &Stats) {
        if !self.latencies_ns.is_empty() || self.warm > 0 || self.out_of_order > 0 {
            stats.deliveries(&self.latencies_ns, self.warm, self.out_of_order);
            self.latencies_ns.clear();
            self.warm = 0;
            self.out_of_order = 0;
        }
    }
}

/// The decimal number at the start of `digits`, and how many bytes it took.
fn leading_u64(digits: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut used = 0;
    for &b in digits.iter().take(20) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        used += 1;
    }
    (used > 0).then_some((value, used))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
#[allow(unused_imports)]
mod tests {
    use super::*;

    #[test]
    fn nats_parser_handles_split_and_joined_operations() {
        let mut p = NatsParser::default();
        let mut seen = Vec::new();
        p.push(b"INFO {}\r\nPING\r\nMSG a.b 1 5\r\nhel");
        p.drain(|op| {
            seen.push(match op {
                NatsOp::Msg(m) => String::from_utf8_lossy(m).into_owned(),
                NatsOp::Ping => "PING".into(),
                _ => "other".into(),
            })
        });
        p.push(b"lo\r\nMSG a.b 1 2\r\nhi\r\n");
        p.drain(|op| {
            seen.push(match op {
                NatsOp::Msg(m) => String::from_utf8_lossy(m).into_owned(),
                _ => "other".into(),
            })
        });
        assert_eq!(seen, ["other", "PING", "hello", "hi"]);
    }

    #[test]
    fn reads_timestamp_and_sequence_from_pushes() {
        let mut batch = Batch::new(0);
        batch.now_ns = 1000;
        assert!(batch.delivery(br#"{"push":{"channel":"c","pub":{"data":{"ts":123,"seq":45,"pad":"x"}}}}"#));
        assert!(batch.delivery(br#"{"ts":200,"seq":44}"#));
        assert!(!batch.delivery(br#"{"push":{"channel":"c","unsubscribe":{"code":2000}}}"#));
        assert_eq!(batch.latencies_ns, [877, 800]);
        assert_eq!(batch.out_of_order, 1);
    }
}
