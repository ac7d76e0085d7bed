//! Verification: is this the issuer's credential, unaltered, and does it still stand?
//!
//! The checks, in order: the document is a vaxtrail vaccination credential (its contexts and
//! types), its proof names one of the issuer's keys (active or retired), the signature holds, and
//! the certificate is not revoked or superseded. Each "no" is an answer with its reason; a store
//! that cannot say whether the certificate was revoked is a 503, never "invalid" (DIVOC called
//! valid certificates invalid when its revocation lookup failed).
//!
//! A proof over the same bytes under the same keys always verifies the same way, so verdicts are
//! kept by the credential's SHA-256 (the revocation check is made on every request).
//!
//! Nothing posted here reaches the canonicalizer before [`crate::shape::check`] says it is the
//! shape vaxtrail issues; the proof check then runs on a blocking thread (never on the async
//! workers that answer `/healthz`), at most `max_concurrent` at once, each under a deadline.
//! A caller who finds every permit taken waits briefly, then gets 503 with `Retry-After`.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use credentials::{CredentialVerifier, Keyring, Verdict};
use domain::credential::{
    CREDENTIALS_V1, CREDENTIALS_V2, CertifiedDose, DATA_INTEGRITY_V2, VACCINATION_V1, VACCINATION_V2,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{Standing, Store, Unavailable};

/// Why a verification gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Unavailable(#[from] Unavailable),
    #[error("{}: {}", .0.field, .0.rule)]
    Shape(crate::shape::ShapeError),
    #[error("every verification slot is busy")]
    Busy,
    #[error("the verification took longer than allowed")]
    TooSlow,
}

/// Limits on the proof check.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Proof checks at once.
    pub max_concurrent: usize,
    /// Longest a proof check may take.
    pub deadline: Duration,
    /// Longest a request waits for a free slot.
    pub queue_wait: Duration,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// `valid`, `invalid`, `revoked` or `superseded`.
    pub outcome: &'static str,
    /// Why, in words (empty when valid).
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// `eu-dcc` for an EU DCC, `shc` for a SMART Health Card; absent for the W3C credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
}

impl Answer {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self {
            outcome: "invalid",
            reasons: vec![reason.into()],
            certificate_id: None,
            verification_method: None,
            revoked_at: None,
            revocation_reason: None,
            superseded_by: None,
            format: None,
        }
    }

    pub(crate) fn valid(certificate_id: Option<String>, verification_method: Option<String>) -> Self {
        Self {
            outcome: "valid",
            reasons: Vec::new(),
            certificate_id,
            verification_method,
            revoked_at: None,
            revocation_reason: None,
            superseded_by: None,
            format: None,
        }
    }
}

/// Verifies against the issuer's keys and the read models.
pub struct Verifier {
    keyring: Keyring,
    proofs: Arc<CredentialVerifier>,
    verdicts: Mutex<lru::LruCache<[u8; 32], Verdict>>,
    permits: Arc<tokio::sync::Semaphore>,
    bounds: Bounds,
}

impl Verifier {
    /// A verifier of `keyring`'s credentials; those of `compiled`'s shape are checked without
    /// JSON-LD processing.
    pub fn new(keyring: Keyring, bounds: Bounds, compiled: Arc<credentials::compiled::Compiled>) -> Self {
        Self {
            proofs: Arc::new(CredentialVerifier::new(&keyring).with_compiled(compiled)),
            keyring,
            verdicts: Mutex::new(lru::LruCache::new(NonZeroUsize::new(100_000).expect("not zero"))),
            permits: Arc::new(tokio::sync::Semaphore::new(bounds.max_concurrent.max(1))),
            bounds,
        }
    }

