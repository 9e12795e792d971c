//! natsgate: a Centrifugo-compatible real-time gateway that routes through NATS.
//!
//! # Layout
//! Follow a publication from a client socket to the others:
//! - [`transport::websocket`]: the WebSocket endpoint; turns a socket into frames for a session.
//! - [`session`]: the per-client state machine (connect, subscribe, publish, ...), transport-free.
//! - [`protocol`]: Centrifugo protocol types (from `proto/client.proto`), pure JSON/Protobuf codecs, codes.
//! - [`auth`]: connection and subscription JWT verification.
//! - [`channels`]: namespaces and channel permissions, as pure decisions.
//! - [`hub`]: this gateway's channels and users, fan-out into each client's [`outbox`].
//! - [`broker`]: the small `Broker` trait (NATS and in-memory) and the channel -> subject mapping.
//! - [`api`]: the HTTP server API; [`control`]: API commands sent between gateways.
//! - [`config`], [`gateway`], [`server`], [`startup`], [`shutdown`], [`metrics`]: wiring and operations.
//! - [`cli`]: the `natsgate` subcommands.

pub mod api;
pub mod auth;
pub mod broker;
pub mod channels;
pub mod cli;
pub mod config;
pub mod control;
pub mod gateway;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod startup;
pub mod transport;
