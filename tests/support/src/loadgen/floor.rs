//! The physical floor: a minimal sender that does only what any server
//! must do to deliver a publication, so the report shows what the kernel
//! allows on this machine.
//!
//! It accepts the same WebSocket clients (handshake, then one frame with
//! `connect` and `subscribe`, answered with two fixed replies), and keeps
//! each socket in its channel's list. The publisher sends it one line per
//! message over a plain TCP connection (`<channel>\t<payload>\n`); for each,
//! one thread encodes the push and its WebSocket frame header once and
//! writes the same bytes to every socket of the channel with a blocking
//! `write` each: no queues, no tasks, no per-client work. The threads run
//! in the generator's process, pinned to the server CPU, and their CPU time
//! is read from `/proc/self/task/<tid>/stat`.

use bytes::BytesMut;
use natsgate::protocol::{ConnectResult, Publication, Push, Reply, SubscribeResult};
use prost::Message as _;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message};

use super::options::Proto;
use super::sys;
use super::Error;

/// How long a handshake, or a write to one socket, may block the floor.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

type Channels = Arc<Mutex<HashMap<String, Vec<TcpStream>>>>;

/// A running floor; its threads stop and its sockets close on drop.
pub struct Floor {
    pub ws_port: u16,
    pub trigger_port: u16,
    /// Thread ids of the acceptor and the sender (for their CPU time).
    pub tids: Vec<i32>,
    stop: Arc<AtomicBool>,
    channels: Channels,
}

impl Floor {
    /// Starts the acceptor and the sender, pinned to `cpu` and at `nice`
    /// if given.
    pub fn start(protocol: Proto, cpu: Option<usize>, nice: Option<i32>) -> Result<Floor, Error> {
        let ws = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let trigger = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let (ws_port, trigger_port) = (ws.local_addr()?.port(), trigger.local_addr()?.port());
        let stop = Arc::new(AtomicBool::new(false));
        let channels: Channels = Arc::default();
        let (tid_tx, tid_rx) = mpsc::channel();
        {
            let (stop, channels, tid_tx) = (stop.clone(), channels.clone(), tid_tx.clone());
            std::thread::Builder::new().name("floor-accept".into()).spawn(move || {
                start_thread(cpu, nice, &tid_tx);
                accept_loop(ws, protocol, &stop, &channels);
            })?;
        }
        {
            let (stop, channels) = (stop.clone(), channels.clone());
            std::thread::Builder::new().name("floor-send".into()).spawn(move || {
                start_thread(cpu, nice, &tid_tx);
                send_loop(trigger, protocol, &stop, &channels);
            })?;
        }
        let tids = (0..2).filter_map(|_| tid_rx.recv_timeout(IO_TIMEOUT).ok()).collect();
        Ok(Floor { ws_port, trigger_port, tids, stop, channels })
    }

    /// CPU seconds the floor's threads have used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.tids.iter().map(|&tid| sys::thread_cpu_secs(tid)).sum()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accepts; they see the flag and return.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.ws_port));
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.trigger_port));
        if let Ok(mut channels) = self.channels.lock() {
            channels.clear();
        }
    }
}

fn start_thread(cpu: Option<usize>, nice: Option<i32>, tid: &mpsc::Sender<i32>) {
    if let Some(cpu) = cpu {
        if let Err(e) = sys::pin_to_cpu(cpu) {
            eprintln!("loadgen: floor cannot pin to CPU {cpu}: {e}");
        }
    }
    if let Some(nice) = nice {
        if let Err(e) = sys::set_nice(nice) {
            eprintln!("loadgen: floor cannot set nice {nice}: {e}");
        }
    }
    // SAFETY: gettid has no preconditions.
    let _ = tid.send(unsafe { libc::gettid() });
}

/// Accepts clients one after the other: handshake, read the frame with
/// `connect` and `subscribe`, answer both, file the socket under its channel.
fn accept_loop(listener: TcpListener, protocol: Proto, stop: &AtomicBool, channels: &Channels) {
    let replies = fixed_replies(protocol);
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        match admit(stream, &replies, protocol) {
            Ok((channel, socket)) => {
                if let Ok(mut channels) = channels.lock() {
                    channels.entry(channel).or_default().push(socket);
                }
            }
            Err(e) => eprintln!("loadgen: floor refused a client: {e}"),
        }
    }
}

