//! Tokens signed with RS256 (an identity provider's usual choice) verify against an RSA JWK.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{AuthError, Role, Verifier};

fn token(claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rs256-test".into());
    let key = EncodingKey::from_rsa_pem(include_bytes!("data/rs256-test-only-key.pem")).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn in_an_hour() -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(3600)).as_secs()
}

#[test]
fn an_rs256_token_verifies_against_the_rsa_jwk() {
    let verifier = Verifier::from_jwks(include_str!("data/rs256-test-only-jwks.json"), "idp", "vaxtrail").unwrap();
    let claims = serde_json::json!({ "sub": "controller-7", "roles": ["controller"], "exp": in_an_hour(), "iss": "idp", "aud": "vaxtrail" });
    let caller = verifier.verify(&token(claims)).unwrap();
    assert_eq!(caller.subject, "controller-7");
    assert_eq!(caller.roles, vec![Role::Controller]);
}

#[test]
fn an_rs256_token_for_another_audience_is_refused() {
    let verifier = Verifier::from_jwks(include_str!("data/rs256-test-only-jwks.json"), "idp", "vaxtrail").unwrap();
    let claims = serde_json::json!({ "sub": "x", "roles": [], "exp": in_an_hour(), "iss": "idp", "aud": "elsewhere" });
    assert!(matches!(verifier.verify(&token(claims)), Err(AuthError::Invalid(_))));
}
