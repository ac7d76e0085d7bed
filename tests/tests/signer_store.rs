//! The signer's local state store when it does not match the log: a store that says more than
//! the log holds (as after restoring an older backup of the log) and a store whose chain head is
//! not the log's record there (another log) are detected when the partition is taken over,
//! cleared and rebuilt from the log; every event is still answered exactly once.

use std::{collections::HashMap, time::Duration};

use domain::events::VaccinationPayload;
use signer_worker::store::{Store, hex_of};
use vaxtrail_tests::{
    Scratch, TestStack, e2e, eventually, fixtures,
    signer::{self, EventWriter, Issuer, envelope, outcomes_per_event, read_certificates, recipient},
};

/// Appends vaccinations `range`, one recipient each.
async fn append(writer: &EventWriter, range: std::ops::Range<usize>) {
    let template = fixtures::divoc_record();
    for i in range {
        let mut record = template.clone();
        let identity = format!("did:in.gov.uidai.aadhaar:{:012}", 500_000 + i);
        record.recipient.identity = domain::values::Identity::parse("identity", &identity).unwrap();
        let event = envelope(
            &format!("s{i}"),
            recipient(&identity),
            VaccinationPayload::VaccinationRecorded(record),
        );
        writer.append(&event).await;
    }
}

/// Outcomes per answered event id, once there are `events` distinct ones.
async fn outcomes(stack: &TestStack, events: usize) -> HashMap<domain::ids::EventId, usize> {
    let records = read_certificates(stack, Duration::from_secs(120), |records| {
        outcomes_per_event(records).len() >= events
    })
    .await;
    outcomes_per_event(&records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_ahead_of_the_log_or_from_another_log_is_rebuilt_from_the_log() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let store_dir = Scratch::new("signer-state");
    let dir = store_dir.0.display().to_string();
    let env = [("VAXTRAIL_SIGNER_STATE_DIR", dir.as_str())];
    let topic = stack.topic("certificate-events");

    // A signer answers 60 vaccinations and stops, leaving its store written.
    append(&writer, 0..60).await;
    let mut first = signer::spawn(&stack, &issuer, &[env[0], ("VAXTRAIL_SIGNER_GROUP", "store-1")]);
    outcomes(&stack, 60).await;
    first.stop_cleanly().await;

    // The store is made to disagree with the log: partition 0 says it reflects 1,000 more
    // records than the log holds; partition 1's chain head is not the log's record there.
    {
        let store = Store::open(&store_dir.0, &topic, 1 << 20).unwrap();
        let (mut ahead, bits) = store.load(0).unwrap().expect("partition 0 was stored");
        ahead.output_offset += 1_000;
        store.write(0, &[], &ahead, &Vec::from_iter(bits), || ()).unwrap();
        let (mut other, bits) = store.load(1).unwrap().expect("partition 1 was stored");
        assert!(other.output_offset > 0, "partition 1 has output");
        other.chain_head = Some(hex_of(&[0xab; 32]));
        store.write(1, &[], &other, &Vec::from_iter(bits), || ()).unwrap();
    }

    // The next signer on that store: both partitions are detected and rebuilt from the log;
    // partition 2's store matches and is restored from it.
    append(&writer, 60..120).await;
    let mut second = signer::spawn(&stack, &issuer, &[env[0], ("VAXTRAIL_SIGNER_GROUP", "store-2")]);
    let per_event = outcomes(&stack, 120).await;
    eventually(
        Duration::from_secs(30),
        "the signer to report its take-overs",
        || async {
            let discarded = e2e::metric(&second.address, "vaxtrail_signer_store_discarded_total").await;
            let restored = e2e::metric(&second.address, "vaxtrail_signer_rebuilds_total{from=\"store\"}").await;
            let rebuilt = e2e::metric(&second.address, "vaxtrail_signer_rebuilds_total{from=\"log\"}").await;
            (discarded == 2.0 && restored >= 1.0 && rebuilt >= 2.0).then_some(())
        },
    )
    .await;
    second.stop_cleanly().await;

    // Exactly one outcome per event: the disagreeing store neither skipped nor repeated any.
    assert_eq!(per_event.len(), 120);
    let doubled: Vec<_> = per_event.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "answered more than once: {doubled:?}");
}
