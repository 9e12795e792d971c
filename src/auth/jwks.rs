//! Keys from a JWKS endpoint (`token_jwks_public_endpoint`,
//! `subscription_token_jwks_public_endpoint`), as Centrifugo's
//! `internal/jwks` fetches them: a GET of `{"keys":[...]}`, the keys with
//! `"use":"sig"` kept by `kid`, fetched again when a token names a `kid`
//! not held.
//!
//! Bounded where Centrifugo is not: fetches are single-flight and at most
//! one starts per [`COOLDOWN`], so tokens naming unknown `kid`s cannot make
//! the gateway hammer the endpoint; each attempt has a timeout and a body
//! limit; a token whose key is held never waits for the endpoint (a key
//! set older than [`MAX_AGE`] is fetched again in the background).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;

use crate::proxy::tls::{https_client, HttpsClient, TlsClientOptions};

/// Least time between two fetches started by unknown `kid`s. A rotated key
/// is published before tokens are signed with it, so the fetch that its
/// first token triggers finds it unless one ran in the last `COOLDOWN`.
pub(crate) const COOLDOWN: Duration = Duration::from_secs(5);
/// A key set this old is fetched again (in the background) when used:
/// Centrifugo's cache keeps keys for an hour.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(3600);
/// One attempt's timeout and the number of attempts: Centrifugo's JWKS
/// client (1 s, 2 tries).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
const ATTEMPTS: usize = 2;
/// Largest key set read, and most keys kept from it.
const MAX_BODY: usize = 1024 * 1024;
const MAX_KEYS: usize = 1000;

/// One verification key and the algorithms it may verify.
pub(crate) struct JwkKey {
    pub(crate) key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl JwkKey {
    /// Whether a token signed with `alg` may be verified with this key.
    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

#[derive(Default)]
struct Held {
    keys: HashMap<String, Arc<JwkKey>>,
    fetched: Option<Instant>,
}

/// The keys of one JWKS endpoint, fetched on demand.
pub(crate) struct Jwks {
    uri: Uri,
    /// The endpoint without credentials, for logs.
    url: String,
    client: HttpsClient<Empty<Bytes>>,
    held: Mutex<Held>,
    /// Held by the one fetch in flight; the time the last one started.
    fetching: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl Jwks {
    /// A fetcher for `endpoint` (`http://` or `https://`, whose TLS is
    /// `tls`). Nothing is fetched until a token needs a key.
    pub(crate) fn new(endpoint: &str, tls: &TlsClientOptions) -> Result<Jwks, String> {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err("must start with http:// or https://".into());
        }
        let uri: Uri = endpoint.parse().map_err(|_| "is not a valid URL".to_string())?;
        if uri.host().is_none() {
            return Err("is not a valid URL: no host".into());
        }
        Ok(Jwks {
            uri,
            url: crate::broker::nats::connect::redact_url(endpoint),
            client: https_client(Some(tls), false)?,
            held: Mutex::default(),
            fetching: Default::default(),
        })
    }

    /// The held key `kid`, without fetching. A key set past [`MAX_AGE`] is
    /// refreshed in the background (its keys still serve meanwhile).
    pub(crate) fn cached(self: &Arc<Self>, kid: &str) -> Option<Arc<JwkKey>> {
        let (key, stale) = {
            let held = self.held.lock();
            (held.keys.get(kid).cloned(), held.fetched.is_some_and(|at| at.elapsed() >= MAX_AGE))
        };
        // One background refresh at a time; none while a fetch is in flight.
        if key.is_some() && stale {
            if let (Ok(runtime), Ok(mut last)) =
                (tokio::runtime::Handle::try_current(), self.fetching.clone().try_lock_owned())
            {
                let this = self.clone();
                runtime.spawn(async move { this.fetch_now(&mut last).await });
            }
        }
        key
    }

    /// Makes sure `kid` is held if the endpoint has it: fetches the key set
    /// unless another fetch is in flight (then waits for it) or one started
    /// within [`COOLDOWN`]. Waits at most for one fetch's attempts.
    pub(crate) async fn load(&self, kid: &str) {
        if self.held.lock().keys.contains_key(kid) {
            return;
        }
        let bound = ATTEMPT_TIMEOUT * ATTEMPTS as u32 + Duration::from_millis(500);
        let Ok(mut last) = tokio::time::timeout(bound, self.fetching.lock()).await else { return };
        // The fetch we waited for may have brought it.
        if self.held.lock().keys.contains_key(kid) {
            return;
        }
        self.fetch_now(&mut last).await;
    }

    /// Fetches the key set unless a fetch started within [`COOLDOWN`];
    /// `last` (the guard of `fetching`) is when the last one started.
    async fn fetch_now(&self, last: &mut Option<Instant>) {
        if last.is_some_and(|at| at.elapsed() < COOLDOWN) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(endpoint = %self.url, keys = keys.len(), "JWKS fetched");
                // The endpoint's set replaces the held one: a key it no
                // longer lists is no longer trusted.
                *self.held.lock() = Held { keys, fetched: Some(Instant::now()) };
            }
            Err(e) => tracing::warn!(endpoint = %self.url, "JWKS fetch failed: {e}"),
        }
    }

