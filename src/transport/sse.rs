//! SSE at `/connection/sse` (`NATSGATE_SSE`), JSON only.
//!
//! As centrifuge's `SSEHandler`: `GET` with the connect command in the
//! `cf_connect` query parameter (missing: 400), or `POST` with it as the
//! body (at most `sse_max_request_body_size`, else 413); other methods 405.
//! The response is `text/event-stream`, opened with `\r\n`, then one
//! `data: <reply>` event per reply or push. Later commands arrive through
//! [`super::emulation`].

use http::{HeaderMap, Method, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use warp::reply::Response;
use warp::Filter;

use super::stream::{self, Framing, Opening};
use super::{body, cors, Kind};
use crate::context::AppContext;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;

/// The query parameter carrying the connect command or request.
pub(crate) const CONNECT_PARAM: &str = "cf_connect";

/// Passes when `enabled`, else rejects as an unknown path (404).
pub(crate) fn only_if(enabled: bool) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::any()
        .and_then(move || async move {
            if enabled {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// The query parameters, empty when there is no query.
pub(crate) fn query() -> impl Filter<Extract = (HashMap<String, String>,), Error = std::convert::Infallible> + Clone {
    warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify()
}

/// The warp route (rejects with 404 when the transport is off).
pub(crate) fn route(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("connection" / "sse")
        .and(only_if(app.config.sse))
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(query())
        .and(warp::body::stream())
        .then(move |method: Method, headers: HeaderMap, query: HashMap<String, String>, stream| {
            let (app, shutdown) = (app.clone(), shutdown.clone());
            async move {
                let frame = if method == Method::GET {
                    match query.get(CONNECT_PARAM).filter(|c| !c.is_empty()) {
                        Some(connect) => Ok(bytes::Bytes::from(connect.clone())),
                        None => Err(StatusCode::BAD_REQUEST),
                    }
                } else if method == Method::POST {
                    body::read(stream, app.config.sse_max_request_body_size).await
                } else {
                    Err(StatusCode::METHOD_NOT_ALLOWED)
                };
                let mut response = match frame.and_then(|f| stream::admit(&app, &shutdown).map(|()| f)) {
                    Err(status) => cors::status(status),
                    Ok(frame) => stream::start(
                        app.clone(),
                        shutdown,
                        Kind::Sse,
                        Protocol::Json,
                        Framing::Sse,
                        Opening::Frame(frame),
                        headers.clone(),
                    ),
                };
                cors::apply(&app, &headers, &mut response);
                response
            }
        })
}
