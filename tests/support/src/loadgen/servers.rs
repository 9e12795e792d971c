//! The system under test: spawned here (nats-server, natsgate, Centrifugo,
//! or the in-process floor), or a running one named on the command line.
//! Spawned processes live in a temporary directory with their config and
//! log, and are killed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::floor::Floor;
use super::options::{Options, PublishVia, System};
use super::sys;
use super::Error;

/// How long a spawned server may take to accept clients.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the generator's clients and publisher go.
pub struct Endpoints {
    /// WebSocket URL the clients connect to.
    pub ws_url: String,
    /// NATS URL the publisher uses (empty without NATS: Centrifugo's
    /// memory engine, the floor).
    pub nats_url: String,
    /// HTTP API publish URL (natsgate, Centrifugo).
    pub api_url: Option<String>,
    /// The floor's trigger address (`host:port`).
    pub trigger_addr: Option<String>,
    /// PID of the WebSocket server (natsgate, or nats-server for nats-ws).
    pub server_pid: Option<u32>,
    /// PID of the nats-server behind natsgate or Centrifugo (None for
    /// nats-ws and Centrifugo's memory engine).
    pub nats_pid: Option<u32>,
}

/// A system under test; spawned processes are killed when it drops.
pub struct Servers {
    pub endpoints: Endpoints,
    // Dropped in field order: processes first, then their directory.
    processes: Vec<Spawned>,
    floor: Option<Floor>,
    dir: Option<tempfile::TempDir>,
}

impl Servers {
    /// Spawns `system` as the options say, or wraps `--ws-url`.
    pub fn start(system: System, opts: &Options) -> Result<Servers, Error> {
        if let (Some(ws_url), Some(nats_url)) = (&opts.ws_url, &opts.nats_url) {
            let api_url = opts.api_url.clone().or_else(|| api_url_from_ws(ws_url));
            return Ok(Servers {
                endpoints: Endpoints {
                    ws_url: ws_url.clone(),
                    nats_url: nats_url.clone(),
                    api_url,
                    trigger_addr: None,
                    server_pid: opts.server_pid,
                    nats_pid: opts.nats_pid,
                },
                processes: Vec::new(),
                floor: None,
                dir: None,
            });
        }
        let dir = tempfile::Builder::new().prefix(&format!("loadgen-{}-", system.name())).tempdir()?;
        let mut servers = Servers {
            endpoints: Endpoints {
                ws_url: String::new(),
                nats_url: String::new(),
                api_url: None,
                trigger_addr: None,
                server_pid: None,
                nats_pid: None,
            },
            processes: Vec::new(),
            floor: None,
            dir: None,
        };
        let result = servers.spawn_all(system, opts, dir.path());
        if opts.keep_logs {
            let kept = dir.keep();
            eprintln!("loadgen: {} configs and logs kept in {}", system.name(), kept.display());
        } else {
            servers.dir = Some(dir);
        }
        result.map(|()| servers)
    }

    /// CPU seconds used so far by the WebSocket server (the floor's threads
    /// for the floor).
    pub fn server_cpu_secs(&self) -> Option<f64> {
        match &self.floor {
            Some(floor) => floor.cpu_secs(),
            None => self.endpoints.server_pid.and_then(|pid| sys::cpu_secs(Some(pid))),
        }
    }

    /// CPU seconds used so far by the floor's threads (None for other targets).
    pub fn floor_cpu_secs(&self) -> Option<f64> {
        self.floor.as_ref().and_then(Floor::cpu_secs)
    }

