//! Who recorded a dose: a facility corrects only what its own source system recorded. The answer
//! comes from the Postgres read model (the vaccination event behind the certificate that stands
//! for the dose now). A target the read model does not know yet (just issued) is left to the
//! signer; a read model that cannot be asked, or that is being rebuilt from the log (its generation
//! marker is not complete, so "unknown" may only mean "not re-applied yet"), is a 503, never a
//! guess.

use domain::{commands::CorrectionTarget, values::RecipientKey};

/// Asks the read model.
pub struct Ownership {
    pool: sqlx::PgPool,
}

/// What the read model says about a correction's target.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded by this source system.
    By(String),
    /// Not (yet) in the read model.
    Unknown,
}

/// Why the read model cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("postgres: {0}")]
    Store(#[from] sqlx::Error),
    #[error("the read model is being rebuilt from the log")]
    Rebuilding,
}

impl Ownership {
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }

    /// The source system that recorded the certificate a correction targets.
    pub async fn of(&self, recipient: &RecipientKey, target: &CorrectionTarget) -> Result<Recorded, OwnershipError> {
        let found: Option<Option<String>> = match target {
            CorrectionTarget::Certificate(id) => {
                sqlx::query_scalar(
                    "SELECT v.source_system FROM certificates c
                     JOIN vaccinations v ON v.event_id = c.source_event_id
                     WHERE c.certificate_id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?
            }
            CorrectionTarget::Dose { programme, dose } => {
                sqlx::query_scalar(
                    "SELECT v.source_system FROM certificates c
                     JOIN vaccinations v ON v.event_id = c.source_event_id
                     WHERE c.recipient_key = $1 AND c.programme = $2 AND c.dose = $3 AND c.status <> 'superseded'
                     ORDER BY c.issued_at DESC LIMIT 1",
                )
                .bind(recipient.as_str())
                .bind(programme.as_str())
                .bind(i32::from(*dose))
                .fetch_optional(&self.pool)
                .await?
            }
        };
        // Rows projected before source systems were kept have none: the signer decides.
        match found.flatten() {
            Some(source) => Ok(Recorded::By(source)),
            None => {
                let complete: Option<bool> = sqlx::query_scalar("SELECT complete FROM projection_generation")
                    .fetch_optional(&self.pool)
                    .await?;
                match complete {
                    Some(true) => Ok(Recorded::Unknown),
                    _ => Err(OwnershipError::Rebuilding),
                }
            }
        }
    }
}
