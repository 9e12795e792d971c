//! Bidirectional emulation: `POST /emulation` carries the commands of an
//! HTTP-streaming or SSE client after its connect.
//!
//! The body is an `EmulationRequest` (`{"session","node","data"}` in JSON,
//! where `data` is a JSON string holding the commands; or Protobuf with
//! `Content-Type: application/octet-stream`), naming the session and node
//! the connect reply announced. The node is a gateway's unique id: when it
//! is this gateway the frame goes straight to the session; otherwise the
//! request travels over NATS to that gateway's subject (gateways are
//! stateless, load balancers need not be sticky). Either way the HTTP
//! request is answered once the owning session has handled the commands
//! (their replies are then queued on its stream), as centrifuge's
//! `EmulationHandler` answers after its survey callback.
//!
//! Statuses follow centrifuge: 204 once handled, and also when the node
//! runs but holds no such session (the client's stream has ended or is
//! about to); 404 when no gateway has that node id; 400 for a body that is
//! no `EmulationRequest` or a `data` the session cannot read; 413 above
//! `emulation_max_request_body_size`; 500 when the node did not answer.
//!
//! The session id is the credential: an unguessable v4 UUID that only the
//! connect reply on the client's own stream carries; it never appears in
//! logs, the API or presence (which show the client id, a different UUID).

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode};
use parking_lot::Mutex;
use prost::Message as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use warp::reply::Response;
use warp::Filter;

use super::{body, cors};
use crate::broker::AnswerNode;
use crate::context::AppContext;
use crate::protocol::{EmulationRequest, Protocol};

/// A frame of commands handed to a session; `taken` fires once handled.
pub(crate) struct Emulated {
    pub(crate) data: Bytes,
    pub(crate) taken: oneshot::Sender<()>,
}

/// How long a request waits for room in the session's queue and then for
/// its commands to be handled. Under the NATS request timeout, so the asking
/// gateway hears the outcome.
const HANDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the owning gateway answers, one byte on NATS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Handled = 0,
    BadRequest = 1,
    NoSession = 2,
    Busy = 3,
}

impl Outcome {
    fn from_byte(b: Option<&u8>) -> Outcome {
        match b {
            Some(0) => Outcome::Handled,
            Some(1) => Outcome::BadRequest,
            Some(2) => Outcome::NoSession,
            _ => Outcome::Busy,
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Outcome::Handled | Outcome::NoSession => StatusCode::NO_CONTENT,
            Outcome::BadRequest => StatusCode::BAD_REQUEST,
            Outcome::Busy => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The emulation sessions of this gateway, by session id.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, (Protocol, mpsc::Sender<Emulated>)>>,
}

/// Removes its session from [`Sessions`] when dropped.
pub(crate) struct Registration<'a> {
    sessions: &'a Sessions,
    id: String,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sessions.map.lock().remove(&self.id);
    }
}

impl Sessions {
    /// Makes a session reachable from `/emulation` while the guard lives.
    pub(crate) fn register(&self, id: String, protocol: Protocol, tx: mpsc::Sender<Emulated>) -> Registration<'_> {
        self.map.lock().insert(id.clone(), (protocol, tx));
        Registration { sessions: self, id }
    }

    /// Hands `data` (the request's raw `data` field) to the session and
    /// waits until it is handled.
    async fn dispatch(&self, session: &str, data: Bytes) -> Outcome {
        let Some((protocol, tx)) = self.map.lock().get(session).cloned() else { return Outcome::NoSession };
        // A JSON session's frame is the string `data` holds (centrifuge's
        // emulationSurveyHandler); a Protobuf session's is `data` itself.
        let frame = match protocol {
            Protocol::Json => match serde_json::from_slice::<String>(&data) {
                Ok(text) => Bytes::from(text),
                Err(_) => return Outcome::BadRequest,
            },
            Protocol::Protobuf => data,
        };
        let (taken_tx, taken_rx) = oneshot::channel();
        let handled = tokio::time::timeout(HANDLE_TIMEOUT, async move {
            if tx.send(Emulated { data: frame, taken: taken_tx }).await.is_err() {
                return Outcome::NoSession;
            }
            match taken_rx.await {
                Ok(()) => Outcome::Handled,
                Err(_) => Outcome::NoSession,
            }
        });
        handled.await.unwrap_or(Outcome::Busy)
    }
}

/// Answers the emulation requests other gateways route here over NATS.
pub(crate) struct Answerer(pub(crate) Arc<AppContext>);

impl AnswerNode for Answerer {
    fn answer(&self, request: Bytes) -> BoxFuture<'static, Bytes> {
        let app = self.0.clone();
        Box::pin(async move {
            let outcome = match EmulationRequest::decode(request) {
                Ok(req) => app.emulation.dispatch(&req.session, req.data).await,
                Err(_) => Outcome::BadRequest,
            };
            Bytes::copy_from_slice(&[outcome as u8])
        })
    }
}

/// Whether `/emulation` is served: with HTTP-streaming or SSE.
pub(crate) fn enabled(app: &AppContext) -> bool {
    app.config.http_stream || app.config.sse
}

/// The warp route for `/emulation` (POST, and OPTIONS preflight).
pub(crate) fn route(app: Arc<AppContext>) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("emulation")
        .and(super::sse::only_if(enabled(&app)))
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, headers: HeaderMap, stream| {
            let app = app.clone();
            async move {
                let mut response = match cors::preflight(&method) {
                    Some(preflight) => preflight,
                    None if method != Method::POST => cors::status(StatusCode::METHOD_NOT_ALLOWED),
                    None => {
                        let limit = app.config.emulation_max_request_body_size;
                        match body::read(stream, limit).await {
                            Ok(data) => cors::status(handle(&app, &headers, data).await),
                            Err(status) => cors::status(status),
                        }
                    }
                };
                cors::apply(&app, &headers, &mut response);
                response
            }
        })
}

async fn handle(app: &Arc<AppContext>, headers: &HeaderMap, data: Bytes) -> StatusCode {
    let protobuf = headers.get("content-type").is_some_and(|v| v.as_bytes() == b"application/octet-stream");
    let request = if protobuf {
        EmulationRequest::decode(data).ok()
    } else {
        serde_json::from_slice::<EmulationRequest>(&data).ok()
    };
    let Some(request) = request else { return StatusCode::BAD_REQUEST };
    if request.node == app.uid {
        return app.emulation.dispatch(&request.session, request.data).await.status();
    }
    let node = request.node.clone();
    match app.broker.request_node(&node, Bytes::from(request.encode_to_vec())).await {
        Ok(Some(answer)) => Outcome::from_byte(answer.first()).status(),
        Ok(None) => StatusCode::NOT_FOUND,
        Err(e) => {
            tracing::debug!("emulation request not routed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}
