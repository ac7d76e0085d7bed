//! What the readers of the projections share with their writer: where each store keeps its
//! generation marker (`projectors::generation`), which says whether the store caught up with the
//! log and may be trusted. (In Postgres it is the one row of `projection_generation`.)

/// The Redis hash (under the key prefix) holding `generation` and `complete` (`1` once caught up).
pub const REDIS_MARKER: &str = "projection";

/// The ClickHouse query answering the newest marker: `(generation, complete, rows)`.
pub const CLICKHOUSE_MARKER: &str =
    "SELECT argMax(generation, at), argMax(complete, at), count() FROM projection_generation";
