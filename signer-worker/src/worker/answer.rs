//! Answering a vaccination record: decide its outcomes from the recipient's lineage, sign what
//! is issued, append the outcomes; undecodable records go to dead-letters.

use super::*;
use domain::{
    events::{VaccinationEvent, VaccinationPayload},
    lineage::Lineage,
};

impl Worker {
    pub(super) async fn handle(&mut self, message: &OwnedMessage, stop: &CancellationToken) {
        let partition = message.partition();
        if !self.states.contains_key(&partition) {
            // Being rebuilt (the record comes again after the seek), or not ours any more.
            if self.owned.contains(&partition) {
                self.rebuild_in_background(partition, Duration::ZERO);
            }
            return;
        }
        let state = self.states.get_mut(&partition).expect("built above");
        let offset = message.offset();
        if offset < state.next_source {
            metrics::counter!("vaxtrail_signer_skipped_total").increment(1);
            return;
        }
        if offset > state.next_source && !state.position_confirmed {
            let next = state.next_source;
            tracing::info!(
                partition,
                from = offset,
                to = next,
                "resuming after the last answered offset"
            );
            self.seek(partition, next);
            return;
        }
        state.position_confirmed = true;
        // The answer continues the trace of the vaccination record it answers.
        let trace = TraceContext::from_record(message.headers()).unwrap_or_else(TraceContext::root);
        let span = tracing::info_span!("signer.answer", partition, offset, trace_id = %trace.trace_id());
        if let Err(error) = trace.child().scope(self.answer(message, stop)).instrument(span).await {
            self.reset(error).await;
        }
    }

