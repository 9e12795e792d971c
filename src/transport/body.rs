//! Request bodies of the HTTP transports: read whole, within a limit.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::StatusCode;

/// Status for a body larger than the limit (Centrifugo's `MaxBytesReader`).
pub(crate) const TOO_LARGE: StatusCode = StatusCode::PAYLOAD_TOO_LARGE;

/// Centrifugo answers 499 when the body cannot be read (the client went away).
pub(crate) fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Reads a body of at most `limit` bytes; a larger one is refused with 413
/// as soon as the limit is passed (nothing more is read), a broken one
/// with 499.
pub(crate) async fn read<S, B>(body: S, limit: usize) -> Result<Bytes, StatusCode>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    futures_util::pin_mut!(body);
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| client_closed())?;
        if out.len() + chunk.remaining() > limit {
            return Err(TOO_LARGE);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}
