//! Verification keys and claim checks built from config, checked at startup.
//!
//! Error messages name the variable and never echo its value: PEM text may be
//! pasted with a private key, and the HMAC secret is a secret.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{ConfigError, ENV_PREFIX};

fn bad_key(var: &str, problem: &str) -> ConfigError {
    ConfigError::Invalid { var: format!("{ENV_PREFIX}{var}"), problem: problem.to_string() }
}

/// A private key in a public-key variable is a leak waiting to happen, and
/// deserves a clearer message than "not a public key".
fn refuse_private(var: &str, pem: &str) -> Result<(), ConfigError> {
    if pem.contains("PRIVATE KEY") {
        return Err(bad_key(var, "holds a private key; configure the public key only"));
    }
    Ok(())
}

/// `var` names the option (without prefix) in errors.
pub(super) fn rsa(var: &str, pem: &str) -> Result<DecodingKey, ConfigError> {
    refuse_private(var, pem)?;
    let bad = || bad_key(var, "must be a PEM-encoded RSA public key");
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| bad())?;
    // from_rsa_pem only unwraps the PEM; the key itself is parsed on every
    // verification. Parse it once here so a bad key fails at startup rather
    // than turning every token into "invalid".
    Jwk::from_decoding_key(&key, None).map_err(|_| bad())?;
    Ok(key)
}

pub(super) fn ecdsa(var: &str, pem: &str) -> Result<DecodingKey, ConfigError> {
    refuse_private(var, pem)?;
    let bad = || bad_key(var, "must be a PEM-encoded P-256 or P-384 public key");
    let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| bad())?;
    let alg = match Jwk::from_decoding_key(&key, None).map_err(|_| bad())?.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Algorithm::ES384,
        _ => return Err(bad()),
    };
    // Building a verifier checks that the point is on the curve; a key that
    // fails here errors, while the dummy signature merely fails to match.
    jsonwebtoken::crypto::verify("", b"", &key, alg).map_err(|_| bad())?;
    Ok(key)
}

/// Claim checks shared by all tokens. `algorithms` is set per token from
/// the header, once the key for that alg is known.
pub(super) fn validation(audience: Option<&str>, issuer: Option<&str>) -> Validation {
    let mut v = Validation {
        // Centrifugo allows no clock skew; jsonwebtoken's default is 60s.
        leeway: 0,
        validate_nbf: true,
        // jsonwebtoken requires `exp` by default; Centrifugo tokens may omit it.
        required_spec_claims: Default::default(),
        // jsonwebtoken refuses any token carrying `aud` unless an audience is
        // set; Centrifugo checks `aud` (and `iss`) only when configured, and
        // then requires them.
        validate_aud: audience.is_some(),
        ..Validation::default()
    };
    if let Some(aud) = audience {
        v.set_audience(&[aud]);
        v.required_spec_claims.insert("aud".into());
    }
    if let Some(iss) = issuer {
        v.set_issuer(&[iss]);
        v.required_spec_claims.insert("iss".into());
    }
    v
}
