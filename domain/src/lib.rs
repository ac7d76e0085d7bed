//! vaxtrail's pure domain model: commands, events, value types and the recipient lineage decider.
//! No I/O: everything it needs (the master list, the clock reading, the policy) is passed in.

pub mod commands;
pub mod credential;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod ids;
mod json;
pub mod lineage;
pub mod master;
pub mod status;
pub mod vaccine;
pub mod values;