    /// GETs the key set (up to [`ATTEMPTS`] times) and reads its keys.
    async fn fetch(&self) -> Result<HashMap<String, Arc<JwkKey>>, String> {
        let mut error = String::new();
        for _ in 0..ATTEMPTS {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.get()).await {
                Ok(Ok(body)) => return parse_set(&body),
                Ok(Err(e)) => error = e,
                Err(_) => error = "timed out".into(),
            }
        }
        Err(error)
    }

    async fn get(&self) -> Result<Bytes, String> {
        let request = Request::get(self.uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| format!("unreachable ({e})"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("unexpected HTTP status {}", response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY).collect().await.map_err(|e| e.to_string())?;
        Ok(body.to_bytes())
    }
}

/// The signing keys of a JWKS document by `kid`. Keys that are not for
/// signatures (`use` other than `sig`, as Centrifugo), have no `kid`, or
/// are of a kind tokens cannot use are skipped; a set with none is an error.
fn parse_set(body: &[u8]) -> Result<HashMap<String, Arc<JwkKey>>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    // Serde's messages could quote the document; keep them out.
    let set: Set = serde_json::from_slice(body).map_err(|_| "not a JWKS document".to_string())?;
    let mut keys = HashMap::new();
    for value in set.keys.into_iter().take(MAX_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        if jwk.common.public_key_use != Some(PublicKeyUse::Signature) {
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        if let Some(key) = key_of(&jwk) {
            keys.insert(kid, Arc::new(key));
        }
    }
    if keys.is_empty() {
        return Err("no signing key with a kid in the set".into());
    }
    Ok(keys)
}

/// A usable key and its algorithms: RSA (RS256/384/512), EC on P-256
/// (ES256) or P-384 (ES384), Ed25519 (EdDSA). A key's `alg`, when given,
/// narrows them to itself (as Centrifugo v6 reads `alg`).
fn key_of(jwk: &Jwk) -> Option<JwkKey> {
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        // No `oct` (HMAC) keys: a public document must never hold a secret.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        Some(alg) => {
            let alg = match alg {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(JwkKey { key, algorithms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_with_a_kid_of_a_token_kind_are_kept() {
        let doc = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "use": "sig", "kid": "ec",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "nouse",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "oct", "use": "sig", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "use": "sig", "kid": "wrongalg", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "nonsense"}
        ]});
        let keys = parse_set(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ec"]);
        assert!(keys["ec"].allows(Algorithm::ES256));
        assert!(!keys["ec"].allows(Algorithm::HS256));
        assert!(parse_set(br#"{"keys":[]}"#).is_err());
        assert!(parse_set(b"not json").is_err());
    }
}
