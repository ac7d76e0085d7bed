//! The key store against a real PostgreSQL: intake's keys come from a pool made ahead in bulk
//! (1,200 writes, 128 at once, cost three statements, not one each), each is bound to its
//! recipient in the background, and a fresh store reads back the very keys written; an erasure
//! deletes every key of the person; the signer, reading in the log's order, binds a key intake did
//! not (a crash lost the binding) and deletes it at the erasure; a key bound to one person opens
//! nothing for another; a key store of the earlier layout (one key per recipient) is migrated and
//! its keys still read.

use std::{collections::HashSet, sync::Arc, time::Duration};

use domain::values::RecipientKey;
use futures::{StreamExt, stream};
use platform::{EnvironmentArgs, environment::Environment, keystore::KeyStore};
use privacy::{DataKeys, KeyId};
use vaxtrail_tests::{TestStack, eventually};

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

/// The recipient each key is bound to, read straight from the table.
async fn bound(stack: &TestStack, ids: &[KeyId]) -> Vec<Option<String>> {
    let pool = sqlx::PgPool::connect(stack.keystore.url.as_ref().expect("a key store").expose())
        .await
        .expect("PostgreSQL");
    let mut owners = Vec::new();
    for id in ids {
        let owner: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT recipient_key FROM {}.data_keys WHERE key_id = $1",
            stack.keystore.schema
        )))
        .bind(id.0)
        .fetch_optional(&pool)
        .await
        .expect("reading the key store");
        owners.push(owner.flatten());
    }
    owners
}

