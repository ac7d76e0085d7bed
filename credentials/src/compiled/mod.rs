//! The compiled `eddsa-rdfc-2022` path: credentials of vaxtrail's shape signed and verified
//! without JSON-LD processing.
//!
//! The full path (ssi) expands each credential against its contexts, turns it into RDF,
//! canonicalizes it (RDFC-1.0), hashes and signs: milliseconds per credential, nearly all of it
//! the context processing, which is the same for every credential. Here the contexts are
//! processed once, at start: ssi expands a probe credential with every field vaxtrail writes,
//! and [`shape::Shape`] learns from its quads which predicate and literal type each JSON key
//! maps to. A credential of that shape then goes straight to its quads, which ssi's RDFC-1.0
//! implementation canonicalizes, then SHA-256 and Ed25519 as the cryptosuite specifies. The
//! canonical N-Quads and the proof value are byte-identical to the full path's (the
//! differential tests in `tests/compiled.rs` hold it to that on generated credentials).
//!
//! A document outside the learned shape (another key, another type, a value JSON-LD would expand
//! differently) is not handled here: the caller takes the full path and counts it
//! (`vaxtrail_credentials_full_path_total`).

mod canon;
mod probe;
pub mod shape;

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rdf_types::LexicalQuad;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use ssi::{
    claims::vc::syntax::AnyJsonCredential,
    json_ld::{CompactJsonLd, ContextLoader, Expandable},
    rdf::{AnyLdEnvironment, LdEnvironment, urdna2015},
};

use self::shape::{Constant, LearnError, Shape};
use crate::contexts;

/// The credential a shape is learned from (every field vaxtrail writes present): data model 1.1,
/// or VC 2.0.
pub fn probe_credential(vc2: bool) -> Value {
    probe::credential(vc2)
}

/// The cryptosuite this path implements.
pub const CRYPTOSUITE: &str = "eddsa-rdfc-2022";
/// The proof type.
pub const PROOF_TYPE: &str = "DataIntegrityProof";
/// The proof purpose of every vaxtrail credential.
pub const PROOF_PURPOSE: &str = "assertionMethod";

/// The unsigned credential's text as ssi writes a `JsonCredential` (its fields in its order,
/// `id` and `type` first in the status and each evidence, a one-element `evidence` or `type` array
/// as its element, other objects with their keys sorted), without serde's round trip through
/// ssi's types. `None` for a credential with keys outside that layout (serde's round trip then
/// writes it). The differential tests compare the two on every generated credential.
fn as_ssi_writes(map: &Map<String, Value>) -> Option<String> {
    const FIELDS: [&str; 9] = [
        "@context",
        "id",
        "type",
        "credentialSubject",
        "issuer",
        "issuanceDate",
        "validFrom",
        "credentialStatus",
        "evidence",
    ];
    const EXTRA: [&str; 1] = ["nonTransferable"];
    if map
        .keys()
        .any(|k| !FIELDS.contains(&k.as_str()) && !EXTRA.contains(&k.as_str()))
    {
        return None;
    }
    // Written into bytes by serde_json's writer (no string per value), UTF-8 by construction.
    let mut out = Vec::with_capacity(2048);
    out.push(b'{');
    let mut first = true;
    for name in FIELDS.iter().chain(&EXTRA) {
        let Some(value) = map.get(*name) else { continue };
        if !first {
            out.push(b',');
        }
        first = false;
        json(&mut out, name)?;
        out.push(b':');
        match *name {
            "credentialStatus" => write_identified(&mut out, value)?,
            "evidence" => match value {
                Value::Array(items) if items.len() == 1 => write_identified(&mut out, &items[0])?,
                Value::Array(items) => {
                    out.push(b'[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write_identified(&mut out, item)?;
                    }
                    out.push(b']');
                }
                one => write_identified(&mut out, one)?,
            },
            _ => json(&mut out, value)?,
        }
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

/// Appends `value` as JSON.
fn json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) -> Option<()> {
    serde_json::to_writer(out, value).ok()
}

/// An object with `id` and `type` (one name as a string) first, the rest sorted.
fn write_identified(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    let Value::Object(object) = value else { return None };
    let id = object.get("id")?.as_str()?;
    let type_ = match object.get("type")? {
        Value::Array(names) if names.len() == 1 => &names[0],
        Value::Array(_) => return None,
        one => one,
    };
    out.extend_from_slice(b"{\"id\":");
    json(out, id)?;
    out.extend_from_slice(b",\"type\":");
    json(out, type_)?;
    for (name, inner) in object.iter().filter(|(k, _)| *k != "id" && *k != "type") {
        out.push(b',');
        json(out, name)?;
        out.push(b':');
        json(out, inner)?;
    }
    out.push(b'}');
    Some(())
}

/// A proof as ssi writes it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Proof<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    cryptosuite: &'a str,
    created: &'a str,
    verification_method: &'a str,
    proof_purpose: &'a str,
    proof_value: String,
}

