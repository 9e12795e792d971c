//! What one run measured, and how it is printed: a table with one column
//! per system, so `--target all` reads side by side.

use super::options::{Proto, PublishVia, System, Workload};
use super::stats::Latency;
use super::sys::Rss;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub system: System,
    pub protocol: Proto,
    pub publish_via: PublishVia,
    pub workload: Workload,

    /// Seconds from the first connection attempt until every client had
    /// its subscribe reply (or failed).
    pub connect_secs: f64,
    /// Per client, from TCP connect to subscribe reply.
    pub connect_ms: Option<Latency>,
    /// CPU used while clients connected.
    pub connect_cpu: CpuUse,
    /// CPU used from the first publish until the deliveries were drained.
    pub publish_cpu: CpuUse,
    pub connected: usize,
    pub connect_failures: usize,
    /// Connections that ended before the run did.
    pub closed_early: usize,

    pub published: usize,
    pub publish_errors: usize,
    /// Times the in-flight window stalled and was written off.
    pub stalls: usize,
    pub publish_secs: f64,
    pub expected: u64,
    pub received: u64,
    /// WebSocket frames that carried deliveries (servers batch several per frame).
    pub frames: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    /// Deliveries per second, from the first publish to the last delivery.
    pub delivered_per_sec: f64,
    pub latency_ms: Option<Latency>,
    pub pings_answered: u64,

    /// The WebSocket server (natsgate, Centrifugo, or nats-server for
    /// nats-ws; zero for the floor, which runs inside the generator).
    pub server: Memory,
    /// The nats-server behind natsgate or Centrifugo's NATS broker.
    pub nats: Option<Memory>,
    pub errors: Vec<String>,
    pub error_count: u64,
}

/// CPU seconds each process used during one phase, and the phase's wall time.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CpuUse {
    pub wall_secs: f64,
    pub server_secs: Option<f64>,
    pub nats_secs: Option<f64>,
    pub generator_secs: Option<f64>,
    /// Interrupt and softirq time (loopback TCP is processed there in part).
    pub irq_secs: Option<f64>,
    /// Everything else the machine did meanwhile: other processes (noise:
    /// rerun when this is large).
    pub other_secs: Option<f64>,
}

impl CpuUse {
    /// `server/nats/generator/irq/other` as percentages of one core over the phase.
    fn cells(&self) -> String {
        let pct = |s: Option<f64>| match s {
            Some(s) if self.wall_secs > 0.0 => format!("{:.0}%", 100.0 * s / self.wall_secs),
            _ => "-".into(),
        };
        format!(
            "{} / {} / {} / {} / {}",
            pct(self.server_secs),
            pct(self.nats_secs),
            pct(self.generator_secs),
            pct(self.irq_secs),
            pct(self.other_secs)
        )
    }
}

/// Resident memory of one process through the run, in KiB.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Memory {
    pub idle_kib: u64,
    pub connected_kib: u64,
    pub after_kib: u64,
    /// Peak resident memory (VmHWM) at the end.
    pub peak_kib: u64,
    /// (connected - idle) / clients.
    pub per_conn_bytes: f64,
}

impl Memory {
    pub fn new(idle: Option<Rss>, connected: Option<Rss>, after: Option<Rss>, clients: usize) -> Option<Memory> {
        let (idle, connected, after) = (idle?, connected?, after?);
        let grown = connected.rss_kib.saturating_sub(idle.rss_kib) as f64 * 1024.0;
        Some(Memory {
            idle_kib: idle.rss_kib,
            connected_kib: connected.rss_kib,
            after_kib: after.rss_kib,
            peak_kib: after.hwm_kib,
            per_conn_bytes: if clients > 0 { grown / clients as f64 } else { 0.0 },
        })
    }
}

impl Report {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.connect_failures == 0 && self.closed_early == 0 && self.publish_errors == 0
    }
}

fn lat(r: &Report, f: fn(&Latency) -> f64) -> String {
    r.latency_ms.as_ref().map(|l| format!("{:.2}", f(l))).unwrap_or_else(|| "-".into())
}

