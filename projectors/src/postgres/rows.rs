//! A batch as columns (one array per column, bound with UNNEST) and the bulk statements that
//! write it, one per table, in the order the log wrote them. Over 400 lines because each table's
//! columns, the fold that fills them and the statement that writes them belong together; each
//! function is one table's.

use super::*;
use avro::certificate::IssuedCredential;
use domain::{events::CertificateEvent, values::RecipientKey};

/// A batch as columns, ready to bind as arrays.
#[derive(Default)]
pub(super) struct Rows {
    vaccinations: VaccinationColumns,
    /// Merged per recipient: one statement may not update a row twice.
    recipients: BTreeMap<String, RecipientRow>,
    issued: IssuedColumns,
    /// Status changes in log order; applied in waves that touch each certificate once.
    changes: Vec<StatusChange>,
    outcomes: OutcomeColumns,
    checkpoints: Vec<CheckpointRow>,
    /// The newest status list per list number in the batch.
    status_lists: BTreeMap<i32, StatusListRow>,
    /// Recipients erased: their key, and the position of the erasure in `vaccination-events`.
    erasures: Vec<(String, i32, i64)>,
    /// Certificates of erased recipients, with when.
    erased_certificates: Vec<(String, DateTime<Utc>)>,
    pub(super) next: BTreeMap<(String, i32), i64>,
}

pub(super) struct StatusListRow {
    credential: String,
    revoked_count: i64,
    published_at: DateTime<Utc>,
    log_partition: i32,
    log_offset: i64,
}

pub(super) struct CheckpointRow {
    log_partition: i32,
    log_offset: i64,
    last_offset: i64,
    chain_head: Vec<u8>,
    key_id: String,
    signature: Vec<u8>,
    recorded_at: DateTime<Utc>,
}

#[derive(Default)]
pub(super) struct VaccinationColumns {
    event_id: Vec<Uuid>,
    event_type: Vec<&'static str>,
    recipient_key: Vec<String>,
    programme: Vec<Option<String>>,
    dose: Vec<Option<i32>>,
    total_doses: Vec<Option<i32>>,
    vaccine: Vec<Option<String>>,
    manufacturer: Vec<Option<String>>,
    batch: Vec<Option<String>>,
    vaccination_date: Vec<Option<NaiveDate>>,
    facility: Vec<Option<String>>,
    district: Vec<Option<String>>,
    state: Vec<Option<String>>,
    target_certificate: Vec<Option<String>>,
    source_system: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
    log_partition: Vec<i32>,
    log_offset: Vec<i64>,
}

