//! Signing and verifying credentials: an Ed25519 `DataIntegrityProof` with the `eddsa-rdfc-2022`
//! cryptosuite over the credential's canonical RDF, by ssi, with the bundled contexts only.

use serde_json::Value;
use ssi::{
    claims::{
        SignatureEnvironment, VerificationParameters,
        data_integrity::{AnySuite, CryptographicSuite, ProofOptions},
        vc::syntax::AnyJsonCredential,
    },
    dids::{DIDResolver, StaticDIDResolver, VerificationMethodDIDResolver, resolution::Output},
    json_ld::ContextLoader,
    jwk::{Base64urlUInt, JWK, OctetParams, Params},
    verification_methods::{AnyMethod, LocalSigner, ReferenceOrOwned, SingleSecretSigner},
};

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};

use crate::{Keyring, PublishedKeys, compiled::Compiled, contexts};

type Resolver = VerificationMethodDIDResolver<StaticDIDResolver, AnyMethod>;

fn resolver_for(keyring: &Keyring) -> Resolver {
    let mut dids = StaticDIDResolver::new();
    let document = serde_json::to_vec(&keyring.did_document()).expect("a DID document serializes");
    dids.insert(
        keyring.did().parse().expect("the keyring checked its DID"),
        Output::from_content(document, Some("application/did+json".to_owned())),
    );
    dids.into_vm_resolver()
}

/// Why a credential could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the credential is not a W3C credential: {0}")]
    Shape(String),
    #[error("signing failed (every term must be defined by a bundled context): {0}")]
    Proof(String),
}

/// A signed credential: its JSON text exactly as signed, and the key that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCredential {
    pub text: String,
    pub verification_method: String,
}

/// Signs credentials with the issuer's active key: through the compiled path when it has one and
/// the credential is of its shape, otherwise through ssi's full JSON-LD path.
pub struct CredentialSigner {
    keyring: Keyring,
    resolver: Resolver,
    loader: ContextLoader,
    signer: LocalSigner<SingleSecretSigner<JWK>>,
    compiled: Option<Arc<Compiled>>,
}

impl CredentialSigner {
    pub fn new(keyring: Keyring) -> Self {
        let secret = keyring
            .active()
            .secret_bytes()
            .expect("the active key can sign (checked at load)");
        let jwk = JWK::from(Params::OKP(OctetParams {
            curve: "Ed25519".into(),
            public_key: Base64urlUInt(keyring.active().public.to_bytes().to_vec()),
            private_key: Some(Base64urlUInt(secret.to_vec())),
        }));
        Self {
            resolver: resolver_for(&keyring),
            loader: contexts::loader(),
            signer: SingleSecretSigner::new(jwk).into_local(),
            keyring,
            compiled: None,
        }
    }

    /// Signs credentials of the compiled shape through the compiled path.
    pub fn with_compiled(mut self, compiled: Arc<Compiled>) -> Self {
        self.compiled = Some(compiled);
        self
    }

    /// The issuer's keys.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Adds the proof, created now (to the second). CPU-bound: tens of microseconds through the
    /// compiled path, milliseconds through the full one.
    pub async fn sign(&self, credential: Value) -> Result<SignedCredential, SignError> {
        self.sign_at(credential, Utc::now()).await
    }

    /// Adds the proof, created at `created` (to the second).
    pub async fn sign_at(&self, credential: Value, created: DateTime<Utc>) -> Result<SignedCredential, SignError> {
        let created = created.trunc_subsecs(0);
        let method = self.keyring.active_method();
        if let Some(compiled) = &self.compiled {
            let key = self
                .keyring
                .active()
                .signing_key()
                .expect("the active key can sign (checked at load)");
            if let Some(text) = compiled.sign(&credential, key, &method, created) {
                metrics::counter!("vaxtrail_credentials_signed_total", "path" => "compiled").increment(1);
                return Ok(SignedCredential {
                    text,
                    verification_method: method,
                });
            }
        }
        metrics::counter!("vaxtrail_credentials_signed_total", "path" => "full").increment(1);
        self.sign_full(credential, created).await
    }

    /// Adds the proof through ssi's full JSON-LD path, created at `created` (to the second).
    pub async fn sign_full(&self, credential: Value, created: DateTime<Utc>) -> Result<SignedCredential, SignError> {
        let unsigned: AnyJsonCredential =
            serde_json::from_value(credential).map_err(|e| SignError::Shape(e.to_string()))?;
        let method = self.keyring.active_method();
        let mut options = ProofOptions::from_method(ReferenceOrOwned::Reference(
            method.parse().expect("a DID URL is an IRI"),
        ));
        options.created = created.to_rfc3339_opts(SecondsFormat::Secs, true).parse().ok();
        let environment = SignatureEnvironment {
            json_ld_loader: &self.loader,
            eip712_loader: (),
        };
        let signed = AnySuite::EdDsaRdfc2022
            .sign_with(
                environment,
                unsigned,
                &self.resolver,
                &self.signer,
                options,
                Default::default(),
            )
            .await
            .map_err(|e| SignError::Proof(e.to_string()))?;
        Ok(SignedCredential {
            text: serde_json::to_string(&signed).map_err(|e| SignError::Shape(e.to_string()))?,
            verification_method: method,
        })
    }
}

