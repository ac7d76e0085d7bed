//! ES256 (ECDSA P-256 with SHA-256) signing for the EU DCC and SMART Health Cards, through
//! `ring` (assembly-optimised: an EU DCC took 28.6 µs with it and 131 µs with the pure-Rust
//! `p256` signing, `vaxctl bench sign`, README), with `p256` reading the keys and as the fallback
//! for a PKCS#8 document `ring` does not accept (one without the public key). Signatures are
//! `r ‖ s`, 64 bytes; `ring`'s nonces are random, so a document is not re-signed identically:
//! it is logged once, as signed.

use std::sync::Arc;

use base64::Engine as _;
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer},
    pkcs8::DecodePrivateKey,
};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
};

/// A P-256 private key that signs.
#[derive(Clone)]
pub struct Es256Key {
    fast: Option<Arc<EcdsaKeyPair>>,
    key: SigningKey,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Key")
            .field("ring", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

/// The DER inside the first `PRIVATE KEY` PEM block.
fn pkcs8_der(pem: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN PRIVATE KEY-----";
    let start = pem.find(begin)? + begin.len();
    let end = pem[start..].find("-----END PRIVATE KEY-----")? + start;
    let body: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl Es256Key {
    /// A key from its PKCS#8 PEM.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, String> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
        let fast = pkcs8_der(pem)
            .and_then(|der| EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new()).ok())
            .map(Arc::new);
        Ok(Self { fast, key })
    }

    /// Its verifying key.
    pub fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.key.verifying_key()
    }

    /// An ES256 signature, `r ‖ s`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        if let Some(fast) = &self.fast
            && let Ok(signature) = fast.sign(&SystemRandom::new(), message)
            && let Ok(bytes) = <[u8; 64]>::try_from(signature.as_ref())
        {
            return bytes;
        }
        let signature: Signature = self.key.sign(message);
        signature.to_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Verifier;

    use super::*;

    #[test]
    fn both_paths_make_signatures_p256_verifies() {
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let key = Es256Key::from_pkcs8_pem(&pem).unwrap();
        assert!(key.fast.is_some(), "ring reads the keys vaxtrail generates");
        let slow = Es256Key {
            fast: None,
            ..key.clone()
        };
        for signer in [&key, &slow] {
            let signature = signer.sign(b"message");
            let signature = Signature::from_slice(&signature).unwrap();
            key.verifying_key().verify(b"message", &signature).unwrap();
            assert!(key.verifying_key().verify(b"other", &signature).is_err());
        }
    }
}
