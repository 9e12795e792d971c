//! Gateway configuration: read once from `NATSGATE_*` environment variables,
//! validated, and handed around as typed structs.
//!
//! Option names follow Centrifugo's where the meaning is the same, so a
//! Centrifugo user finds `NATSGATE_TOKEN_HMAC_SECRET_KEY` where they expect it.
//! Durations take humantime strings (`25s`, `500ms`, `1m`).
//!
//! A JSON config file (`--config`, `NATSGATE_CONFIG`) may set the same
//! options under their lower-case names without the prefix; its entries
//! become `NATSGATE_*` values and the environment overrides them. Unknown
//! file keys and unknown `NATSGATE_*` variables are collected in
//! [`Config::unknown`]: the gateway warns about them, as Centrifugo does
//! (Kubernetes injects `NATSGATE_SERVICE_HOST`, `NATSGATE_PORT_8000_TCP`, ...
//! into every pod of a namespace with a Service named `natsgate`), and
//! `natsgate checkconfig` refuses them, so a typo is caught before deploy.

use serde::Deserialize;

use crate::channels::{parse_namespaces, ChannelOptions, ChannelRules};
use crate::transport::origin::OriginCheck;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const ENV_PREFIX: &str = "NATSGATE_";

/// Names the config file; read by the CLI, not an option of `Config`.
pub const CONFIG_ENV: &str = "NATSGATE_CONFIG";

