//! Gateway configuration: read once from `NATSGATE_*` environment variables,
//! validated, and handed around as typed structs.
//!
//! Option names follow Centrifugo's where the meaning is the same, so a
//! Centrifugo user finds `NATSGATE_TOKEN_HMAC_SECRET_KEY` where they expect it.
//! Durations take humantime strings (`25s`, `500ms`, `1m`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

pub const ENV_PREFIX: &str = "NATSGATE_";

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
    /// Bytes a client's outbound queue may hold before it is disconnected (3008).
    pub client_queue_max_size: usize,
    /// Channels one connection may hold at once.
    pub client_channel_limit: usize,
    /// Longest channel name accepted, in bytes.
    pub channel_max_length: usize,
    /// Largest WebSocket message accepted from a client, in bytes.
    pub websocket_message_size_limit: usize,
    /// Space-separated allowed `Origin` values; `*` allows any.
    pub allowed_origins: String,

    /// Key for the HTTP server API (`X-API-Key` or `Authorization: apikey`).
    pub api_key: Option<String>,
    /// Turn off API key checks (development only).
    pub api_insecure: bool,
    /// `transport` to answer API errors with HTTP status codes; otherwise 200.
    pub api_error_mode: String,
    /// Largest API request body, in bytes.
    pub api_max_body_size: u64,

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

impl Default for Config {
    fn default() -> Self {
        Config {
            address: "127.0.0.1".into(),
            port: 8000,
            internal_port: None,
            name: default_name(),
            nats_url: None,
            nats_prefix: "natsgate".into(),
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
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            client_stale_close_delay: Duration::from_secs(10),
            client_expired_close_delay: Duration::from_secs(25),
            client_queue_max_size: 1024 * 1024,
            client_channel_limit: 128,
            channel_max_length: 255,
            websocket_message_size_limit: 65536,
            allowed_origins: String::new(),
            api_key: None,
            api_insecure: false,
            api_error_mode: String::new(),
            api_max_body_size: 1024 * 1024,
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
            .field("nats_url", &self.nats_url)
            .field("nats_prefix", &self.nats_prefix)
            .field("token_hmac_secret_key", &set(&self.token_hmac_secret_key))
            .field("api_key", &set(&self.api_key))
            .field("api_insecure", &self.api_insecure)
            .field("token_rsa_public_key", &set(&self.token_rsa_public_key))
            .field("token_ecdsa_public_key", &set(&self.token_ecdsa_public_key))
            .field("allow_subscribe_for_client", &self.allow_subscribe_for_client)
            .field("allow_publish_for_client", &self.allow_publish_for_client)
            .field("ping_interval", &self.ping_interval)
            .finish_non_exhaustive()
    }
}

fn default_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "natsgate".to_string())
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {var}: {problem}")]
    Invalid { var: String, problem: String },
}

fn invalid(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { var: format!("{ENV_PREFIX}{}", field.to_uppercase()), problem: problem.into() }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_iter(std::env::vars())
    }

    /// Reads `(name, value)` pairs; tests use this instead of `set_var`.
    pub fn from_iter<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, v)| k.starts_with(ENV_PREFIX) && !v.is_empty())
            .collect();
        let config: Config = match envy::prefixed(ENV_PREFIX).from_iter(vars.clone()) {
            Ok(config) => config,
            Err(e) => return Err(ConfigError::Parse(describe_envy_error(e, &vars))),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.nats_prefix.is_empty()
            || !self.nats_prefix.split('.').all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
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
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid("log_format", "must be `text` or `json`"));
        }
        if self.address.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid("address", "must be an IP address"));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validate() checked the address.
        SocketAddr::new(self.address.parse().expect("validated address"), self.port)
    }

    /// Allowed origins as a list; empty means only same-host or no Origin.
    pub fn origins(&self) -> Vec<String> {
        self.allowed_origins.split_whitespace().map(str::to_lowercase).collect()
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
                    let culprit = vars.iter().find(|pair| {
                        envy::prefixed(ENV_PREFIX).from_iter::<_, Config>([(*pair).clone()]).is_err()
                    });
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
}
