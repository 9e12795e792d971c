//! Token claims as they appear in the JWT payload, and their conversion into
//! typed values (raw-or-base64 payloads, Centrifugo's expiry rule).
//!
//! The standard claims `nbf`, `aud` and `iss` are checked by jsonwebtoken's
//! `Validation` (see `keys.rs`); unknown claims such as `meta` are ignored.
//! `null` reads as absent, as it does for Centrifugo's Go decoder.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Credentials, SubOptions, SubscriptionClaims, TokenError};

#[derive(Deserialize)]
pub(super) struct ConnectClaims {
    sub: Option<String>,
    /// Float too: JWT NumericDate allows fractions, and jsonwebtoken accepts them.
    exp: Option<f64>,
    expire_at: Option<i64>,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    channels: Option<Vec<String>>,
    subs: Option<HashMap<String, SubClaims>>,
    /// Only subscription tokens name a channel.
    channel: Option<String>,
}

/// One `subs` entry. `override` is accepted and ignored.
#[derive(Deserialize)]
struct SubClaims {
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SubscribeClaims {
    sub: Option<String>,
    channel: Option<String>,
    client: Option<String>,
    exp: Option<f64>,
    expire_at: Option<i64>,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
}

impl ConnectClaims {
    pub(super) fn into_credentials(self, now: i64) -> Result<Credentials, TokenError> {
        // Centrifugo refuses a non-empty `channel` (not an empty one): it
        // marks a subscription token offered as a connection token.
        if self.channel.is_some_and(|c| !c.is_empty()) {
            return Err(TokenError::Invalid("connection token has a channel claim".into()));
        }
        let subs = self
            .subs
            .unwrap_or_default()
            .into_iter()
            .map(|(channel, s)| {
                let info = raw_or_b64(s.info, s.b64info, "subs b64info")?;
                let data = raw_or_b64(s.data, s.b64data, "subs b64data")?;
                Ok((channel, SubOptions { info, data }))
            })
            .collect::<Result<_, TokenError>>()?;
        Ok(Credentials {
            user: self.sub.unwrap_or_default(),
            expire_at: expiry(self.exp, self.expire_at, now)?,
            info: raw_or_b64(self.info, self.b64info, "b64info")?,
            channels: self.channels.unwrap_or_default(),
            subs,
        })
    }
}

impl SubscribeClaims {
    pub(super) fn into_subscription(self, now: i64) -> Result<SubscriptionClaims, TokenError> {
        let channel = self.channel.filter(|c| !c.is_empty());
        let channel = channel.ok_or_else(|| TokenError::Invalid("subscription token has no channel claim".into()))?;
        Ok(SubscriptionClaims {
            user: self.sub.unwrap_or_default(),
            channel,
            client: self.client.filter(|c| !c.is_empty()),
            expire_at: expiry(self.exp, self.expire_at, now)?,
            info: raw_or_b64(self.info, self.b64info, "b64info")?,
            data: raw_or_b64(self.data, self.b64data, "b64data")?,
        })
    }
}

/// Centrifugo's rule: a non-empty base64 form wins over the raw JSON one;
/// raw JSON is kept as its exact text.
fn raw_or_b64(raw: Option<Box<RawValue>>, b64: Option<String>, b64_name: &str) -> Result<Bytes, TokenError> {
    match b64.filter(|s| !s.is_empty()) {
        Some(s) => STANDARD
            .decode(s)
            .map(Bytes::from)
            .map_err(|_| TokenError::Invalid(format!("{b64_name} is not valid base64"))),
        None => Ok(raw.map(|r| Bytes::from(String::from(Box::<str>::from(r)))).unwrap_or_default()),
    }
}

/// `expire_at`, when present, overrides `exp` (0 or less: never expires).
/// An expiry already past is `Expired` — the same answer an expired `exp`
/// gets — so the client fetches a new token instead of being connected
/// only to be dropped.
fn expiry(exp: Option<f64>, expire_at: Option<i64>, now: i64) -> Result<Option<i64>, TokenError> {
    let at = match expire_at {
        Some(at) => (at > 0).then_some(at),
        None => exp.map(|e| e as i64),
    };
    match at {
        // A past `expire_at` on a still valid token is not "token expired"
        // (109, fetch a new token) but "expired" (110): the caller decides.
        Some(at) if at < now && expire_at.is_none() => Err(TokenError::Expired),
        _ => Ok(at),
    }
}