/// The learned shapes of a credential and of its proof configuration, under one `@context`.
struct Model {
    credential: Shape,
    proof: Shape,
}

/// A proof configuration's hash, by the model, `created` and `verificationMethod` it was for.
type LastConfiguration = (usize, String, String, [u8; 32]);

/// The learned shapes: data model 1.1 credentials (still verified) and VC 2.0 ones.
pub struct Compiled {
    models: [Model; 2],
    /// The hash of the last canonical proof configuration, by its (model, created, method): the
    /// same for every credential signed within a second.
    last_configuration: std::sync::Mutex<Option<LastConfiguration>>,
}

/// The quads ssi's JSON-LD path gives a document (expansion with the bundled contexts only, then
/// RDF), blank nodes labelled as it labels them.
pub async fn full_quads(document: &Value, loader: &ContextLoader) -> Result<Vec<LexicalQuad>, String> {
    let json: json_syntax::Value = serde_json::from_value(document.clone()).map_err(|e| e.to_string())?;
    let mut ld = LdEnvironment::default();
    let expanded = CompactJsonLd(json)
        .expand_with(&mut ld, loader)
        .await
        .map_err(|e| e.to_string())?;
    ld.quads_of(&expanded).map_err(|e| e.to_string())
}

/// The canonical N-Quads (RDFC-1.0) of a set of quads, by ssi's implementation.
pub fn canonical(quads: &[LexicalQuad]) -> String {
    urdna2015::normalize(quads.iter().map(LexicalQuad::as_lexical_quad_ref)).into_nquads()
}

/// A proof configuration: the proof without its value, under the credential's `@context`.
pub fn proof_configuration(context: &Value, created: &str, method: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "@context": context,
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": created,
        "verificationMethod": method,
        "proofPurpose": PROOF_PURPOSE,
    }) else {
        unreachable!("an object literal")
    };
    map
}

impl Compiled {
    /// Learns the shapes through the full path, once.
    pub async fn learn() -> Result<Self, LearnError> {
        Ok(Self {
            models: [
                Self::learn_model(probe::credential(false)).await?,
                Self::learn_model(probe::credential(true)).await?,
            ],
            last_configuration: std::sync::Mutex::new(None),
        })
    }

    async fn learn_model(credential: Value) -> Result<Model, LearnError> {
        let loader = contexts::loader();
        let documents = contexts::documents();
        let marked = shape::mark(&credential);
        let quads = full_quads(&marked, &loader).await.map_err(LearnError::expansion)?;
        let credential_shape = Shape::learn(&marked, &quads, &documents)?;

        // The proof configuration's constants (purpose, cryptosuite, type) stay as they are: only
        // `created` and `verificationMethod` vary, so only they are marked.
        let config = proof_configuration(
            &credential["@context"],
            "urn:vaxtrail:probe:created",
            "urn:vaxtrail:probe:method",
        );
        let config_quads = full_quads(&Value::Object(config.clone()), &loader)
            .await
            .map_err(LearnError::expansion)?;
        let mut constants = Vec::new();
        for key in ["cryptosuite", "proofPurpose"] {
            let mut without = config.clone();
            let value = without.remove(key).expect("the configuration has it");
            let fewer = full_quads(&Value::Object(without), &loader)
                .await
                .map_err(LearnError::expansion)?;
            let gone: Vec<&LexicalQuad> = config_quads
                .iter()
                .filter(|q| !fewer.iter().any(|f| f.1 == q.1 && f.2 == q.2))
                .collect();
            let [quad] = gone.as_slice() else {
                return Err(LearnError::expansion(format!("{key} stands for {} quads", gone.len())));
            };
            constants.push(Constant {
                key: key.to_owned(),
                value,
                predicate: quad.1.clone(),
                object: quad.2.clone(),
            });
        }
        let proof_shape = Shape::learn_with_constants(&Value::Object(config), &config_quads, &documents, &constants)?;
        Ok(Model {
            credential: credential_shape,
            proof: proof_shape,
        })
    }

    /// The model of a document's `@context`.
    fn model(&self, document: &Map<String, Value>) -> Option<usize> {
        self.models.iter().position(|m| m.credential.has_context(document))
    }

