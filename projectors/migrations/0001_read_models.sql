-- The Postgres read models: what the query side serves, rebuilt from the log at will.
-- Every row is keyed by an id from the log, so applying a record twice changes nothing.

-- A recipient, by recipient key (a keyed hash of the identity; the identity itself stays in the log).
CREATE TABLE recipients (
    recipient_key        text PRIMARY KEY,
    pre_enrollment_codes text[] NOT NULL DEFAULT '{}',
    contacts             text[] NOT NULL DEFAULT '{}',
    first_seen_at        timestamptz NOT NULL,
    last_seen_at         timestamptz NOT NULL
);
CREATE INDEX recipients_by_pre_enrollment_code ON recipients USING gin (pre_enrollment_codes);
CREATE INDEX recipients_by_contact ON recipients USING gin (contacts);

-- Every vaccination event, as posted.
CREATE TABLE vaccinations (
    event_id         uuid PRIMARY KEY,
    event_type       text NOT NULL,
    recipient_key    text NOT NULL,
    programme        text,
    dose             int,
    total_doses      int,
    vaccine          text,
    manufacturer     text,
    batch            text,
    vaccination_date date,
    facility         text,
    district         text,
    state            text,
    target_certificate text,
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    log_partition    int NOT NULL,
    log_offset       bigint NOT NULL
);
CREATE INDEX vaccinations_by_recipient ON vaccinations (recipient_key);

-- Every certificate ever issued, with where it stands now.
CREATE TABLE certificates (
    certificate_id    text PRIMARY KEY,
    recipient_key     text NOT NULL,
    programme         text NOT NULL,
    dose              int NOT NULL,
    total_doses       int NOT NULL,
    status            text NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
    credential        jsonb NOT NULL,
    key_id            text NOT NULL,
    status_list       int NOT NULL,
    status_index      bigint NOT NULL,
    supersedes        text,
    superseded_by     text,
    revocation_reason text,
    issued_at         timestamptz NOT NULL,
    superseded_at     timestamptz,
    revoked_at        timestamptz,
    source_event_id   uuid NOT NULL,
    log_partition     int NOT NULL,
    log_offset        bigint NOT NULL
);
CREATE INDEX certificates_by_recipient ON certificates (recipient_key);
CREATE INDEX certificates_by_status_bit ON certificates (status_list, status_index);

-- What the signer decided for each vaccination event (issued / superseded / revoked / rejected).
CREATE TABLE event_outcomes (
    source_event_id uuid NOT NULL,
    outcome         text NOT NULL,
    certificate_id  text,
    rule            text,
    detail          text,
    decided_at      timestamptz NOT NULL,
    log_partition   int NOT NULL,
    log_offset      bigint NOT NULL,
    PRIMARY KEY (source_event_id, outcome)
);

-- The next offset to apply, per topic and partition, written in the same transaction as the rows.
CREATE TABLE projection_offsets (
    topic       text NOT NULL,
    partition   int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
