//! The `natsgate` binary as a child process, configured by `NATSGATE_*`
//! environment variables, exactly as an operator would run it.

use super::process::LoggedChild;
use super::{free_port, NatsServer, SECRET};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a gateway may take to answer its probe (`GET /ready`) after spawning.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets up a gateway's environment, then `start()`s it.
///
/// Always set: `NATSGATE_ADDRESS=127.0.0.1`, `NATSGATE_PORT` (a free port
/// unless `port()` is given); `NATSGATE_LOG_LEVEL=debug` unless given. Any
/// `NATSGATE_*` variable of the test process itself is removed, and the
/// gateway runs in a temporary directory (no `.env`), so the developer's
/// shell cannot change a test.
#[derive(Clone)]
pub struct GatewayBuilder {
    env: Vec<(String, String)>,
    port: Option<u16>,
    ready_timeout: Duration,
    /// What `start()` waits for: `/ready` (serving clients) or `/health`
    /// (the process is up, e.g. while NATS is still unreachable).
    probe: &'static str,
}

impl GatewayBuilder {
    /// One `NATSGATE_*` variable (a later value for the same name wins).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// The usual test setup: HMAC secret `SECRET`, clients may subscribe
    /// and publish on their own, pings every 25 s (Centrifugo's default).
    pub fn permissive(self) -> Self {
        self.envs(&[
            ("NATSGATE_TOKEN_HMAC_SECRET_KEY", SECRET),
            ("NATSGATE_ALLOW_SUBSCRIBE_FOR_CLIENT", "true"),
            ("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true"),
        ])
    }

    /// Route through this external server instead of the embedded broker.
    pub fn nats(self, server: &NatsServer) -> Self {
        self.env("NATSGATE_NATS_URL", &server.url())
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `start()` returns once `GET /health` answers, without waiting for
    /// `/ready` (for a gateway that cannot reach NATS yet).
    pub fn until_live(mut self) -> Self {
        self.probe = "/health";
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Spawns the gateway and waits until it is ready. Panics with its log
    /// if it exits or is not ready within the timeout.
    pub fn start(self) -> Gateway {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `start`, but returns the failure (with the log) instead.
    pub fn try_start(self) -> Result<Gateway, String> {
        let port = self.port.unwrap_or_else(free_port);
        let dir = tempfile::Builder::new().prefix("natsgate-gw-").tempdir().expect("tempdir");
        let mut gateway = Gateway { process: None, dir, port, builder: self };
        gateway.spawn_and_wait()?;
        Ok(gateway)
    }
}

/// A running `natsgate`; killed (SIGKILL) on drop, its log printed to
/// stderr if the test is panicking.
pub struct Gateway {
    // Dropped first: the process (and its log report) before the log's dir.
    process: Option<LoggedChild>,
    dir: TempDir,
    port: u16,
    builder: GatewayBuilder,
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder { env: Vec::new(), port: None, ready_timeout: READY_TIMEOUT, probe: "/ready" }
    }

    /// `Gateway::builder().envs(env).start()`.
    pub fn start(env: &[(&str, &str)]) -> Gateway {
        Self::builder().envs(env).start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:PORT/connection/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/connection/websocket", self.port)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().map(LoggedChild::pid).unwrap_or(0)
    }

    /// Everything the gateway printed so far (all runs, if restarted).
    pub fn log(&self) -> String {
        self.process.as_ref().map(LoggedChild::log).unwrap_or_default()
    }

    /// Sends SIGTERM (graceful shutdown); see `wait_exit`.
    pub fn sigterm(&self) {
        if let Some(p) = &self.process {
            p.signal("TERM");
        }
    }

    /// Sends any signal by name (`INT`, `HUP`, `STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        if let Some(p) = &self.process {
            p.signal(name);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(p) = &mut self.process {
            p.kill();
        }
    }

    /// Waits at most `timeout` for the process to exit; `None` if it is
    /// still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.as_mut().and_then(|p| p.wait_exit(timeout))
    }

    /// The exit status if the gateway has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.process.as_mut().and_then(LoggedChild::try_exit_status)
    }

    /// Kills the gateway if still running and starts it again with the same
    /// port and environment, waiting until it is ready.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The port serving /health, /ready and /metrics: `NATSGATE_INTERNAL_PORT`
    /// when the test set one, else the main port.
    pub fn internal_port(&self) -> u16 {
        self.builder
            .env
            .iter()
            .find(|(k, _)| k == "NATSGATE_INTERNAL_PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(self.port)
    }

    /// Raw `GET path` on the main port over HTTP/1.0; returns (status, body).
    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, path)
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(crate::natsgate_bin());
        // In its own directory: natsgate reads `.env` from the working
        // directory, and a developer's must not change a test.
        cmd.current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NATSGATE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("NATSGATE_LOG_LEVEL", "debug").env("RUST_BACKTRACE", "1");
        for (k, v) in &self.builder.env {
            cmd.env(k, v);
        }
        cmd.env("NATSGATE_ADDRESS", "127.0.0.1").env("NATSGATE_PORT", self.port.to_string());
        let log = self.dir.path().join("natsgate.log");
        let process = LoggedChild::spawn("natsgate", cmd, &log)
            .map_err(|e| format!("spawn {} failed: {e}", crate::natsgate_bin().display()))?;
        self.process = Some(process);
        self.wait_ready()
    }

    /// Ready when `GET /ready` (or `/health` with `until_live`) answers 2xx:
    /// `/health` answers while NATS is still being reached, `/ready` once
    /// clients are served. If the port answers 4xx or
    /// something that is not HTTP, there is no health route yet: the open
    /// port counts as ready. 5xx and refused connections mean "not yet".
    fn wait_ready(&mut self) -> Result<(), String> {
        let timeout = self.builder.ready_timeout;
        let deadline = Instant::now() + timeout;
        let health_port = self.internal_port();
        let process = self.process.as_mut().expect("spawned");
        loop {
            if let Some(status) = process.try_exit_status() {
                return Err(format!(
                    "natsgate exited before it was ready ({status}); env: {:?}\n{}",
                    self.builder.env,
                    process.log_report()
                ));
            }
            let probe = self.builder.probe;
            let last = match http_get(health_port, probe) {
                Ok((code, _)) if (200..300).contains(&code) || (400..500).contains(&code) => return Ok(()),
                Ok((code, body)) => format!("GET {probe} answered {code}: {body}"),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "natsgate not ready (GET {probe} on port {health_port}) within {timeout:?} (last: {last}); env: {:?}\n{}",
                    self.builder.env,
                    process.log_report()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Minimal HTTP/1.0 GET on 127.0.0.1, so readiness needs no HTTP client.
/// A reply that is not HTTP gives `ErrorKind::InvalidData`.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let response = read_response(&mut stream)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP reply: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Reads until EOF, or until the headers and `Content-Length` bytes of body
/// have arrived (a server may keep the connection open despite HTTP/1.0).
fn read_response(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if !response.is_empty() && e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) if !response.is_empty() && e.kind() == std::io::ErrorKind::TimedOut => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(response);
        }
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|len| body.len() >= len) {
                return Ok(response);
            }
        }
    }
}
