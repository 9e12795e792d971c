//! Proxying client events to the application backend, as Centrifugo's
//! proxy feature does (`internal/proxy`): connect, refresh, subscribe,
//! publish, sub_refresh and rpc are sent to an HTTP endpoint as JSON or to
//! a GRPC endpoint (`grpc://host:port`, service
//! `centrifugal.centrifugo.proxy.CentrifugoProxy`), and the backend's
//! `result`, `error` or `disconnect` decides the command.
//!
//! Layout: `options.rs` reads the options, `http.rs` and `grpc.rs` carry one
//! call, this file builds the proxies and bounds each call (a concurrency
//! limit and a timeout per proxy). The session (`crate::session`) fills the
//! requests and applies the answers; `crate::session::error` maps
//! [`ProxyError`] to Centrifugo's codes.

mod grpc;
mod http;
pub(crate) mod map_proxies;
pub mod options;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::Config;

/// The proxy protocol's messages (`proto/proxy.proto`): GRPC messages and,
/// through serde, the HTTP proxy's JSON bodies.
#[allow(clippy::all, unreachable_pub)]
pub(crate) mod pb {
    tonic::include_proto!("centrifugal.centrifugo.proxy");
}

/// Why a proxy call produced no answer. The backend's own `error` and
/// `disconnect` are answers, not `ProxyError`s.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No answer within the proxy's timeout (waiting for a slot included).
    #[error("timed out")]
    Timeout,
    /// The backend could not be reached or answered with a failure
    /// (HTTP status other than 200, GRPC status other than OK).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The answer could not be read, or the request not encoded.
    #[error("bad proxy message: {0}")]
    Malformed(String),
}

/// How the connection that triggered a call looks to the backend: the
/// headers of its HTTP upgrade request that a proxy may forward, and the
/// names Centrifugo sends as `transport` and `protocol`.
#[derive(Debug, Default)]
pub(crate) struct ClientOrigin {
    /// Only the headers some proxy forwards (lower-case names), kept for
    /// the connection's life.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) transport: &'static str,
    pub(crate) protocol: &'static str,
}

/// Where one proxy sends its calls.
enum Endpoint {
    Http(http::HttpCaller),
    Grpc(grpc::GrpcCaller),
}

/// One configured proxy: endpoint and settings.
pub(crate) struct Proxy {
    endpoint: Endpoint,
    /// The endpoint as configured, for logs and `checkconfig`.
    pub(crate) url: String,
    timeout: Duration,
    /// Client headers forwarded (lower-case names).
    http_headers: Vec<String>,
    /// Client headers forwarded as metadata to a GRPC proxy only.
    grpc_metadata: Vec<String>,
    static_headers: Vec<(String, String)>,
    /// Send the connection's `meta` along.
    pub(crate) include_meta: bool,
    /// Payloads travel base64-encoded (`b64data`, encoding `binary`).
    pub(crate) binary: bool,
    slots: Semaphore,
}

/// The gRPC method or HTTP event a call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Connect,
    Refresh,
    Subscribe,
    Publish,
    SubRefresh,
    Rpc,
    /// Shared poll subscriptions' backend poll (issue #20).
    SharedPollRefresh,
    MapPublish,
    MapRemove,
}

impl Event {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Event::Connect => "connect",
            Event::Refresh => "refresh",
            Event::Subscribe => "subscribe",
            Event::Publish => "publish",
            Event::SubRefresh => "sub_refresh",
            Event::Rpc => "rpc",
            Event::SharedPollRefresh => "shared_poll_refresh",
            Event::MapPublish => "map_publish",
            Event::MapRemove => "map_remove",
        }
    }
}

