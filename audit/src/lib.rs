//! The auditor's core, shared by `vaxctl audit` (which prints it) and the query API's audit
//! endpoints (which serve it): reading the event topics straight from the log
//! ([`platform::log`]), verifying `certificate-events` into a [`Report`], and describing records
//! with their positions and hashes. Nothing here prints or answers HTTP.

pub mod describe;
pub mod verify;

pub use describe::{certificate_of, describe};
pub use verify::{Broken, Codecs, Report, Window, verify};