/// Everything a gateway needs to know, validated.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Interface to listen on.
    pub address: String,
    /// Port for client connections (and the HTTP API).
    pub port: u16,
    /// Optional separate port for /metrics, /health and /ready.
    pub internal_port: Option<u16>,
    /// Name of this gateway in `info` and logs; defaults to the host name.
    pub name: String,

    /// NATS server URL(s), comma-separated. Unset: embedded in-process broker.
    pub nats_url: Option<String>,
    /// First token of every NATS subject natsgate uses.
    pub nats_prefix: String,
    // Secured NATS and client TLS (issue 13): read into
    // `crate::broker::nats_connect::NatsConnect` and `crate::transport::tls`.
    // Names: Centrifugo's NATS broker (`nats.tls.*`, flattened), its NATS
    // consumer (`credentials_file`, `username`, `password`, `token`), the NATS
    // clients (`nkey`, `name`), Centrifugo v5 (`tls`, `tls_cert`, `tls_key`,
    // `tls_external`).
    /// Path of a NATS `.creds` file (user JWT and NKey seed).
    pub nats_credentials_file: Option<String>,
    /// NKey seed (`SU...`), or the path of a file holding it.
    pub nats_nkey: Option<String>,
    /// NATS authentication token.
    pub nats_token: Option<String>,
    /// NATS user name (with `nats_password`).
    pub nats_username: Option<String>,
    /// NATS password.
    pub nats_password: Option<String>,
    /// Require TLS to NATS (also on with a `tls://` URL or a server that asks).
    pub nats_tls: bool,
    /// CA certificate(s) to verify NATS servers with: a PEM file path or PEM text.
    pub nats_tls_server_ca_pem: Option<String>,
    /// Client certificate for NATS (mutual TLS): a PEM file path or PEM text.
    pub nats_tls_cert_pem: Option<String>,
    /// Private key of `nats_tls_cert_pem`: a PEM file path or PEM text.
    pub nats_tls_key_pem: Option<String>,
    /// Connection name shown by the NATS server (`/connz`); empty: `natsgate <name>`.
    pub nats_name: String,
    /// Replicas of the JetStream history streams (1 to 5; at most the cluster size).
    pub nats_history_replicas: usize,
    /// Serve the client port (WebSocket, HTTP API) over TLS.
    pub tls: bool,
    /// PEM certificate chain file for `tls`.
    pub tls_cert: Option<String>,
    /// PEM private key file for `tls`.
    pub tls_key: Option<String>,
    /// With `tls`: leave the internal port (`internal_port`) plain.
    pub tls_external: bool,

    /// HMAC secret for HS256/384/512 connection tokens.
    pub token_hmac_secret_key: Option<String>,
    /// PEM RSA public key for RS256/384/512 connection tokens.
    pub token_rsa_public_key: Option<String>,
    /// PEM ECDSA public key for ES256/384 connection tokens.
    pub token_ecdsa_public_key: Option<String>,
    /// Required `aud` claim, checked only when set.
    pub token_audience: Option<String>,
    /// Required `iss` claim, checked only when set.
    pub token_issuer: Option<String>,

    /// Let clients connect without a token as anonymous users.
    pub allow_anonymous_connect_without_token: bool,
    /// Let authenticated clients subscribe to channels on their own.
    pub allow_subscribe_for_client: bool,
    /// Let authenticated clients publish to channels on their own.
    pub allow_publish_for_client: bool,
    /// Also let anonymous clients subscribe (with allow_subscribe_for_client).
    pub allow_subscribe_for_anonymous: bool,
    /// Also let anonymous clients publish (with allow_publish_for_client).
    pub allow_publish_for_anonymous: bool,
    /// Subscribers of a channel may publish to it.
    pub allow_publish_for_subscriber: bool,
    /// Authenticated clients may ask for presence.
    pub allow_presence_for_client: bool,
    /// Subscribers may ask for presence.
    pub allow_presence_for_subscriber: bool,
    /// Anonymous clients may ask for presence (with one of the two above).
    pub allow_presence_for_anonymous: bool,
    /// Authenticated clients may ask for history.
    pub allow_history_for_client: bool,
    /// Subscribers may ask for history.
    pub allow_history_for_subscriber: bool,
    /// Anonymous clients may ask for history (with one of the two above).
    pub allow_history_for_anonymous: bool,
    /// Channels like `dialog#42,43` may be subscribed by the listed users only.
    pub allow_user_limited_channels: bool,
    /// Regular expression channel names without a namespace must match.
    pub channel_regex: String,
    /// Keep presence for channels without a namespace.
    pub presence: bool,
    /// Send join/leave pushes for channels without a namespace.
    pub join_leave: bool,
    /// Send join/leave pushes to every subscriber without asking.
    pub force_push_join_leave: bool,
    /// Publications kept per channel (with history_ttl).
    pub history_size: u32,
    /// How long publications are kept.
    #[serde(with = "humantime_serde")]
    pub history_ttl: Option<Duration>,
    /// How long a channel's position (top offset, epoch) outlives its last
    /// publication; at least every namespace's history_ttl.
    #[serde(with = "humantime_serde")]
    pub history_meta_ttl: Duration,
    /// Recover every subscription on reconnect.
    pub force_recovery: bool,
    /// Let clients ask for recovery.
    pub allow_recovery: bool,
    /// Detect publication gaps on every subscription.
    pub force_positioning: bool,
    /// Let clients ask for positioning.
    pub allow_positioning: bool,
    /// Channel namespaces as a JSON array: `[{"name":"chat","allow_subscribe_for_client":true}]`.
    pub namespaces: String,
    /// HMAC secret for subscription tokens (falls back to the connection key).
    pub subscription_token_hmac_secret_key: Option<String>,
    /// PEM RSA public key for subscription tokens (falls back to the connection key).
    pub subscription_token_rsa_public_key: Option<String>,
    /// PEM ECDSA public key for subscription tokens (falls back to the connection key).
    pub subscription_token_ecdsa_public_key: Option<String>,
    /// Most publications a history call returns (and a recovery restores).
    pub history_max_publication_limit: usize,
    /// Connections one user may hold on this gateway (0: unlimited); over it: 3504.
    pub client_user_connection_limit: usize,
    /// Connections this gateway accepts (0: unlimited); over it: HTTP 503.
    pub client_connection_limit: usize,

    /// How often the server pings each client.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long the server waits for a pong after a ping.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// How long a connection may stay without sending `connect`.
    #[serde(with = "humantime_serde")]
    pub client_stale_close_delay: Duration,
    /// Grace period after a connection token expires before 3005.
    #[serde(with = "humantime_serde")]
    pub client_expired_close_delay: Duration,
    /// Grace period after a subscription token expires before unsubscribing (2501).
    #[serde(with = "humantime_serde")]
    pub client_expired_sub_close_delay: Duration,
    /// Bytes a client's outbound queue may hold before it is disconnected (3008).
    pub client_queue_max_size: usize,
    /// Channels one connection may hold at once.
    pub client_channel_limit: usize,
    /// Longest channel name accepted, in bytes.
    pub channel_max_length: usize,
    /// Largest WebSocket message accepted from a client, in bytes.
    pub websocket_message_size_limit: usize,
    /// Space-separated `Origin` glob patterns (`https://*.example.com`);
    /// `*` allows any; empty: only requests without `Origin`.
    pub allowed_origins: String,
    /// `allowed_origins` compiled by validation; not an option.
    #[serde(skip)]
    pub origin_check: OriginCheck,
    /// Names that are no option, each described for the operator
    /// (`NATSGATE_PROT (did you mean NATSGATE_PORT?)`, `config file key
    /// `prot``); values are never shown. Not an option.
    #[serde(skip)]
    pub unknown: Vec<String>,

    /// Key for the HTTP server API (`X-API-Key` or `Authorization: apikey`).
    pub api_key: Option<String>,
    /// Turn off API key checks (development only).
    pub api_insecure: bool,
    /// `transport` to answer API errors with HTTP status codes; otherwise 200.
    pub api_error_mode: String,
    /// Largest API request body, in bytes.
    pub api_max_body_size: u64,

    /// Serve the GRPC server API (Centrifugo's `grpc_api`).
    pub grpc_api: bool,
    /// Interface for the GRPC API; empty: `address`.
    pub grpc_api_address: String,
    /// Port for the GRPC API.
    pub grpc_api_port: u16,
    /// Key expected as `authorization: apikey <key>` metadata; required when
    /// the GRPC API is on.
    pub grpc_api_key: Option<String>,
    /// PEM certificate chain file; with `grpc_api_tls_key`, the GRPC API
    /// serves TLS.
    pub grpc_api_tls_cert: Option<String>,
    /// PEM private key file for `grpc_api_tls_cert`.
    pub grpc_api_tls_key: Option<String>,
    /// Serve GRPC server reflection (for grpcurl and the like).
    pub grpc_api_reflection: bool,
    /// `transport` to answer errors with GRPC statuses instead of `error`
    /// fields (a call can ask for it with `x-centrifugo-error-mode: transport`).
    pub grpc_api_error_mode: String,
    /// Largest GRPC request message, in bytes; 0: 4 MiB (GRPC's default).
    pub grpc_api_max_receive_message_size: usize,

    /// On SIGTERM, clients are disconnected (3001) spread over this period,
    /// so they reconnect elsewhere without a thundering herd.
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// How long shutdown may take before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,

    /// Log level filter (`info`, `debug`, `natsgate=trace,warn`, ...).
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
}

