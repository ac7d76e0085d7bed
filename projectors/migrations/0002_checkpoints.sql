-- The signer's signed checkpoints, as the log holds them: what an auditor checks the chain against.
CREATE TABLE checkpoints (
    log_partition int NOT NULL,
    log_offset    bigint NOT NULL,
    last_offset   bigint NOT NULL,
    chain_head    bytea NOT NULL,
    key_id        text NOT NULL,
    signature     bytea NOT NULL,
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (log_partition, log_offset)
);