/// Every proxy of this process, built once from the configuration.
#[derive(Default)]
pub(crate) struct Proxies {
    pub(crate) connect: Option<Arc<Proxy>>,
    pub(crate) refresh: Option<Arc<Proxy>>,
    pub(crate) rpc: Option<Arc<Proxy>>,
    /// Channel proxies by name ("" in the non-granular mode).
    subscribe: HashMap<String, Arc<Proxy>>,
    publish: HashMap<String, Arc<Proxy>>,
    sub_refresh: HashMap<String, Arc<Proxy>>,
    /// shared_poll_refresh proxies by `shared_poll.proxy_name` ("" for
    /// `proxy_shared_poll_refresh_endpoint`).
    shared_poll_refresh: HashMap<String, Arc<Proxy>>,
    /// Map channel proxies (see `map_proxies.rs`) by name ("" in the
    /// non-granular mode).
    map_publish: HashMap<String, Arc<Proxy>>,
    map_remove: HashMap<String, Arc<Proxy>>,
    /// Union of the header names any proxy forwards: what a connection keeps.
    forwarded: Vec<String>,
    /// Granular mode: RPC namespaces by name, each with its proxy (None:
    /// the namespace names no proxy), and what separates a namespace.
    rpc_namespaces: Option<(RpcNamespaces, String)>,
}

/// Granular mode's RPC namespaces: name -> its proxy (None: it names none).
type RpcNamespaces = HashMap<String, Option<Arc<Proxy>>>;

/// Where an RPC call goes ([`Proxies::rpc_for`]).
pub(crate) enum RpcRoute {
    /// To this proxy.
    Proxy(Arc<Proxy>),
    /// No proxy answers the method: 108 (not available).
    NotAvailable,
    /// The method names an RPC namespace that is not configured: 104.
    MethodNotFound,
}

/// The settings shared by both modes, before the endpoint is opened.
struct Settings<'a> {
    endpoint: &'a str,
    timeout: Duration,
    http_headers: &'a [String],
    grpc_metadata: &'a [String],
    static_headers: Vec<(String, String)>,
    include_meta: bool,
    binary: bool,
    concurrency: usize,
    /// TLS of `https://` endpoints.
    http_tls: &'a tls::TlsClientOptions,
    /// TLS of `grpc://` endpoints: `None` for plain HTTP/2.
    grpc_tls: Option<tls::TlsClientOptions>,
    /// Metadata sent with every GRPC call (`grpc_credentials_key`/`_value`).
    grpc_credentials: Option<(String, String)>,
}

/// The GRPC TLS settings in force: the `grpc_tls` object when enabled, else
/// a `grpc_cert_file` as the CA that verifies the backend, else none (as
/// Centrifugo's `getDialOpts`).
fn grpc_tls(object: &tls::TlsClientOptions, cert_file: &str) -> Option<tls::TlsClientOptions> {
    if object.enabled {
        Some(object.clone())
    } else if !cert_file.is_empty() {
        Some(tls::TlsClientOptions { enabled: true, server_ca_pem_file: cert_file.to_string(), ..Default::default() })
    } else {
        None
    }
}

/// Centrifugo's per-call GRPC credentials: a key with its value, or none.
fn grpc_credentials(key: &str, value: &str) -> Option<(String, String)> {
    (!key.is_empty()).then(|| (key.to_string(), value.to_string()))
}

impl Proxy {
    fn open(s: Settings<'_>) -> Result<Arc<Proxy>, String> {
        let endpoint = if let Some(rest) = s.endpoint.strip_prefix("grpc://") {
            Endpoint::Grpc(grpc::GrpcCaller::new(rest, s.grpc_tls.as_ref(), s.grpc_credentials)?)
        } else if s.endpoint.starts_with("http://") || s.endpoint.starts_with("https://") {
            Endpoint::Http(http::HttpCaller::new(s.endpoint, s.http_tls)?)
        } else {
            return Err(format!("{:?} must start with http://, https:// or grpc://", redact(s.endpoint)));
        };
        Ok(Arc::new(Proxy {
            endpoint,
            url: redact(s.endpoint),
            timeout: s.timeout,
            http_headers: s.http_headers.to_vec(),
            grpc_metadata: s.grpc_metadata.to_vec(),
            static_headers: s.static_headers,
            include_meta: s.include_meta,
            binary: s.binary,
            slots: Semaphore::new(s.concurrency.max(1)),
        }))
    }

