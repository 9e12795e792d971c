//! `natsgate checkconfig`: load and validate the configuration without serving.

use std::path::Path;

use super::{load_config, CliError};
use crate::auth::TokenVerifier;
use crate::config::{Config, ConfigError, CONFIG_ENV, ENV_PREFIX};

/// Loads the configuration and the token keys the way `serve` does; fails
/// on names that are no option (which `serve` only warns about); warns (on
/// stderr) about settings that make the gateway refuse everything.
pub fn run(file: Option<&Path>, flags: &[(String, String)]) -> Result<(), CliError> {
    let config = load_config(file, flags)?;
    // The gateway only warns about names that are no option (Kubernetes
    // adds some); before deploy they are most likely typos.
    if let Some(message) = config.unknown_names_message() {
        let known: Vec<String> =
            Config::option_names().iter().map(|k| format!("{ENV_PREFIX}{}", k.to_uppercase())).collect();
        let file = file.map(|f| format!(" (config file {})", f.display())).unwrap_or_default();
        return Err(ConfigError::Parse(format!("{message}{file}; known: {}, {CONFIG_ENV}", known.join(", "))).into());
    }
    let verifier = TokenVerifier::from_config(&config)?;
    // The proxies, as they will be called (endpoints without credentials).
    let proxies = crate::proxy::Proxies::from_config(&config).map_err(ConfigError::Parse)?;
    for line in proxies.describe() {
        println!("proxy {line}");
    }
    if !verifier.has_keys() && !config.allow_anonymous_connect_without_token && proxies.connect.is_none() {
        // As `serve` decides (src/cli/serve.rs): on the embedded broker a
        // missing key means development mode, with NATS refused clients.
        if config.nats_url.is_none() {
            eprintln!(
                "natsgate: warning: no token key is configured: `natsgate serve` will run in development mode \
                 (an ephemeral secret for this run only); set one for anything else"
            );
        } else {
            eprintln!("natsgate: warning: no token key is configured, so every client connection is refused");
        }
    }
    if config.api_key.as_deref().unwrap_or("").is_empty() && !config.api_insecure {
        eprintln!("natsgate: warning: no api_key is configured, so the HTTP API refuses every request");
    }
    println!("configuration is valid");
    Ok(())
}
