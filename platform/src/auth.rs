//! Bearer-token authentication: JWTs verified against a JWKS (a file or an http(s) URL; EdDSA and
//! RS256 keys, chosen by `kid`), with the issuer, audience (a string or an array), expiry and
//! not-before checked, and roles read from the `roles` claim. A JWKS at a URL is fetched again
//! when a token names a key it does not hold (at most once per refresh floor, so unknown `kid`s
//! cannot make the service hammer the identity provider) and when it is older than its maximum
//! age, so a key the provider rotated in is trusted and one it removed stops being trusted.
//! For local development, [`DevKey`] makes a machine-local Ed25519 key whose public half the
//! services trust when pointed at it; nothing is trusted by default.
//!
//! Over 400 lines (before its tests): verifying tokens, refreshing the provider's keys with
//! bounds an attacker cannot push, the role table and the development key are one trust
//! decision, kept in one place.

use std::{
    collections::HashMap,
    fmt,
    path::Path,
    sync::RwLock,
    time::{Duration, Instant},
};

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
    /// A monitoring authority: reads analytics unsuppressed (small cells included).
    Monitoring,
    /// An administrator: everything.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Facility => "facility",
            Self::Controller => "controller",
            Self::Auditor => "auditor",
            Self::Monitoring => "monitoring",
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
    /// The facilities (master-data ids) it records for: the token's `facilities` claim.
    pub facilities: Vec<String>,
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
    /// Expected `aud` of tokens (a token's `aud` may be this string or an array holding it).
    #[arg(long = "jwt-audience", env = "VAXTRAIL_JWT_AUDIENCE", default_value = "vaxtrail")]
    pub audience: String,
    /// Least time between two fetches of a JWKS URL, in seconds: a token with an unknown `kid`
    /// fetches the JWKS again only this often.
    #[arg(
        long = "jwks-refresh-floor-secs",
        env = "VAXTRAIL_JWKS_REFRESH_FLOOR_SECS",
        default_value_t = 30
    )]
    pub refresh_floor_secs: u64,
    /// Longest a JWKS fetched from a URL is trusted before it is fetched again, in seconds.
    #[arg(
        long = "jwks-max-age-secs",
        env = "VAXTRAIL_JWKS_MAX_AGE_SECS",
        default_value_t = 600
    )]
    pub max_age_secs: u64,
}

/// A token's audience: one string or several.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<Role>,
    /// The facilities (master-data ids) a facility token may record for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    facilities: Vec<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    iss: String,
    aud: Audience,
}

type Keys = HashMap<String, (DecodingKey, Algorithm)>;

/// Where the keys come from, and when they were last fetched.
struct Remote {
    url: String,
    client: reqwest::Client,
    floor: Duration,
    max_age: Duration,
    /// When the keys were last fetched (or a fetch was last tried): read by every request, so a
    /// plain lock never held across an await.
    fetched: std::sync::Mutex<Instant>,
    /// Held while fetching, so concurrent requests fetch once.
    fetching: tokio::sync::Mutex<()>,
}

/// Verifies bearer tokens.
pub struct Verifier {
    keys: RwLock<Keys>,
    issuer: String,
    audience: String,
    remote: Option<Remote>,
}

fn parse_jwks(jwks: &str) -> Result<Keys, AuthError> {
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
    Ok(keys)
}

/// Fetches a JWKS document (at most 1 MiB).
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Keys, AuthError> {
    let failed = |e: &dyn fmt::Display| AuthError::Jwks(format!("{url}: {e}"));
    let response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| failed(&e))?;
    if response.content_length().is_some_and(|l| l > 1024 * 1024) {
        return Err(failed(&"the JWKS is larger than 1 MiB"));
    }
    let text = response.text().await.map_err(|e| failed(&e))?;
    parse_jwks(&text)
}

impl Verifier {
    /// A verifier trusting the keys of a JWKS document.
    pub fn from_jwks(jwks: &str, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        Ok(Self {
            keys: RwLock::new(parse_jwks(jwks)?),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            remote: None,
        })
    }

