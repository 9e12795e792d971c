//! `natsgate gentoken`, `gensubtoken` and `checktoken`: mint and inspect
//! HS256 JWTs with the configured keys, for development and debugging.

use base64::Engine;
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::CliError;
use crate::auth::TokenVerifier;
use crate::config::Config;

/// Default token lifetime: 7 days.
pub const DEFAULT_TTL_SECS: u64 = 7 * 24 * 3600;

/// Prints a connection token for `user`; `ttl_secs` 0 means no `exp`.
pub fn gentoken(config: &Config, user: &str, ttl_secs: u64, info: Option<Value>) -> Result<(), CliError> {
    println!("{}", connection_token(config, user, ttl_secs, info)?);
    Ok(())
}

/// An HS256 connection token for `user` signed with the configured HMAC
/// secret (`CliError::Missing` without one); `ttl_secs` 0 means no `exp`.
pub fn connection_token(config: &Config, user: &str, ttl_secs: u64, info: Option<Value>) -> Result<String, CliError> {
    let mut claims = base_claims(config, user, ttl_secs);
    if let Some(info) = info {
        claims.insert("info".into(), info);
    }
    sign(config, claims)
}

/// Prints a subscription token for `user` and `channel`.
pub fn gensubtoken(config: &Config, user: &str, channel: &str, ttl_secs: u64) -> Result<(), CliError> {
    let mut claims = base_claims(config, user, ttl_secs);
    claims.insert("channel".into(), json!(channel));
    println!("{}", sign(config, claims)?);
    Ok(())
}

/// Verifies `token` as a connection token and prints what it says.
pub fn checktoken(config: &Config, token: &str) -> Result<(), CliError> {
    let verifier = TokenVerifier::from_config(config)?;
    if !verifier.has_keys() {
        return Err(CliError::Missing(
            "checktoken needs a token key (token_hmac_secret_key, token_rsa_public_key, token_ecdsa_public_key \
             or token_jwks_public_endpoint)"
                .into(),
        ));
    }
    // A JWKS key is fetched first (a runtime of its own: the CLI has none).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start a runtime: {e}")))?;
    let credentials = runtime
        .block_on(verifier.verify_connect_fetching(token))
        .map_err(|e| CliError::Failed(format!("token rejected: {e}")))?;
    let user = if credentials.user.is_empty() { "(anonymous)" } else { credentials.user.as_str() };
    println!("user: {user}");
    match credentials.expire_at {
        Some(at) => {
            let when = UNIX_EPOCH + Duration::from_secs(at.max(0) as u64);
            let left = when.duration_since(SystemTime::now()).unwrap_or_default();
            let left = Duration::from_secs(left.as_secs());
            println!("expires: {} (in {})", humantime::format_rfc3339_seconds(when), humantime::format_duration(left));
        }
        None => println!("expires: never"),
    }
    // The signature is good, so the payload is well-formed base64url JSON.
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or(Value::Null);
    println!("claims: {}", serde_json::to_string_pretty(&claims).expect("a JSON value serializes"));
    Ok(())
}

/// `sub`, `iat`, `exp` (unless `ttl_secs` is 0) and the configured `aud`
/// and `iss`, so the gateway's own checks accept the token.
fn base_claims(config: &Config, user: &str, ttl_secs: u64) -> Map<String, Value> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user));
    claims.insert("iat".into(), json!(now));
    if ttl_secs > 0 {
        claims.insert("exp".into(), json!(now.saturating_add(ttl_secs)));
    }
    let set = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(aud) = set(&config.token_audience) {
        claims.insert("aud".into(), json!(aud));
    }
    if let Some(iss) = set(&config.token_issuer) {
        claims.insert("iss".into(), json!(iss));
    }
    claims
}

fn sign(config: &Config, claims: Map<String, Value>) -> Result<String, CliError> {
    let secret = config.token_hmac_secret_key.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        CliError::Missing(
            "no HMAC secret configured: set token_hmac_secret_key in the config file or NATSGATE_TOKEN_HMAC_SECRET_KEY \
             (`natsgate genconfig` writes a config file with one; `natsgate` without a key logs a development token)"
                .into(),
        )
    })?;
    Ok(crate::auth::mint_hs256(secret, &Value::Object(claims)))
}

/// Parses a `--info` argument as JSON (a clap value parser).
pub fn parse_json(arg: &str) -> Result<Value, String> {
    serde_json::from_str(arg).map_err(|e| format!("not valid JSON: {e}"))
}
