//! The project's real `Dockerfile` built and run by the suite, and the local
//! cluster (`docker-compose.yml`) brought up from the image it builds.
//!
//! No image can be pulled here, so `.ci/docker-images` makes local stand-ins
//! (a slim Debian base imported from `.ci/rootfs`, a Rust builder with this
//! machine's toolchain, Debian's nats-server and nginx) and the Dockerfile's
//! build arguments substitute them; on a normal machine the same Dockerfile
//! builds with its defaults (`docker build .`). The image is named after a
//! hash of its build context (the `.dockerignore` whitelist), the Dockerfile
//! and the base images, and reused while that hash holds: a cold build
//! compiles every crate in the container (minutes), a warm one reuses
//! BuildKit's cache mounts.
//!
//! Needs a Docker daemon and a docker CLI with BuildKit (`.ci/dockerd`
//! starts one; `bash .ci/run` does that). Without them each test says it was
//! skipped and why, loudly; under CI=true that is a failure.

use natsgate_test_support as common;

use common::{free_port, hs256_token, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::{json, Value};
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const API_KEY: &str = "docker-test-api-key";
/// The uid:gid the Dockerfile runs the gateway as.
const USER: &str = "10001:10001";
/// The stop timeout the README and the Dockerfile tell users to give
/// `docker run`/`docker stop` (longer than NATSGATE_SHUTDOWN_TIMEOUT).
const STOP_TIMEOUT_SECS: u64 = 35;
/// A cold build compiles ~300 crates on a shared 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Says loudly that `test` did not run and why; under CI=true that is a
/// failure, so a CI machine cannot pass without Docker.
fn skip(test: &str, why: &str) {
    let message = format!("SKIPPED docker::{test}: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} (CI=true: the Docker tests must run; bash .ci/run starts a daemon with .ci/dockerd)");
    }
    // Written to the real stderr: libtest's capture (print macros only)
    // would hide a passing test's message.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {message} !!!!!!!!\n");
}

/// A line on the real stderr, shown even when libtest captures output (the
/// build's duration and the image size belong in every CI log).
fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `cmd`, bounded by `timeout`; returns its output (stdout, stderr).
fn run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    // Drain both pipes on threads so a chatty command cannot block.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{shown} did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().expect("stdout reader").unwrap_or_default();
    let stderr = err.join().expect("stderr reader").unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// A docker CLI talking to a daemon, able to build with BuildKit.
#[derive(Clone)]
struct Docker {
    cli: String,
}

impl Docker {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.args(args).env("DOCKER_BUILDKIT", "1");
        cmd
    }

    /// `docker args...`, asserting success; returns trimmed stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = run(self.command(args), Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "docker {args:?} failed: {}", text(&output.stderr));
        text(&output.stdout)
    }

    fn succeeds(&self, args: &[&str]) -> bool {
        run(self.command(args), Duration::from_secs(60)).is_ok_and(|o| o.status.success())
    }

    /// `$DOCKER`, else the first of `docker` and Debian's `/usr/bin/docker`
    /// that reaches a daemon and can build with BuildKit: a CLI from Docker
    /// 23 or later needs the buildx plugin for that, an older one has
    /// BuildKit built in (DOCKER_BUILDKIT=1). Err says why none fits.
    fn find() -> Result<Docker, String> {
        let candidates = match std::env::var("DOCKER") {
            Ok(cli) => vec![cli],
            Err(_) => vec!["docker".to_string(), "/usr/bin/docker".to_string()],
        };
        let mut reasons = Vec::new();
        for cli in candidates {
            let docker = Docker { cli: cli.clone() };
            match run(docker.command(&["info", "--format", "{{.ServerVersion}}"]), Duration::from_secs(20)) {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    reasons.push(format!("{cli}: no daemon answers ({})", text(&o.stderr)));
                    continue;
                }
                Err(e) => {
                    reasons.push(e);
                    continue;
                }
            }
            let client = run(docker.command(&["version", "--format", "{{.Client.Version}}"]), Duration::from_secs(20))
                .map(|o| text(&o.stdout))
                .unwrap_or_default();
            let major: u32 = client.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
            if major < 23 || docker.succeeds(&["buildx", "version"]) {
                return Ok(docker);
            }
            reasons.push(format!("{cli}: client {client} has no buildx plugin, so it cannot build with BuildKit"));
        }
        Err(reasons.join("; "))
    }
}

