//! natsgate: a Centrifugo-compatible real-time gateway that routes through NATS.
pub mod protocol;
pub mod config;
pub mod auth;
pub mod broker;
pub mod outbox;
pub mod hub;
pub mod gateway;
pub mod session;
pub mod transport;
pub mod shutdown;
pub mod server;
pub mod control;
pub mod api;
pub mod metrics;
pub mod cli;
pub mod channels;
