//! HS256 tokens, minted the way an application backend would.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// Signs `{"sub": user, "exp": now + exp_in_secs}` merged with `extra`
/// (an object; its keys win) with HS256 and `secret`.
///
/// `exp_in_secs: None` leaves `exp` out (a token that never expires); a
/// negative value makes an already expired token. For a subscription token
/// pass `json!({"channel": "..."})` as `extra`.
pub fn hs256_token(secret: &str, user: &str, exp_in_secs: Option<i64>, extra: Value) -> String {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user));
    if let Some(secs) = exp_in_secs {
        claims.insert("exp".into(), json!(now_secs() + secs));
    }
    match extra {
        Value::Object(extra) => claims.extend(extra),
        Value::Null => {}
        other => panic!("hs256_token: extra claims must be an object, got {other}"),
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Value::Object(claims),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign HS256 token")
}
