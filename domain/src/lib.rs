//! vaxtrail's pure domain model: commands, events, value types and the recipient lineage decider.
//! No I/O: everything it needs is passed in as values.