pub(super) struct RecipientRow {
    codes: BTreeSet<String>,
    contacts: BTreeSet<String>,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

#[derive(Default)]
pub(super) struct IssuedColumns {
    certificate_id: Vec<String>,
    recipient_key: Vec<String>,
    programme: Vec<String>,
    dose: Vec<i32>,
    total_doses: Vec<i32>,
    credential: Vec<String>,
    key_id: Vec<String>,
    status_list: Vec<i32>,
    status_index: Vec<i64>,
    supersedes: Vec<Option<String>>,
    issued_at: Vec<DateTime<Utc>>,
    source_event_id: Vec<Uuid>,
    log_partition: Vec<i32>,
    log_offset: Vec<i64>,
    eu_dcc: Vec<Option<String>>,
    eu_dcc_kid: Vec<Option<String>>,
    eu_dcc_expires_at: Vec<Option<DateTime<Utc>>>,
    shc: Vec<Option<String>>,
    shc_kid: Vec<Option<String>>,
    shc_rid: Vec<Option<String>>,
}

pub(super) enum StatusChange {
    Superseded {
        certificate_id: String,
        by: String,
        at: DateTime<Utc>,
    },
    Revoked {
        certificate_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl StatusChange {
    pub(super) fn certificate_id(&self) -> &str {
        match self {
            Self::Superseded { certificate_id, .. } | Self::Revoked { certificate_id, .. } => certificate_id,
        }
    }
}

/// An outcome row's kind, certificate, rule and detail.
type OutcomeFields = (&'static str, Option<String>, Option<String>, Option<String>);

#[derive(Default)]
pub(super) struct OutcomeColumns {
    source_event_id: Vec<Uuid>,
    outcome: Vec<&'static str>,
    certificate_id: Vec<Option<String>>,
    rule: Vec<Option<String>>,
    detail: Vec<Option<String>>,
    decided_at: Vec<DateTime<Utc>>,
    log_partition: Vec<i32>,
    log_offset: Vec<i64>,
}

impl Rows {
    pub(super) fn vaccination(&mut self, at: &Positioned, envelope: &VaccinationEnvelope) {
        let event = &envelope.event;
        let p = &envelope.provenance;
        let record = event.payload.record();
        let target = match &event.payload {
            VaccinationPayload::RevocationRequested { certificate_id, .. } => Some(certificate_id.as_str().to_owned()),
            VaccinationPayload::VaccinationCorrected {
                target: domain::commands::CorrectionTarget::Certificate(id),
                ..
            } => Some(id.as_str().to_owned()),
            _ => None,
        };
        if let VaccinationPayload::RecipientErased { .. } = &event.payload {
            self.erasures
                .push((event.recipient_key.as_str().to_owned(), at.partition, at.offset));
        }
        let v = &mut self.vaccinations;
        v.event_id.push(event.event_id.uuid());
        v.event_type.push(event.payload.event_type());
        v.recipient_key.push(event.recipient_key.as_str().to_owned());
        v.programme.push(record.map(|r| r.programme.as_str().to_owned()));
        v.dose.push(record.map(|r| i32::from(r.vaccination.dose.number())));
        v.total_doses.push(record.map(|r| i32::from(r.vaccination.dose.of())));
        v.vaccine.push(record.map(|r| r.vaccination.vaccine.name.clone()));
        v.manufacturer
            .push(record.map(|r| r.vaccination.manufacturer.as_str().to_owned()));
        v.batch.push(record.map(|r| r.vaccination.batch.as_str().to_owned()));
        v.vaccination_date.push(record.map(|r| r.vaccination.date.date()));
        v.facility.push(record.map(|r| r.facility.name.as_str().to_owned()));
        v.district
            .push(record.map(|r| r.facility.address.district.as_str().to_owned()));
        v.state
            .push(record.map(|r| r.facility.address.state.as_str().to_owned()));
        v.target_certificate.push(target);
        v.source_system.push(p.source_system.clone());
        v.occurred_at.push(p.occurred_at);
        v.recorded_at.push(p.recorded_at);
        v.log_partition.push(at.partition);
        v.log_offset.push(at.offset);

        if let Some(record) = record {
            let row = self
                .recipients
                .entry(event.recipient_key.as_str().to_owned())
                .or_insert_with(|| RecipientRow {
                    codes: BTreeSet::new(),
                    contacts: BTreeSet::new(),
                    first_seen: p.occurred_at,
                    last_seen: p.occurred_at,
                });
            row.codes.insert(record.pre_enrollment_code.as_str().to_owned());
            row.contacts
                .extend(record.recipient.contact.iter().map(|c| c.as_str().to_owned()));
            row.first_seen = row.first_seen.min(p.occurred_at);
            row.last_seen = row.last_seen.max(p.occurred_at);
        }
    }

    pub(super) fn certificate(&mut self, at: &Positioned, envelope: &CertificateEnvelope) {
        match &envelope.body {
            CertificateBody::Outcome {
                recipient_key,
                event,
                credential,
                ..
            } => self.outcome(at, envelope.recorded_at, recipient_key, event, credential.as_ref()),
            // An erased recipient's issue read again (a replay, or a backup from before the
            // erasure): the outcome, and the certificate remembered as erased, not its content.
            CertificateBody::SealedIssue(issue) => {
                self.erased_certificates
                    .push((issue.certificate_id.as_str().to_owned(), envelope.recorded_at));
                self.outcome_row(
                    at,
                    envelope.recorded_at,
                    issue.answers,
                    ("issued", Some(issue.certificate_id.as_str().to_owned()), None, None),
                );
            }
            CertificateBody::StatusList(list) => {
                // Later records of a batch come later in the log: the last one stands.
                self.status_lists.insert(
                    list.list as i32,
                    StatusListRow {
                        credential: list.credential.clone(),
                        revoked_count: list.revoked_count as i64,
                        published_at: envelope.recorded_at,
                        log_partition: at.partition,
                        log_offset: at.offset,
                    },
                );
            }
            CertificateBody::Checkpoint(checkpoint) => {
                self.checkpoints.push(CheckpointRow {
                    log_partition: at.partition,
                    log_offset: at.offset,
                    last_offset: checkpoint.last_offset,
                    chain_head: checkpoint.chain_head.to_vec(),
                    key_id: checkpoint.key_id.clone(),
                    signature: checkpoint.signature.clone(),
                    recorded_at: envelope.recorded_at,
                });
            }
        }
    }

    /// The signer's answer to one event: its outcome row, and the certificate it issued or the
    /// status change it made.
    fn outcome(
        &mut self,
        at: &Positioned,
        decided_at: DateTime<Utc>,
        recipient_key: &RecipientKey,
        event: &CertificateEvent,
        credential: Option<&IssuedCredential>,
    ) {
        let (outcome, certificate_id, rule, detail) = match &event.outcome {
            CertificateOutcome::CertificateIssued { certificate_id, .. } => {
                let credential = credential.expect("an issue carries its credential (checked on decode)");
                self.issued(at, decided_at, recipient_key, event, credential);
                ("issued", Some(certificate_id.as_str().to_owned()), None, None)
            }
            CertificateOutcome::CertificateSuperseded {
                certificate_id,
                superseded_by,
                ..
            } => {
                self.changes.push(StatusChange::Superseded {
                    certificate_id: certificate_id.as_str().to_owned(),
                    by: superseded_by.as_str().to_owned(),
                    at: decided_at,
                });
                ("superseded", Some(certificate_id.as_str().to_owned()), None, None)
            }
            CertificateOutcome::CertificateRevoked {
                certificate_id, reason, ..
            } => {
                self.changes.push(StatusChange::Revoked {
                    certificate_id: certificate_id.as_str().to_owned(),
                    reason: reason.as_str().to_owned(),
                    at: decided_at,
                });
                ("revoked", Some(certificate_id.as_str().to_owned()), None, None)
            }
            CertificateOutcome::CertificateRejected { rule, detail } => {
                ("rejected", None, Some(rule.clone()), Some(detail.clone()))
            }
            CertificateOutcome::RecipientErased { certificates } => {
                self.erased_certificates
                    .extend(certificates.iter().map(|id| (id.as_str().to_owned(), decided_at)));
                ("erased", None, None, None)
            }
        };
        self.outcome_row(at, decided_at, event.answers, (outcome, certificate_id, rule, detail));
    }

    /// One row of `event_outcomes`.
    fn outcome_row(
        &mut self,
        at: &Positioned,
        decided_at: DateTime<Utc>,
        answers: domain::ids::EventId,
        (outcome, certificate_id, rule, detail): OutcomeFields,
    ) {
        let o = &mut self.outcomes;
        o.source_event_id.push(answers.uuid());
        o.outcome.push(outcome);
        o.certificate_id.push(certificate_id);
        o.rule.push(rule);
        o.detail.push(detail);
        o.decided_at.push(decided_at);
        o.log_partition.push(at.partition);
        o.log_offset.push(at.offset);
    }

    /// A certificate row for an issue.
    fn issued(
        &mut self,
        at: &Positioned,
        decided_at: DateTime<Utc>,
        recipient_key: &RecipientKey,
        event: &CertificateEvent,
        credential: &IssuedCredential,
    ) {
        let CertificateOutcome::CertificateIssued {
            certificate_id,
            programme,
            supersedes,
            certified,
            status,
            ..
        } = &event.outcome
        else {
            return;
        };
        let c = &mut self.issued;
        c.certificate_id.push(certificate_id.as_str().to_owned());
        c.recipient_key.push(recipient_key.as_str().to_owned());
        c.programme.push(programme.as_str().to_owned());
        c.dose.push(i32::from(certified.dose.number()));
        c.total_doses.push(i32::from(certified.dose.of()));
        // JSON text (checked on decode), turned into jsonb by Postgres.
        c.credential.push(credential.text.clone());
        c.key_id.push(credential.key_id.clone());
        c.status_list.push(status.list as i32);
        c.status_index.push(status.index as i64);
        c.supersedes.push(supersedes.as_ref().map(|s| s.as_str().to_owned()));
        c.issued_at.push(decided_at);
        c.source_event_id.push(event.answers.uuid());
        c.log_partition.push(at.partition);
        c.log_offset.push(at.offset);
        let eu = credential
            .renderings
            .iter()
            .find(|r| r.format == avro::certificate::Rendering::EU_DCC);
        c.eu_dcc.push(eu.map(|r| r.text.clone()));
        c.eu_dcc_kid.push(eu.map(|r| r.key_id.clone()));
        c.eu_dcc_expires_at.push(eu.and_then(|r| r.expires_at));
        let shc = credential
            .renderings
            .iter()
            .find(|r| r.format == avro::certificate::Rendering::SHC);
        c.shc.push(shc.map(|r| r.text.clone()));
        c.shc_kid.push(shc.map(|r| r.key_id.clone()));
        c.shc_rid
            .push(shc.map(|_| domain::ids::shc_rid(certificate_id.as_str())));
    }

    pub(super) async fn write(self, tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<()> {
        // One bulk statement per table, in the order the log wrote them.
        let Self {
            vaccinations,
            recipients,
            issued,
            changes,
            outcomes,
            checkpoints,
            status_lists,
            erasures,
            erased_certificates,
            next,
        } = self;
        write_vaccinations(vaccinations, tx).await?;
        write_recipients(recipients, tx).await?;
        write_issued(issued, tx).await?;
        write_changes(changes, tx).await?;
        write_outcomes(outcomes, tx).await?;
        write_checkpoints(checkpoints, tx).await?;
        write_status_lists(status_lists, tx).await?;
        write_erasures(erasures, erased_certificates, tx).await?;
        write_next(next, tx).await?;
        Ok(())
    }
}

pub(super) async fn write_vaccinations(
    vaccinations: VaccinationColumns,
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<()> {
    let v = vaccinations;
    if !v.event_id.is_empty() {
        sqlx::query(
            "INSERT INTO vaccinations (event_id, event_type, recipient_key, programme, dose, total_doses, vaccine,
                 manufacturer, batch, vaccination_date, facility, district, state, target_certificate,
                 occurred_at, recorded_at, log_partition, log_offset, source_system)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::text[],
                 $8::text[], $9::text[], $10::date[], $11::text[], $12::text[], $13::text[], $14::text[],
                 $15::timestamptz[], $16::timestamptz[], $17::int[], $18::bigint[], $19::text[])
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(v.event_id)
        .bind(v.event_type)
        .bind(v.recipient_key)
        .bind(v.programme)
        .bind(v.dose)
        .bind(v.total_doses)
        .bind(v.vaccine)
        .bind(v.manufacturer)
        .bind(v.batch)
        .bind(v.vaccination_date)
        .bind(v.facility)
        .bind(v.district)
        .bind(v.state)
        .bind(v.target_certificate)
        .bind(v.occurred_at)
        .bind(v.recorded_at)
        .bind(v.log_partition)
        .bind(v.log_offset)
        .bind(v.source_system)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Drops erased recipients: their vaccinations before the erasure, their recipient row (codes and
/// contacts), and their certificates (remembered by id only, for 410 Gone).
pub(super) async fn write_erasures(
    erasures: Vec<(String, i32, i64)>,
    certificates: Vec<(String, DateTime<Utc>)>,
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<()> {
    if !erasures.is_empty() {
        let (mut key, mut partition, mut offset) = (Vec::new(), Vec::new(), Vec::new());
        for (k, p, o) in erasures {
            key.push(k);
            partition.push(p);
            offset.push(o);
        }
        sqlx::query(
            "DELETE FROM vaccinations v USING UNNEST($1::text[], $2::int[], $3::bigint[]) AS e(k, p, o)
             WHERE v.recipient_key = e.k AND v.log_partition = e.p AND v.log_offset < e.o",
        )
        .bind(&key)
        .bind(partition)
        .bind(offset)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM recipients WHERE recipient_key = ANY($1)")
            .bind(&key)
            .execute(&mut **tx)
            .await?;
    }
    if !certificates.is_empty() {
        let (ids, at): (Vec<String>, Vec<DateTime<Utc>>) = certificates.into_iter().unzip();
        sqlx::query("DELETE FROM certificates WHERE certificate_id = ANY($1)")
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO erased_certificates (certificate_id, erased_at)
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[]) ON CONFLICT DO NOTHING",
        )
        .bind(ids)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn write_recipients(
    recipients: BTreeMap<String, RecipientRow>,
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<()> {
    if !recipients.is_empty() {
        let mut key = Vec::with_capacity(recipients.len());
        let (mut codes, mut contacts, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, row) in recipients {
            key.push(k);
            codes.push(serde_json::json!(row.codes));
            contacts.push(serde_json::json!(row.contacts));
            first.push(row.first_seen);
            last.push(row.last_seen);
        }
        sqlx::query(
            "INSERT INTO recipients (recipient_key, pre_enrollment_codes, contacts, first_seen_at, last_seen_at)
             SELECT k, ARRAY(SELECT jsonb_array_elements_text(codes) ORDER BY 1),
                    ARRAY(SELECT jsonb_array_elements_text(contacts) ORDER BY 1), f, l
             FROM UNNEST($1::text[], $2::jsonb[], $3::jsonb[], $4::timestamptz[], $5::timestamptz[])
                  AS r(k, codes, contacts, f, l)
             ON CONFLICT (recipient_key) DO UPDATE SET
               pre_enrollment_codes = ARRAY(SELECT DISTINCT unnest(recipients.pre_enrollment_codes || EXCLUDED.pre_enrollment_codes) ORDER BY 1),
               contacts = ARRAY(SELECT DISTINCT unnest(recipients.contacts || EXCLUDED.contacts) ORDER BY 1),
               first_seen_at = LEAST(recipients.first_seen_at, EXCLUDED.first_seen_at),
               last_seen_at = GREATEST(recipients.last_seen_at, EXCLUDED.last_seen_at)",
        )
        .bind(key)
        .bind(codes)
        .bind(contacts)
        .bind(first)
        .bind(last)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn write_issued(issued: IssuedColumns, tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<()> {
    let c = issued;
    if !c.certificate_id.is_empty() {
        sqlx::query(
            "INSERT INTO certificates (certificate_id, recipient_key, programme, dose, total_doses, status,
                 credential, key_id, status_list, status_index, supersedes, issued_at, source_event_id,
                 log_partition, log_offset, eu_dcc, eu_dcc_kid, eu_dcc_expires_at, shc, shc_kid, shc_rid)
             SELECT id, recipient, programme, dose, total, 'active', credential::jsonb, key_id, list, index,
                    supersedes, issued_at, source, part, off, eu, eu_kid, eu_exp, shc, shc_kid, shc_rid
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::text[],
                  $8::int[], $9::bigint[], $10::text[], $11::timestamptz[], $12::uuid[], $13::int[], $14::bigint[],
                  $15::text[], $16::text[], $17::timestamptz[], $18::text[], $19::text[], $20::text[])
                  AS c(id, recipient, programme, dose, total, credential, key_id, list, index, supersedes,
                       issued_at, source, part, off, eu, eu_kid, eu_exp, shc, shc_kid, shc_rid)
             ON CONFLICT (certificate_id) DO NOTHING",
        )
        .bind(c.certificate_id)
        .bind(c.recipient_key)
        .bind(c.programme)
        .bind(c.dose)
        .bind(c.total_doses)
        .bind(c.credential)
        .bind(c.key_id)
        .bind(c.status_list)
        .bind(c.status_index)
        .bind(c.supersedes)
        .bind(c.issued_at)
        .bind(c.source_event_id)
        .bind(c.log_partition)
        .bind(c.log_offset)
        .bind(c.eu_dcc)
        .bind(c.eu_dcc_kid)
        .bind(c.eu_dcc_expires_at)
        .bind(c.shc)
        .bind(c.shc_kid)
        .bind(c.shc_rid)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn write_changes(changes: Vec<StatusChange>, tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<()> {
    // Status changes after the issues they follow, in waves: the n-th change of each
    // certificate in wave n, so a certificate changed twice in a batch ends as the log says.
    let mut waves: Vec<Vec<StatusChange>> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for change in changes {
        let wave = seen.entry(change.certificate_id().to_owned()).or_default();
        if waves.len() <= *wave {
            waves.push(Vec::new());
        }
        waves[*wave].push(change);
        *wave += 1;
    }
    for wave in waves {
        let (mut s_id, mut s_by, mut s_at) = (Vec::new(), Vec::new(), Vec::new());
        let (mut r_id, mut r_reason, mut r_at) = (Vec::new(), Vec::new(), Vec::new());
        for change in wave {
            match change {
                StatusChange::Superseded { certificate_id, by, at } => {
                    s_id.push(certificate_id);
                    s_by.push(by);
                    s_at.push(at);
                }
                StatusChange::Revoked {
                    certificate_id,
                    reason,
                    at,
                } => {
                    r_id.push(certificate_id);
                    r_reason.push(reason);
                    r_at.push(at);
                }
            }
        }
        if !s_id.is_empty() {
            sqlx::query(
                "UPDATE certificates c SET status = 'superseded', superseded_by = u.by, superseded_at = u.at
                 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS u(id, by, at)
                 WHERE c.certificate_id = u.id AND c.status = 'active'",
            )
            .bind(s_id)
            .bind(s_by)
            .bind(s_at)
            .execute(&mut **tx)
            .await?;
        }
        if !r_id.is_empty() {
            sqlx::query(
                "UPDATE certificates c SET status = 'revoked', revocation_reason = u.reason, revoked_at = u.at
                 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS u(id, reason, at)
                 WHERE c.certificate_id = u.id AND c.status <> 'revoked'",
            )
            .bind(r_id)
            .bind(r_reason)
            .bind(r_at)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn write_outcomes(outcomes: OutcomeColumns, tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<()> {
    let o = outcomes;
    if !o.source_event_id.is_empty() {
        sqlx::query(
            "INSERT INTO event_outcomes (source_event_id, outcome, certificate_id, rule, detail, decided_at,
                 log_partition, log_offset)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                 $7::int[], $8::bigint[])
             ON CONFLICT (source_event_id, outcome) DO NOTHING",
        )
        .bind(o.source_event_id)
        .bind(o.outcome)
        .bind(o.certificate_id)
        .bind(o.rule)
        .bind(o.detail)
        .bind(o.decided_at)
        .bind(o.log_partition)
        .bind(o.log_offset)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn write_checkpoints(
    checkpoints: Vec<CheckpointRow>,
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<()> {
    if !checkpoints.is_empty() {
        let rows = checkpoints;
        sqlx::query(
            "INSERT INTO checkpoints (log_partition, log_offset, last_offset, chain_head, key_id, signature, recorded_at)
             SELECT * FROM UNNEST($1::int[], $2::bigint[], $3::bigint[], $4::bytea[], $5::text[], $6::bytea[],
                 $7::timestamptz[])
             ON CONFLICT (log_partition, log_offset) DO NOTHING",
        )
        .bind(rows.iter().map(|r| r.log_partition).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.log_offset).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.last_offset).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.chain_head.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.key_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.signature.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn write_status_lists(
    status_lists: BTreeMap<i32, StatusListRow>,
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<()> {
    if !status_lists.is_empty() {
        let rows: Vec<(i32, StatusListRow)> = status_lists.into_iter().collect();
        // A redelivered older list never replaces a newer one.
        sqlx::query(
            "INSERT INTO status_lists (list, credential, revoked_count, published_at, log_partition, log_offset)
             SELECT * FROM UNNEST($1::int[], $2::text[], $3::bigint[], $4::timestamptz[], $5::int[], $6::bigint[])
             ON CONFLICT (list) DO UPDATE SET credential = EXCLUDED.credential,
                 revoked_count = EXCLUDED.revoked_count, published_at = EXCLUDED.published_at,
                 log_partition = EXCLUDED.log_partition, log_offset = EXCLUDED.log_offset
             WHERE status_lists.log_offset < EXCLUDED.log_offset",
        )
        .bind(rows.iter().map(|(l, _)| *l).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.credential.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.revoked_count).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.published_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.log_partition).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.log_offset).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn write_next(
    next: BTreeMap<(String, i32), i64>,
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<()> {
    let (mut topic, mut partition, mut offset) = (Vec::new(), Vec::new(), Vec::new());
    for ((t, p), o) in next {
        topic.push(t);
        partition.push(p);
        offset.push(o);
    }
    sqlx::query(
        "INSERT INTO projection_offsets (topic, partition, next_offset)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[])
         ON CONFLICT (topic, partition) DO UPDATE
           SET next_offset = GREATEST(projection_offsets.next_offset, EXCLUDED.next_offset)",
    )
    .bind(topic)
    .bind(partition)
    .bind(offset)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
