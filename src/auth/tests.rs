//! Unit tests for token verification, with the fixed key pairs in
//! `tests/fixtures/auth/` (test-only keys).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const SECRET: &str = "test-hmac-secret-7f3a";
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/auth/rsa2048-public.pem");
const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/auth/rsa2048-private.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("../../tests/fixtures/auth/rsa2048-other-private.pem");
const P256_PUBLIC: &str = include_str!("../../tests/fixtures/auth/ec-p256-public.pem");
const P256_PRIVATE: &str = include_str!("../../tests/fixtures/auth/ec-p256-private.pem");
const P384_PUBLIC: &str = include_str!("../../tests/fixtures/auth/ec-p384-public.pem");
const P384_PRIVATE: &str = include_str!("../../tests/fixtures/auth/ec-p384-private.pem");

#[derive(Default)]
struct Keys {
    hmac: Option<&'static str>,
    rsa: Option<&'static str>,
    ecdsa: Option<&'static str>,
    aud: Option<&'static str>,
    iss: Option<&'static str>,
}

fn config(k: Keys) -> Config {
    let own = |o: Option<&str>| o.map(String::from);
    Config {
        token_hmac_secret_key: own(k.hmac),
        token_rsa_public_key: own(k.rsa),
        token_ecdsa_public_key: own(k.ecdsa),
        token_audience: own(k.aud),
        token_issuer: own(k.iss),
        ..Config::default()
    }
}

fn verifier(k: Keys) -> TokenVerifier {
    TokenVerifier::from_config(&config(k)).expect("valid test config")
}

fn hmac() -> TokenVerifier {
    verifier(Keys { hmac: Some(SECRET), ..Keys::default() })
}

fn all_keys() -> TokenVerifier {
    verifier(Keys { hmac: Some(SECRET), rsa: Some(RSA_PUBLIC), ecdsa: Some(P256_PUBLIC), ..Keys::default() })
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &impl serde::Serialize) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn rsa_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn ec_key(pem: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
}

fn now() -> i64 {
    super::now()
}

fn is_invalid(r: Result<impl std::fmt::Debug, TokenError>) -> bool {
    matches!(r, Err(TokenError::Invalid(_)))
}

#[test]
fn every_algorithm_is_accepted_with_its_key() {
    let claims = json!({"sub": "42"});
    let v = all_keys();
    let secret = EncodingKey::from_secret(SECRET.as_bytes());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        assert_eq!(v.verify_connect(&sign(alg, &secret, &claims)).unwrap().user, "42", "{alg:?}");
    }
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        assert_eq!(v.verify_connect(&sign(alg, &rsa_key(RSA_PRIVATE), &claims)).unwrap().user, "42", "{alg:?}");
    }
    let es256 = sign(Algorithm::ES256, &ec_key(P256_PRIVATE), &claims);
    assert_eq!(v.verify_connect(&es256).unwrap().user, "42");
    let p384 = verifier(Keys { ecdsa: Some(P384_PUBLIC), ..Keys::default() });
    let es384 = sign(Algorithm::ES384, &ec_key(P384_PRIVATE), &claims);
    assert_eq!(p384.verify_connect(&es384).unwrap().user, "42");
    assert_eq!(hmac().verify_connect(&mint_hs256(SECRET, &claims)).unwrap().user, "42");
}

#[test]
fn wrong_key_is_invalid() {
    let claims = json!({"sub": "42"});
    let v = all_keys();
    assert!(is_invalid(v.verify_connect(&mint_hs256("another-secret", &claims))));
    assert!(is_invalid(v.verify_connect(&sign(Algorithm::RS256, &rsa_key(RSA_OTHER_PRIVATE), &claims))));
    // An ES256 token against a P-384 key, and an ES384 token against a P-256 key.
    let p384 = verifier(Keys { ecdsa: Some(P384_PUBLIC), ..Keys::default() });
    assert!(is_invalid(p384.verify_connect(&sign(Algorithm::ES256, &ec_key(P256_PRIVATE), &claims))));
    assert!(is_invalid(v.verify_connect(&sign(Algorithm::ES384, &ec_key(P384_PRIVATE), &claims))));
    // A good signature over other claims.
    let good = mint_hs256(SECRET, &claims);
    let forged = mint_hs256(SECRET, &json!({"sub": "1"}));
    let spliced = format!("{}.{}", forged.rsplit_once('.').unwrap().0, good.rsplit_once('.').unwrap().1);
    assert!(is_invalid(v.verify_connect(&spliced)));
}

