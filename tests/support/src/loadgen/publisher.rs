//! The publisher: M messages of S bytes, at a fixed rate or as fast as a
//! bounded window of undelivered messages allows, straight to NATS,
//! through an HTTP API (natsgate's or Centrifugo's: the same request), or
//! to the floor's trigger connection.
//!
//! Message `i` goes to channel `i % C`. Its payload is JSON (so JSON
//! clients can receive it) carrying the send time and `i`:
//! `{"ts":<unix ns>,"seq":<i>,"pad":"xxx…"}`, padded to S bytes.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::stats::Stats;
use super::sys::now_ns;
use super::Error;

/// A full window that makes no progress for this long is written off as
/// lost, so publishing goes on (and the loss shows in the report).
const STALL: Duration = Duration::from_secs(2);

pub enum Via {
    Nats {
        url: String,
    },
    /// The floor's trigger: one `<channel>\t<payload>\n` line per message.
    Direct {
        addr: String,
    },
    Http {
        url: String,
        api_key: String,
        concurrency: usize,
    },
}

pub struct Plan {
    pub messages: usize,
    pub size: usize,
    /// Messages per second; 0 = full speed.
    pub rate: f64,
    pub max_inflight: usize,
    /// Channel names, subjects and subscriber counts, by channel index.
    pub channels: Vec<String>,
    pub subjects: Vec<String>,
    pub fanout: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub published: usize,
    pub errors: usize,
    pub stalls: usize,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Publishes everything, then waits until the publisher's own
/// connection has handed every message over.
pub async fn publish(via: Via, plan: &Plan, stats: &Stats) -> Result<Outcome, Error> {
    let mut sender = match via {
        Via::Nats { url } => {
            let client = async_nats::ConnectOptions::new().name("loadgen-publisher").connect(url).await?;
            Sender::Nats(client)
        }
        Via::Direct { addr } => {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Sender::Direct(stream, Vec::new())
        }
        Via::Http { url, api_key, concurrency } => Sender::Http {
            client: reqwest::Client::builder().no_proxy().pool_max_idle_per_host(concurrency).build()?,
            url: Arc::new(url),
            api_key: Arc::new(api_key),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks: JoinSet::new(),
        },
    };
    let mut out = Outcome::default();
    let window = plan.max_inflight as u64 * plan.fanout.iter().copied().max().unwrap_or(1).max(1);
    let mut expected = 0u64;
    let mut written_off = 0u64;
    let start = Instant::now();
    out.first_ns = now_ns();
    for i in 0..plan.messages {
        if plan.rate > 0.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / plan.rate)).await;
        }
        // Bounded in flight: wait while too many deliveries are outstanding.
        let mut last_progress = (Instant::now(), stats.received());
        while expected - written_off > stats.received() + window {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let received = stats.received();
            if received != last_progress.1 {
                last_progress = (Instant::now(), received);
            } else if last_progress.0.elapsed() > STALL {
                out.stalls += 1;
                written_off = expected - received;
                break;
            }
        }
        let channel = i % plan.channels.len();
        let payload = payload(i as u64, plan.size);
        if let Err(e) = sender.send(&plan.channels[channel], &plan.subjects[channel], payload, stats).await {
            out.errors += 1;
            stats.error(format!("publish {i}: {e}"));
            continue;
        }
        expected += plan.fanout[channel];
        out.published += 1;
    }
    out.errors += sender.finish(stats).await?;
    out.last_ns = now_ns();
    Ok(out)
}

enum Sender {
    Nats(async_nats::Client),
    Direct(tokio::net::TcpStream, Vec<u8>),
    Http {
        client: reqwest::Client,
        url: Arc<String>,
        api_key: Arc<String>,
        permits: Arc<Semaphore>,
        tasks: JoinSet<bool>,
    },
}

impl Sender {
    async fn send(&mut self, channel: &str, subject: &str, payload: Vec<u8>, stats: &Stats) -> Result<(), Error> {
        match self {
            Sender::Nats(client) => {
                client.publish(subject.to_string(), Bytes::from(payload)).await?;
                Ok(())
            }
            Sender::Direct(stream, line) => {
                line.clear();
                line.extend_from_slice(channel.as_bytes());
                line.push(b'\t');
                line.extend_from_slice(&payload);
                line.push(b'\n');
                stream.write_all(line).await?;
                Ok(())
            }
            Sender::Http { client, url, api_key, permits, tasks } => {
                let permit = permits.clone().acquire_owned().await?;
                // Reap finished requests so the set stays small.
                while let Some(done) = tasks.try_join_next() {
                    if !matches!(done, Ok(true)) {
                        stats.error("HTTP publish failed".into());
                    }
                }
                let mut body = Vec::with_capacity(payload.len() + channel.len() + 32);
                body.extend_from_slice(b"{\"channel\":");
                body.extend_from_slice(serde_json::to_string(channel)?.as_bytes());
                body.extend_from_slice(b",\"data\":");
                body.extend_from_slice(&payload);
                body.extend_from_slice(b"}");
                let request = client
                    .post(url.as_str())
                    .header("X-API-Key", api_key.as_str())
                    .header("Content-Type", "application/json")
                    .body(body);
                tasks.spawn(async move {
                    let _permit = permit;
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {
                            // Centrifugo answers errors with HTTP 200 and an `error` object.
                            let text = response.text().await.unwrap_or_default();
                            !text.contains("\"error\"")
                        }
                        _ => false,
                    }
                });
                Ok(())
            }
        }
    }

    /// Waits for everything sent to be accepted; returns failures found now.
    async fn finish(self, stats: &Stats) -> Result<usize, Error> {
        match self {
            Sender::Nats(client) => {
                client.flush().await?;
                Ok(0)
            }
            Sender::Direct(mut stream, _) => {
                stream.flush().await?;
                Ok(0)
            }
            Sender::Http { mut tasks, .. } => {
                let mut failed = 0;
                while let Some(done) = tasks.join_next().await {
                    if !matches!(done, Ok(true)) {
                        failed += 1;
                        stats.error("HTTP publish failed".into());
                    }
                }
                Ok(failed)
            }
        }
    }
}

/// `{"ts":<now ns>,"seq":<seq>,"pad":"xx…"}`, padded to `size` bytes when
/// `size` leaves room for the padding field.
pub fn payload(seq: u64, size: usize) -> Vec<u8> {
    let head = format!("{{\"ts\":{},\"seq\":{seq}", now_ns());
    let mut out = Vec::with_capacity(size.max(head.len() + 1));
    out.extend_from_slice(head.as_bytes());
    const PAD_OVERHEAD: usize = ",\"pad\":\"\"}".len();
    if size >= head.len() + PAD_OVERHEAD {
        out.extend_from_slice(b",\"pad\":\"");
        out.resize(size - 2, b'x');
        out.extend_from_slice(b"\"}");
    } else {
        out.push(b'}');
    }
    out
}

#[cfg(test)]
#[allow(unused_imports)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_json_of_the_asked_size() {
        for size in [0, 10, 40, 128, 4096] {
            let p = payload(7, size);
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(v["seq"], 7);
            if size >= 60 {
                assert_eq!(p.len(), size);
            }
        }
    }
}
