//! Transports: adapters that turn client sockets into frames for a session.
//!
//! Only WebSocket exists today; HTTP-streaming and SSE will sit beside it and
//! drive the same [`crate::session::Session`].

pub(crate) mod listener;
pub(crate) mod sockjs;
pub(crate) mod tls;
pub(crate) mod websocket;