    /// `encoding` as the backend sees it.
    pub(crate) fn encoding(&self) -> &'static str {
        if self.binary {
            "binary"
        } else {
            "json"
        }
    }

    /// The headers to send: static ones first, then the client's allowed ones.
    fn headers(&self, origin: &ClientOrigin) -> Vec<(String, String)> {
        let mut headers = self.static_headers.clone();
        let grpc = matches!(self.endpoint, Endpoint::Grpc(_));
        for (name, value) in &origin.headers {
            if self.http_headers.iter().any(|h| h == name) || (grpc && self.grpc_metadata.iter().any(|h| h == name)) {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                headers.push((name.clone(), value.clone()));
            }
        }
        headers
    }

    /// Sends one event and reads the backend's answer, within the proxy's
    /// timeout and concurrency limit.
    pub(crate) async fn call<Req, Resp>(
        &self,
        event: Event,
        req: Req,
        origin: &ClientOrigin,
    ) -> Result<Resp, ProxyError>
    where
        Req: grpc::ProxyMessage + serde::Serialize,
        Resp: prost::Message + Default + serde::de::DeserializeOwned + 'static,
    {
        let started = std::time::Instant::now();
        let call = async {
            let _slot = self.slots.acquire().await.map_err(|_| ProxyError::Unavailable("closed".into()))?;
            let headers = self.headers(origin);
            match &self.endpoint {
                Endpoint::Http(caller) => caller.call(event, &req, &headers).await,
                Endpoint::Grpc(caller) => caller.call(event, req, &headers).await,
            }
        };
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProxyError::Timeout),
        };
        let metrics = crate::metrics::metrics();
        metrics.proxy_duration.with_label_values(&[event.as_str()]).observe(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            metrics.proxy_errors.with_label_values(&[event.as_str()]).inc();
            // The endpoint without credentials; never the request.
            tracing::warn!(event = event.as_str(), endpoint = %self.url, "proxy call failed: {e}");
        }
        outcome
    }
}

