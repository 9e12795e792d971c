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

    // NATS reconnects (`crate::broker::nats::connect`): async-nats waits
    // this long (plus a random share of the jitter) between attempts, so a
    // restarted nats-server is found again within about delay + jitter.
    /// Wait between NATS reconnect attempts (the first attempt is immediate).
    #[default(Duration::from_millis(50))]
    #[serde(with = "humantime_serde")]
    pub nats_reconnect_delay: Duration,
    /// Random extra wait of up to this much per NATS reconnect attempt, so
    /// many gateways do not reconnect in lockstep.
    #[default(Duration::from_millis(50))]
    #[serde(with = "humantime_serde")]
    pub nats_reconnect_jitter: Duration,
    // Write coalescing (Centrifugo PRO's `client_write_delay` and
    // `client_max_messages_in_frame`, centrifuge's `WriteDelay` and
    // `MaxMessagesInFrame`).
    /// How long a client's writer waits, after a message arrives, for more
    /// to put in the same WebSocket frame (0: write at once).
    #[serde(with = "humantime_serde")]
    pub client_write_delay: Duration,
    /// Most messages (replies and pushes) in one WebSocket frame; -1: no
    /// limit (the default: whatever is queued goes in one frame); 0: 16,
    /// centrifuge's default.
    #[default(-1)]
    #[serde_as(as = "Lenient")]
    pub client_max_messages_in_frame: i64,
    // HTTP-streaming, SSE, bidirectional emulation and unidirectional
    // transports (crate::transport): Centrifugo v5's flat names.
    /// Serve HTTP-streaming at `/connection/http_stream` (with `/emulation`).
    pub http_stream: bool,
    /// Largest HTTP-streaming connect request body, in bytes; larger: 413.
    #[default(65536)]
    pub http_stream_max_request_body_size: usize,
    /// Serve SSE at `/connection/sse` (with `/emulation`).
    pub sse: bool,
    /// Largest SSE connect request body (POST form), in bytes; larger: 413.
    #[default(65536)]
    pub sse_max_request_body_size: usize,
    /// Largest `/emulation` request body, in bytes; larger: 413.
    #[default(65536)]
    pub emulation_max_request_body_size: usize,
    /// Serve unidirectional WebSocket at `/connection/uni_websocket`.
    pub uni_websocket: bool,
    /// Largest unidirectional WebSocket connect message, in bytes.
    #[default(65536)]
    pub uni_websocket_message_size_limit: usize,
    /// Serve unidirectional SSE at `/connection/uni_sse`.
    pub uni_sse: bool,
    /// Largest unidirectional SSE connect request body (POST form), in bytes.
    #[default(65536)]
    pub uni_sse_max_request_body_size: usize,
    /// Serve unidirectional HTTP-streaming at `/connection/uni_http_stream`.
    pub uni_http_stream: bool,
    /// Largest unidirectional HTTP-streaming connect request body, in bytes.
    #[default(65536)]
    pub uni_http_stream_max_request_body_size: usize,
    // Admin web interface (`crate::admin`), Centrifugo v5's flat `admin_*`
    // names; checked together by `validate_admin` (src/config/admin.rs).
    /// Serve the admin web interface and its endpoints (`/admin/*`).
    pub admin: bool,
    /// Password of the admin web interface; required with `admin` unless
    /// `admin_insecure`. Secret: never logged.
    pub admin_password: Option<String>,
    /// Key that signs admin session tokens; required with `admin` unless
    /// `admin_insecure`. Secret: never logged.
    pub admin_secret: Option<String>,
    /// No login at all (local use only; a warning at startup).
    pub admin_insecure: bool,
    /// A directory whose files are served instead of the embedded web app
    /// (as Centrifugo's `admin_web_path`: for developing the app).
    pub admin_web_path: Option<String>,
    /// URL path prefix of the web app and its endpoints (e.g. `/ops`); empty:
    /// `/` and `/admin/*`.
    pub admin_handler_prefix: String,
    /// With `internal_port` set, serve the admin interface on the client port
    /// instead of the internal one (Centrifugo's `admin_external`).
    pub admin_external: bool,
    // Proxy to the application backend and JWKS (issue #16): Centrifugo v5's
    // flat names; `crate::proxy` builds the proxies from them. An endpoint is
    // `http://`/`https://` (JSON over HTTP POST) or `grpc://host:port`.
    /// Backend endpoint asked to authenticate clients that connect without a token.
    pub proxy_connect_endpoint: String,
    /// How long the connect proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_connect_timeout: Duration,
    /// Backend endpoint asked to extend connections when they expire (server-side refresh).
    pub proxy_refresh_endpoint: String,
    /// How long the refresh proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_refresh_timeout: Duration,
    /// Backend endpoint for subscriptions in namespaces with `proxy_subscribe`.
    pub proxy_subscribe_endpoint: String,
    /// How long the subscribe proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_subscribe_timeout: Duration,
    /// Backend endpoint for client publications in namespaces with `proxy_publish`.
    pub proxy_publish_endpoint: String,
    /// How long the publish proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_publish_timeout: Duration,
    /// Backend endpoint extending subscriptions in namespaces with `proxy_sub_refresh`.
    pub proxy_sub_refresh_endpoint: String,
    /// How long the sub_refresh proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_sub_refresh_timeout: Duration,
    /// Backend endpoint answering client RPC calls.
    pub proxy_rpc_endpoint: String,
    /// How long the RPC proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_rpc_timeout: Duration,
    /// Client request headers forwarded to HTTP proxies (a JSON array, or
    /// names separated by spaces or commas).
    #[serde(deserialize_with = "crate::proxy::options::names")]
    pub proxy_http_headers: Vec<String>,
    /// Client request headers forwarded as GRPC metadata to GRPC proxies
    /// (a JSON array, or names separated by spaces or commas).
    #[serde(deserialize_with = "crate::proxy::options::names")]
    pub proxy_grpc_metadata: Vec<String>,
    /// Headers added to every HTTP proxy request: a JSON object.
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub proxy_static_http_headers: std::collections::BTreeMap<String, String>,
    /// Send the connection's `meta` (from the connect proxy) with later proxy requests.
    pub proxy_include_connection_meta: bool,
    /// Send and read payloads base64-encoded (`b64data`), for binary data.
    pub proxy_binary_encoding: bool,
    /// Most requests in flight to one proxy; more wait for a slot within the timeout.
    #[default(1024)]
    pub proxy_max_concurrency: usize,
    /// Named proxies (`proxies`) chosen per event with `*_proxy_name`.
    pub granular_proxy_mode: bool,
    /// With `granular_proxy_mode`: a JSON array of `{"name","endpoint","timeout",
    /// "http_headers","grpc_metadata","static_http_headers","include_connection_meta",
    /// "binary_encoding"}`.
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub proxies: Vec<crate::proxy::options::NamedProxy>,
    /// With `granular_proxy_mode`: the proxy for connect.
    pub connect_proxy_name: String,
    /// With `granular_proxy_mode`: the proxy for refresh.
    pub refresh_proxy_name: String,
    /// With `granular_proxy_mode`: the proxy for RPC calls.
    pub rpc_proxy_name: String,
    /// JWKS endpoint whose keys verify connection tokens (by `kid`).
    pub token_jwks_public_endpoint: Option<String>,
    /// JWKS endpoint whose keys verify subscription tokens.
    pub subscription_token_jwks_public_endpoint: Option<String>,
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
    // Unidirectional GRPC (Centrifugo v5's `uni_grpc*` options).
    /// Serve the unidirectional GRPC transport (`CentrifugoUniStream`).
    pub uni_grpc: bool,
    /// Interface for uni_grpc; unset: `address`.
    #[serde_as(as = "Option<DisplayFromStr>")]
    pub uni_grpc_address: Option<IpAddr>,
    /// Port for uni_grpc.
    #[default(11000)]
    pub uni_grpc_port: u16,
    /// Largest connect request message, in bytes; 0: 4 MiB (GRPC's default).
    #[default(65536)]
    pub uni_grpc_max_receive_message_size: usize,
    // Proxy, RPC namespaces (issue #16, granular mode): Centrifugo v5's
    // `rpc_namespaces` and `rpc_namespace_boundary`.
    /// RPC namespaces: a JSON array of `{"name", "rpc_proxy_name"}`. With
    /// `granular_proxy_mode` a method `<name><boundary>...` goes to its
    /// namespace's proxy; a method naming no configured namespace gets 104.
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub rpc_namespaces: Vec<crate::proxy::options::RpcNamespace>,
    /// What separates an RPC method's namespace from the rest (`ns:method`).
    #[default(":")]
    pub rpc_namespace_boundary: String,
    // Personal channel (issue #20): Centrifugo v5's flat names for v6's
    // `client.subscribe_to_user_personal_channel.*`; checked by
    // `validate_personal_channel` (src/config/validate.rs).
    /// Subscribe every authenticated connection, on the server side, to its
    /// user's personal channel `<namespace>:#<user>` (`#<user>` without a namespace).
    pub user_subscribe_to_personal: bool,
    /// Namespace of personal channels; empty: channels without a namespace.
    pub user_personal_channel_namespace: String,
    /// One connection per user: a new connection closes the user's others,
    /// on every gateway, with 3504 (needs `presence` in the personal channel's namespace).
    pub user_personal_single_connection: bool,
    // Proxy client TLS and GRPC credentials (issue #16; JWKS is
    // `token_jwks_public_endpoint` above): Centrifugo v5's flat names, and
    // `proxy_http_tls` for v6's `http.tls` of a proxy. TLS objects are JSON
    // (`crate::proxy::tls::TlsClientOptions`).
    /// TLS of `https://` proxy endpoints and the JWKS endpoint: a JSON object
    /// (`server_ca_pem`, `cert_pem`, `key_pem` (each also `_b64`/`_file`),
    /// `server_name`); empty: the system's roots.
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub proxy_http_tls: crate::proxy::tls::TlsClientOptions,
    /// TLS of `grpc://` proxy endpoints, used when its `enabled` is true: a
    /// JSON object like `proxy_http_tls`.
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub proxy_grpc_tls: crate::proxy::tls::TlsClientOptions,
    /// CA certificate file that verifies `grpc://` proxy endpoints; setting it turns TLS on.
    pub proxy_grpc_cert_file: String,
    /// Metadata key sent with every GRPC proxy call (per-call credentials).
    pub proxy_grpc_credentials_key: String,
    /// Value of `proxy_grpc_credentials_key`. Secret: never logged.
    pub proxy_grpc_credentials_value: String,
    // Shared poll subscriptions (issue #20, Centrifugo v6.9's `shared_poll`
    // object and `channel.proxy.shared_poll_refresh`, as flat names; see
    // `crate::shared_poll`).
    /// HMAC-SHA256 secret that signs the key batches clients track in
    /// `shared_poll` namespaces (required by them). Secret: never logged.
    pub shared_poll_hmac_secret_key: String,
    /// The previous secret, still accepted during a key rotation. Secret: never logged.
    pub shared_poll_hmac_previous_secret_key: String,
    /// Unix seconds: batches signed (`iat`) after this are not accepted with
    /// the previous secret; 0: no limit.
    pub shared_poll_hmac_previous_secret_key_valid_until: u64,
    /// Backend refresh calls this gateway runs at once, over all channels (default 64).
    #[default(64)]
    pub shared_poll_concurrency_limit: usize,
    /// Backend endpoint answering `shared_poll_refresh` for `shared_poll`
    /// namespaces whose `shared_poll.proxy_name` is empty or `default`.
    pub proxy_shared_poll_refresh_endpoint: String,
    /// How long the shared_poll_refresh proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_shared_poll_refresh_timeout: Duration,
    // Map proxies (issue #20, Centrifugo v6's `channel.proxy.map_publish` and
    // `map_remove`): used by map namespaces with `map.publish_proxy_enabled`
    // / `map.remove_proxy_enabled` (`crate::proxy::map_proxies`).
    /// Backend endpoint deciding client key writes in map namespaces with `map.publish_proxy_enabled`.
    pub proxy_map_publish_endpoint: String,
    /// How long the map publish proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_map_publish_timeout: Duration,
    /// Backend endpoint deciding client key removals in map namespaces with `map.remove_proxy_enabled`.
    pub proxy_map_remove_endpoint: String,
    /// How long the map remove proxy may take.
    #[default(Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub proxy_map_remove_timeout: Duration,

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
