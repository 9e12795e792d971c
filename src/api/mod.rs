//! Centrifugo-compatible HTTP server API (the GRPC one is in `grpc/`; both
//! feed the [`request::Command`]s that `methods.rs` runs).
//!
//! `POST /api/<method>` with the params as the body (Centrifugo v5+), and
//! the legacy `POST /api` with `{"id","method","params"}` commands one after
//! another, answered by newline-separated replies. Requests authenticate
//! with `X-API-Key: <key>` or `Authorization: apikey <key>`. A body that
//! does not decode into the request (see [`request`]) gets HTTP 400
//! `Bad Request`, as Centrifugo's `handleUnmarshalError` answers it.

pub(crate) mod error;
pub(crate) mod grpc;
mod json;
pub(crate) mod methods;
pub(crate) mod request;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use warp::Filter;

use crate::context::AppContext;
use crate::protocol::codes::ErrorCode;
use error::ApiError;
use request::{Batch, Command, LegacyRequest, Malformed};

/// The API routes. Rejections (oversized bodies, ...) are turned into
/// responses by [`recover`].
pub(crate) fn routes(
    app: Arc<AppContext>,
) -> impl Filter<Extract = (Response<String>,), Error = warp::Rejection> + Clone {
    let limit = app.config.api_max_body_size;
    let with_app = warp::any().map(move || app.clone());
    let auth = warp::header::headers_cloned().and(with_app.clone()).and_then(authenticate);

    let method = warp::path!("api" / String).and(warp::post()).and(auth.clone()).and(bounded_body(limit)).then(
        |method: String, app: Arc<AppContext>, body: Bytes| async move { one_method(&app, &method, &body).await },
    );
    let legacy = warp::path!("api")
        .and(warp::post())
        .and(auth)
        .and(bounded_body(limit))
        .then(|app: Arc<AppContext>, body: Bytes| async move { legacy(&app, &body).await });
    method.or(legacy).unify()
}

#[derive(Debug)]
struct TooLarge;
impl warp::reject::Reject for TooLarge {}

/// The request body, refused with 413 past `limit` bytes whether or not the
/// client sent a Content-Length.
pub(crate) fn bounded_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length, stream| collect_body(limit, length, stream))
}