impl Proxies {
    /// Builds every configured proxy; an error names the option at fault.
    pub(crate) fn from_config(config: &Config) -> Result<Proxies, String> {
        let mut proxies = Proxies::default();
        let concurrency = config.proxy_max_concurrency;
        if config.granular_proxy_mode {
            let mut named = HashMap::new();
            for p in &config.proxies {
                if p.name.is_empty() {
                    return Err("proxies: every proxy needs a name".into());
                }
                let settings = Settings {
                    endpoint: &p.endpoint,
                    timeout: p.timeout.unwrap_or(Duration::from_secs(1)),
                    http_headers: &p.http_headers,
                    grpc_metadata: &p.grpc_metadata,
                    static_headers: p.static_http_headers.clone().into_iter().collect(),
                    include_meta: p.include_connection_meta,
                    binary: p.binary_encoding,
                    concurrency,
                    http_tls: &p.http_tls,
                    grpc_tls: grpc_tls(&p.grpc_tls, &p.grpc_cert_file),
                    grpc_credentials: grpc_credentials(&p.grpc_credentials_key, &p.grpc_credentials_value),
                };
                let proxy = Proxy::open(settings).map_err(|e| format!("proxies: {:?}: {e}", p.name))?;
                if named.insert(p.name.clone(), proxy).is_some() {
                    return Err(format!("proxies: {:?} is defined twice", p.name));
                }
                proxies.forwarded.extend(p.http_headers.iter().chain(&p.grpc_metadata).cloned());
            }
            let pick = |option: &str, name: &str| -> Result<Option<Arc<Proxy>>, String> {
                if name.is_empty() {
                    return Ok(None);
                }
                named
                    .get(name)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| format!("{option}: no proxy named {name:?} in proxies"))
            };
            proxies.connect = pick("connect_proxy_name", &config.connect_proxy_name)?;
            proxies.refresh = pick("refresh_proxy_name", &config.refresh_proxy_name)?;
            proxies.rpc = pick("rpc_proxy_name", &config.rpc_proxy_name)?;
            let mut rpc_namespaces = HashMap::new();
            for ns in &config.rpc_namespaces {
                if ns.name.is_empty() {
                    return Err("rpc_namespaces: every RPC namespace needs a name".into());
                }
                let proxy = pick("rpc_namespaces.rpc_proxy_name", &ns.rpc_proxy_name)?;
                if rpc_namespaces.insert(ns.name.clone(), proxy).is_some() {
                    return Err(format!("rpc_namespaces: {:?} is defined twice", ns.name));
                }
            }
            proxies.rpc_namespaces = Some((rpc_namespaces, config.rpc_namespace_boundary.clone()));
            let channel_options = std::iter::once(&config.channel).chain(config.namespaces.iter().map(|n| &n.options));
            for o in channel_options {
                for (name, map, option) in [
                    (&o.subscribe_proxy_name, &mut proxies.subscribe, "subscribe_proxy_name"),
                    (&o.publish_proxy_name, &mut proxies.publish, "publish_proxy_name"),
                    (&o.sub_refresh_proxy_name, &mut proxies.sub_refresh, "sub_refresh_proxy_name"),
                ] {
                    if let Some(proxy) = pick(option, name)? {
                        map.insert(name.clone(), proxy);
                    }
                }
            }
            proxies.pick_map_proxies(config, pick)?;
        } else {
            let static_headers: Vec<(String, String)> = config.proxy_static_http_headers.clone().into_iter().collect();
            let open = |option: &str, endpoint: &str, timeout: Duration| -> Result<Option<Arc<Proxy>>, String> {
                if endpoint.is_empty() {
                    return Ok(None);
                }
                let settings = Settings {
                    endpoint,
                    timeout,
                    http_headers: &config.proxy_http_headers,
                    grpc_metadata: &config.proxy_grpc_metadata,
                    static_headers: static_headers.clone(),
                    include_meta: config.proxy_include_connection_meta,
                    binary: config.proxy_binary_encoding,
                    concurrency,
                    http_tls: &config.proxy_http_tls,
                    grpc_tls: grpc_tls(&config.proxy_grpc_tls, &config.proxy_grpc_cert_file),
                    grpc_credentials: grpc_credentials(
                        &config.proxy_grpc_credentials_key,
                        &config.proxy_grpc_credentials_value,
                    ),
                };
                Proxy::open(settings).map(Some).map_err(|e| format!("{option}: {e}"))
            };
            proxies.connect =
                open("proxy_connect_endpoint", &config.proxy_connect_endpoint, config.proxy_connect_timeout)?;
            proxies.refresh =
                open("proxy_refresh_endpoint", &config.proxy_refresh_endpoint, config.proxy_refresh_timeout)?;
            proxies.rpc = open("proxy_rpc_endpoint", &config.proxy_rpc_endpoint, config.proxy_rpc_timeout)?;
            let channel = [
                (
                    "proxy_subscribe_endpoint",
                    &config.proxy_subscribe_endpoint,
                    config.proxy_subscribe_timeout,
                    &mut proxies.subscribe,
                ),
                (
                    "proxy_publish_endpoint",
                    &config.proxy_publish_endpoint,
                    config.proxy_publish_timeout,
                    &mut proxies.publish,
                ),
                (
                    "proxy_sub_refresh_endpoint",
                    &config.proxy_sub_refresh_endpoint,
                    config.proxy_sub_refresh_timeout,
                    &mut proxies.sub_refresh,
                ),
            ];
            for (option, endpoint, timeout, map) in channel {
                if let Some(proxy) = open(option, endpoint, timeout)? {
                    map.insert(String::new(), proxy);
                }
            }
            proxies.open_map_proxies(config, open)?;
            proxies.forwarded = config.proxy_http_headers.iter().chain(&config.proxy_grpc_metadata).cloned().collect();
        }
        proxies.shared_poll_refresh = shared_poll_proxies(config)?;
        proxies.forwarded.sort();
        proxies.forwarded.dedup();
        Ok(proxies)
    }

    /// The proxy answering an RPC `method`. In granular mode a method
    /// holding the namespace boundary (`ns:method`) goes to its RPC
    /// namespace's proxy, others to `rpc_proxy_name`, as Centrifugo v5's
    /// `RPCHandler` picks them; otherwise every method goes to the RPC proxy.
    pub(crate) fn rpc_for(&self, method: &str) -> RpcRoute {
        let proxy = match &self.rpc_namespaces {
            Some((namespaces, boundary)) if !boundary.is_empty() && method.contains(boundary.as_str()) => {
                let name = method.split(boundary.as_str()).next().unwrap_or_default();
                match namespaces.get(name) {
                    Some(proxy) => proxy.clone(),
                    None => return RpcRoute::MethodNotFound,
                }
            }
            _ => self.rpc.clone(),
        };
        proxy.map_or(RpcRoute::NotAvailable, RpcRoute::Proxy)
    }

    /// The subscribe proxy of a channel whose options enable one.
    pub(crate) fn subscribe_for(&self, o: &crate::channels::ChannelOptions, granular: bool) -> Option<Arc<Proxy>> {
        Self::channel_proxy(&self.subscribe, o.proxy_subscribe, &o.subscribe_proxy_name, granular)
    }

    /// The publish proxy of a channel whose options enable one.
    pub(crate) fn publish_for(&self, o: &crate::channels::ChannelOptions, granular: bool) -> Option<Arc<Proxy>> {
        Self::channel_proxy(&self.publish, o.proxy_publish, &o.publish_proxy_name, granular)
    }

    /// The sub_refresh proxy of a channel whose options enable one.
    pub(crate) fn sub_refresh_for(&self, o: &crate::channels::ChannelOptions, granular: bool) -> Option<Arc<Proxy>> {
        Self::channel_proxy(&self.sub_refresh, o.proxy_sub_refresh, &o.sub_refresh_proxy_name, granular)
    }

    /// The shared_poll_refresh proxy a `shared_poll.proxy_name` names.
    pub(crate) fn shared_poll_refresh_for(&self, name: &str) -> Option<Arc<Proxy>> {
        let name = if name == "default" { "" } else { name };
        self.shared_poll_refresh.get(name).cloned()
    }

    fn channel_proxy(
        map: &HashMap<String, Arc<Proxy>>,
        enabled: bool,
        name: &str,
        granular: bool,
    ) -> Option<Arc<Proxy>> {
        if granular {
            (!name.is_empty()).then(|| map.get(name).cloned()).flatten()
        } else {
            enabled.then(|| map.get("").cloned()).flatten()
        }
    }

    /// Keeps only the upgrade request headers some proxy forwards.
    pub(crate) fn origin(&self, headers: &::http::HeaderMap, protocol: &'static str) -> ClientOrigin {
        let headers = self
            .forwarded
            .iter()
            .filter_map(|name| {
                let value = headers.get(name.as_str())?.to_str().ok()?;
                Some((name.clone(), value.to_string()))
            })
            .collect();
        ClientOrigin { headers, transport: "websocket", protocol }
    }

    /// One line per configured proxy (`event -> endpoint`), for
    /// `checkconfig` and the startup log; credentials in URLs are hidden.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (event, proxy) in [("connect", &self.connect), ("refresh", &self.refresh), ("rpc", &self.rpc)] {
            if let Some(p) = proxy {
                lines.push(format!("{event} -> {} (timeout {})", p.url, humantime::format_duration(p.timeout)));
            }
        }
        for (event, map) in [
            ("subscribe", &self.subscribe),
            ("publish", &self.publish),
            ("sub_refresh", &self.sub_refresh),
            ("map_publish", &self.map_publish),
            ("map_remove", &self.map_remove),
        ] {
            let mut names: Vec<_> = map.iter().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (name, p) in names {
                let label = if name.is_empty() { event.to_string() } else { format!("{event} ({name})") };
                lines.push(format!("{label} -> {} (timeout {})", p.url, humantime::format_duration(p.timeout)));
            }
        }
        lines
    }
}

