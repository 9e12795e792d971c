//! The admin web interface (`NATSGATE_ADMIN`): a static app embedded in the
//! binary and the endpoints it calls, all under `admin_handler_prefix` (P):
//!
//! | path | method | what |
//! | --- | --- | --- |
//! | `P/`, `P/index.html` | GET | the app |
//! | `P/assets/<file>` | GET | its scripts, styles and vendored libraries ([`web`]) |
//! | `P/admin/auth` | POST | login: `password` (form or JSON) -> `{"token"}`; 400 for a wrong one (as Centrifugo), 429 while failures are limited ([`session`]) |
//! | `P/admin/renew` | POST | a fresh token for a valid one |
//! | `P/admin/api` | POST | the server API's legacy form (`{"method","params"}`), as Centrifugo's admin API |
//! | `P/admin/api/<method>` | POST | one server API method, body = its params (batch too) |
//! | `P/admin/cluster` | GET | every live gateway's [`GatewayStats`](crate::survey::GatewayStats) |
//! | `P/admin/settings` | GET | what the page needs to connect as a client (port, TLS) |
//! | `P/admin/channel_token` | POST | `{"channel"}` -> connection and subscription tokens for the channel view |
//!
//! Every `P/admin/*` endpoint but `auth` needs `Authorization: token <admin
//! token>` (Centrifugo's header) and answers 401 otherwise, checked before
//! anything else; `admin_insecure` lifts that. The app is served without a
//! token (it holds no data) and asks for one. Where it is served: the
//! internal port when `internal_port` is set (like Centrifugo), else, or with
//! `admin_external`, the client port.

mod session;
mod web;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use warp::Filter;

use crate::context::AppContext;
use session::{FailureLimit, Sessions};

/// The user name of the channel view's client connection (shown in presence).
const VIEWER_USER: &str = "natsgate-admin";
/// Lifetime of the channel view's connection and subscription tokens; the
/// page asks for new ones when centrifuge-js reports them expired.
const VIEWER_TOKEN_TTL_SECS: u64 = 900;

/// The admin interface's state, built once when `admin` is on.
pub(crate) struct Admin {
    app: Arc<AppContext>,
    /// `None` when `admin_insecure` is on and no secret is set.
    sessions: Option<Sessions>,
    password: Option<String>,
    failures: FailureLimit,
}

/// What a request under the prefix asks for.
enum Target {
    Index,
    Asset(String),
    Auth,
    Renew,
    Legacy,
    Method(String),
    Cluster,
    Settings,
    ChannelToken,
}

type Reply = Response<Vec<u8>>;

impl Admin {
    /// `None` unless `admin` is on; warns about `admin_insecure`.
    pub(crate) fn from_config(app: &Arc<AppContext>) -> Option<Arc<Admin>> {
        let config = &app.config;
        if !config.admin {
            return None;
        }
        let set = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
        if config.admin_insecure {
            tracing::warn!(
                "NATSGATE_ADMIN_INSECURE is on: the admin web interface and its API need no login; use it only locally"
            );
        }
        Some(Arc::new(Admin {
            app: app.clone(),
            sessions: set(&config.admin_secret).map(|s| Sessions::new(&s)),
            password: set(&config.admin_password),
            failures: FailureLimit::new(),
        }))
    }

    /// Whether the admin interface is served on the client port (else on
    /// the internal one).
    pub(crate) fn on_client_port(config: &crate::config::Config) -> bool {
        config.internal_port.is_none() || config.admin_external
    }

    fn target(&self, path: &str) -> Option<Target> {
        let rest = path.strip_prefix(self.app.config.admin_handler_prefix.as_str())?;
        Some(match rest {
            "" | "/" | "/index.html" => Target::Index,
            "/admin/auth" => Target::Auth,
            "/admin/renew" => Target::Renew,
            "/admin/api" => Target::Legacy,
            "/admin/cluster" => Target::Cluster,
            "/admin/settings" => Target::Settings,
            "/admin/channel_token" => Target::ChannelToken,
            _ => {
                if let Some(method) = rest.strip_prefix("/admin/api/") {
                    Target::Method(method.to_string())
                } else if let Some(name) = rest.strip_prefix("/assets/") {
                    Target::Asset(name.to_string())
                } else {
                    return None;
                }
            }
        })
    }

