//! The key store against a real PostgreSQL: concurrent requests for writing keys are answered in
//! batches (one statement for many requests), every request for one recipient gets the same key
//! even from two stores (two service instances) at once, the keys written are the keys read, and
//! after an erasure the next write creates a new key.

use std::{collections::HashMap, sync::Arc};

use domain::values::RecipientKey;
use futures::{StreamExt, stream};
use platform::{EnvironmentArgs, environment::Environment, keystore::KeyStore};
use privacy::{DataKeys, KeyId};
use vaxtrail_tests::TestStack;

fn open(stack: &TestStack) -> Arc<KeyStore> {
    let environment = EnvironmentArgs {
        environment: Environment::Development,
    };
    stack
        .keystore
        .open(&environment)
        .expect("the key store opens")
        .expect("the test stack has a key store")
}

fn recipient(i: usize) -> RecipientKey {
    RecipientKey::parse("recipientKey", &format!("{i:064x}")).expect("a recipient key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_statements_and_agree_on_one_key_per_recipient() {
    let stack = TestStack::new().await;
    let (one, two) = (open(&stack), open(&stack));
    // 400 recipients, each asked for three times: twice through one store, once through the
    // other, 128 requests in flight, shuffled so the same recipient lands in different batches.
    const RECIPIENTS: usize = 400;
    let mut asks: Vec<(usize, usize)> = (0..RECIPIENTS).flat_map(|i| [(i, 0), (i, 0), (i, 1)]).collect();
    asks.sort_by_key(|(i, store)| (i * 7919 + store * 104_729) % 1201);
    let answers: Vec<(usize, KeyId, privacy::DataKey)> = stream::iter(asks)
        .map(|(i, store)| {
            let store = [&one, &two][store].clone();
            async move {
                let (id, key) = store.for_writing(&recipient(i)).await.expect("a key for writing");
                (i, id, key)
            }
        })
        .buffer_unordered(128)
        .collect()
        .await;

    let mut by_recipient: HashMap<usize, (KeyId, privacy::DataKey)> = HashMap::new();
    for (i, id, key) in answers {
        let (first_id, first_key) = by_recipient.entry(i).or_insert((id, key.clone()));
        assert_eq!(*first_id, id, "recipient {i} was given two different keys");
        assert!(*first_key == key, "recipient {i}'s key differs between answers");
    }
    assert_eq!(by_recipient.len(), RECIPIENTS);

    let statements = one.write_statements() + two.write_statements();
    assert!(
        statements * 4 < (RECIPIENTS * 3) as u64,
        "1,200 requests took {statements} write statements: concurrent requests are not batched"
    );

    // A fresh store (nothing cached) reads back the very keys that were handed out for writing.
    let reader = open(&stack);
    for (i, (id, key)) in by_recipient.iter().filter(|(i, _)| *i % 10 == 0) {
        let read = reader
            .for_reading(&recipient(*i), *id)
            .await
            .expect("the store answers")
            .expect("the key is there");
        assert!(read == *key, "recipient {i}: the key read is not the key written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_erasure_the_next_write_gets_a_new_key_and_the_old_one_is_gone() {
    let stack = TestStack::new().await;
    let store = open(&stack);
    let person = recipient(42);
    let (before, _) = store.for_writing(&person).await.expect("a key");
    let (again, _) = store.for_writing(&person).await.expect("a key");
    assert_eq!(before, again, "a second write reuses the recipient's key");

    let erasure = store.erase(&person, "test").await.expect("erased");
    assert_eq!(erasure.key_ids, vec![before]);
    assert!(
        store
            .for_reading(&person, before)
            .await
            .expect("the store answers")
            .is_none(),
        "the erased key still reads"
    );
    let (after, _) = store.for_writing(&person).await.expect("a key");
    assert_ne!(after, before, "a write after the erasure reused the erased key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_seals_with_the_key_that_opened_the_record_until_the_erasure_is_read() {
    let stack = TestStack::new().await;
    let intake = open(&stack);
    let signer = open(&stack);
    signer.seal_with_opened_keys();
    let person = recipient(7);
    let (id, key) = intake.for_writing(&person).await.expect("a key");

    // The signer opens the person's record, then writes for them: the same key, no statement.
    let opened = signer
        .for_reading(&person, id)
        .await
        .expect("answers")
        .expect("the key");
    assert!(opened == key);
    let (sealing_id, sealing_key) = signer.for_writing(&person).await.expect("a key");
    assert_eq!(sealing_id, id);
    assert!(sealing_key == key);
    assert_eq!(
        signer.write_statements(),
        0,
        "writing for an opened recipient asked the store"
    );

    // The erasure, read in the log's order, makes it forget: the next write asks the store, which
    // (the key deleted) gives a new key.
    intake.erase(&person, "test").await.expect("erased");
    signer.forget(&person);
    let (after, _) = signer.for_writing(&person).await.expect("a key");
    assert_ne!(
        after, id,
        "the signer sealed with an erased person's key after reading the erasure"
    );
    assert_eq!(signer.write_statements(), 1);
}
