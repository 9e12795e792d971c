//! Command-line options, scenario presets and their resolution into one
//! fully specified [`Workload`].
//!
//! Every workload knob is an `Option` so that a preset (`--scenario b`)
//! fills in what the command line left out, and an explicit flag always
//! wins over the preset.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    about = "Load generator for natsgate (and, for comparison, Centrifugo, nats-server's WebSocket listener and a minimal sender)",
    after_help = "Examples:\n  \
        taskset -c 1 cargo bench --bench loadgen -- --scenario a --target both --pin-server 0\n  \
        taskset -c 1 cargo bench --bench loadgen -- --scenario c --target all --publish-via http --pin-server 0\n  \
        cargo bench --bench loadgen -- --clients 200 --channels 4 --messages 500 --rate 100"
)]
pub struct Options {
    /// A preset workload; explicit flags override its values.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,

    /// What to measure, one after the other (comma-separated): natsgate
    /// (with nats-server behind it), nats-server's own WebSocket listener,
    /// Centrifugo with its memory engine or with its NATS broker, the
    /// floor (a minimal sender of pre-encoded frames); `both` is natsgate
    /// and nats-ws, `all` is every one of them.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "natsgate")]
    pub target: Vec<Target>,

    /// Client connections.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Channels; client k subscribes to channel k % channels.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Distinct users (token `sub`); client k is user k % users. Default:
    /// one user per client.
    #[arg(long)]
    pub users: Option<usize>,
    /// Messages to publish; message i goes to channel i % channels.
    #[arg(long)]
    pub messages: Option<usize>,
    /// Payload size in bytes (JSON with a timestamp and a sequence number, padded).
    #[arg(long)]
    pub size: Option<usize>,
    /// Publish rate in messages per second; 0 = as fast as the in-flight bound allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Leave the first N messages out of the latency figures (they still
    /// count for loss and throughput).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Most messages published but not yet delivered to all their subscribers.
    #[arg(long)]
    pub max_inflight: Option<usize>,

    /// Wire format of the Centrifugo clients (ignored by nats-ws).
    #[arg(long, value_enum, default_value_t = Proto::Json)]
    pub protocol: Proto,
    /// How natsgate's messages are published: straight to NATS, or through
    /// its HTTP API. Centrifugo is always published to through its HTTP
    /// API, nats-ws over NATS, the floor over its trigger connection.
    #[arg(long, value_enum, default_value_t = PublishVia::Nats)]
    pub publish_via: PublishVia,
    /// API key for `--publish-via http` (given to a spawned gateway as NATSGATE_API_KEY).
    #[arg(long, default_value = "loadgen-api-key")]
    pub api_key: String,
    /// HTTP API requests in flight at once with `--publish-via http`
    /// (above 1, publications may overtake each other: counted as out of order).
    #[arg(long, default_value_t = 32)]
    pub http_concurrency: usize,

    /// WebSocket handshakes (plus connect and subscribe) in progress at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Spread client sockets over this many source addresses 127.0.0.2, 127.0.0.3, ...
    /// (each gives about 28k ephemeral ports).
    #[arg(long, default_value_t = 4)]
    pub source_addrs: u8,

    /// Pin the spawned servers to this CPU (like `taskset -c N`).
    #[arg(long)]
    pub pin_server: Option<usize>,
    /// Pin the generator itself to this CPU.
    #[arg(long)]
    pub pin_self: Option<usize>,
    /// Scheduling priority (nice value, e.g. -10) for the spawned servers,
    /// the floor's threads and the generator itself, which also move to a
    /// session (a kernel autogroup) of their own with that nice, so that
    /// other work on a shared machine disturbs the run less (negative
    /// values need root).
    #[arg(long, allow_hyphen_values = true)]
    pub nice: Option<i32>,
    /// Worker threads of the generator's runtime (default: CPUs it may run on).
    #[arg(long)]
    pub threads: Option<usize>,

    /// natsgate binary to spawn.
    #[arg(long, default_value_os_t = crate::natsgate_bin())]
    pub natsgate_bin: PathBuf,
    /// Centrifugo binary to spawn (default: $CENTRIFUGO_BIN, else
    /// $(go env GOPATH)/bin/centrifugo).
    #[arg(long)]
    pub centrifugo_bin: Option<PathBuf>,
    /// nats-server binary to spawn.
    #[arg(long, default_value = "nats-server")]
    pub nats_server_bin: PathBuf,
    /// Extra environment for a spawned gateway (KEY=VALUE, repeatable),
    /// e.g. NATSGATE_CLIENT_QUEUE_MAX_SIZE=4194304.
    #[arg(long = "gateway-env", value_parser = parse_key_value)]
    pub gateway_env: Vec<(String, String)>,
    /// HMAC secret for connection tokens (given to a spawned gateway).
    #[arg(long, default_value = "loadgen-secret")]
    pub secret: String,
    /// First token of natsgate's NATS subjects.
    #[arg(long, default_value = "natsgate")]
    pub nats_prefix: String,

