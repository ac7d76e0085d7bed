//! Crash test: while 2,000 vaccinations stream in, the signer is killed with SIGKILL several
//! times and restarted (once in the middle of writing its local state store), and two instances
//! run at the same time, sharing the partitions. Restarts reuse the killed instance's state store
//! and fold only what was written after it. Afterwards `certificate-events` holds exactly one
//! outcome per input event, every partition's hash chain and signed checkpoints verify end to
//! end, and no certificate id appears twice.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use avro::certificate::{CertificateBody, chain::ChainWalk};
use domain::{events::CertificateOutcome, events::VaccinationPayload, values::Dose};
use ed25519_dalek::Signature;
use vaxtrail_tests::{
    Scratch, TestStack, e2e, eventually, fixtures, kafka,
    signer::{self, EventWriter, Issuer, envelope, outcomes_per_event, read_certificates, recipient},
};

const EVENTS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_and_a_second_instance_leave_exactly_one_outcome_per_event_and_an_intact_chain() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let env = [
        ("VAXTRAIL_CHECKPOINT_EVERY", "100"),
        ("VAXTRAIL_CHECKPOINT_INTERVAL_SECS", "3"),
    ];
    let topic = stack.topic("certificate-events");
    let written = |stack: &TestStack| kafka::count(&stack.kafka.brokers, &topic, stack.kafka.partitions);

    // 1,000 people, two doses each, streamed while the signers come and go.
    let template = fixtures::divoc_record();
    let stream = {
        let writer = writer;
        tokio::spawn(async move {
            for i in 0..EVENTS {
                let mut record = template.clone();
                let identity = format!("did:in.gov.uidai.aadhaar:{:012}", i / 2);
                record.recipient.identity = domain::values::Identity::parse("identity", &identity).unwrap();
                record.vaccination.dose = Dose::new((i % 2 + 1) as i64, 2).unwrap();
                let event = envelope(
                    &format!("v{i}"),
                    recipient(&identity),
                    VaccinationPayload::VaccinationRecorded(record),
                );
                writer.append(&event).await;
            }
        })
    };

    // Each phase runs in a consumer group of its own. Correctness never rests on the group
    // (positions come from the output log), so a fresh group is exactly a signer that knows
    // nothing; it also keeps clear of Tansu 0.6's coordinator, which can leave a group with a
    // dead member stalled for good (README, known limits). On Kafka the same group is used.
    // Two state-store directories: one per instance that runs at a time.
    let (store_a, store_b) = (Scratch::new("signer-state-a"), Scratch::new("signer-state-b"));
    let spawn = |group: &str, store: &Scratch, extra: &[(&'static str, &'static str)]| {
        let mut env = env.to_vec();
        env.push(("VAXTRAIL_SIGNER_GROUP", Box::leak(group.to_owned().into_boxed_str())));
        env.push((
            "VAXTRAIL_SIGNER_STATE_DIR",
            Box::leak(store.0.display().to_string().into_boxed_str()),
        ));
        env.extend_from_slice(extra);
        signer::spawn(&stack, &issuer, &env)
    };
    let until = |count: i64, what: &'static str| {
        let (stack, written) = (&stack, &written);
        async move {
            eventually(Duration::from_secs(120), what, || async {
                (written(stack) >= count).then_some(())
            })
            .await;
        }
    };

    let mut first = spawn("signer-1", &store_a, &[]);
    until(200, "the first signer to write 200 records").await;
    first.kill9().await;
    // Killed while it writes its state store: its rows are written, the commit is not.
    let mut torn = spawn("signer-2a", &store_a, &[("VAXTRAIL_CRASH_POINT", "store")]);
    let status = torn
        .exited(Duration::from_secs(120))
        .await
        .expect("the signer aborted at its first state-store write");
    assert!(!status.success(), "{status:?}");
    let mut second = spawn("signer-2", &store_a, &[]);
    until(600, "the second signer to write 600 records").await;
    // It started from the store the others left, not from the whole log.
    let from_store = e2e::metric(&second.address, "vaxtrail_signer_rebuilds_total{from=\"store\"}").await;
    assert!(
        from_store >= 1.0,
        "partitions restored from the local store: {from_store}"
    );
    second.kill9().await;
    // Two instances at the same time, sharing the partitions; one leaves, the other takes its
    // partitions over mid-stream and is then killed.
    let mut third = spawn("signer-3", &store_a, &[]);
    let mut fourth = spawn("signer-3", &store_b, &[]);
    until(1_000, "the pair to write 1,000 records").await;
    third.stop_cleanly().await;
    until(1_300, "the survivor to write 1,300 records").await;
    fourth.kill9().await;
    // The last one starts from the survivor's store: its partitions were the other's before,
    // so what the store holds for them is behind the log and is caught up from there.
    let mut last = spawn("signer-4", &store_b, &[]);

    stream.await.expect("every event was appended");
    let records = read_certificates(&stack, Duration::from_secs(180), |records| {
        outcomes_per_event(records).len() == EVENTS
    })
    .await;
    last.stop_cleanly().await;

    // Exactly one outcome per input event, every one an issue, no certificate id twice.
    let mut per_event: HashMap<_, usize> = HashMap::new();
    let mut certificates = HashSet::new();
    let mut checkpoints = 0;
    for r in &records {
        match &r.envelope.body {
            CertificateBody::Outcome { event, .. } => {
                *per_event.entry(event.answers).or_default() += 1;
                let CertificateOutcome::CertificateIssued { certificate_id, .. } = &event.outcome else {
                    panic!("every event here is a fresh dose: {event:?}")
                };
                assert!(
                    certificates.insert(certificate_id.clone()),
                    "certificate {certificate_id} twice"
                );
            }
            CertificateBody::Checkpoint(_) => checkpoints += 1,
            CertificateBody::SealedIssue(issue) => panic!("the drill erases nobody: {issue:?}"),
            CertificateBody::StatusList(_) => {}
        }
    }
    assert_eq!(per_event.len(), EVENTS);
    let doubled: Vec<_> = per_event.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "events answered more than once: {doubled:?}");
    assert!(checkpoints >= 3, "only {checkpoints} checkpoints");

    // Every partition's chain and checkpoints verify from its first record to its last.
    let keyring = &issuer.keyring;
    for partition in 0..stack.kafka.partitions {
        let mut walk = ChainWalk::default();
        for r in records.iter().filter(|r| r.partition == partition) {
            walk.next(r.offset, r.sha256, Ok(&r.envelope), |c| {
                let signature = Signature::from_slice(&c.signature).map_err(|e| e.to_string())?;
                let message = credentials::checkpoint::message(c.partition, c.last_offset, &c.chain_head);
                keyring.verify(&c.key_id, &message, &signature)
            })
            .unwrap_or_else(|e| panic!("partition {partition}: {e}"));
        }
        assert!(walk.summary().outcomes > 0, "partition {partition} was answered");
    }
}
