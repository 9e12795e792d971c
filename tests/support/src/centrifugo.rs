//! The real Centrifugo (v6, memory engine) as a child process, for the
//! differential tests, and the rendering of one natsgate configuration
//! (flat `NATSGATE_*` option names) into both servers' forms.
//!
//! The binary comes from `CENTRIFUGO_BIN`, else `$(go env GOPATH)/bin/centrifugo`
//! (`go install github.com/centrifugal/centrifugo/v6@v6.9.1`, which `.ci/run`
//! does). Without it the differential tests fail under `CI=true` and are
//! skipped, with the reason printed, elsewhere.

use super::process::LoggedChild;
use super::{free_port, GatewayBuilder};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long Centrifugo may take to answer `GET /health` after spawning.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Options of natsgate that are channel options in Centrifugo
/// (`channel.without_namespace.<name>` there, same name).
const CHANNEL_OPTIONS: &[&str] = &[
    "allow_subscribe_for_client",
    "allow_subscribe_for_anonymous",
    "allow_publish_for_client",
    "allow_publish_for_anonymous",
    "allow_publish_for_subscriber",
    "allow_presence_for_client",
    "allow_presence_for_subscriber",
    "allow_presence_for_anonymous",
    "allow_history_for_client",
    "allow_history_for_subscriber",
    "allow_history_for_anonymous",
    "allow_user_limited_channels",
    "channel_regex",
    "presence",
    "join_leave",
    "force_push_join_leave",
    "history_size",
    "history_ttl",
    "force_recovery",
    "allow_recovery",
    "force_positioning",
    "allow_positioning",
    // Cache recovery (issue #20).
    "force_recovery_mode",
    "auto_cache_recover",
];

/// natsgate's other options and where Centrifugo v6 keeps each (checked
/// against `centrifugo defaultconfig` of v6.9.1).
const PATHS: &[(&str, &[&str])] = &[
    ("token_hmac_secret_key", &["client", "token", "hmac_secret_key"]),
    ("token_rsa_public_key", &["client", "token", "rsa_public_key"]),
    ("token_ecdsa_public_key", &["client", "token", "ecdsa_public_key"]),
    ("token_audience", &["client", "token", "audience"]),
    ("token_issuer", &["client", "token", "issuer"]),
    ("allow_anonymous_connect_without_token", &["client", "allow_anonymous_connect_without_token"]),
    ("subscription_token_hmac_secret_key", &["client", "subscription_token", "hmac_secret_key"]),
    ("history_max_publication_limit", &["client", "history_max_publication_limit"]),
    ("client_user_connection_limit", &["client", "user_connection_limit"]),
    ("client_connection_limit", &["client", "connection_limit"]),
    ("ping_interval", &["client", "ping_interval"]),
    ("pong_timeout", &["client", "pong_timeout"]),
    ("client_stale_close_delay", &["client", "stale_close_delay"]),
    ("client_expired_close_delay", &["client", "expired_close_delay"]),
    ("client_expired_sub_close_delay", &["client", "expired_sub_close_delay"]),
    ("client_queue_max_size", &["client", "queue_max_size"]),
    ("client_channel_limit", &["client", "channel_limit"]),
    ("channel_max_length", &["channel", "max_length"]),
    ("history_meta_ttl", &["channel", "history_meta_ttl"]),
    ("namespaces", &["channel", "namespaces"]),
    ("websocket_message_size_limit", &["websocket", "message_size_limit"]),
    ("allowed_origins", &["client", "allowed_origins"]),
    ("api_key", &["http_api", "key"]),
    ("api_insecure", &["http_api", "insecure"]),
    ("api_error_mode", &["http_api", "error_mode"]),
    // Personal channel (issue #20): v5's flat names, v6's nested ones.
    ("user_subscribe_to_personal", &["client", "subscribe_to_user_personal_channel", "enabled"]),
    (
        "user_personal_channel_namespace",
        &["client", "subscribe_to_user_personal_channel", "personal_channel_namespace"],
    ),
    ("user_personal_single_connection", &["client", "subscribe_to_user_personal_channel", "single_connection"]),
    // Shared poll (issue #20): the track signature secret and the refresh proxy.
    ("shared_poll_hmac_secret_key", &["shared_poll", "hmac_secret_key"]),
    ("shared_poll_hmac_previous_secret_key", &["shared_poll", "hmac_previous_secret_key"]),
    ("shared_poll_hmac_previous_secret_key_valid_until", &["shared_poll", "hmac_previous_secret_key_valid_until"]),
    ("proxy_shared_poll_refresh_endpoint", &["channel", "proxy", "shared_poll_refresh", "endpoint"]),
    ("proxy_shared_poll_refresh_timeout", &["channel", "proxy", "shared_poll_refresh", "timeout"]),
];

/// One server configuration, written once with natsgate's flat option
/// names in lower case (`{"token_hmac_secret_key": "..", "namespaces": [..]}`),
/// rendered for either server.
#[derive(Clone, Debug)]
pub struct ServerConfig(pub Value);

