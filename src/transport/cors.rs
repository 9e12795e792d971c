//! CORS for the HTTP transports, as Centrifugo's `middleware.CORS`: an
//! allowed `Origin` (per `allowed_origins`, [`crate::origin`]) is echoed with
//! credentials allowed; a request from another origin is still served, only
//! without these headers (the browser then hides the response). Preflight
//! `OPTIONS` requests get 204 with the methods the endpoint takes.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use crate::context::AppContext;

/// Adds the CORS headers for `request` (its headers) to `response`.
pub(crate) fn apply(app: &AppContext, request: &HeaderMap, response: &mut Response) {
    let Some(origin) = request.get("origin").filter(|o| !o.is_empty()) else { return };
    if !app.config.allowed_origins.allows(request) {
        return;
    }
    let h = response.headers_mut();
    h.insert("access-control-allow-origin", origin.clone());
    if let Some(asked) = request.get("access-control-request-headers").filter(|v| v.as_bytes() != b"null") {
        h.append("access-control-allow-headers", asked.clone());
    }
    h.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
}

/// The answer to a preflight request (centrifuge's handlers: 204, max age
/// 300 s, `POST, OPTIONS`), or None when `method` is not `OPTIONS`.
pub(crate) fn preflight(method: &Method) -> Option<Response> {
    if method != Method::OPTIONS {
        return None;
    }
    let mut response = status(StatusCode::NO_CONTENT);
    let h = response.headers_mut();
    h.insert("access-control-max-age", HeaderValue::from_static("300"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("POST, OPTIONS"));
    Some(response)
}

/// An empty response with `status`.
pub(crate) fn status(status: StatusCode) -> Response {
    let mut response = Response::new(bytes::Bytes::new().into());
    *response.status_mut() = status;
    response
}