    /// The issuer's proof check alone (cached by the credential's SHA-256), on a blocking thread
    /// under the concurrency limit and the deadline.
    async fn proof(&self, text: &str) -> Result<Verdict, Refused> {
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if let Some(verdict) = self.verdicts.lock().expect("not poisoned").get(&digest) {
            metrics::counter!("vaxtrail_query_verify_cache_hits_total").increment(1);
            return Ok(verdict.clone());
        }
        let permit = tokio::time::timeout(self.bounds.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                metrics::counter!("vaxtrail_query_verify_refused_total", "reason" => "busy").increment(1);
                Refused::Busy
            })?
            .expect("the semaphore is never closed");
        let (proofs, owned) = (self.proofs.clone(), text.to_owned());
        let check = tokio::task::spawn_blocking(move || {
            let verdict = futures::executor::block_on(proofs.verify(&owned));
            drop(permit);
            verdict
        });
        let verdict = match tokio::time::timeout(self.bounds.deadline, check).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(panicked)) => Verdict::Invalid {
                reason: format!("the proof check failed: {panicked}"),
            },
            Err(_) => {
                // The shape check bounds the work, so the thread finishes soon and frees its slot.
                metrics::counter!("vaxtrail_query_verify_refused_total", "reason" => "deadline").increment(1);
                return Err(Refused::TooSlow);
            }
        };
        self.verdicts.lock().expect("not poisoned").put(digest, verdict.clone());
        Ok(verdict)
    }

    /// Verifies a credential's JSON text.
    pub async fn verify(&self, text: &str, store: &Store) -> Result<Answer, Refused> {
        let document: Value = match serde_json::from_str(text) {
            Ok(document) => document,
            Err(e) => return Ok(Answer::invalid(format!("not JSON: {e}"))),
        };
        if let Err(reason) = shape(&document) {
            return Ok(Answer::invalid(reason));
        }
        crate::shape::check(&document).map_err(|e| {
            metrics::counter!("vaxtrail_query_verify_refused_total", "reason" => "shape").increment(1);
            Refused::Shape(e)
        })?;
        let method = document["proof"]["verificationMethod"].as_str().unwrap_or_default();
        if document["issuer"].as_str() != Some(self.keyring.did()) {
            return Ok(Answer::invalid(format!(
                "issued by {}, not by {}",
                document["issuer"],
                self.keyring.did()
            )));
        }
        if self.keyring.key_for_method(method).is_none() {
            return Ok(Answer::invalid(format!(
                "unknown key: {method:?} is not one of the issuer's published keys"
            )));
        }
        let certificate_id = CertifiedDose::from_document(&document)
            .ok()
            .map(|d| d.certificate_id.as_str().to_owned());
        let mut answer = match self.proof(text).await? {
            Verdict::Valid { verification_method } => Answer::valid(certificate_id.clone(), Some(verification_method)),
            Verdict::Invalid { reason } => {
                let mut answer = Answer::invalid(format!("bad signature: {reason}"));
                answer.certificate_id = certificate_id;
                return Ok(answer);
            }
        };
        let Some(id) = certificate_id else {
            return Ok(Answer::invalid("the credential names no certificate id"));
        };
        standing(&mut answer, store, &id, &document).await?;
        Ok(answer)
    }
}

/// Marks a valid credential revoked or superseded as the read models say, or when they do not
/// know it yet, as the signer's published status list says.
async fn standing(answer: &mut Answer, store: &Store, id: &str, document: &Value) -> Result<(), Refused> {
    match store.standing(id).await? {
        Some(standing) => match standing {
            Standing::Active => {}
            Standing::Revoked { reason, revoked_at } => {
                answer.outcome = "revoked";
                answer.reasons.push(match revoked_at {
                    Some(at) => format!("revoked at {} for: {reason}", at.to_rfc3339()),
                    None => format!("revoked for: {reason}"),
                });
                answer.revoked_at = revoked_at;
                answer.revocation_reason = Some(reason);
            }
            Standing::Superseded { superseded_by, .. } => {
                answer.outcome = "superseded";
                answer
                    .reasons
                    .push(format!("superseded by certificate {superseded_by}"));
                answer.superseded_by = Some(superseded_by);
            }
        },
        None => {
            // Not (yet) in the read models: the signer's published list still says whether
            // it is revoked.
            if let Some((list, index)) = crate::status_list::entry(document)
                && let Some(list) = list.rsplit('/').next().and_then(|l| l.parse::<u32>().ok())
                && let Some(published) = store.published_status_list(list).await?
                && let Ok(published) = serde_json::from_str::<Value>(&published)
                && let Some(encoded) = published["credentialSubject"]["encodedList"].as_str()
                && crate::status_list::is_set(encoded, index).unwrap_or(false)
            {
                answer.outcome = "revoked";
                answer.reasons.push("revoked (its status list bit is set)".into());
            }
        }
    }
    Ok(())
}

/// The credential is one vaxtrail issues: its contexts, types and a proof.
fn shape(document: &Value) -> Result<(), String> {
    let contexts: Vec<&str> = match &document["@context"] {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => Vec::new(),
    };
    // A VC 2.0 credential, or a data model 1.1 one issued before.
    if contexts != [CREDENTIALS_V2, VACCINATION_V2] && contexts != [CREDENTIALS_V1, VACCINATION_V1, DATA_INTEGRITY_V2] {
        return Err(format!(
            "context mismatch: expected {CREDENTIALS_V2}, {VACCINATION_V2} (VC 2.0) or {CREDENTIALS_V1}, {VACCINATION_V1}, {DATA_INTEGRITY_V2} (data model 1.1); found {}",
            document["@context"]
        ));
    }
    let types: Vec<&str> = match &document["type"] {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => Vec::new(),
    };
    if !types.contains(&"VerifiableCredential") || !types.contains(&"ProofOfVaccinationCredential") {
        return Err(format!(
            "schema mismatch: the type is {}, not a ProofOfVaccinationCredential",
            document["type"]
        ));
    }
    if !document["proof"].is_object() {
        return Err("the credential has no proof".into());
    }
    Ok(())
}