    fn spawn_all(&mut self, system: System, opts: &Options, dir: &Path) -> Result<(), Error> {
        match system {
            System::Floor => return self.start_floor(opts),
            System::Centrifugo => return self.spawn_centrifugo(opts, dir, None),
            _ => {}
        }
        let nats_port = sys::free_port()?;
        let ws_port = match system {
            System::NatsWs => Some(sys::free_port()?),
            _ => None,
        };
        let conf = dir.join("nats-server.conf");
        std::fs::write(&conf, nats_config(nats_port, ws_port))?;
        let mut cmd = Command::new(nats_server_bin(&opts.nats_server_bin));
        cmd.arg("-c").arg(&conf);
        let nats = Spawned::spawn("nats-server", cmd, opts, &dir.join("nats-server.log"))?;
        let nats_pid = nats.pid();
        self.processes.push(nats);
        self.wait_ready("nats-server", || greets_nats(nats_port))?;
        self.endpoints.nats_url = format!("nats://127.0.0.1:{nats_port}");

        match (system, ws_port) {
            (System::CentrifugoNats, _) => {
                self.endpoints.nats_pid = Some(nats_pid);
                let url = self.endpoints.nats_url.clone();
                self.spawn_centrifugo(opts, dir, Some(&url))?;
            }
            (System::NatsWs, Some(ws_port)) => {
                self.endpoints.ws_url = format!("ws://127.0.0.1:{ws_port}");
                self.endpoints.server_pid = Some(nats_pid);
                self.wait_ready("nats-server websocket", || TcpStream::connect(("127.0.0.1", ws_port)).is_ok())?;
            }
            _ => {
                let port = sys::free_port()?;
                let mut cmd = Command::new(&opts.natsgate_bin);
                for (key, _) in std::env::vars_os() {
                    if key.to_string_lossy().starts_with("NATSGATE_") {
                        cmd.env_remove(key);
                    }
                }
                cmd.env("NATSGATE_ADDRESS", "127.0.0.1")
                    .env("NATSGATE_PORT", port.to_string())
                    .env("NATSGATE_NATS_URL", &self.endpoints.nats_url)
                    .env("NATSGATE_NATS_PREFIX", &opts.nats_prefix)
                    .env("NATSGATE_TOKEN_HMAC_SECRET_KEY", &opts.secret)
                    .env("NATSGATE_ALLOW_SUBSCRIBE_FOR_CLIENT", "true")
                    .env("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true")
                    .env("NATSGATE_LOG_LEVEL", "warn");
                if opts.publish_via == PublishVia::Http {
                    cmd.env("NATSGATE_API_KEY", &opts.api_key);
                }
                for (k, v) in &opts.gateway_env {
                    cmd.env(k, v);
                }
                let gateway = Spawned::spawn("natsgate", cmd, opts, &dir.join("natsgate.log"))?;
                self.endpoints.server_pid = Some(gateway.pid());
                self.endpoints.nats_pid = Some(nats_pid);
                self.processes.push(gateway);
                self.wait_ready("natsgate", || health_ok(port))?;
                self.endpoints.ws_url = format!("ws://127.0.0.1:{port}/connection/websocket");
                self.endpoints.api_url = Some(format!("http://127.0.0.1:{port}/api/publish"));
            }
        }
        Ok(())
    }

    /// The floor's threads, in this process (see `floor`).
    fn start_floor(&mut self, opts: &Options) -> Result<(), Error> {
        let floor = Floor::start(opts.protocol, opts.pin_server, opts.nice)?;
        self.endpoints.ws_url = format!("ws://127.0.0.1:{}/connection/websocket", floor.ws_port);
        self.endpoints.trigger_addr = Some(format!("127.0.0.1:{}", floor.trigger_port));
        self.floor = Some(floor);
        Ok(())
    }

