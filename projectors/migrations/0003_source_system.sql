-- Who recorded each vaccination event (the source system, the token subject that posted it), so a
-- facility is shown, and may correct, only what its own system recorded.
ALTER TABLE vaccinations ADD COLUMN source_system text;
CREATE INDEX certificates_by_source_event ON certificates (source_event_id);

-- The signed revocation status lists the signer published in the log, the newest per list.
CREATE TABLE status_lists (
    list          int PRIMARY KEY,
    credential    text NOT NULL,
    revoked_count bigint NOT NULL,
    published_at  timestamptz NOT NULL,
    log_partition int NOT NULL,
    log_offset    bigint NOT NULL
);
