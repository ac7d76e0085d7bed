//! The issuer's keys: PKCS#8 PEM files in one directory, named `<key id>.pem`. A private key
//! (`PRIVATE KEY`) can sign; a retired key may be kept as its public half alone (`PUBLIC KEY`),
//! still published so that what it signed still verifies. One key is active for signing.

use std::path::Path;

use ed25519_dalek::{
    Signature, Signer, SigningKey, Verifier, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use serde_json::{Value, json};
use ssi::verification_methods::Multikey;

/// Why the keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key directory {dir}: {source}")]
    Directory { dir: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("no issuer key in {dir} (create one with `vaxctl keys generate --dir {dir}`)")]
    NoKeys { dir: String },
    #[error("the active key {id:?} is not among the keys in {dir} ({known})")]
    UnknownActive { id: String, dir: String, known: String },
    #[error("the active key {id:?} is only a public key; signing needs its PKCS#8 private key")]
    ActiveWithoutSecret { id: String },
    #[error("{dir} holds {count} private keys; name the one to sign with (VAXTRAIL_ISSUER_ACTIVE_KEY)")]
    AmbiguousActive { dir: String, count: usize },
    #[error("{0:?} is not a valid issuer DID (expected did:<method>:<id>)")]
    Did(String),
    #[error(
        "{path} is a private key: a service that only verifies holds public keys (write them with `vaxctl keys publish --dir <private keys> --out <public keys>`)"
    )]
    PrivateKeyPublished { path: String },
}

/// Writes the public half of every key of `dir` into `out` (created if missing), and removes the
/// keys of `out` that `dir` no longer holds: what a service that only verifies is given. Returns
/// the key ids written.
pub fn publish(dir: &Path, out: &Path) -> Result<Vec<String>, KeyError> {
    let keys = Keyring::read_dir(dir)?;
    let failed = |path: &Path, reason: String| KeyError::File {
        path: path.display().to_string(),
        reason,
    };
    let files = keys
        .iter()
        .map(|key| {
            let pem = key
                .public
                .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(|e| failed(&out.join(format!("{}.pem", key.id)), e.to_string()))?;
            Ok((key.id.clone(), pem))
        })
        .collect::<Result<Vec<_>, KeyError>>()?;
    sync_pem_dir(out, &files).map_err(|(path, reason)| failed(&path, reason))
}

/// Makes `out` hold exactly `files` (`<id>.pem` with its text each): writes them (creating
/// `out` if missing) and removes the `.pem` files it holds besides. Returns the ids written. What
/// `vaxctl keys|dsc|shc-keys publish` share.
pub(crate) fn sync_pem_dir(
    out: &Path,
    files: &[(String, String)],
) -> Result<Vec<String>, (std::path::PathBuf, String)> {
    let failed = |path: &Path, e: std::io::Error| (path.to_path_buf(), e.to_string());
    std::fs::create_dir_all(out).map_err(|e| failed(out, e))?;
    let mut written = Vec::new();
    for (id, pem) in files {
        let path = out.join(format!("{id}.pem"));
        std::fs::write(&path, pem).map_err(|e| failed(&path, e))?;
        written.push(id.clone());
    }
    for entry in std::fs::read_dir(out).map_err(|e| failed(out, e))?.flatten() {
        let path = entry.path();
        let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if path.extension().is_some_and(|e| e == "pem") && !written.contains(&id) {
            std::fs::remove_file(&path).map_err(|e| failed(&path, e))?;
        }
    }
    Ok(written)
}

/// One key of the issuer.
#[derive(Clone, Debug)]
pub struct IssuerKey {
    /// Its id, the DID URL fragment (`key-2026-11`).
    pub id: String,
    pub public: VerifyingKey,
    secret: Option<SigningKey>,
}

