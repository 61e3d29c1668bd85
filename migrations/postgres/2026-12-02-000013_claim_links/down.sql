ALTER TABLE links DROP COLUMN claim_expires_at;