    /// `hashData` of the cryptosuite: SHA-256 of the canonical proof configuration (the proof
    /// without its value, under the document's `@context`), then of the canonical document.
    /// `None` when either is outside the learned shapes.
    pub fn hash_data(&self, document: &Map<String, Value>, created: &str, method: &str) -> Option<[u8; 64]> {
        let model = self.model(document)?;
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.configuration_hash(model, document.get("@context")?, created, method)?);
        let document = self.models[model].credential.quads(document)?;
        out[32..].copy_from_slice(&Sha256::digest(canon::canonical(&document)));
        Some(out)
    }

    /// The proof configuration's hash, reused while the created time, the method and the
    /// `@context` (the shape's) stay the same: the same for every credential signed within a
    /// second.
    fn configuration_hash(&self, model: usize, context: &Value, created: &str, method: &str) -> Option<[u8; 32]> {
        let proof = &self.models[model].proof;
        if let Some((n, c, m, hash)) = &*self.last_configuration.lock().expect("not poisoned")
            && *n == model
            && c == created
            && m == method
            && proof.is_context(context)
        {
            return Some(*hash);
        }
        let configuration = proof_configuration(context, created, method);
        let hash: [u8; 32] = Sha256::digest(canon::canonical(&proof.quads(&configuration)?)).into();
        *self.last_configuration.lock().expect("not poisoned") =
            Some((model, created.to_owned(), method.to_owned(), hash));
        Some(hash)
    }

    /// The canonical N-Quads of a document without a proof through the first-degree fast path
    /// alone: `None` outside the shape or when two blank nodes share a first-degree hash.
    pub fn canonical_document_fast(&self, document: &Map<String, Value>) -> Option<String> {
        canon::fast(&self.models[self.model(document)?].credential.quads(document)?)
    }

    /// The canonical N-Quads of a document without a proof, or `None` outside the shape.
    pub fn canonical_document(&self, document: &Map<String, Value>) -> Option<String> {
        Some(canon::canonical(
            &self.models[self.model(document)?].credential.quads(document)?,
        ))
    }

    /// Signs `document` (an unsigned credential) with `key` as `method`, created at `created`:
    /// the signed credential's text, or `None` when it is outside the shape.
    pub fn sign(&self, document: &Value, key: &SigningKey, method: &str, created: DateTime<Utc>) -> Option<String> {
        let Value::Object(map) = document else {
            return None;
        };
        let created = created.to_rfc3339_opts(SecondsFormat::Secs, true);
        let hash = self.hash_data(map, &created, method)?;
        let signature = key.sign(&hash);
        // Written as ssi writes a signed credential (its field order, one-element arrays as the
        // element), so both paths give the same text.
        let mut text = match as_ssi_writes(map) {
            Some(text) => text,
            None => {
                serde_json::to_string(&<AnyJsonCredential as serde::Deserialize>::deserialize(document).ok()?).ok()?
            }
        };
        let proof = Proof {
            type_: PROOF_TYPE,
            cryptosuite: CRYPTOSUITE,
            created: &created,
            verification_method: method,
            proof_purpose: PROOF_PURPOSE,
            proof_value: multibase::encode(multibase::Base::Base58Btc, signature.to_bytes()),
        };
        text.pop()?;
        text.push_str(",\"proof\":");
        text.push_str(&serde_json::to_string(&proof).ok()?);
        text.push('}');
        Some(text)
    }

    /// Checks a signed credential's proof with `key` (looked up by the caller from the proof's
    /// `verificationMethod`): `Some(true)` when it holds, `Some(false)` when it does not, `None`
    /// when the credential is outside the shape (the full path decides).
    pub fn verify(&self, credential: &Map<String, Value>, key: &VerifyingKey) -> Option<bool> {
        let Some(Value::Object(proof)) = credential.get("proof") else {
            return None;
        };
        let text = |name: &str| proof.get(name).and_then(Value::as_str);
        if text("type")? != PROOF_TYPE || text("cryptosuite")? != CRYPTOSUITE || text("proofPurpose")? != PROOF_PURPOSE
        {
            return None;
        }
        let known = [
            "type",
            "cryptosuite",
            "created",
            "verificationMethod",
            "proofPurpose",
            "proofValue",
        ];
        if proof.keys().any(|k| !known.contains(&k.as_str())) {
            return None;
        }
        let created = text("created")?;
        DateTime::parse_from_rfc3339(created).ok()?;
        let mut document = credential.clone();
        document.remove("proof");
        // The credential's own dates decide validity the way the full path's do: 1.1's
        // `issuanceDate`, 2.0's `validFrom` (and `validUntil`, when a credential has one).
        let date = |name: &str| {
            document
                .get(name)
                .map(|d| d.as_str().and_then(|d| DateTime::parse_from_rfc3339(d).ok()))
        };
        let issued = match (date("issuanceDate"), date("validFrom")) {
            (Some(issued), None) | (None, Some(issued)) => issued?,
            _ => return None,
        };
        let until = date("validUntil");
        let hash = self.hash_data(&document, created, text("verificationMethod")?)?;
        let Some(signature) = text("proofValue")
            .and_then(|v| multibase::decode(v).ok())
            .and_then(|(_, bytes)| Signature::from_slice(&bytes).ok())
        else {
            return Some(false);
        };
        // As the full path does: `verify`, not `verify_strict`.
        let now = Utc::now();
        let current = issued <= now && until.is_none_or(|u| u.is_some_and(|u| now <= u));
        Some(current && key.verify(&hash, &signature).is_ok())
    }
}
