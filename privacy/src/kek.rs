//! The key-encryption key: what wraps every data key before it is stored. The local stack keeps it
//! in a file ([`FileKek`]); production puts a KMS or Vault's transit engine behind the same trait,
//! so the wrapped keys in the store are useless without it.

use std::path::Path;

use crate::{DataKey, KeyId, Sealed, seal};

/// Why a key-encryption key could not be loaded or a data key unwrapped.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KekError {
    #[error("reading the key-encryption key {path}: {why}")]
    Load { path: String, why: String },
    #[error("the wrapped key is malformed")]
    Malformed,
    #[error("the wrapped key does not unwrap with key-encryption key {0} (another deployment's key, or altered)")]
    Unwrap(String),
}

/// Wraps and unwraps data keys.
pub trait Kek: Send + Sync {
    /// Which key-encryption key this is (stored beside each wrapped key, for rotation).
    fn id(&self) -> &str;
    /// `key` wrapped, bound to `aad` (the recipient and key id).
    fn wrap(&self, key: &DataKey, aad: &[u8]) -> Vec<u8>;
    /// The data key in `wrapped`.
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, KekError>;
}

/// A 256-bit key-encryption key read from a file of 64 hex characters (`vaxctl keystore init`
/// writes one with mode 0600). Its id is the file name's stem (`kek-2026.key` is `kek-2026`), kept
/// beside each key it wraps so a rotation knows which file unwraps which key.
pub struct FileKek {
    id: String,
    key: DataKey,
}

impl FileKek {
    /// Reads the key file.
    pub fn load(path: &Path) -> Result<Self, KekError> {
        let failed = |why: String| KekError::Load {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        let bytes = hex::decode(text.trim()).map_err(|_| failed("not hex".into()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| failed("not 32 bytes (64 hex characters)".into()))?;
        let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or("kek").to_owned();
        Ok(Self {
            id,
            key: DataKey::from_bytes(bytes),
        })
    }

    /// A new key as the text a key file holds.
    pub fn generate() -> String {
        hex::encode(DataKey::random().bytes())
    }
}

impl Kek for FileKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, key: &DataKey, aad: &[u8]) -> Vec<u8> {
        let sealed = seal(KeyId(uuid::Uuid::nil()), &self.key, aad, key.bytes());
        [sealed.nonce, sealed.ciphertext].concat()
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, KekError> {
        if wrapped.len() != 24 + 32 + 16 {
            return Err(KekError::Malformed);
        }
        let sealed = Sealed {
            key_id: KeyId(uuid::Uuid::nil()),
            nonce: wrapped[..24].to_vec(),
            ciphertext: wrapped[24..].to_vec(),
        };
        let bytes = crate::open(&self.key, aad, &sealed).map_err(|_| KekError::Unwrap(self.id.clone()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KekError::Malformed)?;
        Ok(DataKey::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_unwraps_only_with_its_kek_and_binding() {
        let dir = std::env::temp_dir().join(format!("vaxtrail-kek-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.key"), dir.join("b.key"));
        std::fs::write(&a, FileKek::generate()).unwrap();
        std::fs::write(&b, FileKek::generate()).unwrap();
        let (a, b) = (FileKek::load(&a).unwrap(), FileKek::load(&b).unwrap());
        assert_eq!(a.id(), "a");
        let key = DataKey::random();
        let wrapped = a.wrap(&key, b"recipient 1");
        assert_eq!(a.unwrap(&wrapped, b"recipient 1").unwrap(), key);
        assert!(matches!(a.unwrap(&wrapped, b"recipient 2"), Err(KekError::Unwrap(_))));
        assert!(matches!(b.unwrap(&wrapped, b"recipient 1"), Err(KekError::Unwrap(_))));
        assert!(matches!(
            a.unwrap(&wrapped[1..], b"recipient 1"),
            Err(KekError::Malformed)
        ));
        std::fs::write(dir.join("short.key"), "abcd").unwrap();
        assert!(FileKek::load(&dir.join("short.key")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