    /// Loads the JWKS the settings name (file or URL); fails when none is configured.
    pub async fn load(args: &AuthArgs) -> Result<Self, AuthError> {
        let source = args.jwks.as_deref().ok_or_else(|| {
            AuthError::Jwks("VAXTRAIL_JWKS is not set: name the JWKS (file or URL) whose tokens to trust".into())
        })?;
        if source.starts_with("http://") || source.starts_with("https://") {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| AuthError::Jwks(e.to_string()))?;
            let keys = fetch(&client, source).await?;
            return Ok(Self {
                keys: RwLock::new(keys),
                issuer: args.issuer.clone(),
                audience: args.audience.clone(),
                remote: Some(Remote {
                    url: source.to_owned(),
                    client,
                    floor: Duration::from_secs(args.refresh_floor_secs),
                    max_age: Duration::from_secs(args.max_age_secs.max(args.refresh_floor_secs)),
                    fetched: std::sync::Mutex::new(Instant::now()),
                    fetching: tokio::sync::Mutex::new(()),
                }),
            });
        }
        let text = std::fs::read_to_string(source).map_err(|e| AuthError::Jwks(format!("{source}: {e}")))?;
        Self::from_jwks(&text, &args.issuer, &args.audience)
    }

    /// Whether a key made by [`DevKey`] (its `kid` starts `dev-`) is trusted.
    pub fn trusts_development_keys(&self) -> bool {
        self.keys
            .read()
            .expect("not poisoned")
            .keys()
            .any(|kid| kid.starts_with("dev-"))
    }

    /// Fetches the JWKS again if it is `stale` or `kid` is unknown, and the floor has passed
    /// since the last fetch. A failed fetch keeps the keys held (and is logged).
    async fn refresh(&self, kid: &str) {
        let Some(remote) = &self.remote else { return };
        let due = || {
            let known = self.keys.read().expect("not poisoned").contains_key(kid);
            let age = remote.fetched.lock().expect("not poisoned").elapsed();
            (!known && age >= remote.floor) || age >= remote.max_age
        };
        if !due() {
            return;
        }
        let _fetching = remote.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if !due() {
            return;
        }
        *remote.fetched.lock().expect("not poisoned") = Instant::now();
        match fetch(&remote.client, &remote.url).await {
            Ok(keys) => {
                metrics::counter!("vaxtrail_jwks_refreshes_total", "outcome" => "ok").increment(1);
                *self.keys.write().expect("not poisoned") = keys;
            }
            Err(error) => {
                metrics::counter!("vaxtrail_jwks_refreshes_total", "outcome" => "failed").increment(1);
                tracing::warn!(%error, "refreshing the JWKS failed; keeping the keys held");
            }
        }
    }

    /// The caller a request's `Authorization` header names (fetching the JWKS again first when
    /// the token names a key not held, or the keys are old).
    pub async fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Caller, AuthError> {
        let token = bearer(headers)?;
        if self.remote.is_some() {
            let kid = jsonwebtoken::decode_header(token)
                .map_err(|e| AuthError::Invalid(e.to_string()))?
                .kid
                .unwrap_or_default();
            self.refresh(&kid).await;
        }
        self.verify(token)
    }

    /// The caller a token names, if its signature, issuer, audience, expiry and not-before hold.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no key (kid)".into()))?;
        let keys = self.keys.read().expect("not poisoned");
        let (key, algorithm) = keys.get(&kid).ok_or_else(|| AuthError::UnknownKey(kid.clone()))?;
        if header.alg != *algorithm {
            return Err(AuthError::Invalid(format!(
                "key {kid} signs with {algorithm:?}, not {:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        let claims =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Caller {
            subject: claims.claims.sub,
            roles: claims.claims.roles,
            facilities: claims.claims.facilities,
        })
    }
}

