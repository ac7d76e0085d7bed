//! Signed checkpoints of each output partition's chain, and the published status lists.

use super::*;

impl Worker {
    /// Signs the partition's chain head (after everything in flight is acknowledged, so the
    /// offset it names is real) and appends the checkpoint.
    pub(super) async fn checkpoint(&mut self, partition: i32) -> anyhow::Result<()> {
        self.drain().await?;
        let Some(state) = self.states.get(&partition) else {
            return Ok(());
        };
        let (Some((last_offset, chain_head)), Some(head)) = (state.last_delivered, state.chain_head) else {
            return Ok(());
        };
        anyhow::ensure!(head == chain_head, "the chain head is not the last acknowledged record");
        let (key_id, signature) =
            self.signer
                .keyring()
                .sign(&credentials::checkpoint::message(partition, last_offset, &chain_head));
        let record = CertificateEnvelope {
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            source: SourcePosition {
                partition,
                offset: state.next_source - 1,
            },
            previous_sha256: Some(chain_head),
            body: CertificateBody::Checkpoint(Checkpoint {
                partition,
                last_offset,
                chain_head,
                key_id,
                signature: signature.to_bytes().to_vec(),
            }),
        };
        let stop = CancellationToken::new();
        self.append(partition, &record, &stop).await?;
        self.settings.crash_at(CrashPoint::Checkpoint);
        self.drain().await?;
        metrics::counter!("vaxtrail_signer_checkpoints_total").increment(1);
        Ok(())
    }

    /// Signs one of the partition's revocation lists from its state (every revocation of its
    /// log) and appends it, so the query side serves a list that is complete by construction and
    /// holds no signing key. Published when its bits change (at most once per
    /// `status_list_interval`) and once when a certificate is first placed in it.
    pub(super) async fn publish_status_list(&mut self, partition: i32, list: u32) -> anyhow::Result<()> {
        let Some(state) = self.states.get_mut(&partition) else {
            return Ok(());
        };
        let bits = state.lists.bits(list);
        let bits_sha256 = state.lists.digest(list);
        let unsigned = credentials::status_list::unsigned(&self.settings.profile, list, &bits, Utc::now());
        let signed = self.signer.sign(unsigned).await.context("signing a status list")?;
        let record = CertificateEnvelope {
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            source: SourcePosition {
                partition,
                offset: state.next_source - 1,
            },
            previous_sha256: state.chain_head,
            body: CertificateBody::StatusList(avro::certificate::StatusListPublished {
                list,
                credential: signed.text,
                revoked_count: credentials::status_list::count(&bits),
                bits_sha256,
            }),
        };
        let stop = CancellationToken::new();
        self.append(partition, &record, &stop).await?;
        if let Some(state) = self.states.get_mut(&partition) {
            state.lists.published_now(list);
        }
        metrics::counter!("vaxtrail_signer_status_lists_published_total").increment(1);
        Ok(())
    }
}