impl Config {
    /// Options of channels without a namespace, from the top-level fields.
    pub fn top_level_channel_options(&self) -> ChannelOptions {
        ChannelOptions {
            allow_subscribe_for_client: self.allow_subscribe_for_client,
            allow_subscribe_for_anonymous: self.allow_subscribe_for_anonymous,
            allow_publish_for_client: self.allow_publish_for_client,
            allow_publish_for_subscriber: self.allow_publish_for_subscriber,
            allow_publish_for_anonymous: self.allow_publish_for_anonymous,
            allow_presence_for_client: self.allow_presence_for_client,
            allow_presence_for_subscriber: self.allow_presence_for_subscriber,
            allow_presence_for_anonymous: self.allow_presence_for_anonymous,
            allow_history_for_client: self.allow_history_for_client,
            allow_history_for_subscriber: self.allow_history_for_subscriber,
            allow_history_for_anonymous: self.allow_history_for_anonymous,
            allow_user_limited_channels: self.allow_user_limited_channels,
            channel_regex: self.channel_regex.clone(),
            presence: self.presence,
            join_leave: self.join_leave,
            force_push_join_leave: self.force_push_join_leave,
            history_size: self.history_size,
            history_ttl: self.history_ttl,
            force_recovery: self.force_recovery,
            allow_recovery: self.allow_recovery,
            force_positioning: self.force_positioning,
            allow_positioning: self.allow_positioning,
        }
    }

    /// The channel rules (top level and namespaces), validated.
    pub fn channel_rules(&self) -> Result<ChannelRules, ConfigError> {
        let namespaces = if self.namespaces.trim().is_empty() {
            Vec::new()
        } else {
            parse_namespaces(&self.namespaces).map_err(|e| invalid("namespaces", e))?
        };
        ChannelRules::new(self.top_level_channel_options(), namespaces, self.channel_max_length)
            .map_err(|e| ConfigError::Invalid { var: "top-level channel options".into(), problem: e })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: "127.0.0.1".into(),
            port: 8000,
            internal_port: None,
            name: default_name(),
            nats_url: None,
            nats_prefix: "natsgate".into(),
            nats_credentials_file: None,
            nats_nkey: None,
            nats_token: None,
            nats_username: None,
            nats_password: None,
            nats_tls: false,
            nats_tls_server_ca_pem: None,
            nats_tls_cert_pem: None,
            nats_tls_key_pem: None,
            nats_name: String::new(),
            nats_history_replicas: 1,
            tls: false,
            tls_cert: None,
            tls_key: None,
            tls_external: false,
            token_hmac_secret_key: None,
            token_rsa_public_key: None,
            token_ecdsa_public_key: None,
            token_audience: None,
            token_issuer: None,
            allow_anonymous_connect_without_token: false,
            allow_subscribe_for_client: false,
            allow_publish_for_client: false,
            allow_subscribe_for_anonymous: false,
            allow_publish_for_anonymous: false,
            allow_publish_for_subscriber: false,
            allow_presence_for_client: false,
            allow_presence_for_subscriber: false,
            allow_presence_for_anonymous: false,
            allow_history_for_client: false,
            allow_history_for_subscriber: false,
            allow_history_for_anonymous: false,
            allow_user_limited_channels: false,
            channel_regex: String::new(),
            presence: false,
            join_leave: false,
            force_push_join_leave: false,
            history_size: 0,
            history_ttl: None,
            history_meta_ttl: Duration::from_secs(720 * 3600),
            force_recovery: false,
            allow_recovery: false,
            force_positioning: false,
            allow_positioning: false,
            namespaces: String::new(),
            subscription_token_hmac_secret_key: None,
            subscription_token_rsa_public_key: None,
            subscription_token_ecdsa_public_key: None,
            history_max_publication_limit: 300,
            client_user_connection_limit: 0,
            client_connection_limit: 0,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            client_stale_close_delay: Duration::from_secs(10),
            client_expired_close_delay: Duration::from_secs(25),
            client_expired_sub_close_delay: Duration::from_secs(25),
            client_queue_max_size: 1024 * 1024,
            client_channel_limit: 128,
            channel_max_length: 255,
            websocket_message_size_limit: 65536,
            allowed_origins: String::new(),
            origin_check: OriginCheck::default(),
            unknown: Vec::new(),
            api_key: None,
            api_insecure: false,
            api_error_mode: String::new(),
            api_max_body_size: 1024 * 1024,
            grpc_api: false,
            grpc_api_address: String::new(),
            grpc_api_port: 10000,
            grpc_api_key: None,
            grpc_api_tls_cert: None,
            grpc_api_tls_key: None,
            grpc_api_reflection: false,
            grpc_api_error_mode: String::new(),
            grpc_api_max_receive_message_size: 0,
            drain_period: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            log_level: "info".into(),
            log_format: "text".into(),
        }
    }
}

/// Debug output never shows secrets, so a config can be logged safely.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("listen", &format_args!("{}:{}", self.address, self.port))
            .field("name", &self.name)
            .field("nats_url", &self.nats_url.as_deref().map(crate::broker::nats_connect::redact_url))
            .field("nats_auth", &crate::broker::nats_connect::auth_method(self))
            .field("nats_tls", &self.nats_tls)
            .field("tls", &self.tls)
            .field("nats_prefix", &self.nats_prefix)
            .field("token_hmac_secret_key", &set(&self.token_hmac_secret_key))
            .field("api_key", &set(&self.api_key))
            .field("api_insecure", &self.api_insecure)
            .field("grpc_api", &self.grpc_api)
            .field("grpc_api_key", &set(&self.grpc_api_key))
            .field("token_rsa_public_key", &set(&self.token_rsa_public_key))
            .field("token_ecdsa_public_key", &set(&self.token_ecdsa_public_key))
            .field("allow_subscribe_for_client", &self.allow_subscribe_for_client)
            .field("allow_publish_for_client", &self.allow_publish_for_client)
            .field("ping_interval", &self.ping_interval)
            .finish_non_exhaustive()
    }
}

fn default_name() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "natsgate".to_string())
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {var}: {problem}")]
    Invalid { var: String, problem: String },
    /// The config file is unreadable, not JSON, or has an unknown key.
    #[error("configuration: {file}: {problem}")]
    File { file: String, problem: String },
}