impl IssuerKey {
    /// A key from PEM text: a PKCS#8 private key or an SPKI public key.
    pub fn from_pem(id: &str, pem: &str) -> Result<Self, String> {
        if !valid_id(id) {
            return Err(format!("key id {id:?} must be letters, digits, '.', '_' or '-'"));
        }
        if pem.contains("PRIVATE KEY") {
            let secret = SigningKey::from_pkcs8_pem(pem).map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
            Ok(Self {
                id: id.to_owned(),
                public: secret.verifying_key(),
                secret: Some(secret),
            })
        } else {
            let public =
                VerifyingKey::from_public_key_pem(pem).map_err(|e| format!("not an Ed25519 public key: {e}"))?;
            Ok(Self {
                id: id.to_owned(),
                public,
                secret: None,
            })
        }
    }

    /// Whether it can sign.
    pub fn can_sign(&self) -> bool {
        self.secret.is_some()
    }

    /// The private key, if it holds one.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.secret.as_ref()
    }

    pub(crate) fn secret_bytes(&self) -> Option<[u8; 32]> {
        self.secret.as_ref().map(SigningKey::to_bytes)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A new Ed25519 private key as PKCS#8 PEM.
pub fn generate_pem() -> String {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).expect("the system has randomness");
    let key = SigningKey::from_bytes(&seed);
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key encodes")
        .to_string()
}

/// The public half of a PKCS#8 PEM key, as SPKI PEM (what a retired key is kept as).
pub fn public_pem(private_pem: &str) -> Result<String, String> {
    let key = SigningKey::from_pkcs8_pem(private_pem).map_err(|e| e.to_string())?;
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())
}

/// The issuer: its DID, every key it publishes, and the one it signs with.
#[derive(Clone, Debug)]
pub struct Keyring {
    did: String,
    keys: Vec<IssuerKey>,
    /// The signing key; `None` in a keyring of published (public) keys only.
    active: Option<usize>,
}

impl Keyring {
    /// The keys of `dir` (`*.pem`, sorted by id). `active` names the signing key; without it, the
    /// only private key is.
    pub fn load(did: &str, dir: &Path, active: Option<&str>) -> Result<Self, KeyError> {
        let keys = Self::read_dir(dir)?;
        let shown = dir.display().to_string();
        Self::new(did, keys, active).map_err(|e| match e {
            KeyError::NoKeys { .. } => KeyError::NoKeys { dir: shown.clone() },
            KeyError::UnknownActive { id, known, .. } => KeyError::UnknownActive {
                id,
                dir: shown.clone(),
                known,
            },
            KeyError::AmbiguousActive { count, .. } => KeyError::AmbiguousActive {
                dir: shown.clone(),
                count,
            },
            other => other,
        })
    }

    /// The published keys of `dir`, for verifying only (the query API): every file must be a
    /// public key; a private key there is refused, so a service that verifies cannot sign.
    pub fn published(did: &str, dir: &Path) -> Result<Self, KeyError> {
        let keys = Self::read_dir(dir)?;
        if let Some(private) = keys.iter().find(|k| k.can_sign()) {
            return Err(KeyError::PrivateKeyPublished {
                path: dir.join(format!("{}.pem", private.id)).display().to_string(),
            });
        }
        let mut keyring = Self::new_unchecked(did, keys)?;
        keyring.active = None;
        if keyring.keys.is_empty() {
            return Err(KeyError::NoKeys {
                dir: dir.display().to_string(),
            });
        }
        Ok(keyring)
    }

    /// Whether this keyring can sign (it holds the active private key).
    pub fn can_sign(&self) -> bool {
        self.active.is_some()
    }

    fn new_unchecked(did: &str, mut keys: Vec<IssuerKey>) -> Result<Self, KeyError> {
        let well_formed = did.strip_prefix("did:").and_then(|rest| rest.split_once(':'));
        if !well_formed.is_some_and(|(method, id)| !method.is_empty() && !id.is_empty()) {
            return Err(KeyError::Did(did.to_owned()));
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Self {
            did: did.to_owned(),
            keys,
            active: None,
        })
    }

