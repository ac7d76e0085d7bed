//! vaxtrail's pure domain model: commands, events, value types and the recipient lineage decider.
//! No I/O: everything it needs (the master list, the clock reading, the policy) is passed in.

pub mod commands;
pub mod ids;
mod json;
pub mod vaccine;
pub mod values;
