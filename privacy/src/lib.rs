//! Envelope encryption of personal data (crypto-shredding).
//!
//! Every recipient has a random 256-bit **data key**. Their personal fields in
//! `vaccination-events` and their signed credentials in `certificate-events` are sealed with it
//! (XChaCha20-Poly1305 from RustCrypto's `chacha20poly1305`, a random 192-bit nonce per seal, the
//! record's identity as associated data). The data key is kept only **wrapped** by the
//! deployment's key-encryption key ([`Kek`]: a file locally, a KMS or Vault in production behind
//! the same trait) in a key store outside the log ([`DataKeys`]; PostgreSQL in
//! `platform::keystore`). Erasing a person deletes their data keys: the log stays immutable and its
//! hash chain (which covers the ciphertext) still verifies, but nobody can read their data again.
//!
//! This crate does no I/O.

mod kek;
mod seal;

use std::fmt;

pub use kek::{FileKek, Kek, KekError};
pub use seal::{ALGORITHM, SealError, Sealed, open, seal};

use domain::values::RecipientKey;
use futures::future::BoxFuture;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The id of one data key (a UUID), written beside every ciphertext it sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub uuid::Uuid);

impl KeyId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// Parses an id as written in a sealed record.
    pub fn parse(raw: &str) -> Option<Self> {
        uuid::Uuid::parse_str(raw).ok().map(Self)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A recipient's data key in the clear. Zeroed when dropped; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh key from the operating system's generator.
    pub fn random() -> Self {
        use chacha20poly1305::{KeyInit, XChaCha20Poly1305, aead::OsRng};
        Self(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// A key from its bytes (as unwrapped).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Why the key store could not answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KeysError {
    /// The store could not be reached (retry later; a request answers 503).
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
    /// A wrapped key did not unwrap with the deployment's key-encryption key (wrong key file,
    /// or tampering). Not retriable.
    #[error("a data key could not be unwrapped: {0}")]
    Unwrap(#[from] KekError),
}

impl KeysError {
    /// Whether trying again may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The key store, as the codecs see it.
pub trait DataKeys: Send + Sync {
    /// The recipient's current data key, created if they have none (a first vaccination, or the
    /// first after an erasure).
    fn for_writing<'a>(&'a self, recipient: &'a RecipientKey) -> BoxFuture<'a, Result<(KeyId, DataKey), KeysError>>;

    /// The data key `id` of the recipient, or `None` when it no longer exists (erased).
    fn for_reading<'a>(
        &'a self,
        recipient: &'a RecipientKey,
        id: KeyId,
    ) -> BoxFuture<'a, Result<Option<DataKey>, KeysError>>;

    /// Forgets any copy of the recipient's keys this process holds (after an erasure).
    fn forget(&self, recipient: &RecipientKey);
}
