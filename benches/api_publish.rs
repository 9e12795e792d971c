//! `cargo bench --bench api_publish [-- <seconds per case>]`: HTTP API
//! publishes per second, embedded broker against NATS, for channels without
//! and with history, measured in one run and printed as ratios (issue 14's
//! targets: NATS >= 0.8x embedded without history, >= 0.5x with history).
//!
//! Each case starts its own gateway (and nats-server for NATS), then 16
//! keep-alive HTTP connections publish `{"n":..}` one after another, each to
//! its own channel, with no subscribers, for the given seconds (default 10)
//! after a 1 s warm-up. Gateways are the release binary (`cargo build
//! --release` first).

use natsgate_test_support::{Gateway, NatsServer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 16;
const API_KEY: &str = "bench-key";
const NAMESPACES: &str = r#"[{"name":"hist","history_size":100,"history_ttl":"300s"}]"#;

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut rates = Vec::new();
    for (broker, nats) in [("embedded", false), ("nats", true)] {
        let server = nats.then(NatsServer::start);
        let mut builder =
            Gateway::builder().envs(&[("NATSGATE_API_KEY", API_KEY), ("NATSGATE_NAMESPACES", NAMESPACES)]);
        if let Some(server) = &server {
            builder = builder.nats(server);
        }
        let gateway = builder.start();
        for (kind, prefix) in [("no history", "bench"), ("history", "hist:bench")] {
            let rate = runtime.block_on(measure(gateway.port(), prefix, Duration::from_secs(seconds)));
            println!("{broker:>8}, {kind:<10}: {rate:>9.0} publishes/s");
            rates.push(rate);
        }
        drop(gateway);
        drop(server);
    }
    println!("NATS / embedded, no history: {:.2}x (target >= 0.8x)", rates[2] / rates[0]);
    println!("NATS / embedded, history:    {:.2}x (target >= 0.5x)", rates[3] / rates[1]);
}

/// Publishes per second over `CONNECTIONS` keep-alive connections.
async fn measure(port: u16, prefix: &str, duration: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..CONNECTIONS {
        let (stop, counting, count) = (stop.clone(), counting.clone(), count.clone());
        let url = format!("http://127.0.0.1:{port}/api/publish");
        let channel = format!("{prefix}{i}");
        tasks.push(tokio::spawn(async move {
            // One client each: one keep-alive connection each.
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(r#"{{"channel":"{channel}","data":{{"n":{n}}}}}"#);
                let response = http.post(&url).header("X-API-Key", API_KEY).body(body).send().await;
                let ok = match response {
                    Ok(r) => r.bytes().await.is_ok_and(|b| b.starts_with(b"{\"result\"")),
                    Err(_) => false,
                };
                assert!(ok, "publish {n} to {channel} failed");
                if counting.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let done = count.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("publisher");
    }
    done as f64 / elapsed.as_secs_f64()
}
