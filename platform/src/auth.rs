//! Bearer-token authentication: JWTs verified against a JWKS (a file or an http(s) URL; EdDSA and
//! RS256 keys, chosen by `kid`), with the issuer, audience and expiry checked, and roles read from
//! the `roles` claim. For local development, [`DevKey`] makes a machine-local Ed25519 key whose
//! public half the services trust when pointed at it; nothing is trusted by default.

use std::{collections::HashMap, fmt, path::Path, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use clap::Args;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A vaccination facility: records and corrects vaccinations.
    Facility,
    /// A programme controller: revokes certificates.
    Controller,
    /// An auditor: reads the audit trail.
    Auditor,
    /// An administrator: everything.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Facility => "facility",
            Self::Controller => "controller",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        })
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's subject (a facility id, a person).
    pub subject: String,
    /// The roles it holds.
    pub roles: Vec<Role>,
}

impl Caller {
    /// Passes when the caller holds one of `roles` (or is an admin).
    pub fn require(&self, roles: &[Role]) -> Result<(), AuthError> {
        if self.roles.iter().any(|r| *r == Role::Admin || roles.contains(r)) {
            Ok(())
        } else {
            Err(AuthError::Forbidden { needed: roles.to_vec() })
        }
    }
}

/// Why a request was not authenticated (401) or not allowed (403).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send Authorization: Bearer <JWT>")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token is signed with an unknown key {0:?}")]
    UnknownKey(String),
    #[error("this needs one of the roles {needed:?}")]
    Forbidden { needed: Vec<Role> },
    #[error("loading the JWKS: {0}")]
    Jwks(String),
}

impl AuthError {
    /// Whether the answer is 403 (authenticated, not allowed) rather than 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Forbidden { .. })
    }
}

/// Authentication settings.
#[derive(Clone, Debug, Args)]
pub struct AuthArgs {
    /// JWKS with the keys whose tokens are trusted: a file path or an http(s) URL. Required; the
    /// local stack's scripts point it at the machine's development key.
    #[arg(long = "jwks", env = "VAXTRAIL_JWKS")]
    pub jwks: Option<String>,
    /// Expected `iss` of tokens.
    #[arg(long = "jwt-issuer", env = "VAXTRAIL_JWT_ISSUER", default_value = "vaxtrail-local")]
    pub issuer: String,
    /// Expected `aud` of tokens.
    #[arg(long = "jwt-audience", env = "VAXTRAIL_JWT_AUDIENCE", default_value = "vaxtrail")]
    pub audience: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<Role>,
    exp: u64,
    iss: String,
    aud: String,
}

/// Verifies bearer tokens.
pub struct Verifier {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    issuer: String,
    audience: String,
}

impl Verifier {
    /// A verifier trusting the keys of a JWKS document.
    pub fn from_jwks(jwks: &str, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(|e| AuthError::Jwks(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| AuthError::Jwks("a key has no kid".into()))?;
            let algorithm = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => {
                    return Err(AuthError::Jwks(format!(
                        "key {kid}: only Ed25519 (EdDSA) and RSA (RS256) keys are supported"
                    )));
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Jwks(format!("key {kid}: {e}")))?;
            keys.insert(kid, (key, algorithm));
        }
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Loads the JWKS the settings name (file or URL); fails when none is configured.
    pub async fn load(args: &AuthArgs) -> Result<Self, AuthError> {
        let source = args.jwks.as_deref().ok_or_else(|| {
            AuthError::Jwks("VAXTRAIL_JWKS is not set: name the JWKS (file or URL) whose tokens to trust".into())
        })?;
        let text = if source.starts_with("http://") || source.starts_with("https://") {
            let response = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| AuthError::Jwks(e.to_string()))?
                .get(source)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| AuthError::Jwks(format!("{source}: {e}")))?;
            response
                .text()
                .await
                .map_err(|e| AuthError::Jwks(format!("{source}: {e}")))?
        } else {
            std::fs::read_to_string(source).map_err(|e| AuthError::Jwks(format!("{source}: {e}")))?
        };
        Self::from_jwks(&text, &args.issuer, &args.audience)
    }

    /// The caller a request's `Authorization` header names.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Caller, AuthError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .ok_or(AuthError::Missing)?;
        self.verify(token.trim())
    }

    /// The caller a token names, if its signature, issuer, audience and expiry hold.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no key (kid)".into()))?;
        let (key, algorithm) = self.keys.get(&kid).ok_or_else(|| AuthError::UnknownKey(kid.clone()))?;
        if header.alg != *algorithm {
            return Err(AuthError::Invalid(format!(
                "key {kid} signs with {algorithm:?}, not {:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Caller {
            subject: claims.claims.sub,
            roles: claims.claims.roles,
        })
    }
}

/// A development signing key (Ed25519), kept on the developer's machine, never in the repo.
#[derive(Serialize, Deserialize)]
pub struct DevKey {
    kid: String,
    /// PKCS#8 document, base64url.
    pkcs8: String,
}

