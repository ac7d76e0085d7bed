//! What the readers of the projections share with their writer: where each store keeps its
//! generation marker (`projectors::generation`), which says whether the store caught up with the
//! log and may be trusted. (In Postgres it is the one row of `projection_generation`.)

/// The Redis hash (under the key prefix) holding `generation` and `complete` (`1` once caught up).
pub const REDIS_MARKER: &str = "projection";

/// The Redis cache's key scheme, written by `projectors::cache` and read by the query API. Keys,
/// under the deployment's prefix:
/// - `cert:{id}`: the signed credential, exactly as signed;
/// - `cert:{id}:state`: hash of `status` (active / superseded / revoked), `supersededBy`,
///   `supersededAt`, `reason`, `revokedAt` (RFC 3339), `recipient`, `statusList`, `statusIndex`;
/// - `recipient:{key}:current`: set of the recipient's current certificate ids;
/// - `revoked`: set of revoked certificate ids; `status:{list}`: the list's revocation bits;
/// - `event:{id}`: hash of what happened to a vaccination event (`accepted`, `issued`,
///   `superseded`, `revoked`, `rejected` → certificate id or rule);
/// - `offsets`: hash of `{topic}:{partition}` → next offset;
/// - `projection`: the generation marker ([`REDIS_MARKER`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKeys {
    prefix: String,
}

impl CacheKeys {
    /// The key families the projection writes, as `KEYS` patterns after the prefix (other keys
    /// under the same prefix, the command API's, are not the projection's).
    pub const FAMILIES: [&str; 7] = [
        "cert:*",
        "recipient:*",
        "revoked",
        "status:*",
        "event:*",
        "offsets",
        REDIS_MARKER,
    ];

    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn certificate(&self, id: &str) -> String {
        self.key(format_args!("cert:{id}"))
    }

    pub fn certificate_state(&self, id: &str) -> String {
        self.key(format_args!("cert:{id}:state"))
    }

    pub fn recipient_current(&self, recipient_key: &str) -> String {
        self.key(format_args!("recipient:{recipient_key}:current"))
    }

    pub fn revoked(&self) -> String {
        self.key(format_args!("revoked"))
    }

    pub fn status_list(&self, list: &str) -> String {
        self.key(format_args!("status:{list}"))
    }

    pub fn event(&self, event_id: &str) -> String {
        self.key(format_args!("event:{event_id}"))
    }

    pub fn offsets(&self) -> String {
        self.key(format_args!("offsets"))
    }

    /// The field of [`CacheKeys::offsets`] holding a partition's next offset.
    pub fn offset_field(topic: &str, partition: i32) -> String {
        format!("{topic}:{partition}")
    }

    pub fn marker(&self) -> String {
        self.key(format_args!("{REDIS_MARKER}"))
    }
}

/// The ClickHouse query answering the newest marker: `(generation, complete, rows)`.
pub const CLICKHOUSE_MARKER: &str =
    "SELECT argMax(generation, at), argMax(complete, at), count() FROM projection_generation";

#[cfg(test)]
mod tests {
    use super::CacheKeys;

    #[test]
    fn every_key_is_under_the_prefix_and_in_a_family() {
        let keys = CacheKeys::new("t1:");
        let all = [
            keys.certificate("C1"),
            keys.certificate_state("C1"),
            keys.recipient_current("did:in.gov.uidai.aadhaar:1"),
            keys.revoked(),
            keys.status_list("L1"),
            keys.event("E1"),
            keys.offsets(),
            keys.marker(),
        ];
        for key in all {
            let rest = key.strip_prefix("t1:").expect("under the prefix");
            let in_family = CacheKeys::FAMILIES.iter().any(|family| match family.strip_suffix('*') {
                Some(stem) => rest.starts_with(stem),
                None => rest == *family,
            });
            assert!(in_family, "{key} is in no family");
        }
        assert_eq!(keys.certificate_state("C1"), "t1:cert:C1:state");
    }
}
