//! Where an SDK test runs its scenario (centrifuge-js under `node --test`,
//! centrifuge-python flows): natsgate on two gateways over one nats-server,
//! natsgate on the embedded broker, or the real Centrifugo v6.9.1 as the
//! judge, each from the same configuration, and what the scenario is
//! handed (URLs, API key, token secret). Shared by the SDK test files
//! (`chanfeat_sdk`, `delta_sdk`, `map_subscriptions`, `map_presence`,
//! `shared_poll`) so each keeps only its configuration and scenario.

use crate::centrifugo::{centrifugo_or_skip, Centrifugo, ServerConfig};
use crate::pair::{Backend, Pair};
use crate::{repo_root, Gateway, GatewayBuilder, SECRET};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which of natsgate's two gateways takes the scenario's HTTP API calls
/// (on the embedded broker both are the one gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiOn {
    First,
    Second,
}

/// The servers a scenario runs against, running while this lives, and
/// their URLs.
pub struct SdkTarget {
    /// Client WebSocket URLs: the first gateway's, then the second's (the
    /// same URL twice for one server: the embedded broker, Centrifugo).
    pub urls: [String; 2],
    /// `http://127.0.0.1:<port>` (without `/api`) of the server taking the
    /// HTTP API calls.
    pub http: String,
    servers: Servers,
}

/// What an [`SdkTarget`] keeps alive.
enum Servers {
    Natsgate(Box<Pair>),
    Centrifugo(Centrifugo),
}

impl SdkTarget {
    /// natsgate configured by `config` on `backend` ([`Pair::start`]:
    /// `gw-a` and `gw-b` on one nats-server, or `gw` alone on the embedded
    /// broker), each gateway named by `NATSGATE_NAME`; the HTTP API on the
    /// gateway `api` says.
    pub fn natsgate(backend: Backend, config: &ServerConfig, api: ApiOn) -> SdkTarget {
        let pair = Pair::start(backend, |name| config.apply_to(Gateway::builder().env("NATSGATE_NAME", name)));
        let http = match api {
            ApiOn::First => pair.a.http_url(),
            ApiOn::Second => pair.b().http_url(),
        };
        SdkTarget { urls: [pair.a.ws_url(), pair.b().ws_url()], http, servers: Servers::Natsgate(Box::new(pair)) }
    }

    /// The real Centrifugo with `config` (its nested v6 JSON, e.g.
    /// [`ServerConfig::centrifugo_json`]), or `None` when the binary is
    /// missing outside CI ([`centrifugo_or_skip`] says why; `test` names the
    /// skipped test).
    pub fn centrifugo_or_skip(test: &str, config: &Value) -> Option<SdkTarget> {
        let bin = centrifugo_or_skip(test)?;
        let centrifugo = Centrifugo::start(&bin, config);
        let urls = [centrifugo.ws_url(), centrifugo.ws_url()];
        Some(SdkTarget { urls, http: centrifugo.http_url(), servers: Servers::Centrifugo(centrifugo) })
    }

    /// natsgate's gateways (and nats-server), for their logs or a kill;
    /// `None` for Centrifugo.
    pub fn pair(&self) -> Option<&Pair> {
        match &self.servers {
            Servers::Natsgate(pair) => Some(pair.as_ref()),
            Servers::Centrifugo(_) => None,
        }
    }

    /// The Centrifugo judge, for its log; `None` for natsgate.
    pub fn centrifugo(&self) -> Option<&Centrifugo> {
        match &self.servers {
            Servers::Natsgate(_) => None,
            Servers::Centrifugo(centrifugo) => Some(centrifugo),
        }
    }

    /// [`scenario_env`] with both URLs and the HTTP base URL as `API_URL`.
    pub fn node_env(&self, api_key: &str) -> Vec<(&'static str, String)> {
        scenario_env(&self.urls, self.http.clone(), api_key)
    }
}

/// The variables every scenario in `tests/js/scenarios` reads:
/// `GATEWAY_URLS` (`ws_urls` joined by commas), `TOKEN_SECRET` ([`SECRET`],
/// which signs the scenario's tokens), `API_URL` and `API_KEY`. A test
/// pushes its scenario's own variables after these.
pub fn scenario_env(ws_urls: &[String], api_url: String, api_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_URLS", ws_urls.join(",")),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("API_URL", api_url),
        ("API_KEY", api_key.to_string()),
    ]
}

/// A gateway for a scenario on namespaced channels: `permissive()` (the
/// HMAC secret [`SECRET`]), named `name`, the HTTP API key `api_key`,
/// `namespaces` in Centrifugo's namespace JSON, and natsgate's debug log.
pub fn scenario_gateway(name: &str, api_key: &str, namespaces: &Value) -> GatewayBuilder {
    Gateway::builder().permissive().envs(&[
        ("NATSGATE_NAME", name),
        ("NATSGATE_API_KEY", api_key),
        ("NATSGATE_NAMESPACES", &namespaces.to_string()),
        ("NATSGATE_LOG_LEVEL", "natsgate=debug,info"),
    ])
}

/// The same server as [`scenario_gateway`] in Centrifugo v6's nested JSON:
/// the HMAC secret [`SECRET`], any origin, the HTTP API key, `namespaces`.
/// A test adds its own options by index (`config["client"]["x"] = ..`).
pub fn scenario_centrifugo_config(api_key: &str, namespaces: &Value) -> Value {
    json!({
        "client": {"token": {"hmac_secret_key": SECRET}, "allowed_origins": ["*"]},
        "http_api": {"key": api_key},
        "channel": {"namespaces": namespaces},
    })
}

/// The Python of `target/grpc-venv` (centrifuge-python; `.ci/run` makes
/// it), or `None` when it is missing outside CI: the test then skips,
/// printing why. Missing under `CI=true` panics.
pub fn flows_python(what: &str) -> Option<PathBuf> {
    let python = repo_root().join("target/grpc-venv/bin/python");
    if !python.is_file() {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{what}: target/grpc-venv is missing");
        println!("SKIPPED {what}: target/grpc-venv with centrifuge-python is missing (bash .ci/run makes it)");
        return None;
    }
    Some(python)
}

/// Runs `script` (a path from the repository root) under `python` with
/// `env`, killing it after `patience`, and asserts it exited 0 having
/// printed `ok`; its output is in the failure message.
pub async fn run_python_flows(python: &Path, script: &str, env: &[(&str, String)], patience: Duration, what: &str) {
    let mut command = Command::new(python);
    command.arg(repo_root().join(script)).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run python");
    let deadline = Instant::now() + patience;
    while child.try_wait().expect("wait python").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().expect("python output");
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && out.contains("ok"), "{what}: centrifuge-python flows failed\n{out}\n{err}");
}
