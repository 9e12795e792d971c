//! `natsgate serve` (the default): logging, runtime, listeners, then run
//! until SIGTERM/SIGINT.

use std::process::ExitCode;

use crate::config::Config;
use crate::server::{termination_signal, Server, StartError};

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the gateway; exit 78 for bad keys, 1 if it cannot start otherwise.
pub fn run(config: Config) -> ExitCode {
    init_logging(&config);
    if let Some(message) = config.unknown_names_message() {
        // As Centrifugo: warn and go on (`natsgate checkconfig` refuses them).
        tracing::warn!("{message}; they are ignored");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natsgate: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let broker = match &config.nats_url {
            Some(_) => "NATS",
            None => "embedded in-process broker",
        };
        let server = match Server::bind(config).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("{e}");
                return match e {
                    StartError::Config(_) => ExitCode::from(super::EXIT_CONFIG),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        let addr = server.local_addr();
        tracing::info!("natsgate {} listening on {addr} using {broker}", crate::gateway::VERSION);
        tracing::info!("clients connect to ws://{addr}/connection/websocket");
        server.run(termination_signal()).await;
        tracing::info!("bye");
        ExitCode::SUCCESS
    })
}
