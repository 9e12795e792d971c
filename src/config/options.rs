//! The options, declared once: name, type, default and meaning of every
//! `NATSGATE_*` variable and config file key.

use serde::{Deserialize, Serialize};
use serde_with::{json::JsonString, DisplayFromStr, PickFirst, Same};
use smart_default::SmartDefault;
use std::net::IpAddr;
use std::time::Duration;

use crate::channels::options::Lenient;
use crate::channels::{ChannelOptions, ChannelRules, Namespace};
use crate::origin::OriginCheck;

/// Everything a gateway needs to know. A field is an option: its name
/// (lower case) is the config file key and, upper-cased after `NATSGATE_`,
/// the variable. Values are typed as they are read (durations, addresses,
/// enums, origin patterns, regexes); [`Config::load`](super::Config::load)
/// then checks them together and builds [`Config::rules`]. `Serialize` is
/// there so the option names come from this struct; it would show secrets,
/// so logs use `Debug`, which hides them.
// Every number and boolean reads as itself or as text.
#[serde_with::apply(
    bool => #[serde_as(as = "Lenient")],
    u16 => #[serde_as(as = "Lenient")],
    u64 => #[serde_as(as = "Lenient")],
    usize => #[serde_as(as = "Lenient")],
    Option<u16> => #[serde_as(as = "Option<Lenient>")],
)]
#[serde_with::serde_as]
#[derive(Clone, Deserialize, Serialize, SmartDefault)]
#[serde(default)]
pub struct Config {
    /// Interface to listen on.
    #[default(IpAddr::from([127, 0, 0, 1]))]
    #[serde_as(as = "DisplayFromStr")]
    pub address: IpAddr,
    /// Port for client connections (and the HTTP API).
    #[default(8000)]
    pub port: u16,
    /// Optional separate port for /metrics, /health and /ready.
    pub internal_port: Option<u16>,
    /// Name of this gateway in `info` and logs; defaults to `$HOSTNAME` when
    /// exported (Docker and Kubernetes do), else the kernel's host name.
    #[default(super::default_name())]
    pub name: String,

    /// NATS server URL(s), comma-separated. Unset: embedded in-process broker.
    pub nats_url: Option<String>,
    /// First token of every NATS subject natsgate uses.
    #[default("natsgate")]
    pub nats_prefix: String,
    // Secured NATS and client TLS: read into
    // `crate::broker::nats::connect::NatsConnect` and `crate::transport::tls`.
    // Names: Centrifugo's NATS broker (`nats.tls.*`, flattened), its NATS
    // consumer (`credentials_file`, `username`, `password`, `token`), the NATS
    // clients (`nkey`, `name`), Centrifugo v5 (`tls`, `tls_cert`, `tls_key`,
    // `tls_external`).
    /// Path of a NATS `.creds` file (user JWT and NKey seed).
    pub nats_credentials_file: Option<String>,
    /// NKey seed (`SU...`), or the path of a file holding it.
    pub nats_nkey: Option<String>,
    /// NATS authentication token.
    pub nats_token: Option<String>,
    /// NATS user name (with `nats_password`).
    pub nats_username: Option<String>,
    /// NATS password.
    pub nats_password: Option<String>,
    /// Require TLS to NATS (also on with a `tls://` URL or a server that asks).
    pub nats_tls: bool,
    /// CA certificate(s) to verify NATS servers with: a PEM file path or PEM text.
    pub nats_tls_server_ca_pem: Option<String>,
    /// Client certificate for NATS (mutual TLS): a PEM file path or PEM text.
    pub nats_tls_cert_pem: Option<String>,
    /// Private key of `nats_tls_cert_pem`: a PEM file path or PEM text.
    pub nats_tls_key_pem: Option<String>,
    /// Connection name shown by the NATS server (`/connz`); empty: `natsgate <name>`.
    pub nats_name: String,
    /// Replicas of the JetStream history streams (1 to 5; at most the cluster size).
    #[default(1)]
    pub nats_history_replicas: usize,
    /// Serve the client port (WebSocket, HTTP API) over TLS.
    pub tls: bool,
    /// PEM certificate chain file for `tls`.
    pub tls_cert: Option<String>,
    /// PEM private key file for `tls`.
    pub tls_key: Option<String>,
    /// With `tls`: leave the internal port (`internal_port`) plain.
    pub tls_external: bool,

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
    /// HMAC secret for subscription tokens (falls back to the connection key).
    pub subscription_token_hmac_secret_key: Option<String>,
    /// PEM RSA public key for subscription tokens (falls back to the connection key).
    pub subscription_token_rsa_public_key: Option<String>,
    /// PEM ECDSA public key for subscription tokens (falls back to the connection key).
    pub subscription_token_ecdsa_public_key: Option<String>,

    /// Let clients connect without a token as anonymous users.
    pub allow_anonymous_connect_without_token: bool,
    /// Options of channels without a namespace (`allow_subscribe_for_client`,
    /// `presence`, `history_size`, ...): the same type as a namespace's.
    #[serde(flatten)]
    pub channel: ChannelOptions,
    /// Channel namespaces: a JSON array (in a variable, as text):
    /// `[{"name":"chat","allow_subscribe_for_client":true}]`.
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub namespaces: Vec<Namespace>,
    /// How long a channel's position (top offset, epoch) outlives its last
    /// publication; at least every namespace's history_ttl.
    #[default(Duration::from_secs(720 * 3600))]
    #[serde(with = "humantime_serde")]
    pub history_meta_ttl: Duration,
    /// Most publications a history call returns (and a recovery restores).
    #[default(300)]
    pub history_max_publication_limit: usize,
    /// Connections one user may hold on this gateway (0: unlimited); over it: 3504.
    pub client_user_connection_limit: usize,
    /// Connections this gateway accepts (0: unlimited); over it: HTTP 503.
    pub client_connection_limit: usize,