    /// The event in a record, or why it is poison (dead-letter it).
    pub(super) async fn decode_vaccination(
        &self,
        bytes: Option<&[u8]>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Result<VaccinationEnvelope, CodecError>> {
        let Some(bytes) = bytes else {
            return Ok(Err(
                avro::value::ConvertError::Missing("the record's value".into()).into()
            ));
        };
        Ok(Backoff::REGISTRY
            .retry(stop, || self.vaccinations.decode(bytes), CodecError::is_retriable)
            .await?)
    }

    /// Answers a vaccination record whose recipient was erased before it was signed: refused
    /// with the rule `RecipientErased` (the record can no longer be read).
    async fn answer_erased(
        &mut self,
        message: &OwnedMessage,
        event_id: &str,
        recipient_key: &domain::values::RecipientKey,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (partition, offset) = (message.partition(), message.offset());
        let state = self.states.get_mut(&partition).expect("present");
        let record = CertificateEnvelope {
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            source: SourcePosition { partition, offset },
            previous_sha256: state.chain_head,
            body: CertificateBody::Outcome {
                recipient_key: recipient_key.clone(),
                source_sha256: sha256(message.payload().unwrap_or_default()),
                event: domain::events::CertificateEvent {
                    answers: domain::ids::EventId::parse("eventId", event_id)
                        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.rule))?,
                    outcome: CertificateOutcome::CertificateRejected {
                        rule: "RecipientErased".into(),
                        detail: "the recipient's data was erased before this event was signed".into(),
                    },
                },
                credential: None,
            },
        };
        self.append(partition, &record, stop).await?;
        metrics::counter!("vaxtrail_signer_rejections_total", "rule" => "RecipientErased").increment(1);
        metrics::counter!("vaxtrail_signer_outcomes_total", "outcome" => "CertificateRejected").increment(1);
        Ok(())
    }

    /// Decides, signs and appends the outcomes of one vaccination event.
    pub(super) async fn answer(&mut self, message: &OwnedMessage, stop: &CancellationToken) -> anyhow::Result<()> {
        let partition = message.partition();
        let offset = message.offset();
        let envelope = match self.decode_vaccination(message.payload(), stop).await? {
            Ok(envelope) => envelope,
            Err(error) => {
                if let Some((event_id, recipient_key)) = error.erased() {
                    return self.answer_erased(message, event_id, recipient_key, stop).await;
                }
                self.dead_letter(message, &error.to_string()).await?;
                self.states.get_mut(&partition).expect("present").next_source = offset + 1;
                return Ok(());
            }
        };
        let source_sha256 = sha256(message.payload().unwrap_or_default());
        let event = &envelope.event;
        let state = self.states.get_mut(&partition).expect("present");
        let lineage = state.lineage(&event.recipient_key)?;
        // A VC 2.0 credential's slot in a Bitstring Status List (every new certificate's).
        let slot = state.next_slot()?;
        let decided = outcomes(&lineage, event, &self.settings.policy, slot);
        if let (VaccinationPayload::RecipientErased { .. }, Some(keys)) = (&event.payload, &self.settings.keys) {
            // Every earlier record of the recipient was read (and its key bound) before this one:
            // delete every key bound to them, retrying while the key store cannot answer.
            let erased = Backoff::REGISTRY
                .retry(
                    stop,
                    || keys.erase_bound(&event.recipient_key),
                    privacy::KeysError::is_retriable,
                )
                .await?
                .map_err(|e| anyhow::anyhow!("erasing the recipient's keys: {e}"))?;
            if !erased.key_ids.is_empty() {
                tracing::info!(
                    recipient_key = event.recipient_key.as_str(),
                    keys = erased.key_ids.len(),
                    "deleted the keys intake had not bound when the erasure was asked"
                );
            }
        }
        if decided.is_empty() {
            // The same event appended twice: it was answered already.
            metrics::counter!("vaxtrail_signer_outcomes_total", "outcome" => "AlreadyAnswered").increment(1);
            state.next_source = offset + 1;
            return Ok(());
        }
        for outcome in decided {
            let credential = self.credential_for(&lineage, event, &outcome.outcome).await?;
            let kind = outcome.outcome.event_type();
            if let CertificateOutcome::CertificateRejected { rule, .. } = &outcome.outcome {
                metrics::counter!("vaxtrail_signer_rejections_total", "rule" => rule.clone()).increment(1);
            }
            let state = self.states.get_mut(&partition).expect("present");
            let record = CertificateEnvelope {
                occurred_at: envelope.provenance.occurred_at,
                recorded_at: Utc::now(),
                source: SourcePosition { partition, offset },
                previous_sha256: state.chain_head,
                body: CertificateBody::Outcome {
                    recipient_key: event.recipient_key.clone(),
                    source_sha256,
                    event: outcome,
                    credential,
                },
            };
            self.append(partition, &record, stop).await?;
            metrics::counter!("vaxtrail_signer_outcomes_total", "outcome" => kind).increment(1);
            if let Some(trace) = TraceContext::current() {
                tracing::debug!(target: platform::trace::TARGET, trace_id = %trace.trace_id(), partition, offset, outcome = kind, "answered");
            }
        }
        let due = self.states[&partition].since_checkpoint >= self.settings.checkpoint_every;
        if due {
            self.checkpoint(partition).await?;
        }
        Ok(())
    }

    /// The signed credential an issue carries (none for other outcomes).
    async fn credential_for(
        &self,
        lineage: &Lineage,
        event: &VaccinationEvent,
        outcome: &CertificateOutcome,
    ) -> anyhow::Result<Option<IssuedCredential>> {
        let CertificateOutcome::CertificateIssued {
            certificate_id,
            programme,
            certified,
            status,
            ..
        } = outcome
        else {
            return Ok(None);
        };
        let record = event.payload.record().context("an issue answers a record")?;
        let previous = lineage.previous_doses(programme, certified.dose.number());
        let issued_at = Utc::now();
        let unsigned = unsigned_credential(&CredentialInput {
            profile: &self.settings.profile,
            certificate_id,
            record,
            previous: &previous,
            status: *status,
            issued_at,
        });
        let started = std::time::Instant::now();
        let signed = self.signer.sign(unsigned).await?;
        metrics::histogram!("vaxtrail_signer_sign_seconds").record(started.elapsed().as_secs_f64());
        let renderings = self
            .eu_dcc(record, certificate_id, issued_at)
            .into_iter()
            .chain(self.shc(record, certificate_id, issued_at))
            .collect();
        Ok(Some(IssuedCredential {
            text: signed.text,
            key_id: signed.verification_method,
            renderings,
        }))
    }

    /// The dose's EU DCC, when the deployment issues them and the vaccine is mapped to the EU
    /// value sets (a dose of an unmapped vaccine gets its W3C credential alone, counted by name).
    fn eu_dcc(
        &self,
        record: &domain::commands::RecordVaccination,
        certificate_id: &domain::ids::CertificateId,
        issued_at: chrono::DateTime<Utc>,
    ) -> Option<avro::certificate::Rendering> {
        use credentials::hcert;
        let eu = self.settings.eu_dcc.as_deref()?;
        let issuer = hcert::Issuer {
            name: &eu.issuer,
            country: &eu.country,
        };
        let payload = match hcert::payload::payload(record, certificate_id, &issuer, &eu.mapping) {
            Ok(payload) => payload,
            Err(hcert::Unmapped::Vaccine(name)) => {
                metrics::counter!("vaxtrail_signer_eu_dcc_unmapped_total", "vaccine" => name).increment(1);
                return None;
            }
        };
        let signer = eu.signers.active()?;
        match hcert::issue(&payload, &eu.country, signer, issued_at, eu.validity) {
            Ok(hcert) => {
                metrics::counter!("vaxtrail_signer_eu_dcc_issued_total").increment(1);
                Some(avro::certificate::Rendering {
                    format: avro::certificate::Rendering::EU_DCC.into(),
                    key_id: hcert.kid,
                    text: hcert.text,
                    expires_at: Some(hcert.expires_at),
                })
            }
            Err(error) => {
                // The document signer expired while the signer ran: the W3C credential is still
                // issued; the operator rotates the signer (`vaxctl dsc rotate`).
                tracing::error!(%error, "no EU DCC issued");
                metrics::counter!("vaxtrail_signer_eu_dcc_failed_total").increment(1);
                None
            }
        }
    }

    /// The dose's SMART Health Card, when the deployment issues them.
    fn shc(
        &self,
        record: &domain::commands::RecordVaccination,
        certificate_id: &domain::ids::CertificateId,
        issued_at: chrono::DateTime<Utc>,
    ) -> Option<avro::certificate::Rendering> {
        use credentials::shc;
        let keys = self.settings.shc.as_deref()?;
        let card = shc::issue(
            &shc::bundle(record),
            &self.settings.profile.base_url,
            issued_at,
            &shc::rid(certificate_id.as_str()),
            keys.active()?,
        )?;
        metrics::counter!("vaxtrail_signer_shc_issued_total").increment(1);
        Some(avro::certificate::Rendering {
            format: avro::certificate::Rendering::SHC.into(),
            key_id: card.kid,
            text: card.jws,
            expires_at: None,
        })
    }

    pub(super) async fn dead_letter(&mut self, message: &OwnedMessage, reason: &str) -> anyhow::Result<()> {
        let producer = self.producer.lock().expect("not poisoned").clone();
        platform::topics::dead_letter(&producer, &self.settings.dead_letters, message, "signer-worker", reason)
            .await
            .context("writing to dead-letters")?;
        metrics::counter!("vaxtrail_signer_dead_letters_total").increment(1);
        Ok(())
    }
}
