//! Revocation status lists. The signer builds and signs them from its own log and publishes them
//! there (`StatusListPublished`); the projectors keep the newest per list; the query API serves
//! what was published and signs nothing. The encoding is the credentials crate's, shared with the
//! signer.

pub use credentials::status_list::*;
