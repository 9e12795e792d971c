//! Connection and subscription JWT verification: keys from config, token in,
//! typed credentials out. Follows Centrifugo's token semantics.
//!
//! - `keys.rs`: keys and claim checks built (and validated) from config.
//! - `claims.rs`: the JWT payload and its conversion into typed values.
//! - `jwks.rs`: keys fetched from a JWKS endpoint, by `kid`.

mod claims;
mod jwks;
mod keys;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// `info` (raw JSON) or decoded `b64info`; empty when absent.
    pub info: Bytes,
    /// `data` (raw JSON) or decoded `b64data`; empty when absent.
    pub data: Bytes,
}

/// What a verified subscription token says. The caller checks that `user`
/// and `channel` (and `client`, when set) match the subscribe request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriptionClaims {
    /// `sub`: must equal the connection's user; empty for anonymous.
    pub user: String,
    /// `channel`: always non-empty.
    pub channel: String,
    /// `client`: when set, the token is only good for this client ID.
    pub client: Option<String>,
    /// Subscription expiry (unix seconds), same rule as `Credentials::expire_at`.
    pub expire_at: Option<i64>,
    /// `info` (raw JSON) or decoded `b64info`; empty when absent.
    pub info: Bytes,
    /// `data` (raw JSON) or decoded `b64data`; empty when absent.
    pub data: Bytes,
}

/// Why a token was refused. The session maps these to protocol codes:
/// `Expired` -> error 109 on connect, `Invalid` -> disconnect 3500.
///
/// Messages are fixed text for logs: they never quote the token, its claim
/// values or any key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

fn invalid(why: &str) -> TokenError {
    TokenError::Invalid(why.to_string())
}

/// Verifies connection and subscription tokens with the keys from config.
/// Each alg family has at most one key, chosen by the token header's `alg`;
/// with a JWKS endpoint, the endpoint's key named by the header's `kid` is
/// the only one (Centrifugo's `VerifierJWT` then ignores the static keys).
pub struct TokenVerifier {
    connection: KeySet,
    /// Subscription keys; each family falls back to the connection key.
    subscription: KeySet,
    connection_jwks: Option<Arc<jwks::Jwks>>,
    /// The subscription JWKS endpoint, else the connection's when no
    /// subscription key of its own is configured.
    subscription_jwks: Option<Arc<jwks::Jwks>>,
    validation: Validation,
}

#[derive(Clone, Default)]
struct KeySet {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
}

impl KeySet {
    fn load(
        hmac: &Option<String>,
        rsa: &Option<String>,
        ecdsa: &Option<String>,
        prefix: &str,
    ) -> Result<Self, ConfigError> {
        Ok(KeySet {
            hmac: set(hmac).map(|s| DecodingKey::from_secret(s.as_bytes())),
            rsa: set(rsa).map(|pem| keys::rsa(&format!("{prefix}TOKEN_RSA_PUBLIC_KEY"), pem)).transpose()?,
            ecdsa: set(ecdsa).map(|pem| keys::ecdsa(&format!("{prefix}TOKEN_ECDSA_PUBLIC_KEY"), pem)).transpose()?,
        })
    }

    fn or(self, fallback: &KeySet) -> KeySet {
        KeySet {
            hmac: self.hmac.or_else(|| fallback.hmac.clone()),
            rsa: self.rsa.or_else(|| fallback.rsa.clone()),
            ecdsa: self.ecdsa.or_else(|| fallback.ecdsa.clone()),
        }
    }

    fn for_alg(&self, alg: Algorithm) -> Option<&DecodingKey> {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.hmac.as_ref(),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => self.rsa.as_ref(),
            Algorithm::ES256 | Algorithm::ES384 => self.ecdsa.as_ref(),
            // PS*, EdDSA: not part of Centrifugo's token algorithms.
            _ => None,
        }
    }
}

