//! The `natsgate` command: serve (the default), and small helper commands.
//! The commands live in `natsgate::cli`; this file only reads `.env` and
//! parses arguments.

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use natsgate::broker::subject::SubjectMap;
use natsgate::cli::{self, token, CliError};

/// The sequence `--help` shows a newcomer, each step ending somewhere useful.
const FIRST_RUN: &str = "\
First run:
  natsgate                          serve ws://127.0.0.1:8000/connection/websocket on the embedded
                                    broker; with no token key configured it makes a throw-away key
                                    and logs a development token and a client one-liner to connect
  natsgate genconfig                write config.json with a fresh HMAC secret and API key
  natsgate -c config.json           serve with it
  natsgate -c config.json gentoken -u alice
                                    a connection token for user alice (signed with that secret)

Settings come from --config FILE, then NATSGATE_* variables (a .env file in the working
directory fills in those not already set), then --set NAME=VALUE flags, each winning over the
ones before. Health: GET /health, /ready; metrics: GET /metrics (on
NATSGATE_INTERNAL_PORT when set, else on the main port).";

#[derive(Parser)]
#[command(
    name = "natsgate",
    version,
    about = "Centrifugo-compatible real-time gateway on NATS",
    after_help = FIRST_RUN
)]
struct Cli {
    /// JSON config file (option names in lower case, without NATSGATE_);
    /// NATSGATE_* environment variables override it.
    #[arg(long, short = 'c', global = true, env = "NATSGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Sets an option (lower-case name, as in the config file) over the
    /// file and the NATSGATE_* variables; repeatable.
    #[arg(long = "set", global = true, value_name = "NAME=VALUE", value_parser = cli::parse_set)]
    set: Vec<(String, String)>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Write a starter config file with a fresh HMAC secret and API key.
    Genconfig {
        /// Where to write it; an existing file is never overwritten.
        #[arg(short, long, default_value = "config.json")]
        output: PathBuf,
    },
    /// Load and validate the configuration, then exit.
    Checkconfig,
    /// Print an HS256 connection token signed with token_hmac_secret_key.
    Gentoken {
        /// User ID (the `sub` claim).
        #[arg(short, long)]
        user: String,
        /// Lifetime in seconds; 0 for a token that never expires.
        #[arg(short, long, value_name = "SECONDS", default_value_t = token::DEFAULT_TTL_SECS)]
        ttl: u64,
        /// Connection info (the `info` claim), as JSON.
        #[arg(long, value_name = "JSON", value_parser = token::parse_json)]
        info: Option<serde_json::Value>,
    },
    /// Print an HS256 subscription token for one channel.
    Gensubtoken {
        /// User ID (the `sub` claim).
        #[arg(short, long)]
        user: String,
        /// Channel (the `channel` claim).
        #[arg(short = 's', long)]
        channel: String,
        /// Lifetime in seconds; 0 for a token that never expires.
        #[arg(short, long, value_name = "SECONDS", default_value_t = token::DEFAULT_TTL_SECS)]
        ttl: u64,
    },
    /// Verify a connection token with the configured keys and print its claims.
    Checktoken { token: String },
    /// Print the NATS subject that carries a channel's publications.
    Subject { channel: String },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    // Before clap, which reads NATSGATE_CONFIG from the environment.
    let dotenv = match cli::load_dotenv() {
        Ok(found) => found,
        Err(e) => return cli::finish(Err(e)),
    };
    let cli = Cli::parse();
    let file = cli.config.as_deref();
    let flags = cli.set.as_slice();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match cli::load_config(file, flags) {
            Ok(config) => cli::serve::run(config, dotenv.as_deref()),
            Err(e) => cli::finish(Err(e)),
        },
        Command::Genconfig { output } => cli::finish(cli::genconfig::run(&output)),
        Command::Checkconfig => cli::finish(cli::checkconfig::run(file, flags)),
        Command::Gentoken { user, ttl, info } => {
            with_config(file, flags, |config| token::gentoken(config, &user, ttl, info))
        }
        Command::Gensubtoken { user, channel, ttl } => {
            with_config(file, flags, |config| token::gensubtoken(config, &user, &channel, ttl))
        }
        Command::Checktoken { token } => with_config(file, flags, |config| token::checktoken(config, &token)),
        Command::Subject { channel } => with_config(file, flags, |config| {
            println!("{}", SubjectMap::new(&config.nats_prefix).channel_subject(&channel));
            Ok(())
        }),
        Command::Version => {
            println!("natsgate {}", natsgate::VERSION);
            ExitCode::SUCCESS
        }
    }
}

/// Loads the configuration, then runs `command` with it.
fn with_config(
    file: Option<&Path>,
    flags: &[(String, String)],
    command: impl FnOnce(&natsgate::config::Config) -> Result<(), CliError>,
) -> ExitCode {
    cli::finish(cli::load_config(file, flags).and_then(|config| command(&config)))
}
