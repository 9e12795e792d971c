//! A real `nats-server` with JetStream, for tests that need an external
//! broker (several gateways sharing one, restarts, persistence).

use super::free_port;
use super::process::LoggedChild;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a (re)started server may take to accept clients.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `nats-server -js` on 127.0.0.1 and a free port; killed on drop.
///
/// The JetStream store lives in a temporary directory that outlives
/// restarts, so `restart()` brings back the same streams.
pub struct NatsServer {
    // Field order is drop order: kill the process (printing its log if the
    // test panicked) before the directory holding that log goes.
    process: LoggedChild,
    dir: TempDir,
    port: u16,
    /// Extra command-line arguments (a config file, cluster routes, ...);
    /// `None`: the default `-js` server.
    extra: Option<Vec<String>>,
}

impl NatsServer {
    /// Starts a server and waits until it greets a client. Panics (with the
    /// server's log) if it does not within 10 s.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Like `start`, on a port chosen beforehand (e.g. one a gateway was
    /// told to connect to before the server existed).
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::Builder::new().prefix("natsgate-nats-").tempdir().expect("tempdir");
        let process = spawn(port, dir.path(), None);
        let server = Self { process, dir, port, extra: None };
        server.wait_ready();
        server
    }

    /// A server on `port` started with `args` instead of `-js` (the store
    /// directory is still `-sd`; `{dir}` in an argument is replaced by it),
    /// e.g. `-c nats.conf` for authentication or TLS, or cluster routes.
    /// Waits until it greets a client (TLS servers greet in plain text).
    pub fn start_with(port: u16, dir: TempDir, args: &[String]) -> Self {
        let extra: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir.path().display().to_string())).collect();
        let process = spawn(port, dir.path(), Some(&extra));
        let server = Self { process, dir, port, extra: Some(extra) };
        server.wait_ready();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Kills the server (SIGKILL) and waits for it to go; clients see the
    /// connection drop. `start_again()` brings it back.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port with the same store, and
    /// waits until it accepts clients.
    pub fn start_again(&mut self) {
        self.process.kill();
        self.process = spawn(self.port, self.dir.path(), self.extra.as_deref());
        self.wait_ready();
    }

    /// `stop()` then `start_again()`.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Waits until a TCP client on the port receives the server's `INFO`.
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if greets(self.port) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "nats-server did not accept clients on {} within {READY_TIMEOUT:?}\n{}",
                    self.url(),
                    self.process.log_report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// True when a client connecting to `port` is sent an `INFO` line.
fn greets(port: u16) -> bool {
    let addr = ("127.0.0.1", port);
    let Ok(stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

fn spawn(port: u16, store: &Path, extra: Option<&[String]>) -> LoggedChild {
    let bin = nats_server_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(["-n", &format!("natsgate-test-{port}")]);
    match extra {
        Some(args) => cmd.args(args),
        None => cmd.arg("-js"),
    };
    LoggedChild::spawn("nats-server", cmd, &store.join("nats-server.log"))
        .unwrap_or_else(|e| panic!("spawn {} failed: {e}", bin.display()))
}

/// `$NATS_SERVER_BIN`, else `nats-server` on PATH, else Debian's
/// `/usr/sbin/nats-server` (not on a normal user's PATH).
fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nats-server")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nats-server"), PathBuf::from("/usr/local/bin/nats-server")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("nats-server not found on PATH nor in /usr/sbin: run `apt-get install -y nats-server` (or `bash .ci/run`)")
        })
}
