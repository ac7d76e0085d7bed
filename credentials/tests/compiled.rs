//! The compiled path against ssi's full JSON-LD path.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use credentials::{
    CredentialSigner, IssuerKey, Keyring,
    compiled::{Compiled, canonical, full_quads},
    contexts, keys,
};

fn keyring() -> Keyring {
    Keyring::new(
        "did:web:certificates.test",
        vec![IssuerKey::from_pem("key-1", &keys::generate_pem()).unwrap()],
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn the_probe_signs_the_same_both_ways() {
    let compiled = Arc::new(Compiled::learn().await.expect("the shape is learned"));
    let signer = CredentialSigner::new(keyring()).with_compiled(compiled.clone());
    let credential = credentials::compiled::probe_credential();
    let created = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
    let full = signer.sign_full(credential.clone(), created).await.unwrap();
    let key = signer.keyring().active().signing_key().unwrap();
    let fast = compiled
        .sign(&credential, key, &signer.keyring().active_method(), created)
        .expect("the probe is of the shape");
    let expected = canonical(&full_quads(&credential, &contexts::loader()).await.unwrap());
    let got = compiled.canonical_document(credential.as_object().unwrap()).unwrap();
    assert_eq!(got, expected);
    let proof = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap()["proof"].clone();
    assert_eq!(proof(&fast), proof(&full.text));
    assert_eq!(fast, full.text);
}