/// What a verifier concludes about a credential's proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The proof holds under one of the issuer's published keys.
    Valid { verification_method: String },
    /// The proof does not hold, or names no key of the issuer: the reason, in words.
    Invalid { reason: String },
}

/// Verifies credentials against a published DID document, with the bundled contexts only:
/// through the compiled path when it has one and the credential is of its shape, otherwise
/// through ssi's full JSON-LD path.
pub struct CredentialVerifier {
    resolver: Resolver,
    loader: ContextLoader,
    keys: PublishedKeys,
    compiled: Option<Arc<Compiled>>,
}

impl CredentialVerifier {
    /// A verifier that trusts the keys of `keyring`.
    pub fn new(keyring: &Keyring) -> Self {
        Self {
            resolver: resolver_for(keyring),
            loader: contexts::loader(),
            keys: PublishedKeys::from_did_document(&keyring.did_document()).expect("a keyring publishes its keys"),
            compiled: None,
        }
    }

    /// A verifier that trusts only the keys of a DID document as published (`/.well-known/did.json`).
    pub fn from_did_document(document: &Value) -> Result<Self, String> {
        let did = document["id"].as_str().ok_or("the DID document has no id")?;
        let mut dids = StaticDIDResolver::new();
        dids.insert(
            did.parse().map_err(|_| format!("{did:?} is not a DID"))?,
            Output::from_content(
                document.to_string().into_bytes(),
                Some("application/did+json".to_owned()),
            ),
        );
        Ok(Self {
            resolver: dids.into_vm_resolver(),
            loader: contexts::loader(),
            keys: PublishedKeys::from_did_document(document)?,
            compiled: None,
        })
    }

    /// Verifies credentials of the compiled shape through the compiled path.
    pub fn with_compiled(mut self, compiled: Arc<Compiled>) -> Self {
        self.compiled = Some(compiled);
        self
    }

    /// Checks the credential's proof. CPU-bound: tens of microseconds through the compiled path,
    /// milliseconds through the full one.
    pub async fn verify(&self, text: &str) -> Verdict {
        if let Some(verdict) = self.verify_compiled(text) {
            metrics::counter!("vaxtrail_credentials_verified_total", "path" => "compiled").increment(1);
            return verdict;
        }
        metrics::counter!("vaxtrail_credentials_verified_total", "path" => "full").increment(1);
        self.verify_full(text).await
    }

    /// The compiled path's verdict, or `None` when the credential is not of its shape or names a
    /// key it does not know (the full path decides).
    fn verify_compiled(&self, text: &str) -> Option<Verdict> {
        let compiled = self.compiled.as_ref()?;
        let Ok(Value::Object(document)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let method = document.get("proof")?.get("verificationMethod")?.as_str()?.to_owned();
        let key = self.keys.key(&method)?;
        Some(match compiled.verify(&document, key)? {
            true => Verdict::Valid {
                verification_method: method,
            },
            false => Verdict::Invalid {
                reason: "the eddsa-rdfc-2022 proof does not hold".into(),
            },
        })
    }

    /// Checks the credential's proof through ssi's full JSON-LD path.
    pub async fn verify_full(&self, text: &str) -> Verdict {
        // Data model 1.1 or VC 2.0, told apart by the first `@context`.
        let credential = match ssi::claims::data_integrity::from_json_str::<AnyJsonCredential, AnySuite>(text) {
            Ok(credential) => credential,
            Err(e) => {
                return Verdict::Invalid {
                    reason: format!("not a credential with a proof: {e}"),
                };
            }
        };
        let method = credential
            .proofs
            .first()
            .map(|p| p.verification_method.id().to_string())
            .unwrap_or_default();
        let parameters = VerificationParameters::from_resolver(&self.resolver).with_json_ld_loader(&self.loader);
        match credential.verify(parameters).await {
            Ok(Ok(())) => Verdict::Valid {
                verification_method: method,
            },
            Ok(Err(invalid)) => Verdict::Invalid {
                reason: invalid.to_string(),
            },
            Err(error) => Verdict::Invalid {
                reason: error.to_string(),
            },
        }
    }
}
