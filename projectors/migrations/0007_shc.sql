-- The SMART Health Card of a dose (the compact JWS) and the key that signed it, when one was
-- issued beside its W3C credential; the revocation list of a key is read from here.
ALTER TABLE certificates ADD COLUMN shc text;
ALTER TABLE certificates ADD COLUMN shc_kid text;
-- Its revocation id (domain::ids::shc_rid), looked up when a scanned card is verified.
ALTER TABLE certificates ADD COLUMN shc_rid text;
CREATE INDEX certificates_shc_rid ON certificates (shc_rid) WHERE shc_rid IS NOT NULL;
CREATE INDEX certificates_revoked_shc ON certificates (shc_kid) WHERE status = 'revoked' AND shc_kid IS NOT NULL;
