//! Admin sessions: the password check, the short-lived token a login
//! returns, and the limit on failed logins.
//!
//! Centrifugo (`internal/admin/handlers.go`) compares the password in
//! constant time and returns a securecookie-signed token valid a month;
//! natsgate signs an HS256 JWT with `admin_secret` (audience
//! [`AUDIENCE`], so no client connection token is ever an admin token, even
//! with the same key) valid [`TOKEN_TTL`], which the page renews while open.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// The `aud` of every admin token.
const AUDIENCE: &str = "natsgate-admin";
/// How long an admin token is valid; the page renews it at half-time.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(3600);

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Mints and checks admin tokens with `admin_secret`.
pub(crate) struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Sessions {
    pub(crate) fn new(secret: &str) -> Sessions {
        Sessions {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// A token valid for [`TOKEN_TTL`] from now.
    pub(crate) fn mint(&self) -> String {
        let iat = now_secs();
        let claims = Claims { sub: "admin".into(), aud: AUDIENCE.into(), iat, exp: iat + TOKEN_TTL.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 over plain claims cannot fail")
    }

    /// Whether `token` is an unexpired admin token signed with this secret
    /// (HS256 only, no clock leeway).
    pub(crate) fn check(&self, token: &str) -> bool {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).is_ok_and(|t| t.claims.sub == "admin")
    }
}

/// Compares a login password with the configured one in time that does not
/// depend on where they differ (the length still shows, as in Centrifugo's
/// `subtle.ConstantTimeCompare`).
pub(crate) fn password_matches(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Failed logins allowed in a burst, then one more every [`REFILL`].
const BURST: f64 = 10.0;
const REFILL: Duration = Duration::from_secs(3);

/// A token bucket of failed logins for the whole gateway: once
/// [`BURST`] failures came faster than one per [`REFILL`], every login is
/// answered 429 without looking at the password until the bucket refills.
/// Per gateway, not per client address: behind a proxy the address is the
/// proxy's, and a shared limit caps guessing however many addresses an
/// attacker has (the cost: an attacker can keep the real admin out while
/// they keep guessing; NATSGATE_INTERNAL_PORT keeps the page off the
/// public port).
pub(crate) struct FailureLimit {
    state: Mutex<(f64, Instant)>,
}

impl FailureLimit {
    pub(crate) fn new() -> FailureLimit {
        FailureLimit { state: Mutex::new((BURST, Instant::now())) }
    }

    fn refill(state: &mut (f64, Instant)) {
        let now = Instant::now();
        let earned = now.duration_since(state.1).as_secs_f64() / REFILL.as_secs_f64();
        *state = ((state.0 + earned).min(BURST), now);
    }

    /// Whether a login may be tried now.
    pub(crate) fn allows(&self) -> bool {
        let mut state = self.state.lock();
        Self::refill(&mut state);
        state.0 >= 1.0
    }

    /// Counts a failed login.
    pub(crate) fn failed(&self) {
        let mut state = self.state.lock();
        Self::refill(&mut state);
        state.0 = (state.0 - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_check_only_with_their_secret_and_audience() {
        let sessions = Sessions::new("admin-secret");
        let token = sessions.mint();
        assert!(sessions.check(&token));
        assert!(!Sessions::new("other-secret").check(&token));
        assert!(!sessions.check(&format!("{token}x")));
        assert!(!sessions.check(""));
        // A client connection token signed with the same key is no admin token.
        let client =
            crate::auth::mint_hs256("admin-secret", &serde_json::json!({"sub": "admin", "exp": now_secs() + 60}));
        assert!(!sessions.check(&client));
        // Nor is an expired admin token.
        let expired = crate::auth::mint_hs256(
            "admin-secret",
            &serde_json::json!({"sub": "admin", "aud": AUDIENCE, "iat": 1, "exp": now_secs() - 1}),
        );
        assert!(!sessions.check(&expired));
    }

    #[test]
    fn passwords_compare_exactly() {
        assert!(password_matches("s3cret", "s3cret"));
        assert!(!password_matches("s3cre", "s3cret"));
        assert!(!password_matches("s3creT", "s3cret"));
        assert!(!password_matches("", "s3cret"));
    }

    #[test]
    fn failures_beyond_the_burst_are_refused() {
        let limit = FailureLimit::new();
        for _ in 0..BURST as usize {
            assert!(limit.allows());
            limit.failed();
        }
        assert!(!limit.allows(), "the burst is spent");
    }
}
