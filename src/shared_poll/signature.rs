//! The signature of a batch of tracked keys (Centrifugo v6.9
//! `internal/client/track_signature.go`): `"<iat>:<expiry>:<hmac hex>"`, the
//! HMAC-SHA256 with `shared_poll_hmac_secret_key` of `iat`, `expiry`, the
//! user ID, the channel and the hex SHA-256 of the keys joined by NUL, each
//! field separated by a NUL byte (so colons inside a user or channel cannot
//! shift between fields). The backend makes it; the gateway only checks it.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Seconds a signature stays accepted past its expiry (Centrifugo's
/// `gracePeriodSeconds`).
pub const GRACE_SECONDS: i64 = 5;

/// `(iat, expiry)` of a signature; `(0, 0)` when they cannot be read.
pub fn timestamps(signature: &str) -> (i64, i64) {
    let mut parts = signature.splitn(3, ':');
    let (Some(iat), Some(expiry), Some(_)) = (parts.next(), parts.next(), parts.next()) else { return (0, 0) };
    match (iat.parse(), expiry.parse()) {
        (Ok(iat), Ok(expiry)) => (iat, expiry),
        _ => (0, 0),
    }
}

/// Whether `signature` was made with `secret` for exactly these keys (in
/// this order), this user and this channel. Compares in constant time.
pub fn verify(secret: &str, channel: &str, signature: &str, keys: &[&str], user: &str) -> bool {
    let mut parts = signature.splitn(3, ':');
    let (Some(iat), Some(expiry), Some(mac_hex)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(given) = hex::decode(mac_hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    let keys_hash = hex::encode(Sha256::digest(keys.join("\0").as_bytes()));
    for (i, field) in [iat, expiry, user, channel, &keys_hash].into_iter().enumerate() {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(field.as_bytes());
    }
    // Centrifugo compares the lower-case hex text: upper-case hex fails there.
    mac_hex.bytes().all(|b| !b.is_ascii_uppercase()) && mac.verify_slice(&given).is_ok()
}

/// Makes a signature (for tests and tools; the backend signs in production).
pub fn sign(secret: &str, channel: &str, keys: &[&str], user: &str, iat: i64, expiry: i64) -> String {
    let keys_hash = hex::encode(Sha256::digest(keys.join("\0").as_bytes()));
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    let payload = format!("{iat}\0{expiry}\0{user}\0{channel}\0{keys_hash}");
    mac.update(payload.as_bytes());
    format!("{iat}:{expiry}:{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_keys_user_and_channel() {
        let sig = sign("s3", "sp:items", &["a", "b"], "u1", 10, 0);
        assert!(verify("s3", "sp:items", &sig, &["a", "b"], "u1"));
        assert!(!verify("s3", "sp:items", &sig, &["a"], "u1"));
        assert!(!verify("s3", "sp:items", &sig, &["b", "a"], "u1"));
        assert!(!verify("s3", "sp:items", &sig, &["a", "b"], "u2"));
        assert!(!verify("s3", "sp:other", &sig, &["a", "b"], "u1"));
        assert!(!verify("other", "sp:items", &sig, &["a", "b"], "u1"));
        assert!(!verify("s3", "sp:items", &sig.to_uppercase(), &["a", "b"], "u1"));
        assert!(!verify("s3", "sp:items", "garbage", &["a", "b"], "u1"));
        assert_eq!(timestamps(&sig), (10, 0));
        assert_eq!(timestamps("x:y:z"), (0, 0));
    }
}
