-- Certificates of erased recipients (crypto-shredding): the query API answers 410 Gone for them.
-- Certificate ids are keyed hashes of event ids and carry no personal data.
CREATE TABLE erased_certificates (
    certificate_id text PRIMARY KEY,
    erased_at      timestamptz NOT NULL
);