#[test]
fn alg_without_a_configured_key_is_invalid() {
    let claims = json!({"sub": "42"});
    assert!(is_invalid(hmac().verify_connect(&sign(Algorithm::RS256, &rsa_key(RSA_PRIVATE), &claims))));
    assert!(is_invalid(hmac().verify_connect(&sign(Algorithm::ES256, &ec_key(P256_PRIVATE), &claims))));
    let rsa_only = verifier(Keys { rsa: Some(RSA_PUBLIC), ..Keys::default() });
    assert!(is_invalid(rsa_only.verify_connect(&mint_hs256(SECRET, &claims))));
    // PS256 uses the RSA key but is not one of Centrifugo's algorithms.
    assert!(is_invalid(all_keys().verify_connect(&sign(Algorithm::PS256, &rsa_key(RSA_PRIVATE), &claims))));
}

#[test]
fn alg_none_is_invalid() {
    let payload = URL_SAFE_NO_PAD.encode(json!({"sub": "42"}).to_string());
    for alg in ["none", "None", "NONE", ""] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        assert!(is_invalid(all_keys().verify_connect(&format!("{header}.{payload}."))), "{alg}");
    }
}

#[test]
fn hmac_with_rsa_public_key_as_secret_is_invalid() {
    // The classic confusion attack: the attacker knows the public key and
    // uses its PEM text as an HMAC secret.
    let rsa_only = verifier(Keys { rsa: Some(RSA_PUBLIC), ..Keys::default() });
    let claims = json!({"sub": "admin"});
    for secret in [RSA_PUBLIC, RSA_PUBLIC.trim()] {
        let token = sign(Algorithm::HS256, &EncodingKey::from_secret(secret.as_bytes()), &claims);
        assert!(is_invalid(rsa_only.verify_connect(&token)));
    }
    let ec_only = verifier(Keys { ecdsa: Some(P256_PUBLIC), ..Keys::default() });
    let token = sign(Algorithm::HS256, &EncodingKey::from_secret(P256_PUBLIC.as_bytes()), &claims);
    assert!(is_invalid(ec_only.verify_connect(&token)));
}

#[test]
fn malformed_tokens_are_invalid() {
    let v = all_keys();
    let huge = "x.".repeat(300_000) + &"é\u{0}".repeat(10_000);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    let not_json = format!("{header}.{}.", URL_SAFE_NO_PAD.encode("not json"));
    for token in ["", "abc", "a.b.c", "a.b", "..", "a.b.c.d", &huge, &not_json] {
        assert!(is_invalid(v.verify_connect(token)), "{:.40}", token);
    }
    // Well-signed, but the claims are not an object or have the wrong types.
    for claims in [json!([1, 2]), json!("sub"), json!({"sub": 42}), json!({"channels": "a"}), json!({"exp": "soon"})] {
        assert!(is_invalid(v.verify_connect(&mint_hs256(SECRET, &claims))), "{claims}");
    }
}

#[test]
fn expired_exp_is_expired_only_when_signed() {
    let v = hmac();
    let token = mint_hs256(SECRET, &json!({"sub": "42", "exp": now() - 10}));
    assert_eq!(v.verify_connect(&token), Err(TokenError::Expired));
    // No leeway: one second past is expired.
    let token = mint_hs256(SECRET, &json!({"sub": "42", "exp": now() - 1}));
    assert_eq!(v.verify_connect(&token), Err(TokenError::Expired));
    let forged = mint_hs256("another-secret", &json!({"sub": "42", "exp": now() - 10}));
    assert!(is_invalid(v.verify_connect(&forged)));
    let fine = mint_hs256(SECRET, &json!({"sub": "42", "exp": now() + 60}));
    assert_eq!(v.verify_connect(&fine).unwrap().expire_at, Some(now() + 60));
}

#[test]
fn nbf_in_the_future_is_expired_as_centrifugo_says() {
    let v = hmac();
    assert_eq!(v.verify_connect(&mint_hs256(SECRET, &json!({"nbf": now() + 30}))), Err(TokenError::Expired));
    assert!(v.verify_connect(&mint_hs256(SECRET, &json!({"nbf": now() - 1}))).is_ok());
}

#[test]
fn aud_and_iss_are_checked_only_when_configured() {
    let token = |claims: Value| mint_hs256(SECRET, &claims);
    let open = hmac();
    assert!(open.verify_connect(&token(json!({"aud": "elsewhere", "iss": "someone"}))).is_ok());
    assert!(open.verify_connect(&token(json!({"aud": ["a", "b"]}))).is_ok());

    let strict = verifier(Keys { hmac: Some(SECRET), aud: Some("natsgate"), iss: Some("backend"), ..Keys::default() });
    assert!(strict.verify_connect(&token(json!({"aud": "natsgate", "iss": "backend"}))).is_ok());
    assert!(strict.verify_connect(&token(json!({"aud": ["other", "natsgate"], "iss": "backend"}))).is_ok());
    for claims in [
        json!({"aud": "other", "iss": "backend"}),
        json!({"aud": ["other"], "iss": "backend"}),
        json!({"aud": "natsgate", "iss": "intruder"}),
        json!({"iss": "backend"}),
        json!({"aud": "natsgate"}),
    ] {
        assert!(is_invalid(strict.verify_connect(&token(claims.clone()))), "{claims}");
    }
}

