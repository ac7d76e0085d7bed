//! The command API's problems: vaxtrail's RFC 7807 answers (`platform::problem`), with the
//! wording that tells a posting system what happened to what it sent.

pub use platform::problem::Problem;

/// The broker (or another dependency) is unavailable: retry the same request later.
pub fn unavailable(cause: &dyn std::error::Error) -> Problem {
    metrics::counter!("vaxtrail_commands_unavailable_total").increment(1);
    Problem::unavailable(
        "The event log is unavailable; nothing was accepted that was not acknowledged. Retry with the same Idempotency-Key",
        &cause,
    )
}

/// The broker failed part-way through a bulk file.
pub fn unavailable_after(cause: &dyn std::error::Error, accepted: usize) -> Problem {
    metrics::counter!("vaxtrail_commands_unavailable_total").increment(1);
    Problem::unavailable(
        format!(
            "The event log became unavailable after {accepted} rows were acknowledged; post the same file again with the same Idempotency-Key: acknowledged rows are not appended twice"
        ),
        &cause,
    )
}