/// The images a test needs: the gateway's, built from this tree, and the
/// local stand-ins for the images compose would pull.
#[derive(Clone)]
struct Images {
    docker: Docker,
    natsgate: String,
    nats: String,
    nginx: String,
}

/// Builds (or reuses) the image once per test binary. Err("skip:why"): no
/// usable Docker on this machine; any other Err: a failed build.
fn images() -> Result<Images, String> {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    IMAGES.get_or_init(build_images).clone()
}

fn build_images() -> Result<Images, String> {
    let docker = Docker::find().map_err(|why| format!("skip:{why}"))?;
    let mut cmd = Command::new(repo().join(".ci/docker-images"));
    cmd.env("DOCKER", &docker.cli);
    let output = run(cmd, Duration::from_secs(15 * 60))?;
    if !output.status.success() {
        return Err(format!(".ci/docker-images failed:\n{}", text(&output.stderr)));
    }
    let listed = text(&output.stdout);
    let image = |key: &str| {
        listed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .ok_or_else(|| format!(".ci/docker-images printed no {key}=: {listed}"))
    };
    let (base, rust) = (image("BASE")?, image("RUST")?);
    let id = |image: &str| docker.ok(&["image", "inspect", "--format", "{{.Id}}", image]);
    let tag = format!("natsgate-ci/natsgate:src-{:016x}", source_hash(&[id(&base), id(&rust)]));
    if docker.succeeds(&["image", "inspect", &tag]) {
        note(&format!("docker: reusing {tag} (same Dockerfile, build context and base images)"));
    } else {
        let started = Instant::now();
        let mut cmd = docker.command(&["build", "--progress=plain"]);
        cmd.args(["--build-arg", &format!("RUST_IMAGE={rust}"), "--build-arg", &format!("RUNTIME_IMAGE={base}")])
            .args(["-t", &tag, "."])
            .current_dir(repo());
        let output = run(cmd, BUILD_TIMEOUT)?;
        let log = text(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(format!("docker build failed:\n{}", tail.join("\n")));
        }
        note(&format!("docker: built {tag} in {:.0?}", started.elapsed()));
        // Older builds of this tree are no longer needed: keep the disk in check.
        let listed = docker.ok(&["image", "ls", "natsgate-ci/natsgate", "--format", "{{.Repository}}:{{.Tag}}"]);
        for old in listed.lines().filter(|t| *t != tag) {
            let _ = docker.succeeds(&["image", "rm", old]);
        }
    }
    let size: u64 = docker.ok(&["image", "inspect", "--format", "{{.Size}}", &tag]).parse().unwrap_or(0);
    note(&format!("docker: image {tag} is {:.1} MB", size as f64 / 1e6));
    Ok(Images { natsgate: tag, nats: image("NATS")?, nginx: image("NGINX")?, docker })
}

/// A hash of what the image is built from: the Dockerfile, every file the
/// `.dockerignore` whitelist lets into the context, and the base images.
fn source_hash(bases: &[String]) -> u64 {
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect("read .dockerignore");
    let mut files = vec![repo().join("Dockerfile")];
    for entry in ignore.lines().filter_map(|l| l.trim().strip_prefix('!')) {
        collect_files(&repo().join(entry), &mut files);
    }
    files.sort();
    // SipHash with fixed keys: stable between runs of one toolchain, which
    // is all a cache key needs (a new Rust version rebuilds the image anyway).
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    for file in files {
        hasher.write(file.strip_prefix(repo()).unwrap_or(&file).to_string_lossy().as_bytes());
        hasher.write(&std::fs::read(&file).unwrap_or_default());
    }
    for base in bases {
        hasher.write(base.as_bytes());
    }
    hasher.finish()
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            collect_files(&entry.path(), files);
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    }
}

