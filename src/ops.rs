//! The operations endpoints: `/health` (liveness), `/ready` (readiness) and
//! `/metrics`, both while the gateway serves and, before NATS is reached,
//! while it retries ([`crate::startup`]).

use http::StatusCode;
use std::sync::Arc;
use warp::Filter;

use crate::context::AppContext;
use crate::metrics::{self, Gauges};
use crate::shutdown::Shutdown;

/// `/health` (liveness), `/ready` (readiness) and `/metrics`.
pub(crate) fn routes(
    app: Arc<AppContext>,
    shutdown: Shutdown,
) -> impl Filter<Extract = (http::Response<String>,), Error = warp::Rejection> + Clone {
    let health = warp::path!("health").and(warp::get()).map(|| text(StatusCode::OK, "{}", "application/json"));
    let ready_app = app.clone();
    let ready = warp::path!("ready").and(warp::get()).map(move || {
        if shutdown.is_draining() {
            text(StatusCode::SERVICE_UNAVAILABLE, r#"{"ready":false,"reason":"draining"}"#, "application/json")
        } else if !ready_app.broker.is_connected() {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"ready":false,"reason":"broker disconnected"}"#,
                "application/json",
            )
        } else {
            text(StatusCode::OK, r#"{"ready":true}"#, "application/json")
        }
    });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .map(move || text(StatusCode::OK, &metrics::render(&gauges(&app)), "text/plain; version=0.0.4"));
    health.or(ready).unify().or(metrics).unify()
}

fn text(status: StatusCode, body: &str, content_type: &'static str) -> http::Response<String> {
    let mut response = http::Response::new(body.to_string());
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", http::HeaderValue::from_static(content_type));
    response
}

/// The gauges of `/metrics`, read from the hub and the broker.
fn gauges(app: &AppContext) -> Gauges {
    let hub = &app.hub;
    Gauges {
        connections: hub.num_clients(),
        users: hub.num_users(),
        subscriptions: hub.num_subscriptions(),
        channels: hub.num_channels(),
        broker_connected: app.broker.is_connected(),
    }
}

/// What the ports answer before NATS is reached.
pub(crate) fn connecting_routes(
) -> impl Filter<Extract = (http::Response<String>,), Error = std::convert::Infallible> + Clone {
    let json = "application/json";
    let health = warp::path!("health").and(warp::get()).map(move || text(StatusCode::OK, "{}", json));
    let ready = warp::path!("ready")
        .and(warp::get())
        .map(move || text(StatusCode::SERVICE_UNAVAILABLE, r#"{"ready":false,"reason":"connecting to NATS"}"#, json));
    let rest = warp::any().map(move || {
        text(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"natsgate is starting: NATS is not reachable yet"}"#, json)
    });
    health.or(ready).unify().or(rest).unify()
}