    /// Whether the request carries a valid admin token (or none is needed).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.app.config.admin_insecure {
            return true;
        }
        let Some(sessions) = &self.sessions else { return false };
        let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|a| {
            let (scheme, token) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("token").then_some(token.trim())
        });
        token.is_some_and(|t| sessions.check(t))
    }

    async fn handle(self: Arc<Self>, target: Target, method: Method, headers: HeaderMap, body: Bytes) -> Reply {
        let (needs, protected) = match &target {
            Target::Index | Target::Asset(_) => (Method::GET, false),
            Target::Auth => (Method::POST, false),
            Target::Cluster | Target::Settings => (Method::GET, true),
            _ => (Method::POST, true),
        };
        if protected && !self.authorized(&headers) {
            return plain(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        if method != needs && !(needs == Method::GET && method == Method::HEAD) {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        }
        let app = &self.app;
        match target {
            Target::Index => self.index().await,
            Target::Asset(name) => match web::file(app.config.admin_web_path.as_deref(), &name).await {
                Some((content_type, bytes)) => with_type(StatusCode::OK, content_type, bytes),
                None => plain(StatusCode::NOT_FOUND, "Not Found"),
            },
            Target::Auth => self.login(&headers, &body),
            Target::Renew => match &self.sessions {
                Some(sessions) => json_reply(StatusCode::OK, &json!({ "token": sessions.mint() })),
                None => plain(StatusCode::BAD_REQUEST, "Bad Request"),
            },
            Target::Legacy => {
                tracing::info!("admin API call (legacy form)");
                crate::api::legacy(app, &body).await.map(String::into_bytes)
            }
            Target::Method(method) => {
                tracing::info!(method = %crate::metrics::method_label(&method), "admin API call");
                crate::api::one_method(app, &method, &body).await.map(String::into_bytes)
            }
            Target::Cluster => match crate::survey::stats(app).await {
                Ok(nodes) => json_reply(StatusCode::OK, &json!({ "time_ms": now_ms(), "nodes": nodes })),
                Err(e) => json_reply(StatusCode::SERVICE_UNAVAILABLE, &json!({ "error": e.to_string() })),
            },
            Target::Settings => json_reply(
                StatusCode::OK,
                &json!({
                    "name": app.config.name,
                    "version": crate::VERSION,
                    "client_port": app.config.port,
                    "tls": app.config.tls,
                    "websocket_path": crate::transport::websocket::PATH,
                    "insecure": app.config.admin_insecure,
                    "token_ttl_secs": session::TOKEN_TTL.as_secs(),
                }),
            ),
            Target::ChannelToken => self.channel_tokens(&body),
        }
    }

    /// The app's page, with a `<base>` so its relative links work under
    /// any prefix.
    async fn index(&self) -> Reply {
        let config = &self.app.config;
        let Some((content_type, bytes)) = web::file(config.admin_web_path.as_deref(), "index.html").await else {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        };
        let page = String::from_utf8_lossy(&bytes).replacen(
            "<head>",
            &format!("<head>\n<base href=\"{}/\">", config.admin_handler_prefix),
            1,
        );
        let mut reply = with_type(StatusCode::OK, content_type, page.into_bytes());
        reply.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
        reply
    }

    /// `POST admin/auth`: the password from a form (`password=...`, as
    /// Centrifugo's page sends it) or a JSON object. Never logged.
    fn login(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        let (Some(sessions), Some(expected)) = (&self.sessions, &self.password) else {
            return plain(StatusCode::BAD_REQUEST, "Bad Request");
        };
        if !self.failures.allows() {
            tracing::warn!("admin login refused: too many failed logins, retry later");
            return plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        }
        let json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim_start().starts_with("application/json"));
        let given = if json {
            serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("password")?.as_str().map(str::to_string))
        } else {
            form_field(body, "password")
        };
        if given.is_some_and(|g| session::password_matches(&g, expected)) {
            tracing::info!("admin login");
            return json_reply(StatusCode::OK, &json!({ "token": sessions.mint() }));
        }
        self.failures.failed();
        tracing::warn!("admin login failed: wrong password");
        plain(StatusCode::BAD_REQUEST, "Bad Request")
    }

    /// `POST admin/channel_token`: tokens for the channel view's client,
    /// signed with the gateway's own HMAC keys so its usual checks apply;
    /// the subscription token lets it watch any channel, as an admin may.
    fn channel_tokens(&self, body: &[u8]) -> Reply {
        let config = &self.app.config;
        fn set(o: &Option<String>) -> Option<&str> {
            o.as_deref().filter(|s| !s.is_empty())
        }
        let Some(key) = set(&config.token_hmac_secret_key) else {
            return json_reply(
                StatusCode::CONFLICT,
                &json!({"error": "the channel view needs NATSGATE_TOKEN_HMAC_SECRET_KEY (HMAC connection tokens)"}),
            );
        };
        let sub_key = set(&config.subscription_token_hmac_secret_key).unwrap_or(key);
        let channel = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("channel")?.as_str().map(str::to_string))
            .filter(|c| !c.is_empty());
        let now = now_ms() / 1000;
        let mut claims = json!({ "sub": VIEWER_USER, "iat": now, "exp": now + VIEWER_TOKEN_TTL_SECS });
        if let Some(aud) = set(&config.token_audience) {
            claims["aud"] = json!(aud);
        }
        if let Some(iss) = set(&config.token_issuer) {
            claims["iss"] = json!(iss);
        }
        let connection = crate::auth::mint_hs256(key, &claims);
        let subscription = channel.map(|c| {
            claims["channel"] = json!(c);
            crate::auth::mint_hs256(sub_key, &claims)
        });
        json_reply(
            StatusCode::OK,
            &json!({ "user": VIEWER_USER, "connection_token": connection, "subscription_token": subscription }),
        )
    }
}

