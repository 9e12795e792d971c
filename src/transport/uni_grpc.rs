//! Unidirectional GRPC (`NATSGATE_UNI_GRPC`), as Centrifugo's `unigrpc`:
//! the `centrifugal.centrifugo.unistream.CentrifugoUniStream` service
//! (`proto/unistream.proto`) on its own port (`NATSGATE_UNI_GRPC_PORT`,
//! default 11000). A client calls `Consume` once with its connect request
//! and receives a stream of `Push` messages: the connect push, then
//! publications and the rest from the token's `channels`/`subs` and the
//! server API, an empty push as a ping (no answer expected), and, unless the
//! client went away, a `disconnect` push before the stream ends with status
//! OK (Centrifugo's `Consume` returns nil after its transport closes).
//!
//! The session runs on the session driver like every transport; here a
//! push is one GRPC message (the session's Protobuf replies are unwrapped,
//! as centrifuge encodes bare pushes for unidirectional transports).
//! Request metadata are the request headers a proxy may forward.

use bytes::Bytes;
use prost::Message as _;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::Kind;
use crate::config::Config;
use crate::context::AppContext;
use crate::outbox::Outbox;
use crate::protocol::codes::Disconnect;
use crate::protocol::{ConnectRequest, Protocol, Push, Reply};
use crate::session::driver::{self, Client, Drain, Input, Opening, Reader, WriteError, Writer};
use crate::shutdown::Shutdown;

/// The tonic service generated from `proto/unistream.proto` (its
/// `ConnectRequest` and `Push` are the client protocol's types).
#[allow(clippy::all, unreachable_pub, missing_docs, dead_code)]
pub(crate) mod proto {
    tonic::include_proto!("centrifugal.centrifugo.unistream");
}

use proto::centrifugo_uni_stream_server::{CentrifugoUniStream, CentrifugoUniStreamServer};

/// Pushes a stream holds before the writer waits for the client; past that
/// the outbox fills and a client that does not read is closed with 3008.
const STREAM_MESSAGES: usize = 16;
/// How long one push may wait for room in the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Streams one HTTP/2 connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// The address to serve on, when the transport is on.
pub(crate) fn enabled(config: &Config) -> Option<SocketAddr> {
    config.uni_grpc.then(|| SocketAddr::new(config.uni_grpc_address.unwrap_or(config.address), config.uni_grpc_port))
}

/// Serves the service on a bound listener until `stop` resolves (then it
/// stops accepting; open streams end with their sessions, which the drain
/// closes with 3001).
pub(crate) async fn serve(
    app: Arc<AppContext>,
    shutdown: Shutdown,
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send,
) {
    let limit = app.config.uni_grpc_max_receive_message_size;
    let mut service = CentrifugoUniStreamServer::new(UniStream { app, shutdown });
    if limit > 0 {
        service = service.max_decoding_message_size(limit);
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = Server::builder().max_concurrent_streams(MAX_CONCURRENT_STREAMS).add_service(service);
    if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
        tracing::error!("uni_grpc server stopped: {e}");
    }
}

struct UniStream {
    app: Arc<AppContext>,
    shutdown: Shutdown,
}

type Pushes = Pin<Box<dyn futures_util::Stream<Item = Result<Push, Status>> + Send>>;

#[tonic::async_trait]
impl CentrifugoUniStream for UniStream {
    type ConsumeStream = Pushes;

    async fn consume(&self, request: Request<ConnectRequest>) -> Result<Response<Pushes>, Status> {
        if super::stream::admit(&self.app, &self.shutdown).is_err() {
            return Err(Status::unavailable("shutting down or at the connection limit"));
        }
        let headers = request.metadata().clone().into_headers();
        let connect = request.into_inner();
        let (tx, mut rx) = mpsc::channel(STREAM_MESSAGES);
        let client = Client {
            kind: Kind::UniGrpc,
            protocol: Protocol::Protobuf,
            session_id: uuid::Uuid::new_v4().to_string(),
            headers,
            drain: Drain::Spread,
            opening: Some(Opening::Connect(connect)),
        };
        let (app, shutdown) = (self.app.clone(), self.shutdown.clone());
        let outbox = Arc::new(Outbox::new(app.config.client_queue_max_size));
        let reader = StreamReader { stream: tx.clone() };
        let tracker = shutdown.tracker().clone();
        tracker.spawn(async move {
            driver::run(app, &shutdown, client, outbox, reader, Some(StreamWriter { stream: tx })).await;
        });
        let pushes = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|p| p.map(Ok)));
        Ok(Response::new(Box::pin(pushes)))
    }
}

/// Nothing comes from the client after the request; it is gone when its
/// stream is (cancelled or the connection closed).
struct StreamReader {
    stream: mpsc::Sender<Push>,
}

impl Reader for StreamReader {
    async fn next(&mut self) -> Input {
        self.stream.closed().await;
        Input::Closed
    }
}

/// One GRPC message per push.
struct StreamWriter {
    stream: mpsc::Sender<Push>,
}

impl StreamWriter {
    /// Sends the push of each length-delimited reply in `message` (an empty
    /// reply, the ping, becomes an empty push, as centrifuge's ping).
    async fn send(&mut self, mut message: Bytes) -> Result<(), WriteError> {
        while !message.is_empty() {
            let Ok(reply) = Reply::decode_length_delimited(&mut message) else { return Ok(()) };
            match timeout(WRITE_TIMEOUT, self.stream.send(reply.push.unwrap_or_default())).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(None),
                Err(_) => return Err(Some(Disconnect::WRITE_ERROR)),
            }
        }
        Ok(())
    }
}

impl Writer for StreamWriter {
    async fn write(&mut self, batch: &mut VecDeque<Bytes>) -> Result<(), WriteError> {
        for message in batch.drain(..) {
            self.send(message).await?;
        }
        Ok(())
    }

    async fn close(mut self, reason: Disconnect) {
        if reason == Disconnect::CONNECTION_CLOSED {
            return;
        }
        if let Some(push) = super::stream::disconnect_push(Protocol::Protobuf, &reason) {
            let _ = self.send(push).await;
        }
    }
}
