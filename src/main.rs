//! The `natsgate` command: serve (the default), and small helper commands.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use natsgate::broker::subject::SubjectMap;
use natsgate::config::Config;
use natsgate::server::{termination_signal, Server};

#[derive(Parser)]
#[command(name = "natsgate", version, about = "Centrifugo-compatible real-time gateway on NATS")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Print the NATS subject that carries a channel's publications.
    Subject { channel: String },
    /// Print the version.
    Version,
}

/// Exit code for bad configuration (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("natsgate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Subject { channel } => {
            println!("{}", SubjectMap::new(&config.nats_prefix).channel_subject(&channel));
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("natsgate {}", natsgate::gateway::VERSION);
            ExitCode::SUCCESS
        }
    }
}

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

fn serve(config: Config) -> ExitCode {
    init_logging(&config);
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
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr();
        tracing::info!("natsgate {} listening on {addr} using {broker}", natsgate::gateway::VERSION);
        tracing::info!("clients connect to ws://{addr}/connection/websocket");
        server.run(termination_signal()).await;
        tracing::info!("bye");
        ExitCode::SUCCESS
    })
}
