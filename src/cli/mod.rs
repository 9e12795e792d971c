//! Subcommands of the `natsgate` binary: one file per command; `main.rs`
//! only parses arguments and dispatches here.
//!
//! Exit codes: 0 ok, 1 failure (invalid token, refusing to overwrite),
//! 2 usage (clap), 78 configuration error (EX_CONFIG). Messages go to
//! stderr and never contain secrets or tokens.

pub mod checkconfig;
pub mod genconfig;
pub mod serve;
pub mod token;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};

/// Exit code for bad configuration (EX_CONFIG from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

/// Why a subcommand failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Exit 78.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Exit 78: the configuration is valid but lacks what the command needs.
    #[error("{0}")]
    Missing(String),
    /// Exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Missing(_) => EXIT_CONFIG,
            CliError::Failed(_) => 1,
        }
    }
}

/// Prints the error (if any) on stderr and turns the result into an exit code.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natsgate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Loads the configuration (file, then environment).
pub fn load_config(file: Option<&Path>) -> Result<Config, CliError> {
    Ok(Config::load(file)?)
}
