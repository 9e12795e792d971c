//! The example reverse proxy (`deploy/nginx/natsgate.conf`) run by Debian's
//! nginx in front of two gateways on one nats-server: centrifuge-js connects
//! through it, one client lands on each gateway, and cent.js publishes
//! through it (tests/js/scenarios/nginx.mjs).
//!
//! The file is used as shipped; only its upstream addresses and listen port
//! are rewritten to the test's. Needs nginx (`.ci/run` installs Debian's);
//! without it the test says it was skipped, or fails under CI=true.

use natsgate_test_support as common;

use common::node::run_node_tests;
use common::{free_port, Gateway, NatsServer, SECRET};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "nginx-test-api-key";

/// `$NGINX_BIN`, else nginx on PATH or in /usr/sbin (Debian's).
fn nginx_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NGINX_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
}

/// Says loudly that `test` did not run and why; under CI=true that is a
/// failure, so a CI machine cannot pass without running it.
fn skip(test: &str, why: &str) {
    let message = format!("SKIPPED {test}: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} (CI=true: this test must run; bash .ci/run installs nginx)");
    }
    // Written to the real stderr: libtest's capture (print macros only)
    // would hide a passing test's message.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {message} !!!!!!!!\n");
}

/// The shipped config with the two upstream servers pointed at `upstreams`
/// and nginx listening on 127.0.0.1:`port`. Panics if the file no longer has
/// the shape this rewrite expects (one `listen 80;`, two upstream servers).
fn rewritten_config(upstreams: [u16; 2], port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/natsgate.conf");
    let shipped = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut servers = upstreams.iter();
    let mut listens = 0;
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(rest) = trimmed.strip_prefix("server natsgate-") {
            let port_of = servers.next().expect("more than two upstream servers in natsgate.conf");
            let options = rest.split_once(' ').map_or(";", |(_, o)| o);
            out.push_str(&format!("{indent}server 127.0.0.1:{port_of} {options}\n"));
        } else if trimmed == "listen 80;" {
            listens += 1;
            out.push_str(&format!("{indent}listen 127.0.0.1:{port};\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(servers.next().is_none(), "natsgate.conf should name two upstream servers natsgate-1/2:\n{shipped}");
    assert_eq!(listens, 1, "natsgate.conf should have one `listen 80;`:\n{shipped}");
    out
}

/// nginx in the foreground with everything (pid, logs, temp files) in
/// `dir`; SIGKILLed on drop, its error log printed if the test failed.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path, site: &str, port: u16) -> Nginx {
        let dir = tempfile::Builder::new().prefix("natsgate-nginx-").tempdir().expect("tempdir");
        let d = dir.path().display();
        std::fs::write(dir.path().join("natsgate.conf"), site).expect("write site config");
        let main = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\ndaemon off;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/natsgate.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
        let args = |test: bool| {
            let mut cmd = Command::new(bin);
            cmd.arg("-p").arg(dir.path()).arg("-c").arg(dir.path().join("nginx.conf"));
            // -e: the error log before the config is read (not /var/log/nginx).
            cmd.arg("-e").arg(dir.path().join("error.log"));
            if test {
                cmd.arg("-t");
            }
            cmd
        };
        let check = args(true).output().expect("run nginx -t");
        assert!(
            check.status.success(),
            "nginx -t rejects deploy/nginx/natsgate.conf:\n{}\n--- config ---\n{site}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child =
            args(false).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start nginx");
        let mut nginx = Nginx { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", nginx.error_log());
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {port} within 10 s:\n{}", nginx.error_log());
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- nginx error log -----\n{}", self.error_log());
        }
    }
}

#[test]
fn centrifuge_js_and_cent_js_through_nginx_to_two_gateways() {
    let Some(bin) = nginx_bin() else {
        return skip("nginx::centrifuge_js_and_cent_js_through_nginx_to_two_gateways", "nginx is not installed");
    };
    let nats = NatsServer::start();
    let gateway = |name: &str| {
        Gateway::builder()
            .permissive()
            .nats(&nats)
            .env("NATSGATE_NAME", name)
            .env("NATSGATE_API_KEY", API_KEY)
            .env("NATSGATE_INTERNAL_PORT", &free_port().to_string())
            .start()
    };
    let (first, second) = (gateway("gw-1"), gateway("gw-2"));
    let port = free_port();
    let _nginx = Nginx::start(&bin, &rewritten_config([first.port(), second.port()], port), port);
    let metrics: Vec<String> =
        [&first, &second].iter().map(|g| format!("http://127.0.0.1:{}/metrics", g.internal_port())).collect();
    let env = [
        ("GATEWAY_URLS", format!("ws://127.0.0.1:{port}/connection/websocket")),
        ("API_URL", format!("http://127.0.0.1:{port}/api")),
        ("API_KEY", API_KEY.to_string()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("METRICS_URLS", metrics.join(",")),
    ];
    run_node_tests(&["scenarios/nginx.mjs"], &env, "centrifuge-js through nginx");
}
