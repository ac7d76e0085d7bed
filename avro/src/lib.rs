//! Avro for vaxtrail's event topics (the bundled `.avsc` schemas and a registry client), and
//! `vaxtrail-registry`, the Confluent-compatible schema registry the local stack runs.

pub mod certificate;
pub mod client;
pub mod codec;
pub mod registry;
pub mod schemas;
pub mod vaccination;
pub mod value;
