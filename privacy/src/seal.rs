//! Sealing bytes with a data key: XChaCha20-Poly1305 (a 192-bit random nonce, so random nonces
//! never need counting), with associated data binding the ciphertext to the record it sits in.

use chacha20poly1305::{
    AeadCore, KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, OsRng, Payload},
};

use crate::{DataKey, KeyId};

/// The algorithm's name as written beside each ciphertext.
pub const ALGORITHM: &str = "XChaCha20-Poly1305";

/// A ciphertext and what is needed to open it (with the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The data key that sealed it.
    pub key_id: KeyId,
    /// 24 bytes.
    pub nonce: Vec<u8>,
    /// Ciphertext with the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Why a ciphertext did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the nonce is {0} bytes, not 24")]
    Nonce(usize),
    #[error("the ciphertext does not open with this key and associated data (altered, or moved from another record)")]
    Tag,
}

/// Seals `plaintext` with `key`; `aad` (not secret, not stored) must be given again to open it.
pub fn seal(key_id: KeyId, key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Sealed {
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(&nonce, Payload { msg: plaintext, aad })
        .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
    Sealed {
        key_id,
        nonce: nonce.to_vec(),
        ciphertext,
    }
}

/// Opens what [`seal`] sealed with the same key and associated data.
pub fn open(key: &DataKey, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; 24] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| SealError::Nonce(sealed.nonce.len()))?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .map_err(|_| SealError::Tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_its_key_and_associated_data() {
        let (id, key) = (KeyId::random(), DataKey::random());
        let sealed = seal(id, &key, b"event 1", b"Aarav Sharma");
        assert_eq!(sealed.key_id, id);
        assert!(!sealed.ciphertext.windows(5).any(|w| w == b"Aarav"));
        assert_eq!(open(&key, b"event 1", &sealed).unwrap(), b"Aarav Sharma");
        assert_eq!(open(&key, b"event 2", &sealed), Err(SealError::Tag));
        assert_eq!(open(&DataKey::random(), b"event 1", &sealed), Err(SealError::Tag));
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert_eq!(open(&key, b"event 1", &altered), Err(SealError::Tag));
        let again = seal(id, &key, b"event 1", b"Aarav Sharma");
        assert_ne!(again.nonce, sealed.nonce, "a fresh nonce per seal");
        assert_eq!(
            open(
                &key,
                b"event 1",
                &Sealed {
                    nonce: vec![0; 12],
                    ..sealed
                }
            ),
            Err(SealError::Nonce(12))
        );
    }
}
