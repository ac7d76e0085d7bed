//! Following one vaccination through the pipeline: the W3C trace context (`traceparent`,
//! <https://www.w3.org/TR/trace-context/>) travels from the HTTP request into the record's Kafka
//! headers, from the signer's input record to its outcome, and into the projectors, so every
//! service logs the same `trace_id` for it. A caller's `traceparent` is continued; without one
//! the command API starts a trace. Per-record lines are logged at `debug` under the target
//! [`TARGET`] (`VAXTRAIL_LOG=info,vaxtrail_trace=debug` shows a record's whole path); spans at
//! the I/O boundaries carry the trace id at `info`.

use std::fmt;

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// The Kafka header and HTTP header carrying the context.
pub const HEADER: &str = "traceparent";

/// The log target of per-record trace lines.
pub const TARGET: &str = "vaxtrail_trace";

/// A position in a trace: the trace and the span that caused what comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    sampled: bool,
}

tokio::task_local! {
    /// The context of the request a task serves.
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace.
    pub fn root() -> Self {
        Self {
            trace_id: nonzero(rand::random()),
            parent_id: nonzero(rand::random()),
            sampled: true,
        }
    }

    /// Reads a `traceparent` value (version 00, or a later version read as 00 as the
    /// specification asks); `None` when malformed or all-zero.
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let [version, trace, parent, flags, ..] = parts.as_slice() else {
            return None;
        };
        if version.len() != 2 || *version == "ff" || (*version == "00" && parts.len() != 4) {
            return None;
        }
        let trace_id: [u8; 16] = decode(trace)?;
        let parent_id: [u8; 8] = decode(parent)?;
        let [flags]: [u8; 1] = decode(flags)?;
        decode::<1>(version)?;
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The same trace, with a new span as the parent of what follows.
    pub fn child(&self) -> Self {
        Self {
            parent_id: nonzero(rand::random()),
            ..*self
        }
    }

    /// The trace id as 32 hex digits (what the logs show).
    pub fn trace_id(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The context a Kafka record carries, if any.
    pub fn from_record(headers: Option<&impl Headers>) -> Option<Self> {
        let headers = headers?;
        (0..headers.count())
            .map(|i| headers.get(i))
            .find(|h| h.key == HEADER)
            .and_then(|h| std::str::from_utf8(h.value?).ok())
            .and_then(Self::parse)
    }

    /// `headers` with this context added, for a record that follows from it.
    pub fn add_to(&self, headers: OwnedHeaders) -> OwnedHeaders {
        headers.insert(Header {
            key: HEADER,
            value: Some(&self.to_string()),
        })
    }

    /// The context of the request the current task serves, if [`TraceContext::scope`] set one.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| *c).ok()
    }

    /// Runs `future` with this context as [`TraceContext::current`].
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id),
            u8::from(self.sampled)
        )
    }
}

fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes == [0; N] {
        bytes[N - 1] = 1;
    }
    bytes
}

/// Lower-case hex of exactly `N` bytes (the specification forbids upper case, which `hex::decode`
/// would accept).
fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips() {
        let context = TraceContext::parse(EXAMPLE).expect("valid");
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.to_string(), EXAMPLE);
    }

    #[test]
    fn malformed_or_zero_contexts_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version may add fields; its first four are read.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn a_child_keeps_the_trace_and_a_record_carries_it() {
        let root = TraceContext::root();
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.to_string(), root.to_string());
        let headers = child.add_to(OwnedHeaders::new());
        assert_eq!(TraceContext::from_record(Some(&headers)), Some(child));
    }
}