fn mem(m: Option<&Memory>, f: fn(&Memory) -> String) -> String {
    m.map(f).unwrap_or_else(|| "-".into())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// One table, a column per report.
pub fn table(reports: &[Report]) -> String {
    type Row = (&'static str, fn(&Report) -> String);
    let rows: Vec<Row> = vec![
        ("system", |r| r.system.name().into()),
        ("protocol", |r| match r.system {
            System::NatsWs => "nats".into(),
            _ => format!("{:?}", r.protocol).to_lowercase(),
        }),
        ("publish via", |r| format!("{:?}", r.publish_via).to_lowercase()),
        ("clients / channels / users", |r| {
            format!("{} / {} / {}", r.workload.clients, r.workload.channels, r.workload.users)
        }),
        ("messages x bytes", |r| format!("{} x {}", r.workload.messages, r.workload.size)),
        ("rate (msg/s)", |r| if r.workload.rate > 0.0 { format!("{}", r.workload.rate) } else { "max".into() }),
        ("latency warm-up (messages)", |r| r.workload.warmup.to_string()),
        ("connect+subscribe (s)", |r| format!("{:.3}", r.connect_secs)),
        ("connect p50/p99/max (ms)", |r| match &r.connect_ms {
            Some(l) => format!("{:.1} / {:.1} / {:.1}", l.p50, l.p99, l.max),
            None => "-".into(),
        }),
        ("connect CPU srv/nats/gen/irq/other", |r| r.connect_cpu.cells()),
        ("connect failures", |r| r.connect_failures.to_string()),
        ("closed early", |r| r.closed_early.to_string()),
        ("published", |r| format!("{} ({} errors, {} stalls)", r.published, r.publish_errors, r.stalls)),
        ("publish time (s)", |r| format!("{:.3}", r.publish_secs)),
        ("deliveries expected", |r| r.expected.to_string()),
        ("deliveries received", |r| r.received.to_string()),
        ("frames (deliveries/frame)", |r| format!("{} ({:.1})", r.frames, r.received as f64 / r.frames.max(1) as f64)),
        ("lost", |r| format!("{} ({:.3}%)", r.lost, 100.0 * r.lost as f64 / r.expected.max(1) as f64)),
        ("out of order / unexpected", |r| format!("{} / {}", r.out_of_order, r.unexpected)),
        ("delivered msgs/s", |r| format!("{:.0}", r.delivered_per_sec)),
        ("publish CPU srv/nats/gen/irq/other", |r| r.publish_cpu.cells()),
        ("deliveries per server CPU-s", |r| {
            let c = &r.publish_cpu;
            match c.server_secs.map(|s| s + c.nats_secs.unwrap_or(0.0)) {
                Some(cpu) if cpu > 0.0 => format!("{:.0}", r.received as f64 / cpu),
                _ => "-".into(),
            }
        }),
        ("latency p50 (ms)", |r| lat(r, |l| l.p50)),
        ("latency p90 (ms)", |r| lat(r, |l| l.p90)),
        ("latency p99 (ms)", |r| lat(r, |l| l.p99)),
        ("latency p99.9 (ms)", |r| lat(r, |l| l.p999)),
        ("latency max (ms)", |r| lat(r, |l| l.max)),
        ("server RSS idle (MiB)", |r| mib(r.server.idle_kib)),
        ("server RSS connected (MiB)", |r| mib(r.server.connected_kib)),
        ("server RSS after (MiB)", |r| mib(r.server.after_kib)),
        ("server RSS peak (MiB)", |r| mib(r.server.peak_kib)),
        ("server RSS/conn (KiB)", |r| format!("{:.2}", r.server.per_conn_bytes / 1024.0)),
        ("nats RSS idle (MiB)", |r| mem(r.nats.as_ref(), |m| format!("{:.1}", m.idle_kib as f64 / 1024.0))),
        ("nats RSS connected (MiB)", |r| mem(r.nats.as_ref(), |m| format!("{:.1}", m.connected_kib as f64 / 1024.0))),
        ("nats RSS after (MiB)", |r| mem(r.nats.as_ref(), |m| format!("{:.1}", m.after_kib as f64 / 1024.0))),
        ("nats RSS/conn (KiB)", |r| mem(r.nats.as_ref(), |m| format!("{:.2}", m.per_conn_bytes / 1024.0))),
        ("pings answered", |r| r.pings_answered.to_string()),
        ("errors", |r| r.error_count.to_string()),
    ];
    let cells: Vec<Vec<String>> = rows.iter().map(|(_, f)| reports.iter().map(f).collect()).collect();
    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..reports.len()).map(|i| cells.iter().map(|row| row[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for ((label, _), row) in rows.iter().zip(&cells) {
        out.push_str(&format!("{label:<label_width$}"));
        for (cell, width) in row.iter().zip(&widths) {
            out.push_str(&format!("  {cell:>width$}"));
        }
        out.push('\n');
    }
    for r in reports {
        for e in &r.errors {
            out.push_str(&format!("{}: {e}\n", r.system.name()));
        }
    }
    out
}