/// The images, or None after saying why the test is skipped.
fn images_or_skip(test: &str) -> Option<Images> {
    match images() {
        Ok(images) => Some(images),
        Err(e) if e.starts_with("skip:") => {
            skip(test, &e["skip:".len()..]);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A container removed on drop, its log printed if the test failed.
struct Container {
    docker: Docker,
    name: String,
}

impl Container {
    fn inspect(&self, format: &str) -> String {
        self.docker.ok(&["inspect", "--format", format, &self.name])
    }

    fn logs(&self) -> String {
        run(self.docker.command(&["logs", &self.name]), Duration::from_secs(20))
            .map(|o| format!("{}\n{}", text(&o.stdout), text(&o.stderr)))
            .unwrap_or_else(|e| e)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- docker logs {} -----\n{}", self.name, self.logs());
        }
        let _ = self.docker.succeeds(&["rm", "-f", &self.name]);
    }
}

/// GET on 127.0.0.1:`port` until it answers `want`, for at most 30 s.
async fn wait_http(port: u16, path: &str, want: u16, container: &Container) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match common::gateway::http_get(port, path) {
            Ok((code, body)) if code == want => return body,
            Ok((code, body)) => format!("HTTP {code}: {body}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            panic!("GET {path} on {port} did not answer {want} within 30 s (last: {last})\n{}", container.logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The image's metadata: a numeric non-root user (so Kubernetes'
/// runAsNonRoot can check it), SIGTERM as the stop signal, the two ports,
/// the healthcheck; and a runtime image without the build toolchain.
#[test]
fn image_runs_as_numeric_user_and_is_slim() {
    // A `# syntax=` line makes BuildKit pull docker/dockerfile from a
    // registry before building (it fails here: no registry); the built-in
    // frontend already supports the cache mounts.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("read Dockerfile");
    assert!(
        !dockerfile.lines().any(|l| l.trim_start().to_lowercase().starts_with("# syntax=")),
        "the Dockerfile must not have a `# syntax=` line"
    );
    let Some(images) = images_or_skip("image_runs_as_numeric_user_and_is_slim") else { return };
    let docker = &images.docker;
    let config: Value =
        serde_json::from_str(&docker.ok(&["image", "inspect", "--format", "{{json .Config}}", &images.natsgate]))
            .expect("image config is JSON");
    assert_eq!(config["User"], json!(USER), "{config}");
    assert_eq!(config["StopSignal"], json!("SIGTERM"), "{config}");
    assert_eq!(config["Entrypoint"], json!(["/usr/local/bin/natsgate"]), "{config}");
    assert_eq!(config["Cmd"], json!(["serve"]), "{config}");
    let ports = config["ExposedPorts"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(ports, ["8000/tcp", "9000/tcp"], "{config}");
    assert!(config["Healthcheck"]["Test"].to_string().contains("/health"), "{config}");
    let size: u64 = docker.ok(&["image", "inspect", "--format", "{{.Size}}", &images.natsgate]).parse().expect("size");
    println!("image size: {:.1} MB", size as f64 / 1e6);
    // The slim base is ~75 MB and the binary ~20 MB; a builder stage leaking
    // into the runtime image (the toolchain is ~800 MB) would blow this.
    assert!(size < 150_000_000, "image is {size} bytes");
    let version = docker.ok(&["run", "--rm", &images.natsgate, "version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "natsgate version in the image: {version}");
}

/// `docker run` as users are told to (plus a read-only root and no
/// capabilities), with NATS on the host: /health and /ready, the image's
/// HEALTHCHECK turns healthy, a client with a token receives an API
/// publication through NATS, the process runs as uid 10001, and
/// `docker stop` drains (the client gets 3001) and the process exits by
/// itself (status 0, not SIGKILL's 137) well within the stop timeout.
#[tokio::test(flavor = "multi_thread")]
async fn container_serves_a_client_through_nats_and_drains_on_docker_stop() {
    let test = "container_serves_a_client_through_nats_and_drains_on_docker_stop";
    let Some(images) = images_or_skip(test) else { return };
    let docker = images.docker.clone();
    let nats = NatsServer::start();
    let (port, internal) = (free_port(), free_port());
    let name = format!("natsgate-test-{}-{port}", std::process::id());
    let env = [
        // Host networking reaches the host's loopback nats-server; listen on
        // loopback only (the image's 0.0.0.0 would expose the test).
        "NATSGATE_ADDRESS=127.0.0.1".to_string(),
        format!("NATSGATE_PORT={port}"),
        format!("NATSGATE_INTERNAL_PORT={internal}"),
        format!("NATSGATE_NATS_URL={}", nats.url()),
        format!("NATSGATE_TOKEN_HMAC_SECRET_KEY={SECRET}"),
        format!("NATSGATE_API_KEY={API_KEY}"),
        "NATSGATE_ALLOW_SUBSCRIBE_FOR_CLIENT=true".to_string(),
    ];
    let stop_timeout = STOP_TIMEOUT_SECS.to_string();
    let mut args = vec!["run", "-d", "--name", &name, "--network", "host", "--stop-timeout", &stop_timeout];
    args.extend(["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]);
    for e in &env {
        args.extend(["-e", e]);
    }
    args.push(&images.natsgate);
    docker.ok(&args);
    let container = Container { docker: docker.clone(), name: name.clone() };

    let health = wait_http(internal, "/health", 200, &container).await;
    wait_http(internal, "/ready", 200, &container).await;
    println!("/health: {health}");

    // The process itself, as the host kernel sees it.
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the container's /proc status");
    let uids = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line").to_string();
    assert!(uids.split_whitespace().skip(1).all(|uid| uid == "10001"), "gateway runs as {uids}");

    let mut client = WsClient::connect(&format!("ws://127.0.0.1:{port}/connection/websocket"), Protocol::Json).await;
    client.connect_token(&hs256_token(SECRET, "docker-user", Some(3600), json!({}))).await;
    client.subscribe("in-docker").await;
    let reply: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/publish"))
        .header("X-API-Key", API_KEY)
        .body(json!({"channel": "in-docker", "data": {"from": "api"}}).to_string())
        .send()
        .await
        .expect("POST /api/publish")
        .json()
        .await
        .expect("API reply is JSON");
    assert!(reply.get("result").is_some(), "publish: {reply}");
    let publication = client.recv_publication("in-docker", TIMEOUT).await;
    assert_eq!(publication["data"], json!({"from": "api"}), "{publication}");

    // The image's HEALTHCHECK (bash /dev/tcp on the internal port): its
    // first probe runs one interval (15 s) after start.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let health = container.inspect("{{.State.Health.Status}}");
        if health == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HEALTHCHECK still {health} after 45 s: {}",
            container.inspect("{{json .State.Health}}")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // `docker stop` with the container's own stop timeout (--stop-timeout).
    let stopping = Instant::now();
    let stop = {
        let docker = docker.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || run(docker.command(&["stop", &name]), Duration::from_secs(60)))
    };
    let (code, reason) = client.expect_close(Duration::from_secs(15)).await;
    assert_eq!((code, reason.as_str()), (3001, "shutdown"), "the client's close on docker stop");
    let stopped = stop.await.expect("docker stop task").unwrap_or_else(|e| panic!("{e}"));
    let took = stopping.elapsed();
    assert!(stopped.status.success(), "docker stop: {}", text(&stopped.stderr));
    let exit = container.inspect("{{.State.ExitCode}}");
    println!("docker stop took {took:.1?}; exit code {exit}");
    assert_eq!(
        exit,
        "0",
        "the gateway exits by itself on SIGTERM (137 would be Docker's SIGKILL)\n{}",
        container.logs()
    );
    // The default drain is 5 s; the stop timeout is 35 s.
    assert!(took < Duration::from_secs(15), "docker stop took {took:?}");
}

/// Runs docker-compose (v1, Debian's) or `docker compose` (v2 plugin).
fn compose_cli(docker: &Docker) -> Option<Vec<String>> {
    let mut v1 = Command::new("docker-compose");
    v1.arg("version");
    if run(v1, Duration::from_secs(30)).is_ok_and(|o| o.status.success()) {
        return Some(vec!["docker-compose".to_string()]);
    }
    docker.succeeds(&["compose", "version"]).then(|| vec![docker.cli.clone(), "compose".to_string()])
}

/// A compose project taken down (with its volumes) on drop.
struct Project {
    cli: Vec<String>,
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli[0]);
        cmd.args(&self.cli[1..])
            .args(["-p", &self.name, "-f"])
            .arg(repo().join("docker-compose.yml"))
            .args(args)
            .current_dir(repo());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], timeout: Duration) -> Output {
        run(self.command(args), timeout).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.run(&["logs", "--no-color"], Duration::from_secs(30));
            eprintln!("----- compose logs -----\n{}", text(&logs.stdout));
        }
        let _ = run(self.command(&["down", "-v", "-t", "40"]), Duration::from_secs(120));
    }
}

/// `docker-compose.yml` as shipped, with this tree's image and the local
/// stand-ins for nats and nginx: two clients through nginx (one per
/// gateway), an API publish through nginx reaching both through NATS, and
/// JetStream history answering through nginx.
#[tokio::test(flavor = "multi_thread")]
async fn compose_cluster_serves_clients_through_nginx() {
    let test = "compose_cluster_serves_clients_through_nginx";
    let Some(images) = images_or_skip(test) else { return };
    let Some(cli) = compose_cli(&images.docker) else {
        return skip(test, "neither docker-compose nor `docker compose` is installed");
    };
    let port = free_port();
    let (secret, key) = ("compose-test-secret", "compose-test-api-key");
    let env = [
        ("NATSGATE_IMAGE", images.natsgate.clone()),
        ("NATS_IMAGE", images.nats.clone()),
        ("NGINX_IMAGE", images.nginx.clone()),
        ("NATSGATE_HTTP_PORT", port.to_string()),
        ("NATSGATE_TOKEN_HMAC_SECRET_KEY", secret.to_string()),
        ("NATSGATE_API_KEY", key.to_string()),
        ("DOCKER_BUILDKIT", "1".to_string()),
    ];
    let project = Project {
        cli,
        name: format!("natsgate-test-{}-{port}", std::process::id()),
        env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    };
    let up = project.run(&["up", "-d", "--no-build"], Duration::from_secs(180));
    assert!(up.status.success(), "compose up: {}", text(&up.stderr));

    // Ready when an API call through nginx is answered by a gateway that is
    // connected to NATS (nginx answers 502 while its upstreams start).
    let http = reqwest::Client::new();
    let api = |method: &str, body: Value| {
        http.post(format!("http://127.0.0.1:{port}/api/{method}"))
            .header("X-API-Key", key)
            .body(body.to_string())
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = match api("info", json!({})).await {
            Ok(r) if r.status().is_success() => {
                let body: Value = r.json().await.unwrap_or_default();
                if body["result"]["nodes"].as_array().is_some_and(|n| n.len() == 2) {
                    break;
                }
                body.to_string()
            }
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "the cluster did not answer `info` with two nodes within 60 s: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let channel = "compose-news";
    let mut clients = Vec::new();
    // Alice's token comes from the README's command (the image's CLI, in a
    // gateway container, with the cluster's secret); Bob's from the test.
    let minted =
        project.run(&["exec", "-T", "natsgate-1", "natsgate", "gentoken", "-u", "alice"], Duration::from_secs(60));
    assert!(minted.status.success(), "gentoken in the container: {}", text(&minted.stderr));
    let alice = text(&minted.stdout).lines().last().unwrap_or_default().to_string();
    for token in [alice, hs256_token(secret, "bob", Some(3600), json!({}))] {
        let mut client = WsClient::connect(&url, Protocol::Json).await;
        client.connect_token(&token).await;
        client.subscribe(channel).await;
        clients.push(client);
    }
    // nginx's least_conn put one client on each gateway (a live survey of
    // both over NATS), so the publication below must cross NATS.
    let info: Value = api("info", json!({})).await.expect("info through nginx").json().await.expect("JSON reply");
    let nodes: Vec<(String, u64)> = info["result"]["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| (n["name"].as_str().unwrap_or("").to_string(), n["num_clients"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(nodes, [("natsgate-1".to_string(), 1), ("natsgate-2".to_string(), 1)], "{info}");
    let reply: Value = api("publish", json!({"channel": channel, "data": {"n": 1}}))
        .await
        .expect("publish through nginx")
        .json()
        .await
        .expect("JSON reply");
    assert!(reply.get("result").is_some(), "{reply}");
    for client in &mut clients {
        let publication = client.recv_publication(channel, TIMEOUT).await;
        assert_eq!(publication["data"], json!({"n": 1}), "{publication}");
    }
    let history: Value = api("history", json!({"channel": channel, "limit": 10}))
        .await
        .expect("history through nginx")
        .json()
        .await
        .expect("JSON reply");
    let publications = history["result"]["publications"].as_array().cloned().unwrap_or_default();
    assert_eq!(publications.len(), 1, "JetStream history through nginx: {history}");
}
