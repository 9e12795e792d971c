//! natsgate's load generator, as a library: `benches/loadgen.rs` wraps it
//! in a command line and `tests/loadgen_smoke.rs` calls [`run`] directly.
//!
//! Layout:
//! - `options`: command line, scenario presets, the resolved workload;
//! - `servers`: spawns nats-server, natsgate, Centrifugo (or wraps running ones);
//! - `floor`: the physical floor, a minimal sender of pre-encoded frames;
//! - `clients`: one task per WebSocket subscriber (Centrifugo or NATS dialect);
//! - `publisher`: publishes via NATS, an HTTP API or the floor's trigger,
//!   rate-limited or windowed;
//! - `stats`: counters and the latency histogram the clients share;
//! - `report`: the figures of one run and the side-by-side table;
//! - `sys`: rlimits, CPU pinning, RSS, ports, clocks.
//!
//! All traffic stays on loopback: every URL is checked before use.

pub mod clients;
pub mod floor;
pub mod options;
pub mod publisher;
pub mod report;
pub mod servers;
pub mod stats;
pub mod sys;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use natsgate::broker::subject::SubjectMap;
use options::{Options, PublishVia, System, Workload};
use report::{Memory, Report};
use servers::Servers;
use stats::Stats;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs the workload against each system the options name, one after the
/// other, within the overall `--timeout`.
pub async fn run(opts: &Options) -> Result<Vec<Report>, Error> {
    let workload = opts.workload();
    let deadline = Instant::now() + opts.overall_timeout();
    let mut reports = Vec::new();
    for system in opts.systems() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, run_one(system, opts, &workload)).await {
            Ok(report) => reports.push(report?),
            Err(_) => return Err(format!("{}: overall time limit of {}s reached", system.name(), opts.timeout).into()),
        }
    }
    Ok(reports)
}

fn say(opts: &Options, what: std::fmt::Arguments<'_>) {
    if !opts.quiet {
        eprintln!("loadgen: {what}");
    }
}

/// One system: start it, connect, measure memory, publish, drain, stop.
/// Dropping this future (the time limit) kills the spawned servers and
/// stops the clients.
async fn run_one(system: System, opts: &Options, w: &Workload) -> Result<Report, Error> {
    let spawn_opts = opts.clone();
    let mut servers = tokio::task::spawn_blocking(move || Servers::start(system, &spawn_opts)).await??;
    let ep = &servers.endpoints;
    let server_addr = loopback(&ep.ws_url, "ws")?;
    if !ep.nats_url.is_empty() {
        loopback(&ep.nats_url, "nats")?;
    }
    let publish_via = system.publish_via(opts.publish_via);
    let via = match publish_via {
        PublishVia::Nats => publisher::Via::Nats { url: ep.nats_url.clone() },
        PublishVia::Http => {
            let url = ep.api_url.clone().ok_or("--publish-via http needs --api-url")?;
            loopback(&url, "http")?;
            publisher::Via::Http { url, api_key: opts.api_key.clone(), concurrency: opts.http_concurrency }
        }
        PublishVia::Direct => {
            let addr = ep.trigger_addr.clone().ok_or("the floor has no trigger address")?;
            loopback(&format!("tcp://{addr}"), "floor")?;
            publisher::Via::Direct { addr }
        }
    };
    let (server_pid, nats_pid) = (ep.server_pid, ep.nats_pid);
    say(
        opts,
        format_args!("{}: serving at {} (server pid {server_pid:?}, nats pid {nats_pid:?})", system.name(), ep.ws_url),
    );

    // Channels, subjects, tokens: all made before the clock starts.
    let subject_map = SubjectMap::new(&opts.nats_prefix);
    let channels: Vec<String> = (0..w.channels).map(|c| format!("loadgen-{c}")).collect();
    let subjects: Vec<String> = channels.iter().map(|c| subject_map.channel_subject(c)).collect();
    let fanout: Vec<u64> =
        (0..w.channels).map(|c| (w.clients / w.channels + usize::from(c < w.clients % w.channels)) as u64).collect();
    let plan = Arc::new(clients::Plan {
        system,
        protocol: opts.protocol,
        ws_url: ep.ws_url.clone(),
        server: server_addr,
        source_addrs: opts.source_addrs,
        warmup: w.warmup as u64,
    });
    let seats: Vec<clients::Seat> = (0..w.clients)
        .map(|k| clients::Seat {
            index: k,
            token: if system.speaks_centrifugo() {
                natsgate::auth::mint_hs256(
                    &opts.secret,
                    &serde_json::json!({ "sub": format!("loadgen-{}", k % w.users) }),
                )
            } else {
                String::new()
            },
            channel: channels[k % w.channels].clone(),
            subject: subjects[k % w.channels].clone(),
        })
        .collect();

    tokio::time::sleep(opts.settle()).await;
    let rss_idle = (server_pid.and_then(sys::rss), nats_pid.and_then(sys::rss));

    // Connect and subscribe everyone.
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let connecting = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let cpu_start = CpuMark::take(&servers);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for seat in seats {
        tasks.spawn(clients::run(plan.clone(), seat, stats.clone(), connecting.clone(), stop.clone()));
    }
    while stats.ready() + stats.failed() < w.clients {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connect_cpu = cpu_start.since(&servers);
    say(
        opts,
        format_args!(
            "{}: {} clients ready in {connect_secs:.3}s ({} failed)",
            system.name(),
            stats.ready(),
            stats.failed()
        ),
    );
    tokio::time::sleep(opts.settle()).await;
    let rss_connected = (server_pid.and_then(sys::rss), nats_pid.and_then(sys::rss));
    servers.check_alive()?;

    // Publish, then wait for the deliveries.
    let publish_plan = publisher::Plan {
        messages: w.messages,
        size: w.size,
        rate: w.rate,
        max_inflight: w.max_inflight,
        channels: channels.clone(),
        subjects,
        fanout: fanout.clone(),
    };
    let cpu_start = CpuMark::take(&servers);
    let outcome = publisher::publish(via, &publish_plan, &stats).await?;
    let expected: u64 = (0..w.messages).map(|i| fanout[i % w.channels]).sum();
    say(opts, format_args!("{}: published {} messages; draining", system.name(), outcome.published));
    let drain = Duration::from_millis(opts.drain_ms);
    let mut progress = (Instant::now(), stats.received());
    while stats.received() < expected && progress.0.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if stats.received() != progress.1 {
            progress = (Instant::now(), stats.received());
        }
    }
    let publish_cpu = cpu_start.since(&servers);
    let rss_after = (server_pid.and_then(sys::rss), nats_pid.and_then(sys::rss));
    let alive = servers.check_alive();

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    drop(servers);
    if let Err(e) = alive {
        stats.error(e);
    }

    let received = stats.received();
    let span_ns = stats.last_delivery_ns().saturating_sub(outcome.first_ns).max(1);
    Ok(Report {
        system,
        protocol: opts.protocol,
        publish_via,
        workload: w.clone(),
        connect_secs,
        connect_ms: stats.connect_latency(),
        connect_cpu,
        publish_cpu,
        connected: stats.ready(),
        connect_failures: stats.failed(),
        closed_early: stats.closed_early_count(),
        published: outcome.published,
        publish_errors: outcome.errors,
        stalls: outcome.stalls,
        publish_secs: outcome.last_ns.saturating_sub(outcome.first_ns) as f64 / 1e9,
        expected,
        received,
        frames: stats.frames(),
        lost: expected.saturating_sub(received),
        out_of_order: stats.out_of_order(),
        unexpected: stats.unexpected_count(),
        delivered_per_sec: if received > 0 { received as f64 * 1e9 / span_ns as f64 } else { 0.0 },
        latency_ms: stats.latency(),
        pings_answered: stats.pings(),
        server: Memory::new(rss_idle.0, rss_connected.0, rss_after.0, w.clients).unwrap_or_default(),
        nats: Memory::new(rss_idle.1, rss_connected.1, rss_after.1, w.clients),
        errors: stats.errors(),
        error_count: stats.error_count(),
    })
}

