//! `natsgate serve` (the default): logging, runtime, listeners, then run
//! until SIGTERM/SIGINT. Also the first-run development mode: the embedded
//! broker with no token key gets an ephemeral secret and prints a token.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenVerifier;
use crate::config::{Config, LogFormat};
use crate::server::{termination_signal, Server, StartError};

/// The user the development token is made for.
pub const DEV_USER: &str = "dev";
/// Lifetime of the development token: one day.
const DEV_TOKEN_TTL_SECS: u64 = 24 * 3600;

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the gateway; exit 78 for bad keys, 1 if it cannot start otherwise.
/// `dotenv` is the `.env` file the settings were partly read from, if any.
pub fn run(mut config: Config, dotenv: Option<&Path>) -> ExitCode {
    init_logging(&config);
    if let Some(path) = dotenv {
        tracing::info!("read settings from {} (variables set in the environment win)", path.display());
    }
    let has_keys = match TokenVerifier::from_config(&config) {
        Ok(verifier) => verifier.has_keys(),
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    // First run (`cargo run`, no configuration): without a key every client
    // would be refused. On the embedded broker (one process, nothing to share
    // a key with) make one up for this run and print a token signed with it.
    // With NATS the gateways of a deployment must share the backend's key,
    // so a missing key is only warned about.
    let dev_mode = !has_keys && config.nats_url.is_none();
    // With a connect proxy, clients without a token are let in by the backend.
    let connect_proxy = !config.proxy_connect_endpoint.is_empty() || !config.connect_proxy_name.is_empty();
    let tls = config.tls;
    if dev_mode {
        config.token_hmac_secret_key = Some(super::genconfig::random_secret());
    } else if !has_keys && !config.allow_anonymous_connect_without_token && !connect_proxy {
        tracing::warn!(
            "no token key is configured (NATSGATE_TOKEN_HMAC_SECRET_KEY, NATSGATE_TOKEN_RSA_PUBLIC_KEY or \
             NATSGATE_TOKEN_ECDSA_PUBLIC_KEY): every client connection will be refused"
        );
    }
    let dev_token = match dev_mode.then(|| super::token::connection_token(&config, DEV_USER, DEV_TOKEN_TTL_SECS, None))
    {
        Some(Ok(token)) => Some(token),
        Some(Err(e)) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
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
        // One signal listener for both phases (connecting, serving), so a
        // signal between them is not lost.
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            termination_signal().await;
            on_signal.cancel();
        });
        let server = match Server::bind(config, &stop).await {
            Ok(Some(server)) => server,
            Ok(None) => {
                tracing::info!("stopped before NATS was reached; bye");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                tracing::error!("{e}");
                return match e {
                    StartError::Config(_) | StartError::BadSetting(_) => ExitCode::from(super::EXIT_CONFIG),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        let addr = server.local_addr();
        tracing::info!("natsgate {} listening on {addr} using {broker}", crate::VERSION);
        let scheme = if tls { "wss" } else { "ws" };
        let url = client_url(addr).replacen("ws", scheme, 1);
        if addr.ip().is_unspecified() {
            tracing::info!(
                "listening on every interface: clients connect to {scheme}://<this host>:{}/connection/websocket \
                 (from this machine: {url})",
                addr.port()
            );
        } else {
            tracing::info!("clients connect to {url}");
        }
        if let Some(token) = dev_token {
            announce_dev_mode(&url, &token);
        }
        server.run(async move { stop.cancelled().await }).await;
        tracing::info!("bye");
        ExitCode::SUCCESS
    })
}

/// The WebSocket URL a client on this machine uses; an unspecified address
/// (0.0.0.0, ::) is reached through loopback.
pub fn client_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("ws://{host}:{}/connection/websocket", addr.port())
}

/// Says loudly that this run uses a throw-away key, and prints a token for
/// it and a client one-liner. The key itself is never printed.
fn announce_dev_mode(url: &str, token: &str) {
    tracing::warn!(
        "DEVELOPMENT MODE: no token key is configured, so this run signs tokens with an ephemeral HMAC secret \
         that is lost on exit. Set NATSGATE_TOKEN_HMAC_SECRET_KEY (or run `natsgate genconfig`) to configure one"
    );
    tracing::warn!(user = DEV_USER, token = %token, "development connection token (valid 24 h, this run only)");
    tracing::warn!(
        "try it: node -e 'const {{Centrifuge}}=require(\"centrifuge\");const c=new Centrifuge(\"{url}\",\
         {{token:\"{token}\",websocket:WebSocket}});c.on(\"connected\",x=>{{console.log(\"connected\",x.client);\
         process.exit(0)}});c.connect()'   (after `npm i centrifuge`; node 20-21 also need --experimental-websocket)"
    );
}

#[cfg(test)]
mod tests {
    use super::client_url;

    #[test]
    fn client_url_never_names_an_unspecified_address() {
        let url = |a: &str| client_url(a.parse().unwrap());
        assert_eq!(url("0.0.0.0:8000"), "ws://127.0.0.1:8000/connection/websocket");
        assert_eq!(url("[::]:8000"), "ws://[::1]:8000/connection/websocket");
        assert_eq!(url("10.1.2.3:80"), "ws://10.1.2.3:80/connection/websocket");
        assert_eq!(url("[fe80::1]:8000"), "ws://[fe80::1]:8000/connection/websocket");
    }
}