    /// How often the server pings each client.
    #[default(Duration::from_secs(25))]
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long the server waits for a pong after a ping.
    #[default(Duration::from_secs(8))]
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// How long a connection may stay without sending `connect`.
    #[default(Duration::from_secs(10))]
    #[serde(with = "humantime_serde")]
    pub client_stale_close_delay: Duration,
    /// Grace period after a connection token expires before 3005.
    #[default(Duration::from_secs(25))]
    #[serde(with = "humantime_serde")]
    pub client_expired_close_delay: Duration,
    /// Grace period after a subscription token expires before unsubscribing (2501).
    #[default(Duration::from_secs(25))]
    #[serde(with = "humantime_serde")]
    pub client_expired_sub_close_delay: Duration,
    /// Bytes a client's outbound queue may hold before it is disconnected (3008).
    #[default(1024 * 1024)]
    pub client_queue_max_size: usize,
    /// Channels one connection may hold at once.
    #[default(128)]
    pub client_channel_limit: usize,
    /// Longest channel name accepted, in bytes.
    #[default(crate::channels::DEFAULT_MAX_LENGTH)]
    pub channel_max_length: usize,
    /// Largest WebSocket message accepted from a client, in bytes.
    #[default(65536)]
    pub websocket_message_size_limit: usize,
    /// Space-separated `Origin` glob patterns (`https://*.example.com`);
    /// `*` allows any; empty: only requests without `Origin`. Compiled when read.
    #[serde_as(as = "DisplayFromStr")]
    pub allowed_origins: OriginCheck,

    /// Key for the HTTP server API (`X-API-Key` or `Authorization: apikey`).
    pub api_key: Option<String>,
    /// Turn off API key checks (development only).
    pub api_insecure: bool,
    /// `transport` to answer API errors with HTTP status codes; otherwise 200.
    pub api_error_mode: ErrorMode,
    /// Largest API request body, in bytes.
    #[default(1024 * 1024)]
    pub api_max_body_size: u64,

    /// Serve the GRPC server API (Centrifugo's `grpc_api`).
    pub grpc_api: bool,
    /// Interface for the GRPC API; unset: `address`.
    #[serde_as(as = "Option<DisplayFromStr>")]
    pub grpc_api_address: Option<IpAddr>,
    /// Port for the GRPC API.
    #[default(10000)]
    pub grpc_api_port: u16,
    /// Key expected as `authorization: apikey <key>` metadata; required when
    /// the GRPC API is on.
    pub grpc_api_key: Option<String>,
    /// PEM certificate chain file; with `grpc_api_tls_key`, the GRPC API
    /// serves TLS.
    pub grpc_api_tls_cert: Option<String>,
    /// PEM private key file for `grpc_api_tls_cert`.
    pub grpc_api_tls_key: Option<String>,
    /// Serve GRPC server reflection (for grpcurl and the like).
    pub grpc_api_reflection: bool,
    /// `transport` to answer errors with GRPC statuses instead of `error`
    /// fields (a call can ask for it with `x-centrifugo-error-mode: transport`).
    pub grpc_api_error_mode: ErrorMode,
    /// Largest GRPC request message, in bytes; 0: 4 MiB (GRPC's default).
    pub grpc_api_max_receive_message_size: usize,

    /// On SIGTERM, clients are disconnected (3001) spread over this period,
    /// so they reconnect elsewhere without a thundering herd.
    #[default(Duration::from_secs(5))]
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// How long shutdown may take before the process exits anyway.
    #[default(Duration::from_secs(30))]
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,

    /// Log level filter (`info`, `debug`, `natsgate=trace,warn`, ...).
    #[default("info")]
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,

    // SockJS (Centrifugo v5's options; v6 dropped SockJS).
    /// Serve SockJS at `/connection/sockjs` (JSON protocol only; needs
    /// sticky sessions behind a load balancer).
    pub sockjs: bool,
    /// The SockJS client library the iframe page loads; must be the version
    /// browsers run (iframe-based transports check it).
    #[default("https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js")]
    pub sockjs_url: String,
    /// How often SockJS heartbeat frames (`h`) go to silent receivers; 0: none.
    #[default(Duration::from_secs(25))]
    #[serde(with = "humantime_serde")]
    pub sockjs_heartbeat_delay: Duration,

    /// The channel rules (top level and namespaces), built once by
    /// validation from `channel`, `namespaces` and `channel_max_length`.
    /// Not an option.
    #[serde(skip)]
    pub rules: ChannelRules,
    /// Names that are no option, each described for the operator
    /// (`NATSGATE_PROT (did you mean NATSGATE_PORT?)`, `config file key
    /// `prot``); values are never shown. Not an option.
    #[serde(skip)]
    pub unknown: Vec<String>,
}

/// How the API answers errors (`api_error_mode`, `grpc_api_error_mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum ErrorMode {
    /// Errors in the reply body (`error` field), with HTTP 200 / GRPC OK.
    #[default]
    #[serde(rename = "")]
    Body,
    /// Errors as HTTP status codes / GRPC statuses.
    #[serde(rename = "transport")]
    Transport,
}

/// Log line format (`log_format`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