    /// Use a running server instead of spawning one: its WebSocket URL
    /// (ws://127.0.0.1:8000/connection/websocket for natsgate).
    #[arg(long, requires = "nats_url")]
    pub ws_url: Option<String>,
    /// NATS URL to publish to with `--ws-url`.
    #[arg(long, requires = "ws_url")]
    pub nats_url: Option<String>,
    /// HTTP API URL with `--ws-url` and `--publish-via http`
    /// (default: derived from --ws-url, path /api/publish).
    #[arg(long)]
    pub api_url: Option<String>,
    /// PID of the running server (for RSS figures) with `--ws-url`.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// PID of the running nats-server (for RSS figures) with `--ws-url`.
    #[arg(long)]
    pub nats_pid: Option<u32>,

    /// Overall time limit in seconds (all targets together).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Pause before each RSS reading, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// After the last publish, give up waiting for deliveries after this
    /// many milliseconds without progress.
    #[arg(long, default_value_t = 5000)]
    pub drain_ms: u64,
    /// Also print each report as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Keep the spawned servers' configs and logs (their directory is printed).
    #[arg(long)]
    pub keep_logs: bool,
    /// Less output: only the final table.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// 1000 subscribers, 1 channel, 2000 messages of 128 B, full speed.
    A,
    /// 10,000 subscribers over 100 channels, 5000 messages of 128 B, full speed.
    B,
    /// 1000 subscribers, 1 channel, 200 messages/s for 10 s.
    C,
    /// 19,900 idle subscribed connections over 100 channels: connect time, RSS per connection.
    D,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Natsgate,
    NatsWs,
    Centrifugo,
    CentrifugoNats,
    Floor,
    Both,
    All,
}

/// One concrete system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    Natsgate,
    NatsWs,
    /// Centrifugo with its memory engine.
    Centrifugo,
    /// Centrifugo with its NATS broker, on the same kind of nats-server.
    CentrifugoNats,
    /// The physical floor: pre-encoded frames written to the sockets and
    /// nothing else (see `floor`).
    Floor,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Natsgate => "natsgate",
            System::NatsWs => "nats-ws",
            System::Centrifugo => "centrifugo",
            System::CentrifugoNats => "centrifugo+nats",
            System::Floor => "floor",
        }
    }

    /// Whether clients speak Centrifugo's protocol (else NATS over WebSocket).
    pub fn speaks_centrifugo(self) -> bool {
        self != System::NatsWs
    }

    /// How this system's messages are published, given `--publish-via`.
    pub fn publish_via(self, asked: PublishVia) -> PublishVia {
        match self {
            System::Natsgate => asked,
            System::Centrifugo | System::CentrifugoNats => PublishVia::Http,
            System::NatsWs => PublishVia::Nats,
            System::Floor => PublishVia::Direct,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Json,
    Protobuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    Nats,
    Http,
    /// The floor's own trigger connection (not a command-line choice).
    #[value(skip)]
    Direct,
}

/// The workload with every knob decided.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Workload {
    pub clients: usize,
    pub channels: usize,
    pub users: usize,
    pub messages: usize,
    pub size: usize,
    /// Messages per second; 0 = full speed.
    pub rate: f64,
    pub max_inflight: usize,
    pub warmup: usize,
}

impl Options {
    pub fn systems(&self) -> Vec<System> {
        let mut systems = Vec::new();
        for target in &self.target {
            let add: &[System] = match target {
                Target::Natsgate => &[System::Natsgate],
                Target::NatsWs => &[System::NatsWs],
                Target::Centrifugo => &[System::Centrifugo],
                Target::CentrifugoNats => &[System::CentrifugoNats],
                Target::Floor => &[System::Floor],
                Target::Both => &[System::Natsgate, System::NatsWs],
                Target::All => {
                    &[System::Natsgate, System::Centrifugo, System::CentrifugoNats, System::NatsWs, System::Floor]
                }
            };
            for system in add {
                if !systems.contains(system) {
                    systems.push(*system);
                }
            }
        }
        systems
    }

    pub fn workload(&self) -> Workload {
        // (clients, channels, messages, size, rate)
        let preset = match self.scenario {
            Some(Scenario::A) => (1000, 1, 2000, 128, 0.0),
            Some(Scenario::B) => (10_000, 100, 5000, 128, 0.0),
            Some(Scenario::C) => (1000, 1, 2000, 128, 200.0),
            // A few messages after the idle measurement prove the
            // connections are live without changing what is measured.
            Some(Scenario::D) => (19_900, 100, 10, 128, 0.0),
            None => (100, 1, 1000, 128, 0.0),
        };
        Workload {
            clients: self.clients.unwrap_or(preset.0),
            channels: self.channels.unwrap_or(preset.1).max(1),
            users: self.users.unwrap_or(self.clients.unwrap_or(preset.0)).max(1),
            messages: self.messages.unwrap_or(preset.2),
            size: self.size.unwrap_or(preset.3),
            rate: self.rate.unwrap_or(preset.4).max(0.0),
            max_inflight: self.max_inflight.unwrap_or(1000).max(1),
            warmup: self.warmup.unwrap_or(0),
        }
    }

    pub fn overall_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
