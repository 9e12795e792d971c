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

use std::path::{Path, PathBuf};
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

/// The file [`load_dotenv`] reads: `.env` in the working directory (not
/// its parents, so a `.env` elsewhere never changes a run by surprise).
pub const DOTENV: &str = ".env";

/// Reads `.env` from the working directory into the environment, as
/// `.env.example` suggests; variables already set win over the file. Must run
/// before anything else reads the environment (and before threads start).
/// `Ok(None)` when there is no such file. A line that does not parse is a
/// configuration error naming the line number, never its content (it may
/// hold a secret).
pub fn load_dotenv() -> Result<Option<PathBuf>, CliError> {
    let path = PathBuf::from(DOTENV);
    match dotenvy::from_path(&path) {
        Ok(()) => Ok(Some(path)),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(dotenvy::Error::LineParse(line, _)) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let number = text.lines().position(|l| l == line).map(|i| format!(" {}", i + 1)).unwrap_or_default();
            Err(CliError::Missing(format!("{DOTENV}: line{number} is not NAME=value")))
        }
        Err(dotenvy::Error::Io(e)) => Err(CliError::Missing(format!("cannot read {DOTENV}: {e}"))),
        Err(_) => Err(CliError::Missing(format!("cannot read {DOTENV}"))),
    }
}

/// Loads the configuration (file, then environment, then `--set` flags).
pub fn load_config(file: Option<&Path>, flags: &[(String, String)]) -> Result<Config, CliError> {
    Ok(Config::load(file, flags)?)
}

/// Parses a `--set NAME=VALUE` flag.
pub fn parse_set(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((name.to_string(), value.to_string()))
}
