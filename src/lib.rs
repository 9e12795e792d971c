//! natsgate: a Centrifugo-compatible real-time gateway that routes through NATS.
//!
//! # Layout
//! The modules depend on each other one way, along the data path (transport
//! -> session -> hub -> broker); metrics is a leaf that others write to.
//! - [`transport`](crate::transport): the WebSocket endpoint; turns a socket into frames for a session.
//! - [`session`](crate::session): the per-client state machine (connect, subscribe, publish, ...), transport-free.
//! - [`hub`]: this gateway's channels and users, fan-out into each client's [`outbox`].
//! - [`broker`]: the small `Broker` trait (NATS and in-memory) and the channel -> subject mapping ([`broker::subject`]).
//! - [`api`](crate::api): the HTTP and GRPC server API; [`user_command`]: API commands for
//!   one user's connections, carried between gateways; [`survey`](crate::survey): questions asked of every gateway
//!   (info, channels, presence), for the API and sessions alike.
//! - [`protocol`]: Centrifugo protocol types (from `proto/client.proto`), pure JSON/Protobuf codecs, codes.
//! - [`map`]: map subscriptions (key-value channel state, Centrifugo v6.8+): options, client and API commands.
//! - [`auth`]: connection and subscription JWT verification.
//! - [`channels`]: namespaces and channel permissions, as pure decisions; [`origin`]: the `Origin` check.
//! - [`config`]: the `NATSGATE_*` options; [`context`](crate::context): the application context every
//!   connection and API call shares.
//! - [`server`](crate::server), [`startup`](crate::startup), [`ops`](crate::ops), [`shutdown`](crate::shutdown),
//!   [`metrics`](crate::metrics): serving, health and readiness, drain, metrics.
//! - [`admin`](crate::admin): the admin web interface (an embedded static app) and its endpoints.
//! - [`cli`]: the `natsgate` subcommands.
//!
//! # Public surface
//! Only what the `natsgate` binary, the tests and the benchmarks use is
//! public: [`cli`], [`config`] (and the types its settings hold:
//! [`channels`], [`origin`]), [`auth`] (verifying and minting tokens),
//! [`protocol`] (the client protocol and codecs), [`broker::subject`] (the
//! channel -> NATS subject mapping), and for in-process benchmarks of the
//! fan-out the [`hub`] with what it is made of: the [`broker`] trait and its
//! in-memory implementation, [`outbox`], [`user_command`]. Everything else
//! (the NATS broker, sessions, transports, the API, serving) is private to
//! the crate, and `unreachable_pub` is denied so that an unused item shows
//! as dead code.

#![deny(unreachable_pub)]

pub(crate) mod admin;
pub(crate) mod api;
pub mod auth;
pub mod broker;
pub mod channels;
pub mod cli;
pub mod config;
pub(crate) mod context;
pub(crate) mod delta;
// Entry points for the fuzz targets in fuzz/ (`--features fuzzing` only).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod map;
pub(crate) mod metrics;
pub(crate) mod ops;
pub mod origin;
pub mod outbox;
pub mod protocol;
pub mod proxy;
pub(crate) mod server;
pub(crate) mod session;
pub mod shared_poll;
pub(crate) mod shutdown;
pub(crate) mod startup;
pub(crate) mod survey;
pub(crate) mod tags_filter;
pub(crate) mod transport;
pub mod user_command;

/// This build's version (`natsgate version`, the connect reply, `info`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