fn admit(stream: TcpStream, replies: &Message, protocol: Proto) -> Result<(String, TcpStream), Error> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let socket = stream.try_clone()?;
    let mut ws = tungstenite::accept(stream).map_err(|e| format!("handshake: {e}"))?;
    let channel = loop {
        let commands: Vec<natsgate::protocol::Command> = match ws.read()? {
            Message::Text(text) if protocol == Proto::Json => text
                .as_str()
                .split('\n')
                .filter(|l| !l.is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?,
            Message::Binary(mut data) if protocol == Proto::Protobuf => {
                let mut commands = Vec::new();
                while !data.is_empty() {
                    commands.push(natsgate::protocol::Command::decode_length_delimited(&mut data)?);
                }
                commands
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return Err(format!("unexpected first frame {other:?}").into()),
        };
        match commands.into_iter().find_map(|c| c.subscribe) {
            Some(subscribe) => break subscribe.channel,
            None => return Err("no subscribe in the first frame".into()),
        }
    };
    ws.send(replies.clone())?;
    // The socket stays open through `socket` (a second descriptor).
    drop(ws);
    Ok((channel, socket))
}

/// The replies to `connect` (id 1) and `subscribe` (id 2), as one frame.
fn fixed_replies(protocol: Proto) -> Message {
    let connect = Reply {
        id: 1,
        connect: Some(ConnectResult { client: "floor".into(), version: "floor".into(), ..Default::default() }),
        ..Default::default()
    };
    let subscribe = Reply { id: 2, subscribe: Some(SubscribeResult::default()), ..Default::default() };
    match protocol {
        Proto::Json => Message::text(format!(
            "{}\n{}",
            serde_json::to_string(&connect).unwrap_or_default(),
            serde_json::to_string(&subscribe).unwrap_or_default()
        )),
        Proto::Protobuf => {
            let mut buf = BytesMut::new();
            let _ = connect.encode_length_delimited(&mut buf);
            let _ = subscribe.encode_length_delimited(&mut buf);
            Message::Binary(buf.freeze())
        }
    }
}

/// Serves one trigger connection at a time; each line is one message to
/// fan out.
fn send_loop(listener: TcpListener, protocol: Proto, stop: &AtomicBool, channels: &Channels) {
    let mut frame = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let mut lines = BufReader::new(stream);
        let mut line = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            match lines.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let Some(tab) = text.iter().position(|&b| b == b'\t') else { continue };
            let (channel, payload) = (&text[..tab], &text[tab + 1..]);
            let Ok(channel) = std::str::from_utf8(channel) else { continue };
            encode_frame(protocol, channel, payload, &mut frame);
            let Ok(mut channels) = channels.lock() else { return };
            if let Some(sockets) = channels.get_mut(channel) {
                // A socket that cannot take the frame is dropped (its
                // client then counts the loss).
                sockets.retain_mut(|socket| socket.write_all(&frame).is_ok());
            }
        }
    }
}

/// One server-to-client WebSocket frame (unmasked, final) holding the push.
fn encode_frame(protocol: Proto, channel: &str, payload: &[u8], frame: &mut Vec<u8>) {
    let body = match protocol {
        Proto::Json => {
            let mut body = Vec::with_capacity(payload.len() + channel.len() + 40);
            body.extend_from_slice(b"{\"push\":{\"channel\":");
            body.extend_from_slice(serde_json::to_string(channel).unwrap_or_default().as_bytes());
            body.extend_from_slice(b",\"pub\":{\"data\":");
            body.extend_from_slice(payload);
            body.extend_from_slice(b"}}}");
            body
        }
        Proto::Protobuf => {
            let reply = Reply {
                push: Some(Push {
                    channel: channel.into(),
                    r#pub: Some(Publication { data: payload.to_vec().into(), ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            reply.encode_length_delimited_to_vec()
        }
    };
    frame.clear();
    frame.push(if protocol == Proto::Json { 0x81 } else { 0x82 });
    match body.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_websocket_header_of_their_length() {
        let mut frame = Vec::new();
        encode_frame(Proto::Json, "c", br#"{"ts":1,"seq":2}"#, &mut frame);
        let body = br#"{"push":{"channel":"c","pub":{"data":{"ts":1,"seq":2}}}}"#;
        assert_eq!(frame[..2], [0x81, body.len() as u8]);
        assert_eq!(&frame[2..], body);
        encode_frame(Proto::Json, "c", &[b'1'; 300], &mut frame);
        assert_eq!(frame[..2], [0x81, 126]);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]) as usize, frame.len() - 4);
    }
}
