-- The EU Digital COVID Certificate of a dose (HCERT, `HC1:` text), when one was issued beside
-- its W3C credential; dropped with the row when the recipient is erased.
ALTER TABLE certificates ADD COLUMN eu_dcc text;
ALTER TABLE certificates ADD COLUMN eu_dcc_kid text;
ALTER TABLE certificates ADD COLUMN eu_dcc_expires_at timestamptz;
