//! The issuer's keys as its DID document publishes them: what an auditor or a verifier trusts,
//! without any private key.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde_json::Value;

/// The Multikey header of an Ed25519 public key (multicodec `ed25519-pub`, 0xed as a varint).
const ED25519_PUB: [u8; 2] = [0xed, 0x01];

/// Verification methods of a DID document, by their DID URL.
#[derive(Clone, Debug)]
pub struct PublishedKeys {
    did: String,
    keys: Vec<(String, VerifyingKey)>,
}

impl PublishedKeys {
    /// Reads every Ed25519 `Multikey` of a DID document.
    pub fn from_did_document(document: &Value) -> Result<Self, String> {
        let did = document["id"].as_str().ok_or("the DID document has no id")?.to_owned();
        let mut keys = Vec::new();
        for method in document["verificationMethod"].as_array().into_iter().flatten() {
            let id = method["id"].as_str().ok_or("a verification method has no id")?;
            let Some(encoded) = method["publicKeyMultibase"].as_str() else {
                continue;
            };
            let (_, bytes) = multibase::decode(encoded).map_err(|e| format!("{id}: publicKeyMultibase: {e}"))?;
            let raw = bytes
                .strip_prefix(&ED25519_PUB)
                .ok_or_else(|| format!("{id}: not an Ed25519 Multikey"))?;
            let raw: [u8; 32] = raw.try_into().map_err(|_| format!("{id}: not 32 bytes"))?;
            let key = VerifyingKey::from_bytes(&raw).map_err(|e| format!("{id}: {e}"))?;
            let id = if id.starts_with('#') {
                format!("{did}{id}")
            } else {
                id.to_owned()
            };
            keys.push((id, key));
        }
        if keys.is_empty() {
            return Err("the DID document publishes no Ed25519 key".into());
        }
        Ok(Self { did, keys })
    }

    /// The DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The key a verification method names.
    pub fn key(&self, method: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|(id, _)| id == method).map(|(_, key)| key)
    }

    /// Checks a signature made by the key a verification method names.
    pub fn verify(&self, method: &str, message: &[u8], signature: &Signature) -> Result<(), String> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| id == method)
            .ok_or_else(|| format!("{method} is not a key the DID document publishes"))?;
        key.verify(message, signature)
            .map_err(|_| "the signature does not verify".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IssuerKey, Keyring, keys::generate_pem};

    #[test]
    fn keys_read_back_from_the_published_document_verify_what_the_keyring_signs() {
        let keyring = Keyring::new(
            "did:web:example.gov",
            vec![
                IssuerKey::from_pem("old", &generate_pem()).unwrap(),
                IssuerKey::from_pem("new", &generate_pem()).unwrap(),
            ],
            Some("new"),
        )
        .unwrap();
        let published = PublishedKeys::from_did_document(&keyring.did_document()).unwrap();
        let (method, signature) = keyring.sign(b"checkpoint");
        assert_eq!(method, "did:web:example.gov#new");
        published.verify(&method, b"checkpoint", &signature).unwrap();
        assert!(published.verify(&method, b"altered", &signature).is_err());
        assert!(
            published
                .verify("did:web:example.gov#old", b"checkpoint", &signature)
                .is_err()
        );
        assert!(
            published
                .verify("did:web:example.gov#other", b"checkpoint", &signature)
                .is_err()
        );
    }
}