fn invalid(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { var: format!("{ENV_PREFIX}{}", field.to_uppercase()), problem: problem.into() }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::load(None)
    }

    /// Reads the JSON config `file`, if any, then the process environment,
    /// which overrides the file.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let json = file.map(read_json_file).transpose()?;
        // Variables that are not UTF-8 cannot be ours (names are ASCII) or
        // parse as any option; skip them rather than panic.
        let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::from_sources(json, env).map_err(|e| match (e, file) {
            (ConfigError::File { problem, .. }, Some(path)) => {
                ConfigError::File { file: path.display().to_string(), problem }
            }
            (e, _) => e,
        })
    }

    /// Reads `(name, value)` pairs; tests use this instead of `set_var`.
    // Not `FromIterator`: parsing can fail, and that trait cannot return an error.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Config, ConfigError> {
        Self::from_sources(None, vars)
    }

    /// Merges a parsed config file (a JSON object of option names) with
    /// `(name, value)` environment pairs, the environment winning, and
    /// parses the result. Empty variables count as unset. Pure: `load`
    /// and the tests share it.
    pub fn from_sources<I>(file: Option<serde_json::Value>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut merged = BTreeMap::new();
        // Variable name -> file key, for values that came from the file.
        let mut from_file = BTreeMap::new();
        let mut unknown = Vec::new();
        if let Some(file) = file {
            let (entries, unknown_keys) = file_entries(file)?;
            unknown.extend(unknown_keys);
            for (var, value, key) in entries {
                from_file.insert(var.clone(), key);
                merged.insert(var, value);
            }
        }
        let known = Self::option_names();
        let (env, unknown_vars): (Vars, Vars) = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_ENV)
            .partition(|(k, _)| known.contains(&k[ENV_PREFIX.len()..].to_lowercase().as_str()));
        unknown.extend(unknown_vars.iter().map(|(name, _)| describe_unknown_variable(name)));
        for (var, value) in env.into_iter().filter(|(_, v)| !v.is_empty()) {
            from_file.remove(&var);
            merged.insert(var, value);
        }
        let vars: Vec<(String, String)> = merged.into_iter().collect();
        check_service_links(&vars)?;
        let mut config = Self::parse(vars).map_err(|e| blame_file(e, &from_file))?;
        config.unknown = unknown;
        Ok(config)
    }

    /// The warning (or, for checkconfig, the error) about [`Config::unknown`];
    /// `None` when every name is an option.
    pub fn unknown_names_message(&self) -> Option<String> {
        if self.unknown.is_empty() {
            return None;
        }
        let noun = if self.unknown.len() == 1 { "name" } else { "names" };
        let mut message = format!("unknown configuration {noun}: {}", self.unknown.join(", "));
        if self.unknown.iter().any(|n| looks_like_service_link(n.split(' ').next().unwrap_or(""))) {
            message.push_str(
                "; names like NATSGATE_SERVICE_HOST or NATSGATE_PORT_8000_TCP are Kubernetes service links, set in \
                 every pod of a namespace with a Service named `natsgate`: set `enableServiceLinks: false` in the \
                 pod spec",
            );
        }
        Some(message)
    }

    /// The option names (lower case, no prefix), read from `Config`'s own
    /// `Deserialize` impl so the list can never drift from the struct.
    pub fn option_names() -> &'static [&'static str] {
        field_names::<Config>()
    }

    fn parse(vars: Vec<(String, String)>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let mut config: Config = match envy::prefixed(ENV_PREFIX).from_iter(vars.clone()) {
            Ok(config) => config,
            Err(e) => return Err(ConfigError::Parse(describe_envy_error(e, &vars))),
        };
        config.validate()?;
        config.origin_check = OriginCheck::new(&config.allowed_origins).map_err(|e| invalid("allowed_origins", e))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rules = self.channel_rules()?;
        // A position must outlive the publications it points after, or a
        // client that missed nothing would be told its position is gone.
        if self.history_meta_ttl.is_zero() {
            return Err(invalid("history_meta_ttl", "must be positive"));
        }
        let longest = rules.namespaces().filter_map(|(name, o)| Some((name, o.history_ttl?))).max_by_key(|(_, t)| *t);
        if let Some((name, ttl)) = longest.filter(|(_, t)| *t > self.history_meta_ttl) {
            let owner =
                if name.is_empty() { "NATSGATE_HISTORY_TTL".to_string() } else { format!("namespace `{name}`") };
            return Err(invalid(
                "history_meta_ttl",
                format!("must be at least every history_ttl ({owner} has {})", humantime::format_duration(ttl)),
            ));
        }
        if self.nats_prefix.is_empty()
            || !self
                .nats_prefix
                .split('.')
                .all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(invalid("nats_prefix", "must be dot-separated tokens of letters, digits, '-' or '_'"));
        }
        if self.ping_interval.is_zero() {
            return Err(invalid("ping_interval", "must be positive"));
        }
        if self.pong_timeout >= self.ping_interval {
            return Err(invalid("pong_timeout", "must be shorter than NATSGATE_PING_INTERVAL"));
        }
        if self.client_queue_max_size < 1024 {
            return Err(invalid("client_queue_max_size", "must be at least 1024 bytes"));
        }
        if self.websocket_message_size_limit < 1024 {
            return Err(invalid("websocket_message_size_limit", "must be at least 1024 bytes"));
        }
        if self.channel_max_length == 0 || self.channel_max_length > 1024 {
            return Err(invalid("channel_max_length", "must be between 1 and 1024"));
        }
        if self.client_channel_limit == 0 {
            return Err(invalid("client_channel_limit", "must be positive"));
        }
        if self.drain_period >= self.shutdown_timeout {
            return Err(invalid("drain_period", "must be shorter than NATSGATE_SHUTDOWN_TIMEOUT"));
        }
        if !matches!(self.api_error_mode.as_str(), "" | "transport") {
            return Err(invalid("api_error_mode", "must be empty or `transport`"));
        }
        if self.api_max_body_size < 1024 {
            return Err(invalid("api_max_body_size", "must be at least 1024 bytes"));
        }
        self.validate_grpc_api()?;
        self.validate_security()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid("log_format", "must be `text` or `json`"));
        }
        if self.address.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid("address", "must be an IP address"));
        }
        Ok(())
    }

    fn validate_grpc_api(&self) -> Result<(), ConfigError> {
        if !matches!(self.grpc_api_error_mode.as_str(), "" | "transport") {
            return Err(invalid("grpc_api_error_mode", "must be empty or `transport`"));
        }
        if self.grpc_api_tls_cert.is_some() != self.grpc_api_tls_key.is_some() {
            return Err(invalid("grpc_api_tls_cert", "needs NATSGATE_GRPC_API_TLS_KEY, and the other way round"));
        }
        if !self.grpc_api_address.is_empty() && self.grpc_api_address.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid("grpc_api_address", "must be an IP address"));
        }
        // Unlike Centrifugo, which leaves a keyless GRPC API open, natsgate
        // refuses to start one: the HTTP API without a key refuses every call.
        if self.grpc_api && self.grpc_api_key.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("grpc_api_key", "must be set when NATSGATE_GRPC_API is on"));
        }
        Ok(())
    }

    /// Secured NATS and client TLS: one auth method, pairs complete.
    fn validate_security(&self) -> Result<(), ConfigError> {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.is_empty());
        let methods = [
            set(&self.nats_credentials_file),
            set(&self.nats_nkey),
            set(&self.nats_token),
            set(&self.nats_username) || set(&self.nats_password),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(invalid(
                "nats_credentials_file",
                "choose one NATS authentication: NATSGATE_NATS_CREDENTIALS_FILE, NATSGATE_NATS_NKEY, \
                 NATSGATE_NATS_TOKEN or NATSGATE_NATS_USERNAME with NATSGATE_NATS_PASSWORD",
            ));
        }
        if set(&self.nats_username) != set(&self.nats_password) {
            return Err(invalid("nats_username", "needs NATSGATE_NATS_PASSWORD, and the other way round"));
        }
        if set(&self.nats_tls_cert_pem) != set(&self.nats_tls_key_pem) {
            return Err(invalid("nats_tls_cert_pem", "needs NATSGATE_NATS_TLS_KEY_PEM, and the other way round"));
        }
        if !(1..=5).contains(&self.nats_history_replicas) {
            return Err(invalid("nats_history_replicas", "must be between 1 and 5 (JetStream's limit)"));
        }
        if self.tls && !(set(&self.tls_cert) && set(&self.tls_key)) {
            return Err(invalid("tls", "needs NATSGATE_TLS_CERT and NATSGATE_TLS_KEY"));
        }
        // Centrifugo ignores them without `tls`; serving plain text to an
        // operator who gave certificates would be a silent downgrade.
        if !self.tls && (set(&self.tls_cert) || set(&self.tls_key)) {
            return Err(invalid("tls_cert", "is set but NATSGATE_TLS is not: set NATSGATE_TLS=true to serve TLS"));
        }
        Ok(())
    }

    /// Where the GRPC API listens.
    pub fn grpc_api_addr(&self) -> SocketAddr {
        let ip = if self.grpc_api_address.is_empty() { &self.address } else { &self.grpc_api_address };
        // validate() checked both addresses.
        SocketAddr::new(ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()), self.grpc_api_port)
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validate() checked the address.
        SocketAddr::new(self.address.parse().expect("validated address"), self.port)
    }
}