impl DevKey {
    /// A fresh key.
    pub fn generate() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        let kid = format!(
            "dev-{}",
            &URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, pkcs8.as_ref()))[..12]
        );
        Self {
            kid,
            pkcs8: URL_SAFE_NO_PAD.encode(pkcs8.as_ref()),
        }
    }

    fn der(&self) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(&self.pkcs8).expect("written by generate")
    }

    /// The public JWKS that trusts this key.
    pub fn jwks(&self) -> String {
        let pair = Ed25519KeyPair::from_pkcs8(&self.der()).expect("a generated key parses");
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        serde_json::json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig" }] })
            .to_string()
    }

    /// A token for `subject` with `roles`, valid for `ttl`.
    pub fn token(&self, subject: &str, roles: &[Role], issuer: &str, audience: &str, ttl: Duration) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            + ttl;
        let claims = Claims {
            sub: subject.into(),
            roles: roles.to_vec(),
            exp: exp.as_secs(),
            iss: issuer.into(),
            aud: audience.into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&self.der())).expect("Ed25519 signing works")
    }

    /// Reads a key written by [`DevKey::write_new_if_missing`].
    pub fn read(path: &Path) -> std::io::Result<Self> {
        serde_json::from_str(&std::fs::read_to_string(path)?).map_err(std::io::Error::other)
    }

    /// Writes a new key and its JWKS into `dir` unless a key is already there; returns the key.
    pub fn write_new_if_missing(dir: &Path) -> std::io::Result<Self> {
        let key_path = dir.join("dev-token-key.json");
        if let Ok(existing) = Self::read(&key_path) {
            return Ok(existing);
        }
        std::fs::create_dir_all(dir)?;
        let key = Self::generate();
        std::fs::write(&key_path, serde_json::to_string(&key).map_err(std::io::Error::other)?)?;
        #[cfg(unix)]
        std::fs::set_permissions(&key_path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::write(dir.join("dev-jwks.json"), key.jwks())?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn verifier(key: &DevKey) -> Verifier {
        Verifier::from_jwks(&key.jwks(), "vaxtrail-local", "vaxtrail").unwrap()
    }

    #[test]
    fn a_token_signed_with_a_trusted_key_names_its_caller_and_roles() {
        let key = DevKey::generate();
        let token = key.token("facility-42", &[Role::Facility], "vaxtrail-local", "vaxtrail", HOUR);
        let caller = verifier(&key).verify(&token).unwrap();
        assert_eq!(
            caller,
            Caller {
                subject: "facility-42".into(),
                roles: vec![Role::Facility]
            }
        );
        assert!(caller.require(&[Role::Facility]).is_ok());
        assert!(caller.require(&[Role::Controller]).unwrap_err().is_forbidden());
    }

    #[test]
    fn admins_pass_every_role_check() {
        let admin = Caller {
            subject: "a".into(),
            roles: vec![Role::Admin],
        };
        assert!(admin.require(&[Role::Controller]).is_ok());
    }

    #[test]
    fn tokens_from_other_keys_issuers_audiences_or_the_past_are_refused() {
        let key = DevKey::generate();
        let trusted = verifier(&key);
        let stranger = DevKey::generate().token("x", &[Role::Admin], "vaxtrail-local", "vaxtrail", HOUR);
        assert!(matches!(trusted.verify(&stranger), Err(AuthError::UnknownKey(_))));
        let wrong_issuer = key.token("x", &[Role::Admin], "elsewhere", "vaxtrail", HOUR);
        assert!(matches!(trusted.verify(&wrong_issuer), Err(AuthError::Invalid(_))));
        let wrong_audience = key.token("x", &[Role::Admin], "vaxtrail-local", "other", HOUR);
        assert!(matches!(trusted.verify(&wrong_audience), Err(AuthError::Invalid(_))));
        let expired = {
            let claims = Claims {
                sub: "x".into(),
                roles: vec![],
                exp: 1_000,
                iss: "vaxtrail-local".into(),
                aud: "vaxtrail".into(),
            };
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(key.kid.clone());
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&key.der())).unwrap()
        };
        assert!(matches!(trusted.verify(&expired), Err(AuthError::Invalid(_))));
        let mut tampered = key.token("x", &[Role::Facility], "vaxtrail-local", "vaxtrail", HOUR);
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(matches!(trusted.verify(&tampered), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn a_missing_or_non_bearer_header_is_missing() {
        let trusted = verifier(&DevKey::generate());
        assert!(matches!(
            trusted.authenticate(&axum::http::HeaderMap::new()),
            Err(AuthError::Missing)
        ));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(trusted.authenticate(&headers), Err(AuthError::Missing)));
    }

    #[test]
    fn the_dev_key_is_written_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("vaxtrail-auth-{}", std::process::id()));
        let first = DevKey::write_new_if_missing(&dir).unwrap();
        let second = DevKey::write_new_if_missing(&dir).unwrap();
        assert_eq!(first.kid, second.kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("dev-token-key.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "only its owner reads the private key");
        }
        let jwks = std::fs::read_to_string(dir.join("dev-jwks.json")).unwrap();
        assert!(Verifier::from_jwks(&jwks, "i", "a").is_ok());
        assert!(!jwks.contains(&first.pkcs8), "the JWKS holds only the public key");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
