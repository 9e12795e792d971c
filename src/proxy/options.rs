//! How the proxy options read: header name lists and named proxies
//! (`proxies`, Centrifugo v5's granular proxy mode).

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A list of header names: a JSON array (config file, or a variable holding
/// one), or names separated by spaces or commas (as Centrifugo v5 reads
/// `CENTRIFUGO_PROXY_HTTP_HEADERS`). Names are kept lower-cased.
pub fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Text(String),
    }
    let list = match Names::deserialize(d)? {
        Names::List(list) => list,
        Names::Text(text) if text.trim_start().starts_with('[') => {
            serde_json::from_str(&text).map_err(serde::de::Error::custom)?
        }
        Names::Text(text) => text.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect(),
    };
    Ok(list.into_iter().map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect())
}

/// One entry of `proxies`: a named endpoint with its own settings. The
/// per-event `*_proxy_name` options pick entries by `name`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NamedProxy {
    pub name: String,
    /// `http://`, `https://` or `grpc://host:port`.
    pub endpoint: String,
    /// Defaults to 1 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(deserialize_with = "names")]
    pub http_headers: Vec<String>,
    #[serde(deserialize_with = "names")]
    pub grpc_metadata: Vec<String>,
    pub static_http_headers: BTreeMap<String, String>,
    pub include_connection_meta: bool,
    pub binary_encoding: bool,
    // Client TLS and GRPC credentials (Centrifugo v5's `grpc_tls`,
    // `grpc_cert_file`, `grpc_credentials_key`/`_value` of a proxy;
    // `http_tls` is v6's `http.tls`).
    /// TLS of a `grpc://` endpoint (on when `enabled`).
    pub grpc_tls: super::tls::TlsClientOptions,
    /// CA certificate file verifying a `grpc://` endpoint (turns TLS on).
    pub grpc_cert_file: String,
    /// Metadata key sent with every GRPC call.
    pub grpc_credentials_key: String,
    /// Its value.
    pub grpc_credentials_value: String,
    /// TLS of an `https://` endpoint.
    pub http_tls: super::tls::TlsClientOptions,
}

/// One entry of `rpc_namespaces` (Centrifugo v5's `rule.RpcNamespace`):
/// RPC methods named `<name><boundary>...` use `rpc_proxy_name` in granular
/// proxy mode.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RpcNamespace {
    pub name: String,
    /// The named proxy (`proxies`) answering this namespace's methods;
    /// empty: its methods get 108 (not available).
    pub rpc_proxy_name: String,
}