/// An endpoint without user information (`http://user:secret@host` shows
/// as `http://***@host`), so logs never carry credentials.
fn redact(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else { return endpoint.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => endpoint.to_string(),
    }
}

/// The shared_poll_refresh proxies (issue #20): `proxy_shared_poll_refresh_endpoint`
/// for namespaces whose `shared_poll.proxy_name` is empty or `default`
/// (Centrifugo's `channel.proxy.shared_poll_refresh`), and each other name
/// from `proxies`, in either proxy mode.
fn shared_poll_proxies(config: &Config) -> Result<HashMap<String, Arc<Proxy>>, String> {
    let mut out = HashMap::new();
    let static_headers: Vec<(String, String)> = config.proxy_static_http_headers.clone().into_iter().collect();
    if !config.proxy_shared_poll_refresh_endpoint.is_empty() {
        let settings = Settings {
            endpoint: &config.proxy_shared_poll_refresh_endpoint,
            timeout: config.proxy_shared_poll_refresh_timeout,
            http_headers: &config.proxy_http_headers,
            grpc_metadata: &config.proxy_grpc_metadata,
            static_headers,
            include_meta: false,
            binary: false,
            concurrency: config.proxy_max_concurrency,
            http_tls: &config.proxy_http_tls,
            grpc_tls: grpc_tls(&config.proxy_grpc_tls, &config.proxy_grpc_cert_file),
            grpc_credentials: grpc_credentials(
                &config.proxy_grpc_credentials_key,
                &config.proxy_grpc_credentials_value,
            ),
        };
        let proxy = Proxy::open(settings).map_err(|e| format!("proxy_shared_poll_refresh_endpoint: {e}"))?;
        out.insert(String::new(), proxy);
    }
    let channel_options = std::iter::once(&config.channel).chain(config.namespaces.iter().map(|n| &n.options));
    for o in channel_options {
        let name = o.shared_poll.proxy_name.as_str();
        if name.is_empty() || name == "default" || out.contains_key(name) {
            continue;
        }
        let p = config
            .proxies
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("shared_poll.proxy_name: no proxy named {name:?} in proxies"))?;
        let settings = Settings {
            endpoint: &p.endpoint,
            timeout: p.timeout.unwrap_or(Duration::from_secs(1)),
            http_headers: &p.http_headers,
            grpc_metadata: &p.grpc_metadata,
            static_headers: p.static_http_headers.clone().into_iter().collect(),
            include_meta: false,
            binary: false,
            concurrency: config.proxy_max_concurrency,
            http_tls: &p.http_tls,
            grpc_tls: grpc_tls(&p.grpc_tls, &p.grpc_cert_file),
            grpc_credentials: grpc_credentials(&p.grpc_credentials_key, &p.grpc_credentials_value),
        };
        let proxy = Proxy::open(settings).map_err(|e| format!("proxies: {name:?}: {e}"))?;
        out.insert(name.to_string(), proxy);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn endpoints_lose_their_credentials_in_logs() {
        assert_eq!(redact("http://u:secret@host:3000/connect"), "http://***@host:3000/connect");
        assert_eq!(redact("grpc://127.0.0.1:1"), "grpc://127.0.0.1:1");
    }
}