#[test]
fn info_is_raw_json_or_decoded_b64info() {
    let info = |claims: Value| hmac().verify_connect(&mint_hs256(SECRET, &claims)).map(|c| c.info);
    // Kept as the exact text of the payload: key order and spacing survive.
    let payload: Box<serde_json::value::RawValue> =
        serde_json::from_str(r#"{"sub":"", "info": {"z": 1,  "a": [1, 2.50]} }"#).unwrap();
    let token = sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), &payload);
    assert_eq!(hmac().verify_connect(&token).unwrap().info, r#"{"z": 1,  "a": [1, 2.50]}"#);
    assert_eq!(info(json!({"info": "text"})).unwrap(), r#""text""#);
    assert_eq!(info(json!({"b64info": STANDARD.encode(b"\x00\xffbin")})).unwrap(), &b"\x00\xffbin"[..]);
    // b64info wins when both are given, as in Centrifugo.
    assert_eq!(info(json!({"info": {"a": 1}, "b64info": STANDARD.encode("b")})).unwrap(), "b");
    assert_eq!(info(json!({"info": {"a": 1}, "b64info": ""})).unwrap(), r#"{"a":1}"#);
    assert_eq!(info(json!({"sub": "1"})).unwrap(), "");
    assert!(is_invalid(info(json!({"b64info": "not base64!"}))));
}

#[test]
fn channels_and_subs_are_parsed() {
    let claims = json!({
        "sub": "42",
        "channels": ["news", "chat:1"],
        "subs": {
            "news": {"info": {"role": "reader"}, "b64data": STANDARD.encode("hi"), "override": {"presence": {"value": true}}},
            "empty": {},
        },
        "meta": {"server": "side"},
    });
    let c = hmac().verify_connect(&mint_hs256(SECRET, &claims)).unwrap();
    assert_eq!(c.channels, ["news", "chat:1"]);
    assert_eq!(c.subs.len(), 2);
    assert_eq!(c.subs["news"], SubOptions { info: Bytes::from(r#"{"role":"reader"}"#), data: Bytes::from("hi") });
    assert_eq!(c.subs["empty"], SubOptions::default());
    let bad = json!({"subs": {"news": {"b64data": "%%%"}}});
    assert!(is_invalid(hmac().verify_connect(&mint_hs256(SECRET, &bad))));
}

#[test]
fn anonymous_when_sub_is_empty_or_absent() {
    for claims in [json!({"sub": ""}), json!({}), json!({"sub": null})] {
        assert_eq!(hmac().verify_connect(&mint_hs256(SECRET, &claims)).unwrap(), Credentials::default());
    }
}

#[test]
fn expire_at_overrides_exp() {
    let expire_at = |claims: Value| hmac().verify_connect(&mint_hs256(SECRET, &claims)).map(|c| c.expire_at);
    let (soon, later) = (now() + 60, now() + 3600);
    assert_eq!(expire_at(json!({})), Ok(None));
    assert_eq!(expire_at(json!({"exp": soon})), Ok(Some(soon)));
    assert_eq!(expire_at(json!({"exp": soon, "expire_at": later})), Ok(Some(later)));
    assert_eq!(expire_at(json!({"exp": soon, "expire_at": 0})), Ok(None));
    assert_eq!(expire_at(json!({"expire_at": later})), Ok(Some(later)));
    // A past expire_at is returned as is: the session answers 110 (expired).
    let past = now() - 5;
    assert_eq!(expire_at(json!({"exp": later, "expire_at": past})), Ok(Some(past)));
    // `exp` is still checked even when `expire_at` is given.
    assert_eq!(expire_at(json!({"exp": now() - 5, "expire_at": later})), Err(TokenError::Expired));
}

#[test]
fn channel_claim_marks_a_subscription_token() {
    let v = hmac();
    assert!(is_invalid(v.verify_connect(&mint_hs256(SECRET, &json!({"sub": "42", "channel": "news"})))));
    // Centrifugo only refuses a non-empty channel.
    assert!(v.verify_connect(&mint_hs256(SECRET, &json!({"sub": "42", "channel": ""}))).is_ok());
}

#[test]
fn subscription_tokens() {
    let v = hmac();
    let claims = json!({
        "sub": "42", "channel": "news", "client": "c-1", "exp": now() + 60,
        "info": {"a": 1}, "b64data": STANDARD.encode("d"), "override": {},
    });
    let s = v.verify_subscription(&mint_hs256(SECRET, &claims)).unwrap();
    assert_eq!(
        s,
        SubscriptionClaims {
            user: "42".into(),
            channel: "news".into(),
            client: Some("c-1".into()),
            expire_at: Some(now() + 60),
            info: Bytes::from(r#"{"a":1}"#),
            data: Bytes::from("d"),
        }
    );
    let s = v.verify_subscription(&mint_hs256(SECRET, &json!({"channel": "x", "client": "", "expire_at": 0}))).unwrap();
    assert_eq!((s.user.as_str(), s.client, s.expire_at), ("", None, None));
    // A connection token is not a subscription token.
    assert!(is_invalid(v.verify_subscription(&mint_hs256(SECRET, &json!({"sub": "42"})))));
    assert!(is_invalid(v.verify_subscription(&mint_hs256(SECRET, &json!({"channel": ""})))));
    let expired = mint_hs256(SECRET, &json!({"channel": "x", "exp": now() - 5}));
    assert_eq!(v.verify_subscription(&expired), Err(TokenError::Expired));
    let rsa_only = verifier(Keys { rsa: Some(RSA_PUBLIC), ..Keys::default() });
    assert!(is_invalid(rsa_only.verify_subscription(&mint_hs256(SECRET, &json!({"channel": "x"})))));
}

#[test]
fn has_keys_reflects_config() {
    assert!(!verifier(Keys::default()).has_keys());
    assert!(!verifier(Keys { hmac: Some(""), ..Keys::default() }).has_keys());
    assert!(hmac().has_keys());
    assert!(verifier(Keys { rsa: Some(RSA_PUBLIC), ..Keys::default() }).has_keys());
    assert!(verifier(Keys { ecdsa: Some(P384_PUBLIC), ..Keys::default() }).has_keys());
    // No key: nothing verifies.
    assert!(is_invalid(verifier(Keys::default()).verify_connect(&mint_hs256(SECRET, &json!({})))));
}

#[test]
fn bad_pem_keys_name_the_variable_without_the_value() {
    let rsa = |pem: &'static str| TokenVerifier::from_config(&config(Keys { rsa: Some(pem), ..Keys::default() }));
    let ec = |pem: &'static str| TokenVerifier::from_config(&config(Keys { ecdsa: Some(pem), ..Keys::default() }));
    let cases = [
        (rsa("not a pem at all SECRETISH"), "NATSGATE_TOKEN_RSA_PUBLIC_KEY"),
        (rsa(P256_PUBLIC), "NATSGATE_TOKEN_RSA_PUBLIC_KEY"),
        (rsa(RSA_PRIVATE), "NATSGATE_TOKEN_RSA_PUBLIC_KEY"),
        (rsa("-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----\n"), "NATSGATE_TOKEN_RSA_PUBLIC_KEY"),
        (ec("not a pem at all SECRETISH"), "NATSGATE_TOKEN_ECDSA_PUBLIC_KEY"),
        (ec(RSA_PUBLIC), "NATSGATE_TOKEN_ECDSA_PUBLIC_KEY"),
        (ec(P256_PRIVATE), "NATSGATE_TOKEN_ECDSA_PUBLIC_KEY"),
    ];
    for (result, var) in cases {
        let Err(err) = result else { panic!("{var}: bad key accepted") };
        assert!(matches!(&err, ConfigError::Invalid { var: v, .. } if v == var), "{err}");
        let text = err.to_string();
        for leak in ["SECRETISH", "BEGIN", "MII", "MAA"] {
            assert!(!text.contains(leak), "{text}");
        }
    }
}

#[test]
fn errors_never_show_secrets_or_tokens() {
    let v = verifier(Keys { hmac: Some(SECRET), rsa: Some(RSA_PUBLIC), aud: Some("natsgate"), ..Keys::default() });
    let rsa_body = RSA_PUBLIC.lines().nth(1).unwrap();
    let tokens = [
        mint_hs256("another-secret", &json!({"sub": SECRET})),
        mint_hs256(SECRET, &json!({"sub": 1, "info": SECRET})),
        mint_hs256(SECRET, &json!({"aud": SECRET})),
        mint_hs256(SECRET, &json!({"channel": SECRET, "aud": "natsgate"})),
        mint_hs256(SECRET, &json!({"b64info": SECRET, "aud": "natsgate"})),
        sign(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()), &json!({})),
        format!("{SECRET}.{SECRET}.{SECRET}"),
        SECRET.to_string(),
    ];
    for token in &tokens {
        let err = v.verify_connect(token).unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(SECRET) && !text.contains(rsa_body), "{text}");
            assert!(!text.contains(token.as_str()), "{text}");
        }
    }
}
