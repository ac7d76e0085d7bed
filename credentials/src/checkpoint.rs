//! What a signed checkpoint signs: a partition's chain head at an offset of `certificate-events`.

/// The bytes signed for a checkpoint: a domain tag, the partition, the offset of the last record
/// covered and that record's SHA-256 (big-endian integers).
pub fn message(partition: i32, last_offset: i64, chain_head: &[u8; 32]) -> Vec<u8> {
    const TAG: &[u8] = b"vaxtrail certificate-events checkpoint v1\0";
    let mut out = Vec::with_capacity(TAG.len() + 4 + 8 + 32);
    out.extend_from_slice(TAG);
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&last_offset.to_be_bytes());
    out.extend_from_slice(chain_head);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_field_changes_the_message() {
        let base = super::message(1, 10, &[7; 32]);
        assert_ne!(base, super::message(2, 10, &[7; 32]));
        assert_ne!(base, super::message(1, 11, &[7; 32]));
        assert_ne!(base, super::message(1, 10, &[8; 32]));
    }
}
