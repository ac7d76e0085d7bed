//! vaxtrail's verifiable credentials: the bundled JSON-LD contexts, the issuer's keys and DID
//! document, and Ed25519 Data Integrity proofs (`eddsa-rdfc-2022`) through `ssi`.
//!
//! Contexts are bundled and never fetched: a credential naming an unknown context, or a property
//! no context defines, fails to sign and fails to verify. Keep it that way.

pub mod checkpoint;
pub mod contexts;
pub mod keys;
mod proof;

pub use keys::{IssuerKey, KeyError, Keyring};
pub use proof::{CredentialSigner, CredentialVerifier, SignError, SignedCredential, Verdict};