async fn sql(stack: &TestStack, statement: String) {
    let pool = sqlx::PgPool::connect(stack.keystore.url.as_ref().expect("a key store").expose())
        .await
        .expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&pool)
        .await
        .expect("the statement runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_keys_come_from_a_pool_and_are_bound_to_their_recipients_in_the_background() {
    let stack = TestStack::new().await;
    let (one, two) = (open(&stack), open(&stack));
    // 400 recipients, written three times each: twice through one store, once through the other
    // (two service instances), 128 writes in flight.
    const RECIPIENTS: usize = 400;
    let asks: Vec<(usize, usize)> = (0..RECIPIENTS).flat_map(|i| [(i, 0), (i, 0), (i, 1)]).collect();
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
    let distinct: HashSet<KeyId> = answers.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(distinct.len(), answers.len(), "a key was handed out twice");
    let statements = one.pool_statements() + two.pool_statements();
    assert!(
        statements <= 4,
        "1,200 writes took {statements} key-creating statements: keys are not made in bulk"
    );

    // Bound in the background: every key to the recipient it was written for.
    let ids: Vec<KeyId> = answers.iter().map(|(_, id, _)| *id).collect();
    let owners = eventually(Duration::from_secs(30), "every key bound", || async {
        let owners = bound(&stack, &ids).await;
        owners.iter().all(Option::is_some).then_some(owners)
    })
    .await;
    for ((i, _, _), owner) in answers.iter().zip(&owners) {
        assert_eq!(owner.as_deref(), Some(recipient(*i).as_str()));
    }

    // A fresh store (nothing cached) reads back the very keys that were handed out for writing;
    // a key opens nothing for another recipient.
    let reader = open(&stack);
    for (i, id, key) in answers.iter().filter(|(i, _, _)| *i % 10 == 0) {
        let read = reader
            .for_reading(&recipient(*i), *id)
            .await
            .expect("the store answers")
            .expect("the key is there");
        assert!(read == *key, "recipient {i}: the key read is not the key written");
        assert!(
            reader
                .for_reading(&recipient(*i + 1), *id)
                .await
                .expect("answers")
                .is_none(),
            "recipient {i}'s key opened for another"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_deletes_every_key_of_the_person_and_only_theirs() {
    let stack = TestStack::new().await;
    let store = open(&stack);
    let (person, other) = (recipient(42), recipient(43));
    let mut theirs = Vec::new();
    for _ in 0..3 {
        theirs.push(store.for_writing(&person).await.expect("a key").0);
    }
    let (kept, _) = store.for_writing(&other).await.expect("a key");
    eventually(Duration::from_secs(30), "the keys bound", || async {
        bound(&stack, &theirs).await.iter().all(Option::is_some).then_some(())
    })
    .await;

    let erasure = store.erase(&person, "test").await.expect("erased");
    let mut erased = erasure.key_ids.clone();
    erased.sort();
    theirs.sort();
    assert_eq!(erased, theirs, "every key of the person, and no other");
    for id in &theirs {
        assert!(
            store.for_reading(&person, *id).await.expect("answers").is_none(),
            "an erased key still reads"
        );
    }
    assert!(store.for_reading(&other, kept).await.expect("answers").is_some());
    let (after, _) = store.for_writing(&person).await.expect("a key");
    assert!(
        !theirs.contains(&after),
        "a write after the erasure reused an erased key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signer_binds_what_intake_did_not_and_deletes_it_at_the_erasure() {
    let stack = TestStack::new().await;
    let intake = open(&stack);
    let signer = open(&stack);
    signer.read_in_log_order();
    let person = recipient(7);
    let (id, key) = intake.for_writing(&person).await.expect("a key");
    eventually(Duration::from_secs(30), "the key bound", || async {
        bound(&stack, &[id]).await[0].is_some().then_some(())
    })
    .await;
    // Intake crashed before its background binding: the key is unbound.
    sql(
        &stack,
        format!(
            "UPDATE {}.data_keys SET recipient_key = NULL WHERE key_id = '{id}'",
            stack.keystore.schema
        ),
    )
    .await;
    // The erasure asked now deletes nothing it can see...
    assert_eq!(intake.erase(&person, "test").await.expect("erased").key_ids, vec![]);
    // ...but the signer reads the person's record (before the erasure, in the log's order): it
    // opens it and binds the key; then writes for them with that key, asking nothing.
    let opened = signer
        .for_reading(&person, id)
        .await
        .expect("answers")
        .expect("the key");
    assert!(opened == key);
    assert_eq!(bound(&stack, &[id]).await[0].as_deref(), Some(person.as_str()));
    let before = signer.pool_statements();
    let (sealing_id, sealing_key) = signer.for_writing(&person).await.expect("a key");
    assert_eq!(sealing_id, id);
    assert!(sealing_key == key);
    assert_eq!(
        signer.pool_statements(),
        before,
        "writing for an opened recipient asked the store"
    );

    // Then it reads the RecipientErased: the key goes, and nothing opens the record again.
    let erased = signer.erase_bound(&person).await.expect("erased");
    assert_eq!(erased.key_ids, vec![id]);
    assert!(open(&stack).for_reading(&person, id).await.expect("answers").is_none());
    let (after, _) = signer.for_writing(&person).await.expect("a key");
    assert_ne!(
        after, id,
        "the signer sealed with an erased person's key after reading the erasure"
    );
    assert_eq!(
        bound(&stack, &[after]).await[0].as_deref(),
        Some(person.as_str()),
        "the signer binds what it writes at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_store_of_the_earlier_layout_is_migrated_and_its_keys_still_read() {
    let stack = TestStack::new().await;
    let schema = &stack.keystore.schema;
    // The earlier layout, with one key per recipient, written as the earlier release did.
    sql(&stack, format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await;
    sql(
        &stack,
        format!(
            "CREATE TABLE {schema}.data_keys (key_id uuid PRIMARY KEY, recipient_key text NOT NULL UNIQUE,
         kek_id text NOT NULL, wrapped bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        ),
    )
    .await;
    let person = recipient(9);
    let (id, key) = (KeyId::random(), privacy::DataKey::random());
    let kek = privacy::FileKek::load(stack.keystore.kek_file.as_ref().expect("a KEK file")).expect("the KEK");
    let wrapped = privacy::Kek::wrap(
        &kek,
        &key,
        format!("vaxtrail data key|{}|{id}", person.as_str()).as_bytes(),
    );
    let pool = sqlx::PgPool::connect(stack.keystore.url.as_ref().expect("a key store").expose())
        .await
        .expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.data_keys (key_id, recipient_key, kek_id, wrapped) VALUES ($1, $2, $3, $4)"
    )))
    .bind(id.0)
    .bind(person.as_str())
    .bind(privacy::Kek::id(&kek))
    .bind(&wrapped)
    .execute(&pool)
    .await
    .expect("an earlier key");

    let store = open(&stack);
    let read = store
        .for_reading(&person, id)
        .await
        .expect("answers")
        .expect("the earlier key");
    assert!(read == key);
    // The same person written again gets a second key beside the first (no longer unique).
    let (second, _) = store.for_writing(&person).await.expect("a key");
    assert_ne!(second, id);
    eventually(Duration::from_secs(30), "the new key bound", || async {
        bound(&stack, &[second]).await[0].is_some().then_some(())
    })
    .await;
    let mut erased = store.erase(&person, "test").await.expect("erased").key_ids;
    erased.sort();
    let mut both = vec![id, second];
    both.sort();
    assert_eq!(erased, both);
}
