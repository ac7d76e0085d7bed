//! Avro for vaxtrail's event topics: the bundled `.avsc` schemas, the Confluent wire codec, the
//! records of each topic (with the certificate log's hash chain) and a client for the registry's
//! REST API. The registry server itself is the `schema-registry` crate.

pub mod certificate;
pub mod client;
pub mod codec;
pub mod compatibility;
pub mod master;
pub mod schemas;
mod sealing;
pub mod vaccination;
pub mod value;