impl ServerConfig {
    /// The same options as `NATSGATE_<NAME>` variables on a gateway builder:
    /// strings as they are, arrays and objects as JSON, `allowed_origins`
    /// space-separated.
    pub fn apply_to(&self, mut builder: GatewayBuilder) -> GatewayBuilder {
        for (name, value) in self.options() {
            let text = match (name.as_str(), value) {
                ("allowed_origins", Value::Array(items)) => {
                    items.iter().map(|v| v.as_str().expect("origin string")).collect::<Vec<_>>().join(" ")
                }
                (_, Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            builder = builder.env(&format!("NATSGATE_{}", name.to_uppercase()), &text);
        }
        builder
    }

    /// Centrifugo v6's nested JSON configuration for the same options.
    /// Panics on an option this table does not know, so nothing is lost
    /// silently.
    pub fn centrifugo_json(&self) -> Value {
        let mut root = json!({});
        for (name, value) in self.options() {
            let path: Vec<&str> = if CHANNEL_OPTIONS.contains(&name.as_str()) {
                vec!["channel", "without_namespace", name.as_str()]
            } else if let Some((_, path)) = PATHS.iter().find(|(n, _)| *n == name) {
                path.to_vec()
            } else {
                panic!("ServerConfig: no Centrifugo equivalent known for `{name}`")
            };
            let value = match (name.as_str(), value) {
                ("allowed_origins", Value::String(s)) => json!(s.split_whitespace().collect::<Vec<_>>()),
                (_, v) => v.clone(),
            };
            set_path(&mut root, &path, value);
            if name == "subscription_token_hmac_secret_key" {
                set_path(&mut root, &["client", "subscription_token", "enabled"], json!(true));
            }
            if name == "history_max_publication_limit" {
                set_path(&mut root, &["client", "recovery_max_publication_limit"], self.0[name].clone());
            }
        }
        root
    }

    fn options(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.as_object().expect("ServerConfig is a JSON object").iter()
    }
}

fn set_path(root: &mut Value, path: &[&str], value: Value) {
    let mut node = root;
    for key in &path[..path.len() - 1] {
        node = node
            .as_object_mut()
            .expect("object on the way")
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    node.as_object_mut().expect("object at the end").insert(path[path.len() - 1].to_string(), value);
}

/// Where the Centrifugo binary is expected: `CENTRIFUGO_BIN`, else
/// `$(go env GOPATH)/bin/centrifugo`.
pub fn centrifugo_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CENTRIFUGO_BIN") {
        return PathBuf::from(bin);
    }
    let gopath = Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/go")))
        .unwrap_or_else(|| "/root/go".to_string());
    PathBuf::from(gopath).join("bin").join("centrifugo")
}

/// The binary if present. Without it: panics when `CI=true` (CI must run
/// the differential tests), else prints why the test is skipped and
/// returns `None`.
pub fn centrifugo_or_skip(test: &str) -> Option<PathBuf> {
    let bin = centrifugo_bin();
    if bin.is_file() {
        return Some(bin);
    }
    let why = format!(
        "Centrifugo not found at {} (set CENTRIFUGO_BIN, or run \
         `go install github.com/centrifugal/centrifugo/v6@v6.9.1`, as `bash .ci/run` does)",
        bin.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    println!("SKIPPED {test}: {why}");
    None
}

/// A running Centrifugo on 127.0.0.1 and a free port; killed on drop, its
/// log printed if the test panics.
pub struct Centrifugo {
    process: LoggedChild,
    _dir: TempDir,
    port: u16,
}

impl Centrifugo {
    /// Writes `config` (Centrifugo's nested JSON) with the listening
    /// address, health, memory engine and logging added, starts the binary
    /// and waits for `GET /health`.
    pub fn start(bin: &PathBuf, config: &Value) -> Centrifugo {
        let dir = tempfile::Builder::new().prefix("natsgate-centrifugo-").tempdir().expect("tempdir");
        let port = free_port();
        let mut config = config.clone();
        set_path(&mut config, &["http_server", "address"], json!("127.0.0.1"));
        set_path(&mut config, &["http_server", "port"], json!(port));
        set_path(&mut config, &["health", "enabled"], json!(true));
        set_path(&mut config, &["engine", "type"], json!("memory"));
        set_path(&mut config, &["log", "level"], json!("debug"));
        set_path(&mut config, &["usage_stats", "disabled"], json!(true));
        set_path(&mut config, &["admin", "enabled"], json!(false));
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("config JSON")).expect("write config");
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&path);
        let process = LoggedChild::spawn("centrifugo", cmd, &dir.path().join("centrifugo.log"))
            .unwrap_or_else(|e| panic!("spawn {} failed: {e}", bin.display()));
        let mut server = Centrifugo { process, _dir: dir, port };
        server.wait_ready(&config);
        server
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/connection/websocket", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    fn wait_ready(&mut self, config: &Value) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit_status() {
                panic!("centrifugo exited ({status}) with config {config}\n{}", self.process.log_report());
            }
            if matches!(super::gateway::http_get(self.port, "/health"), Ok((200, _))) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("centrifugo not ready within {READY_TIMEOUT:?}\n{}", self.process.log_report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