/// envy names the field in lower case; turn it back into the variable name
/// so the operator sees exactly what to fix. Values are never echoed, since
/// some of them are secrets.
fn describe_envy_error(e: envy::Error, vars: &[(String, String)]) -> String {
    match e {
        envy::Error::MissingValue(field) => format!("{ENV_PREFIX}{} is required", field.to_uppercase()),
        envy::Error::Custom(msg) => {
            // envy ends with "... while parsing value '<value>' provided by <NAME>";
            // keep the name, drop the value.
            match msg.rsplit_once(" provided by ") {
                Some((_, name)) => format!("{ENV_PREFIX}{}: invalid value ({})", name.trim(), first_clause(&msg)),
                // Errors from custom deserializers (durations) carry no name:
                // find the variable that fails on its own.
                None => {
                    let culprit = vars
                        .iter()
                        .find(|pair| envy::prefixed(ENV_PREFIX).from_iter::<_, Config>([(*pair).clone()]).is_err());
                    match culprit {
                        Some((name, _)) => format!("{name}: invalid value ({})", redact(&msg, vars)),
                        None => redact(&msg, vars),
                    }
                }
            }
        }
    }
}

/// Removes every configured value from an error message.
fn redact(msg: &str, vars: &[(String, String)]) -> String {
    vars.iter().fold(msg.to_string(), |m, (_, v)| if v.len() > 1 { m.replace(v.as_str(), "<value>") } else { m })
}

fn first_clause(msg: &str) -> &str {
    msg.split(" while parsing").next().unwrap_or(msg)
}

fn file_problem(problem: impl Into<String>) -> ConfigError {
    // `load` replaces the placeholder with the file's path.
    ConfigError::File { file: "config file".into(), problem: problem.into() }
}

