//! Connection and subscription tokens. The first byte picks the form: even,
//! the rest is a token as a client sends it (header, claims and signature
//! all fuzzed: nearly always refused before the claims are read); odd, the
//! rest is the claims part, signed here with the gateway's HMAC secret so
//! the claim parsing behind the signature check is reached too.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use natsgate::auth::TokenVerifier;
use natsgate::config::Config;
use std::sync::OnceLock;

const SECRET: &str = "fuzz-secret";

fn verifier() -> &'static TokenVerifier {
    static VERIFIER: OnceLock<TokenVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let config = Config::from_iter([("NATSGATE_TOKEN_HMAC_SECRET_KEY".to_string(), SECRET.to_string())])
            .expect("config with an HMAC secret");
        TokenVerifier::from_config(&config).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let token = if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else { return };
        token.to_string()
    } else {
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#), URL_SAFE_NO_PAD.encode(rest));
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("HS256 signs");
        format!("{message}.{signature}")
    };
    let _ = verifier().verify_connect(&token);
    let _ = verifier().verify_subscription(&token);
});