/// CPU time used so far by the server, its nats-server and the generator.
struct CpuMark {
    at: Instant,
    server: Option<f64>,
    nats: Option<f64>,
    generator: Option<f64>,
    machine: Option<(f64, f64)>,
}

impl CpuMark {
    fn take(servers: &Servers) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: servers.server_cpu_secs(),
            nats: servers.endpoints.nats_pid.and_then(|pid| sys::cpu_secs(Some(pid))),
            // The floor's threads run in this process: not the generator's.
            generator: sys::cpu_secs(None).map(|all| all - servers.floor_cpu_secs().unwrap_or(0.0)),
            machine: sys::machine_busy_secs(),
        }
    }

    /// CPU seconds used by each since this mark, with the wall time.
    fn since(&self, servers: &Servers) -> report::CpuUse {
        let now = CpuMark::take(servers);
        let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        let ours = [diff(self.server, now.server), diff(self.nats, now.nats), diff(self.generator, now.generator)];
        let machine = diff(self.machine.map(|m| m.0), now.machine.map(|m| m.0));
        let irq = diff(self.machine.map(|m| m.1), now.machine.map(|m| m.1));
        report::CpuUse {
            wall_secs: now.at.duration_since(self.at).as_secs_f64(),
            server_secs: ours[0],
            nats_secs: ours[1],
            generator_secs: ours[2],
            irq_secs: irq,
            other_secs: machine.map(|m| (m - irq.unwrap_or(0.0) - ours.iter().flatten().sum::<f64>()).max(0.0)),
        }
    }
}

/// The socket address of a URL, refused unless it is on loopback: this
/// generator sends traffic nowhere else.
fn loopback(url: &str, what: &str) -> Result<SocketAddr, Error> {
    let rest = url.split_once("://").map(|(_, r)| r).ok_or_else(|| format!("{what} URL without a scheme: {url}"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = if url.starts_with("nats") { 4222 } else { 80 };
    let with_port = if authority.contains(':') { authority.to_string() } else { format!("{authority}:{default_port}") };
    let addrs: Vec<SocketAddr> = with_port.to_socket_addrs()?.collect();
    match addrs.iter().find(|a| is_loopback(a.ip())) {
        Some(addr) if addrs.iter().all(|a| is_loopback(a.ip())) => Ok(*addr),
        _ => Err(format!("{what} URL {url} is not on loopback; the load generator only targets this machine").into()),
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
