//! Gateway configuration: every option declared once ([`Config`], in
//! `options.rs`), read from layered sources (`sources.rs`), checked once
//! (`validate.rs`), and handed around typed.
//!
//! Option names follow Centrifugo's where the meaning is the same, so a
//! Centrifugo user finds `NATSGATE_TOKEN_HMAC_SECRET_KEY` where they expect it.
//! Durations take humantime strings (`25s`, `500ms`, `1m`).
//!
//! Sources, each winning over the ones before: the defaults; a JSON config
//! file (`--config`, `NATSGATE_CONFIG`) with the options under their
//! lower-case names; `NATSGATE_*` variables; `--set NAME=VALUE` flags.
//! Unknown file keys and unknown `NATSGATE_*` variables are collected in
//! [`Config::unknown`]: the gateway warns about them, as Centrifugo does
//! (Kubernetes injects `NATSGATE_SERVICE_HOST`, `NATSGATE_PORT_8000_TCP`, ...
//! into every pod of a namespace with a Service named `natsgate`), and
//! `natsgate checkconfig` refuses them, so a typo is caught before deploy.

mod admin;
mod options;
mod sources;
mod validate;

pub use options::{Config, ErrorMode, LogFormat};

use std::net::SocketAddr;
use std::path::Path;

pub const ENV_PREFIX: &str = "NATSGATE_";

/// Names the config file; read by the CLI, not an option of `Config`.
pub const CONFIG_ENV: &str = "NATSGATE_CONFIG";

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {var}: {problem}")]
    Invalid { var: String, problem: String },
    /// The config file is unreadable, not JSON, or not an object.
    #[error("configuration: {file}: {problem}")]
    File { file: String, problem: String },
}

fn invalid(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { var: format!("{ENV_PREFIX}{}", field.to_uppercase()), problem: problem.into() }
}

/// `$HOSTNAME` (Docker and Kubernetes set it to the container or pod), else
/// the kernel's host name (systemd exports no HOSTNAME, and packaged gateways
/// on different hosts must not share a name), else `natsgate`.
fn default_name() -> String {
    let kernel = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string());
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| kernel().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "natsgate".to_string())
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::load(None, &[])
    }

    /// Reads the JSON config `file`, if any, then the process environment,
    /// then `flags` (`--set NAME=VALUE` pairs), each overriding the ones
    /// before.
    pub fn load(file: Option<&Path>, flags: &[(String, String)]) -> Result<Config, ConfigError> {
        let json = file.map(sources::read_json_file).transpose()?;
        // Variables that are not UTF-8 cannot be ours (names are ASCII) or
        // parse as any option; skip them rather than panic.
        let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::layered(json, env, flags).map_err(|e| match (e, file) {
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

    /// A parsed config file (a JSON object of option names) overridden by
    /// `(name, value)` environment pairs. Empty variables count as unset.
    /// Pure: `load` and the tests share it.
    pub fn from_sources<I>(file: Option<serde_json::Value>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Self::layered(file, env, &[])
    }

    fn layered<I>(file: Option<serde_json::Value>, env: I, flags: &[(String, String)]) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut layers = sources::Layers::default();
        if let Some(file) = file {
            layers.file(file)?;
        }
        layers.env(env)?;
        layers.flags(flags)?;
        layers.into_config()
    }

    /// The warning (or, for checkconfig, the error) about [`Config::unknown`];
    /// `None` when every name is an option.
    pub fn unknown_names_message(&self) -> Option<String> {
        if self.unknown.is_empty() {
            return None;
        }
        let noun = if self.unknown.len() == 1 { "name" } else { "names" };
        let mut message = format!("unknown configuration {noun}: {}", self.unknown.join(", "));
        if self.unknown.iter().any(|n| sources::looks_like_service_link(n.split(' ').next().unwrap_or(""))) {
            message.push_str(
                "; names like NATSGATE_SERVICE_HOST or NATSGATE_PORT_8000_TCP are Kubernetes service links, set in \
                 every pod of a namespace with a Service named `natsgate`: set `enableServiceLinks: false` in the \
                 pod spec",
            );
        }
        Some(message)
    }

    /// The option names (lower case, no prefix), read from `Config` itself
    /// so the list can never drift from the struct.
    pub fn option_names() -> &'static [String] {
        sources::option_names()
    }

    /// Where the GRPC API listens.
    pub fn grpc_api_addr(&self) -> SocketAddr {
        SocketAddr::new(self.grpc_api_address.unwrap_or(self.address), self.grpc_api_port)
    }

    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// Debug output never shows secrets, so a config can be logged safely.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("listen", &self.listen_addr())
            .field("name", &self.name)
            .field("nats_url", &self.nats_url.as_deref().map(crate::broker::nats::connect::redact_url))
            .field("nats_auth", &crate::broker::nats::connect::auth_method(self))
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
            .field("channel", &self.channel)
            .field("ping_interval", &self.ping_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