    /// Centrifugo v6 with its memory engine, or with its NATS broker at
    /// `nats_url`: the same token secret, API key and channel permissions
    /// as natsgate gets, logging at warn.
    fn spawn_centrifugo(&mut self, opts: &Options, dir: &Path, nats_url: Option<&str>) -> Result<(), Error> {
        let port = sys::free_port()?;
        let mut config = serde_json::json!({
            "http_server": { "address": "127.0.0.1", "port": port },
            "client": { "token": { "hmac_secret_key": opts.secret } },
            "channel": { "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_publish_for_client": true,
            } },
            "http_api": { "key": opts.api_key },
            "health": { "enabled": true },
            "log": { "level": "warn" },
            "usage_stats": { "disabled": true },
            "engine": { "type": "memory" },
        });
        if let Some(url) = nats_url {
            config["broker"] = serde_json::json!({ "enabled": true, "type": "nats", "nats": { "url": url } });
        }
        let path = dir.join("centrifugo.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        let bin = opts.centrifugo_bin.clone().unwrap_or_else(crate::centrifugo::centrifugo_bin);
        let mut cmd = Command::new(&bin);
        cmd.arg("--config").arg(&path);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CENTRIFUGO_") {
                cmd.env_remove(key);
            }
        }
        let centrifugo = Spawned::spawn("centrifugo", cmd, opts, &dir.join("centrifugo.log"))?;
        self.endpoints.server_pid = Some(centrifugo.pid());
        self.processes.push(centrifugo);
        self.wait_ready("centrifugo", || health_ok(port))?;
        self.endpoints.ws_url = format!("ws://127.0.0.1:{port}/connection/websocket");
        self.endpoints.api_url = Some(format!("http://127.0.0.1:{port}/api/publish"));
        Ok(())
    }

    /// Polls `ready` until it holds; fails early (with the log) if a
    /// spawned process exits.
    fn wait_ready(&mut self, what: &str, ready: impl Fn() -> bool) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for p in &mut self.processes {
                if let Some(status) = p.child.try_wait()? {
                    return Err(
                        format!("{} exited ({status}) before {what} was ready\n{}", p.name, p.log_tail()).into()
                    );
                }
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self.processes.iter().map(Spawned::log_tail).collect();
                return Err(format!("{what} not ready within {READY_TIMEOUT:?}\n{}", logs.join("\n")).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether every spawned process is still running (and which is not).
    pub fn check_alive(&mut self) -> Result<(), String> {
        for p in &mut self.processes {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("{} exited during the run ({status})\n{}", p.name, p.log_tail()));
            }
        }
        Ok(())
    }
}

/// A nats-server config: client port on loopback and, for nats-ws, a
/// plain-text WebSocket listener.
fn nats_config(port: u16, ws_port: Option<u16>) -> String {
    let mut conf = format!("host: 127.0.0.1\nport: {port}\n");
    if let Some(ws) = ws_port {
        conf.push_str(&format!(
            "websocket {{\n  host: 127.0.0.1\n  port: {ws}\n  no_tls: true\n  compression: false\n}}\n"
        ));
    }
    conf
}

/// `http://HOST:PORT/api/publish` for `ws://HOST:PORT/...`.
fn api_url_from_ws(ws_url: &str) -> Option<String> {
    let rest = ws_url.strip_prefix("ws://")?;
    let host = rest.split('/').next()?;
    Some(format!("http://{host}/api/publish"))
}

/// The configured binary if it exists as given or on PATH, else Debian's
/// `/usr/sbin/nats-server` (not on every user's PATH); `$NATS_SERVER_BIN` wins.
fn nats_server_bin(configured: &Path) -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    if configured.components().count() > 1 {
        return configured.to_path_buf();
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(configured)).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([Path::new("/usr/sbin").join(configured), Path::new("/usr/local/bin").join(configured)])
        .find(|p| p.is_file())
        .unwrap_or_else(|| configured.to_path_buf())
}

/// True when a client connecting to `port` is sent an `INFO` line.
fn greets_nats(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

/// True when `GET /health` answers 200.
fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// A child process logging to a file; SIGKILLed and reaped on drop.
struct Spawned {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Spawns with the open-files soft limit at the hard limit and,
    /// optionally, pinned to one CPU (what `taskset -c N` does).
    fn spawn(name: &'static str, cmd: Command, opts: &Options, log: &Path) -> Result<Spawned, Error> {
        Spawned::spawn_with(name, cmd, opts.pin_server, opts.nice, log)
    }

    fn spawn_with(
        name: &'static str,
        mut cmd: Command,
        cpu: Option<usize>,
        nice: Option<i32>,
        log: &Path,
    ) -> Result<Spawned, Error> {
        let out = File::create(log)?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        // SAFETY: only async-signal-safe calls (setrlimit, sched_setaffinity)
        // run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                sys::raise_nofile_limit()?;
                if let Some(cpu) = cpu {
                    sys::pin_to_cpu(cpu)?;
                }
                if let Some(nice) = nice {
                    sys::set_nice(nice)?;
                }
                Ok(())
            });
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd.spawn().map_err(|e| format!("cannot spawn {name} ({program}): {e}"))?;
        Ok(Spawned { name, child, log: log.to_path_buf() })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last few KiB of the log.
    fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        format!("--- {} log ({}) ---\n{}", self.name, self.log.display(), String::from_utf8_lossy(&text[start..]))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