impl TokenVerifier {
    /// Loads the configured keys. A key that is not a usable public key of
    /// its kind is a `ConfigError` naming the variable (never its value).
    /// Empty values count as unset: an empty HMAC secret would let anyone
    /// mint tokens.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let c = config;
        let connection =
            KeySet::load(&c.token_hmac_secret_key, &c.token_rsa_public_key, &c.token_ecdsa_public_key, "")?;
        let subscription = KeySet::load(
            &c.subscription_token_hmac_secret_key,
            &c.subscription_token_rsa_public_key,
            &c.subscription_token_ecdsa_public_key,
            "SUBSCRIPTION_",
        )?
        .or(&connection);
        let jwks = |option: &str, endpoint: &Option<String>| {
            set(endpoint).map(|url| jwks::Jwks::new(url, &config.proxy_http_tls).map(Arc::new)).transpose().map_err(
                |problem| ConfigError::Invalid { var: format!("{}{option}", crate::config::ENV_PREFIX), problem },
            )
        };
        let connection_jwks = jwks("TOKEN_JWKS_PUBLIC_ENDPOINT", &c.token_jwks_public_endpoint)?;
        let own_subscription_keys = [
            &c.subscription_token_hmac_secret_key,
            &c.subscription_token_rsa_public_key,
            &c.subscription_token_ecdsa_public_key,
        ]
        .iter()
        .any(|k| set(k).is_some());
        let subscription_jwks =
            match jwks("SUBSCRIPTION_TOKEN_JWKS_PUBLIC_ENDPOINT", &c.subscription_token_jwks_public_endpoint)? {
                Some(own) => Some(own),
                None if !own_subscription_keys => connection_jwks.clone(),
                None => None,
            };
        Ok(TokenVerifier {
            connection,
            subscription,
            connection_jwks,
            subscription_jwks,
            validation: keys::validation(set(&config.token_audience), set(&config.token_issuer)),
        })
    }

    /// Whether any key is configured (no key: every token is invalid).
    pub fn has_keys(&self) -> bool {
        let k = &self.connection;
        k.hmac.is_some() || k.rsa.is_some() || k.ecdsa.is_some() || self.connection_jwks.is_some()
    }

    /// Verifies a connection token. `Expired` when `exp` or `expire_at` has
    /// passed (and the signature is good); `Invalid` for everything else.
    /// With a JWKS endpoint only keys already fetched serve: async callers
    /// use [`TokenVerifier::verify_connect_fetching`].
    pub fn verify_connect(&self, token: &str) -> Result<Credentials, TokenError> {
        self.decode::<claims::ConnectClaims>(&self.connection, self.connection_jwks.as_ref(), token)?
            .into_credentials(now())
    }

    /// Verifies a subscription token (same keys and rules as connection
    /// tokens; `channel` is required). JWKS keys as in `verify_connect`.
    pub fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, TokenError> {
        self.decode::<claims::SubscribeClaims>(&self.subscription, self.subscription_jwks.as_ref(), token)?
            .into_subscription(now())
    }

    /// [`TokenVerifier::verify_connect`], fetching the JWKS first when the
    /// token names a `kid` not held (at most one fetch per endpoint at a
    /// time and per `jwks::COOLDOWN`; the wait is bounded by the fetch's
    /// timeouts). An endpoint that cannot be reached leaves the key
    /// unknown: the token is `Invalid`, as in Centrifugo.
    pub async fn verify_connect_fetching(&self, token: &str) -> Result<Credentials, TokenError> {
        Self::fetch_for(self.connection_jwks.as_ref(), token).await;
        self.verify_connect(token)
    }

    /// [`TokenVerifier::verify_subscription`], fetching as
    /// [`TokenVerifier::verify_connect_fetching`] does.
    pub async fn verify_subscription_fetching(&self, token: &str) -> Result<SubscriptionClaims, TokenError> {
        Self::fetch_for(self.subscription_jwks.as_ref(), token).await;
        self.verify_subscription(token)
    }

    async fn fetch_for(jwks: Option<&Arc<jwks::Jwks>>, token: &str) {
        let Some(jwks) = jwks else { return };
        if let Ok(jsonwebtoken::Header { kid: Some(kid), .. }) = jsonwebtoken::decode_header(token) {
            if !kid.is_empty() {
                jwks.load(&kid).await;
            }
        }
    }

    /// Checks signature and standard claims, then parses the payload.
    fn decode<T: DeserializeOwned>(
        &self,
        keys: &KeySet,
        jwks: Option<&Arc<jwks::Jwks>>,
        token: &str,
    ) -> Result<T, TokenError> {
        // An unknown alg (including "none") fails to parse as a header.
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token or unsupported alg"))?;
        let jwk;
        let key = match jwks {
            // Centrifugo: the `kid` names the key; without one the token is invalid.
            Some(jwks) => {
                let kid = header.kid.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| invalid("no kid"))?;
                jwk = jwks.cached(kid).ok_or_else(|| invalid("no key with the token's kid at the JWKS endpoint"))?;
                // The key's kind (and `alg`, when given) decides the algorithms.
                if !jwk.allows(header.alg) {
                    return Err(invalid("the JWKS key does not verify the token's alg"));
                }
                &jwk.key
            }
            // The key comes from the alg's family, so a token can never make an
            // RSA or ECDSA public key serve as an HMAC secret.
            None => keys.for_alg(header.alg).ok_or_else(|| invalid("no key configured for the token's alg"))?,
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        match jsonwebtoken::decode::<T>(token, key, &validation) {
            Ok(data) => Ok(data.claims),
            // jsonwebtoken checks the signature before `exp`, so `Expired`
            // is only ever said of genuine tokens.
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => invalid("bad signature"),
                // Centrifugo treats a future `nbf` like a past `exp` (error 109,
                // the SDK asks for a new token): jwtverify's `IsValidNotBefore`.
                ErrorKind::ImmatureSignature => TokenError::Expired,
                ErrorKind::InvalidAudience => invalid("wrong audience"),
                ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                ErrorKind::MissingRequiredClaim(c) => TokenError::Invalid(format!("missing {c} claim")),
                ErrorKind::InvalidClaimFormat(c) => TokenError::Invalid(format!("malformed {c} claim")),
                // Serde's message would quote claim values; keep it out.
                ErrorKind::Json(_) => invalid("malformed claims"),
                _ => invalid("malformed token"),
            }),
        }
    }
}

/// The value of an optional setting, with an empty string meaning unset.
fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Signs `claims` as an HS256 JWT with `secret`: the token an application
/// backend would give its clients. For tests and the `gentoken` CLI.
pub fn mint_hs256(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 over a JSON value cannot fail")
}