/// The bearer token of a request.
fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(AuthError::Missing)
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
        self.token_for(subject, roles, &[], issuer, audience, ttl)
    }

    /// A token bound to `facilities` (master-data ids): a facility posts only as one of them.
    pub fn token_for(
        &self,
        subject: &str,
        roles: &[Role],
        facilities: &[&str],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            + ttl;
        let claims = Claims {
            sub: subject.into(),
            roles: roles.to_vec(),
            facilities: facilities.iter().map(|f| (*f).to_owned()).collect(),
            exp: exp.as_secs(),
            nbf: None,
            iss: issuer.into(),
            aud: Audience::One(audience.into()),
        };
        self.sign(&claims)
    }

    fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.der())).expect("Ed25519 signing works")
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

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims(exp: u64, nbf: Option<u64>, aud: Audience) -> Claims {
        Claims {
            sub: "x".into(),
            roles: vec![Role::Facility],
            facilities: vec![],
            exp,
            nbf,
            iss: "vaxtrail-local".into(),
            aud,
        }
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let key = DevKey::generate();
        let early = key.sign(&claims(
            now() + 7200,
            Some(now() + 3600),
            Audience::One("vaxtrail".into()),
        ));
        let error = verifier(&key).verify(&early).unwrap_err();
        assert!(error.to_string().contains("ImmatureSignature"), "{error}");
        let ready = key.sign(&claims(
            now() + 7200,
            Some(now() - 10),
            Audience::One("vaxtrail".into()),
        ));
        assert!(verifier(&key).verify(&ready).is_ok());
    }

    #[test]
    fn an_audience_array_holding_ours_is_accepted_and_one_without_it_refused() {
        let key = DevKey::generate();
        let ours = key.sign(&claims(
            now() + 600,
            None,
            Audience::Many(vec!["other".into(), "vaxtrail".into()]),
        ));
        assert_eq!(verifier(&key).verify(&ours).unwrap().subject, "x");
        let theirs = key.sign(&claims(now() + 600, None, Audience::Many(vec!["other".into()])));
        assert!(matches!(verifier(&key).verify(&theirs), Err(AuthError::Invalid(_))));
    }

    /// Serves a JWKS that the test can change.
    async fn jwks_server(
        jwks: std::sync::Arc<std::sync::Mutex<String>>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = jwks.lock().unwrap().clone();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, hits)
    }

    fn bearer_headers(token: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn a_jwks_url_is_fetched_again_for_an_unknown_kid_but_not_more_often_than_the_floor() {
        let (old, new) = (DevKey::generate(), DevKey::generate());
        let served = std::sync::Arc::new(std::sync::Mutex::new(old.jwks()));
        let (url, hits) = jwks_server(served.clone()).await;
        let args = |floor| AuthArgs {
            jwks: Some(url.clone()),
            issuer: "vaxtrail-local".into(),
            audience: "vaxtrail".into(),
            refresh_floor_secs: floor,
            max_age_secs: 3600,
        };
        let eager = Verifier::load(&args(0)).await.unwrap();
        let patient = Verifier::load(&args(3600)).await.unwrap();
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
        // The provider rotates to a new key.
        *served.lock().unwrap() = new.jwks();
        let token = new.token("f", &[Role::Facility], "vaxtrail-local", "vaxtrail", HOUR);
        assert_eq!(eager.authenticate(&bearer_headers(&token)).await.unwrap().subject, "f");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Within the floor, unknown kids fetch nothing: they are refused.
        for _ in 0..20 {
            let stranger = DevKey::generate().token("x", &[Role::Admin], "vaxtrail-local", "vaxtrail", HOUR);
            assert!(matches!(
                patient.authenticate(&bearer_headers(&stranger)).await,
                Err(AuthError::UnknownKey(_))
            ));
        }
        assert!(patient.authenticate(&bearer_headers(&token)).await.is_err());
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3, "the floor holds");
        // The old key, removed by the provider, is no longer trusted by the refreshed verifier.
        let retired = old.token("f", &[Role::Facility], "vaxtrail-local", "vaxtrail", HOUR);
        assert!(eager.verify(&retired).is_err());
    }

    fn verifier(key: &DevKey) -> Verifier {
        Verifier::from_jwks(&key.jwks(), "vaxtrail-local", "vaxtrail").unwrap()
    }

    #[test]
    fn a_token_signed_with_a_trusted_key_names_its_caller_and_roles() {
        let key = DevKey::generate();
        let token = key.token_for(
            "facility-42",
            &[Role::Facility],
            &["phc-1"],
            "vaxtrail-local",
            "vaxtrail",
            HOUR,
        );
        let caller = verifier(&key).verify(&token).unwrap();
        assert_eq!(
            caller,
            Caller {
                subject: "facility-42".into(),
                roles: vec![Role::Facility],
                facilities: vec!["phc-1".into()],
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
            facilities: vec![],
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
        let expired = key.sign(&claims(1_000, None, Audience::One("vaxtrail".into())));
        assert!(matches!(trusted.verify(&expired), Err(AuthError::Invalid(_))));
        let mut tampered = key.token("x", &[Role::Facility], "vaxtrail-local", "vaxtrail", HOUR);
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(matches!(trusted.verify(&tampered), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn a_missing_or_non_bearer_header_is_missing() {
        let trusted = verifier(&DevKey::generate());
        assert!(matches!(bearer(&axum::http::HeaderMap::new()), Err(AuthError::Missing)));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&headers), Err(AuthError::Missing)));
        assert!(matches!(
            trusted.verify(bearer(&bearer_headers("abc")).unwrap()),
            Err(AuthError::Invalid(_))
        ));
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
