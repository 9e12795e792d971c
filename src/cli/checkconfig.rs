//! `natsgate checkconfig`: load and validate the configuration without serving.

use std::path::Path;

use super::{load_config, CliError};
use crate::auth::TokenVerifier;

/// Loads the configuration and the token keys the way `serve` does; warns
/// (on stderr) about settings that make the gateway refuse everything.
pub fn run(file: Option<&Path>) -> Result<(), CliError> {
    let config = load_config(file)?;
    let verifier = TokenVerifier::from_config(&config)?;
    if !verifier.has_keys() && !config.allow_anonymous_connect_without_token {
        eprintln!("natsgate: warning: no token key is configured, so every client connection is refused");
    }
    if config.api_key.as_deref().unwrap_or("").is_empty() && !config.api_insecure {
        eprintln!("natsgate: warning: no api_key is configured, so the HTTP API refuses every request");
    }
    println!("configuration is valid");
    Ok(())
}