fn read_json_file(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File { file: name.clone(), problem: format!("cannot read: {e}") })?;
    // Syntax errors name line and column, never the text around them.
    serde_json::from_str(&text).map_err(|e| ConfigError::File { file: name, problem: format!("not valid JSON: {e}") })
}

/// `(name, value)` pairs.
type Vars = Vec<(String, String)>;

/// Turns a config file object into `(NATSGATE_KEY, value, key)` triples:
/// strings raw, numbers and booleans as text, arrays and objects as compact
/// JSON; `null` means unset. Keys that are no option come back apart,
/// described with the nearest known key.
#[allow(clippy::type_complexity)]
fn file_entries(file: serde_json::Value) -> Result<(Vec<(String, String, String)>, Vec<String>), ConfigError> {
    use serde_json::Value;
    let Value::Object(entries) = file else {
        return Err(file_problem("must be a JSON object of option names"));
    };
    let known = Config::option_names();
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for (key, value) in entries {
        if !known.contains(&key.as_str()) {
            let hint = suggest(key.to_lowercase().trim_start_matches("natsgate_"), known)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            unknown.push(format!("config file key `{key}`{hint}"));
            continue;
        }
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.push((format!("{ENV_PREFIX}{}", key.to_uppercase()), text, key));
    }
    Ok((out, unknown))
}

/// `NATSGATE_PROT (did you mean NATSGATE_PORT?)`.
fn describe_unknown_variable(name: &str) -> String {
    match suggest(&name[ENV_PREFIX.len()..].to_lowercase(), Config::option_names()) {
        Some(k) if !looks_like_service_link(name) => format!("{name} (did you mean {ENV_PREFIX}{}?)", k.to_uppercase()),
        _ => name.to_string(),
    }
}