async fn collect_body<B: warp::Buf>(
    limit: u64,
    length: Option<u64>,
    stream: impl futures_util::Stream<Item = Result<B, warp::Error>>,
) -> Result<Bytes, warp::Rejection> {
    use futures_util::StreamExt;
    if length.is_some_and(|l| l > limit) {
        return Err(warp::reject::custom(TooLarge));
    }
    let mut stream = std::pin::pin!(stream);
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(TooLarge))?;
        if (body.len() + chunk.remaining()) as u64 > limit {
            return Err(warp::reject::custom(TooLarge));
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            body.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

#[derive(Debug)]
struct Unauthorized;
impl warp::reject::Reject for Unauthorized {}

async fn authenticate(headers: HeaderMap, app: Arc<AppContext>) -> Result<Arc<AppContext>, warp::Rejection> {
    if app.config.api_insecure {
        return Ok(app);
    }
    let Some(expected) = app.config.api_key.as_deref().filter(|k| !k.is_empty()) else {
        return Err(warp::reject::custom(Unauthorized));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let given = header("x-api-key").or_else(|| {
        header("authorization").and_then(|a| {
            let (scheme, key) = a.split_once(' ')?;
            scheme.eq_ignore_ascii_case("apikey").then_some(key.trim())
        })
    });
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => Ok(app),
        _ => Err(warp::reject::custom(Unauthorized)),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<String> {
    let mut response = Response::new(body.to_string());
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    response
}

fn transport_errors(app: &AppContext) -> bool {
    app.config.api_error_mode == crate::config::ErrorMode::Transport
}

fn reply(app: &AppContext, outcome: Result<Value, ApiError>) -> Response<String> {
    match outcome {
        Ok(result) => json_response(StatusCode::OK, &json!({ "result": result })),
        Err(e) if transport_errors(app) => json_response(e.status(), &json!({ "error": e.body() })),
        Err(e) => json_response(StatusCode::OK, &json!({ "error": e.body() })),
    }
}

/// HTTP 400 for a body that is not the method's request, exactly as Go's
/// `http.Error` writes it (whatever the error mode).
fn malformed() -> Response<String> {
    let mut response = Response::new("Bad Request\n".to_string());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    let headers = response.headers_mut();
    headers.insert("content-type", http::HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    response
}

pub(crate) async fn one_method(app: &Arc<AppContext>, method: &str, body: &[u8]) -> Response<String> {
    // Not UTF-8 cannot be JSON text (Go would replace bad bytes inside
    // strings; natsgate refuses them).
    let Ok(body) = std::str::from_utf8(body) else { return malformed() };
    if method == "batch" {
        // Centrifugo answers batch with its replies at the top level.
        return match Batch::decode(body, methods::MAX_BATCH) {
            Err(Malformed) => malformed(),
            Ok(Err(_too_many)) => reply(app, Err(ApiError(ErrorCode::LIMIT_EXCEEDED))),
            Ok(Ok(batch)) => match batch_json(app, batch).await {
                Ok(replies) => json_response(StatusCode::OK, &replies),
                Err(e) => reply(app, Err(e)),
            },
        };
    }
    match Command::decode(method, body) {
        Err(Malformed) => malformed(),
        Ok(None) => reply(app, Err(ApiError(ErrorCode::METHOD_NOT_FOUND))),
        Ok(Some(command)) => reply(app, call(app, command).await),
    }
}

/// One command's JSON result (metrics recorded by `methods::execute`).
async fn call(app: &Arc<AppContext>, command: Command) -> Result<Value, ApiError> {
    json::result(methods::execute(app, command).await?)
}

/// A decoded batch's JSON answer.
async fn batch_json(app: &Arc<AppContext>, batch: Batch) -> Result<Value, ApiError> {
    let parallel = batch.parallel;
    let replies = methods::batch(app, json::batch_commands(batch), parallel).await?;
    Ok(json::batch_replies(replies))
}

/// Legacy `/api`: every command decoded first (any malformed one: 400 and
/// nothing run), then run in order, each answered by a line.
pub(crate) async fn legacy(app: &Arc<AppContext>, body: &[u8]) -> Response<String> {
    let Ok(body) = std::str::from_utf8(body) else { return malformed() };
    let Ok(commands) = request::decode_legacy(body) else { return malformed() };
    let mut lines = Vec::with_capacity(commands.len());
    for command in commands {
        let outcome = match command.request {
            LegacyRequest::Run(command) => call(app, command).await,
            LegacyRequest::BadParams => Err(ApiError(ErrorCode::BAD_REQUEST)),
            LegacyRequest::NotFound => Err(ApiError(ErrorCode::METHOD_NOT_FOUND)),
        };
        let mut line = serde_json::Map::new();
        if command.id != 0 {
            line.insert("id".into(), json!(command.id));
        }
        match outcome {
            Ok(result) => line.insert("result".into(), result),
            Err(e) => line.insert("error".into(), json!(e.body())),
        };
        lines.push(Value::Object(line).to_string());
    }
    let mut response = Response::new(lines.join("\n"));
    response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    response
}

/// Turns rejections into plain responses: a wrong key never says more than 401.
pub(crate) async fn recover(rejection: warp::Rejection) -> Result<Response<String>, warp::Rejection> {
    let status = if rejection.find::<Unauthorized>().is_some() {
        StatusCode::UNAUTHORIZED
    } else if rejection.find::<TooLarge>().is_some() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        StatusCode::METHOD_NOT_ALLOWED
    } else if rejection.is_not_found() {
        StatusCode::NOT_FOUND
    } else {
        return Err(rejection);
    };
    let mut response = Response::new(status.canonical_reason().unwrap_or("").to_string());
    *response.status_mut() = status;
    Ok(response)
}
