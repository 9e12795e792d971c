//! natsgate: a Centrifugo-compatible real-time gateway that routes through NATS.
pub mod protocol;
pub mod config;
pub mod auth;