/// Names the kubelet derives from a Service named `natsgate` (or
/// `natsgate-*`): `NATSGATE_SERVICE_HOST`, `NATSGATE_SERVICE_PORT_HTTP`,
/// `NATSGATE_PORT`, `NATSGATE_PORT_8000_TCP_ADDR`, ... (Centrifugo skips the
/// same shapes in its unknown-variable warning).
fn looks_like_service_link(name: &str) -> bool {
    // Centrifugo's shape: `^CENTRIFUGO(?:_[A-Z0-9_]+)?_(PORT|SERVICE_)`.
    let Some(rest) = name.strip_prefix("NATSGATE") else { return false };
    rest.char_indices().any(|(i, _)| {
        let (middle, tail) = rest.split_at(i);
        let middle_ok = middle.is_empty()
            || (middle.len() > 1
                && middle.starts_with('_')
                && middle[1..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        middle_ok && (tail.starts_with("_PORT") || tail.starts_with("_SERVICE_"))
    })
}

/// A `*_PORT` option holding `tcp://host:port` is a Kubernetes service link,
/// not a port: say so and how to avoid it, instead of "invalid digit".
fn check_service_links(vars: &[(String, String)]) -> Result<(), ConfigError> {
    let link = vars.iter().find(|(name, value)| {
        name.ends_with("_PORT") && ["tcp://", "udp://", "sctp://"].iter().any(|scheme| value.starts_with(scheme))
    });
    match link {
        Some((name, _)) => Err(ConfigError::Invalid {
            var: name.clone(),
            problem: format!(
                "holds a `tcp://host:port` address, not a port number: this looks like a Kubernetes service link \
                 (a Service named `{}` makes the kubelet set {name}=tcp://<service ip>:<port> in every pod of its \
                 namespace). Set `enableServiceLinks: false` in the pod spec (the natsgate chart does), rename the \
                 Service, or set {name} explicitly to a port number",
                name.trim_end_matches("_PORT").to_lowercase().replace('_', "-"),
            ),
        }),
        None => Ok(()),
    }
}

/// Adds the config file key to an error about a value that came from the file.
fn blame_file(e: ConfigError, from_file: &BTreeMap<String, String>) -> ConfigError {
    let note = |var: &str| from_file.get(var).map(|key| format!(" (from the config file key `{key}`)"));
    match e {
        ConfigError::Invalid { var, problem } => {
            let problem = match note(&var) {
                Some(n) => problem + &n,
                None => problem,
            };
            ConfigError::Invalid { var, problem }
        }
        ConfigError::Parse(msg) => {
            let culprit = msg.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).find_map(note);
            ConfigError::Parse(msg + &culprit.unwrap_or_default())
        }
        e => e,
    }
}

/// The known name closest to a misspelled one, if it is close: a small
/// edit away, or the only name it is the beginning of.
fn suggest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let close = known.iter().map(|k| (edit_distance(name, k), *k)).filter(|(d, _)| *d <= 2).min();
    let mut extended = known.iter().filter(|k| name.len() >= 4 && k.starts_with(name));
    close.map(|(_, k)| k).or_else(|| extended.next().filter(|_| extended.next().is_none()).copied())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The field names a derived `Deserialize` asks for: a deserializer that
/// only records what `deserialize_struct` is given.
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Recorder(&'static [&'static str]);
    impl<'de> de::Deserializer<'de> for &mut Recorder {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("field names recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut recorder = Recorder(&[]);
    let _ = T::deserialize(&mut recorder);
    recorder.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_iter(vars(&[])).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.listen_addr().to_string(), "127.0.0.1:8000");
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert!(c.nats_url.is_none());
    }

    #[test]
    fn reads_prefixed_variables() {
        let c = Config::from_iter(vars(&[
            ("NATSGATE_PORT", "9001"),
            ("NATSGATE_PING_INTERVAL", "3s"),
            ("NATSGATE_PONG_TIMEOUT", "500ms"),
            ("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true"),
            ("NATSGATE_NATS_URL", "nats://127.0.0.1:4222"),
            ("OTHER_PORT", "1"),
        ]))
        .unwrap();
        assert_eq!(c.port, 9001);
        assert_eq!(c.pong_timeout, Duration::from_millis(500));
        assert!(c.allow_publish_for_client);
        assert_eq!(c.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
    }

    #[test]
    fn bad_value_names_the_variable() {
        let err = Config::from_iter(vars(&[("NATSGATE_PORT", "eighty")])).unwrap_err().to_string();
        assert!(err.contains("NATSGATE_PORT"), "{err}");
        let err = Config::from_iter(vars(&[("NATSGATE_NATS_PREFIX", "a.>")])).unwrap_err().to_string();
        assert!(err.contains("NATSGATE_NATS_PREFIX"), "{err}");
        let err = Config::from_iter(vars(&[("NATSGATE_PING_INTERVAL", "soon")])).unwrap_err().to_string();
        assert!(err.contains("NATSGATE_PING_INTERVAL"), "{err}");
    }

    #[test]
    fn secret_values_are_not_echoed() {
        let err = Config::from_iter(vars(&[("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "hunter2-secret")]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2-secret"), "{err}");
    }

    #[test]
    fn grpc_api_needs_a_key_and_both_tls_files() {
        let err = |v: &[(&str, &str)]| Config::from_sources(None, vars(v)).err().map(|e| e.to_string());
        let refused = err(&[("NATSGATE_GRPC_API", "true")]).expect("no key");
        assert!(refused.contains("NATSGATE_GRPC_API_KEY"), "{refused}");
        let c = Config::from_sources(None, vars(&[("NATSGATE_GRPC_API", "true"), ("NATSGATE_GRPC_API_KEY", "k")]))
            .expect("valid");
        assert_eq!(c.grpc_api_addr(), "127.0.0.1:10000".parse().unwrap());
        assert!(err(&[("NATSGATE_GRPC_API_TLS_CERT", "cert.pem")]).is_some(), "a certificate needs its key");
        assert!(err(&[("NATSGATE_GRPC_API_ERROR_MODE", "custom")]).is_some());
        assert!(err(&[("NATSGATE_GRPC_API_ADDRESS", "localhost")]).is_some(), "an IP address");
    }

    #[test]
    fn option_names_come_from_the_struct() {
        let names = Config::option_names();
        for name in ["address", "port", "token_hmac_secret_key", "ping_interval", "log_format"] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(!names.contains(&"config"));
    }

    #[test]
    fn file_entries_are_options_and_env_overrides_them() {
        let file = serde_json::json!({
            "port": 9100,
            "allow_subscribe_for_client": true,
            "ping_interval": "3s",
            "pong_timeout": "1s",
            "api_key": "k1",
            "nats_url": null,
        });
        let c = Config::from_sources(Some(file.clone()), vars(&[])).unwrap();
        assert_eq!(c.port, 9100);
        assert!(c.allow_subscribe_for_client);
        assert_eq!(c.ping_interval, Duration::from_secs(3));
        assert_eq!(c.api_key.as_deref(), Some("k1"));
        assert!(c.nats_url.is_none());

        let env = vars(&[("NATSGATE_PORT", "9200"), ("NATSGATE_API_KEY", ""), ("NATSGATE_CONFIG", "x.json")]);
        let c = Config::from_sources(Some(file), env).unwrap();
        assert_eq!(c.port, 9200, "the environment wins");
        assert_eq!(c.api_key.as_deref(), Some("k1"), "an empty variable is unset");
    }

    #[test]
    fn unknown_file_key_is_named_with_a_suggestion() {
        let c = Config::from_sources(Some(serde_json::json!({"prot": 1, "port": 9100})), vars(&[])).unwrap();
        assert_eq!(c.port, 9100, "the known keys still apply");
        assert_eq!(c.unknown, ["config file key `prot` (did you mean `port`?)"]);
        let file = serde_json::json!({"token_hmac_secret": "hunter2-secret"});
        let message = Config::from_sources(Some(file), vars(&[])).unwrap().unknown_names_message().unwrap();
        assert!(message.contains("did you mean `token_hmac_secret_key`"), "{message}");
        assert!(!message.contains("hunter2-secret"), "{message}");
        let err = Config::from_sources(Some(serde_json::json!(["port"])), vars(&[])).unwrap_err().to_string();
        assert!(err.contains("JSON object"), "{err}");
    }

    #[test]
    fn unknown_variables_are_named_not_fatal() {
        let c =
            Config::from_iter(vars(&[("NATSGATE_PROT", "1"), ("NATSGATE_WHATEVER", ""), ("NATSGATE_PORT", "9001")]))
                .unwrap();
        assert_eq!(c.port, 9001);
        let message = c.unknown_names_message().unwrap();
        assert!(message.contains("NATSGATE_PROT (did you mean NATSGATE_PORT?)"), "{message}");
        assert!(message.contains("NATSGATE_WHATEVER"), "{message}");
        assert!(!message.contains("Kubernetes"), "{message}");
        let c = Config::from_iter(vars(&[("NATSGATE_CONFIG", "/etc/natsgate.json")])).unwrap();
        assert!(c.unknown_names_message().is_none());
    }

    /// What the kubelet injects for a Service named `natsgate`.
    #[test]
    fn kubernetes_service_links_are_a_warning() {
        let links = [
            ("NATSGATE_SERVICE_HOST", "10.0.0.7"),
            ("NATSGATE_SERVICE_PORT", "8000"),
            ("NATSGATE_SERVICE_PORT_HTTP", "8000"),
            ("NATSGATE_PORT_8000_TCP", "tcp://10.0.0.7:8000"),
            ("NATSGATE_PORT_8000_TCP_PROTO", "tcp"),
            ("NATSGATE_PORT_8000_TCP_PORT", "8000"),
            ("NATSGATE_PORT_8000_TCP_ADDR", "10.0.0.7"),
            ("NATSGATE_NATS_SERVICE_HOST", "10.0.0.8"),
        ];
        let c = Config::from_iter(vars(&links)).unwrap();
        assert_eq!(c.unknown.len(), links.len(), "{:?}", c.unknown);
        let message = c.unknown_names_message().unwrap();
        for (name, _) in links {
            assert!(message.contains(name), "{message}");
            assert!(!message.contains(&format!("{name} (did")), "no spelling hint for {name}: {message}");
        }
        assert!(!message.contains("10.0.0."), "values are not shown: {message}");
        assert!(message.contains("enableServiceLinks: false"), "{message}");
        for name in ["NATSGATE_PORT_8000_TCP", "NATSGATE_SERVICE_HOST", "NATSGATE_X_Y_SERVICE_PORT", "NATSGATE_X_PORT"]
        {
            assert!(looks_like_service_link(name), "{name}");
        }
        for name in ["NATSGATE_PROT", "NATSGATE_SERVICE", "NATSGATE_x_PORT", "OTHER_PORT"] {
            assert!(!looks_like_service_link(name), "{name}");
        }
    }

    #[test]
    fn a_port_holding_a_service_link_says_so() {
        for (var, service) in [("NATSGATE_PORT", "`natsgate`"), ("NATSGATE_INTERNAL_PORT", "`natsgate-internal`")] {
            let err = Config::from_iter(vars(&[(var, "tcp://10.0.0.7:8000")])).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains("Kubernetes service link"), "{err}");
            assert!(err.contains("enableServiceLinks: false") && err.contains(service), "{err}");
            assert!(!err.contains("10.0.0.7"), "the value is not echoed: {err}");
        }
    }

    #[test]
    fn bad_file_value_names_variable_and_key_but_not_value() {
        let file = serde_json::json!({"port": "hunter2-secret"});
        let err = Config::from_sources(Some(file), vars(&[])).unwrap_err().to_string();
        assert!(err.contains("NATSGATE_PORT") && err.contains("config file key `port`"), "{err}");
        assert!(!err.contains("hunter2-secret"), "{err}");
        let file = serde_json::json!({"ping_interval": "1s", "pong_timeout": "2s"});
        let err = Config::from_sources(Some(file), vars(&[])).unwrap_err().to_string();
        assert!(err.contains("NATSGATE_PONG_TIMEOUT") && err.contains("`pong_timeout`"), "{err}");
    }

    #[test]
    fn bad_json_file_names_file_line_and_column() {
        let dir = std::env::temp_dir().join(format!("natsgate-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broken.json");
        std::fs::write(&path, "{\n  \"port\": 8000\n  \"api_key\": \"hunter2-secret\"\n}\n").unwrap();
        let err = read_json_file(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("broken.json") && err.contains("line 3 column 3"), "{err}");
        assert!(!err.contains("hunter2-secret"), "{err}");
    }

    #[test]
    fn history_meta_ttl_outlives_every_history_ttl() {
        let c = Config::from_iter(vars(&[])).unwrap();
        assert_eq!(c.history_meta_ttl, Duration::from_secs(30 * 24 * 3600), "Centrifugo's default: 30 days");
        let ns = r#"[{"name":"chat","history_size":10,"history_ttl":"48h"}]"#;
        let c = Config::from_iter(vars(&[("NATSGATE_NAMESPACES", ns), ("NATSGATE_HISTORY_META_TTL", "48h")])).unwrap();
        assert_eq!(c.history_meta_ttl, Duration::from_secs(48 * 3600), "equal to the longest history_ttl");
        let err = Config::from_iter(vars(&[("NATSGATE_NAMESPACES", ns), ("NATSGATE_HISTORY_META_TTL", "47h")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("NATSGATE_HISTORY_META_TTL") && err.contains("namespace `chat`"), "{err}");
        let top =
            [("NATSGATE_HISTORY_SIZE", "10"), ("NATSGATE_HISTORY_TTL", "2h"), ("NATSGATE_HISTORY_META_TTL", "1h")];
        let err = Config::from_iter(vars(&top)).unwrap_err().to_string();
        assert!(err.contains("NATSGATE_HISTORY_META_TTL") && err.contains("NATSGATE_HISTORY_TTL"), "{err}");
        let err = Config::from_iter(vars(&[("NATSGATE_HISTORY_META_TTL", "0s")])).unwrap_err().to_string();
        assert!(err.contains("NATSGATE_HISTORY_META_TTL"), "{err}");
        let c = Config::from_sources(Some(serde_json::json!({"history_meta_ttl": "1h"})), vars(&[])).unwrap();
        assert_eq!(c.history_meta_ttl, Duration::from_secs(3600), "a config file key");
    }

    /// `.env.example` lists exactly the options, each with a comment, and
    /// its values are valid.
    #[test]
    fn env_example_lists_every_option() {
        let text = include_str!("../.env.example");
        let mut listed = Vec::new();
        let mut previous = "";
        for line in text.lines() {
            if let Some((name, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
                assert!(previous.starts_with("# "), "{name} has no comment line above it");
                listed
                    .push(name.strip_prefix(ENV_PREFIX).unwrap_or_else(|| panic!("{name}: no prefix")).to_lowercase());
            }
            previous = line;
        }
        let mut expected: Vec<String> = Config::option_names().iter().map(|s| s.to_string()).collect();
        expected.sort();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(sorted, expected, ".env.example and Config disagree");
        let pairs = text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('='));
        Config::from_iter(pairs.map(|(k, v)| (k.to_string(), v.to_string()))).expect(".env.example values are valid");
    }
}
