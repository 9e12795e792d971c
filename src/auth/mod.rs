//! Connection JWT verification: keys from config, token in, typed credentials out.
//!
//! (Interface fixed; implementation in progress.)

use bytes::Bytes;
use std::collections::HashMap;

use crate::config::{Config, ConfigError};

/// What a verified connection token says about the client.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Credentials {
    /// `sub`: the user ID; empty for anonymous.
    pub user: String,
    /// When the connection expires (unix seconds): `expire_at` if present
    /// (0 means never), else `exp`. None: never expires.
    pub expire_at: Option<i64>,
    /// `info` (raw JSON) or decoded `b64info`; empty when absent.
    pub info: Bytes,
    /// `channels`: server-side subscriptions made at connect.
    pub channels: Vec<String>,
    /// `subs`: server-side subscriptions with per-channel options.
    pub subs: HashMap<String, SubOptions>,
}

/// Per-channel options of a `subs` claim entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubOptions {
    pub info: Bytes,
    pub data: Bytes,
}

/// Why a token was refused. The session maps these to protocol codes:
/// `Expired` -> error 109 on connect, `Invalid` -> disconnect 3500.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies connection tokens with the keys from config.
pub struct TokenVerifier {
    _private: (),
}

impl TokenVerifier {
    pub fn from_config(_config: &Config) -> Result<Self, ConfigError> {
        Ok(TokenVerifier { _private: () })
    }

    /// Whether any key is configured (no key: every token is invalid).
    pub fn has_keys(&self) -> bool {
        false
    }

    pub fn verify_connect(&self, _token: &str) -> Result<Credentials, TokenError> {
        Err(TokenError::Invalid("not implemented".into()))
    }
}