    fn read_dir(dir: &Path) -> Result<Vec<IssuerKey>, KeyError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|source| KeyError::Directory {
            dir: shown.clone(),
            source,
        })?;
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| KeyError::Directory {
                    dir: shown.clone(),
                    source,
                })?
                .path();
            if path.extension().is_none_or(|e| e != "pem") {
                continue;
            }
            let file = |reason: String| KeyError::File {
                path: path.display().to_string(),
                reason,
            };
            let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let pem = std::fs::read_to_string(&path).map_err(|e| file(e.to_string()))?;
            keys.push(IssuerKey::from_pem(&id, &pem).map_err(file)?);
        }
        Ok(keys)
    }

    /// A keyring from keys in hand.
    pub fn new(did: &str, mut keys: Vec<IssuerKey>, active: Option<&str>) -> Result<Self, KeyError> {
        let well_formed = did.strip_prefix("did:").and_then(|rest| rest.split_once(':'));
        if !well_formed.is_some_and(|(method, id)| !method.is_empty() && !id.is_empty()) {
            return Err(KeyError::Did(did.to_owned()));
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        if keys.is_empty() {
            return Err(KeyError::NoKeys { dir: String::new() });
        }
        let active = match active {
            Some(id) => keys
                .iter()
                .position(|k| k.id == id)
                .ok_or_else(|| KeyError::UnknownActive {
                    id: id.to_owned(),
                    dir: String::new(),
                    known: keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", "),
                })?,
            None => {
                let private: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].can_sign()).collect();
                match private[..] {
                    [one] => one,
                    [] => {
                        return Err(KeyError::ActiveWithoutSecret { id: keys[0].id.clone() });
                    }
                    _ => {
                        return Err(KeyError::AmbiguousActive {
                            dir: String::new(),
                            count: private.len(),
                        });
                    }
                }
            }
        };
        if !keys[active].can_sign() {
            return Err(KeyError::ActiveWithoutSecret {
                id: keys[active].id.clone(),
            });
        }
        Ok(Self {
            did: did.to_owned(),
            keys,
            active: Some(active),
        })
    }

    /// The issuer's DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// Every key, active and retired.
    pub fn keys(&self) -> &[IssuerKey] {
        &self.keys
    }

    /// The key that signs. A keyring of published keys has none: only signers call this.
    pub fn active(&self) -> &IssuerKey {
        &self.keys[self.active.expect("a keyring of published keys does not sign")]
    }

    /// A key's verification method: the DID URL `did#id`.
    pub fn method_of(&self, key: &IssuerKey) -> String {
        format!("{}#{}", self.did, key.id)
    }

    /// The active key's verification method.
    pub fn active_method(&self) -> String {
        self.method_of(self.active())
    }

    /// The key a verification method names, if it is one of ours.
    pub fn key_for_method(&self, method: &str) -> Option<&IssuerKey> {
        let id = method.strip_prefix(&self.did)?.strip_prefix('#')?;
        self.keys.iter().find(|k| k.id == id)
    }

    /// Signs bytes with the active key: (verification method, signature).
    pub fn sign(&self, message: &[u8]) -> (String, Signature) {
        let key = self.active();
        let secret = key.secret.as_ref().expect("the active key can sign (checked at load)");
        (self.method_of(key), secret.sign(message))
    }

    /// Checks a signature made by any of the issuer's keys.
    pub fn verify(&self, method: &str, message: &[u8], signature: &Signature) -> Result<(), String> {
        let key = self
            .key_for_method(method)
            .ok_or_else(|| format!("{method} is not a key of {}", self.did))?;
        key.public
            .verify(message, signature)
            .map_err(|_| "the signature does not verify".to_owned())
    }

    /// The issuer's DID document: every key as a `Multikey`, all of them assertion methods, so
    /// certificates signed before a rotation still verify.
    pub fn did_document(&self) -> Value {
        let methods: Vec<Value> = self
            .keys
            .iter()
            .map(|key| {
                let id = self.method_of(key).parse().expect("a DID URL is an IRI");
                let controller = self.did.parse().expect("a DID is a URI");
                serde_json::to_value(Multikey::from_public_key(id, controller, &key.public))
                    .expect("a Multikey serializes")
            })
            .collect();
        let ids: Vec<String> = self.keys.iter().map(|k| self.method_of(k)).collect();
        json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did,
            "verificationMethod": methods,
            "assertionMethod": ids,
            "authentication": ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> IssuerKey {
        IssuerKey::from_pem(id, &generate_pem()).unwrap()
    }

    #[test]
    fn a_generated_key_round_trips_through_pem_and_its_public_half() {
        let pem = generate_pem();
        let private = IssuerKey::from_pem("k1", &pem).unwrap();
        let public = IssuerKey::from_pem("k1", &public_pem(&pem).unwrap()).unwrap();
        assert_eq!(private.public, public.public);
        assert!(private.can_sign() && !public.can_sign());
    }

    #[test]
    fn the_active_key_signs_and_retired_keys_still_verify() {
        let old = key("key-1");
        let old_public = IssuerKey::from_pem("key-1", &old.public.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
        let before = Keyring::new("did:web:example.gov", vec![old], None).unwrap();
        let (method, signature) = before.sign(b"checkpoint");
        assert_eq!(method, "did:web:example.gov#key-1");

        let after = Keyring::new("did:web:example.gov", vec![key("key-2"), old_public], Some("key-2")).unwrap();
        assert_eq!(after.active_method(), "did:web:example.gov#key-2");
        assert_eq!(after.verify(&method, b"checkpoint", &signature), Ok(()));
        assert!(after.verify(&method, b"checkpoint!", &signature).is_err());
        assert!(
            after
                .verify("did:web:example.gov#key-9", b"checkpoint", &signature)
                .is_err()
        );

        let document = after.did_document();
        assert_eq!(document["verificationMethod"].as_array().unwrap().len(), 2);
        assert_eq!(document["assertionMethod"][0], "did:web:example.gov#key-1");
        assert!(
            document["verificationMethod"][0]["publicKeyMultibase"]
                .as_str()
                .unwrap()
                .starts_with("z6Mk")
        );
    }

    #[test]
    fn a_published_keyring_holds_public_keys_only() {
        let dir = std::env::temp_dir().join(format!("vaxtrail-published-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = generate_pem();
        std::fs::write(dir.join("key-1.pem"), &pem).unwrap();
        let refused = Keyring::published("did:web:example.gov", &dir).unwrap_err();
        assert!(refused.to_string().contains("is a private key"), "{refused}");
        std::fs::write(dir.join("key-1.pem"), public_pem(&pem).unwrap()).unwrap();
        let published = Keyring::published("did:web:example.gov", &dir).unwrap();
        assert!(!published.can_sign());
        assert_eq!(
            published.did_document()["assertionMethod"][0],
            "did:web:example.gov#key-1"
        );
        let signer = Keyring::new(
            "did:web:example.gov",
            vec![IssuerKey::from_pem("key-1", &pem).unwrap()],
            None,
        )
        .unwrap();
        let (method, signature) = signer.sign(b"m");
        assert_eq!(published.verify(&method, b"m", &signature), Ok(()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ambiguous_unknown_or_public_only_active_keys_are_refused() {
        let did = "did:web:example.gov";
        assert!(matches!(
            Keyring::new(did, vec![key("a"), key("b")], None),
            Err(KeyError::AmbiguousActive { count: 2, .. })
        ));
        assert!(matches!(
            Keyring::new(did, vec![key("a")], Some("z")),
            Err(KeyError::UnknownActive { .. })
        ));
        let public = IssuerKey::from_pem("p", &key("p").public.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
        assert!(matches!(
            Keyring::new(did, vec![public], None),
            Err(KeyError::ActiveWithoutSecret { .. })
        ));
        assert!(matches!(
            Keyring::new("web:x", vec![key("a")], None),
            Err(KeyError::Did(_))
        ));
        assert!(IssuerKey::from_pem("bad id", &generate_pem()).is_err());
    }
}
