//! The accept loop: WebSocket upgrades go straight to tungstenite, every
//! other request to the warp routes through hyper.
//!
//! Why not let warp serve everything: a WebSocket connect through hyper costs
//! an HTTP/1 dispatcher, an 8 KiB read buffer, the upgrade hand-over and a
//! boxed `Upgraded` stream, about a third of the gateway's CPU in a connect
//! storm (benches/README.md, scenario d). Peeking at the request head tells
//! the two apart without consuming a byte; anything unusual (a head split
//! over several packets, too many headers) takes the hyper path, whose
//! WebSocket route handles upgrades too.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use warp::Filter;

use super::websocket;
use crate::context::AppContext;
use crate::shutdown::Shutdown;

/// How long a new connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a request head we look at; longer heads take the hyper path.
const PEEK_BYTES: usize = 4096;

/// What a new connection turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    WebSocket,
    Http,
    /// Closed or silent: nothing to serve.
    Gone,
}

/// Serves `listener` until `stop` resolves, then waits for in-flight HTTP
/// requests (upgraded WebSocket connections are tracked by `Shutdown`).
/// With `websocket`, upgrades to `/connection/websocket` take the fast path.
/// `listener` is a `TcpListener` or a reference to one: the startup phase
/// (`crate::startup`) serves a borrowed listener and keeps it for the gateway.
/// With `tls` every connection first completes a TLS handshake and then
/// takes the hyper path (a peek cannot read through TLS; the warp WebSocket
/// route upgrades those connections).
pub(crate) async fn serve<F>(
    listener: impl Borrow<TcpListener>,
    filter: F,
    websocket: Option<(Arc<AppContext>, Shutdown)>,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.borrow().accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin; the listener itself stays usable.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(warp::service(filter.clone()));
        let websocket = websocket.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            if let Some(acceptor) = tls {
                let Some(stream) = super::tls::handshake(&acceptor, stream).await else { return };
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(e) = Box::pin(watcher.watch(connection)).await {
                    tracing::debug!("https connection: {e}");
                }
                return;
            }
            if let Some((app, shutdown)) = websocket {
                match classify(&stream).await {
                    Kind::WebSocket => {
                        // Shutdown waits for every live watcher; WebSocket
                        // connections are drained by `Shutdown` instead.
                        drop(watcher);
                        return websocket::accept(stream, app, shutdown).await;
                    }
                    Kind::Gone => return,
                    Kind::Http => {}
                }
            }
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            // Boxed so that this task stays the size of a WebSocket connection.
            if let Err(e) = Box::pin(watcher.watch(connection)).await {
                tracing::debug!("http connection: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Peeks at the request head without consuming it.
async fn classify(stream: &TcpStream) -> Kind {
    let mut buf = vec![0u8; PEEK_BYTES];
    let n = match tokio::time::timeout(HEAD_TIMEOUT, stream.peek(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return Kind::Gone,
    };
    if is_websocket_upgrade(&buf[..n]) {
        Kind::WebSocket
    } else {
        Kind::Http
    }
}

/// A complete `GET /connection/websocket` head asking for a WebSocket upgrade.
fn is_websocket_upgrade(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let path = request.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    request.method == Some("GET")
        && path == websocket::PATH
        && request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("upgrade") && h.value.eq_ignore_ascii_case(b"websocket"))
}

#[cfg(test)]
mod tests {
    use super::is_websocket_upgrade;

    #[test]
    fn recognises_only_complete_websocket_upgrades() {
        let upgrade = b"GET /connection/websocket?cf_protocol=protobuf HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
                        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert!(is_websocket_upgrade(upgrade));
        // Split head, other path, other method, no upgrade header: hyper's turn.
        assert!(!is_websocket_upgrade(&upgrade[..40]));
        assert!(!is_websocket_upgrade(b"GET /connection/websocketx HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!is_websocket_upgrade(b"POST /connection/websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!is_websocket_upgrade(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!is_websocket_upgrade(b"POST /api/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!is_websocket_upgrade(b"\x16\x03\x01 garbage"));
    }
}