/// The admin routes (rejecting, so other routes answer, for every path
/// outside them and for everything when `admin` is `None`).
pub(crate) fn routes(
    admin: Option<Arc<Admin>>,
    body_limit: u64,
) -> impl Filter<Extract = (Reply,), Error = warp::Rejection> + Clone {
    let matched = warp::path::full().and_then(move |path: warp::path::FullPath| {
        let admin = admin.clone();
        async move {
            let admin = admin.ok_or_else(warp::reject::not_found)?;
            let target = admin.target(path.as_str()).ok_or_else(warp::reject::not_found)?;
            Ok::<_, warp::Rejection>((admin, target))
        }
    });
    matched
        .untuple_one()
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(crate::api::bounded_body(body_limit))
        .then(|admin: Arc<Admin>, target, method, headers, body| admin.handle(target, method, headers, body))
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name).then(|| percent_decode(value)).flatten()
    })
}

/// Form decoding: `+` is a space, `%XX` a byte; `None` for bad escapes or
/// text that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(body);
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // Everything the app loads is its own; it connects back to this host.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self' ws: wss:; frame-ancestors 'none'",
        ),
    );
    reply
}

fn plain(status: StatusCode, text: &str) -> Reply {
    with_type(status, "text/plain; charset=utf-8", text.as_bytes().to_vec())
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut reply = with_type(status, "application/json", body.to_string().into_bytes());
    reply.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    reply
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_fields_decode() {
        assert_eq!(super::form_field(b"password=a%20b+c%26", "password").as_deref(), Some("a b c&"));
        assert_eq!(super::form_field(b"x=1&password=p", "password").as_deref(), Some("p"));
        assert_eq!(super::form_field(b"x=1", "password"), None);
        assert_eq!(super::form_field(b"password=%zz", "password"), None);
    }
}
